// End to end: seeding a new replica site from the primary while pgbench
// writes, a seed interrupted by kill -9 of the replica agent, and a re-seed
// of a site whose copy went bad, through `geosyncctl seed`. Each ends with a
// row-by-row comparison of every table once the site applied the primary's
// last LSN.
#include <gtest/gtest.h>

#include <algorithm>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "tests/support/certs.h"
#include "tests/support/deployment.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class SeedE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.replicas = {"dublin"}, .admin = true, .token_seed = "seed"});
    dir_ = d.dir();
    token_file_ = d.token_file();
    primary_ = &d.Primary();
    replica_ = &d.Pg("dublin");
    // Data from before the source's slot exists: only a seed can bring it.
    primary_->RunPgbench({"-i", "-s", "5", "-q"});
  }

  void TearDown() override {
    DeploymentTest::TearDown();
    proxy_.reset();
  }

  // A source and the replica site dublin with admin APIs; dublin seeds by
  // itself on first start (seed.auto). `source_extra` is merged into the
  // source's config.
  void MakeSites(nlohmann::json source_extra = nlohmann::json::object(), bool via_proxy = false,
                 bool tls = false) {
    Deployment& d = deploy();
    nlohmann::json source = {{"seed", {{"chunk_mb", 8}}}, {"admin", {{"ready_max_lag_s", 30}}}};
    source.merge_patch(source_extra);
    nlohmann::json replica = {{"seed", {{"auto", true}, {"workers", 3}}},
                              {"admin", {{"ready_max_lag_s", 30}}}};
    if (tls) {
      certs_ = std::make_unique<TestCerts>(dir_ + "/certs", "deployment-ca",
                                           std::vector<std::string>{"frankfurt", "dublin"});
      source["tls"] = certs_->TlsConfig("frankfurt");
      replica["tls"] = certs_->TlsConfig("dublin");
    }
    source_ = &d.AddSource(source);
    uint16_t upstream = 0;
    if (via_proxy) {
      proxy_ = std::make_unique<FaultProxy>(d.SourcePort());
      ASSERT_TRUE(proxy_->Start().ok());
      upstream = proxy_->port();
    }
    site_ = &d.AddReplica("dublin", replica, upstream);
    topology_ = d.WriteTopology();
  }

  void StartSource() {
    ASSERT_TRUE(source_->Start().ok());
    deploy().WaitSlotActive();
  }

  // GET `target` of dublin's admin API: (HTTP status, body), or (0, "").
  std::pair<unsigned, std::string> Get(const std::string& target) {
    admin::HttpCall call;
    call.base_url = deploy().AdminUrl("dublin");
    call.target = target;
    auto r = admin::Http(call);
    if (!r.ok()) return {0, ""};
    return {r->status, r->body};
  }

  nlohmann::json Seed() {
    auto [code, body] = Get("/status");
    if (code != 200) return nullptr;
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object()) return nullptr;
    return doc["replica"]["seed"];
  }

  // Polls until dublin's seed is done; every /readyz answered while the seed
  // was in progress must have been "not ready".
  void WaitSeedDone(std::chrono::milliseconds deadline) {
    int not_ready_while_seeding = 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          unsigned ready = Get("/readyz").first;
          nlohmann::json seed = Seed();
          if (!seed.is_object()) return false;
          if (seed["state"] == "in_progress") {
            EXPECT_NE(ready, 200u) << "a half-seeded site answered /readyz 200";
            if (ready != 0) not_ready_while_seeding++;
          }
          return seed["state"] == "done";
        },
        deadline, "dublin's seed is done"));
    RecordProperty("not_ready_samples_while_seeding", not_ready_while_seeding);
    // The check above must have run: a seed of 500000 accounts lasts seconds.
    EXPECT_GT(not_ready_while_seeding, 0) << "/readyz was never sampled while the seed ran";
  }

  void ExpectIdenticalAtCurrentLsn() {
    EXPECT_EQ(deploy().CatchUpAndCompare("dublin", 180s), "");
    EXPECT_EQ(WaitSequencesEqual(*primary_, *replica_, 30s), "");
    EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM pgbench_accounts"), "500000")
        << "dublin has the 500000 accounts pgbench -s 5 created before the slot existed";
  }

  std::string StateFileSeedState() {
    std::ifstream in(site_->dir() + "/state/state.json");
    auto doc = nlohmann::json::parse(in, nullptr, false);
    return doc.is_object() ? doc.value("seed_state", "") : "";
  }

  std::string dir_, token_file_, topology_;
  PgCluster* primary_ = nullptr;
  PgCluster* replica_ = nullptr;
  GeoSite* source_ = nullptr;
  GeoSite* site_ = nullptr;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<TestCerts> certs_;
};

TEST_F(SeedE2E, NewSiteSeedsWhilePgbenchWritesAndEndsIdentical) {
  MakeSites();
  StartSource();
  std::thread load([&] { primary_->RunPgbench({"-n", "-c", "2", "-T", "12"}); });
  ASSERT_TRUE(site_->Start().ok());
  WaitSeedDone(180s);
  load.join();
  ExpectIdenticalAtCurrentLsn();
  nlohmann::json seed = Seed();
  EXPECT_GE(seed["rows_copied"].get<uint64_t>(), 500000u) << seed.dump();
  EXPECT_EQ(seed["tables"].size(), 4u) << "the four pgbench tables were copied: " << seed.dump();
  EXPECT_TRUE(seed["position"].is_object()) << "the seed reports its consistent point";
  EXPECT_EQ(StateFileSeedState(), "done");
  EXPECT_TRUE(WaitFor(
      [&] {
        return primary_->QueryValue(
                   "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE "
                   "'geosync_seed%'") == "0";
      },
      30s, "the seed's temporary slot is gone"));
}

TEST_F(SeedE2E, NewSiteSeedsOverMutualTls) {
  MakeSites(nlohmann::json::object(), /*via_proxy=*/false, /*tls=*/true);
  StartSource();
  ASSERT_TRUE(site_->Start().ok());
  WaitSeedDone(180s);
  ExpectIdenticalAtCurrentLsn();
  EXPECT_NE(site_->ReadLog().find("seed of site dublin done"), std::string::npos)
      << site_->ReadLog();
  // The seed connection itself was TLS (the source logs it per connection),
  // and the stream that follows it too.
  const std::string source_log = source_->ReadLog();
  EXPECT_NE(source_log.find("seed of site dublin over TLS: snapshot"), std::string::npos)
      << source_log;
  EXPECT_NE(source_log.find(" (TLS), streaming after"), std::string::npos) << source_log;
  EXPECT_EQ(source_log.find("uses plain TCP without TLS"), std::string::npos) << source_log;
}

TEST_F(SeedE2E, SiteWithOnlySomeTablesIsRefusedNamingTheMissingOnes) {
  replica_->Exec(
      "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88))");
  MakeSites();
  StartSource();
  ASSERT_TRUE(site_->Start().ok());
  // seed.auto declines: the database already has a published table.
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json seed = Seed();
        return seed.is_object() && seed["state"] == "none" &&
               site_->ReadLog().find("receiver: streaming") != std::string::npos;
      },
      60s, "dublin declined the automatic seed and streams"));
  ProcessSpec spec;
  spec.argv = {BinaryPath("geosyncctl"),
               "seed",
               "--site",
               "dublin",
               "--topology",
               topology_,
               "--no-wait",
               "--token-file",
               token_file_};
  auto out = RunProgram(spec, 60s);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->exit_status, 0) << out->output;
  auto exited = site_->WaitExit(120s);
  ASSERT_TRUE(exited.ok()) << "the agent stops on a seed that cannot succeed";
  EXPECT_NE(*exited, 0);
  std::string log = site_->ReadLog();
  EXPECT_NE(log.find("lacks \"public\".\"pgbench_accounts\""), std::string::npos) << log;
  EXPECT_EQ(StateFileSeedState(), "in_progress") << "the site stays marked half-seeded";
}

TEST_F(SeedE2E, ReplicaAgentKilledMidSeedRestartsCleanAndEndsIdentical) {
  // A bandwidth cap on the source keeps the copy going long enough to be cut.
  MakeSites({{"bandwidth_bytes_per_sec", 1500000}});
  StartSource();
  std::thread load([&] { primary_->RunPgbench({"-n", "-c", "1", "-T", "10"}); });
  ASSERT_TRUE(site_->Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json seed = Seed();
        return seed.is_object() && seed["state"] == "in_progress" &&
               seed["rows_copied"].get<uint64_t>() > 0;
      },
      120s, "dublin's seed has copied rows"));
  ASSERT_TRUE(site_->Kill9().ok());
  EXPECT_EQ(StateFileSeedState(), "in_progress") << "the killed seed is recorded as unfinished";
  ASSERT_TRUE(site_->Start().ok());
  WaitSeedDone(240s);
  load.join();
  ExpectIdenticalAtCurrentLsn();
  EXPECT_EQ(StateFileSeedState(), "done");
}

TEST_F(SeedE2E, NetworkCutMidSeedStartsAgainAndEndsIdentical) {
  MakeSites({{"bandwidth_bytes_per_sec", 1500000}}, /*via_proxy=*/true);
  StartSource();
  ASSERT_TRUE(site_->Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json seed = Seed();
        return seed.is_object() && seed["state"] == "in_progress" &&
               seed["rows_copied"].get<uint64_t>() > 0;
      },
      120s, "dublin's seed has copied rows"));
  proxy_->Cut(CutMode::kClose);
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json seed = Seed();
        return seed.is_object() && seed["phase"] == "retrying" && seed["error"].is_string();
      },
      60s, "the cut seed attempt failed and waits to start again"));
  EXPECT_EQ(Get("/readyz").first, 503u) << "a site whose seed was cut is not ready";
  proxy_->Restore();
  std::thread load([&] { primary_->RunPgbench({"-n", "-c", "1", "-T", "5"}); });
  WaitSeedDone(240s);
  load.join();
  ExpectIdenticalAtCurrentLsn();
}

// Two kinds of damage, one repair (docs/spool.md, "Corruption"): dublin's
// copy goes bad behind geosync's back, and a byte flips in the middle of the
// source's spool while dublin is away, in transactions the slot already
// confirmed (issue #19). The source refuses to start, naming the file and
// offset, instead of cutting them as a torn tail; with the spool moved aside
// it starts again, and dublin, which lacks that range, is refused with
// "needs a re-seed" instead of being served what follows a silent gap.
// `geosyncctl seed` then makes it identical.
TEST_F(SeedE2E, ReseedThroughCliRepairsADamagedCopyAndACorruptSourceSpool) {
  MakeSites();
  StartSource();
  ASSERT_TRUE(site_->Start().ok());
  WaitSeedDone(180s);
  ExpectIdenticalAtCurrentLsn();
  // The site's copy goes bad behind geosync's back.
  // (A superuser past the write guard.)
  replica_->Exec(
      "SET session_replication_role = replica; DELETE FROM pgbench_accounts WHERE aid % 7 = 0");
  ASSERT_NE(CompareTables(*primary_, *replica_), "");

  ASSERT_TRUE(site_->Stop().ok());
  primary_->Exec(
      "DO $$ BEGIN FOR i IN 1..2000 LOOP INSERT INTO pgbench_history (tid, bid, aid, delta, "
      "mtime) VALUES (1, 1, i, 1, now()); COMMIT; END LOOP; END $$");
  const Lsn end = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor(
      [&] {
        return primary_->QueryValue(fmt::format(
                   "SELECT confirmed_flush_lsn >= '{}'::pg_lsn FROM pg_replication_slots "
                   "WHERE slot_name = 'geosync'",
                   end.ToString())) == "t";
      },
      60s, "the source spooled and confirmed the 2000 transactions"));
  ASSERT_TRUE(source_->Stop().ok());
  const std::string spool = source_->dir() + "/spool";
  std::vector<std::string> segments;
  for (const auto& e : std::filesystem::directory_iterator(spool)) {
    if (e.path().extension() == ".seg") segments.push_back(e.path().string());
  }
  std::sort(segments.begin(), segments.end());
  ASSERT_FALSE(segments.empty());
  const std::string seg = segments.back();
  const uint64_t middle = std::filesystem::file_size(seg) / 2;
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(middle));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(middle));
    f.put(static_cast<char>(c ^ 0x40));
  }
  ASSERT_TRUE(source_->Start().ok());
  auto exited = source_->WaitExit(60s);
  ASSERT_TRUE(exited.ok()) << "the source stops on a corrupt spool";
  EXPECT_EQ(*exited, 7) << "exit code 7 (corruption)";
  std::string log = source_->ReadLog();
  EXPECT_NE(log.find(seg + " at offset "), std::string::npos) << log;
  EXPECT_NE(log.find("the spool is corrupt, not torn; nothing was cut"), std::string::npos) << log;
  EXPECT_EQ(log.find("truncated torn tail"), std::string::npos) << log;

  std::filesystem::rename(spool, spool + ".corrupt");
  StartSource();
  EXPECT_NE(source_->ReadLog().find("spool: empty, but slot \"geosync\" already confirmed"),
            std::string::npos)
      << source_->ReadLog();
  ASSERT_TRUE(site_->Start().ok());
  ASSERT_TRUE(
      WaitFor([&] { return site_->ReadLog().find("needs a re-seed") != std::string::npos; }, 60s,
              "dublin, which lacks the lost range, is refused rather than served past a gap"));
  std::thread load([&] { primary_->RunPgbench({"-n", "-c", "2", "-T", "6"}); });
  ProcessSpec spec;
  spec.argv = {BinaryPath("geosyncctl"), "seed",     "--site", "dublin", "--topology", topology_,
               "--token-file",           token_file_};
  auto out = RunProgram(spec, 240s);
  load.join();
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->exit_status, 0) << out->output;
  EXPECT_NE(out->output.find("done"), std::string::npos) << out->output;
  ExpectIdenticalAtCurrentLsn();
}

}  // namespace
}  // namespace geosync::testing
