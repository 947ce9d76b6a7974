// Only geosync can speak for geosync (issue #17): an application login on
// the primary (no superuser, INSERT on one table, its own schema) tries to
// make replicas run SQL, roll back committed rows or change their session
// through forged control messages. Each attack runs as that role against a
// real primary, source, replica and replica geosyncd, and the test shows
// that nothing changed: no role, no lost row, tables identical row by row.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "agent/pg/pg_conn.h"
#include "common/exit_codes.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;

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

class TrustE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.replicas = {"dublin"}});
    primary_ = &d.Primary();
    replica_ = &d.Pg("dublin");
    // Roles are cluster-wide, so a DBA creates them on every site.
    for (PgCluster* pg : {primary_, replica_}) pg->Exec("CREATE ROLE app LOGIN");
    source_ = &d.AddSource();
    site_ = &d.AddReplica("dublin");
    d.StartAll();
    // DDL by the superuser replicates as the superuser; app owns a schema.
    primary_->Exec(
        "CREATE TABLE bets (id serial PRIMARY KEY, v text); GRANT INSERT, SELECT ON bets TO app; "
        "GRANT USAGE ON SEQUENCE bets_id_seq TO app; CREATE SCHEMA appsch AUTHORIZATION app");
    primary_->Exec("INSERT INTO bets (v) VALUES ('one')");
    ExpectIdentical();
  }
  void ExpectIdentical() { EXPECT_EQ(deploy().CatchUpAndCompare("dublin", 120s), ""); }
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
  GeoSite* source_ = nullptr;
  GeoSite* site_ = nullptr;
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

// Writes only at the source (issue #25): PostgreSQL itself refuses an
// application's writes and schema changes on a replica, whatever session
// settings it sets, while apply goes on; and a source whose PostgreSQL
// restarted takes no write until its geosyncd confirmed it still is the
// source. Each error must say why: the site, its role, where to write.
// The application's tables, owned by its role (seed and DDL replication keep
// owners, and an owner may drop triggers): a partitioned table, its
// partition, and a plain table.
void CreateWagers(PgCluster& primary) {
  primary.Exec(
      "CREATE TABLE wagers (id int PRIMARY KEY, stake int NOT NULL) PARTITION BY RANGE (id); "
      "CREATE TABLE wagers_low PARTITION OF wagers FOR VALUES FROM (0) TO (1000000); "
      "ALTER TABLE wagers OWNER TO app; ALTER TABLE wagers_low OWNER TO app; "
      "CREATE TABLE ledger (id serial PRIMARY KEY, note text); "
      "GRANT ALL ON ledger TO app; GRANT ALL ON SEQUENCE ledger_id_seq TO app");
}

TEST_F(TrustE2E, AReplicaRefusesApplicationWritesAndSchemaChangesWhileApplyGoesOn) {
  CreateWagers(*primary_);
  ASSERT_EQ(ErrorOf(*primary_, "INSERT INTO wagers VALUES (1, 10), (2, 20)", "user=app"), "")
      << "the source takes application writes";
  ASSERT_EQ(ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('one')", "user=app"), "");
  ExpectIdentical();
  const auto refused_on_dublin = AllOf(HasSubstr("25006"), HasSubstr("site dublin is a replica"),
                                       HasSubstr("write to the source, site frankfurt"));
  // The guard is closed from dublin's start; it names the source from the
  // first handshake on (its keeper runs every second).
  EXPECT_THAT(ErrorOf(*replica_, "INSERT INTO ledger (note) VALUES ('early')", "user=app"),
              AllOf(HasSubstr("25006"), HasSubstr("site dublin is a replica")));
  ASSERT_TRUE(WaitFor(
      [&] {
        return ErrorOf(*replica_, "DELETE FROM ledger", "user=app").find("site frankfurt") !=
               std::string::npos;
      },
      30s, "dublin's refusals name its source"));
  // Every kind of write, plain and after switching off what a session may.
  for (const std::string& session :
       {std::string("user=app"), "user=app " + std::string(kReadWrite)}) {
    for (const std::string sql :
         {"INSERT INTO wagers VALUES (3, 30)", "UPDATE wagers SET stake = 0 WHERE id = 1",
          "DELETE FROM wagers WHERE id = 2", "TRUNCATE wagers",
          "INSERT INTO wagers_low VALUES (4, 40)", "TRUNCATE wagers_low",
          "INSERT INTO ledger (note) VALUES ('misrouted')"}) {
      EXPECT_THAT(ErrorOf(*replica_, sql, session), refused_on_dublin) << sql << " " << session;
    }
  }
  // A superuser's psql, misrouted, is refused too; only geosync's own
  // session_replication_role = replica passes, and app may not set it.
  EXPECT_THAT(ErrorOf(*replica_, "INSERT INTO ledger (note) VALUES ('dba')"), refused_on_dublin);
  EXPECT_THAT(ErrorOf(*replica_, "SET session_replication_role = replica", "user=app"),
              HasSubstr("permission denied"));
  // Nor can the owner take the guard away, or change the schema.
  for (const std::string ddl :
       {"DROP TRIGGER geosync_write_guard ON wagers_low",
        "ALTER TABLE wagers_low DISABLE TRIGGER ALL", "ALTER TABLE wagers ADD COLUMN note text",
        "COMMENT ON TABLE wagers_low IS 'mine'", "DROP TABLE wagers_low"}) {
    EXPECT_THAT(ErrorOf(*replica_, ddl, "user=app"),
                AllOf(HasSubstr("25006"), HasSubstr("refused: site dublin is a replica")))
        << ddl;
  }
  // Reports may still use temporary tables.
  EXPECT_EQ(ErrorOf(*replica_,
                    "CREATE TEMP TABLE t AS SELECT * FROM wagers; INSERT INTO t VALUES (9, 9); "
                    "DROP TABLE t",
                    "user=app"),
            "");

  // Meanwhile the source writes, and its schema changes reach dublin: a
  // table created now is guarded there as soon as it is replicated.
  primary_->Exec(
      "CREATE TABLE payouts (id int PRIMARY KEY, amount int); "
      "GRANT ALL ON payouts TO app");
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(ErrorOf(*primary_,
                      fmt::format("INSERT INTO wagers VALUES ({0}, {0}); "
                                  "INSERT INTO payouts VALUES ({0}, {0}); "
                                  "UPDATE ledger SET note = 'n{0}' WHERE id = 1",
                                  100 + i),
                      "user=app"),
              "");
  }
  ExpectIdentical();
  EXPECT_THAT(ErrorOf(*replica_, "INSERT INTO payouts VALUES (1, 1)", "user=app"),
              refused_on_dublin)
      << "a table created after the replica started is guarded once replicated";
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM wagers"), "52");
  EXPECT_EQ(replica_->QueryValue(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' AND NOT EXISTS (SELECT 1 "
                "FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'geosync_write_guard')"),
            "0")
      << "every table on dublin (bets, wagers, wagers_low, ledger, payouts) carries the guard";
}

TEST_F(TrustE2E, ARestartedSourceTakesNoWriteUntilItsAgentConfirmsIt) {
  CreateWagers(*primary_);
  // PostgreSQL restarts with its geosyncd stopped (systemd starts them
  // independently): the database comes up refusing application writes.
  ASSERT_TRUE(source_->Stop().ok());
  ASSERT_TRUE(primary_->Restart().ok());
  EXPECT_THAT(ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('too early')", "user=app"),
              AllOf(HasSubstr("25006"), HasSubstr("site frankfurt was the source"),
                    HasSubstr("PostgreSQL restarted")));
  EXPECT_THAT(ErrorOf(*primary_, "TRUNCATE wagers", "user=app"), HasSubstr("PostgreSQL restarted"));
  // Its agent checks the other sites' epochs, finds none ahead, and opens.
  ASSERT_TRUE(source_->Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('after')", "user=app") == "";
      },
      60s, "frankfurt takes writes once its geosyncd confirmed it is the source"));
  EXPECT_NE(source_->ReadLog().find("application writes allowed"), std::string::npos);

  // A restart under a running geosyncd: closed at once, opened again by it.
  ASSERT_TRUE(primary_->Restart().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('again')", "user=app") == "";
      },
      60s, "frankfurt takes writes again after its geosyncd reopened"));
  EXPECT_NE(source_->ReadLog().find("PostgreSQL restarted; site frankfurt is still the source"),
            std::string::npos);
  ExpectIdentical();
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM ledger WHERE note IN ('after', 'again')"),
            "2");
}

}  // namespace
}  // namespace geosync::testing
