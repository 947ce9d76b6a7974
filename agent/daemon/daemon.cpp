// geosyncd's role loop: run the role state.json names until it stops, then
// carry out the role change it left behind, as the role table
// (agent/promote/role_machine.h) says. The roles themselves are
// source_role, replica_role and fenced_role.
#include "agent/daemon/daemon.h"

#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/daemon/fenced_role.h"
#include "agent/daemon/replica_role.h"
#include "agent/daemon/role_support.h"
#include "agent/daemon/source_role.h"
#include "agent/pg/pg_checks.h"
#include "agent/promote/role_machine.h"
#include "agent/promote/site_control.h"
#include "agent/state/state_file.h"

namespace geosync {
namespace {

Status RunRole(SiteControl& control, SiteRole role) {
  switch (role) {
    case SiteRole::kFenced:
      return RunFenced(control);
    case SiteRole::kSource:
      return RunSource(control);
    case SiteRole::kReplica:
      return RunReplica(control);
  }
  return Status::Ok();
}

// Runs the table's step for `next` from `from`. A change the table does not
// have is refused: the site keeps its role.
Status ChangeRole(SiteControl& control, SiteRole from, const NextRole& next) {
  const RoleTransition* t = FindTransition(from, next.kind);
  if (!t) {
    return Status::InvalidArgument(
        fmt::format("no role change \"{}\" from role {}", EventName(next.kind), RoleName(from)));
  }
  spdlog::info("role change: {} --{}--> {}{} ({})", RoleName(t->from), EventName(t->event),
               RoleName(t->to), t->step.empty() ? "" : fmt::format(" by {}", t->step), t->why);
  if (!t->run) return Status::Ok();
  return t->run(control, next);
}

}  // namespace

Status CheckPostgres(const Config& config) { return CheckPostgresForRole(config); }

Status CheckAdminSetup(const Config& config) {
  if (!config.admin.listen) return Status::Ok();
  return AdminOptionsFor(config).status();
}

Status RunDaemon(const Config& config) {
  SetPeerClientTls(config);
  GEOSYNC_ASSIGN_OR_RETURN(SiteState initial, LoadOrInitSiteState(config));
  SiteControl control(config, std::move(initial));
  while (true) {
    const SiteState state = control.state();
    const SiteRole role = RoleOf(state);
    spdlog::info("geosyncd {} site {} of cluster {}: role {}, epoch {}", GEOSYNC_VERSION,
                 config.site, config.cluster_id, RoleName(role), state.epoch);
    Status st = RunRole(control, role);
    const NextRole next = control.next();
    control.ClearNext();
    if (next.kind == NextRole::kExit) return st;
    if (!st.ok()) spdlog::warn("role ended with {} before the role change", st.ToString());
    Status changed = ChangeRole(control, role, next);
    control.SetStep("");
    if (!changed.ok()) {
      spdlog::error("role change failed: {}; the site keeps its role (run the command again)",
                    changed.ToString());
      (void)control.Update([&](SiteState& s) { s.promotion_error = changed.ToString(); });
      // Do not spin on a failure that will recur at once.
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace geosync
