// One geosync deployment under test, built the way the runbook builds one: a
// PostgreSQL per site, `geosyncctl init` on each before its agent starts, a stream
// port for the source (for every site when any of them may lead), an admin
// port per site with one shared token file, and a topology file naming every
// site. The e2e fixtures and the benchmarks build their sites through it, so
// a change to how a deployment is laid out is made here once.
//
// Errors throw std::runtime_error naming what failed: inside a gtest body that
// fails the test, in a benchmark it ends the run with the message.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/lsn.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/site.h"
#include "tests/support/temp_dir.h"

namespace geosync::testing {

struct DeploymentOptions {
  std::string cluster_id = "test";
  // The site that starts as the source.
  std::string source = "frankfurt";
  // The replicas the source admits (its `sites`).
  std::vector<std::string> replicas = {"dublin", "virginia"};
  // An admin API on every site, all reading one token file.
  bool admin = false;
  // The admin token is TestToken(token_seed).
  std::string token_seed = "deploy";
  // Any site may become the source, as promotion needs: each site's config
  // has its own listen address, the names of the others, and the topology
  // file.
  bool every_site_can_lead = false;
  // Two emulated hosts: the source's PostgreSQL, its agent and the clients
  // run on CPU 0, every other site's on CPU 1 (taskset).
  bool two_hosts = false;
  // Called on each new PostgreSQL before its first start (SetSetting...).
  std::function<void(PgCluster&)> configure_pg = nullptr;
};

class Deployment {
 public:
  explicit Deployment(DeploymentOptions options = {});
  // Agents first (kill -9), then the PostgreSQL servers, then the dir.
  ~Deployment();
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  const DeploymentOptions& options() const { return options_; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& token_file() const { return token_file_; }
  std::string token() const { return TestToken(options_.token_seed); }

  // The PostgreSQL of `site`, created and started on first use.
  PgCluster& Pg(const std::string& site);
  PgCluster& Primary() { return Pg(options_.source); }
  // Runs `geosyncctl init` on the site's database. Every agent also runs it
  // when it first starts (SiteSpec::init), as the runbook does on each site;
  // call it to have DDL captured before that.
  void Init(const std::string& site);

  // The site's stream (listen) port and admin port, chosen on first use.
  uint16_t StreamPort(const std::string& site);
  uint16_t SourcePort() { return StreamPort(options_.source); }
  uint16_t AdminPort(const std::string& site);
  std::string AdminUrl(const std::string& site);
  // {"listen": ..., "token_file": ...} for the site's admin API.
  nlohmann::json AdminBlock(const std::string& site);

  // The config of the source, or of replica `name` streaming from
  // `upstream_port` (0: the source's stream port) into `pg` (nullptr: the
  // site's own Pg(name)). `extra` is merged last.
  SiteSpec SourceSpec(const nlohmann::json& extra = nlohmann::json::object());
  SiteSpec ReplicaSpec(const std::string& name,
                       const nlohmann::json& extra = nlohmann::json::object(),
                       uint16_t upstream_port = 0, PgCluster* pg = nullptr);
  GeoSite& AddSource(const nlohmann::json& extra = nlohmann::json::object());
  GeoSite& AddReplica(const std::string& name,
                      const nlohmann::json& extra = nlohmann::json::object(),
                      uint16_t upstream_port = 0);
  GeoSite& Add(SiteSpec spec);
  // Kills and forgets the agent named spec.name, then adds one from `spec`.
  GeoSite& Replace(SiteSpec spec);
  // Kills and forgets every agent (their PostgreSQL servers stay).
  void ClearSites();
  // Kills and forgets the site's agents, stops its PostgreSQL and removes
  // its data: a site lost for good.
  void Drop(const std::string& site);

  // Writes dir()/topology.json naming every site in `sites` (default: the
  // source and its replicas) with its admin URL, and its stream address when
  // `with_stream`. Returns the path.
  std::string WriteTopology(bool with_stream = false, std::vector<std::string> sites = {});
  std::string TopologyPath() const { return dir() + "/topology.json"; }

  // Starts every agent not running, waits until the source streams its slot
  // and every replica applied the primary's WAL position of that moment.
  void StartAll(std::chrono::milliseconds deadline = std::chrono::seconds(60));
  void WaitSlotActive(std::chrono::milliseconds deadline = std::chrono::seconds(60));
  // Waits until `site`'s database applied `target` (within `epoch` if given).
  void WaitApplied(const std::string& site, Lsn target, std::chrono::milliseconds deadline,
                   std::optional<uint64_t> epoch = std::nullopt);
  // Waits until `site` applied everything `from` (default: the source) wrote
  // so far, then compares every table row by row: "" when identical, else
  // the first difference, naming the sites and the LSN.
  std::string CatchUpAndCompare(const std::string& site, std::chrono::milliseconds deadline,
                                const std::string& from = "",
                                std::optional<uint64_t> epoch = std::nullopt);

  // Every agent's log and every server's log, to stderr.
  void DumpLogs() const;

 private:
  std::vector<std::string> Others(const std::string& site) const;
  int Cpu(const std::string& site) const;

  DeploymentOptions options_;
  TempDir dir_{"deploy"};
  std::string token_file_;
  std::map<std::string, std::unique_ptr<PgCluster>> pg_;
  std::map<std::string, uint16_t> stream_port_;
  std::map<std::string, uint16_t> admin_port_;
  std::vector<std::unique_ptr<GeoSite>> sites_;
};

// A gtest fixture holding one Deployment, whose logs it prints when the test
// failed.
class DeploymentTest : public ::testing::Test {
 protected:
  Deployment& Deploy(DeploymentOptions options = {});
  Deployment& deploy() { return *deploy_; }
  void TearDown() override;

  std::unique_ptr<Deployment> deploy_;
};

}  // namespace geosync::testing
