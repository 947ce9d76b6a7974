// geosyncctl seed: copy the primary to a replica site (POST /admin/seed on
// that site's admin API, with the bearer token), then follow its progress in
// GET /status until the seed is done (docs/seed.md).
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "common/exit_codes.h"

namespace geosync::ctl {
namespace {

struct SeedArgs {
  std::string site;
  std::string topology;
  std::string token_file;
  bool no_wait = false;
  double interval_s = 1;
  int timeout_s = 0;  // 0: wait as long as it takes
};

// The site's admin URL from the topology file.
Result<std::string> AdminUrlOf(const SeedArgs& args) {
  GEOSYNC_ASSIGN_OR_RETURN(Topology topology, LoadTopology(args.topology));
  for (const auto& s : topology.sites) {
    if (s.name == args.site) return s.admin;
  }
  return Status::InvalidArgument(
      fmt::format("site {} is not in topology {}", args.site, args.topology));
}

Result<std::string> Token(const SeedArgs& args) {
  if (!args.token_file.empty()) return admin::ReadTokenFile(args.token_file, "--token-file");
  if (const char* env = std::getenv("GEOSYNC_ADMIN_TOKEN"); env && *env) return std::string(env);
  return Status::InvalidArgument("no admin token: pass --token-file or set GEOSYNC_ADMIN_TOKEN");
}

std::string Mb(uint64_t bytes) { return fmt::format("{:.1f} MB", bytes / 1048576.0); }

std::string ProgressLine(const std::string& site, const nlohmann::json& seed) {
  std::string eta = seed["eta_seconds"].is_number()
                        ? fmt::format(", ETA {:.0f} s", seed["eta_seconds"].get<double>())
                        : "";
  std::string error =
      seed["error"].is_string() ? " (last error: " + seed["error"].get<std::string>() + ")" : "";
  return fmt::format(
      "seed of {}: {} {}: {} rows, {} copied of {} on the source{}{}", site,
      seed.value("state", "?"), seed["phase"].is_string() ? seed["phase"].get<std::string>() : "",
      seed.value("rows_copied", uint64_t{0}), Mb(seed.value("bytes_copied", uint64_t{0})),
      Mb(seed.value("bytes_total", uint64_t{0})), eta, error);
}

void PrintTables(const nlohmann::json& seed) {
  for (const auto& t : seed["tables"]) {
    std::cout << fmt::format("  {:<40} {:>12} rows  {:>10}  chunks {}/{}\n", t.value("table", "?"),
                             t.value("rows_copied", uint64_t{0}),
                             Mb(t.value("bytes_copied", uint64_t{0})), t.value("chunks_done", 0),
                             t.value("chunks_total", 0));
  }
}

int Follow(const SeedArgs& args, const std::string& url) {
  const auto started = std::chrono::steady_clock::now();
  bool seen_in_progress = false;
  std::string last;
  for (;;) {
    admin::HttpCall call;
    call.base_url = url;
    call.target = "/status";
    auto answer = admin::Http(call);  // the site restarts its replica role: misses are normal
    if (answer.ok() && answer->status == 200) {
      auto doc = nlohmann::json::parse(answer->body, nullptr, false);
      if (doc.is_object() && doc.contains("replica") && doc["replica"].contains("seed")) {
        const nlohmann::json& seed = doc["replica"]["seed"];
        const std::string state = seed.value("state", "");
        if (state == "in_progress") seen_in_progress = true;
        if (state == "done" && seen_in_progress) {
          std::cout << fmt::format(
              "seed of {} done in {:.0f} s: {} rows, {}; streaming continues from {}\n", args.site,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              seed.value("rows_copied", uint64_t{0}), Mb(seed.value("bytes_copied", uint64_t{0})),
              seed["position"].is_object() ? seed["position"].value("position", "?") : "?");
          PrintTables(seed);
          return kExitOk;
        }
        std::string line = ProgressLine(args.site, seed);
        if (line != last) std::cout << line << "\n" << std::flush;
        last = line;
      }
    }
    if (args.timeout_s > 0 &&
        std::chrono::steady_clock::now() - started > std::chrono::seconds(args.timeout_s)) {
      std::cerr << fmt::format("geosyncctl: seed of {} not done after {} s\n", args.site,
                               args.timeout_s);
      return kExitPeer;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(args.interval_s));
  }
}

int RunSeed(const SeedArgs& args) {
  auto url = AdminUrlOf(args);
  if (!url.ok()) return Fail(url.status());
  auto token = Token(args);
  if (!token.ok()) return Fail(token.status());
  admin::HttpCall call;
  call.method = "POST";
  call.base_url = *url;
  call.target = "/admin/seed";
  call.bearer = *token;
  call.timeout = std::chrono::milliseconds(10000);
  auto answer = admin::Http(call);
  if (!answer.ok()) return Fail(answer.status());
  std::string body = answer->body;
  while (!body.empty() && body.back() == '\n') body.pop_back();
  if (answer->status != 200 && answer->status != 202) {
    std::cerr << fmt::format("geosyncctl: POST {}/admin/seed answered HTTP {}: {}\n", *url,
                             answer->status, body);
    return answer->status == 401 || answer->status == 403 || answer->status == 409 ? kExitRefused
                                                                                   : kExitPeer;
  }
  std::cout << body << "\n" << std::flush;
  if (args.no_wait) return kExitOk;
  return Follow(args, *url);
}

}  // namespace

void RegisterSeedCommands(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<SeedArgs>();
  auto* cmd = app.add_subcommand(
      "seed", "copy the primary to a replica site from a consistent snapshot, then follow it");
  cmd->add_option("--site", args->site, "the site to seed, by its name in the topology")
      ->required();
  cmd->add_option("--topology", args->topology, "topology file with every site's admin URL")
      ->required();
  cmd->add_option("--token-file", args->token_file,
                  "file holding the admin bearer token (default: $GEOSYNC_ADMIN_TOKEN)");
  cmd->add_flag("--no-wait", args->no_wait, "start the seed and return");
  cmd->add_option("--interval", args->interval_s, "seconds between progress lines (default 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--timeout-s", args->timeout_s, "give up waiting after this many seconds")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([args, exit_code] { *exit_code = RunSeed(*args); });
}

}  // namespace geosync::ctl
