// An apply conflict stops apply with a message naming the source LSN, the
// transaction, the table and the SQLSTATE, while receiving continues; a DBA
// skips exactly that transaction with `geosyncctl skip` (token required) and
// apply resumes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class ApplyConflictE2E : public DeploymentTest {
 protected:
  ProcessOutput Ctl(std::vector<std::string> args) {
    ProcessSpec spec;
    spec.argv = {BinaryPath("geosyncctl")};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    auto r = RunProgram(spec, 30s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessOutput{-1, ""};
  }
};

TEST_F(ApplyConflictE2E, ConstraintConflictStopsApplyAndSkipResumesIt) {
  Deployment& d = Deploy({.replicas = {"dublin"}, .admin = true, .token_seed = "conflict"});
  PgCluster& primary = d.Primary();
  PgCluster& replica = d.Pg("dublin");
  const std::string token_file = d.token_file();
  for (PgCluster* pg : {&primary, &replica}) {
    pg->Exec("CREATE TABLE accounts (id int PRIMARY KEY, owner text)");
  }
  d.AddSource();
  GeoSite& site = d.AddReplica("dublin");
  d.StartAll();

  // Written behind geosync's back: only a superuser can, past the write guard.
  replica.Exec(
      "SET session_replication_role = replica; "
      "INSERT INTO accounts VALUES (1, 'written on the replica by mistake')");
  std::string xid = primary.QueryValue(
      "WITH i AS (INSERT INTO accounts VALUES (1, 'primary') RETURNING 1) "
      "SELECT pg_current_xact_id()::text FROM i");
  std::string error_line;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::smatch m;
        std::string log = site.ReadLog();
        static const std::regex kError(R"(apply stopped: [^\n]*)");
        if (!std::regex_search(log, m, kError)) return false;
        error_line = m.str();
        return true;
      },
      60s, "apply stops on the conflict"));
  EXPECT_NE(error_line.find("xid " + xid), std::string::npos) << error_line;
  EXPECT_NE(error_line.find("public.accounts"), std::string::npos) << error_line;
  EXPECT_NE(error_line.find("23505"), std::string::npos) << error_line;
  EXPECT_TRUE(std::regex_search(error_line, std::regex(R"(commit [0-9A-F]+/[0-9A-F]+)")))
      << "the message names the source LSN: " << error_line;

  // /status quotes PostgreSQL's DETAIL, a row value, only to the token
  // holder; anyone else sees the SQLSTATE.
  std::string url = d.AdminUrl("dublin");
  auto status_as = [&](const std::string& bearer) {
    admin::HttpCall call;
    call.base_url = url;
    call.target = "/status";
    call.bearer = bearer;
    auto r = admin::Http(call);
    return r.ok() && r->status == 200 ? nlohmann::json::parse(r->body) : nlohmann::json();
  };
  const std::string kRowValue = "Key (id)=(1) already exists";
  nlohmann::json full;
  ASSERT_TRUE(WaitFor(
      [&] {
        full = status_as(TestToken("conflict"));
        return full.is_object() && full["replica"]["apply"]["error"].is_string();
      },
      30s, "/status reports the apply error"));
  EXPECT_NE(full["replica"]["apply"]["error"].get<std::string>().find(kRowValue), std::string::npos)
      << "with the token /status shows the DETAIL: " << full.dump(2);
  nlohmann::json anonymous = status_as("");
  ASSERT_TRUE(anonymous.is_object());
  EXPECT_EQ(anonymous.dump().find("(id)=(1)"), std::string::npos)
      << "without the token /status has no row value: " << anonymous.dump(2);
  EXPECT_NE(anonymous["replica"]["apply"]["error"].get<std::string>().find("23505"),
            std::string::npos)
      << "without the token /status still names the SQLSTATE: " << anonymous.dump(2);
  EXPECT_EQ(anonymous["state"], "apply_error");

  // Receiving into the spool continues while apply is stopped.
  primary.Exec("INSERT INTO accounts VALUES (2, 'after the conflict')");
  Lsn after = primary.CurrentWalLsn();
  std::string wrong = token_file + "-wrong";
  WriteTokenFile(wrong, TestToken("wrong"));
  auto denied = Ctl({"skip", "--site", url, "--xid", xid, "--token-file", wrong});
  std::filesystem::remove(wrong);
  EXPECT_NE(denied.exit_status, 0)
      << "a skip without the admin token is refused: " << denied.output;
  EXPECT_EQ(replica.QueryValue("SELECT count(*) FROM accounts"), "1") << "nothing applied yet";

  auto skip = Ctl({"skip", "--site", url, "--xid", xid, "--token-file", token_file});
  ASSERT_EQ(skip.exit_status, 0) << skip.output;
  ASSERT_TRUE(
      WaitFor([&] { return AppliedLsn(replica) >= after; }, 60s, "apply resumes after the skip"));
  EXPECT_EQ(replica.QueryValue("SELECT owner FROM accounts WHERE id = 1"),
            "written on the replica by mistake")
      << "the skipped transaction was not applied";
  EXPECT_EQ(replica.QueryValue("SELECT owner FROM accounts WHERE id = 2"), "after the conflict")
      << "the next transaction was applied";
  EXPECT_NE(site.ReadLog().find("skipped xid " + xid), std::string::npos)
      << "the skip is recorded in the log";
}

}  // namespace
}  // namespace geosync::testing
