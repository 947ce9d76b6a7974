// geosyncctl check-config against real PostgreSQL clusters: each
// misconfiguration a DBA can make (wal_level, too few slots or WAL senders, a
// table whose UPDATEs cannot replicate, an unreachable upstream or site, a
// bad key, a certificate for the wrong site) is caught, named with what to
// change, and every problem is reported in one run, not just the first.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/exit_codes.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

PgClusterOptions Fast(const std::string& name) {
  PgClusterOptions o;
  o.name = name;
  o.from_template = true;  // no test here looks at the system identifier
  return o;
}

class CheckConfigTest : public PgClusterTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-check-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    PgClusterTest::TearDown();
  }

  // A replica config whose upstream is a port that accepts TCP connections
  // (the cluster's own port: the check is a TCP connect, nothing more).
  nlohmann::json Replica(const PgCluster& pg) {
    return {{"cluster_id", "prod"},
            {"site", "dublin"},
            {"role", "replica"},
            {"state_dir", dir_ + "/state"},
            {"postgres", {{"dsn", pg.ConnInfo()}}},
            {"spool", {{"dir", dir_ + "/spool"}}},
            {"upstream", {{"host", "127.0.0.1"}, {"port", pg.port()}}}};
  }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // A generous timeout: a TLS handshake on a loaded 2-core box can take
  // seconds, and the unreachable peers in these tests refuse at once.
  ProcessOutput CheckConfig(const nlohmann::json& config, std::vector<std::string> extra = {}) {
    std::string path = Write("site.json", config.dump(2));
    std::vector<std::string> argv = {BinaryPath("geosyncctl"), "check-config", "-c", path,
                                     "--timeout-ms",           "10000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ProcessSpec spec;
    spec.argv = argv;
    auto r = RunProgram(spec, 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessOutput{-1, ""};
  }

  // A cluster with `geosyncctl init` run on it, as the runbook has it on
  // every site before check-config.
  PgCluster& InitCluster(const std::string& name) {
    PgCluster& pg = NewCluster(name, Fast(name));
    ProcessSpec init;
    init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", pg.ConnInfo()};
    auto r = RunProgram(init, 60s);
    EXPECT_TRUE(r.ok() && r->exit_status == 0) << (r.ok() ? r->output : r.status().ToString());
    return pg;
  }

  static bool Has(const ProcessOutput& r, const std::string& text) {
    return r.output.find(text) != std::string::npos;
  }

  std::string dir_;
};

TEST_F(CheckConfigTest, WellConfiguredSiteHasNoProblem) {
  PgCluster& pg = InitCluster("pg");
  pg.Exec("CREATE TABLE accounts (id int PRIMARY KEY, balance int)");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitOk) << r.output;
  EXPECT_TRUE(Has(r, "config valid; site dublin is ready")) << r.output;
  EXPECT_TRUE(Has(r, "ok    wal_level: logical")) << r.output;
  EXPECT_TRUE(Has(r, "1 of 1 tables")) << "accounts is counted: " << r.output;
  EXPECT_FALSE(Has(r, "FAIL")) << r.output;
  EXPECT_TRUE(Has(r, "WARN  tls")) << "TLS off is a warning: " << r.output;
}

// Issue #25: an empty replica was called ready ("0 of 0 tables") although
// its first applied change fails on a missing table.
TEST_F(CheckConfigTest, ReplicaWithNoTablesNeedsASeedNotReady) {
  PgCluster& pg = InitCluster("pg");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitOk) << "a warning: seed needs the agent running\n" << r.output;
  EXPECT_TRUE(Has(r, "WARN  seed: replica dublin needs a seed: its database has no tables"))
      << r.output;
  EXPECT_TRUE(Has(r, "geosyncctl seed --site dublin")) << "says what to run: " << r.output;
  EXPECT_TRUE(Has(r, "config valid; site dublin is not ready: it needs a seed")) << r.output;
  EXPECT_FALSE(Has(r, "is ready")) << r.output;
  EXPECT_FALSE(Has(r, "0 of 0 tables")) << r.output;
}

TEST_F(CheckConfigTest, WalLevelReplicaIsNamedWithTheSettingToChange) {
  PgCluster& pg = InitCluster("pg");
  pg.SetSetting("wal_level", "replica");
  ASSERT_TRUE(pg.Restart().ok());
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  wal_level: replica")) << r.output;
  EXPECT_TRUE(Has(r, "set wal_level = logical in postgresql.conf")) << r.output;
  EXPECT_TRUE(Has(r, "1 problem found")) << r.output;
}

TEST_F(CheckConfigTest, TooFewSlotsAndWalSendersAreBothReported) {
  PgCluster& pg = InitCluster("pg");
  pg.SetSetting("max_replication_slots", "3");
  pg.SetSetting("max_wal_senders", "1");
  ASSERT_TRUE(pg.Restart().ok());
  // Two slots of another tool: 3 slots leave one for geosync, which needs 2.
  pg.Exec("SELECT pg_create_logical_replication_slot('other_a', 'pgoutput')");
  pg.Exec("SELECT pg_create_logical_replication_slot('other_b', 'pgoutput')");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  max_replication_slots: 3 (needs 4: 2 for geosync, 2 other slots"))
      << r.output;
  EXPECT_TRUE(Has(r, "set max_replication_slots = 10")) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  max_wal_senders: 1 (needs 2")) << r.output;
  EXPECT_TRUE(Has(r, "set max_wal_senders = 10")) << r.output;
  EXPECT_TRUE(Has(r, "2 problems found")) << r.output;
}

TEST_F(CheckConfigTest, TableWithoutPrimaryKeyIsNamedUntilItHasAReplicaIdentity) {
  PgCluster& pg = InitCluster("pg");
  pg.Exec("CREATE TABLE with_pk (id int PRIMARY KEY)");
  pg.Exec("CREATE TABLE events (at timestamptz, payload text)");
  pg.Exec("CREATE TABLE audit (id int PRIMARY KEY)");
  pg.Exec("ALTER TABLE audit REPLICA IDENTITY NOTHING");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  table public.events: no primary key and REPLICA IDENTITY DEFAULT"))
      << r.output;
  EXPECT_TRUE(Has(r, "ALTER TABLE public.events REPLICA IDENTITY FULL")) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  table public.audit: REPLICA IDENTITY NOTHING")) << r.output;
  EXPECT_FALSE(Has(r, "table public.with_pk")) << "a table with a PK is fine: " << r.output;
  EXPECT_TRUE(Has(r, "1 of 3 tables")) << r.output;

  pg.Exec("ALTER TABLE events REPLICA IDENTITY FULL");
  pg.Exec("ALTER TABLE audit REPLICA IDENTITY DEFAULT");
  r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitOk) << "after the fixes it suggested: " << r.output;
}

TEST_F(CheckConfigTest, OnlyTablesOfAnExistingPublicationAreJudged) {
  PgCluster& pg = InitCluster("pg");
  pg.Exec("CREATE TABLE with_pk (id int PRIMARY KEY)");
  pg.Exec("CREATE TABLE scratch (x int)");
  pg.Exec("CREATE TABLE logs (x int)");
  pg.Exec("CREATE PUBLICATION geosync FOR TABLE with_pk, logs");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  table public.logs")) << r.output;
  EXPECT_FALSE(Has(r, "public.scratch")) << "scratch is not published: " << r.output;
  EXPECT_TRUE(Has(r, "1 of 2 tables in publication geosync")) << r.output;
}

TEST_F(CheckConfigTest, TablesListedInConfigMustExist) {
  PgCluster& pg = InitCluster("pg");
  pg.Exec("CREATE TABLE orders (id int PRIMARY KEY)");
  pg.Exec("CREATE TABLE \"Order,Lines\" (x int)");  // a name that needs quoting, without PK
  nlohmann::json c = Replica(pg);
  c["postgres"]["tables"] = {"public.orders", "public.missing", "public.\"Order,Lines\""};
  auto r = CheckConfig(c);
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  table public.missing: listed in postgres.tables but missing"))
      << r.output;
  EXPECT_TRUE(Has(r, "FAIL  table public.\"Order,Lines\": no primary key")) << r.output;
  EXPECT_TRUE(Has(r, "1 of 2 tables in postgres.tables")) << r.output;
}

TEST_F(CheckConfigTest, UnreachableUpstreamIsAPeerProblem) {
  PgCluster& pg = InitCluster("pg");
  nlohmann::json c = Replica(pg);
  uint16_t port = FreeTcpPort();
  c["upstream"]["port"] = port;
  auto r = CheckConfig(c);
  EXPECT_EQ(r.exit_status, kExitPeer) << r.output;
  EXPECT_TRUE(Has(r, fmt::format("FAIL  upstream 127.0.0.1:{}: cannot connect", port))) << r.output;
}

TEST_F(CheckConfigTest, BadConfigKeyExitsThreeAndNamesTheKey) {
  PgCluster& pg = InitCluster("pg");
  nlohmann::json c = Replica(pg);
  c["upstream"]["prot"] = 7450;
  auto r = CheckConfig(c);
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "unknown key 'upstream.prot'")) << r.output;
}

TEST_F(CheckConfigTest, EveryProblemIsReportedInOneRun) {
  PgCluster& pg = InitCluster("pg");
  pg.SetSetting("wal_level", "replica");
  pg.SetSetting("max_replication_slots", "1");
  pg.SetSetting("max_wal_senders", "1");
  ASSERT_TRUE(pg.Restart().ok());
  pg.Exec("CREATE TABLE nopk (x int)");
  nlohmann::json c = Replica(pg);
  c["upstream"]["port"] = FreeTcpPort();
  std::string topology = Write(
      "topology.json",
      nlohmann::json{
          {"cluster_id", "staging"},
          {"sites",
           {{{"name", "frankfurt"}, {"admin", fmt::format("http://127.0.0.1:{}", FreeTcpPort())}}}}}
          .dump());
  auto r = CheckConfig(c, {"--topology", topology});
  EXPECT_EQ(r.exit_status, kExitConfig) << "the first problem is a config one: " << r.output;
  for (const char* expect :
       {"FAIL  topology", "cluster_id \"staging\"", "site dublin is not listed", "FAIL  wal_level",
        "FAIL  max_replication_slots", "FAIL  max_wal_senders", "FAIL  table public.nopk",
        "FAIL  upstream", "FAIL  site frankfurt", "8 problems found"}) {
    EXPECT_TRUE(Has(r, expect)) << "missing \"" << expect << "\" in:\n" << r.output;
  }
}

TEST_F(CheckConfigTest, TopologyMustAgreeWithTheSiteConfig) {
  PgCluster& pg = InitCluster("pg");
  nlohmann::json c = Replica(pg);
  auto topology_with = [&](uint16_t port) {
    return Write(
        "topology.json",
        nlohmann::json{
            {"cluster_id", "prod"},
            {"sites", {{{"name", "dublin"}, {"admin", fmt::format("http://127.0.0.1:{}", port)}}}}}
            .dump());
  };
  auto r = CheckConfig(c, {"--topology", topology_with(7451)});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "lists dublin at http://127.0.0.1:7451 but the config has no admin.listen"))
      << r.output;

  c["admin"] = {{"listen", {{"host", "127.0.0.1"}, {"port", 7452}}}};
  r = CheckConfig(c, {"--topology", topology_with(7451)});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "lists dublin at http://127.0.0.1:7451 but admin.listen.port is 7452"))
      << r.output;

  r = CheckConfig(c, {"--topology", topology_with(7452)});
  EXPECT_EQ(r.exit_status, kExitOk) << "only this site is listed, so no peer to call: " << r.output;

  std::string broken = Write("broken.json", "{\"cluster_id\": \"prod\", \"sites\": [");
  r = CheckConfig(c, {"--topology", broken});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  topology " + broken + ": not valid JSON")) << r.output;
  EXPECT_TRUE(Has(r, "ok    wal_level: logical")) << "the other checks still run: " << r.output;
}

TEST_F(CheckConfigTest, CertificateExpiringSoonIsAWarning) {
  PgCluster& pg = InitCluster("pg");
  std::string certs = dir_ + "/certs";
  ProcessSpec make;
  make.argv = {SourceDir() + "/scripts/make-certs.sh", certs, "dublin"};
  make.env = {{"GEOSYNC_CERT_DAYS", "10"}};
  auto made = RunProgram(make, 60s);
  ASSERT_TRUE(made.ok() && made->exit_status == 0);
  nlohmann::json c = Replica(pg);
  c["tls"] = {{"enabled", true},
              {"ca_file", certs + "/ca.crt"},
              {"cert_file", certs + "/dublin.crt"},
              {"key_file", certs + "/dublin.key"}};
  auto r = CheckConfig(c);
  // The upstream here is PostgreSQL's port, which does not speak geosync's
  // TLS: the warning is what this test is about, not the exit code.
  std::string warn = "WARN  tls: certificate " + certs + "/dublin.crt expires in ";
  EXPECT_TRUE(Has(r, warn + "10 days") || Has(r, warn + "9 days")) << r.output;
  EXPECT_TRUE(Has(r, "ok    tls: certificate CN=dublin")) << r.output;
}

TEST_F(CheckConfigTest, PeersThatAnswerPassAndTheCertificateMustNameTheSite) {
  PgCluster& primary = InitCluster("primary");
  PgCluster& replica = InitCluster("replica");
  std::string certs = dir_ + "/certs";
  ProcessSpec make;
  make.argv = {SourceDir() + "/scripts/make-certs.sh", certs, "frankfurt", "dublin"};
  auto made = RunProgram(make, 60s);
  ASSERT_TRUE(made.ok() && made->exit_status == 0)
      << (made.ok() ? made->output : made.status().ToString());
  auto tls = [&](const std::string& site) {
    return nlohmann::json{{"enabled", true},
                          {"ca_file", certs + "/ca.crt"},
                          {"cert_file", certs + "/" + site + ".crt"},
                          {"key_file", certs + "/" + site + ".key"}};
  };
  ProcessSpec init;
  init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", primary.ConnInfo()};
  auto inited = RunProgram(init, 30s);
  ASSERT_TRUE(inited.ok() && inited->exit_status == 0)
      << (inited.ok() ? inited->output : inited.status().ToString());
  uint16_t admin_port = FreeTcpPort(), listen_port = FreeTcpPort();
  SiteSpec spec;
  spec.cluster_id = "prod";
  spec.name = "frankfurt";
  spec.source = true;
  spec.dsn = primary.ConnInfo();
  spec.listen_port = listen_port;
  spec.sites = {"dublin"};
  spec.extra = {{"tls", tls("frankfurt")},
                {"admin", {{"listen", {{"host", "127.0.0.1"}, {"port", admin_port}}}}}};
  GeoSite source(spec);
  ASSERT_TRUE(source.Start().ok());
  std::string url = fmt::format("http://127.0.0.1:{}", admin_port);
  std::string topology = Write(
      "topology.json", nlohmann::json{{"cluster_id", "prod"},
                                      {"sites",
                                       {{{"name", "frankfurt"}, {"admin", url}},
                                        {{"name", "dublin"}, {"admin", "http://127.0.0.1:1"}}}}}
                           .dump());
  nlohmann::json c = Replica(replica);
  c["upstream"]["port"] = listen_port;
  c["tls"] = tls("dublin");
  c["admin"] = {{"listen", {{"host", "127.0.0.1"}, {"port", 1}}}};
  ProcessOutput r;
  ASSERT_TRUE(WaitFor(
      [&] {
        r = CheckConfig(c, {"--topology", topology});
        return r.exit_status == kExitOk;
      },
      30s, "check-config passes once the source site is up"))
      << r.output;
  EXPECT_TRUE(Has(r, fmt::format("ok    site frankfurt ({}): GET /healthz answered 200", url)))
      << r.output;
  EXPECT_TRUE(Has(r, "ok    tls: certificate CN=dublin")) << r.output;
  EXPECT_TRUE(Has(r, fmt::format("ok    upstream 127.0.0.1:{}: TLS handshake done, server "
                                 "certificate CN=frankfurt",
                                 listen_port)))
      << r.output;

  // Certificates from another deployment's CA: each file is fine on its own,
  // the handshake with the source is not.
  std::string other = dir_ + "/other-certs";
  make.argv = {SourceDir() + "/scripts/make-certs.sh", other, "dublin"};
  made = RunProgram(make, 60s);
  ASSERT_TRUE(made.ok() && made->exit_status == 0);
  nlohmann::json foreign = c;
  foreign["tls"]["ca_file"] = other + "/ca.crt";
  foreign["tls"]["cert_file"] = other + "/dublin.crt";
  foreign["tls"]["key_file"] = other + "/dublin.key";
  r = CheckConfig(foreign, {"--topology", topology});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "ok    tls: certificate CN=dublin")) << r.output;
  EXPECT_TRUE(Has(r, fmt::format("FAIL  upstream 127.0.0.1:{}: TLS handshake", listen_port)))
      << r.output;
  EXPECT_TRUE(Has(r, "same deployment CA")) << r.output;

  c["tls"]["cert_file"] = certs + "/frankfurt.crt";
  c["tls"]["key_file"] = certs + "/frankfurt.key";
  r = CheckConfig(c, {"--topology", topology});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "has CN \"frankfurt\", not the site name \"dublin\"")) << r.output;
  if (HasFailure()) source.DumpLog();
}

TEST_F(CheckConfigTest, WithoutInitTheWriteGuardIsMissingAndNamed) {
  PgCluster& pg = NewCluster("pg", Fast("pg"));
  pg.Exec("CREATE TABLE accounts (id int PRIMARY KEY, balance int)");
  auto r = CheckConfig(Replica(pg));
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_TRUE(Has(r, "FAIL  write guard: not installed")) << r.output;
  EXPECT_TRUE(Has(r, "geosyncctl init")) << r.output;
}

}  // namespace
}  // namespace geosync::testing
