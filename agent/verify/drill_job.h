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

class DrillJob {
 public:
  DrillJob(std::string conninfo, Applier* applier, std::vector<std::string> probes);
  ~DrillJob();  // joins; the transaction is rolled back and apply released by then

  // {"state": "running"|"done"|"failed", "error", "position", "rto_seconds",
  //  "started_unix_ms", "writable_unix_ms", "probes": [{sql, ok, result, error, ms}]}
  nlohmann::json Result() const;

 private:
  Status Run();

  std::string conninfo_;
  Applier* applier_;
  std::vector<std::string> probes_;
  mutable std::mutex mu_;
  nlohmann::json result_;
  std::thread thread_;
};

// POST /admin/drill/run?probe=SQL&probe=... (probes separated by ';;' in
// one `probes` parameter) and POST /admin/drill/result on a replica.
void AddDrillActions(admin::AdminHandlers& handlers, std::shared_ptr<DrillJob>& job, std::mutex& mu,
                     std::string conninfo, Applier* applier);

}  // namespace geosync
