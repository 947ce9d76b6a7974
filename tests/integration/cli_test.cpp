// geosyncd and geosyncctl as a DBA runs them: --help, --version, and every
// kind of bad input ends with a clear message and the documented exit code
// (docs/exit-codes.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/exit_codes.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class CliTest : public PgClusterTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    PgClusterTest::TearDown();
  }

  ProcessOutput Run(std::vector<std::string> argv) {
    ProcessSpec spec;
    spec.argv = std::move(argv);
    auto r = RunProgram(spec, 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessOutput{-1, ""};
  }

  std::string WriteConfig(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  nlohmann::json ValidReplica(uint16_t pg_port) {
    return {
        {"cluster_id", "prod"},
        {"site", "dublin"},
        {"role", "replica"},
        {"state_dir", dir_ + "/state"},
        {"postgres",
         {{"dsn", fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", pg_port)}}},
        {"spool", {{"dir", dir_ + "/spool"}}},
        {"upstream", {{"host", "127.0.0.1"}, {"port", 7450}}}};
  }

  std::string dir_;
};

TEST_F(CliTest, HelpAndVersionExitZero) {
  auto help = Run({BinaryPath("geosyncd"), "--help"});
  EXPECT_EQ(help.exit_status, 0);
  EXPECT_NE(help.output.find("--config"), std::string::npos) << help.output;
  auto version = Run({BinaryPath("geosyncd"), "--version"});
  EXPECT_EQ(version.exit_status, 0);
  EXPECT_NE(version.output.find(std::string("geosyncd ") + GEOSYNC_VERSION), std::string::npos);
  auto ctl_help = Run({BinaryPath("geosyncctl"), "--help"});
  EXPECT_EQ(ctl_help.exit_status, 0);
  for (const char* cmd : {"check-config", "init", "tail"}) {
    EXPECT_NE(ctl_help.output.find(cmd), std::string::npos) << "help lists " << cmd;
  }
  auto ctl_version = Run({BinaryPath("geosyncctl"), "--version"});
  EXPECT_EQ(ctl_version.exit_status, 0);
  EXPECT_NE(ctl_version.output.find(std::string("geosyncctl ") + GEOSYNC_VERSION),
            std::string::npos);
}

TEST_F(CliTest, BadCommandLineIsUsageError) {
  EXPECT_EQ(Run({BinaryPath("geosyncd")}).exit_status, kExitUsage) << "--config is required";
  EXPECT_EQ(Run({BinaryPath("geosyncd"), "--bogus"}).exit_status, kExitUsage);
  EXPECT_EQ(Run({BinaryPath("geosyncctl"), "frobnicate"}).exit_status, kExitUsage);
}

TEST_F(CliTest, MissingConfigFileNamesIt) {
  auto r = Run({BinaryPath("geosyncd"), "--config", dir_ + "/nope.json"});
  EXPECT_EQ(r.exit_status, kExitConfig);
  EXPECT_NE(r.output.find(dir_ + "/nope.json"), std::string::npos) << r.output;
}

TEST_F(CliTest, EachBadConfigExitsWithConfigErrorNamingTheKey) {
  PgCluster& pg = NewCluster("pg");
  nlohmann::json wrong_type = ValidReplica(pg.port());
  wrong_type["upstream"]["port"] = "7450";
  nlohmann::json unknown = ValidReplica(pg.port());
  unknown["postgres"]["slott"] = "x";
  nlohmann::json missing = ValidReplica(pg.port());
  missing.erase("site");
  struct Case {
    std::string name, text, expect;
  } cases[] = {
      {"bad-json.json", "{\"cluster_id\": \"prod\",,}", "not valid JSON"},
      {"unknown-key.json", unknown.dump(), "unknown key 'postgres.slott'"},
      {"wrong-type.json", wrong_type.dump(),
       "key 'upstream.port' expected an integer, found string \"7450\""},
      {"missing-key.json", missing.dump(), "missing required key 'site'"},
  };
  for (const auto& c : cases) {
    std::string path = WriteConfig(c.name, c.text);
    for (std::string prog : {"geosyncd", "geosyncctl"}) {
      std::vector<std::string> argv =
          prog == "geosyncd"
              ? std::vector<std::string>{BinaryPath(prog), "--config", path}
              : std::vector<std::string>{BinaryPath(prog), "check-config", "-c", path};
      auto r = Run(argv);
      EXPECT_EQ(r.exit_status, kExitConfig) << prog << " " << c.name << ": " << r.output;
      EXPECT_NE(r.output.find(c.expect), std::string::npos)
          << prog << " " << c.name << ": " << r.output;
      EXPECT_NE(r.output.find(path), std::string::npos) << "the message names the file";
    }
  }
}

TEST_F(CliTest, UnreachablePostgresExitsFourWithoutLeakingThePassword) {
  nlohmann::json c = ValidReplica(FreeTcpPort());
  c["postgres"]["dsn"] = fmt::format(
      "host=127.0.0.1 port={} user=postgres password=hunter2secret dbname=postgres", FreeTcpPort());
  std::string path = WriteConfig("unreachable.json", c.dump());
  auto r = Run({BinaryPath("geosyncd"), "--config", path, "--check"});
  EXPECT_EQ(r.exit_status, kExitPostgres) << r.output;
  EXPECT_NE(r.output.find("cannot connect to PostgreSQL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("08001"), std::string::npos) << "the SQLSTATE is printed: " << r.output;
  EXPECT_EQ(r.output.find("hunter2secret"), std::string::npos) << "password leaked: " << r.output;
  auto ctl = Run({BinaryPath("geosyncctl"), "check-config", "-c", path});
  EXPECT_EQ(ctl.exit_status, kExitPostgres) << ctl.output;
  EXPECT_EQ(ctl.output.find("hunter2secret"), std::string::npos) << ctl.output;
}

TEST_F(CliTest, CheckSucceedsAgainstARealServer) {
  PgCluster& pg = NewCluster("pg");
  // `geosyncctl init` first, as the runbook has it on every site.
  auto init = Run({BinaryPath("geosyncctl"), "init", "--dsn", pg.ConnInfo()});
  ASSERT_EQ(init.exit_status, kExitOk) << init.output;
  nlohmann::json c = ValidReplica(pg.port());
  // check-config also connects to the upstream: any listening port will do.
  c["upstream"]["port"] = pg.port();
  std::string path = WriteConfig("ok.json", c.dump());
  auto r = Run({BinaryPath("geosyncd"), "--config", path, "--check"});
  EXPECT_EQ(r.exit_status, kExitOk) << r.output;
  auto ctl = Run({BinaryPath("geosyncctl"), "check-config", "-c", path});
  EXPECT_EQ(ctl.exit_status, kExitOk) << ctl.output;
  EXPECT_NE(ctl.output.find("config valid"), std::string::npos) << ctl.output;
}

TEST_F(CliTest, SourceOnServerWithoutLogicalWalIsAConfigError) {
  PgCluster& pg = NewCluster("pg");
  pg.SetSetting("wal_level", "replica");
  ASSERT_TRUE(pg.Restart().ok());
  nlohmann::json c = ValidReplica(pg.port());
  c["role"] = "source";
  c.erase("upstream");
  c["listen"] = {{"host", "127.0.0.1"}, {"port", 0}};
  std::string path = WriteConfig("source.json", c.dump());
  auto r = Run({BinaryPath("geosyncd"), "--config", path, "--check"});
  EXPECT_EQ(r.exit_status, kExitConfig) << r.output;
  EXPECT_NE(r.output.find("wal_level = replica"), std::string::npos) << r.output;
}

TEST_F(CliTest, JsonLogLinesAreOneObjectPerLine) {
  PgCluster& pg = NewCluster("pg");
  auto init = Run({BinaryPath("geosyncctl"), "init", "--dsn", pg.ConnInfo()});
  ASSERT_EQ(init.exit_status, kExitOk) << init.output;
  nlohmann::json c = ValidReplica(pg.port());
  c["log"] = {{"level", "info"}, {"json", true}};
  std::string path = WriteConfig("json-log.json", c.dump());
  auto r = Run({BinaryPath("geosyncd"), "--config", path, "--check"});
  ASSERT_EQ(r.exit_status, kExitOk) << r.output;
  std::istringstream lines(r.output);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_EQ(j["level"], "info");
    EXPECT_TRUE(j["msg"].is_string());
    EXPECT_TRUE(j["ts"].is_string());
    ++n;
  }
  EXPECT_GE(n, 1) << "--check logs at least one line";
}

}  // namespace
}  // namespace geosync::testing
