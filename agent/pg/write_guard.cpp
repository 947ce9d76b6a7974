// The write guard's database side; see write_guard.h.
#include "agent/pg/write_guard.h"

#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace geosync {

Result<PgConn> ConnectGuardSession(const std::string& conninfo) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(conninfo));
  auto r = conn.Exec(
      "SET application_name = 'geosync_guard'; SET synchronous_commit = local; "
      "SET default_transaction_read_only = off; SET lock_timeout = '5s'");
  if (!r.ok()) return r.status().WithContext("setting up the write guard's session");
  return conn;
}

Result<int> SetWriteGuard(PgConn& conn, const GuardRequest& request) {
  // The triggers change table by table, each under a SHARE ROW EXCLUSIVE
  // lock: a writer that holds one table and wants another the guard already
  // holds makes a deadlock, which PostgreSQL breaks by failing one side. The
  // guard's side tries again (its transaction is all or nothing).
  const auto run = [&] {
    return conn.ExecParams("SELECT _geosync.set_guard($1::boolean, $2, $3, $4, $5::bigint, $6)",
                           {request.open ? "true" : "false", request.site, request.role,
                            request.source, std::to_string(request.epoch), request.reason});
  };
  auto r = run();
  for (int attempt = 2; attempt <= 5 && !r.ok(); ++attempt) {
    const std::string& state = r.status().sqlstate();
    if (state != "40P01" && state != "55P03") break;  // deadlock, lock_timeout
    spdlog::info("write guard: {} (attempt {} of 5)", r.status().ToString(), attempt);
    r = run();
  }
  if (!r.ok()) {
    return r.status().WithContext(fmt::format("setting the write guard of site {} ({}, {})",
                                              request.site, request.role,
                                              request.open ? "open" : "closed"));
  }
  int n = 0;
  const std::string v = r->Get(0, 0);
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

Result<int> GuardTables(PgConn& conn) {
  auto r = conn.Exec("SELECT _geosync.guard_tables()");
  if (!r.ok()) return r.status().WithContext("putting the write guard on new tables");
  int n = 0;
  const std::string v = r->Get(0, 0);
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

Result<GuardState> ReadWriteGuard(PgConn& conn) {
  auto r = conn.Exec(
      "SELECT _geosync.guard_state()::text, NOT _geosync.guarded(), "
      "(SELECT count(*) FROM pg_catalog.pg_class c "
      "JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace "
      "WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' "
      "AND ns.nspname NOT IN ('pg_catalog', 'information_schema', '_geosync') "
      "AND ns.nspname NOT LIKE 'pg\\_%' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g "
      "WHERE g.tgrelid = c.oid AND g.tgname = 'geosync_write_guard' AND g.tgargs = "
      "pg_catalog.convert_to(coalesce(_geosync.guard_state() ->> 'open_for', 'closed'), "
      "'UTF8') || '\\x00'::bytea))");
  if (!r.ok()) return r.status().WithContext("reading the write guard");
  GuardState s;
  if (auto text = r->GetOpt(0, 0)) {
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object()) {
      s.configured = true;
      s.site = j.value("site", "");
      s.role = j.value("role", "");
      s.source = j.value("source", "");
      s.epoch = j.value("epoch", uint64_t{0});
    }
  }
  s.open = r->Get(0, 1) == "t";
  const std::string n = r->Get(0, 2);
  std::from_chars(n.data(), n.data() + n.size(), s.unguarded_tables);
  return s;
}

Status CheckWriteGuardInstalled(PgConn& conn, const std::string& site) {
  auto r = conn.Exec(
      "SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
      "ON n.oid = p.pronamespace WHERE n.nspname = '_geosync' "
      "AND p.proname IN ('set_guard', 'guard_tables', 'refuse_write', 'guard_state')");
  if (!r.ok()) return r.status().WithContext("looking for geosync's write guard");
  if (r->Get(0, 0) == "4") return Status::Ok();
  return Status::Config(fmt::format(
      "site {}: its database lacks geosync's write guard (schema _geosync, installed by "
      "`geosyncctl init`); run `geosyncctl init --dsn DSN` on it as a superuser (it is safe to "
      "rerun, and upgrades older installs)",
      site));
}

WriteGuardKeeper::WriteGuardKeeper(std::string conninfo,
                                   std::function<std::optional<GuardRequest>()> want,
                                   std::function<bool()> may_open, std::chrono::milliseconds period)
    : conninfo_(std::move(conninfo)),
      want_(std::move(want)),
      may_open_(std::move(may_open)),
      period_(period) {}

WriteGuardKeeper::~WriteGuardKeeper() { Stop(); }

void WriteGuardKeeper::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void WriteGuardKeeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status WriteGuardKeeper::Tick() {
  std::optional<GuardRequest> want = want_();
  if (!want) return Status::Ok();
  if (!conn_.connected()) {
    GEOSYNC_ASSIGN_OR_RETURN(conn_, ConnectGuardSession(conninfo_));
  }
  if (want->open) {
    GEOSYNC_ASSIGN_OR_RETURN(GuardState now, ReadWriteGuard(conn_));
    if (!now.open) {
      // PostgreSQL restarted under a running source: open again only once
      // no other site has taken over meanwhile.
      if (may_open_ && !may_open_()) return Status::Ok();
      spdlog::warn(
          "write guard: PostgreSQL restarted; site {} is still the source (epoch {}), "
          "application writes are allowed again",
          want->site, want->epoch);
    }
  }
  GEOSYNC_ASSIGN_OR_RETURN(int changed, SetWriteGuard(conn_, *want));
  if (changed > 0) {
    spdlog::info("write guard: {} table(s) guarded ({}, {})", changed, want->role,
                 want->open ? "writes allowed" : "writes refused");
  }
  return Status::Ok();
}

void WriteGuardKeeper::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    Status st = Tick();
    if (!st.ok()) {
      conn_ = PgConn();
      if (st.ToString() != last_error_) {
        spdlog::warn("write guard: {}", st.ToString());
        last_error_ = st.ToString();
      }
    } else {
      last_error_.clear();
    }
    lock.lock();
    cv_.wait_for(lock, period_, [this] { return stop_; });
  }
}

}  // namespace geosync
