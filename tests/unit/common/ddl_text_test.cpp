// What a replica runs of a captured DDL query string (common/ddl_text.h).
#include "common/ddl_text.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

using Statements = std::vector<std::string_view>;

TEST(SplitSqlStatements, SplitsAtTopLevelSemicolonsOnly) {
  EXPECT_EQ(SplitSqlStatements("CREATE TABLE a (x int); ALTER TABLE a ADD y int;"),
            (Statements{"CREATE TABLE a (x int)", "ALTER TABLE a ADD y int"}));
  EXPECT_EQ(SplitSqlStatements("  ;; SELECT 1 ;  "), (Statements{"SELECT 1"}));
  EXPECT_EQ(SplitSqlStatements(""), Statements{});
}

TEST(SplitSqlStatements, SemicolonsInsideQuotesCommentsAndBodiesStay) {
  EXPECT_EQ(SplitSqlStatements("COMMENT ON TABLE a IS 'x; ''y''; z'; SELECT 2"),
            (Statements{"COMMENT ON TABLE a IS 'x; ''y''; z'", "SELECT 2"}));
  EXPECT_EQ(SplitSqlStatements(R"(SELECT E'a\'; b'; SELECT 3)"),
            (Statements{R"(SELECT E'a\'; b')", "SELECT 3"}));
  EXPECT_EQ(SplitSqlStatements(R"(CREATE TABLE "we;ird" (x int); SELECT 4)"),
            (Statements{R"(CREATE TABLE "we;ird" (x int))", "SELECT 4"}));
  EXPECT_EQ(SplitSqlStatements("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN "
                               "RETURN 1; END $fn$; SELECT 5"),
            (Statements{"CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 1; "
                        "END $fn$",
                        "SELECT 5"}));
  EXPECT_EQ(SplitSqlStatements("DO $$ BEGIN PERFORM 1; END $$; SELECT 6"),
            (Statements{"DO $$ BEGIN PERFORM 1; END $$", "SELECT 6"}));
  EXPECT_EQ(SplitSqlStatements("SELECT 1 -- a; comment\n; /* b; /* nested; */ c; */ SELECT 7"),
            (Statements{"SELECT 1 -- a; comment", "/* b; /* nested; */ c; */ SELECT 7"}));
  EXPECT_EQ(SplitSqlStatements("CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC "
                               "SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT 2; END; SELECT 8"),
            (Statements{"CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT "
                        "CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT 2; END",
                        "SELECT 8"}));
}

TEST(SplitSqlStatements, UnterminatedQuotesDoNotReadPastTheEnd) {
  EXPECT_EQ(SplitSqlStatements("SELECT 'open; SELECT 2"), (Statements{"SELECT 'open; SELECT 2"}));
  EXPECT_EQ(SplitSqlStatements("SELECT $x$ open; x"), (Statements{"SELECT $x$ open; x"}));
  EXPECT_EQ(SplitSqlStatements("SELECT 1 /* open; "), (Statements{"SELECT 1 /* open;"}));
  EXPECT_EQ(SplitSqlStatements("SELECT $1; SELECT a$b"), (Statements{"SELECT $1", "SELECT a$b"}));
}

TEST(FirstKeyword, SkipsSpaceCommentsAndParentheses) {
  EXPECT_EQ(FirstKeyword("  alter table a"), "ALTER");
  EXPECT_EQ(FirstKeyword("/* c */ -- d\n (select 1)"), "SELECT");
  EXPECT_EQ(FirstKeyword("   "), "");
}

TEST(DdlToReplay, ASingleStatementRunsAsItIs) {
  DdlReplay r = DdlToReplay("  CREATE TABLE a (x int);  ");
  EXPECT_EQ(r.sql, "CREATE TABLE a (x int);");
  EXPECT_TRUE(r.skipped.empty());
}

TEST(DdlToReplay, TransactionControlAndDataAreLeftOut) {
  // The string the mixed-workload e2e test sends: its COMMIT once ended the
  // replica's apply transaction.
  DdlReplay r = DdlToReplay(
      "BEGIN; ALTER TABLE types ADD COLUMN extra text DEFAULT 'x'; "
      "UPDATE types SET extra = 'set ' || id WHERE id < 20; COMMIT;");
  EXPECT_EQ(r.sql, "ALTER TABLE types ADD COLUMN extra text DEFAULT 'x'");
  EXPECT_EQ(r.skipped,
            (std::vector<std::string>{
                "BEGIN", "UPDATE types SET extra = 'set ' || id WHERE id < 20", "COMMIT"}));
}

TEST(DdlToReplay, EveryLeftOutKindAndTheKeptOnesInOrder) {
  DdlReplay r = DdlToReplay(
      "start transaction; CREATE TABLE t (x int); insert into t values (1); "
      "WITH d AS (DELETE FROM t RETURNING *) SELECT 1; CREATE INDEX ON t (x); SAVEPOINT s; "
      "RELEASE s; merge into t using t u on true when matched then do nothing; "
      "copy t from stdin; truncate t; values (1); table t; select 1; SET search_path = x; "
      "RESET ALL; analyze t; PREPARE q AS SELECT 1; PREPARE TRANSACTION 'p'");
  EXPECT_EQ(r.refusal, "");
  EXPECT_EQ(r.sql, "CREATE TABLE t (x int); CREATE INDEX ON t (x)");
  EXPECT_EQ(r.skipped.size(), 16u);
  EXPECT_TRUE(r.refused.empty());
}

TEST(DdlToReplay, NothingLeftIsRefused) {
  DdlReplay r = DdlToReplay("BEGIN; COMMIT");
  EXPECT_EQ(r.sql, "");
  EXPECT_EQ(r.skipped.size(), 2u);
  EXPECT_NE(r.refusal.find("no DDL statement"), std::string::npos) << r.refusal;
}

// A forged or crafted string must never end, undo or reconfigure the
// replica's apply session, or touch cluster-wide objects.
TEST(DdlToReplay, TransactionControlAndSessionSettingsAloneNeverRun) {
  for (const char* sql : {"ROLLBACK", "COMMIT", "SET session_replication_role = origin",
                          "RESET ALL", "SET statement_timeout = 1", "SET ROLE postgres",
                          "SET SESSION AUTHORIZATION postgres", "select 1"}) {
    DdlReplay r = DdlToReplay(sql);
    EXPECT_EQ(r.sql, "") << sql;
    EXPECT_NE(r.refusal, "") << sql;
  }
}

TEST(DdlToReplay, ARollbackAnywhereRefusesTheWholeString) {
  DdlReplay r = DdlToReplay("CREATE TABLE a (x int); ROLLBACK");
  EXPECT_EQ(r.sql, "");
  EXPECT_NE(r.refusal.find("rolls back"), std::string::npos) << r.refusal;
  r = DdlToReplay("BEGIN; CREATE TABLE a (); SAVEPOINT s; DROP TABLE b; ROLLBACK TO s; COMMIT");
  EXPECT_EQ(r.sql, "");
  EXPECT_NE(r.refusal, "");
}

TEST(DdlToReplay, StatementsAfterACommitRefuseTheWholeString) {
  DdlReplay r = DdlToReplay("CREATE TABLE mine (x int); COMMIT; DROP TABLE theirs");
  EXPECT_EQ(r.sql, "");
  EXPECT_NE(r.refusal.find("follow a COMMIT"), std::string::npos) << r.refusal;
  // A COMMIT at the end is one transaction.
  EXPECT_EQ(DdlToReplay("BEGIN; CREATE TABLE a (x int); COMMIT;").refusal, "");
}

TEST(DdlToReplay, ARefusedStatementRefusesTheWholeString) {
  for (const char* sql :
       {"CREATE TABLE a (); CREATE ROLE pwned SUPERUSER LOGIN", "ALTER ROLE app SUPERUSER",
        "CREATE USER u", "DROP ROLE r", "GRANT pg_read_server_files TO app",
        "REVOKE admin FROM app", "ALTER SYSTEM SET fsync = off", "CREATE DATABASE d",
        "DROP TABLESPACE t", "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
        "DO $$ BEGIN EXECUTE 'CREATE TABLE a ()'; END $$", "CALL p()", "LOAD 'plugin'",
        "CREATE TABLE a (); FROBNICATE b"}) {
    DdlReplay r = DdlToReplay(sql);
    EXPECT_EQ(r.sql, "") << sql;
    EXPECT_NE(r.refusal.find("never run"), std::string::npos) << sql << ": " << r.refusal;
    EXPECT_EQ(r.refused.size(), 1u) << sql;
  }
}

TEST(ClassifyDdlStatement, ObjectDdlRuns) {
  for (const char* sql :
       {"CREATE TABLE t (x int)",
        "create or replace function f() returns int language sql "
        "as 'select 1'",
        "CREATE UNIQUE INDEX i ON t (x)", "CREATE TEMP TABLE x ()", "ALTER TABLE t ADD c int",
        "DROP TABLE t", "COMMENT ON TABLE t IS 'x'", "GRANT SELECT ON t TO app",
        "REVOKE GRANT OPTION FOR SELECT ON t FROM app",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT "
        "ON TABLES TO app",
        "CREATE USER MAPPING FOR app SERVER s", "DROP OWNED BY app", "REFRESH MATERIALIZED VIEW v",
        "SECURITY LABEL ON TABLE t IS 'x'", "IMPORT FOREIGN SCHEMA s FROM SERVER f INTO t",
        "/* c */ (CREATE TABLE t2 ())"}) {
    EXPECT_EQ(ClassifyDdlStatement(sql).kind, DdlStatementKind::kRun) << sql;
  }
  EXPECT_EQ(ClassifyDdlStatement("CREATE ROLE x").what, "CREATE ROLE");
  EXPECT_EQ(ClassifyDdlStatement("GRANT r TO app").kind, DdlStatementKind::kRefused);
  // An ON inside a quoted role name is not an ON clause.
  EXPECT_EQ(ClassifyDdlStatement("GRANT \"ON\" TO app").kind, DdlStatementKind::kRefused);
}

}  // namespace
}  // namespace geosync
