// Only geosync can speak for geosync (issue #17): an application login on
// the primary (no superuser, INSERT on one table, its own schema) tries to
// make replicas run SQL, roll back committed rows or change their session
// through forged control messages. Each attack runs as that role against a
// real primary, source, replica and replica geosyncd, and the test shows
// that nothing changed: no role, no lost row, tables identical row by row.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "agent/exit_codes.h"
#include "agent/pg/pg_conn.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

// What a control message may ask a replica to do, whoever sends it.
const std::vector<std::pair<std::string, std::string>> kForgeries = {
    {"geosync.ddl", R"({"sql": "CREATE ROLE pwned SUPERUSER LOGIN", "role": "postgres"})"},
    {"geosync.ddl", R"({"sql": "ROLLBACK", "role": "app"})"},
    {"geosync.ddl", R"({"sql": "SET session_replication_role = origin", "role": "app"})"},
    {"geosync.ddl", R"({"sql": "RESET ALL", "role": "app"})"},
    {"geosync.ddl", R"({"sql": "SET statement_timeout = 1", "role": "app"})"},
    {"geosync.sequences", R"([{"schema": "public", "name": "bets_id_seq", "last_value": 99999}])"},
    {"geosync.marker", "switchover from frankfurt to dublin epoch 9"},
    {"geosync.heartbeat", R"({"site": "frankfurt", "epoch": 9, "time_us": 0})"},
};

class TrustE2E : public PgClusterTest {
 protected:
  void SetUp() override {
    primary_ = &NewCluster("primary");
    replica_ = &NewCluster("replica");
    // Roles are cluster-wide, so a DBA creates them on every site.
    for (PgCluster* pg : {primary_, replica_}) pg->Exec("CREATE ROLE app LOGIN");
    uint16_t port = FreeTcpPort();
    SiteSpec src;
    src.name = "frankfurt";
    src.source = true;
    src.dsn = primary_->ConnInfo();
    src.listen_port = port;
    src.sites = {"dublin"};
    source_ = std::make_unique<GeoSite>(src);
    SiteSpec rep;
    rep.name = "dublin";
    rep.dsn = replica_->ConnInfo();
    rep.upstream_port = port;
    site_ = std::make_unique<GeoSite>(rep);
    ASSERT_TRUE(source_->Start().ok());  // runs `geosyncctl init` first
    ASSERT_TRUE(site_->Start().ok());
    ASSERT_TRUE(WaitFor(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'geosync' AND active") == "1";
        },
        60s, "the source streams its slot"));
    // DDL by the superuser replicates as the superuser; app owns a schema.
    primary_->Exec(
        "CREATE TABLE bets (id serial PRIMARY KEY, v text); GRANT INSERT, SELECT ON bets TO app; "
        "GRANT USAGE ON SEQUENCE bets_id_seq TO app; CREATE SCHEMA appsch AUTHORIZATION app");
    primary_->Exec("INSERT INTO bets (v) VALUES ('one')");
    ExpectIdentical();
  }
  void TearDown() override {
    if (HasFailure()) {
      source_->DumpLog();
      site_->DumpLog();
    }
    source_.reset();
    site_.reset();
    PgClusterTest::TearDown();
  }
  void ExpectIdentical() {
    Lsn target = primary_->CurrentWalLsn();
    ASSERT_TRUE(WaitFor([&] { return AppliedLsn(*replica_) >= target; }, 120s,
                        "replica applied up to " + target.ToString()));
    EXPECT_EQ(CompareTables(*primary_, *replica_), "")
        << "replica identical at " << target.ToString();
  }
  PgConn App() {
    auto c = PgConn::Connect(primary_->ConnInfo() + " user=app");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : PgConn();
  }
  int CountInLog(GeoSite& site, const std::string& text) {
    std::string log = site.ReadLog();
    int n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  }

  PgCluster* primary_ = nullptr;
  PgCluster* replica_ = nullptr;
  std::unique_ptr<GeoSite> source_, site_;
};

std::string Emit(const std::pair<std::string, std::string>& m, const std::string& cast = "text") {
  return fmt::format("SELECT pg_logical_emit_message(true, '{}', '{}'::{})", m.first, m.second,
                     cast);
}

TEST_F(TrustE2E, AnApplicationLoginCannotWriteControlMessages) {
  PgConn app = App();
  for (const auto& m : kForgeries) {
    for (const char* cast : {"text", "bytea"}) {
      auto r = app.Exec(Emit(m, cast));
      ASSERT_FALSE(r.ok()) << m.first << " " << m.second;
      EXPECT_EQ(r.status().sqlstate(), "42501") << r.status().ToString();
    }
  }
  // The trigger's own emitter refuses to run outside DDL.
  auto direct = app.Exec("SELECT _geosync.emit_ddl_message('public', 'CREATE TABLE')");
  ASSERT_FALSE(direct.ok());
  EXPECT_NE(direct.status().message().find("event trigger"), std::string::npos)
      << direct.status().ToString();

  // The issue's second attack: a forged ROLLBACK inside a transaction that
  // inserts a row. The emit fails, so the attack cannot even be committed.
  ASSERT_TRUE(app.Exec("BEGIN; INSERT INTO bets (v) VALUES ('two')").ok());
  EXPECT_EQ(app.Exec(Emit(kForgeries[1])).status().sqlstate(), "42501");
  ASSERT_TRUE(app.Exec("ROLLBACK").ok());
  ASSERT_TRUE(app.Exec("INSERT INTO bets (v) VALUES ('two')").ok());
  primary_->Exec("INSERT INTO bets (v) VALUES ('three'), ('four')");

  ExpectIdentical();
  EXPECT_EQ(replica_->QueryValue("SELECT string_agg(v, ',' ORDER BY id) FROM bets"),
            "one,two,three,four");
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM pg_roles WHERE rolname = 'pwned'"), "0");
}

TEST_F(TrustE2E, DdlOfAnApplicationRoleRunsAsThatRoleAndCraftedStringsAreRefused) {
  PgConn app = App();
  // Real DDL still replicates, in order with the data, as its author.
  ASSERT_TRUE(app.Exec("SET search_path = appsch; CREATE TABLE slips (id int PRIMARY KEY, "
                       "bet int); INSERT INTO slips VALUES (1, 1)")
                  .ok());
  ASSERT_TRUE(app.Exec("ALTER TABLE appsch.slips ADD COLUMN stake numeric DEFAULT 5").ok());
  ASSERT_TRUE(app.Exec("INSERT INTO appsch.slips VALUES (2, 2, 7)").ok());
  ExpectIdentical();
  EXPECT_EQ(replica_->QueryValue("SELECT tableowner FROM pg_tables WHERE tablename = 'slips'"),
            "app")
      << "the replica ran the DDL as its author";

  // A string whose second transaction drops a table app does not own: the
  // DROP fails on the primary after the CREATE committed. Replayed whole as
  // a superuser, it would drop bets on the replica.
  auto crafted =
      app.Exec("CREATE TABLE appsch.mine (id int PRIMARY KEY); COMMIT; DROP TABLE public.bets");
  ASSERT_FALSE(crafted.ok());
  EXPECT_EQ(crafted.status().sqlstate(), "42501") << crafted.status().ToString();
  ASSERT_TRUE(app.Exec("DROP TABLE IF EXISTS appsch.mine").ok());
  primary_->Exec("INSERT INTO bets (v) VALUES ('after')");
  ExpectIdentical();
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM bets"), "2");
  EXPECT_EQ(CountInLog(*site_, "refused DDL message"), 1)
      << "the crafted string was refused once, with its transaction named";
  EXPECT_GE(CountInLog(*site_, "statements follow a COMMIT"), 1);
}

// Defence in depth, and the upgrade path: on a database where PUBLIC may
// still emit messages (init not rerun), forged DDL reaches the replica and
// its allow-list refuses it; the source then refuses to start until
// `geosyncctl init` is rerun, which closes the hole again.
TEST_F(TrustE2E, WithoutTheRevokeTheReplicaStillRefusesAndTheSourceWillNotStart) {
  primary_->Exec(
      "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC");
  PgConn app = App();
  int forged_ddl = 0;
  for (const auto& m : kForgeries) {
    ASSERT_TRUE(
        app.Exec("BEGIN; INSERT INTO bets (v) VALUES ('row'); " + Emit(m) + "; COMMIT").ok())
        << m.second;
    forged_ddl += m.first == "geosync.ddl";
  }
  primary_->Exec("INSERT INTO bets (v) VALUES ('last')");
  Lsn target = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return AppliedLsn(*replica_) >= target; }, 120s,
                      "replica applied up to " + target.ToString()));
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM pg_roles WHERE rolname = 'pwned'"), "0");
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM bets"),
            std::to_string(kForgeries.size() + 2))
      << "no row was rolled back by a forged ROLLBACK";
  EXPECT_EQ(CountInLog(*site_, "refused DDL message"), forged_ddl);
  // The forged sequence snapshot is not refused by the replica: only the
  // primary's revoke stops it. It is the one thing below that differs.
  ASSERT_TRUE(source_->Stop().ok());
  auto restarted = source_->Start();
  ASSERT_TRUE(restarted.ok());  // Start reruns init only on a fresh site
  auto exited = source_->WaitExit(60s);
  ASSERT_TRUE(exited.ok()) << "the source must refuse to start";
  EXPECT_EQ(*exited, kExitConfig);
  EXPECT_NE(source_->ReadLog().find("PUBLIC may run pg_logical_emit_message"), std::string::npos);

  // The rerun takes its connection from libpq's environment, as a DBA
  // keeping passwords off command lines would.
  ProcessSpec init;
  init.argv = {BinaryPath("geosyncctl"), "init"};
  init.env = {{"PGHOST", "127.0.0.1"},
              {"PGPORT", std::to_string(primary_->port())},
              {"PGUSER", "postgres"},
              {"PGDATABASE", "postgres"}};
  auto r = RunProgram(init, 60s);
  ASSERT_TRUE(r.ok() && r->exit_status == 0) << (r.ok() ? r->output : r.status().ToString());
  EXPECT_EQ(app.Exec(Emit(kForgeries[0])).status().sqlstate(), "42501");
  ASSERT_TRUE(source_->Start().ok());
  primary_->Exec("INSERT INTO bets (v) VALUES ('after the rerun')");
  target = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return AppliedLsn(*replica_) >= target; }, 120s,
                      "replica applied up to " + target.ToString()));
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM bets"),
            std::to_string(kForgeries.size() + 3));
  // After the rerun, real DDL of the application role still replicates.
  ASSERT_TRUE(app.Exec("CREATE TABLE appsch.later (id int PRIMARY KEY); INSERT INTO appsch.later "
                       "VALUES (1)")
                  .ok());
  ExpectIdentical();
}

}  // namespace
}  // namespace geosync::testing
