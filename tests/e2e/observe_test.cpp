// End to end: three sites with admin APIs. `geosyncctl status --topology`
// shows every site in one table (a killed one as unreachable, never left
// out), and a replica behind a cut link reports its lag growing with the cut
// and falling back once the link is restored.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "common/exit_codes.h"
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

const char* const kNames[3] = {"frankfurt", "dublin", "virginia"};

class ObserveE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.admin = true, .token_seed = "observe"});
    primary_ = &d.Primary();
    replica_[0] = &d.Pg("dublin");
    replica_[1] = &d.Pg("virginia");
    proxy_ = std::make_unique<FaultProxy>(d.SourcePort());
    ASSERT_TRUE(proxy_->Start().ok());
    dir_ = d.dir();
    token_file_ = d.token_file();
  }

  // dublin reaches the source through the fault proxy when `dublin_via_proxy`.
  void MakeSites(bool dublin_via_proxy) {
    const nlohmann::json ready = {{"admin", {{"ready_max_lag_s", 30}}}};
    deploy().AddSource(ready);
    for (int i = 0; i < 2; ++i) {
      const uint16_t upstream = (i == 0 && dublin_via_proxy) ? proxy_->port() : 0;
      sites_[i] = &deploy().AddReplica(kNames[i + 1], ready, upstream);
    }
    topology_ = deploy().WriteTopology();
  }

  void TearDown() override {
    DeploymentTest::TearDown();
    proxy_.reset();
  }

  std::string AdminUrl(int i) { return deploy().AdminUrl(kNames[i]); }

  void StartAll() { deploy().StartAll(); }

  // GET /status of site i, or a null document.
  nlohmann::json SiteStatus(int i) {
    admin::HttpCall call;
    call.base_url = AdminUrl(i);
    call.target = "/status";
    auto r = admin::Http(call);
    if (!r.ok() || r->status != 200) return nullptr;
    return nlohmann::json::parse(r->body, nullptr, false);
  }

  // dublin's applied lag in seconds, or -1 when unknown.
  double DublinAppliedLag() {
    nlohmann::json s = SiteStatus(1);
    if (!s.is_object()) return -1;
    const auto& v = s["replica"]["lag"]["applied"]["seconds"];
    return v.is_number() ? v.get<double>() : -1;
  }

  ProcessOutput Ctl(std::vector<std::string> args) {
    ProcessSpec spec;
    spec.argv = {BinaryPath("geosyncctl")};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    auto r = RunProgram(spec, 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessOutput{-1, ""};
  }

  std::string dir_, token_file_, topology_;
  PgCluster* primary_ = nullptr;
  PgCluster* replica_[2] = {nullptr, nullptr};
  std::unique_ptr<FaultProxy> proxy_;
  GeoSite* sites_[2] = {nullptr, nullptr};
};

TEST_F(ObserveE2E, StatusShowsEverySiteAndAKilledOneAsUnreachable) {
  MakeSites(/*dublin_via_proxy=*/false);
  StartAll();
  primary_->RunPgbench({"-i", "-s", "1", "-q"});
  nlohmann::json rows;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto out = Ctl({"status", "--topology", topology_, "--format", "json"});
        if (out.exit_status != 0) return false;
        rows = nlohmann::json::parse(out.output);
        for (const auto& r : rows) {
          if (r["state"] != "streaming") return false;
        }
        return rows.size() == 3;
      },
      60s, "geosyncctl status shows three streaming sites"));
  EXPECT_EQ(rows[0]["site"], "frankfurt");
  EXPECT_EQ(rows[0]["role"], "source");
  EXPECT_EQ(rows[1]["role"], "replica");
  EXPECT_TRUE(rows[1]["applied_lsn"].is_string()) << rows.dump(2);

  std::string json_path = dir_ + "/rows.json";
  std::ofstream(json_path) << rows.dump();
  ProcessSpec validate;
  validate.argv = {"/usr/bin/python3", "-m",
                   "jsonschema",       "-i",
                   json_path,          SourceDir() + "/schemas/status.schema.json"};
  auto valid = RunProgram(validate, 60s);
  ASSERT_TRUE(valid.ok());
  EXPECT_EQ(valid->exit_status, 0) << "--format json follows the schema: " << valid->output;

  ASSERT_TRUE(sites_[1]->Kill9().ok());
  auto table = Ctl({"status", "--topology", topology_});
  EXPECT_EQ(table.exit_status, kExitPeer) << "an unreachable site makes status exit 5";
  std::cout << table.output;
  for (const char* name : {"frankfurt", "dublin", "virginia"}) {
    EXPECT_NE(table.output.find(name), std::string::npos) << name << " is in the table";
  }
  size_t line = table.output.find("virginia");
  ASSERT_NE(line, std::string::npos);
  std::string virginia = table.output.substr(line, table.output.find('\n', line) - line);
  EXPECT_NE(virginia.find("unreachable"), std::string::npos) << virginia;
  EXPECT_NE(virginia.find("127.0.0.1"), std::string::npos)
      << "the row says which address failed: " << virginia;

  // The replica's apply controls answer through geosyncctl with the token.
  auto resume = Ctl({"resume", "--site", AdminUrl(1), "--token-file", token_file_});
  EXPECT_EQ(resume.exit_status, kExitRefused) << "nothing to resume: " << resume.output;
  auto skip =
      Ctl({"skip", "--site", AdminUrl(1), "--xid", "4000000000", "--token-file", token_file_});
  EXPECT_EQ(skip.exit_status, 0) << skip.output;
  std::string wrong = dir_ + "/wrong-token";
  WriteTokenFile(wrong, TestToken("nope"));
  auto refused = Ctl({"resume", "--site", AdminUrl(1), "--token-file", wrong});
  EXPECT_EQ(refused.exit_status, kExitRefused) << refused.output;
  EXPECT_NE(refused.output.find("401"), std::string::npos) << refused.output;
}

TEST_F(ObserveE2E, ReplicaLagGrowsWithACutLinkAndFallsAfterRestore) {
  MakeSites(/*dublin_via_proxy=*/true);
  StartAll();
  primary_->RunPgbench({"-i", "-s", "1", "-q"});
  std::atomic<bool> load_done{false};
  std::thread load([&] {
    primary_->RunPgbench({"-n", "-c", "1", "-R", "50", "-T", "12"});
    load_done = true;
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        double lag = DublinAppliedLag();
        return lag >= 0 && lag < 1.5;
      },
      60s, "dublin's applied lag is under 1.5 s before the cut"));

  constexpr auto kCut = 4s;
  proxy_->Cut(CutMode::kClose);
  const auto cut_end = std::chrono::steady_clock::now() + kCut;
  double max_lag = 0;
  // Waiting out the cut is the controlled delay; the samples are observations.
  while (std::chrono::steady_clock::now() < cut_end) {
    max_lag = std::max(max_lag, DublinAppliedLag());
    std::this_thread::sleep_for(100ms);
  }
  max_lag = std::max(max_lag, DublinAppliedLag());
  proxy_->Restore();
  std::cout << fmt::format("dublin applied lag at the end of a {} s cut: {:.2f} s\n", kCut.count(),
                           max_lag);
  EXPECT_GE(max_lag, kCut.count() - 1.5) << "the reported lag grows with the cut";
  // Above: the lag before the cut (< 1.5 s) and the sampling period, plus
  // slack for a loaded 2-core box.
  EXPECT_LE(max_lag, kCut.count() + 3.0) << "and not far beyond it";
  const auto restored = std::chrono::steady_clock::now();
  double after = -1;
  EXPECT_TRUE(WaitFor(
      [&] {
        after = DublinAppliedLag();
        return after >= 0 && after < 1.5;
      },
      60s, "dublin's applied lag falls under 1.5 s after the link is restored"));
  std::cout << fmt::format(
      "dublin applied lag back to {:.2f} s {:.1f} s after Restore()\n", after,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - restored).count());
  nlohmann::json virginia = SiteStatus(2);
  ASSERT_TRUE(virginia.is_object());
  EXPECT_LT(virginia["replica"]["lag"]["applied"]["seconds"].get<double>(), 1.5)
      << "virginia, not behind the proxy, stayed current";
  load.join();
}

}  // namespace
}  // namespace geosync::testing
