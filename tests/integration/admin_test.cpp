// The admin API of a real source geosyncd against a throwaway PostgreSQL:
// /healthz, /readyz, /status (validated against schemas/status.schema.json
// by python3-jsonschema), /metrics (checked by promtool), the bearer token
// guarding POST /admin/..., and the attacks on it that geosyncd refuses:
// plain HTTP to an HTTPS API, a server certificate from another CA, clients
// without a certificate, readable or short token files, plaintext off
// loopback.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "common/exit_codes.h"
#include "tests/support/certs.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class AdminApiTest : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.replicas = {"dublin"}, .admin = true, .token_seed = "admin"});
    dir_ = d.dir();
    token_file_ = d.token_file();
    primary_ = &d.Primary();
    admin_port_ = d.AdminPort("frankfurt");
    site_ = &d.AddSource();
    ASSERT_TRUE(site_->Start().ok());
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
  const std::string token_ = TestToken("admin");
  uint16_t admin_port_ = 0;
  PgCluster* primary_ = nullptr;
  GeoSite* site_ = nullptr;
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
  EXPECT_EQ(StatusCode("POST", "/admin/apply/skip?xid=5", token_), 404u)
      << "a source has no apply to skip in";
  EXPECT_EQ(StatusCode("GET", "/nothing-here"), 404u);
  EXPECT_EQ(StatusCode("GET", "/admin/apply/resume"), 405u);
  auto huge = Call("GET", "/status", std::string(20000, 'x'));
  ASSERT_TRUE(huge.ok()) << huge.status().ToString();
  EXPECT_EQ(huge->status, 413u) << "a 20 kB header is refused, not buffered";
  EXPECT_EQ(StatusCode("GET", "/healthz"), 200u) << "and the server still answers";
}

TEST_F(AdminApiTest, BadTokenIs401AndChangesNothing) {
  ASSERT_TRUE(WaitFor([&] { return StatusCode("GET", "/readyz") == 200; }, 60s,
                      "the source streams from its slot"));
  const std::string fence = "/admin/promotion/fence?target=dublin&epoch=2";
  for (const std::string& bearer : {std::string(), TestToken("guess"), token_ + "x"}) {
    auto r = Call("POST", fence, bearer);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 401u) << "bearer \"" << bearer << "\": " << r->body;
  }
  auto status = Call("GET", "/status", token_);
  ASSERT_TRUE(status.ok() && status->status == 200);
  nlohmann::json doc = nlohmann::json::parse(status->body);
  EXPECT_EQ(doc["role"], "source") << "still the source: " << doc.dump(2);
  EXPECT_EQ(doc["epoch"], 1);
  EXPECT_NE(doc["state"], "fenced");
  EXPECT_FALSE(doc["promotion"]["in_progress"].get<bool>()) << doc.dump(2);
  EXPECT_NO_THROW(primary_->Exec("CREATE TABLE still_writable (id int)"))
      << "the primary was not fenced";
}

// geosyncd refusing to start: the configuration alone decides, before
// PostgreSQL is contacted (the DSN points nowhere).
class AdminStartupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-admin-start-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    token_file_ = dir_ + "/admin.token";
  }
  void TearDown() override {
    site_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts a source whose admin block is `admin`; its exit status and log.
  std::pair<int, std::string> RunUntilExit(nlohmann::json admin) {
    SiteSpec spec;
    spec.name = "frankfurt";
    spec.source = true;
    spec.dsn = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1";
    spec.listen_port = FreeTcpPort();
    spec.sites = {"dublin"};
    spec.extra = {{"admin", std::move(admin)}};
    site_ = std::make_unique<GeoSite>(spec);
    if (!site_->Start().ok()) return {-1, "did not start"};
    auto exited = site_->WaitExit(30s);
    if (!exited.ok()) return {-1, "still running: " + site_->ReadLog()};
    return {*exited, site_->ReadLog()};
  }

  nlohmann::json AdminOn(const std::string& host) {
    return {{"listen", {{"host", host}, {"port", FreeTcpPort()}}}, {"token_file", token_file_}};
  }

  std::string dir_, token_file_;
  std::unique_ptr<GeoSite> site_;
};

TEST_F(AdminStartupTest, WorldReadableTokenFileStopsTheDaemonNamingTheFile) {
  WriteTokenFile(token_file_, TestToken("readable"));
  ASSERT_EQ(::chmod(token_file_.c_str(), 0644), 0);
  auto [exit_status, log] = RunUntilExit(AdminOn("127.0.0.1"));
  EXPECT_EQ(exit_status, kExitConfig) << log;
  EXPECT_NE(log.find("chmod 600 " + token_file_), std::string::npos)
      << "the error names the file and the fix: " << log;
}

TEST_F(AdminStartupTest, ShortTokenStopsTheDaemonNamingTheFile) {
  WriteTokenFile(token_file_, "short-token");
  auto [exit_status, log] = RunUntilExit(AdminOn("127.0.0.1"));
  EXPECT_EQ(exit_status, kExitConfig) << log;
  EXPECT_NE(log.find("openssl rand -hex 32 > " + token_file_), std::string::npos) << log;
}

TEST_F(AdminStartupTest, PlaintextAdminApiOnANonLoopbackAddressIsRefused) {
  WriteTokenFile(token_file_, TestToken("plaintext"));
  auto [exit_status, log] = RunUntilExit(AdminOn("0.0.0.0"));
  EXPECT_EQ(exit_status, kExitConfig) << log;
  EXPECT_NE(log.find("allow_plaintext"), std::string::npos) << log;
  EXPECT_NE(log.find("0.0.0.0"), std::string::npos) << log;
}

// HTTPS on a real source's admin API, certificates from tests/support/certs.
class AdminTlsTest : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.replicas = {"dublin"}, .admin = true, .token_seed = "tls"});
    dir_ = d.dir();
    certs_ = std::make_unique<TestCerts>(dir_ + "/certs", "deploy-ca",
                                         std::vector<std::string>{"frankfurt", "operator"});
    rogue_ = std::make_unique<TestCerts>(dir_ + "/rogue", "rogue-ca",
                                         std::vector<std::string>{"mallory"});
    token_file_ = d.token_file();
    primary_ = &d.Primary();
    admin_port_ = d.AdminPort("frankfurt");
  }

  // A source whose admin API is HTTPS on 127.0.0.1 with certificate `cert`;
  // waits until it answers when the certificate names 127.0.0.1.
  void StartSite(bool require_client_cert, const std::string& cert = "frankfurt") {
    site_ = &deploy().AddSource({{"admin",
                                  {{"tls",
                                    {{"enabled", true},
                                     {"cert_file", certs_->CertFile(cert)},
                                     {"key_file", certs_->KeyFile(cert)},
                                     {"ca_file", certs_->CaFile()},
                                     {"require_client_cert", require_client_cert}}}}}});
    ASSERT_TRUE(site_->Start().ok());
    if (cert != "frankfurt") return;
    admin::ClientTls tls{certs_->CaFile(), certs_->CertFile("operator"),
                         certs_->KeyFile("operator")};
    ASSERT_TRUE(WaitFor(
        [&] {
          auto r = Call("https", "GET", "/healthz", "", tls);
          return r.ok() && r->status == 200;
        },
        60s, "the HTTPS admin API answers /healthz"));
  }

  Result<admin::HttpAnswer> Call(const std::string& scheme, const std::string& method,
                                 const std::string& target, const std::string& bearer,
                                 admin::ClientTls tls, const std::string& host = "127.0.0.1") {
    admin::HttpCall call;
    call.method = method;
    call.base_url = fmt::format("{}://{}:{}", scheme, host, admin_port_);
    call.target = target;
    call.bearer = bearer;
    call.tls = std::move(tls);
    return admin::Http(call);
  }

  ProcessOutput Ctl(std::vector<std::string> args) {
    ProcessSpec spec;
    spec.argv = {BinaryPath("geosyncctl")};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    auto r = RunProgram(spec, 30s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ProcessOutput{-1, ""};
  }

  std::string Topology() {
    std::string path = dir_ + "/topology.json";
    std::ofstream(path) << nlohmann::json{{"cluster_id", "test"},
                                          {"sites",
                                           {{{"name", "frankfurt"},
                                             {"admin",
                                              fmt::format("https://127.0.0.1:{}", admin_port_)}}}}}
                               .dump();
    return path;
  }

  std::string dir_, token_file_;
  const std::string token_ = TestToken("tls");
  std::unique_ptr<TestCerts> certs_, rogue_;
  uint16_t admin_port_ = 0;
  PgCluster* primary_ = nullptr;
  GeoSite* site_ = nullptr;
};

TEST_F(AdminTlsTest, HttpsApiRefusesPlainHttpAndServersFromAnotherCa) {
  StartSite(/*require_client_cert=*/false);
  admin::ClientTls ca_only{certs_->CaFile(), "", ""};
  auto plain = Call("http", "GET", "/status", token_, {});
  EXPECT_FALSE(plain.ok() && plain->status == 200)
      << "plain HTTP to the HTTPS port gets no answer: " << (plain.ok() ? plain->body : "");

  auto status = Call("https", "GET", "/status", token_, ca_only);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->status, 200u);
  EXPECT_EQ(nlohmann::json::parse(status->body)["site"], "frankfurt");
  auto post = Call("https", "POST", "/admin/no-such-call", token_, ca_only);
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  EXPECT_EQ(post->status, 404u) << "the token is accepted over HTTPS";
  auto no_token = Call("https", "POST", "/admin/no-such-call", "", ca_only);
  ASSERT_TRUE(no_token.ok());
  EXPECT_EQ(no_token->status, 401u);

  auto rogue = Call("https", "GET", "/status", token_, {rogue_->CaFile(), "", ""});
  ASSERT_FALSE(rogue.ok()) << "a client trusting another CA refuses the server";
  EXPECT_NE(rogue.status().message().find("certificate verify failed"), std::string::npos)
      << rogue.status().message();

  auto by_name = Call("https", "GET", "/healthz", "", ca_only, "localhost");
  EXPECT_TRUE(by_name.ok()) << "localhost is in the SAN: " << by_name.status().ToString();

  // geosyncctl: verified with --ca-file, refused against another CA.
  auto ok = Ctl({"status", "--topology", Topology(), "--format", "json", "--ca-file",
                 certs_->CaFile(), "--token-file", token_file_});
  EXPECT_EQ(ok.exit_status, kExitOk) << ok.output;
  auto refused = Ctl({"--ca-file", rogue_->CaFile(), "status", "--topology", Topology(), "--format",
                      "json", "--token-file", token_file_});
  EXPECT_EQ(refused.exit_status, kExitPeer) << refused.output;
  EXPECT_NE(refused.output.find("TLS handshake failed"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("certificate verify failed"), std::string::npos) << refused.output;
}

TEST_F(AdminTlsTest, ServerCertificateMustNameTheHost) {
  certs_->Issue("elsewhere", "DNS:elsewhere.example");
  StartSite(/*require_client_cert=*/false, "elsewhere");
  admin::ClientTls ca_only{certs_->CaFile(), "", ""};
  Result<admin::HttpAnswer> r = Status::Io("not called");
  ASSERT_TRUE(WaitFor(
      [&] {
        r = Call("https", "GET", "/healthz", "", ca_only);
        return !r.ok() && r.status().message().find("TLS handshake") != std::string::npos;
      },
      60s, "the HTTPS admin API listens and its handshake fails"));
  EXPECT_NE(r.status().message().find("certificate verify failed"), std::string::npos)
      << "a certificate from the CA for another host is refused: " << r.status().message();
}

TEST_F(AdminTlsTest, RequireClientCertRefusesClientsWithoutACertificateFromTheCa) {
  StartSite(/*require_client_cert=*/true);
  auto with_cert =
      Call("https", "GET", "/status", token_,
           {certs_->CaFile(), certs_->CertFile("operator"), certs_->KeyFile("operator")});
  ASSERT_TRUE(with_cert.ok()) << with_cert.status().ToString();
  EXPECT_EQ(with_cert->status, 200u);

  auto no_cert = Call("https", "GET", "/status", token_, {certs_->CaFile(), "", ""});
  EXPECT_FALSE(no_cert.ok()) << "a client without a certificate is refused: HTTP "
                             << (no_cert.ok() ? no_cert->status : 0);
  auto foreign_cert =
      Call("https", "GET", "/status", token_,
           {certs_->CaFile(), rogue_->CertFile("mallory"), rogue_->KeyFile("mallory")});
  EXPECT_FALSE(foreign_cert.ok()) << "a certificate from another CA is refused";

  auto ctl_no_cert = Ctl({"status", "--topology", Topology(), "--ca-file", certs_->CaFile()});
  EXPECT_EQ(ctl_no_cert.exit_status, kExitPeer) << ctl_no_cert.output;
  auto ctl_cert = Ctl({"status", "--topology", Topology(), "--ca-file", certs_->CaFile(), "--cert",
                       certs_->CertFile("operator"), "--key", certs_->KeyFile("operator")});
  EXPECT_EQ(ctl_cert.exit_status, kExitOk) << ctl_cert.output;
}

TEST_F(AdminTlsTest, AllowedPlaintextOffLoopbackStartsWithASecurityWarning) {
  site_ = &deploy().AddSource(
      {{"admin", {{"listen", {{"host", "0.0.0.0"}}}, {"allow_plaintext", true}}}});
  ASSERT_TRUE(site_->Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = Call("http", "GET", "/healthz", "", {});
        return r.ok() && r->status == 200;
      },
      60s, "the plaintext admin API answers on 0.0.0.0"));
  EXPECT_NE(site_->ReadLog().find("SECURITY WARNING"), std::string::npos)
      << "admin.allow_plaintext is loud at start: " << site_->ReadLog();
}

}  // namespace
}  // namespace geosync::testing
