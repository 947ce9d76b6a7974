// The site's durable agent state: epoch, role and fencing, in
// <state_dir>/state.json. Versioned, written to a temp file, fsynced and
// renamed, so a crash leaves either the old or the new state, never a mix.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/status.h"

namespace geosync {

struct SiteState {
  static constexpr int kVersion = 1;
  std::string cluster_id;
  std::string site;
  uint64_t epoch = 1;  // promotion counter, starts at 1
  Role role = Role::kReplica;
  std::string source_site;  // the site this one follows (replica) or itself (source)
  bool fenced = false;      // this site must not ship its stream or take writes
  std::string fence_reason;

  bool operator==(const SiteState&) const = default;
};

// Reads <dir>/state.json; NotFound when absent; Corruption/Config when bad.
Result<SiteState> ReadSiteState(const std::string& dir);
// Atomically replaces <dir>/state.json (creating dir if needed).
Status WriteSiteState(const std::string& dir, const SiteState& state);
// Reads the state, or creates it from the config on first start. A state
// whose cluster id or site differs from the config is a Config error.
Result<SiteState> LoadOrInitSiteState(const Config& config);

}  // namespace geosync
