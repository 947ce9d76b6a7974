// The applier's session: connecting, session settings, the replication
// origin apply resumes from, and what the replica has flushed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "agent/replica/applier.h"
#include "common/replication_origin.h"

namespace geosync {

// ---- Session -------------------------------------------------------------------

// Every session connects; the first reads the origin apply resumes from.
Status Applier::Connect() {
  Disconnect();
  for (auto& session : sessions_) {
    auto conn = PgConn::Connect(options_.conninfo);
    if (!conn.ok()) return conn.status();
    session->conn = std::move(conn).value();
    GEOSYNC_RETURN_IF_ERROR(SetUpSession(*session));
  }
  s_ = sessions_.front().get();
  GEOSYNC_RETURN_IF_ERROR(LoadOrigin());
  return units_.Open(*spool_, resume_from_);
}

std::string Applier::SessionSettingsSql() const {
  return fmt::format(
      "SET session_replication_role = replica; SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; "
      "SET extra_float_digits = 3; SET search_path = ''; SET statement_timeout = 0; "
      "SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
      "SET default_transaction_read_only = off; "
      "SET application_name = 'geosync_applier'; SET synchronous_commit = {}",
      options_.batch.synchronous_commit ? "on" : "off");
}

Status Applier::SetUpSession(ApplySession& session) {
  // Replica role: no user triggers, no FK triggers, no event triggers (so
  // applied DDL is not captured again). Text values round-trip exactly under
  // the capture session's TimeZone, DateStyle and extra_float_digits. An empty
  // search_path, as PostgreSQL's own apply worker uses: every name we send is
  // schema-qualified. Writable even where geosync fenced the database
  // read-only for applications (an old primary that now follows).
  std::string sql = SessionSettingsSql();
  auto r = session.conn.Exec(sql);
  check_reorder_ = true;
  if (!r.ok()) return r.status().WithContext("setting up the apply session");
  auto guard =
      session.conn.QueryValue("SELECT pg_catalog.to_regproc('_geosync.guard_tables') IS NOT NULL");
  if (!guard.ok()) return guard.status().WithContext("looking for the write guard");
  write_guard_ = *guard == "t";
  return Status::Ok();
}

void Applier::Disconnect() {
  for (auto& session : sessions_) {
    session->conn = PgConn();
    session->pipeline.Reset();
    session->cache.Clear();
    session->units = {};
    session->group.clear();
    session->writes = Writeset{};
  }
  in_flight_.clear();
  s_ = sessions_.front().get();
  origin_set_up_ = false;
  units_.Close();
  runs_.clear();
}

// Finds the newest epoch's origin and its flushed progress. The next
// transaction's commit LSN is at least the previous one's end LSN, so reading
// the spool after (epoch, end_lsn - 1) resumes exactly at the next one.
Status Applier::LoadOrigin() {
  auto r = s_->conn.ExecParams(
      "SELECT roname, pg_catalog.pg_replication_origin_progress(roname, true) "
      "FROM pg_catalog.pg_replication_origin WHERE pg_catalog.starts_with(roname, $1)",
      {OriginNameStart(options_.origin_name_prefix)});
  if (!r.ok()) return r.status().WithContext("reading replication origins");
  bool found = false;
  uint64_t best_epoch = 0;
  Lsn best_lsn;
  for (int i = 0; i < r->rows(); ++i) {
    const std::optional<uint64_t> named = OriginEpoch(options_.origin_name_prefix, r->Get(i, 0));
    if (!named) continue;  // another prefix
    const uint64_t epoch = *named;
    if (found && epoch < best_epoch) continue;
    found = true;
    best_epoch = epoch;
    best_lsn = Lsn();
    if (auto text = r->GetOpt(i, 1)) {
      GEOSYNC_ASSIGN_OR_RETURN(best_lsn, Lsn::Parse(*text));
    }
  }
  if (!found) {
    resume_from_ = Position{};
    spdlog::info("apply: no replication origin {}_e*: applying the spool from its start",
                 options_.origin_name_prefix);
    return Status::Ok();
  }
  resume_from_ = Position{best_epoch, best_lsn.valid() ? Lsn(best_lsn.value() - 1) : Lsn()};
  {
    std::lock_guard lock(mu_);
    applied_ = flushed_ = last_txn_end_ = Position{best_epoch, best_lsn};
  }
  spdlog::info("apply: resuming after {} (origin {})", Position{best_epoch, best_lsn}.ToString(),
               OriginName(options_.origin_name_prefix, best_epoch));
  return UseOriginFor(best_epoch);
}

// Sets the session's origin to the one of `epoch`, creating it on the first
// transaction of a new epoch. Never inside a replica transaction.
Status Applier::UseOriginFor(uint64_t epoch) {
  if (origin_set_up_ && origin_epoch_ == epoch) return Status::Ok();
  if (origin_set_up_ && epoch < origin_epoch_) {
    return Status::Fenced(
        fmt::format("spool unit of epoch {} after epoch {} was applied", epoch, origin_epoch_));
  }
  const std::string name = OriginName(options_.origin_name_prefix, epoch);
  auto r = s_->conn.ExecParams(
      "SELECT pg_catalog.pg_replication_origin_create($1) WHERE NOT EXISTS "
      "(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = $1)",
      {name});
  if (!r.ok()) return r.status().WithContext("creating replication origin " + name);
  if (origin_per_commit_) {  // each commit takes it (SendCommit)
    origin_set_up_ = true;
    origin_epoch_ = epoch;
    origin_name_ = name;
    spdlog::info("apply: commits take replication origin {} in turn", name);
    return Status::Ok();
  }
  if (origin_set_up_) {
    auto reset = s_->conn.Exec("SELECT pg_catalog.pg_replication_origin_session_reset()");
    if (!reset.ok()) return reset.status().WithContext("resetting the session's origin");
    origin_set_up_ = false;
  }
  auto setup =
      s_->conn.ExecParams("SELECT pg_catalog.pg_replication_origin_session_setup($1)", {name});
  if (!setup.ok()) return setup.status().WithContext("setting up replication origin " + name);
  origin_set_up_ = true;
  origin_epoch_ = epoch;
  origin_name_ = name;
  spdlog::info("apply: session uses replication origin {}", name);
  return Status::Ok();
}

// With synchronous_commit = off, commits reach the replica's disk a little
// later; asking the origin's progress with flush = true flushes WAL up to it
// and says what is durable.
Status Applier::UpdateFlushed(bool force) {
  if (!origin_set_up_ || s_->pipeline.in_pipeline()) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(CheckConnected());
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_flush_check_ < std::chrono::seconds(1)) return Status::Ok();
  Position applied;
  {
    std::lock_guard lock(mu_);
    if (flushed_ == applied_) return Status::Ok();
    applied = applied_;
  }
  last_flush_check_ = now;
  auto r = s_->conn.ExecParams("SELECT pg_catalog.pg_replication_origin_progress($1, true)",
                               {origin_name_});
  if (!r.ok()) return r.status().WithContext("reading the origin's flushed progress");
  auto text = r->GetOpt(0, 0);
  if (!text) return Status::Ok();
  GEOSYNC_ASSIGN_OR_RETURN(Lsn lsn, Lsn::Parse(*text));
  std::lock_guard lock(mu_);
  Position progress{origin_epoch_, lsn};
  // Heartbeats after the last transaction are flushed once it is.
  flushed_ = progress >= last_txn_end_ ? applied : progress;
  return Status::Ok();
}

}  // namespace geosync
