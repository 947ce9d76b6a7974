// The admin API of a real source geosyncd against a throwaway PostgreSQL:
// /healthz, /readyz, /status (validated against schemas/status.schema.json
// by python3-jsonschema), /metrics (checked by promtool), and the bearer
// token guarding POST /admin/....
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class AdminApiTest : public PgClusterTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-admin-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    token_file_ = dir_ + "/token";
    std::ofstream(token_file_) << "s3cret-token\n";
    primary_ = &NewCluster("primary");
    ProcessSpec init;
    init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", primary_->ConnInfo()};
    auto r = RunProgram(init, 30s);
    ASSERT_TRUE(r.ok() && r->exit_status == 0) << (r.ok() ? r->output : r.status().ToString());
    admin_port_ = FreeTcpPort();
    SiteSpec spec;
    spec.name = "frankfurt";
    spec.source = true;
    spec.dsn = primary_->ConnInfo();
    spec.listen_port = FreeTcpPort();
    spec.sites = {"dublin"};
    spec.extra = {{"admin",
                   {{"listen", {{"host", "127.0.0.1"}, {"port", admin_port_}}},
                    {"token_file", token_file_}}}};
    site_ = std::make_unique<GeoSite>(spec);
    ASSERT_TRUE(site_->Start().ok());
  }

  void TearDown() override {
    if (HasFailure()) site_->DumpLog();
    site_.reset();
    std::filesystem::remove_all(dir_);
    PgClusterTest::TearDown();
  }

  std::string Url() const { return fmt::format("http://127.0.0.1:{}", admin_port_); }

  Result<admin::HttpAnswer> Call(const std::string& method, const std::string& target,
                                 const std::string& bearer = "") {
    admin::HttpCall call;
    call.method = method;
    call.base_url = Url();
    call.target = target;
    call.bearer = bearer;
    return admin::Http(call);
  }

  unsigned StatusCode(const std::string& method, const std::string& target,
                      const std::string& bearer = "") {
    auto r = Call(method, target, bearer);
    return r.ok() ? r->status : 0;
  }

  std::string dir_;
  std::string token_file_;
  uint16_t admin_port_ = 0;
  PgCluster* primary_ = nullptr;
  std::unique_ptr<GeoSite> site_;
};

TEST_F(AdminApiTest, SourceServesHealthReadinessStatusAndMetrics) {
  ASSERT_TRUE(WaitFor([&] { return StatusCode("GET", "/healthz") == 200; }, 30s,
                      "/healthz answers 200 while the loop runs"));
  ASSERT_TRUE(WaitFor([&] { return StatusCode("GET", "/readyz") == 200; }, 60s,
                      "/readyz turns 200 once capture streams from the slot"));
  primary_->Exec("CREATE TABLE t(id int primary key, v text)");
  primary_->Exec("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g");
  nlohmann::json status;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = Call("GET", "/status");
        if (!r.ok() || r->status != 200) return false;
        status = nlohmann::json::parse(r->body);
        return status["source"]["capture"]["transactions"].get<uint64_t>() >= 2 &&
               status["source"]["slot"]["retained_wal_bytes"].is_number();
      },
      30s, "/status counts the captured transactions and the slot's retained WAL"));
  EXPECT_EQ(status["site"], "frankfurt");
  EXPECT_EQ(status["role"], "source");
  EXPECT_EQ(status["state"], "streaming");
  EXPECT_EQ(status["source"]["slot"]["active"], true);
  ASSERT_EQ(status["source"]["sites"].size(), 1u);
  EXPECT_EQ(status["source"]["sites"][0]["site"], "dublin");
  EXPECT_EQ(status["source"]["sites"][0]["connected"], false);

  std::string status_path = dir_ + "/status.json";
  std::ofstream(status_path) << status.dump();
  ProcessSpec validate;
  validate.argv = {"/usr/bin/python3", "-m",
                   "jsonschema",       "-i",
                   status_path,        SourceDir() + "/schemas/status.schema.json"};
  auto valid = RunProgram(validate, 60s);
  ASSERT_TRUE(valid.ok()) << valid.status().ToString();
  EXPECT_EQ(valid->exit_status, 0) << "/status follows schemas/status.schema.json:\n"
                                   << valid->output << "\n"
                                   << status.dump(2);

  auto metrics = Call("GET", "/metrics");
  ASSERT_TRUE(metrics.ok() && metrics->status == 200);
  EXPECT_NE(metrics->body.find("geosync_slot_retained_wal_bytes{slot=\"geosync\"}"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("geosync_role{role=\"source\"} 1"), std::string::npos);
  std::string metrics_path = dir_ + "/metrics.txt";
  std::ofstream(metrics_path) << metrics->body;
  ProcessSpec promtool;
  promtool.argv = {"/bin/sh", "-c", "promtool check metrics < " + metrics_path};
  auto checked = RunProgram(promtool, 30s);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(checked->exit_status, 0) << "promtool check metrics passes:\n" << checked->output;
  EXPECT_EQ(checked->output, "") << "promtool has no lint remarks";
}

TEST_F(AdminApiTest, AdminCallsNeedTheTokenAndUnknownPathsAre404) {
  ASSERT_TRUE(
      WaitFor([&] { return StatusCode("GET", "/healthz") == 200; }, 30s, "/healthz answers"));
  EXPECT_EQ(StatusCode("POST", "/admin/apply/resume"), 401u) << "no token: 401";
  EXPECT_EQ(StatusCode("POST", "/admin/apply/skip?xid=5", "wrong"), 401u) << "bad token: 401";
  EXPECT_EQ(StatusCode("POST", "/admin/apply/skip?xid=5", "s3cret-token"), 404u)
      << "a source has no apply to skip in";
  EXPECT_EQ(StatusCode("GET", "/nothing-here"), 404u);
  EXPECT_EQ(StatusCode("GET", "/admin/apply/resume"), 405u);
  auto huge = Call("GET", "/status", std::string(20000, 'x'));
  ASSERT_TRUE(huge.ok()) << huge.status().ToString();
  EXPECT_EQ(huge->status, 413u) << "a 20 kB header is refused, not buffered";
  EXPECT_EQ(StatusCode("GET", "/healthz"), 200u) << "and the server still answers";
}

}  // namespace
}  // namespace geosync::testing
