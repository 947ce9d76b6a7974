// Throwaway PostgreSQL 15 clusters for integration and e2e tests: initdb into a
// fresh temp dir, a free 127.0.0.1 port, logical decoding on, trust auth, a log
// file to print when a test fails. Runs the server as the `postgres` OS user
// (through runuser) when the tests run as root.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/pg/pg_conn.h"
#include "common/lsn.h"
#include "common/status.h"
#include "tests/support/process.h"

namespace geosync::testing {

struct PgClusterOptions {
  // Used in the temp dir name and in log headers.
  std::string name = "pg";
  // Copy a data dir initdb'ed once (cached in the build tree) instead of
  // running initdb: about 0.1 s instead of 1-3 s. Off by default: copies share
  // the template's system identifier, which a test of site identity must not
  // see. The env var GEOSYNC_PG_TEMPLATE=1 turns it on for every cluster.
  bool from_template = false;
  // >= 0: the server and the client programs run here (RunPgbench,
  // RunClientTool) run on this CPU only. The benchmarks' two emulated hosts.
  int cpu = -1;
};

enum class StopMode { kFast, kImmediate };

// One cluster. Lifecycle methods return Status so a test can assert on the
// failure; the query conveniences (Exec, QueryValue, ...) throw
// std::runtime_error, which gtest reports as a failure of the running test, so
// a test stops at the first broken step instead of running on against a dead
// server. Not thread-safe.
class PgCluster {
 public:
  explicit PgCluster(PgClusterOptions options = {});
  ~PgCluster();  // stops the server (fast, then immediate) and removes the dir
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Adds or replaces a postgresql.conf setting; `value` is written quoted.
  // Takes effect at the next Start()/Restart(), or Reload() for settings that
  // PostgreSQL reloads (SIGHUP context).
  void SetSetting(const std::string& name, const std::string& value);
  Status Reload();

  // First call: checks the binaries, creates the dir and runs initdb. Picks a
  // free port once; later starts keep it so conninfos stay valid.
  Status Start();
  Status Stop(StopMode mode = StopMode::kFast);
  Status Restart();
  // Power cut: SIGKILL to the postmaster (pid from postmaster.pid) and every
  // process of its group, then waits until they are gone. Start() recovers.
  Status Kill9();
  bool IsRunning() const;
  // PID of the running postmaster, 0 when stopped.
  pid_t PostmasterPid() const;

  const std::string& name() const { return options_.name; }
  uint16_t port() const { return port_; }
  const std::string& Dir() const { return root_; }
  std::string DataDir() const { return root_ + "/data"; }
  std::string LogPath() const { return root_ + "/server.log"; }
  std::string BinDir() const { return bindir_; }
  // "host=127.0.0.1 port=N user=postgres dbname=..."
  std::string ConnInfo(const std::string& dbname = "postgres") const;

  // Throwing conveniences (see the class comment).
  PgConn Connect(const std::string& dbname = "postgres") const;
  PgResult Exec(const std::string& sql, const std::string& dbname = "postgres") const;
  std::string QueryValue(const std::string& sql, const std::string& dbname = "postgres") const;
  Lsn CurrentWalLsn() const;  // pg_current_wal_lsn()
  void CreateDatabase(const std::string& dbname) const;
  // Runs pgbench against this cluster (-h 127.0.0.1 -p port -U postgres plus
  // `args`); throws when it exits non-zero. Returns its output.
  std::string RunPgbench(const std::vector<std::string>& args) const;
  // Runs a client program from the bindir (psql, pg_dump, pg_recvlogical...)
  // with PGHOST/PGPORT/PGUSER pointing here. Does not judge the exit status.
  Result<ProcessOutput> RunClientTool(const std::string& program,
                                      const std::vector<std::string>& args) const;

  std::string ReadLog() const;
  // Prints the server log to stderr under a header naming the cluster.
  void DumpLog() const;

 private:
  Status InitDataDir();
  Status WriteConfig() const;
  Status StartOnce(bool* port_clash);
  Status RunPgCtl(const std::vector<std::string>& args) const;

  PgClusterOptions options_;
  std::string bindir_;
  std::string root_;  // temp dir: data/, server.log, the unix socket
  uint16_t port_ = 0;
  bool initialized_ = false;
  std::map<std::string, std::string> settings_;
};

// gtest fixture: NewCluster() creates and starts clusters on demand (a start
// failure throws, failing the test); TearDown prints every server log when the
// test failed, then stops and removes the clusters.
class PgClusterTest : public ::testing::Test {
 protected:
  PgCluster& NewCluster(const std::string& name, PgClusterOptions options = {});
  void TearDown() override;

  std::vector<std::unique_ptr<PgCluster>> clusters_;
};

}  // namespace geosync::testing
