// A geosync site under test: a config file in a temp dir and a geosyncd
// child process, plus helpers to compare tables between clusters row by row.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/lsn.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace geosync::testing {

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreeTcpPort();

// Writes an admin token file as geosyncd and geosyncctl demand it: mode
// 0600, the token on the first line. Throws std::runtime_error on failure.
void WriteTokenFile(const std::string& path, const std::string& token);
// A test token of 64 characters built from `name` (not a secret: tests only).
std::string TestToken(const std::string& name);

struct SiteSpec {
  std::string cluster_id = "test";
  std::string name;
  bool source = false;
  // Start() first runs `geosyncctl init` on the site's database, as the
  // runbook does on every site (a source refuses to start without it).
  bool init = true;
  std::string dsn;                                  // the site's PostgreSQL
  uint16_t listen_port = 0;                         // source
  uint16_t upstream_port = 0;                       // replica
  std::vector<std::string> sites;                   // source: allowed replicas
  nlohmann::json extra = nlohmann::json::object();  // merged into the config
  int cpu = -1;  // >= 0: geosyncd runs on this CPU only (ProcessSpec::cpu)
};

class GeoSite {
 public:
  explicit GeoSite(SiteSpec spec);
  ~GeoSite();

  Status Start();
  Status Kill9();
  Status Stop();  // SIGTERM, then wait
  bool IsRunning();
  pid_t Pid() const;
  // Waits for the daemon to exit by itself; its exit status.
  Result<ExitStatus> WaitExit(std::chrono::milliseconds deadline);
  const std::string& config_path() const { return config_path_; }
  const std::string& dir() const { return dir_; }
  const SiteSpec& spec() const { return spec_; }
  std::string ReadLog() const;
  void DumpLog() const;

 private:
  SiteSpec spec_;
  bool initialised_ = false;
  std::string dir_;
  std::string config_path_;
  std::unique_ptr<ChildProcess> process_;
};

// The applied position of a replica database: the highest origin progress
// of geosync's replication origins, or an invalid Lsn.
Lsn AppliedLsn(PgCluster& replica);
// The applied position within one epoch: the progress of origin
// geosync_<cluster>_e<epoch>, or an invalid Lsn. LSNs of different epochs
// come from different primaries and must not be compared.
Lsn AppliedLsnAt(PgCluster& replica, uint64_t epoch);

// Every user table (schema-qualified) in `dbname`, sorted: none of the system
// schemas, geosync's, or an extension's own tables (pglogical's bookkeeping).
std::vector<std::string> UserTables(PgCluster& cluster, const std::string& dbname = "postgres");

// The shape of `dbname`'s user objects, one sorted line each: every column
// of every user table (partitions included) in order, with its type,
// NOT NULL and default; every index and constraint on them, as PostgreSQL
// prints its definition; every sequence's definition (not its value).
// Triggers are left out: the write guard's differs by site on purpose.
std::vector<std::string> SchemaFingerprint(PgCluster& cluster,
                                           const std::string& dbname = "postgres");

// Compares the schema fingerprints of `a` and `b`, then every user table row
// by row (rows as text, sorted). Returns "" when identical, else a
// description of the first difference.
std::string CompareTables(PgCluster& a, PgCluster& b, const std::string& dbname = "postgres");

// Compares the values of every sequence (pg_sequences.last_value). The
// source ships them as periodic snapshots, so they agree only once a
// snapshot taken after the last nextval() has been applied: call it on a
// quiet primary, or use ExpectSequencesCatchUp.
std::string CompareSequenceValues(PgCluster& a, PgCluster& b,
                                  const std::string& dbname = "postgres");
// Waits (bounded) until CompareSequenceValues(a, b) is "" and returns the
// last difference seen, "" on success.
std::string WaitSequencesEqual(PgCluster& a, PgCluster& b, std::chrono::milliseconds deadline,
                               const std::string& dbname = "postgres");

// Runs `sql` in a new session on `pg` as an application would, with
// `conninfo` added to the connection string ("user=app", or kReadWrite), and
// returns the error it met: "" when it succeeded. For checks that a write is
// refused for the right reason, not merely failed.
std::string ErrorOf(PgCluster& pg, const std::string& sql, const std::string& conninfo = "");
// A session that turns off the database's default_transaction_read_only, as
// any client may.
inline constexpr const char* kReadWrite = "options='-c default_transaction_read_only=off'";

}  // namespace geosync::testing
