// The applier's logical messages: DDL captured on the source
// (geosync.ddl, run only when it passes the allow-list and names its role)
// and sequence snapshots (geosync.sequences, raised, never lowered).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "agent/replica/applier.h"
#include "common/ddl_text.h"
#include "common/logical_message.h"

namespace geosync {
namespace {

// Raises a sequence to the shipped value, never lowers it. One row when the
// sequence exists (NULL when it was already high enough), none when it does not.
constexpr std::string_view kSetvalSql =
    "SELECT CASE WHEN s.last_value IS NULL OR s.last_value < $3::pg_catalog.int8 THEN "
    "pg_catalog.setval(pg_catalog.format('%I.%I', s.schemaname, s.sequencename)::"
    "pg_catalog.regclass, $3::pg_catalog.int8, true) END "
    "FROM pg_catalog.pg_sequences s WHERE s.schemaname = $1 AND s.sequencename = $2";

}  // namespace

Status Applier::SendMessage(const MessageEvent& message, int index) {
  if (message.prefix == kDdlPrefix) return RunDdl(message.content, index);
  if (message.prefix == kSequencesPrefix) return SendSequences(message.content, index);
  return Status::Ok();  // heartbeats and markers: progress only
}

// A DDL message: {"sql": ..., "search_path": ..., "role": ...}, written by
// the trigger of schemas/ddl_capture.sql (only it and superusers may emit
// messages on an initialised primary). Its text is a client's query string:
// only the allow-listed DDL in it runs (common/ddl_text.h), as the role that
// ran it on the source, so it can do no more here than there. A message
// that fails the check is not run, is logged with its transaction and
// position, and counted (ddl_refused); apply goes on. The query string may
// hold several statements, which only the simple query protocol runs, so the
// pipeline is drained and left for it. Prepared statements may depend on the
// old table shapes: all are deallocated afterwards.
Status Applier::RunDdl(const std::string& content, int index) {
  auto parsed = ParseDdlMessage(content);
  if (!parsed.ok()) return UnitError(index, "", parsed.status());
  std::string sql = std::move(parsed->sql);
  const std::string search_path = std::move(parsed->search_path);
  const std::string role = std::move(parsed->role);
  // A caller of _geosync.emit_ddl_message inside DDL can repeat a genuine
  // message: a text runs once per source transaction.
  if (std::find(ddl_texts_.begin(), ddl_texts_.end(), sql) != ddl_texts_.end()) {
    return Status::Ok();
  }
  ddl_texts_.push_back(sql);
  DdlReplay replay = DdlToReplay(sql);
  if (replay.refusal.empty() && role.empty()) {
    replay.refusal =
        "it names no role (written before `geosyncctl init` was rerun on the source, or not by "
        "geosync)";
  }
  if (!replay.refusal.empty()) {
    RefuseDdl(sql, replay.refusal, index);
    return Status::Ok();
  }
  for (const std::string& left_out : replay.skipped) {
    spdlog::info(
        "apply: of DDL [{}], not running [{}]: transaction control, session settings, or data "
        "that arrives as row changes",
        sql.substr(0, 120), left_out.substr(0, 120));
  }
  sql = std::move(replay.sql);
  GEOSYNC_RETURN_IF_ERROR(s_->pipeline.Sync());
  GEOSYNC_RETURN_IF_ERROR(s_->pipeline.Drain(0));
  if (!s_->pipeline.error().ok()) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(s_->pipeline.Exit());
  const std::string target = fmt::format(" running DDL [{}] as role {}", sql.substr(0, 120), role);
  // After the DDL, whatever a function it ran set for the session is
  // undone: the apply session's own settings are asserted again.
  // A table it created gets the write guard in the same transaction
  // (agent/pg/write_guard.h).
  std::vector<std::string> steps = {
      fmt::format("SELECT pg_catalog.set_config('search_path', {}, true)",
                  s_->conn.EscapeLiteral(search_path)),
      "SET LOCAL ROLE " + s_->conn.EscapeIdentifier(role),
      sql,
      "RESET ROLE; SET LOCAL search_path TO ''; DEALLOCATE ALL",
      SessionSettingsSql(),
  };
  if (write_guard_) steps.push_back("SELECT _geosync.guard_tables()");
  for (const std::string& step : steps) {
    PgResult r(PQexec(s_->conn.get(), step.c_str()));
    auto status = PQresultStatus(r.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      Status err = PgError(s_->conn.get(), r.get());
      if (err.retryable()) return err.WithContext("running DDL");
      if (&step == &steps[1]) {
        err = Status(err.code(),
                     fmt::format("{}: role {} ran this DDL on the source; create the role on this "
                                 "site (roles are not replicated) or skip the transaction",
                                 err.message(), role),
                     err.sqlstate());
      }
      s_->pipeline.error() = UnitError(index, target, err);
      return s_->pipeline.Enter();  // the caller syncs and rolls back
    }
  }
  s_->cache.Clear();
  // Every session's prepared statements may name the old shapes (parameter
  // types are fixed at the first Parse). DDL is a barrier: the other
  // sessions are idle.
  for (auto& session : sessions_) {
    if (session.get() == s_) continue;
    session->cache.Clear();
    if (!session->conn.connected()) continue;
    auto r = session->conn.Exec("DEALLOCATE ALL");
    if (!r.ok()) return r.status().WithContext("deallocating statements after DDL");
  }
  // The DDL may have added a trigger that fires during apply.
  reorder_ok_ = false;
  check_reorder_ = true;
  return s_->pipeline.Enter();
}

void Applier::RefuseDdl(const std::string& sql, const std::string& why, int index) {
  const Unit* u =
      index >= 0 && static_cast<size_t>(index) < s_->units.size() ? &s_->units[index] : nullptr;
  // A group applied again (one at a time, or after a reconnect) meets the
  // same message again: log and count it once.
  std::pair<Position, size_t> key{u ? u->position : Position{}, ddl_texts_.size()};
  if (key <= ddl_refused_upto_) return;
  ddl_refused_upto_ = key;
  std::string who =
      !u          ? "a spool unit"
      : u->is_txn ? fmt::format("xid {} (commit {})", u->begin.xid, u->commit.commit_lsn.ToString())
                  : fmt::format("spool unit {}", u->position.ToString());
  spdlog::warn("apply: refused DDL message of {} at {}: {}; not run: [{}]", who,
               u ? u->position.ToString() : "?", why, sql.substr(0, 200));
  std::lock_guard lock(mu_);
  stats_.ddl_refused++;
}

// A sequence snapshot: [{"schema": ..., "name": ..., "last_value": ...}].
Status Applier::SendSequences(const std::string& content, int index) {
  auto seqs = ParseSequencesMessage(content);
  if (!seqs.ok()) return UnitError(index, "", seqs.status());
  for (const SequenceValue& s : *seqs) {
    bool created = false;
    const auto& entry = s_->cache.GetFixed("setval", kSetvalSql, 3, &created);
    Datum schema{DatumKind::kText, s.schema};
    Datum name{DatumKind::kText, s.name};
    Datum value{DatumKind::kText, s.last_value};
    const Datum* params[] = {&schema, &name, &value};
    Expected expected{Expected::kSequence, index, " to sequence " + s.schema + "." + s.name};
    GEOSYNC_RETURN_IF_ERROR(s_->pipeline.SendPrepared(entry, created, params, std::move(expected)));
  }
  return Status::Ok();
}

}  // namespace geosync
