// Config loading: every bad-input case yields a Config error that names the
// file, the key, what was expected and what was found; every example config
// in README.md and docs/ loads and validates against schemas/config.schema.json.
#include "common/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace geosync {
namespace {

namespace fs = std::filesystem;

const char* kValidReplica = R"({
  "cluster_id": "prod", "site": "dublin", "role": "replica", "state_dir": "/tmp/s",
  "postgres": {"dsn": "host=127.0.0.1 dbname=app"},
  "spool": {"dir": "/tmp/s/spool"},
  "upstream": {"host": "127.0.0.1", "port": 7450}
})";

std::string ErrorOf(std::string_view json) {
  auto r = ParseConfig(json, "site.json");
  EXPECT_FALSE(r.ok()) << "accepted: " << json;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Code::kConfig);
  return r.status().message();
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

// Found by tests/fuzz/config_fuzz: a number beyond a double made the JSON
// parser throw out_of_range, which escaped ParseConfig and terminated the
// process instead of naming the file.
TEST(ConfigTest, ANumberBeyondADoubleIsAConfigErrorNamingTheFile) {
  auto r = ParseConfig(R"({"cluster_id": "prod", "compression_level": 1e999})", "site.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConfig);
  EXPECT_NE(r.status().message().find("config site.json: not valid JSON"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("number overflow"), std::string::npos)
      << r.status().message();
}

TEST(ConfigTest, ValidReplicaLoadsWithDefaults) {
  auto r = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->site, "dublin");
  EXPECT_EQ(r->role, Role::kReplica);
  EXPECT_EQ(r->postgres.slot, "geosync");
  EXPECT_EQ(r->upstream->port, 7450);
  EXPECT_EQ(r->compression_level, 3);
  EXPECT_EQ(r->commit.policy, CommitPolicy::kAsync);
}

TEST(ConfigTest, ApplyCollapseIsOnByDefaultAndCanBeTurnedOff) {
  auto on = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->apply.collapse) << "collapsing changes per row is the default";
  auto off =
      ParseConfig(Replace(kValidReplica, R"("spool")", R"("apply": {"collapse": false}, "spool")"),
                  "site.json");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->apply.collapse) << "apply.collapse = false turns it off";
  std::string bad =
      ErrorOf(Replace(kValidReplica, R"("spool")", R"("apply": {"collapse": 1}, "spool")"));
  EXPECT_NE(bad.find("apply.collapse"), std::string::npos) << bad;
}

TEST(ConfigTest, SpoolKeepAppliedDefaultsToOneGigabyteAndIsChecked) {
  auto d = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->spool.keep_applied_bytes, 1024ull << 20);
  auto set = ParseConfig(Replace(kValidReplica, R"("dir": "/tmp/s/spool")",
                                 R"("dir": "/tmp/s/spool", "keep_applied_mb": 64)"),
                         "site.json");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->spool.keep_applied_bytes, 64ull << 20);
  std::string bad = ErrorOf(Replace(kValidReplica, R"("dir": "/tmp/s/spool")",
                                    R"("dir": "/tmp/s/spool", "keep_applied_mb": 0)"));
  EXPECT_NE(bad.find("spool.keep_applied_mb"), std::string::npos) << bad;
}

TEST(ConfigTest, MissingFileNamesThePath) {
  auto r = LoadConfig("/nonexistent/geosync.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConfig);
  EXPECT_NE(r.status().message().find("/nonexistent/geosync.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("No such file"), std::string::npos);
}

TEST(ConfigTest, BadJsonNamesFileAndPosition) {
  std::string msg = ErrorOf(R"({"cluster_id": "prod",, })");
  EXPECT_NE(msg.find("site.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
}

TEST(ConfigTest, TopLevelMustBeAnObject) {
  EXPECT_NE(ErrorOf("[1,2]").find("expected a JSON object"), std::string::npos);
}

TEST(ConfigTest, UnknownKeyIsNamedWithItsPath) {
  std::string msg2 = ErrorOf(Replace(kValidReplica, R"("dsn": )", R"("slott": "x", "dsn": )"));
  EXPECT_NE(msg2.find("unknown key 'postgres.slott'"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("site.json"), std::string::npos) << msg2;
  std::string top = ErrorOf(Replace(kValidReplica, R"("site")", R"("colour": 1, "site")"));
  EXPECT_NE(top.find("unknown key 'colour'"), std::string::npos) << top;
}

TEST(ConfigTest, WrongTypeSaysExpectedAndFound) {
  std::string msg = ErrorOf(Replace(kValidReplica, R"("port": 7450)", R"("port": "7450")"));
  EXPECT_NE(msg.find("key 'upstream.port' expected an integer, found string \"7450\""),
            std::string::npos)
      << msg;
  std::string b =
      ErrorOf(Replace(kValidReplica, R"("spool")", R"("tls": {"enabled": "yes"}, "spool")"));
  EXPECT_NE(b.find("key 'tls.enabled' expected true or false, found string \"yes\""),
            std::string::npos)
      << b;
}

TEST(ConfigTest, OutOfRangeAndBadEnumAreReported) {
  std::string port = ErrorOf(Replace(kValidReplica, "7450", "70000"));
  EXPECT_NE(port.find("upstream.port' expected an integer from 0 to 65535, found 70000"),
            std::string::npos)
      << port;
  std::string role = ErrorOf(Replace(kValidReplica, R"("replica")", R"("primary")"));
  EXPECT_NE(role.find("key 'role' expected one of source, replica, found \"primary\""),
            std::string::npos)
      << role;
}

TEST(ConfigTest, MissingRequiredKeyIsNamed) {
  std::string msg = ErrorOf(Replace(kValidReplica, R"("site": "dublin",)", ""));
  EXPECT_NE(msg.find("missing required key 'site'"), std::string::npos) << msg;
  std::string dsn =
      ErrorOf(Replace(kValidReplica, R"("dsn": "host=127.0.0.1 dbname=app")", R"("slot": "s")"));
  EXPECT_NE(dsn.find("missing required key 'postgres.dsn'"), std::string::npos) << dsn;
}

TEST(ConfigTest, ReplicaWithoutUpstreamIsRejected) {
  std::string msg = ErrorOf(Replace(kValidReplica, R"(,
  "upstream": {"host": "127.0.0.1", "port": 7450})",
                                    ""));
  EXPECT_NE(msg.find("needs key 'upstream'"), std::string::npos) << msg;
}

TEST(ConfigTest, StreamingIsOffByDefaultAndCanBeTurnedOn) {
  auto off = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->postgres.streaming) << "pgoutput v2 streaming is opt-in";
  auto on = ParseConfig(Replace(kValidReplica, R"("dsn": )", R"("streaming": true, "dsn": )"),
                        "site.json");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->postgres.streaming) << "postgres.streaming = true is accepted";
  std::string bad = ErrorOf(Replace(kValidReplica, R"("dsn": )", R"("streaming": "on", "dsn": )"));
  EXPECT_NE(bad.find("postgres.streaming"), std::string::npos) << bad;
}

TEST(ConfigTest, SyncQuorumLargerThanSitesIsRejected) {
  std::string msg = ErrorOf(
      Replace(kValidReplica, R"("spool")",
              R"("commit": {"policy": "sync", "sync_sites": ["a"], "quorum": 2}, "spool")"));
  EXPECT_NE(msg.find("commit.quorum"), std::string::npos) << msg;
}

std::string WithAdmin(const std::string& admin) {
  return Replace(kValidReplica, R"("spool")", R"("admin": )" + admin + R"(, "spool")");
}

TEST(ConfigTest, PlaintextAdminApiOffLoopbackIsRefused) {
  for (const char* host : {"0.0.0.0", "10.1.0.5", "::"}) {
    std::string msg =
        ErrorOf(WithAdmin(fmt::format(R"({{"listen": {{"host": "{}", "port": 7451}}}})", host)));
    EXPECT_NE(msg.find("admin.listen"), std::string::npos) << msg;
    EXPECT_NE(msg.find("allow_plaintext"), std::string::npos) << msg;
    EXPECT_NE(msg.find("admin.tls"), std::string::npos) << msg;
  }
  for (const char* host : {"127.0.0.1", "127.0.0.2", "::1"}) {
    auto r = ParseConfig(
        WithAdmin(fmt::format(R"({{"listen": {{"host": "{}", "port": 7451}}}})", host)), "s");
    EXPECT_TRUE(r.ok()) << host << ": loopback needs no TLS: " << r.status().ToString();
  }
}

TEST(ConfigTest, PlaintextAdminApiOffLoopbackNeedsAllowPlaintextOrTls) {
  auto plain = ParseConfig(
      WithAdmin(R"({"listen": {"host": "0.0.0.0", "port": 7451}, "allow_plaintext": true})"), "s");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_TRUE(plain->admin.allow_plaintext);
  auto tls = ParseConfig(WithAdmin(R"({"listen": {"host": "0.0.0.0", "port": 7451},
      "tls": {"enabled": true, "cert_file": "/c.crt", "key_file": "/c.key",
              "ca_file": "/ca.crt", "require_client_cert": true}})"),
                         "s");
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_TRUE(tls->admin.tls.enabled);
  EXPECT_TRUE(tls->admin.tls.require_client_cert);
  EXPECT_EQ(tls->admin.tls.ca_file, "/ca.crt");
}

TEST(ConfigTest, AdminTlsNeedsItsFiles) {
  std::string msg = ErrorOf(WithAdmin(R"({"tls": {"enabled": true, "cert_file": "/c.crt"}})"));
  EXPECT_NE(msg.find("admin.tls.key_file"), std::string::npos) << msg;
  msg = ErrorOf(WithAdmin(R"({"tls": {"enabled": true, "cert_file": "/c", "key_file": "/k",
      "require_client_cert": true}})"));
  EXPECT_NE(msg.find("admin.tls.ca_file"), std::string::npos) << msg;
}

// Every config example shipped in the docs must load, and must validate
// against the published JSON Schema (checked by Debian's python3-jsonschema).
std::vector<std::pair<std::string, std::string>> DocExamples() {
  std::vector<std::pair<std::string, std::string>> out;
  fs::path root = GEOSYNC_SOURCE_DIR;
  for (const auto& e : fs::directory_iterator(root / "docs/examples")) {
    if (e.path().extension() != ".json") continue;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    out.emplace_back(e.path().string(), ss.str());
  }
  for (const char* md : {"README.md", "docs/configuration.md"}) {
    std::ifstream in(root / md);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    int n = 0;
    const std::string open = "```json\n", close = "```";
    for (size_t at = text.find(open); at != std::string::npos; at = text.find(open, at)) {
      size_t start = at + open.size();
      size_t end = text.find(close, start);
      if (end == std::string::npos) break;
      std::string body = text.substr(start, end - start);
      at = end + close.size();
      if (body.find("\"cluster_id\"") == std::string::npos) continue;
      if (body.find("\"state_dir\"") == std::string::npos) continue;  // topology, not config
      out.emplace_back(std::string(md) + " example " + std::to_string(++n), body);
    }
  }
  return out;
}

TEST(ConfigTest, EveryDocumentedExampleLoadsAndMatchesTheSchema) {
  auto examples = DocExamples();
  ASSERT_GE(examples.size(), 3u) << "README.md and docs/ ship config examples";
  fs::path schema = fs::path(GEOSYNC_SOURCE_DIR) / "schemas/config.schema.json";
  for (const auto& [name, body] : examples) {
    auto r = ParseConfig(body, name);
    EXPECT_TRUE(r.ok()) << name << ": " << r.status().ToString();
    fs::path tmp = fs::temp_directory_path() / ("geosync-example-" + std::to_string(getpid()));
    std::ofstream(tmp) << body;
    std::string cmd =
        "/usr/bin/python3 -c 'import json,sys,jsonschema; "
        "jsonschema.validate(json.load(open(sys.argv[1])), "
        "json.load(open(sys.argv[2])))' " +
        tmp.string() + " " + schema.string();
    int rc = std::system(cmd.c_str());
    fs::remove(tmp);
    EXPECT_EQ(rc, 0) << name << " does not validate against schemas/config.schema.json";
  }
}

}  // namespace
}  // namespace geosync

namespace geosync {
namespace {

TEST(ConfigTest, SeedDefaultsToFourWorkersAndNoAutoSeed) {
  auto r = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->seed.workers, 4);
  EXPECT_FALSE(r->seed.auto_seed);
  EXPECT_EQ(r->seed.chunk_bytes, 32ull << 20);
}

TEST(ConfigTest, SeedKeysAreReadAndCheckedByName) {
  std::string with_seed =
      Replace(kValidReplica, R"("upstream")",
              R"("seed": {"workers": 8, "auto": true, "chunk_mb": 4}, "upstream")");
  auto r = ParseConfig(with_seed, "site.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->seed.workers, 8);
  EXPECT_TRUE(r->seed.auto_seed);
  EXPECT_EQ(r->seed.chunk_bytes, 4ull << 20);
  std::string msg =
      ErrorOf(Replace(kValidReplica, R"("upstream")", R"("seed": {"workers": 0}, "upstream")"));
  EXPECT_NE(msg.find("seed.workers"), std::string::npos) << msg;
}

}  // namespace
}  // namespace geosync

namespace geosync {
namespace {

TEST(ConfigTest, UpstreamMayNameTheSourceSite) {
  auto plain = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->upstream_site, "") << "unnamed by default";
  auto named = ParseConfig(
      Replace(kValidReplica, R"("port": 7450})", R"("port": 7450, "site": "frankfurt"})"),
      "site.json");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_EQ(named->upstream_site, "frankfurt");
  EXPECT_EQ(named->upstream->port, 7450);
  std::string empty =
      ErrorOf(Replace(kValidReplica, R"("port": 7450})", R"("port": 7450, "site": ""})"));
  EXPECT_NE(empty.find("key 'upstream.site' must not be empty"), std::string::npos) << empty;
  std::string listen_site =
      ErrorOf(Replace(kValidReplica, R"("upstream")",
                      R"("listen": {"host": "127.0.0.1", "port": 1, "site": "x"}, "upstream")"));
  EXPECT_NE(listen_site.find("listen.site"), std::string::npos)
      << "only upstream names a site: " << listen_site;
}

TEST(ConfigTest, PlaintextLinksAreOffByDefaultAndMustBeABoolean) {
  auto r = ParseConfig(kValidReplica, "site.json");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->allow_plaintext_links);
  r = ParseConfig(
      Replace(kValidReplica, R"("upstream")", R"("allow_plaintext_links": true, "upstream")"),
      "site.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->allow_plaintext_links);
  std::string msg = ErrorOf(
      Replace(kValidReplica, R"("upstream")", R"("allow_plaintext_links": "yes", "upstream")"));
  EXPECT_NE(msg.find("allow_plaintext_links"), std::string::npos) << msg;
}

}  // namespace
}  // namespace geosync
