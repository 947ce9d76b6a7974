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

namespace geosync::ctl {

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
std::vector<SiteReport> Survey(const admin::Topology& topology, const std::string& token = "");
// A table for the DBA: site, role, epoch, state, follows, durable, applied.
std::string FormatSurvey(const std::vector<SiteReport>& sites);

struct Plan {
  std::string refusal;  // non-empty: refuse, with this reason
  std::string old_source;
  uint64_t epoch = 0;       // the highest epoch any reachable site knows
  uint64_t new_epoch = 0;   // the epoch the target takes
  Position final_pos;       // switchover resumed after the fence
  size_t first_step = 0;    // index into the command's step table
  std::string loss_report;  // failover: what may be lost
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

}  // namespace geosync::ctl
