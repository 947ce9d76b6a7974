// Replica database steps of a seed. Errors name the table and the SQLSTATE.
#include "agent/seed/replica_db.h"
#include "common/replication_origin.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <set>

namespace geosync::seed {

Result<PgConn> ConnectForSeed(const std::string& conninfo) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(conninfo));
  auto r = conn.Exec(
      "SET session_replication_role = replica; SET DateStyle = 'ISO'; SET IntervalStyle = "
      "'postgres'; SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET synchronous_commit = "
      "off; SET statement_timeout = 0; SET lock_timeout = 0; SET application_name = "
      "'geosync_seed'; SET default_transaction_read_only = off");
  if (!r.ok()) return r.status().WithContext("setting up a seed session");
  return conn;
}

std::string QualifiedName(PgConn& conn, const std::string& schema, const std::string& name) {
  return conn.EscapeIdentifier(schema) + "." + conn.EscapeIdentifier(name);
}

Result<std::vector<bool>> ExistingTables(PgConn& conn, const SeedManifest& m) {
  std::vector<bool> out;
  for (const auto& t : m.tables) {
    GEOSYNC_ASSIGN_OR_RETURN(
        PgResult r, conn.ExecParams("SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', "
                                    "$1::text, $2::text)) IS NOT NULL",
                                    {t.schema, t.name}));
    out.push_back(r.Get(0, 0) == "t");
  }
  return out;
}

Status DropTables(PgConn& conn, const SeedManifest& m) {
  for (const auto& t : m.tables) {
    std::string name = QualifiedName(conn, t.schema, t.name);
    auto r = conn.Exec("DROP TABLE IF EXISTS " + name + " CASCADE");
    if (!r.ok()) return r.status().WithContext("dropping the partial copy of " + name);
  }
  return Status::Ok();
}

Status CreateSchema(PgConn& conn, const SeedManifest& m) {
  std::set<std::string> schemas;
  for (const auto& t : m.tables) schemas.insert(t.schema);
  for (const auto& s : schemas) {
    auto r = conn.Exec("CREATE SCHEMA IF NOT EXISTS " + conn.EscapeIdentifier(s));
    if (!r.ok()) return r.status().WithContext("creating schema " + s);
  }
  if (m.pre_data.empty()) return Status::Ok();
  auto r = conn.Exec(m.pre_data);
  if (!r.ok()) return r.status().WithContext("loading the schema (pg_dump pre-data)");
  return Status::Ok();
}

Status TruncateTables(PgConn& conn, const SeedManifest& m) {
  if (m.tables.empty()) return Status::Ok();
  std::string list;
  for (const auto& t : m.tables) {
    list += (list.empty() ? "" : ", ") + QualifiedName(conn, t.schema, t.name);
  }
  auto r = conn.Exec("TRUNCATE " + list);
  if (!r.ok()) return r.status().WithContext("emptying the stale copy (TRUNCATE " + list + ")");
  return Status::Ok();
}

Status RunPostData(PgConn& conn, const SeedManifest& m) {
  if (m.post_data.empty()) return Status::Ok();
  auto r = conn.Exec(m.post_data);
  if (!r.ok()) return r.status().WithContext("loading indexes and constraints (pg_dump post-data)");
  return Status::Ok();
}

Status SetSequences(PgConn& conn, const SeedManifest& m) {
  for (const auto& s : m.sequences) {
    auto r = conn.ExecParams(
        "SELECT pg_catalog.setval(c.oid, $3::bigint, $4::boolean) FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
        "c.relname = $2 AND c.relkind = 'S'",
        {s.schema, s.name, std::to_string(s.last_value), s.is_called ? "true" : "false"});
    if (!r.ok())
      return r.status().WithContext(fmt::format("setting sequence {}.{}", s.schema, s.name));
  }
  return Status::Ok();
}

Status SetOrigin(PgConn& conn, const std::string& prefix, Position consistent) {
  const std::string name = OriginName(prefix, consistent.epoch);
  auto dropped = conn.ExecParams(
      "SELECT pg_catalog.pg_replication_origin_drop(roname) FROM pg_catalog.pg_replication_origin "
      "WHERE pg_catalog.starts_with(roname, $1)",
      {OriginNameStart(prefix)});
  if (!dropped.ok()) return dropped.status().WithContext("dropping the old replication origins");
  auto created = conn.ExecParams(
      "SELECT pg_catalog.pg_replication_origin_create($1), "
      "pg_catalog.pg_replication_origin_advance($1, $2::pg_catalog.pg_lsn)",
      {name, consistent.lsn.ToString()});
  if (!created.ok()) return created.status().WithContext("setting replication origin " + name);
  spdlog::info("seed: replication origin {} at {}", name, consistent.lsn.ToString());
  return Status::Ok();
}

Status CopyIn::Begin(const SeedTable& t) {
  table_ = QualifiedName(*conn_, t.schema, t.name);
  std::string columns;
  for (const auto& c : t.columns)
    columns += (columns.empty() ? "" : ", ") + conn_->EscapeIdentifier(c);
  auto begin = conn_->Exec("BEGIN");
  if (!begin.ok()) return begin.status();
  std::string sql = columns.empty() ? fmt::format("COPY {} FROM STDIN", table_)
                                    : fmt::format("COPY {} ({}) FROM STDIN", table_, columns);
  PgResult r(PQexec(conn_->get(), sql.c_str()));
  if (PQresultStatus(r.get()) != PGRES_COPY_IN) {
    return StatusFromPg(conn_->get(), r.get(), "starting COPY into " + table_);
  }
  return Status::Ok();
}

Status CopyIn::Put(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return Status::Ok();
  if (PQputCopyData(conn_->get(), reinterpret_cast<const char*>(bytes.data()),
                    static_cast<int>(bytes.size())) != 1) {
    return StatusFromPg(conn_->get(), nullptr, "COPY into " + table_);
  }
  return Status::Ok();
}

Status CopyIn::End() {
  if (PQputCopyEnd(conn_->get(), nullptr) != 1) {
    return StatusFromPg(conn_->get(), nullptr, "ending COPY into " + table_);
  }
  Status st;
  while (PGresult* raw = PQgetResult(conn_->get())) {
    PgResult r(raw);
    if (PQresultStatus(raw) != PGRES_COMMAND_OK && st.ok()) {
      st = StatusFromPg(conn_->get(), raw, "COPY into " + table_);
    }
  }
  if (!st.ok()) {
    (void)conn_->Exec("ROLLBACK");
    return st;
  }
  auto commit = conn_->Exec("COMMIT");
  if (!commit.ok()) return commit.status().WithContext("committing COPY into " + table_);
  return Status::Ok();
}

}  // namespace geosync::seed
