// One site's part of `geosyncctl verify`, on its own thread, behind the
// admin API (POST /admin/verify/{begin,result,rows,end}):
//
//   source   exports a snapshot with a temporary logical slot (consistent
//            point C: the snapshot holds exactly the transactions that commit
//            before C), checksums the published tables in it, and reports the
//            position (epoch, C);
//   replica  holds apply before (epoch, C), so its database holds exactly the
//            same transactions, and checksums the same tables.
//
// Both keep their snapshot (or hold) until `end`, so that the CLI can list
// the rows of any differing bucket on both sides at the same position.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_server.h"
#include "agent/pg/pg_conn.h"
#include "agent/verify/checksum.h"
#include "common/lsn.h"

namespace geosync {

class Applier;

struct VerifyRequest {
  int buckets = 256;
  std::vector<std::string> tables;  // replica: the source's list; source: from the publication
  Position position;                // replica: hold apply before this
  // Replica: how long apply may take to reach `position` (every transaction
  // before it applied and committed); past it the site is "behind".
  std::chrono::seconds reach_timeout{120};
};

class VerifyJob {
 public:
  // Source side: snapshot exported from a temporary slot on `conninfo`.
  static std::unique_ptr<VerifyJob> ForSource(std::string conninfo, std::string publication,
                                              uint64_t epoch, VerifyRequest request);
  // Replica side: `applier` holds before request.position while the job lives.
  static std::unique_ptr<VerifyJob> ForReplica(std::string conninfo, Applier* applier,
                                               VerifyRequest request);
  ~VerifyJob();  // releases the snapshot or the hold

  // {"state": "running"|"done"|"failed", "error", "position", "tables": [...],
  //  "behind": true when a replica did not reach the position in time,
  //  "reached": the position it had applied then}
  nlohmann::json Result() const;
  // (key, row md5) of one bucket, in the job's snapshot; after it is done.
  geosync::Result<nlohmann::json> Rows(const std::string& table, int bucket);

 private:
  VerifyJob() = default;
  void Start();
  Status Run();
  Status PrepareSource();
  Status PrepareReplica();

  std::string conninfo_, publication_;
  uint64_t epoch_ = 0;
  Applier* applier_ = nullptr;  // replica
  VerifyRequest request_;
  PgConn repl_;  // source: holds the exported snapshot's slot
  PgConn conn_;  // the checksum session, in its snapshot until the end
  mutable std::mutex mu_;
  std::string state_ = "running";
  std::string error_;
  Position position_;
  bool behind_ = false;
  Position reached_;
  std::vector<TableChecksum> sums_;
  std::thread thread_;
};

// POST /admin/verify/begin|result|rows|end; `make` builds the job from the
// begin request (or fills *error).
using VerifyFactory =
    std::function<std::unique_ptr<VerifyJob>(const VerifyRequest&, admin::HttpReply* error)>;
// A replica also answers verify/freeze (`freeze`: hold apply where it is,
// before the source exports its snapshot, so that it cannot pass it) and
// releases any hold at verify/end (`release`).
void AddVerifyActions(admin::AdminHandlers& handlers, std::shared_ptr<VerifyJob>& job,
                      std::mutex& mu, VerifyFactory make, std::function<void()> freeze = {},
                      std::function<void()> release = {});

}  // namespace geosync
