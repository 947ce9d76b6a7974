// Test certificates made with the openssl command: a deployment CA and one
// certificate per site (CN = site name, SAN IP:127.0.0.1 and DNS:localhost),
// for mutual TLS between sites and HTTPS on loopback admin APIs.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace geosync::testing {

class TestCerts {
 public:
  // Creates <dir>/<ca_name>.crt/.key and <dir>/<site>.crt/.key for each site,
  // signed by that CA. Throws std::runtime_error when openssl fails.
  TestCerts(std::string dir, std::string ca_name, const std::vector<std::string>& sites);
  // One more certificate from this CA: <dir>/<name>.crt/.key with CN = name
  // and subjectAltName `san` (e.g. "DNS:elsewhere.example").
  void Issue(const std::string& name, const std::string& san);
  // The "tls" config block for `site`.
  nlohmann::json TlsConfig(const std::string& site) const;
  std::string CaFile() const { return dir_ + "/" + ca_ + ".crt"; }
  std::string CertFile(const std::string& name) const { return dir_ + "/" + name + ".crt"; }
  std::string KeyFile(const std::string& name) const { return dir_ + "/" + name + ".key"; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, ca_;
};

}  // namespace geosync::testing
