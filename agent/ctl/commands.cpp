// The command registry of geosyncctl.
#include "agent/ctl/commands.h"

#include <iostream>

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

}  // namespace geosync::ctl
