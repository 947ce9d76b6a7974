// End to end: primary PostgreSQL -> source geosyncd -> two replica geosyncd
// -> two replica PostgreSQL, under pgbench, with kill -9 of each agent and an
// immediate stop of a replica's PostgreSQL at random points. Each run ends
// with a row-by-row comparison of every table at the same LSN.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "agent/pg/pg_conn.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class ReplicationE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy();
    primary_ = &d.Primary();
    source_ = &d.AddSource();
    for (int i = 0; i < 2; ++i) {
      const std::string name = d.options().replicas[i];
      replica_[i] = &d.Pg(name);
      sites_[i] = &d.AddReplica(name, ReplicaConfig());
    }
  }
  // What the replicas' configs add.
  virtual nlohmann::json ReplicaConfig() const { return nlohmann::json::object(); }

  // Starts every agent and waits until the slot exists and both sites are
  // streaming: only writes after the slot's creation are captured (earlier
  // data is what seeding is for).
  void StartAll() { deploy().StartAll(); }

  // Waits until both replicas applied everything the primary wrote so far,
  // then compares every table row by row.
  void ExpectIdenticalAtCurrentLsn(std::chrono::milliseconds deadline = 180s) {
    for (auto* r : replica_) {
      EXPECT_EQ(deploy().CatchUpAndCompare(r->name(), deadline), "");
      // The primary is quiet: the next sequence snapshot brings the values.
      EXPECT_EQ(WaitSequencesEqual(*primary_, *r, 30s), "");
    }
  }

  PgCluster* primary_ = nullptr;
  PgCluster* replica_[2] = {nullptr, nullptr};
  GeoSite* source_ = nullptr;
  GeoSite* sites_[2] = {nullptr, nullptr};
};

TEST_F(ReplicationE2E, PgbenchReplicatesToTwoSitesRowForRow) {
  StartAll();
  primary_->RunPgbench({"-i", "-s", "2", "-q"});
  primary_->RunPgbench({"-n", "-c", "4", "-T", "8"});
  ExpectIdenticalAtCurrentLsn();
  // The pgbench tables arrived through DDL capture, not by hand.
  EXPECT_EQ(UserTables(*replica_[0]).size(), 4u) << "replica has the 4 pgbench tables";
  EXPECT_GT(std::stoll(replica_[0]->QueryValue("SELECT count(*) FROM pgbench_history")), 100)
      << "pgbench history rows were replicated";
}

// Runs pgbench in the background while `fault` is applied at five random
// points, then checks both replicas are identical to the primary. The points
// come from a seed that is printed; GEOSYNC_TEST_SEED=<seed> replays it.
// pgbench runs until the fifth fault is done and is then cut, so every fault
// lands under load.
class FaultE2E : public ReplicationE2E {
 protected:
  void RunWithFaults(const std::function<void(int)>& fault,
                     std::vector<std::string> load_args = {"-n", "-c", "2", "-T", "120"}) {
    StartAll();
    primary_->RunPgbench({"-i", "-s", "1", "-q"});
    const char* env_seed = std::getenv("GEOSYNC_TEST_SEED");
    const uint32_t seed =
        env_seed ? static_cast<uint32_t>(std::stoul(env_seed)) : std::random_device{}();
    std::cout << fmt::format("fault points from seed {} (replay: GEOSYNC_TEST_SEED={})\n", seed,
                             seed);
    RecordProperty("seed", std::to_string(seed));
    std::atomic<bool> done{false};
    std::string load_error;
    std::thread load([&] {
      try {
        primary_->RunPgbench(load_args);
      } catch (const std::exception& e) {
        load_error = e.what();
      }
      done = true;
    });
    auto cut_load = [&] {
      // Cut pgbench: its clients' sessions end, an open transaction rolls back.
      primary_->Exec(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
          "'pgbench'");
      load.join();
    };
    struct JoinOnExit {  // a failed ASSERT below returns early
      std::thread& t;
      std::function<void()> cut;
      ~JoinOnExit() {
        if (t.joinable()) cut();
      }
    } join_on_exit{load, cut_load};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> pause_ms(300, 2000);
    for (int faults = 0; faults < 5; ++faults) {
      // Random points in the stream: wait a random time, measured against the
      // replica's progress, not used for synchronisation.
      Lsn before = AppliedLsn(*replica_[0]);
      ASSERT_TRUE(WaitFor([&] { return AppliedLsn(*replica_[0]) > before; }, 60s,
                          "replica makes progress before the next fault"));
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      ASSERT_FALSE(done) << "fault " << faults << " would land after the load: " << load_error;
      fault(faults);
    }
    ASSERT_FALSE(done) << "the load ended during the faults: " << load_error;
    cut_load();
    EXPECT_NE(load_error.find("terminating connection"), std::string::npos)
        << "pgbench ended by the cut, not by another failure: " << load_error;
    ExpectIdenticalAtCurrentLsn();
  }
};

TEST_F(FaultE2E, ReplicaAgentKilledFiveTimesLosesAndDuplicatesNothing) {
  RunWithFaults([&](int) {
    ASSERT_TRUE(sites_[0]->Kill9().ok());
    ASSERT_TRUE(sites_[0]->Start().ok());
  });
}

TEST_F(FaultE2E, SourceAgentKilledFiveTimesLosesAndDuplicatesNothing) {
  RunWithFaults([&](int) {
    ASSERT_TRUE(source_->Kill9().ok());
    ASSERT_TRUE(source_->Start().ok());
  });
}

TEST_F(FaultE2E, ReplicaPostgresStoppedImmediatelyFiveTimesRecovers) {
  RunWithFaults([&](int) {
    ASSERT_TRUE(replica_[0]->Stop(StopMode::kImmediate).ok());
    ASSERT_TRUE(replica_[0]->Start().ok());
  });
}

// Both replicas apply with two sessions (apply.workers = 2) under a load
// whose transactions rarely touch the same rows (pgbench simple-update). At
// each fault a session on dublin holds a lock that apply's inserts wait for,
// until both apply sessions are inside a replica transaction (which also
// shows that groups run at once); then one of their backends is killed with
// kill -9 (the server restarts every session, and the lock goes with it).
class ParallelApplyFaultE2E : public FaultE2E {
 protected:
  nlohmann::json ReplicaConfig() const override { return {{"apply", {{"workers", 2}}}}; }
};

TEST_F(ParallelApplyFaultE2E, ApplySessionKilledFiveTimesMidParallelGroupLosesNothing) {
  RunWithFaults(
      [&](int) {
        auto holder = PgConn::Connect(replica_[0]->ConnInfo());
        ASSERT_TRUE(holder.ok()) << holder.status().ToString();
        // Apply's inserts wait for the lock while the load goes on: the next
        // groups go to the other session and wait there too.
        ASSERT_TRUE(holder->Exec("BEGIN; LOCK TABLE public.pgbench_history IN SHARE MODE").ok());
        std::string pids;
        ASSERT_TRUE(WaitFor(
            [&] {
              pids = replica_[0]->QueryValue(
                  "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE "
                  "application_name = 'geosync_applier' AND xact_start IS NOT NULL");
              return pids.find(' ') != std::string::npos;
            },
            60s, "both apply sessions of dublin inside a replica transaction"));
        const pid_t victim = std::stoi(pids.substr(0, pids.find(' ')));
        ASSERT_EQ(::kill(victim, SIGKILL), 0) << "kill -9 of apply backend " << victim;
        ASSERT_TRUE(WaitFor([&] { return PgConn::Connect(replica_[0]->ConnInfo()).ok(); }, 60s,
                            "dublin's server back after the crash of a backend"));
      },
      {"-n", "-b", "simple-update", "-c", "4", "-T", "120"});
}

}  // namespace
}  // namespace geosync::testing
