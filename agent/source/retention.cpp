// Source spool retention: release what every site holds, drop the slowest
// site at the cap.
#include "agent/source/retention.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace geosync {

// Releases up to the floor every retained site holds. While the spool is
// still at or over its cap, drops the fewest slowest sites whose drop frees
// a segment, and releases again. Releasing first matters: a site that kept up
// must not be dropped only because the spool grew past the cap since the last
// run. And a site whose drop frees nothing (every site within the active
// segment, or one unit larger than the cap) is kept: dropping it would only
// cost it a re-seed.
void EnforceRetention(uint64_t max_bytes, Spool& spool, SiteRegistry& registry) {
  auto release = [&](Position upto) {
    if (!upto.lsn.valid()) return;
    Status st = spool.ReleaseUpTo(upto);
    if (!st.ok()) spdlog::error("retention: {}", st.ToString());
  };
  release(registry.RetentionFloor());
  if (max_bytes == 0) return;
  while (spool.size_bytes() >= max_bytes) {
    std::vector<SiteProgress> retained;
    for (auto& s : registry.Snapshot()) {
      if (!s.dropped) retained.push_back(std::move(s));
    }
    // Slowest first; a site that has not reported yet (Position{}) first of all.
    std::sort(retained.begin(), retained.end(),
              [](const SiteProgress& a, const SiteProgress& b) { return a.durable < b.durable; });
    size_t k = 1;
    Position floor;
    for (; k <= retained.size(); ++k) {
      floor = k < retained.size() ? retained[k].durable : spool.last_appended();
      if (floor.lsn.valid() && spool.ReleasableBytes(floor) > 0) break;
    }
    if (k > retained.size()) {
      spdlog::debug("retention: the spool is over its cap, but dropping sites would free nothing");
      break;
    }
    for (size_t i = 0; i < k; ++i) {
      const std::string& site = retained[i].site;
      std::string why = fmt::format(
          "dropped from retention: the spool reached its cap of {} MB (spool.max_mb) while "
          "site {} lagged; it needs a re-seed (geosyncctl seed --site {})",
          max_bytes >> 20, site, site);
      spdlog::error("SITE {} {}", site, why);
      registry.Drop(site, why);
    }
    release(floor);
  }
}

}  // namespace geosync
