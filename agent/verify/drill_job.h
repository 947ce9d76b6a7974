// A DR drill on one replica site, behind POST /admin/drill/{run,result}:
// apply is frozen at a consistent position (every transaction up to it
// applied, none after), one session opens a read-write transaction on the
// site's database, proves it writable (a write into a temporary table), runs
// the DBA's SQL probes, then rolls everything back and releases apply. The
// site ends exactly as it was; its replication resumes from where it stopped.
// RTO is the time from the start to the first successful write.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_server.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

class Applier;
class PgConn;

class DrillJob {
 public:
  enum class Mode {
    kFrozen,  // apply frozen, the site itself writable in a rolled-back transaction
    // A throwaway copy: apply held only while a snapshot is exported at a
    // known position (milliseconds), the database copied from it into a
    // scratch database on the same cluster (pg_dump -Fd into `scratch_dir`,
    // pg_restore), promoted there (write guard opened), probed, and dropped.
    // The site's data, replication origins and spool are not touched.
    kCopy,
  };
  DrillJob(std::string conninfo, Applier* applier, std::vector<std::string> probes,
           Mode mode = Mode::kFrozen, std::string scratch_dir = "");
  ~DrillJob();  // joins; the transaction is rolled back and apply released by then

  // {"state": "running"|"done"|"failed", "error", "position", "rto_seconds",
  //  "started_unix_ms", "writable_unix_ms", "probes": [{sql, ok, result, error, ms}]};
  // a copy adds "mode": "copy", "apply_held_ms", "copy_seconds", "scratch_database".
  nlohmann::json Result() const;

 private:
  Status Run();
  Status RunCopy();
  Status ProbeCopy(const std::string& scratch_conninfo, std::chrono::steady_clock::time_point t0);
  // Opens the write guard as a promotion would, writes a row (the writable
  // instant), runs the probes; in an open transaction on `conn`.
  Status WriteAndProbe(PgConn& conn, std::chrono::steady_clock::time_point t0);

  std::string conninfo_;
  Applier* applier_;
  std::vector<std::string> probes_;
  Mode mode_;
  std::string scratch_dir_;
  mutable std::mutex mu_;
  nlohmann::json result_;
  std::thread thread_;
};

// POST /admin/drill/run?probe=SQL&probe=... (probes separated by ';;' in
// one `probes` parameter) and POST /admin/drill/result on a replica.
// ?mode=copy runs the throwaway-copy drill, its dump kept under scratch_dir.
void AddDrillActions(admin::AdminHandlers& handlers, std::shared_ptr<DrillJob>& job, std::mutex& mu,
                     std::string conninfo, Applier* applier, std::string scratch_dir);

}  // namespace geosync
