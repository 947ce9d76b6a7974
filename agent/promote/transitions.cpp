// Role transitions; see transitions.h.
#include "agent/promote/transitions.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/promote/site_ops.h"
#include "agent/spool/spool.h"
#include "common/replication_origin.h"

namespace geosync {
namespace {

constexpr auto kSlotDeadline = std::chrono::seconds(30);

// The last position the site's spool holds durably (its own stream as a
// source, or what it received as a replica).
Result<Position> SpoolEnd(const Config& config) {
  SpoolOptions o;
  o.dir = config.spool.dir;
  o.segment_bytes = config.spool.segment_bytes;
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(o));
  return spool->durable();
}

}  // namespace

Result<Lsn> FenceForSwitchover(const Config& config, const std::string& target, uint64_t epoch) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  GuardRequest guard{false,     config.site,
                     "fenced",  target,
                     epoch - 1, fmt::format("a switchover to site {} is under way", target)};
  GEOSYNC_ASSIGN_OR_RETURN(int ended, promote::FenceDatabase(conn, guard));
  spdlog::warn("switchover to {} (epoch {}): database fenced read-only, {} session(s) ended",
               target, epoch, ended);
  GEOSYNC_ASSIGN_OR_RETURN(
      Lsn marker, promote::EmitMarker(conn, fmt::format("switchover from {} to {} epoch {}",
                                                        config.site, target, epoch)));
  spdlog::info("switchover: final marker at {}", marker.ToString());
  return marker;
}

Status Promote(SiteControl& control, const NextRole& next) {
  const Config& config = control.config();
  SiteState before = control.state();
  spdlog::warn("{}: promoting site {} to source at epoch {} (was a replica at epoch {})",
               next.reason, config.site, next.epoch, before.epoch);
  GEOSYNC_ASSIGN_OR_RETURN(Position end, SpoolEnd(config));
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  GEOSYNC_RETURN_IF_ERROR(promote::UnfenceDatabase(conn));
  GEOSYNC_ASSIGN_OR_RETURN(auto raised, promote::RaiseSequences(conn, next.sequence_gap));
  GEOSYNC_RETURN_IF_ERROR(promote::StoreEpoch(conn, next.epoch));
  GEOSYNC_RETURN_IF_ERROR(
      promote::EnsurePublication(conn, config.postgres.publication, config.postgres.tables));
  GEOSYNC_RETURN_IF_ERROR(promote::RecreateSlot(conn, config.postgres.slot, kSlotDeadline));
  GEOSYNC_RETURN_IF_ERROR(control.Update([&](SiteState& s) {
    if (end.lsn.valid() && end.epoch < next.epoch && !s.EpochEnd(end.epoch)) {
      s.history.push_back(end);
    }
    s.epoch = next.epoch;
    s.role = Role::kSource;
    s.source_site = config.site;
    s.upstream.reset();
    s.peers = next.peers;
    s.db_fenced = false;
    s.promotion_target.clear();
    s.promotion_epoch = 0;
    s.promotion_final = Position{};
    s.promotion_error.clear();
  }));
  spdlog::warn(
      "{}: site {} is the source at epoch {}; epoch {} ended here at {}; {} sequence(s) "
      "raised",
      next.reason, config.site, next.epoch, end.epoch, end.ToString(), raised.size());
  return Status::Ok();
}

Status Demote(SiteControl& control, const NextRole& next) {
  const Config& config = control.config();
  GEOSYNC_ASSIGN_OR_RETURN(Position end, SpoolEnd(config));
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  GuardRequest guard{false, config.site, "replica", next.source_site, control.state().epoch, ""};
  GEOSYNC_RETURN_IF_ERROR(promote::FenceDatabase(conn, guard).status());
  GEOSYNC_RETURN_IF_ERROR(promote::DropSlot(conn, config.postgres.slot, kSlotDeadline));
  if (end.lsn.valid() && !next.reseed) {
    // The database holds its own stream up to `end`: record it as applied,
    // so apply resumes strictly after it (origin progress is an end LSN).
    GEOSYNC_RETURN_IF_ERROR(promote::SetOriginProgress(
        conn, OriginName(OriginPrefix(config.cluster_id), end.epoch), Lsn(end.lsn.value() + 1)));
  }
  GEOSYNC_RETURN_IF_ERROR(control.Update([&](SiteState& s) {
    s.fenced = false;  // a rejoining old primary: its divergence was exported
    s.fence_reason.clear();
    s.role = Role::kReplica;
    s.source_site = next.source_site;
    s.upstream = next.upstream;
    s.db_fenced = true;
    s.promotion_target.clear();
    s.promotion_epoch = 0;
    s.promotion_final = Position{};
    s.promotion_error.clear();
    if (next.reseed) {
      // Diverged: its tables are emptied and copied again from the source
      // before it streams (agent/seed); the seed sets the origin and spool.
      s.seed_state = SeedState::kInProgress;
      s.seed_created_schema = false;
    }
  }));
  spdlog::warn("site {} is now a replica of {} ({}:{}), resuming after its own last position {}",
               config.site, next.source_site, next.upstream.host, next.upstream.port,
               end.ToString());
  return Status::Ok();
}

Status Unfence(SiteControl& control) {
  const Config& config = control.config();
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  GEOSYNC_RETURN_IF_ERROR(promote::UnfenceDatabase(conn));
  GEOSYNC_RETURN_IF_ERROR(control.Update([](SiteState& s) {
    s.db_fenced = false;
    s.promotion_target.clear();
    s.promotion_epoch = 0;
    s.promotion_final = Position{};
    s.promotion_error.clear();
  }));
  spdlog::warn("switchover called off: site {} lifted its fence and stays the source", config.site);
  return Status::Ok();
}

Status FenceStale(SiteControl& control, const std::string& reason) {
  const Config& config = control.config();
  spdlog::critical("site {} fences itself: {}", config.site, reason);
  GEOSYNC_RETURN_IF_ERROR(control.Update([&](SiteState& s) {
    s.fenced = true;
    s.fence_reason = reason;
  }));
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  GuardRequest guard{false, config.site, "fenced", "", control.state().epoch, reason};
  GEOSYNC_ASSIGN_OR_RETURN(int ended, promote::FenceDatabase(conn, guard));
  spdlog::critical("site {}: database fenced read-only, {} session(s) ended", config.site, ended);
  return control.Update([&](SiteState& s) { s.db_fenced = true; });
}

}  // namespace geosync
