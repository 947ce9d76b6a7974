// Promotion and fencing on the site's database; see site_ops.h.
#include "agent/promote/site_ops.h"

#include <charconv>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace geosync::promote {
namespace {

Result<std::string> CurrentDatabase(PgConn& conn) {
  GEOSYNC_ASSIGN_OR_RETURN(std::string db, conn.QueryValue("SELECT current_database()"));
  return conn.EscapeIdentifier(db);
}

Status AlterDatabase(PgConn& conn, const std::string& clause, std::string_view what) {
  GEOSYNC_ASSIGN_OR_RETURN(std::string db, CurrentDatabase(conn));
  auto r = conn.Exec(fmt::format("ALTER DATABASE {} {}", db, clause));
  if (!r.ok()) return r.status().WithContext(std::string(what));
  return Status::Ok();
}

// "schema.table" -> "schema"."table"; "table" -> "table".
std::string QuoteQualified(PgConn& conn, const std::string& name) {
  auto dot = name.find('.');
  if (dot == std::string::npos) return conn.EscapeIdentifier(name);
  return conn.EscapeIdentifier(name.substr(0, dot)) + "." +
         conn.EscapeIdentifier(name.substr(dot + 1));
}

Result<int64_t> ParseInt(const std::string& text, std::string_view what) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) {
    return Status::Protocol(fmt::format("{}: expected an integer, got \"{}\"", what, text));
  }
  return v;
}

}  // namespace

Result<PgConn> ConnectAdmin(const std::string& conninfo) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(conninfo));
  auto r = conn.Exec(
      "SET default_transaction_read_only = off; SET application_name = 'geosync_admin'; "
      "SET synchronous_commit = local; SET statement_timeout = 0; SET lock_timeout = '10s'; "
      "SET session_replication_role = replica");
  if (!r.ok()) return r.status().WithContext("setting up geosync's admin session");
  return conn;
}

Result<int> FenceDatabase(PgConn& conn, const GuardRequest& guard) {
  GEOSYNC_RETURN_IF_ERROR(AlterDatabase(conn, "SET default_transaction_read_only = on",
                                        "fencing the database read-only"));
  // Twice: a session that was connecting during the first pass has its
  // settings by the second and is read-only or ended.
  int ended = 0;
  for (int pass = 0; pass < 2; ++pass) {
    auto r = conn.Exec(
        "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_catalog.pg_backend_pid() "
        "AND backend_type = 'client backend' "
        "AND coalesce(application_name, '') NOT LIKE 'geosync%'");
    if (!r.ok()) return r.status().WithContext("ending write sessions of the fenced database");
    GEOSYNC_ASSIGN_OR_RETURN(int64_t n, ParseInt(r->Get(0, 0), "terminated sessions"));
    ended += static_cast<int>(n);
  }
  // Then the write guard, which a session that turns read-only off meets:
  // with the writers ended, its table locks wait for nobody.
  GEOSYNC_RETURN_IF_ERROR(SetWriteGuard(conn, guard).status());
  return ended;
}

Status UnfenceDatabase(PgConn& conn) {
  return AlterDatabase(conn, "RESET default_transaction_read_only", "lifting the fence");
}

Result<bool> DatabaseFenced(PgConn& conn) {
  Result<std::string> v = conn.QueryValue(
      "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s "
      "JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase "
      "WHERE d.datname = current_database() AND s.setrole = 0 "
      "AND 'default_transaction_read_only=on' = ANY (s.setconfig))");
  if (!v.ok()) return v.status().WithContext("reading the database's fence");
  return v->size() == 1 && (*v)[0] == 't';
}

Status StoreEpoch(PgConn& conn, uint64_t epoch) {
  return AlterDatabase(conn, fmt::format("SET geosync.epoch = '{}'", epoch),
                       fmt::format("storing epoch {} in the database", epoch));
}

Result<uint64_t> StoredEpoch(PgConn& conn) {
  auto r = conn.Exec(
      "SELECT split_part(c, '=', 2) FROM pg_catalog.pg_db_role_setting s "
      "JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c "
      "WHERE d.datname = current_database() AND s.setrole = 0 AND c LIKE 'geosync.epoch=%'");
  if (!r.ok()) return r.status().WithContext("reading the database's epoch");
  if (r->rows() == 0) return uint64_t{0};
  GEOSYNC_ASSIGN_OR_RETURN(int64_t v, ParseInt(r->Get(0, 0), "geosync.epoch"));
  return static_cast<uint64_t>(v);
}

Result<Lsn> EmitMarker(PgConn& conn, const std::string& text) {
  auto r = conn.ExecParams("SELECT pg_catalog.pg_logical_emit_message(true, 'geosync.marker', $1)",
                           {text});
  if (!r.ok()) return r.status().WithContext("emitting the geosync.marker message");
  return Lsn::Parse(r->Get(0, 0));
}

Result<std::vector<SequenceRaise>> RaiseSequences(PgConn& conn, int64_t gap) {
  auto seqs = conn.Exec(
      "SELECT seq.oid::pg_catalog.regclass::text, tbl.oid::pg_catalog.regclass::text, "
      "a.attname, ps.increment_by, ps.last_value, ps.max_value, ps.start_value "
      "FROM pg_catalog.pg_depend d "
      "JOIN pg_catalog.pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S' "
      "JOIN pg_catalog.pg_namespace n ON n.oid = seq.relnamespace "
      "JOIN pg_catalog.pg_sequences ps ON ps.schemaname = n.nspname "
      "AND ps.sequencename = seq.relname "
      "JOIN pg_catalog.pg_class tbl ON tbl.oid = d.refobjid "
      "JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
      "WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
      "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
      "AND d.deptype IN ('a', 'i') ORDER BY 1");
  if (!seqs.ok()) return seqs.status().WithContext("listing serial and identity sequences");
  std::vector<SequenceRaise> raised;
  for (int i = 0; i < seqs->rows(); ++i) {
    const std::string seq = seqs->Get(i, 0), table = seqs->Get(i, 1), column = seqs->Get(i, 2);
    GEOSYNC_ASSIGN_OR_RETURN(int64_t inc, ParseInt(seqs->Get(i, 3), seq + " increment"));
    if (inc <= 0) {
      spdlog::warn("promotion: sequence {} counts down (increment {}); left as it is", seq, inc);
      continue;
    }
    GEOSYNC_ASSIGN_OR_RETURN(int64_t max_value, ParseInt(seqs->Get(i, 5), seq + " max_value"));
    GEOSYNC_ASSIGN_OR_RETURN(int64_t start, ParseInt(seqs->Get(i, 6), seq + " start_value"));
    std::optional<int64_t> last;
    if (auto t = seqs->GetOpt(i, 4)) {
      GEOSYNC_ASSIGN_OR_RETURN(last, ParseInt(*t, seq + " last_value"));
    }
    auto mx = conn.Exec(
        fmt::format("SELECT max({})::bigint FROM {}", conn.EscapeIdentifier(column), table));
    if (!mx.ok()) return mx.status().WithContext(fmt::format("reading max({}.{})", table, column));
    std::optional<int64_t> max_col;
    if (auto t = mx->GetOpt(0, 0)) {
      GEOSYNC_ASSIGN_OR_RETURN(max_col, ParseInt(*t, table + "." + column));
    }
    const int64_t used = std::max(last.value_or(start - inc), max_col.value_or(start - inc));
    int64_t target = used;
    if (gap > 0) target = used > max_value - gap * inc ? max_value : used + gap * inc;
    if (last && target <= *last) continue;
    if (!last && target < start) continue;
    auto set = conn.ExecParams("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2, true)",
                               {seq, std::to_string(target)});
    if (!set.ok()) return set.status().WithContext("raising sequence " + seq);
    SequenceRaise r;
    r.sequence = seq;
    r.column = table + "." + column;
    r.before = last.value_or(start - inc);
    r.after = target;
    spdlog::info("promotion: sequence {} ({}) raised from {} to {}", seq, r.column, r.before,
                 r.after);
    raised.push_back(std::move(r));
  }
  return raised;
}

Status EnsurePublication(PgConn& conn, const std::string& publication,
                         const std::vector<std::string>& tables) {
  auto r =
      conn.ExecParams("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", {publication});
  if (!r.ok()) return r.status().WithContext("looking up publication " + publication);
  if (r->rows() > 0) return Status::Ok();
  std::string sql = "CREATE PUBLICATION " + conn.EscapeIdentifier(publication);
  if (tables.empty()) {
    sql += " FOR ALL TABLES";
  } else {
    sql += " FOR TABLE ";
    for (size_t i = 0; i < tables.size(); ++i) {
      if (i) sql += ", ";
      sql += QuoteQualified(conn, tables[i]);
    }
  }
  auto c = conn.Exec(sql);
  if (!c.ok()) return c.status().WithContext("creating publication " + publication);
  spdlog::info("promotion: created publication \"{}\"", publication);
  return Status::Ok();
}

Status DropSlot(PgConn& conn, const std::string& slot, std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    auto r = conn.ExecParams(
        "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", {slot});
    if (!r.ok()) return r.status().WithContext("looking up replication slot " + slot);
    if (r->rows() == 0) return Status::Ok();
    if (auto pid = r->GetOpt(0, 0)) {
      if (std::chrono::steady_clock::now() > until) {
        return Status::Timeout(fmt::format(
            "replication slot \"{}\" is still in use by pid {}; stop its consumer", slot, *pid));
      }
      auto t = conn.ExecParams("SELECT pg_catalog.pg_terminate_backend($1::int)", {*pid});
      if (!t.ok()) return t.status().WithContext("ending the session holding slot " + slot);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    auto d = conn.ExecParams("SELECT pg_catalog.pg_drop_replication_slot($1)", {slot});
    if (d.ok()) {
      spdlog::info("promotion: dropped replication slot \"{}\"", slot);
      return Status::Ok();
    }
    // SQLSTATE 55006: it became active again between the two statements.
    if (std::chrono::steady_clock::now() > until) {
      return d.status().WithContext("dropping replication slot " + slot);
    }
  }
}

Status RecreateSlot(PgConn& conn, const std::string& slot, std::chrono::milliseconds deadline) {
  GEOSYNC_RETURN_IF_ERROR(DropSlot(conn, slot, deadline));
  auto r = conn.ExecParams(
      "SELECT lsn FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')", {slot});
  if (!r.ok()) return r.status().WithContext("creating replication slot " + slot);
  spdlog::info("promotion: created replication slot \"{}\" at {}", slot, r->Get(0, 0));
  return Status::Ok();
}

Status SetOriginProgress(PgConn& conn, const std::string& name, Lsn lsn) {
  auto c = conn.ExecParams(
      "SELECT pg_catalog.pg_replication_origin_create($1) WHERE NOT EXISTS "
      "(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = $1)",
      {name});
  if (!c.ok()) return c.status().WithContext("creating replication origin " + name);
  auto a =
      conn.ExecParams("SELECT pg_catalog.pg_replication_origin_advance($1, $2::pg_catalog.pg_lsn)",
                      {name, lsn.ToString()});
  if (!a.ok()) return a.status().WithContext("setting the progress of replication origin " + name);
  return Status::Ok();
}

}  // namespace geosync::promote
