// What geosyncctl switchover / failover decide before they change anything:
// a survey of every site's /status, and pure planning functions over it
// (which site is the source, the new epoch, where an interrupted run
// stopped, and every refusal), unit-tested without a network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/admin/status_model.h"
#include "common/lsn.h"

namespace geosync::promote {

// What one site says about itself.
struct SiteReport {
  std::string name;
  bool reachable = false;
  std::string error;          // why unreachable
  bool unauthorized = false;  // answered HTTP 401: the token was refused
  std::string role;           // "source", "replica", "fenced"
  std::string state;
  uint64_t epoch = 0;
  bool connected = false;   // replica: streaming from its source
  std::string source_site;  // replica: the site it follows
  Position durable;         // source: spool; replica: received and fsynced
  Position applied;         // replica
  Lsn primary_wal_lsn;      // replica: the primary's WAL end at the last heartbeat
  std::optional<double> durable_lag_s, heartbeat_age_s;
  // replica: "potential_loss" in /status, as of its last heartbeat.
  std::optional<double> loss_seconds;  // source clock
  std::optional<double> txns_per_mb;   // transactions per 10^6 bytes of WAL received lately
  std::string apply_error;
  // The "promotion" object.
  std::string promotion_target;
  uint64_t promotion_epoch = 0;
  Position final_pos;
  std::string promotion_error;
  bool db_fenced = false;
  std::vector<Position> history;  // where earlier epochs ended in its lineage
};

SiteReport ReportFromStatus(const std::string& name, const nlohmann::json& status);
// GET /status on every site of the topology, in parallel, 2 s deadline each;
// with `token`, as the operator (a site that refuses it is unauthorized).
std::vector<SiteReport> Survey(const Topology& topology, const std::string& token = "");
// A table for the DBA: site, role, epoch, state, follows, durable, applied.
std::string FormatSurvey(const std::vector<SiteReport>& sites);

// What promoting a site would lose, from what every reachable site reports.
// Transactions and bytes are counted against the last known source position:
// the highest primary WAL position (or durable position) that any reachable
// site heard of. Seconds are on the source's clock as of the target's last
// heartbeat, never added to the time since then (issue #25).
struct LossEstimate {
  Position holds;               // the target's durable position
  Position last_known;          // the highest source position any reachable site heard of
  std::string last_known_from;  // the site that heard it
  std::optional<uint64_t> bytes;
  std::optional<uint64_t> transactions;  // bytes x the stream's transactions per byte
  std::optional<double> txns_per_mb;     // the density used
  std::optional<double> seconds;         // source clock, up to the target's last heartbeat
  std::optional<double> heard_s_ago;     // target's clock, since its last heartbeat
};
LossEstimate EstimateLoss(const std::vector<SiteReport>& sites, const SiteReport& target);
// The lines failover prints; `old_source` is "" when unknown.
std::string FormatLoss(const LossEstimate& loss, const std::string& target,
                       const std::string& old_source);

struct Plan {
  std::string refusal;  // non-empty: refuse, with this reason
  std::string old_source;
  uint64_t epoch = 0;       // the highest epoch any reachable site knows
  uint64_t new_epoch = 0;   // the epoch the target takes
  Position final_pos;       // switchover resumed after the fence
  size_t first_step = 0;    // index into the command's step table
  std::string loss_report;  // failover: what may be lost
  LossEstimate loss;        // failover: the figures behind loss_report
};

// Switchover steps: 0 fence, 1 catch up, 2 promote, 3 re-point, 4 demote, 5 settle.
Plan PlanSwitchover(const std::vector<SiteReport>& sites, const std::string& target);

struct FailoverChecks {
  bool force = false;
  bool allow_behind = false;
  double max_lag_s = -1;  // < 0: no limit
  bool accept_loss = false;
};
// Failover steps: 0 promote, 1 re-point, 2 settle.
Plan PlanFailover(const std::vector<SiteReport>& sites, const std::string& target,
                  const FailoverChecks& checks);

}  // namespace geosync::promote
