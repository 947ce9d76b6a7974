// Deployment: a whole geosync deployment under test (see deployment.h).
#include "tests/support/deployment.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "tests/support/process.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {

using namespace std::chrono_literals;

namespace {

void Require(const Status& st) {
  if (!st.ok()) throw std::runtime_error(st.ToString());
}

}  // namespace

Deployment::Deployment(DeploymentOptions options) : options_(std::move(options)) {
  // Read by geosyncd and geosyncctl, and by PostgreSQL's OS user in tests
  // that place files here.
  std::filesystem::permissions(dir(), std::filesystem::perms::all);
  token_file_ = dir() + "/token";
  WriteTokenFile(token_file_, token());
}

Deployment::~Deployment() {
  sites_.clear();
  pg_.clear();
}

PgCluster& Deployment::Pg(const std::string& site) {
  auto it = pg_.find(site);
  if (it != pg_.end()) return *it->second;
  PgClusterOptions o;
  o.name = site;
  o.cpu = Cpu(site);
  auto pg = std::make_unique<PgCluster>(o);
  if (options_.configure_pg) options_.configure_pg(*pg);
  Require(pg->Start());
  return *pg_.emplace(site, std::move(pg)).first->second;
}

void Deployment::Init(const std::string& site) {
  ProcessSpec init;
  init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", Pg(site).ConnInfo()};
  auto r = RunProgram(init, 60s);
  if (!r.ok())
    throw std::runtime_error("geosyncctl init on " + site + ": " + r.status().ToString());
  if (r->exit_status != 0) {
    throw std::runtime_error("geosyncctl init on " + site + " failed: " + r->output);
  }
}

uint16_t Deployment::StreamPort(const std::string& site) {
  auto [it, fresh] = stream_port_.try_emplace(site, 0);
  if (fresh) it->second = FreeTcpPort();
  return it->second;
}

uint16_t Deployment::AdminPort(const std::string& site) {
  auto [it, fresh] = admin_port_.try_emplace(site, 0);
  if (fresh) it->second = FreeTcpPort();
  return it->second;
}

std::string Deployment::AdminUrl(const std::string& site) {
  return fmt::format("http://127.0.0.1:{}", AdminPort(site));
}

nlohmann::json Deployment::AdminBlock(const std::string& site) {
  return {{"listen", {{"host", "127.0.0.1"}, {"port", AdminPort(site)}}},
          {"token_file", token_file_}};
}

int Deployment::Cpu(const std::string& site) const {
  if (!options_.two_hosts) return -1;
  return site == options_.source ? 0 : 1;
}

std::vector<std::string> Deployment::Others(const std::string& site) const {
  std::vector<std::string> all = {options_.source};
  all.insert(all.end(), options_.replicas.begin(), options_.replicas.end());
  std::erase(all, site);
  return all;
}

SiteSpec Deployment::SourceSpec(const nlohmann::json& extra) {
  SiteSpec s = ReplicaSpec(options_.source, nlohmann::json::object());
  s.source = true;
  s.listen_port = SourcePort();
  s.sites = options_.replicas;
  s.extra.merge_patch(extra);
  return s;
}

SiteSpec Deployment::ReplicaSpec(const std::string& name, const nlohmann::json& extra,
                                 uint16_t upstream_port, PgCluster* pg) {
  SiteSpec s;
  s.cluster_id = options_.cluster_id;
  s.name = name;
  s.dsn = (pg != nullptr ? *pg : Pg(name)).ConnInfo();
  s.upstream_port = upstream_port != 0 ? upstream_port : SourcePort();
  s.cpu = Cpu(name);
  if (options_.admin) s.extra["admin"] = AdminBlock(name);
  if (options_.every_site_can_lead) {
    s.listen_port = StreamPort(name);
    s.sites = Others(name);
    s.extra["listen"] = {{"host", "127.0.0.1"}, {"port", StreamPort(name)}};
    s.extra["sites"] = Others(name);
    s.extra["topology"] = TopologyPath();
  }
  s.extra.merge_patch(extra);
  return s;
}

GeoSite& Deployment::AddSource(const nlohmann::json& extra) { return Add(SourceSpec(extra)); }

GeoSite& Deployment::AddReplica(const std::string& name, const nlohmann::json& extra,
                                uint16_t upstream_port) {
  return Add(ReplicaSpec(name, extra, upstream_port));
}

GeoSite& Deployment::Add(SiteSpec spec) {
  sites_.push_back(std::make_unique<GeoSite>(std::move(spec)));
  return *sites_.back();
}

GeoSite& Deployment::Replace(SiteSpec spec) {
  std::erase_if(sites_, [&](const auto& s) { return s->spec().name == spec.name; });
  return Add(std::move(spec));
}

void Deployment::ClearSites() { sites_.clear(); }

void Deployment::Drop(const std::string& site) {
  std::erase_if(sites_, [&](const auto& s) { return s->spec().name == site; });
  pg_.erase(site);
}

std::string Deployment::WriteTopology(bool with_stream, std::vector<std::string> sites) {
  if (sites.empty()) sites = Others("");
  nlohmann::json list = nlohmann::json::array();
  for (const auto& name : sites) {
    nlohmann::json site = {{"name", name}, {"admin", AdminUrl(name)}};
    if (with_stream) site["stream"] = fmt::format("127.0.0.1:{}", StreamPort(name));
    list.push_back(site);
  }
  const std::string path = TopologyPath();
  std::ofstream(path) << nlohmann::json{{"cluster_id", options_.cluster_id}, {"sites", list}}.dump(
      2);
  std::filesystem::permissions(path, std::filesystem::perms::all);
  return path;
}

void Deployment::StartAll(std::chrono::milliseconds deadline) {
  for (auto& s : sites_) {
    if (!s->IsRunning()) Require(s->Start());
  }
  WaitSlotActive(deadline);
  const Lsn now = Primary().CurrentWalLsn();
  for (auto& s : sites_) {
    if (!s->spec().source) WaitApplied(s->spec().name, now, deadline);
  }
}

void Deployment::WaitSlotActive(std::chrono::milliseconds deadline) {
  PgCluster& primary = Primary();
  Require(Poll(
      [&] {
        return primary.QueryValue(
                   "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'geosync' AND "
                   "active") == "1";
      },
      deadline, "the source " + options_.source + " streams its slot"));
}

void Deployment::WaitApplied(const std::string& site, Lsn target,
                             std::chrono::milliseconds deadline, std::optional<uint64_t> epoch) {
  PgCluster& pg = Pg(site);
  Require(Poll([&] { return (epoch ? AppliedLsnAt(pg, *epoch) : AppliedLsn(pg)) >= target; },
               deadline,
               fmt::format("{} applied up to {}{}", site, target.ToString(),
                           epoch ? fmt::format(" in epoch {}", *epoch) : "")));
}

std::string Deployment::CatchUpAndCompare(const std::string& site,
                                          std::chrono::milliseconds deadline,
                                          const std::string& from, std::optional<uint64_t> epoch) {
  const std::string origin = from.empty() ? options_.source : from;
  const Lsn target = Pg(origin).CurrentWalLsn();
  WaitApplied(site, target, deadline, epoch);
  std::string diff = CompareTables(Pg(origin), Pg(site));
  if (diff.empty()) return diff;
  return fmt::format("{} differs from {} at {}: {}", site, origin, target.ToString(), diff);
}

void Deployment::DumpLogs() const {
  for (const auto& s : sites_) s->DumpLog();
  for (const auto& [name, pg] : pg_) pg->DumpLog();
}

Deployment& DeploymentTest::Deploy(DeploymentOptions options) {
  deploy_ = std::make_unique<Deployment>(std::move(options));
  return *deploy_;
}

void DeploymentTest::TearDown() {
  if (HasFailure() && deploy_) deploy_->DumpLogs();
  deploy_.reset();
}

}  // namespace geosync::testing
