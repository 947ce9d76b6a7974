// geosyncctl check-config: validates a site config (and the shared topology
// file), then checks the local PostgreSQL, the TLS files and every peer.
// Reports every finding, one line each, with what to change; the exit code is
// that of the first problem (docs/exit-codes.md).
#include <algorithm>

#include <fmt/format.h>

#include <iostream>

#include "agent/ctl/commands.h"
#include "agent/ctl/config_checks.h"
#include "agent/pg/pg_checks.h"
#include "common/config.h"
#include "common/exit_codes.h"

namespace geosync::ctl {
namespace {

struct CheckConfigArgs {
  std::string config;
  std::string topology;
  int timeout_ms = 3000;
};

// One finding per line (libpq's messages span lines), its fix below it.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return text;
}

void Print(const CheckItem& item) {
  const char* tag = !item.ok() ? "FAIL" : item.warning ? "WARN" : "ok";
  std::cout << fmt::format("  {:<5} {}: {}\n", tag, item.subject, OneLine(item.found));
  if (!item.fix.empty()) std::cout << fmt::format("        fix: {}\n", item.fix);
}

int RunCheckConfig(const CheckConfigArgs& args) {
  std::vector<CheckItem> items;
  auto config = LoadConfig(args.config);
  Result<Topology> topology = Status::NotFound("no topology file given");
  if (!args.topology.empty()) topology = LoadTopology(args.topology);

  if (!config.ok()) {
    // Nothing below can run without the config; still say what else is wrong.
    int code = Fail(config.status());
    if (!args.topology.empty() && !topology.ok()) Fail(topology.status());
    return code;
  }
  std::cout << fmt::format("check-config {}: site {} ({}), cluster {}\n", args.config, config->site,
                           config->role == Role::kSource ? "source" : "replica",
                           config->cluster_id);
  CheckItem parsed;
  parsed.subject = "config";
  parsed.found = "valid (every key known, every value of the right type)";
  items.push_back(parsed);
  if (!args.topology.empty()) {
    if (!topology.ok()) {
      CheckItem bad;
      bad.subject = "topology " + args.topology;
      bad.code = topology.status().code();
      bad.found = topology.status().message();
      // ParseTopology's messages start with "topology PATH: ", already the subject.
      if (bad.found.starts_with(bad.subject + ": ")) bad.found.erase(0, bad.subject.size() + 2);
      bad.fix = "fix the file (schemas/topology.schema.json)";
      items.push_back(bad);
    } else {
      for (auto& i : CheckTopology(*config, *topology, args.topology)) items.push_back(i);
    }
  }
  for (auto& i : CheckTls(*config)) items.push_back(i);
  for (auto& i : AuditPostgres(*config)) items.push_back(i);
  const Topology* topo = topology.ok() ? &*topology : nullptr;
  for (auto& i : CheckPeers(*config, topo, std::chrono::milliseconds(args.timeout_ms))) {
    items.push_back(i);
  }

  int problems = 0;
  int exit_code = kExitOk;
  for (const auto& item : items) {
    Print(item);
    if (item.ok()) continue;
    if (problems++ == 0) exit_code = ExitCodeFor(Status(item.code, item.found));
  }
  const bool needs_seed = std::any_of(items.begin(), items.end(),
                                      [](const CheckItem& i) { return i.subject == "seed"; });
  if (problems == 0 && needs_seed) {
    std::cout << fmt::format("{}: config valid; site {} is not ready: it needs a seed\n",
                             args.config, config->site);
  } else if (problems == 0) {
    std::cout << fmt::format("{}: config valid; site {} is ready\n", args.config, config->site);
  } else {
    std::cout << fmt::format("{}: {} problem{} found\n", args.config, problems,
                             problems == 1 ? "" : "s");
  }
  return exit_code;
}

}  // namespace

void RegisterConfigCommands(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand(
      "check-config",
      "validate a site config (and the topology file), then check its PostgreSQL, TLS files "
      "and peers; reports every problem with what to change");
  auto args = std::make_shared<CheckConfigArgs>();
  cmd->add_option("-c,--config", args->config, "site config file")->required();
  cmd->add_option("-t,--topology", args->topology,
                  "deployment topology file: also checked, and every other site's /healthz "
                  "is called");
  cmd->add_option("--timeout-ms", args->timeout_ms, "deadline of each peer check")
      ->check(CLI::Range(100, 60000));
  cmd->callback([args, exit_code] { *exit_code = RunCheckConfig(*args); });
}

}  // namespace geosync::ctl
