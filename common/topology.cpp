// The topology file (topology.h).
#include "common/topology.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/json_reader.h"

namespace geosync {

Result<Topology> LoadTopology(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::Config(
        fmt::format("topology {}: cannot open file: {}", path, std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParseTopology(ss.str(), path);
}

Result<Topology> ParseTopology(std::string_view json_text, const std::string& path) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double (found by
    // tests/fuzz/config_fuzz: it escaped and terminated the process).
    return Status::Config(fmt::format("topology {}: not valid JSON: {}", path, e.what()));
  }
  if (!doc.is_object()) {
    return Status::Config(
        fmt::format("topology {}: expected a JSON object, found {}", path, DescribeJson(doc)));
  }
  Topology t;
  JsonReader r(doc, path);
  std::string ignored;
  r.String("$schema", &ignored);
  r.String("cluster_id", &t.cluster_id, true);
  r.StringList("etcd", &t.etcd);
  auto it = doc.find("sites");
  if (it == doc.end() || !it->is_array() || it->empty()) {
    r.AddError("key 'sites' must be a non-empty array of {\"name\", \"admin\"} objects");
  } else {
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& item = (*it)[i];
      std::string key = fmt::format("sites[{}]", i);
      if (!item.is_object()) {
        r.AddError(fmt::format("key '{}' expected an object, found {}", key, DescribeJson(item)));
        continue;
      }
      JsonReader s = r.Child(item, key);
      TopologySite site;
      s.String("name", &site.name, true);
      s.String("admin", &site.admin, true);
      s.String("stream", &site.stream);
      if (!site.stream.empty()) {
        auto colon = site.stream.rfind(':');
        int port = colon == std::string::npos ? 0 : std::atoi(site.stream.c_str() + colon + 1);
        if (colon == 0 || port <= 0 || port > 65535) {
          s.AddError(
              fmt::format("key '{}.stream' must be host:port, found \"{}\"", key, site.stream));
        }
      }
      if (!site.admin.empty() && !site.admin.starts_with("http://") &&
          !site.admin.starts_with("https://")) {
        s.AddError(fmt::format("key '{}.admin' must be an http:// or https:// URL, found \"{}\"",
                               key, site.admin));
      }
      s.CheckNoUnknownKeys();
      t.sites.push_back(site);
    }
  }
  std::vector<std::string> known = {"$schema", "cluster_id", "etcd", "sites"};
  for (const auto& [k, v] : doc.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      r.AddError(fmt::format("unknown key '{}' (known keys: cluster_id, etcd, sites)", k));
    }
  }
  if (!r.errors().empty()) {
    std::string first = r.errors().front();
    // JsonReader speaks of configs; this file is a topology.
    if (first.rfind("config ", 0) == 0) first = "topology " + first.substr(7);
    return Status::Config(first);
  }
  return t;
}

}  // namespace geosync
