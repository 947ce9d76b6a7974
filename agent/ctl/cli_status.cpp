// geosyncctl status: one table for the whole deployment, from every site's
// admin API (GET /status); geosyncctl skip / resume: the replica's apply
// controls (POST /admin/apply/...), with the bearer token from a file.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "common/exit_codes.h"

namespace geosync::ctl {
namespace {

struct StatusArgs {
  std::string topology;
  std::string token_file;  // sent so that /status is not redacted
  std::string format = "table";
  double watch = 0;
  int timeout_ms = 2000;
};

admin::StatusRow RowFor(const Topology& topology, const TopologySite& site,
                        const Result<admin::HttpAnswer>& answer) {
  if (!answer.ok()) return admin::UnreachableRow(site, answer.status().message());
  if (answer->status != 200) {
    return admin::UnreachableRow(
        site, fmt::format("GET {}/status answered HTTP {}", site.admin, answer->status));
  }
  nlohmann::json doc = nlohmann::json::parse(answer->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return admin::UnreachableRow(site, "GET /status did not return a JSON object");
  }
  admin::StatusRow row = admin::RowFromStatus(site, doc);
  std::string cluster = doc.value("cluster_id", "");
  if (row.reachable && cluster != topology.cluster_id) {
    row.last_error = fmt::format("belongs to cluster {}, not {}", cluster, topology.cluster_id);
  }
  return row;
}

// Asks every site at once, each with its own deadline; a site that does not
// answer is a row saying so, never a missing row.
std::vector<admin::StatusRow> FetchAll(const Topology& topology, int timeout_ms,
                                       const std::string& token) {
  std::vector<Result<admin::HttpAnswer>> answers =
      admin::FetchStatusOfAll(topology, std::chrono::milliseconds(timeout_ms), token);
  std::vector<admin::StatusRow> rows;
  for (size_t i = 0; i < topology.sites.size(); ++i) {
    rows.push_back(RowFor(topology, topology.sites[i], answers[i]));
  }
  return rows;
}

// The token of --token-file, else $GEOSYNC_ADMIN_TOKEN, else none: sites
// then show redacted errors (no row values) in /status.
Result<std::string> StatusToken(const StatusArgs& args) {
  if (!args.token_file.empty()) return admin::ReadTokenFile(args.token_file, "--token-file");
  if (const char* env = std::getenv("GEOSYNC_ADMIN_TOKEN"); env && *env) return std::string(env);
  return std::string();
}

int PrintOnce(const Topology& topology, const StatusArgs& args, const std::string& token) {
  std::vector<admin::StatusRow> rows = FetchAll(topology, args.timeout_ms, token);
  if (args.format == "json") {
    std::cout << admin::RowsJson(rows).dump(2) << "\n";
  } else {
    std::cout << fmt::format("cluster {} at {:%Y-%m-%d %H:%M:%S}\n", topology.cluster_id,
                             fmt::localtime(std::time(nullptr)))
              << admin::FormatTable(rows);
  }
  std::cout.flush();
  for (const auto& r : rows) {
    if (!r.reachable) return kExitPeer;
  }
  return kExitOk;
}

void RegisterStatus(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand(
      "status", "one table of every site of the deployment, from each site's admin API");
  auto args = std::make_shared<StatusArgs>();
  cmd->add_option("--topology", args->topology,
                  "topology file: cluster_id and every site's admin URL "
                  "(schemas/topology.schema.json)")
      ->required();
  cmd->add_option("--token-file", args->token_file,
                  "file holding the admin bearer token (default: $GEOSYNC_ADMIN_TOKEN); without "
                  "it sites show apply and seed errors without their details");
  cmd->add_option("--format", args->format, "table (default) or json")
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--watch", args->watch, "refresh every SECONDS until interrupted")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--timeout-ms", args->timeout_ms, "deadline per site (default 2000)")
      ->check(CLI::Range(50, 60000));
  cmd->callback([args, exit_code] {
    auto topology = LoadTopology(args->topology);
    if (!topology.ok()) {
      *exit_code = Fail(topology.status());
      return;
    }
    auto token = StatusToken(*args);
    if (!token.ok()) {
      *exit_code = Fail(token.status());
      return;
    }
    if (args->watch <= 0) {
      *exit_code = PrintOnce(*topology, *args, *token);
      return;
    }
    while (true) {
      if (args->format == "table") std::cout << "\033[H\033[2J";
      PrintOnce(*topology, *args, *token);
      std::this_thread::sleep_for(std::chrono::duration<double>(args->watch));
    }
  });
}

struct AdminCallArgs {
  std::string site;
  std::string token_file;
  uint32_t xid = 0;
  int timeout_ms = 5000;
};

int CallAdmin(const AdminCallArgs& args, const std::string& target) {
  auto token = admin::ReadTokenFile(args.token_file, "--token-file");
  if (!token.ok()) return Fail(token.status());
  admin::HttpCall call;
  call.method = "POST";
  call.base_url = args.site;
  call.target = target;
  call.bearer = *token;
  call.timeout = std::chrono::milliseconds(args.timeout_ms);
  auto answer = admin::Http(call);
  if (!answer.ok()) return Fail(answer.status());
  std::string body = answer->body;
  while (!body.empty() && body.back() == '\n') body.pop_back();
  if (answer->status == 200) {
    std::cout << body << "\n";
    return kExitOk;
  }
  std::cerr << fmt::format("geosyncctl: POST {}{} answered HTTP {}: {}\n", args.site, target,
                           answer->status, body);
  switch (answer->status) {
    case 400:
    case 404:
      return kExitUsage;
    case 401:
    case 403:
    case 409:
      return kExitRefused;
    default:
      return kExitPeer;
  }
}

void AddAdminOptions(CLI::App* cmd, AdminCallArgs& args) {
  cmd->add_option("--site", args.site, "the replica's admin URL, e.g. http://127.0.0.1:7451")
      ->required();
  cmd->add_option("--token-file", args.token_file, "file holding the admin bearer token")
      ->required();
  cmd->add_option("--timeout-ms", args.timeout_ms, "deadline (default 5000)")
      ->check(CLI::Range(50, 600000));
}

void RegisterApplyControls(CLI::App& app, int* exit_code) {
  auto skip_args = std::make_shared<AdminCallArgs>();
  auto* skip = app.add_subcommand(
      "skip", "on a replica whose apply stopped: skip source transaction XID once");
  AddAdminOptions(skip, *skip_args);
  skip->add_option("--xid", skip_args->xid, "source transaction id named in the apply error")
      ->required()
      ->check(CLI::PositiveNumber);
  skip->callback([skip_args, exit_code] {
    *exit_code = CallAdmin(*skip_args, fmt::format("/admin/apply/skip?xid={}", skip_args->xid));
  });

  auto resume_args = std::make_shared<AdminCallArgs>();
  auto* resume = app.add_subcommand(
      "resume", "on a replica whose apply stopped: retry now instead of after the backoff");
  AddAdminOptions(resume, *resume_args);
  resume->callback(
      [resume_args, exit_code] { *exit_code = CallAdmin(*resume_args, "/admin/apply/resume"); });
}

}  // namespace

void RegisterStatusCommands(CLI::App& app, int* exit_code) {
  RegisterStatus(app, exit_code);
  RegisterApplyControls(app, exit_code);
}

}  // namespace geosync::ctl
