// geosyncd: the per-site daemon. On the primary's site it is the source
// (captures the WAL, spools it, serves replica sites); elsewhere a replica
// (receives, spools, applies). Exit codes: docs/exit-codes.md.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "agent/daemon/daemon.h"
#include "cli_main.h"
#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace geosync;
  CLI::App app{"geosyncd: keeps PostgreSQL databases in remote sites current with a primary",
               "geosyncd"};
  std::string config_path;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "site config file (JSON, see docs/configuration.md)")
      ->required();
  app.add_flag("--check", check_only,
               "load and validate the config, connect to PostgreSQL, then exit");
  app.set_version_flag("-V,--version", std::string("geosyncd ") + GEOSYNC_VERSION);
  if (auto done = ParseCommandLine(app, argc, argv)) return *done;

  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    std::cerr << "geosyncd: " << config.status().message() << "\n";
    return kExitConfig;
  }
  Status st = InitLogging(config->log);
  if (!st.ok()) {
    std::cerr << "geosyncd: " << st.message() << "\n";
    return kExitConfig;
  }
  // A token file others can read, a short token or an unloadable admin
  // certificate stop the daemon before it touches PostgreSQL.
  st = CheckAdminSetup(*config);
  if (!st.ok()) {
    spdlog::error("{}", st.ToString());
    return ExitCodeFor(st);
  }
  st = CheckPostgres(*config);
  if (!st.ok()) {
    spdlog::error("{}", st.ToString());
    return ExitCodeFor(st);
  }
  if (check_only) {
    spdlog::info("config {} is valid and PostgreSQL is reachable", config_path);
    return kExitOk;
  }
  st = RunDaemon(*config);
  if (!st.ok()) {
    spdlog::error("geosyncd stopped: {}", st.ToString());
    return ExitCodeFor(st);
  }
  return kExitOk;
}
