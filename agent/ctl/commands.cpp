// The command registry of geosyncctl.
#include "agent/ctl/commands.h"

#include <iostream>

#include "agent/admin/admin_auth.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

void RegisterAll(CLI::App& app, int* exit_code) {
  RegisterConfigCommands(app, exit_code);
  RegisterCaptureCommands(app, exit_code);
  RegisterStatusCommands(app, exit_code);
  RegisterPromoteCommands(app, exit_code);
  RegisterVerifyCommands(app, exit_code);
  RegisterDrillCommands(app, exit_code);
  RegisterSeedCommands(app, exit_code);
}

int Fail(const Status& status) {
  std::cerr << "geosyncctl: " << status.ToString() << "\n";
  return ExitCodeFor(status);
}

Result<Deployment> LoadDeployment(const std::string& topology_file, const std::string& token_file) {
  Deployment d;
  GEOSYNC_ASSIGN_OR_RETURN(d.topology, LoadTopology(topology_file));
  GEOSYNC_ASSIGN_OR_RETURN(d.token, admin::ReadTokenFile(token_file, "--token-file"));
  return d;
}

}  // namespace geosync::ctl
