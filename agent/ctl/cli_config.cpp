// geosyncctl check-config: validates a site config and checks that its
// PostgreSQL is reachable and configured for logical replication.
#include <fmt/format.h>

#include <iostream>

#include "agent/ctl/commands.h"
#include "agent/daemon.h"
#include "agent/exit_codes.h"
#include "common/config.h"

namespace geosync::ctl {

void RegisterConfigCommands(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("check-config", "validate a site config and its PostgreSQL");
  auto path = std::make_shared<std::string>();
  cmd->add_option("-c,--config", *path, "site config file")->required();
  cmd->callback([path, exit_code] {
    auto config = LoadConfig(*path);
    if (!config.ok()) {
      *exit_code = Fail(config.status());
      return;
    }
    Status st = CheckPostgres(*config);
    if (!st.ok()) {
      *exit_code = Fail(st);
      return;
    }
    std::cout << fmt::format("{}: config valid; site {} ({}) reaches PostgreSQL\n", *path,
                             config->site,
                             config->role == Role::kSource ? "source" : "replica");
    *exit_code = kExitOk;
  });
}

}  // namespace geosync::ctl
