// Test certificates made with the openssl command: a deployment CA and one
// certificate per site (CN = site name), for mutual TLS between sites.
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
  // The "tls" config block for `site`.
  nlohmann::json TlsConfig(const std::string& site) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, ca_;
};

}  // namespace geosync::testing
