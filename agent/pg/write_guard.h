// The write guard: PostgreSQL itself refuses application writes on every
// site but the unfenced source (schemas/ddl_capture.sql, "The write guard").
// geosyncd opens it on the source once it has checked that the site still is
// the source, and closes it on replicas and fenced sites; a PostgreSQL restart
// closes it by itself. Apply and seed write under session_replication_role =
// replica, where the guard's triggers do not fire.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/pg/pg_conn.h"
#include "common/status.h"

namespace geosync {

// What a site's guard should say.
struct GuardRequest {
  bool open = false;   // the unfenced source: writes allowed until PostgreSQL restarts
  std::string site;    // this site
  std::string role;    // "source", "replica" or "fenced"
  std::string source;  // where applications should write instead ("" unknown)
  uint64_t epoch = 0;
  std::string reason;  // fenced: why
};

// What the database's guard says now.
struct GuardState {
  bool configured = false;  // geosyncd has set it at least once
  bool open = false;        // application writes allowed now
  std::string site, role, source;
  uint64_t epoch = 0;
  int unguarded_tables = 0;  // replicated tables without the current trigger
};

// Sets the guard (idempotent) and puts it on every replicated table.
// Returns how many tables' triggers changed. Runs in its own transaction.
Result<int> SetWriteGuard(PgConn& conn, const GuardRequest& request);
// Puts the current guard on tables that lack it (new since the last call).
Result<int> GuardTables(PgConn& conn);
Result<GuardState> ReadWriteGuard(PgConn& conn);

// Whether the database has the guard's functions; when not, the error says
// to run `geosyncctl init` (it installs them).
Status CheckWriteGuardInstalled(PgConn& conn, const std::string& site);

// Keeps a site's guard as `want` says, every `period`, on its own thread and
// connection: tables created since (seeded, or replicated by DDL) get it,
// and a source whose PostgreSQL restarted opens it again, but only once
// `may_open` (the check of the other sites' epochs) agrees. `want` returning
// nullopt leaves the guard as it is (a fence under way owns it).
class WriteGuardKeeper {
 public:
  WriteGuardKeeper(std::string conninfo, std::function<std::optional<GuardRequest>()> want,
                   std::function<bool()> may_open,
                   std::chrono::milliseconds period = std::chrono::seconds(1));
  ~WriteGuardKeeper();  // Stop()
  WriteGuardKeeper(const WriteGuardKeeper&) = delete;
  WriteGuardKeeper& operator=(const WriteGuardKeeper&) = delete;

  void Start();
  void Stop();

 private:
  void Loop();
  Status Tick();

  std::string conninfo_;
  std::function<std::optional<GuardRequest>()> want_;
  std::function<bool()> may_open_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  PgConn conn_;
  std::string last_error_;
};

// A session for the guard's own work: local commits (a synchronous standby
// that is not streaming cannot block it), an application_name that a fence
// does not end, and a bounded wait for table locks.
Result<PgConn> ConnectGuardSession(const std::string& conninfo);

}  // namespace geosync
