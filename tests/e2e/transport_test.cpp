// Site-to-site transport under mutual TLS: a source and two replica sites
// stream through fault proxies that cut the links, while agents are killed
// with kill -9; every replica spool must end with exactly the source's
// sequence of records, and the tables must match. Handshakes with a wrong
// cluster id, an unknown site, a stale epoch or a foreign certificate are
// refused on both sides. Policy sync makes a primary commit wait for a
// remote site's durability. Hostile peers (docs/security.md, "Site links"):
// Hellos with impossible epochs from strangers never fence the source, a
// source with the wrong certificate is refused by its replicas, an ack beyond
// what was sent closes its session, and plaintext never listens beyond
// loopback unless allowed.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "agent/spool/spool.h"
#include "agent/state/state_file.h"
#include "common/handshake.h"
#include "tests/support/certs.h"
#include "tests/support/deployment.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/raw_peer.h"
#include "tests/support/site.h"
#include "tests/support/spool_records.h"
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
  if (!spool.ok()) return {};
  return ReadAllRecords(**spool);
}

class TransportE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.token_seed = "transport"});
    cert_dir_ = d.dir() + "/certs";
    certs_ = std::make_unique<TestCerts>(
        cert_dir_, "deployment-ca",
        std::vector<std::string>{"frankfurt", "dublin", "virginia", "lisbon"});
    primary_ = &d.Primary();
    source_port_ = d.SourcePort();
  }

  void TearDown() override {
    DeploymentTest::TearDown();
    proxies_.clear();
  }

  GeoSite& AddSource(nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json config = {{"tls", certs_->TlsConfig("frankfurt")},
                             {"spool", {{"segment_mb", 256}}}};
    config.merge_patch(extra);
    return deploy().AddSource(config);
  }

  // Replica `name` on the PostgreSQL `pg`: several refused impostors share
  // one database.
  GeoSite& AddReplica(const std::string& name, PgCluster& pg, uint16_t upstream_port,
                      nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json config = {{"tls", certs_->TlsConfig(name)}};
    config.merge_patch(extra);
    return deploy().Add(deploy().ReplicaSpec(name, config, upstream_port, &pg));
  }

  FaultProxy& AddProxy(uint16_t target) {
    proxies_.push_back(std::make_unique<FaultProxy>(target));
    EXPECT_TRUE(proxies_.back()->Start().ok());
    return *proxies_.back();
  }

  void WaitForSlot() { deploy().WaitSlotActive(); }

  // The deployment certificate of `site`, for a hand-driven peer.
  geosync::TlsConfig Tls(const std::string& site) const {
    nlohmann::json j = certs_->TlsConfig(site);
    return geosync::TlsConfig{true, j["ca_file"], j["cert_file"], j["key_file"]};
  }

  static nlohmann::json AdminOn(uint16_t port) {
    return {{"listen", {{"host", "127.0.0.1"}, {"port", port}}}};
  }

  // GET on a site's admin API; "" when it does not answer 200.
  static std::string Get(uint16_t admin_port, const std::string& target) {
    admin::HttpCall call;
    call.base_url = fmt::format("http://127.0.0.1:{}", admin_port);
    call.target = target;
    auto r = admin::Http(call);
    return r.ok() && r->status == 200 ? r->body : "";
  }

  // The source's /status entry for `site`, or null.
  static nlohmann::json SiteEntry(uint16_t admin_port, const std::string& site) {
    auto doc = nlohmann::json::parse(Get(admin_port, "/status"), nullptr, false);
    if (!doc.is_object() || !doc.contains("source") || !doc["source"].contains("sites")) {
      return nullptr;
    }
    for (const auto& s : doc["source"]["sites"]) {
      if (s.value("site", "") == site) return s;
    }
    return nullptr;
  }

  std::string cert_dir_;
  std::unique_ptr<TestCerts> certs_;
  PgCluster* primary_ = nullptr;
  uint16_t source_port_ = 0;
  uint16_t admin_port_ = 0;
  std::vector<std::unique_ptr<FaultProxy>> proxies_;
};

TEST_F(TransportE2E, TlsStreamThroughCutsAndKillsGivesEverySiteTheSourceSequence) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  PgCluster& virginia_pg = deploy().Pg("virginia");
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
  PgCluster& pg = deploy().Pg("replica");
  admin_port_ = FreeTcpPort();
  GeoSite& source = AddSource({{"admin", AdminOn(admin_port_)}});
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
  // Refused, not merely noisy: the source counted the refused handshake, never
  // registered virginia as connected, and the replica never streamed.
  ASSERT_TRUE(WaitFor(
      [&] {
        return Get(admin_port_, "/metrics")
                   .find("geosync_refused_hellos_total{reason=\"tls_handshake\"}") !=
               std::string::npos;
      },
      30s, "the source counts the refused TLS handshake"));
  nlohmann::json virginia = SiteEntry(admin_port_, "virginia");
  ASSERT_TRUE(virginia.is_object()) << Get(admin_port_, "/status");
  EXPECT_EQ(virginia["connected"], false) << virginia.dump();
  EXPECT_TRUE(virginia["durable"].is_null()) << "nothing acknowledged: " << virginia.dump();
  EXPECT_EQ(source.ReadLog().find("site virginia connected"), std::string::npos)
      << source.ReadLog();
  EXPECT_EQ(foreign.ReadLog().find("receiver: streaming from"), std::string::npos)
      << foreign.ReadLog();
}

TEST_F(TransportE2E, ReplicaNeverAcceptsAStreamFromALowerEpoch) {
  PgCluster& pg = deploy().Pg("replica");
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
  PgCluster& pg = deploy().Pg("dublin");
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

constexpr uint64_t kHugeEpoch = uint64_t{1} << 62;

TEST_F(TransportE2E, HostileHellosWithAHugeEpochNeverFenceTheSource) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  admin_port_ = FreeTcpPort();
  GeoSite& source = AddSource({{"admin", AdminOn(admin_port_)}});
  GeoSite& dublin = AddReplica("dublin", dublin_pg, source_port_);
  ASSERT_TRUE(source.Start().ok());
  ASSERT_TRUE(dublin.Start().ok());
  WaitForSlot();
  const Lsn started = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return AppliedLsn(dublin_pg) >= started; }, 60s, "dublin streams"));

  // Each carries an epoch that would make the source fence itself if it
  // were believed: a stranger with a certificate of the deployment CA, a
  // made-up site of a made-up cluster, a real site of another cluster, a
  // certificate for another name, and a real site with an impossible epoch.
  struct Attempt {
    const char* cert;
    const char* cluster;
    const char* site;
    uint64_t epoch;
    HelloRefusal expected;
  };
  const Attempt attempts[] = {
      {"lisbon", "test", "lisbon", kHugeEpoch, HelloRefusal::kUnknownSite},
      {"lisbon", "made-up", "made-up-site", kHugeEpoch, HelloRefusal::kOtherCluster},
      {"dublin", "other", "dublin", kHugeEpoch, HelloRefusal::kOtherCluster},
      {"virginia", "test", "dublin", kHugeEpoch, HelloRefusal::kCertificateMismatch},
      {"dublin", "test", "dublin", kHugeEpoch, HelloRefusal::kImpossibleEpoch},
      {"dublin", "test", "dublin", 2 + kMaxEpochJump, HelloRefusal::kImpossibleEpoch},
  };
  for (const Attempt& a : attempts) {
    RawPeer peer(source_port_, Tls(a.cert));
    ASSERT_TRUE(peer.Connect().ok()) << a.cert;
    Hello hello;
    hello.cluster_id = a.cluster;
    hello.site_name = a.site;
    hello.epoch = a.epoch;
    auto reply = peer.SayHello(hello);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_FALSE(reply->accepted);
    EXPECT_EQ(reply->code, a.expected)
        << a.site << " with " << a.cert << "'s certificate: " << HelloRefusalName(reply->code)
        << ": " << reply->error;
    EXPECT_EQ(reply->source_epoch, 1u);
  }

  // The primary still takes writes and ships them: nothing was fenced.
  primary_->Exec("CREATE TABLE after_hostile_hellos (id int primary key)");
  primary_->Exec("INSERT INTO after_hostile_hellos VALUES (1)");
  const Lsn written = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return AppliedLsn(dublin_pg) >= written; }, 60s,
                      "dublin applies the write made after the hostile Hellos"));
  EXPECT_EQ(dublin_pg.QueryValue("SELECT count(*) FROM after_hostile_hellos"), "1");
  EXPECT_TRUE(source.IsRunning());
  auto state = ReadSiteState(source.dir() + "/state");
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_FALSE(state->fenced) << "state.json holds no fence: " << state->fence_reason;
  EXPECT_EQ(state->epoch, 1u);
  EXPECT_EQ(source.ReadLog().find("stops shipping"), std::string::npos) << source.ReadLog();
  std::string metrics = Get(admin_port_, "/metrics");
  for (const char* line : {"geosync_refused_hellos_total{reason=\"unknown_site\"} 1\n",
                           "geosync_refused_hellos_total{reason=\"other_cluster\"} 2\n",
                           "geosync_refused_hellos_total{reason=\"certificate_mismatch\"} 1\n",
                           "geosync_refused_hellos_total{reason=\"impossible_epoch\"} 2\n"}) {
    EXPECT_NE(metrics.find(line), std::string::npos) << line << " in\n" << metrics;
  }
  EXPECT_NE(source.ReadLog().find("refused site lisbon"), std::string::npos)
      << "each refusal is logged";
}

TEST_F(TransportE2E, ReplicaRefusesASourceWhoseCertificateNamesAnotherSite) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  PgCluster& lisbon_pg = deploy().Pg("lisbon");
  // "frankfurt" at epoch 7, presenting virginia's (valid) certificate.
  GeoSite& source = AddSource({{"tls", certs_->TlsConfig("virginia")},
                               {"sites", std::vector<std::string>{"dublin", "lisbon"}}});
  SiteState state;
  state.cluster_id = "test";
  state.site = "frankfurt";
  state.role = Role::kSource;
  state.source_site = "frankfurt";
  state.epoch = 7;
  ASSERT_TRUE(WriteSiteState(source.dir() + "/state", state).ok());
  // dublin's config names its source; lisbon knows the deployment's sites.
  GeoSite& dublin =
      AddReplica("dublin", dublin_pg, source_port_, {{"upstream", {{"site", "frankfurt"}}}});
  GeoSite& lisbon =
      AddReplica("lisbon", lisbon_pg, source_port_,
                 {{"sites", std::vector<std::string>{"frankfurt", "dublin", "lisbon"}}});
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(lisbon.Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return dublin.ReadLog().find(
                   "expected source \"frankfurt\" but its certificate names \"virginia\"") !=
               std::string::npos;
      },
      30s, "dublin refuses a source whose certificate is virginia's"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return lisbon.ReadLog().find(
                   "the source is not a site of this deployment: its "
                   "certificate names \"virginia\"") != std::string::npos;
      },
      30s, "lisbon refuses a source certificate outside its deployment"));
  for (GeoSite* s : {&dublin, &lisbon}) {
    auto st = ReadSiteState(s->dir() + "/state");
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->epoch, 1u) << s->spec().name << " did not adopt the impostor's epoch 7";
    EXPECT_EQ(s->ReadLog().find("adopted epoch"), std::string::npos) << s->ReadLog();
    EXPECT_EQ(s->ReadLog().find("receiver: streaming from"), std::string::npos) << s->ReadLog();
    EXPECT_TRUE(s->IsRunning()) << s->spec().name << " keeps retrying for the right source";
  }
}

TEST_F(TransportE2E, AnAckBeyondWhatWasSentClosesTheSessionAndMovesNoQuorum) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  primary_->SetSetting("synchronous_standby_names", "geosync");
  ASSERT_TRUE(primary_->Reload().ok());
  admin_port_ = FreeTcpPort();
  GeoSite& source =
      AddSource({{"commit", {{"policy", "sync"}, {"sync_sites", {"dublin"}}, {"quorum", 1}}},
                 {"admin", AdminOn(admin_port_)}});
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  std::atomic<bool> committed{false};
  std::thread writer([&] {
    primary_->Exec("CREATE TABLE ack_probe (id int primary key)");
    committed = true;
  });
  // On an early failure the commit would wait forever: cancel its wait.
  struct Join {
    std::thread& t;
    std::atomic<bool>& done;
    PgCluster& pg;
    ~Join() {
      if (!done) {
        pg.QueryValue(
            "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = "
            "'SyncRep'");
      }
      if (t.joinable()) t.join();
    }
  } join{writer, committed, *primary_};
  ASSERT_TRUE(WaitFor(
      [&] {
        return primary_->QueryValue(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") == "1";
      },
      30s, "the commit waits for dublin's durability"));

  // dublin, authenticated, acknowledges far more than it was ever sent.
  RawPeer peer(source_port_, Tls("dublin"));
  ASSERT_TRUE(peer.Connect().ok());
  Hello hello;
  hello.cluster_id = "test";
  hello.site_name = "dublin";
  hello.epoch = 1;
  auto reply = peer.SayHello(hello);
  ASSERT_TRUE(reply.ok() && reply->accepted)
      << (reply.ok() ? reply->error : reply.status().ToString());
  const Position forged{1, Lsn(0xFFFFFFFF00)};
  std::string ack;
  EncodeAck(Ack{forged, forged, Position{}, 0}, &ack);
  ASSERT_TRUE(peer.Send(FrameType::kAck, ack).ok());
  Status closed = peer.ReadUntilError(30s);
  EXPECT_EQ(closed.code(), Code::kProtocol) << closed.ToString();
  EXPECT_NE(closed.message().find("forged or broken ack"), std::string::npos) << closed.ToString();

  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json d = SiteEntry(admin_port_, "dublin");
        return d.is_object() && d["connected"] == false;
      },
      30s, "the source closed dublin's session"));
  nlohmann::json d = SiteEntry(admin_port_, "dublin");
  EXPECT_TRUE(d["durable"].is_null())
      << "the registry kept nothing of the forged ack: " << d.dump();
  EXPECT_NE(Get(admin_port_, "/metrics").find("geosync_refused_acks_total 1\n"), std::string::npos);
  EXPECT_FALSE(committed) << "the forged ack did not satisfy the sync quorum";
  EXPECT_EQ(
      primary_->QueryValue("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"),
      "1");
  EXPECT_NE(source.ReadLog().find("refused ack"), std::string::npos) << source.ReadLog();

  // The real dublin releases the commit.
  GeoSite& real = AddReplica("dublin", dublin_pg, source_port_);
  ASSERT_TRUE(real.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return committed.load(); }, 60s,
                      "the commit completes once the real dublin holds it"));
}

TEST_F(TransportE2E, APlaintextStreamServerRefusesToListenBeyondLoopback) {
  GeoSite& refused = AddSource({{"tls", nullptr}, {"listen", {{"host", "0.0.0.0"}}}});
  ASSERT_TRUE(refused.Start().ok());
  auto code = refused.WaitExit(60s);
  ASSERT_TRUE(code.ok()) << "geosyncd stops instead of listening";
  EXPECT_EQ(*code, 3) << "exit code 3 (config)";
  EXPECT_NE(refused.ReadLog().find("refusing to listen on 0.0.0.0 without TLS"), std::string::npos)
      << refused.ReadLog();

  GeoSite& allowed = AddSource(
      {{"tls", nullptr}, {"listen", {{"host", "0.0.0.0"}}}, {"allow_plaintext_links", true}});
  ASSERT_TRUE(allowed.Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] { return allowed.ReadLog().find("stream server listening") != std::string::npos; }, 60s,
      "the explicitly allowed plaintext source listens"));
  EXPECT_NE(allowed.ReadLog().find("WITHOUT TLS on a non-loopback address"), std::string::npos)
      << "and says loudly what it is doing";
}

}  // namespace
}  // namespace geosync::testing
