// The topology file: the deployment's sites, where their admin APIs and
// stream servers listen, and the etcd endpoints
// (schemas/topology.schema.json). geosyncd reads it to watch its peers'
// epochs; geosyncctl to reach every site.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace geosync {

struct TopologySite {
  std::string name;
  std::string admin;   // "http://host:port"
  std::string stream;  // "host:port" where its stream server listens as the source; "" unknown
};

struct Topology {
  std::string cluster_id;
  std::vector<TopologySite> sites;
  std::vector<std::string> etcd;
};

// Parses a topology file (schemas/topology.schema.json); `path` names it in errors.
Result<Topology> ParseTopology(std::string_view json_text, const std::string& path);
// Reads and parses a topology file.
Result<Topology> LoadTopology(const std::string& path);

}  // namespace geosync
