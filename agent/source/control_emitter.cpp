// ControlEmitter: heartbeats and sequence snapshots as logical messages.
#include "agent/source/control_emitter.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/pg/pg_conn.h"

namespace geosync {
namespace {

std::string HeartbeatSql(const ControlEmitterOptions& o, PgConn& conn) {
  return fmt::format(
      "SELECT pg_logical_emit_message(true, 'geosync.heartbeat', "
      "json_build_object('site', {}::text, 'epoch', {}::bigint, "
      "'time_us', (extract(epoch from clock_timestamp()) * 1000000)::bigint, "
      "'wal_lsn', pg_current_wal_lsn()::text)::text)",
      conn.EscapeLiteral(o.site), o.epoch);
}

constexpr const char* kSequencesSql =
    "SELECT pg_logical_emit_message(true, 'geosync.sequences', "
    "coalesce(json_agg(json_build_object('schema', schemaname, 'name', sequencename, "
    "'last_value', last_value))::text, '[]')) "
    "FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL";

Status EmitWith(PgConn& conn, const ControlEmitterOptions& o, bool sequences) {
  // Heartbeats must not wait for synchronous standbys (policy sync with every
  // site down would block this thread, and shutdown with it).
  GEOSYNC_RETURN_IF_ERROR(conn.Exec("SET synchronous_commit = local").status());
  GEOSYNC_RETURN_IF_ERROR(conn.Exec(HeartbeatSql(o, conn)).status());
  if (sequences) GEOSYNC_RETURN_IF_ERROR(conn.Exec(kSequencesSql).status());
  return Status::Ok();
}

}  // namespace

Status ControlEmitter::EmitOnce(const ControlEmitterOptions& options, bool sequences) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(options.conninfo));
  return EmitWith(conn, options, sequences);
}

void ControlEmitter::Start() {
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void ControlEmitter::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ControlEmitter::Loop() {
  PgConn conn;
  uint64_t n = 0;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    if (!conn.connected()) {
      auto c = PgConn::Connect(options_.conninfo);
      if (c.ok()) {
        conn = std::move(c).value();
      } else {
        spdlog::warn("heartbeat: {}", c.status().ToString());
      }
    }
    if (conn.connected()) {
      bool sequences = options_.sequence_every > 0 && n % options_.sequence_every == 0;
      Status st = EmitWith(conn, options_, sequences);
      if (st.ok()) {
        heartbeats_++;
        if (sequences) snapshots_++;
        ++n;
      } else {
        spdlog::warn("heartbeat: {}", st.ToString());
        conn = PgConn();
      }
    }
    lock.lock();
    cv_.wait_for(lock, options_.heartbeat_interval, [this] { return stop_; });
  }
}

ControlEmitterOptions ControlEmitterOptions::FromConfig(const Config& config, uint64_t epoch) {
  ControlEmitterOptions o;
  o.conninfo = config.postgres.dsn;
  o.site = config.site;
  o.epoch = epoch;
  o.heartbeat_interval = std::chrono::milliseconds(config.heartbeat_ms);
  return o;
}

}  // namespace geosync
