// What geosyncctl's switchover, failover and rejoin share: the arguments,
// the run every step reads and updates, and the calls a step makes on the
// sites' admin APIs (cli_promote.cpp, cli_rejoin.cpp).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/promote/promote_plan.h"
#include "common/exit_codes.h"
#include "common/lsn.h"
#include "common/status.h"
#include "common/topology.h"

namespace geosync::ctl {

using Clock = std::chrono::steady_clock;
using promote::SiteReport;

struct PromoteArgs {
  std::string topology;
  std::string to;
  std::string token_file;
  bool yes = false;
  bool dry_run = false;
  bool force = false;         // failover: even though the primary answers
  bool allow_behind = false;  // failover: target is not the most advanced
  double max_lag_s = -1;      // failover: refuse above this potential loss
  bool accept_loss = false;   // failover: even above --max-lag
  int64_t sequence_gap = -1;  // -1: 0 for switchover, 1000 for failover
  int timeout_s = 120;
  bool abort = false;   // switchover: call off an interrupted one
  bool reseed = false;  // rejoin: seed a diverged old primary again
};

// Everything a run needs, shared by its steps.
struct Run {
  explicit Run(const PromoteArgs& a) : args(a) {}
  const PromoteArgs& args;
  Topology topology;
  std::string token;
  bool failover = false;
  std::vector<SiteReport> sites;
  std::string old_source;  // "" when unknown
  uint64_t epoch = 0;      // the current (highest) epoch
  uint64_t new_epoch = 0;
  Position final_pos;  // switchover: the fenced primary's last position
  Clock::time_point fenced_at{};
  double unavailable_s = 0;
  std::vector<std::string> absent;  // unreachable when the run began
  const SiteReport* Find(const std::string& name) const {
    for (const auto& s : sites) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
  const TopologySite* Topo(const std::string& name) const {
    for (const auto& s : topology.sites) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
};

// A step's failure: exit code and what to tell the DBA.
struct StepError {
  int code = kExitFailure;
  std::string message;
};
using StepResult = std::optional<StepError>;

// The exit code and message of a failed Status; nullopt for ok.
StepResult FromStatus(const Status& st);

// POST /admin/<action>?<query> on `site`; 200 and 202 are success.
StepResult Post(const Run& run, const std::string& site, const std::string& action,
                const std::string& query);

// Polls every site until `done` holds, or the deadline.
StepResult WaitUntil(Run& run, const std::string& what,
                     const std::function<bool(const Run&)>& done);

// "site=S&host=H&port=P" for S's stream server, from the topology.
std::string StreamQuery(const Run& run, const std::string& site, StepResult* error);

// --yes, or the DBA answers y on stdin.
bool Confirm(const PromoteArgs& args, const std::string& question);

// Loads the topology and the token and surveys every site; -1 to go on,
// else the exit code.
int Prepare(Run& run, const PromoteArgs& args);

int RunRejoin(const PromoteArgs& args);

}  // namespace geosync::ctl
