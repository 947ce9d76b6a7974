// geosyncctl: the DBA's tool. Results go to stdout, logs to stderr. Each
// command family lives in agent/ctl/ and registers itself here.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "agent/ctl/commands.h"
#include "cli_main.h"
#include "common/exit_codes.h"
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
  // https:// admin URLs: the CA that signed the sites' certificates, and a
  // client certificate for sites with admin.tls.require_client_cert. Set as
  // the environment so that every command's calls (admin_client.h) use them;
  // they may come before or after the command name.
  auto env_option = [&](const char* name, const char* env, const char* help) {
    app.add_option_function<std::string>(
           name, [env](const std::string& v) { ::setenv(env, v.c_str(), 1); }, help)
        ->trigger_on_parse();
  };
  env_option("--ca-file", "GEOSYNC_CA_FILE",
             "CA certificate that https:// admin APIs must chain to (default: "
             "$GEOSYNC_CA_FILE, else the system's CAs)");
  env_option("--cert", "GEOSYNC_CERT_FILE",
             "client certificate for https:// admin APIs (default: $GEOSYNC_CERT_FILE)");
  env_option("--key", "GEOSYNC_KEY_FILE", "private key of --cert (default: $GEOSYNC_KEY_FILE)");
  app.fallthrough();
  int exit_code = kExitOk;
  ctl::RegisterAll(app, &exit_code);
  if (auto done = ParseCommandLine(app, argc, argv)) return *done;
  return exit_code;
}
