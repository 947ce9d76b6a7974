// check-config's checks beyond PostgreSQL (agent/pg/pg_checks.h): the shared
// topology file against the site config, the TLS files, and whether each peer
// answers. Each returns findings, passed or not, with what to change.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "agent/admin/status_model.h"
#include "agent/pg/pg_checks.h"
#include "common/config.h"

namespace geosync::ctl {

// The topology's cluster id equals the config's, this site is listed, and its
// admin URL's port is the config's admin.listen port.
std::vector<CheckItem> CheckTopology(const Config& config, const Topology& topology,
                                     const std::string& topology_path);

// With tls.enabled: the CA, certificate and key load, the key matches the
// certificate, the CA signed it, it is valid now, and its CN is the site name.
std::vector<CheckItem> CheckTls(const Config& config);

// A replica's upstream accepts TCP connections; every other site of the
// topology answers GET /healthz with 200.
std::vector<CheckItem> CheckPeers(const Config& config, const Topology* topology,
                                  std::chrono::milliseconds timeout);

}  // namespace geosync::ctl
