// The site's durable agent state: epoch, role and fencing, in
// <state_dir>/state.json. Versioned, written to a temp file, fsynced and
// renamed, so a crash leaves either the old or the new state, never a mix.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Where a replica stands with seeding (docs/seed.md). A site whose seed is
// in progress holds a partial copy: it is never ready and must not be
// promoted; the next start seeds it again from scratch.
enum class SeedState { kNone, kInProgress, kDone };

struct SiteState {
  // Version 2 added the seed_* keys; a version 1 file reads with their defaults.
  static constexpr int kVersion = 2;
  std::string cluster_id;
  std::string site;
  uint64_t epoch = 1;  // promotion counter, starts at 1
  Role role = Role::kReplica;
  std::string source_site;  // the site this one follows (replica) or itself (source)
  bool fenced = false;      // this site must not ship its stream or take writes
  std::string fence_reason;
  // Replica: the source to follow, set by a promotion; overrides the config's
  // upstream. Unset: use the config's.
  std::optional<Endpoint> upstream;
  // Source: sites allowed to connect besides the config's "sites" (the
  // promotion that made this site the source names its peers).
  std::vector<std::string> peers;
  // The last position of each earlier epoch in this site's lineage
  // (epoch -> position of its last unit): a site holding more of an old
  // epoch than that has diverged and must rejoin, like a PostgreSQL timeline.
  std::vector<Position> history;
  // The database carries geosync's read-only fence (site_ops.h FenceDatabase).
  bool db_fenced = false;
  // A promotion this site takes part in: the site being promoted and the new
  // epoch. On the old source, `promotion_final` is its last position once
  // fenced. Cleared when the site has taken its new role.
  std::string promotion_target;
  uint64_t promotion_epoch = 0;
  Position promotion_final;
  std::string promotion_error;  // why the last promotion step failed here

  // The end of `epoch` in this lineage, if recorded.
  std::optional<Lsn> EpochEnd(uint64_t epoch) const;
  SeedState seed_state = SeedState::kNone;
  std::string seed_position;         // "epoch@LSN" the last seed continued from, when done
  bool seed_created_schema = false;  // the seed in progress created the tables (pre-data)

  bool operator==(const SiteState&) const = default;
};

const char* SeedStateName(SeedState s);  // "none", "in_progress", "done"

// Reads <dir>/state.json; NotFound when absent; Corruption/Config when bad.
Result<SiteState> ReadSiteState(const std::string& dir);
// Atomically replaces <dir>/state.json (creating dir if needed).
Status WriteSiteState(const std::string& dir, const SiteState& state);
// Writes <dir>/<name> the same way: temp file, fsync, rename, fsync dir.
Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           const std::string& text);
// Reads the state, or creates it from the config on first start. A state
// whose cluster id or site differs from the config is a Config error.
Result<SiteState> LoadOrInitSiteState(const Config& config);

}  // namespace geosync
