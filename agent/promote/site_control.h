// SiteControl: the running daemon's view of its durable state (state.json),
// shared by the event loop, the admin actions and the promotion workers, and
// the hand-off between a role that stops and the role that comes next.
//
// A role change is: an admin action records the request (Request), stops the
// running role, and RunDaemon's loop carries out the transition between roles
// (agent/promote/transitions.h) before starting the new one. Every state
// change is written to the state file first, so a crash at any point leaves
// a state from which the same step can be run again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "agent/admin/status_model.h"
#include "agent/state/state_file.h"
#include "common/config.h"
#include "common/status.h"

namespace geosync {

// What RunDaemon does once the running role has stopped.
struct NextRole {
  enum Kind {
    kExit,     // leave the daemon (signal or fatal error)
    kRerun,    // start the role the state now names (upstream or fence changed)
    kPromote,  // replica -> source with a new epoch (transitions.h Promote)
    kDemote,   // fenced old source -> replica of the new source
    kFence,    // a higher epoch exists: fence the database, stop (FenceStale)
    kUnfence,  // a switchover was called off: lift the source's fence
  };
  Kind kind = kExit;
  uint64_t epoch = 0;              // kPromote: the new epoch
  std::string source_site;         // kDemote: the new source
  Endpoint upstream;               // kDemote: where it listens
  std::vector<std::string> peers;  // kPromote: sites that may connect
  int64_t sequence_gap = 0;        // kPromote: 0 for a switchover
  bool reseed = false;             // kDemote: the data diverged; seed it again from the source
  std::string reason;              // "switchover", "failover", kFence's why
};

class SiteControl {
 public:
  SiteControl(const Config& config, SiteState state);

  const Config& config() const { return config_; }
  SiteState state() const;
  // Applies `change` to a copy, writes it atomically, then publishes it.
  Status Update(const std::function<void(SiteState&)>& change);

  // Records what comes after the running role; the caller then stops it.
  // Refused (409-worthy) when another transition is already requested.
  Status Request(NextRole next);
  NextRole next() const;
  void ClearNext();

  // Progress of the current promotion step on this site, for /status.
  void SetStep(std::string step);
  std::string step() const;

 private:
  const Config& config_;
  mutable std::mutex mu_;
  SiteState state_;
  NextRole next_;
  std::string step_;
};

// The "promotion" object of /status (schemas/status.schema.json).
admin::PromotionStatus PromotionOf(const SiteControl& control);

}  // namespace geosync
