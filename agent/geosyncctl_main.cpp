// geosyncctl: the DBA's tool. Results go to stdout, logs to stderr. Each
// command family lives in agent/ctl/ and registers itself here.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "agent/ctl/commands.h"
#include "agent/exit_codes.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace geosync;
  CLI::App app{"geosyncctl: status, streams, seeding and promotion for geosync deployments",
               "geosyncctl"};
  app.set_version_flag("-V,--version", std::string("geosyncctl ") + GEOSYNC_VERSION);
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  int exit_code = kExitOk;
  ctl::RegisterAll(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}
