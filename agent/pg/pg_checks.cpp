// The PostgreSQL checks of geosyncd's start-up and of geosyncctl check-config.
// Every finding says what to change: a postgresql.conf setting, a role
// attribute or an ALTER TABLE.
#include "agent/pg/pg_checks.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "agent/pg/pg_conn.h"
#include "agent/pg/write_guard.h"

namespace geosync {
namespace {

Result<PgConn> ConnectSite(const Config& config) {
  // Bound the connection attempt unless the user chose a timeout.
  setenv("PGCONNECT_TIMEOUT", "5", /*overwrite=*/0);
  auto conn = PgConn::Connect(config.postgres.dsn);
  if (!conn.ok()) {
    return conn.status().WithContext(fmt::format("site {} (config {})", config.site, config.path));
  }
  return conn;
}

CheckItem Ok(std::string subject, std::string found) {
  CheckItem item;
  item.subject = std::move(subject);
  item.found = std::move(found);
  return item;
}

CheckItem Problem(std::string subject, Code code, std::string found, std::string fix) {
  return CheckItem::Failed(std::move(subject), code, std::move(found), std::move(fix));
}

CheckItem QueryFailed(std::string subject, const Status& st) {
  return Problem(std::move(subject), Code::kPostgres, st.ToString(),
                 "grant the geosync user read access to the catalog views, or run the check "
                 "as a superuser");
}

CheckItem CheckWalLevel(PgConn& conn) {
  auto level = conn.QueryValue("SHOW wal_level");
  if (!level.ok()) return QueryFailed("wal_level", level.status());
  if (*level == "logical") return Ok("wal_level", "logical");
  return Problem("wal_level", Code::kConfig, *level,
                 "set wal_level = logical in postgresql.conf and restart PostgreSQL (every "
                 "site needs it: any site may become the source after a switchover)");
}

// A setting that must cover geosync's own slots plus what others use now.
CheckItem CheckCapacity(PgConn& conn, const std::string& setting, const std::string& in_use_sql,
                        const std::string& slot, const std::string& used_for) {
  auto value = conn.QueryValue("SHOW " + setting);
  if (!value.ok()) return QueryFailed(setting, value.status());
  auto others = conn.ExecParams(in_use_sql, {slot});
  if (!others.ok()) return QueryFailed(setting, others.status());
  int have = std::atoi(value->c_str());
  int used = std::atoi(others->Get(0, 0).c_str());
  int need = kGeosyncSlotsNeeded + used;
  std::string found = fmt::format("{} (needs {}: {} for geosync, {} {})", have, need,
                                  kGeosyncSlotsNeeded, used, used_for);
  if (have >= need) return Ok(setting, found);
  return Problem(setting, Code::kConfig, found,
                 fmt::format("set {} = {} (or more) in postgresql.conf and restart PostgreSQL",
                             setting, std::max(need, 10)));
}

CheckItem CheckReplicationRole(PgConn& conn) {
  auto r = conn.Exec(
      "SELECT current_user, rolsuper OR rolreplication FROM pg_catalog.pg_roles "
      "WHERE rolname = current_user");
  if (!r.ok()) return QueryFailed("REPLICATION attribute", r.status());
  if (r->rows() == 1 && r->Get(0, 1) == "t") {
    return Ok("REPLICATION attribute", "user " + r->Get(0, 0) + " has it");
  }
  std::string user = r->rows() == 1 ? r->Get(0, 0) : "?";
  return Problem("REPLICATION attribute", Code::kConfig,
                 fmt::format("user {} has neither REPLICATION nor SUPERUSER", user),
                 fmt::format("ALTER ROLE {} REPLICATION; (the source streams through a "
                             "replication connection)",
                             conn.EscapeIdentifier(user)));
}

// PostgreSQL grants pg_logical_emit_message to PUBLIC: until `geosyncctl
// init` revokes it, any login could write geosync control messages (DDL that
// replicas run) into the WAL. The number of its signatures PUBLIC may run.
Result<int> PublicMayEmitMessages(PgConn& conn) {
  auto n = conn.QueryValue(
      "SELECT count(*) FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode("
      "coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a "
      "WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = "
      "'pg_catalog'::pg_catalog.regnamespace AND a.grantee = 0 AND a.privilege_type = "
      "'EXECUTE'");
  if (!n.ok()) return n.status();
  return n->empty() || n->front() == '0' ? 0 : 1;
}

constexpr const char* kControlMessages = "control messages";

std::string InitFix(PgConn& conn) {
  const char* db = PQdb(conn.get());
  return fmt::format(
      "run `geosyncctl init --dsn \"dbname={} ...\"` as a superuser on this site's database "
      "(it revokes pg_logical_emit_message from PUBLIC; docs/security.md)",
      db ? db : "?");
}

CheckItem CheckControlMessages(PgConn& conn, Role role) {
  auto n = PublicMayEmitMessages(conn);
  if (!n.ok()) return QueryFailed(kControlMessages, n.status());
  if (*n == 0) return Ok(kControlMessages, "only superusers may emit them");
  CheckItem item = Problem(kControlMessages, Code::kConfig,
                           "PUBLIC may run pg_logical_emit_message: any login could forge DDL "
                           "that replicas run",
                           InitFix(conn));
  if (role == Role::kReplica) {
    // Only a source reads its WAL; a replica needs it once promoted.
    item.code = Code::kOk;
    item.warning = true;
  }
  return item;
}

// The write guard: installed, and what it says now. A source's is opened
// by geosyncd when it starts; a replica's is closed.
CheckItem CheckWriteGuard(PgConn& conn, const Config& config) {
  constexpr const char* kSubject = "write guard";
  if (Status st = CheckWriteGuardInstalled(conn, config.site); !st.ok()) {
    return Problem(kSubject, Code::kConfig, "not installed", InitFix(conn));
  }
  auto g = ReadWriteGuard(conn);
  if (!g.ok()) return QueryFailed(kSubject, g.status());
  if (!g->configured) {
    return Ok(kSubject, "installed; geosyncd has not set it yet (it does when it starts)");
  }
  std::string found = fmt::format("{} ({}), application writes {}", g->role, g->site,
                                  g->open ? "allowed" : "refused");
  if (g->unguarded_tables > 0) {
    found += fmt::format("; {} table(s) not yet guarded (geosyncd guards them within a second)",
                         g->unguarded_tables);
  }
  return Ok(kSubject, found);
}

// The tables whose changes the site publishes, or would publish as the
// source: the publication's tables when it exists, else postgres.tables,
// else every permanent user table (FOR ALL TABLES). One row per table:
// qualified name, relreplident, has a primary key, has a replica identity index.
constexpr const char* kTableColumns =
    "SELECT format('%I.%I', n.nspname, c.relname), c.relreplident, "
    "  EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
    "  EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND "
    "          i.indisreplident) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ";

// kTableColumns + `where`. (fmt, not std::string + literal: GCC 12 reports a
// false -Warray-bounds on the latter.)
std::string TableQuery(std::string_view where) { return fmt::format("{}{}", kTableColumns, where); }

// A text[] literal of `values`, each element quoted: '{"a","b"}'.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// The rows of kTableColumns for the tables the site publishes or would
// publish; `scope` says which rule chose them, `items` gets a problem for
// each table of postgres.tables that does not exist.
Result<PgResult> PublishedTables(PgConn& conn, const Config& config, std::string* scope,
                                 std::vector<CheckItem>* items) {
  const std::string& pub = config.postgres.publication;
  GEOSYNC_ASSIGN_OR_RETURN(
      PgResult exists,
      conn.ExecParams("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", {pub}));
  if (exists.rows() == 1) {
    *scope = fmt::format("publication {}", pub);
    return conn.ExecParams(
        TableQuery("WHERE c.oid IN (SELECT format('%I.%I', schemaname, tablename)::regclass "
                   "FROM pg_catalog.pg_publication_tables WHERE pubname = $1) ORDER BY 1"),
        {pub});
  }
  if (!config.postgres.tables.empty()) {
    *scope = fmt::format("postgres.tables (publication {} does not exist yet)", pub);
    std::string list = TextArray(config.postgres.tables);
    GEOSYNC_ASSIGN_OR_RETURN(
        PgResult missing,
        conn.ExecParams("SELECT t FROM unnest($1::text[]) t WHERE to_regclass(t) IS NULL", {list}));
    for (int row = 0; row < missing.rows(); ++row) {
      items->push_back(Problem("table " + missing.Get(row, 0), Code::kConfig,
                               "listed in postgres.tables but missing",
                               "create the table (same schema as on the source) or remove it "
                               "from postgres.tables"));
    }
    return conn.ExecParams(TableQuery("WHERE c.oid IN (SELECT to_regclass(t) FROM "
                                      "unnest($1::text[]) t) ORDER BY 1"),
                           {list});
  }
  *scope = fmt::format("the database (publication {} does not exist yet: FOR ALL TABLES)", pub);
  return conn.Exec(
      TableQuery("WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND "
                 "n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
                 "n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1"));
}

std::vector<CheckItem> CheckReplicaIdentity(PgConn& conn, const Config& config) {
  std::vector<CheckItem> problems;
  std::string scope;
  auto tables = PublishedTables(conn, config, &scope, &problems);
  if (!tables.ok()) return {QueryFailed("replica identity", tables.status())};
  int good = 0;
  for (int row = 0; row < tables->rows(); ++row) {
    std::string name = tables->Get(row, 0);
    char ident = tables->Get(row, 1).empty() ? 'd' : tables->Get(row, 1)[0];
    bool has_pk = tables->Get(row, 2) == "t";
    bool has_index = tables->Get(row, 3) == "t";
    if (ident == 'f' || (ident == 'd' && has_pk) || (ident == 'i' && has_index)) {
      ++good;
      continue;
    }
    std::string why = ident == 'n'   ? "REPLICA IDENTITY NOTHING"
                      : ident == 'i' ? "REPLICA IDENTITY USING INDEX on a dropped index"
                                     : "no primary key and REPLICA IDENTITY DEFAULT";
    problems.push_back(
        Problem("table " + name, Code::kConfig,
                why + ": its UPDATEs and DELETEs cannot replicate (PostgreSQL rejects them on the "
                      "source once the table is published)",
                fmt::format("ALTER TABLE {} ADD PRIMARY KEY (...); or ALTER TABLE {} REPLICA "
                            "IDENTITY FULL;",
                            name, name)));
  }
  if (config.role == Role::kReplica && tables->rows() == 0) {
    // Nothing to apply to: the stream's first change would fail on a missing
    // table. A warning, not a problem: `seed` needs the agent running.
    CheckItem seed = Ok("seed", fmt::format("replica {} needs a seed: its database has no tables "
                                            "({})",
                                            config.site, scope));
    seed.warning = true;
    seed.fix = config.seed.auto_seed
                   ? "none: seed.auto copies the source's tables when the agent first starts"
                   : fmt::format(
                         "start the agent, then run `geosyncctl seed --site {} --topology "
                         "TOPOLOGY --token-file TOKEN` (or set seed.auto before its "
                         "first start)",
                         config.site);
    return {seed};
  }
  std::vector<CheckItem> items = {
      Ok("replica identity", fmt::format("{} of {} tables in {} can replicate UPDATE and DELETE",
                                         good, tables->rows(), scope))};
  items.insert(items.end(), problems.begin(), problems.end());
  return items;
}

}  // namespace

Status CheckControlMessagesProtected(PgConn& conn, const std::string& site) {
  GEOSYNC_ASSIGN_OR_RETURN(int n, PublicMayEmitMessages(conn));
  if (n == 0) return Status::Ok();
  return Status::Config(fmt::format(
      "site {} cannot be the source: on its database PUBLIC may run pg_logical_emit_message, so "
      "any login could forge geosync control messages (DDL that every replica runs); {}",
      site, InitFix(conn)));
}

Status CheckPostgresForRole(const Config& config) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, ConnectSite(config));
  if (config.role == Role::kSource) {
    GEOSYNC_ASSIGN_OR_RETURN(std::string level, conn.QueryValue("SHOW wal_level"));
    if (level != "logical") {
      return Status::Config(
          fmt::format("PostgreSQL of source site {} has wal_level = {}: set wal_level = logical in "
                      "postgresql.conf and restart it",
                      config.site, level));
    }
    GEOSYNC_RETURN_IF_ERROR(CheckControlMessagesProtected(conn, config.site));
  }
  // Every role sets the write guard: a source opens it, the others close it.
  return CheckWriteGuardInstalled(conn, config.site);
}

std::vector<CheckItem> AuditPostgres(const Config& config) {
  std::vector<CheckItem> items;
  auto conn = ConnectSite(config);
  if (!conn.ok()) {
    items.push_back(Problem("postgres connection", conn.status().code(), conn.status().ToString(),
                            "check postgres.dsn, that PostgreSQL is running, and that "
                            "pg_hba.conf admits this user from this host"));
    return items;
  }
  auto version = conn->QueryValue("SHOW server_version");
  items.push_back(
      Ok("postgres connection", "PostgreSQL " + (version.ok() ? *version : std::string("?"))));
  items.push_back(CheckWalLevel(*conn));
  items.push_back(
      CheckCapacity(*conn, "max_replication_slots",
                    "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name <> $1",
                    config.postgres.slot, "other slots exist"));
  items.push_back(CheckCapacity(
      *conn, "max_wal_senders",
      "SELECT count(*) FROM pg_catalog.pg_stat_replication r WHERE NOT EXISTS (SELECT 1 FROM "
      "pg_catalog.pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_name = $1)",
      config.postgres.slot, "other WAL senders run"));
  items.push_back(CheckReplicationRole(*conn));
  items.push_back(CheckControlMessages(*conn, config.role));
  items.push_back(CheckWriteGuard(*conn, config));
  for (auto& item : CheckReplicaIdentity(*conn, config)) items.push_back(std::move(item));
  return items;
}

}  // namespace geosync
