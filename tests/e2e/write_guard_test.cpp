// Writes only at the source (issue #25): PostgreSQL itself refuses an
// application's writes and schema changes on a replica, whatever session
// settings the application sets, while apply goes on; and a source whose
// PostgreSQL restarted takes no write until its geosyncd has confirmed that
// it still is the source. Every write is tried as an unprivileged role
// (and as a superuser where that is what a DBA would do) against real
// PostgreSQL 15 clusters, and the error must say why: the site, its role
// and where to write instead.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "tests/support/pg_cluster.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;

class WriteGuardE2E : public PgClusterTest {
 protected:
  void SetUp() override {
    primary_ = &NewCluster("primary");
    replica_ = &NewCluster("replica");
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
    ASSERT_TRUE(source_->Start().ok());
    ASSERT_TRUE(site_->Start().ok());
    ASSERT_TRUE(WaitFor(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'geosync' AND active") == "1";
        },
        60s, "the source streams its slot"));
    // The application's table, owned by the application's role (seed and
    // DDL replication keep owners): an owner may drop triggers.
    primary_->Exec(
        "CREATE TABLE bets (id int PRIMARY KEY, stake int NOT NULL) "
        "PARTITION BY RANGE (id); "
        "CREATE TABLE bets_low PARTITION OF bets FOR VALUES FROM (0) TO (1000000); "
        "ALTER TABLE bets OWNER TO app; ALTER TABLE bets_low OWNER TO app; "
        "CREATE TABLE ledger (id serial PRIMARY KEY, note text); "
        "GRANT ALL ON ledger TO app; GRANT ALL ON SEQUENCE ledger_id_seq TO app");
    ASSERT_EQ(ErrorOf(*primary_, "INSERT INTO bets VALUES (1, 10), (2, 20)", "user=app"), "")
        << "the source takes application writes";
    ASSERT_EQ(ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('one')", "user=app"), "");
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
                        "dublin applied up to " + target.ToString()));
    EXPECT_EQ(CompareTables(*primary_, *replica_), "")
        << "dublin identical at " << target.ToString();
  }

  PgCluster* primary_ = nullptr;
  PgCluster* replica_ = nullptr;
  std::unique_ptr<GeoSite> source_, site_;
};

TEST_F(WriteGuardE2E, AReplicaRefusesApplicationWritesAndSchemaChangesWhileApplyGoesOn) {
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
         {"INSERT INTO bets VALUES (3, 30)", "UPDATE bets SET stake = 0 WHERE id = 1",
          "DELETE FROM bets WHERE id = 2", "TRUNCATE bets", "INSERT INTO bets_low VALUES (4, 40)",
          "TRUNCATE bets_low", "INSERT INTO ledger (note) VALUES ('misrouted')"}) {
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
       {"DROP TRIGGER geosync_write_guard ON bets_low", "ALTER TABLE bets_low DISABLE TRIGGER ALL",
        "ALTER TABLE bets ADD COLUMN note text", "COMMENT ON TABLE bets_low IS 'mine'",
        "DROP TABLE bets_low"}) {
    EXPECT_THAT(ErrorOf(*replica_, ddl, "user=app"),
                AllOf(HasSubstr("25006"), HasSubstr("refused: site dublin is a replica")))
        << ddl;
  }
  // Reports may still use temporary tables.
  EXPECT_EQ(ErrorOf(*replica_,
                    "CREATE TEMP TABLE t AS SELECT * FROM bets; INSERT INTO t VALUES (9, 9); "
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
                      fmt::format("INSERT INTO bets VALUES ({0}, {0}); "
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
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM bets"), "52");
  EXPECT_EQ(replica_->QueryValue("SELECT count(*) FROM pg_trigger WHERE tgname = "
                                 "'geosync_write_guard'"),
            "4")
      << "bets, bets_low, ledger and payouts each carry the guard";
}

TEST_F(WriteGuardE2E, ARestartedSourceTakesNoWriteUntilItsAgentConfirmsIt) {
  // PostgreSQL restarts with its geosyncd stopped (systemd starts them
  // independently): the database comes up refusing application writes.
  ASSERT_TRUE(source_->Stop().ok());
  ASSERT_TRUE(primary_->Restart().ok());
  EXPECT_THAT(ErrorOf(*primary_, "INSERT INTO ledger (note) VALUES ('too early')", "user=app"),
              AllOf(HasSubstr("25006"), HasSubstr("site frankfurt was the source"),
                    HasSubstr("PostgreSQL restarted")));
  EXPECT_THAT(ErrorOf(*primary_, "TRUNCATE bets", "user=app"), HasSubstr("PostgreSQL restarted"));
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
