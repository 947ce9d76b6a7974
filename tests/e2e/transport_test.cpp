// Site-to-site transport under mutual TLS: a source and two replica sites
// stream through fault proxies that cut the links, while agents are killed
// with kill -9; every replica spool must end with exactly the source's
// sequence of records, and the tables must match. Handshakes with a wrong
// cluster id, an unknown site, a stale epoch or a foreign certificate are
// refused on both sides. Policy sync makes a primary commit wait for a
// remote site's durability.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "agent/spool/spool.h"
#include "agent/state/state_file.h"
#include "tests/support/certs.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

std::vector<SpoolRecord> ReadSpool(const std::string& dir) {
  SpoolOptions o;
  o.dir = dir;
  auto spool = Spool::Open(o);
  EXPECT_TRUE(spool.ok()) << spool.status().ToString();
  std::vector<SpoolRecord> out;
  if (!spool.ok()) return out;
  auto reader = (*spool)->ReadFrom(Position{});
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return out;
  for (;;) {
    auto rec = (*reader)->Next();
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    if (!rec.ok() || !rec->has_value()) break;
    out.push_back(std::move(**rec));
  }
  return out;
}

class TransportE2E : public PgClusterTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-certs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    cert_dir_ = tmpl;
    certs_ = std::make_unique<TestCerts>(
        cert_dir_, "deployment-ca",
        std::vector<std::string>{"frankfurt", "dublin", "virginia", "lisbon"});
    primary_ = &NewCluster("primary");
    ProcessSpec init;
    init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", primary_->ConnInfo()};
    auto r = RunProgram(init, 30s);
    ASSERT_TRUE(r.ok() && r->exit_status == 0) << (r.ok() ? r->output : r.status().ToString());
    source_port_ = FreeTcpPort();
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& s : sites_) s->DumpLog();
    }
    sites_.clear();
    proxies_.clear();
    std::filesystem::remove_all(cert_dir_);
    PgClusterTest::TearDown();
  }

  GeoSite& AddSource(nlohmann::json extra = nlohmann::json::object()) {
    SiteSpec s;
    s.name = "frankfurt";
    s.source = true;
    s.dsn = primary_->ConnInfo();
    s.listen_port = source_port_;
    s.sites = {"dublin", "virginia"};
    s.extra = {{"tls", certs_->TlsConfig("frankfurt")}, {"spool", {{"segment_mb", 256}}}};
    s.extra.merge_patch(extra);
    sites_.push_back(std::make_unique<GeoSite>(s));
    return *sites_.back();
  }

  GeoSite& AddReplica(const std::string& name, PgCluster& pg, uint16_t upstream_port,
                      nlohmann::json extra = nlohmann::json::object()) {
    SiteSpec s;
    s.name = name;
    s.dsn = pg.ConnInfo();
    s.upstream_port = upstream_port;
    s.extra = {{"tls", certs_->TlsConfig(name)}};
    s.extra.merge_patch(extra);
    sites_.push_back(std::make_unique<GeoSite>(s));
    return *sites_.back();
  }

  FaultProxy& AddProxy(uint16_t target) {
    proxies_.push_back(std::make_unique<FaultProxy>(target));
    EXPECT_TRUE(proxies_.back()->Start().ok());
    return *proxies_.back();
  }

  void WaitForSlot() {
    ASSERT_TRUE(WaitFor(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'geosync' AND active") == "1";
        },
        60s, "the source streams its slot"));
  }

  std::string cert_dir_;
  std::unique_ptr<TestCerts> certs_;
  PgCluster* primary_ = nullptr;
  uint16_t source_port_ = 0;
  std::vector<std::unique_ptr<GeoSite>> sites_;
  std::vector<std::unique_ptr<FaultProxy>> proxies_;
};

TEST_F(TransportE2E, TlsStreamThroughCutsAndKillsGivesEverySiteTheSourceSequence) {
  PgCluster& dublin_pg = NewCluster("dublin");
  PgCluster& virginia_pg = NewCluster("virginia");
  GeoSite& source = AddSource();
  FaultProxy& to_dublin = AddProxy(source_port_);
  FaultProxy& to_virginia = AddProxy(source_port_);
  GeoSite& dublin = AddReplica("dublin", dublin_pg, to_dublin.port());
  GeoSite& virginia = AddReplica("virginia", virginia_pg, to_virginia.port());
  ASSERT_TRUE(source.Start().ok());
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(virginia.Start().ok());
  WaitForSlot();
  Lsn start = primary_->CurrentWalLsn();
  ASSERT_TRUE(
      WaitFor([&] { return AppliedLsn(dublin_pg) >= start && AppliedLsn(virginia_pg) >= start; },
              60s, "both sites stream over TLS"));
  primary_->RunPgbench({"-i", "-s", "1", "-q"});
  std::thread load([&] { primary_->RunPgbench({"-n", "-c", "2", "-T", "12"}); });
  auto progress = [&](PgCluster& pg) {
    Lsn before = AppliedLsn(pg);
    WaitFor([&] { return AppliedLsn(pg) > before; }, 60s, pg.name() + " makes progress");
  };
  for (int i = 0; i < 3; ++i) {
    progress(dublin_pg);
    to_dublin.Cut();
    // The cut lasts until virginia has applied more: dublin's outage does not
    // hold virginia back.
    Lsn virginia_before = AppliedLsn(virginia_pg);
    EXPECT_TRUE(WaitFor([&] { return AppliedLsn(virginia_pg) > virginia_before; }, 30s,
                        "virginia progresses while dublin is cut off"));
    to_dublin.Restore();
  }
  progress(virginia_pg);
  ASSERT_TRUE(source.Kill9().ok());
  ASSERT_TRUE(source.Start().ok());
  progress(virginia_pg);
  ASSERT_TRUE(virginia.Kill9().ok());
  ASSERT_TRUE(virginia.Start().ok());
  load.join();

  Lsn target = primary_->CurrentWalLsn();
  for (PgCluster* pg : {&dublin_pg, &virginia_pg}) {
    ASSERT_TRUE(WaitFor([&] { return AppliedLsn(*pg) >= target; }, 120s,
                        fmt::format("{} applied up to {}", pg->name(), target.ToString())));
    EXPECT_EQ(CompareTables(*primary_, *pg), "") << pg->name() << " matches the primary";
  }
  for (GeoSite* s : {&dublin, &virginia, &source}) ASSERT_TRUE(s->Stop().ok());
  auto src = ReadSpool(source.dir() + "/spool");
  ASSERT_GT(src.size(), 1000u) << "the source spooled the pgbench run";
  for (GeoSite* s : {&dublin, &virginia}) {
    auto rep = ReadSpool(s->dir() + "/spool");
    ASSERT_LE(rep.size(), src.size());
    EXPECT_GT(rep.size(), src.size() / 2) << s->spec().name << " received the stream";
    for (size_t i = 0; i < rep.size(); ++i) {
      ASSERT_TRUE(rep[i].epoch == src[i].epoch && rep[i].lsn == src[i].lsn &&
                  rep[i].flags == src[i].flags && rep[i].payload == src[i].payload)
          << s->spec().name << " record " << i << " at " << rep[i].position().ToString()
          << " differs from the source's record at " << src[i].position().ToString()
          << " (a gap or a duplicate)";
    }
  }
}

TEST_F(TransportE2E, WrongClusterUnknownSiteAndForeignCertificateAreRefused) {
  PgCluster& pg = NewCluster("replica");
  GeoSite& source = AddSource();
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  GeoSite& wrong_cluster = AddReplica("dublin", pg, source_port_, {{"cluster_id", "other"}});
  ASSERT_TRUE(wrong_cluster.Start().ok());
  auto code = wrong_cluster.WaitExit(30s);
  ASSERT_TRUE(code.ok()) << "a replica of another cluster stops instead of retrying";
  EXPECT_EQ(*code, 6) << "exit code 6 (fenced)";
  EXPECT_NE(wrong_cluster.ReadLog().find("belongs to cluster \"other\""), std::string::npos)
      << wrong_cluster.ReadLog();
  EXPECT_NE(source.ReadLog().find("refused site dublin"), std::string::npos) << source.ReadLog();

  GeoSite& unknown = AddReplica("lisbon", pg, source_port_);
  ASSERT_TRUE(unknown.Start().ok());
  code = unknown.WaitExit(30s);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 6);
  EXPECT_NE(unknown.ReadLog().find("unknown site \"lisbon\""), std::string::npos)
      << unknown.ReadLog();

  TestCerts rogue(cert_dir_ + "/rogue", "rogue-ca", {"virginia"});
  GeoSite& foreign =
      AddReplica("virginia", pg, source_port_, {{"tls", rogue.TlsConfig("virginia")}});
  ASSERT_TRUE(foreign.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return foreign.ReadLog().find("TLS handshake") != std::string::npos; },
                      30s, "the replica reports the failed TLS handshake"));
  ASSERT_TRUE(WaitFor([&] { return source.ReadLog().find("TLS handshake") != std::string::npos; },
                      30s, "the source reports the failed TLS handshake"));
}

TEST_F(TransportE2E, ReplicaNeverAcceptsAStreamFromALowerEpoch) {
  PgCluster& pg = NewCluster("replica");
  GeoSite& source = AddSource();
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  GeoSite& ahead = AddReplica("dublin", pg, source_port_);
  SiteState state;
  state.cluster_id = "test";
  state.site = "dublin";
  state.epoch = 2;  // this site already saw a promotion the source missed
  ASSERT_TRUE(WriteSiteState(ahead.dir() + "/state", state).ok());
  ASSERT_TRUE(ahead.Start().ok());
  auto code = ahead.WaitExit(30s);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 6) << ahead.ReadLog();
  EXPECT_NE(ahead.ReadLog().find("epoch"), std::string::npos) << ahead.ReadLog();
  ASSERT_TRUE(WaitFor(
      [&] { return source.ReadLog().find("this source stops shipping") != std::string::npos; }, 30s,
      "the stale source stops shipping"));
}

TEST_F(TransportE2E, SyncPolicyBlocksPrimaryCommitWhileTheSyncSiteIsCutOff) {
  PgCluster& pg = NewCluster("dublin");
  primary_->SetSetting("synchronous_standby_names", "geosync");
  ASSERT_TRUE(primary_->Reload().ok());
  GeoSite& source =
      AddSource({{"commit", {{"policy", "sync"}, {"sync_sites", {"dublin"}}, {"quorum", 1}}}});
  FaultProxy& link = AddProxy(source_port_);
  GeoSite& dublin = AddReplica("dublin", pg, link.port());
  ASSERT_TRUE(source.Start().ok());
  ASSERT_TRUE(dublin.Start().ok());
  WaitForSlot();
  ASSERT_EQ(primary_->QueryValue("SHOW synchronous_standby_names"), "geosync");
  primary_->Exec("CREATE TABLE sync_probe (id int primary key)");
  ASSERT_TRUE(WaitFor([&] { return UserTables(pg).size() == 1; }, 60s, "dublin has the table"));

  link.Cut(CutMode::kHang);
  std::atomic<bool> committed{false};
  std::thread writer([&] {
    primary_->Exec("INSERT INTO sync_probe VALUES (1)");
    committed = true;
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        return primary_->QueryValue(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event = "
                   "'SyncRep'") == "1";
      },
      30s, "the primary's commit waits for remote durability (wait_event SyncRep)"));
  EXPECT_FALSE(committed) << "no commit while the sync site is cut off";
  link.Restore();
  bool done =
      WaitFor([&] { return committed.load(); }, 60s, "the commit completes once the link returns");
  writer.join();
  ASSERT_TRUE(done);
  ASSERT_TRUE(WaitFor([&] { return pg.QueryValue("SELECT count(*) FROM sync_probe") == "1"; }, 30s,
                      "dublin has the row"));
}

}  // namespace
}  // namespace geosync::testing
