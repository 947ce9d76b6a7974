// The test rig itself: throwaway clusters, waiting on facts, child processes.
// Everything else in tests/integration and tests/e2e stands on these.
#include "tests/support/pg_cluster.h"

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST_F(PgClusterTest, TwoClustersAreLogicalAndIndependent) {
  PgCluster& a = NewCluster("a");
  PgCluster& b = NewCluster("b");
  EXPECT_NE(a.port(), b.port()) << "each cluster listens on its own port";
  EXPECT_EQ(a.QueryValue("SHOW wal_level"), "logical") << "cluster a can decode logically";
  EXPECT_EQ(b.QueryValue("SHOW wal_level"), "logical") << "cluster b can decode logically";
  EXPECT_EQ(a.QueryValue("SHOW fsync"), "on") << "kill -9 tests need real durability";

  a.Exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 3)");
  EXPECT_EQ(a.QueryValue("SELECT count(*) FROM t"), "3") << "a has the 3 rows written to it";
  EXPECT_EQ(b.QueryValue("SELECT count(*) FROM pg_class WHERE relname = 't'"), "0")
      << "the table created on a does not exist on b";
  EXPECT_NE(a.QueryValue("SELECT system_identifier FROM pg_control_system()"),
            b.QueryValue("SELECT system_identifier FROM pg_control_system()"))
      << "separately initdb'ed clusters have distinct system identifiers";
}

TEST_F(PgClusterTest, RestartKeepsDataAndPort) {
  PgCluster& a = NewCluster("a");
  const uint16_t port = a.port();
  a.Exec("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')");
  ASSERT_TRUE(a.Restart().ok());
  EXPECT_EQ(a.port(), port) << "a restart keeps the port, so stored conninfos stay valid";
  EXPECT_EQ(a.QueryValue("SELECT v FROM t"), "kept") << "committed row survives a clean restart";
}

TEST_F(PgClusterTest, Kill9ThenStartRecoversCommittedData) {
  PgCluster& a = NewCluster("a");
  a.Exec("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1052)");
  const pid_t postmaster = a.PostmasterPid();
  ASSERT_NE(postmaster, 0);

  Status killed = a.Kill9();
  ASSERT_TRUE(killed.ok()) << killed.ToString();
  EXPECT_FALSE(a.IsRunning()) << "no postmaster after SIGKILL";
  EXPECT_FALSE(ProcessAlive(postmaster)) << "the old postmaster is gone";
  EXPECT_FALSE(PgConn::Connect(a.ConnInfo()).ok()) << "nothing accepts connections after kill";

  Status started = a.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  EXPECT_EQ(a.QueryValue("SELECT count(*) FROM t"), "1052")
      << "the 1052 committed rows survive a power cut";
  EXPECT_THAT(a.ReadLog(), HasSubstr("not properly shut down"))
      << "the restart went through crash recovery, so Kill9 was a real crash";
}

TEST_F(PgClusterTest, ReloadAppliesChangedSetting) {
  PgCluster& a = NewCluster("a");
  a.SetSetting("work_mem", "7MB");
  Status st = a.Reload();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(a.QueryValue("SHOW work_mem"), "7MB") << "a new session sees the reloaded value";
}

TEST_F(PgClusterTest, SettingAddedBeforeStartIsApplied) {
  PgCluster& a = NewCluster("a");
  EXPECT_EQ(a.QueryValue("SHOW max_replication_slots"), "20");
  a.SetSetting("max_replication_slots", "7");
  ASSERT_TRUE(a.Restart().ok());
  EXPECT_EQ(a.QueryValue("SHOW max_replication_slots"), "7")
      << "a postmaster-level setting takes effect at restart";
}

TEST_F(PgClusterTest, CreateDatabaseAndPgbenchWork) {
  PgCluster& a = NewCluster("a");
  a.CreateDatabase("bench");
  a.RunPgbench({"-i", "-s", "1", "-q", "bench"});
  a.RunPgbench({"-c", "2", "-t", "20", "bench"});
  EXPECT_EQ(a.QueryValue("SELECT count(*) FROM pgbench_history", "bench"), "40")
      << "2 clients x 20 transactions each left one history row";
}

// The start-up times are printed, not asserted: speed is bench/'s business.
TEST_F(PgClusterTest, TemplateCopiesAreIndependentClustersWithOneSystemIdentifier) {
  PgClusterOptions options;
  options.from_template = true;
  auto t0 = std::chrono::steady_clock::now();
  PgCluster& a = NewCluster("tmpl_a", options);
  auto t1 = std::chrono::steady_clock::now();
  PgCluster& b = NewCluster("tmpl_b", options);
  auto t2 = std::chrono::steady_clock::now();
  std::cerr << "first template cluster (template build if uncached + copy + start): "
            << std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()
            << " ms, second (copy + start): "
            << std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count() << " ms\n";
  a.Exec("CREATE TABLE only_on_a (id int)");
  EXPECT_EQ(b.QueryValue("SELECT count(*) FROM pg_class WHERE relname = 'only_on_a'"), "0")
      << "copies of the template are independent clusters";
  EXPECT_EQ(a.QueryValue("SELECT system_identifier FROM pg_control_system()"),
            b.QueryValue("SELECT system_identifier FROM pg_control_system()"))
      << "copies share the template's system identifier: why from_template is opt-in";
}

TEST_F(PgClusterTest, WaitForLsnReturnsOnceFlushed) {
  PgCluster& a = NewCluster("a");
  a.Exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
  Lsn target = a.CurrentWalLsn();
  EXPECT_TRUE(WaitForLsn(a, "SELECT pg_current_wal_flush_lsn()", target, 10s))
      << "the flush position reaches the insert position";
}

TEST(PgClusterBinDirTest, MissingBinDirFailsStartWithClearError) {
  const char* old = std::getenv("GEOSYNC_PG_BINDIR");
  std::string saved = old ? old : "";
  setenv("GEOSYNC_PG_BINDIR", "/nonexistent", 1);
  Status st;
  {
    PgCluster cluster;
    st = cluster.Start();
  }
  if (old) {
    setenv("GEOSYNC_PG_BINDIR", saved.c_str(), 1);
  } else {
    unsetenv("GEOSYNC_PG_BINDIR");
  }
  ASSERT_FALSE(st.ok()) << "a cluster without server binaries cannot start";
  EXPECT_EQ(st.code(), Code::kConfig);
  EXPECT_THAT(st.message(), HasSubstr("/nonexistent/initdb"))
      << "the error names the missing binary";
  EXPECT_THAT(st.message(), HasSubstr("GEOSYNC_PG_BINDIR")) << "the error says how to fix it";
}

TEST(WaitTest, WaitForFailsTheTestNamingWhatWasAwaited) {
  EXPECT_NONFATAL_FAILURE(
      (void)WaitFor([] { return false; }, std::chrono::milliseconds(30), "the impossible fact"),
      "timed out after");
  EXPECT_NONFATAL_FAILURE(
      (void)WaitFor([] { return false; }, std::chrono::milliseconds(30), "the impossible fact"),
      "the impossible fact");
}

TEST(WaitTest, PollReportsTheLastExceptionAndSucceedsWhenTrue) {
  int calls = 0;
  Status st = Poll(
      [&] {
        if (++calls < 3) throw std::runtime_error("server starting up");
        return true;
      },
      5s, "third call");
  EXPECT_TRUE(st.ok()) << "exceptions count as 'not yet': " << st.ToString();
  st = Poll([]() -> bool { throw std::runtime_error("connection refused"); }, 30ms, "a server");
  EXPECT_EQ(st.code(), Code::kTimeout);
  EXPECT_THAT(st.message(), HasSubstr("connection refused")) << "the report keeps the last error";
}

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-child-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(ChildProcessTest, LogsEnvAndExitCode) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo out=$GEOSYNC_PROBE; echo err >&2; exit 3"};
  spec.env = {{"GEOSYNC_PROBE", "42"}};
  spec.log_path = dir_ + "/child.log";
  ChildProcess child(spec);
  ASSERT_TRUE(child.Start().ok());
  auto st = child.Wait(10s);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(*st, 3) << "the exit code is reported";
  EXPECT_THAT(child.ReadLog(), HasSubstr("out=42")) << "env additions reach the child";
  EXPECT_THAT(child.ReadLog(), HasSubstr("err")) << "stderr goes to the same log";
}

TEST_F(ChildProcessTest, Kill9EndsTheWholeGroupAndStartRestarts) {
  ProcessSpec spec;
  // The shell forks a helper; Kill9 must reach it through the process group.
  spec.argv = {"/bin/sh", "-c", "sleep 60 & echo helper=$!; wait"};
  spec.log_path = dir_ + "/child.log";
  ChildProcess child(spec);
  ASSERT_TRUE(child.Start().ok());
  EXPECT_TRUE(child.IsRunning());
  EXPECT_EQ(child.Wait(50ms).status().code(), Code::kTimeout) << "a running child times out";
  pid_t helper = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto log = child.ReadLog();
        auto at = log.find("helper=");
        if (at == std::string::npos || log.find('\n', at) == std::string::npos) return false;
        helper = static_cast<pid_t>(std::stoi(log.substr(at + 7)));
        return true;
      },
      10s, "the child to print its helper's pid"));
  ASSERT_TRUE(child.Kill9().ok());
  EXPECT_EQ(child.exit_status(), -SIGKILL) << "the child died of SIGKILL";
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(helper); }, 10s, "the helper to die"))
      << "SIGKILL reached the child's whole process group";
  ASSERT_TRUE(child.Start().ok()) << "a killed child can be started again";
  EXPECT_TRUE(child.IsRunning());
}

TEST(RunProgramTest, MissingProgramIsAnError) {
  ProcessSpec spec;
  spec.argv = {"/nonexistent/geosyncd"};
  auto out = RunProgram(spec, 5s);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(out.status().message(), HasSubstr("/nonexistent/geosyncd"));
}

}  // namespace
}  // namespace geosync::testing
