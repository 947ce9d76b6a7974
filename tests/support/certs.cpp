// TestCerts: a CA and per-site certificates through the openssl CLI.
#include "tests/support/certs.h"

#include <filesystem>
#include <stdexcept>

#include "tests/support/process.h"

namespace geosync::testing {
namespace {

void Openssl(std::vector<std::string> args) {
  ProcessSpec spec;
  spec.argv = {"openssl"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  auto r = RunProgram(spec, std::chrono::seconds(60));
  if (!r.ok() || r->exit_status != 0) {
    throw std::runtime_error("openssl failed: " + (r.ok() ? r->output : r.status().ToString()));
  }
}

}  // namespace

TestCerts::TestCerts(std::string dir, std::string ca_name, const std::vector<std::string>& sites)
    : dir_(std::move(dir)), ca_(std::move(ca_name)) {
  std::filesystem::create_directories(dir_);
  std::string ca = dir_ + "/" + ca_;
  Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + ca_,
           "-keyout", ca + ".key", "-out", ca + ".crt"});
  for (const auto& site : sites) Issue(site, "IP:127.0.0.1,DNS:localhost");
}

void TestCerts::Issue(const std::string& name, const std::string& san) {
  std::string ca = dir_ + "/" + ca_;
  std::string base = dir_ + "/" + name;
  Openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-addext",
           "subjectAltName=" + san, "-keyout", base + ".key", "-out", base + ".csr"});
  Openssl({"x509", "-req", "-in", base + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
           "-CAcreateserial", "-copy_extensions", "copy", "-days", "2", "-out", base + ".crt"});
}

nlohmann::json TestCerts::TlsConfig(const std::string& site) const {
  return {{"enabled", true},
          {"ca_file", dir_ + "/" + ca_ + ".crt"},
          {"cert_file", dir_ + "/" + site + ".crt"},
          {"key_file", dir_ + "/" + site + ".key"}};
}

}  // namespace geosync::testing
