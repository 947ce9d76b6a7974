// LinkRefusals counters and their Prometheus text.
#include "common/link_refusals.h"

#include <fmt/format.h>

namespace geosync {
namespace {

std::string EscapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Family(std::string* out, const char* name, const char* help) {
  *out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
}

void Labelled(std::string* out, const char* name, const char* label,
              const std::map<std::string, uint64_t>& samples) {
  for (const auto& [value, n] : samples) {
    *out += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label, EscapeLabel(value), n);
  }
}

}  // namespace

void LinkRefusals::Hello(std::string_view reason) {
  std::lock_guard lock(mu_);
  counts_.hellos[std::string(reason)]++;
}

void LinkRefusals::Ack() {
  std::lock_guard lock(mu_);
  counts_.acks++;
}

void LinkRefusals::Source(std::string_view reason) {
  std::lock_guard lock(mu_);
  counts_.sources[std::string(reason)]++;
}

void LinkRefusals::PeerEpoch(std::string_view site) {
  std::lock_guard lock(mu_);
  counts_.peer_epochs[std::string(site)]++;
}

LinkRefusals::Counts LinkRefusals::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::string LinkRefusalMetricsText(const LinkRefusals::Counts& c, bool source) {
  std::string out;
  if (!source) {
    Family(&out, "geosync_refused_sources_total",
           "Source handshakes this replica refused, by reason (certificate_mismatch, "
           "unknown_site, impossible_epoch, stale_source).");
    Labelled(&out, "geosync_refused_sources_total", "reason", c.sources);
    return out;
  }
  Family(&out, "geosync_refused_hellos_total",
         "Hellos this source refused, by reason (unknown_site, other_cluster, "
         "certificate_mismatch, impossible_epoch, malformed, tls_handshake, ...).");
  Labelled(&out, "geosync_refused_hellos_total", "reason", c.hellos);
  Family(&out, "geosync_refused_acks_total",
         "Acks beyond what their session sent; each closed its session.");
  out += fmt::format("geosync_refused_acks_total {}\n", c.acks);
  Family(&out, "geosync_refused_peer_epochs_total",
         "Epochs in a peer's /status that could not have been issued, ignored, by site.");
  Labelled(&out, "geosync_refused_peer_epochs_total", "site", c.peer_epochs);
  return out;
}

}  // namespace geosync
