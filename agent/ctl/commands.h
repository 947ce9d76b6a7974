// geosyncctl command families. Each Register* adds its subcommands to the
// app; a command's callback stores its exit code in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

#include "common/status.h"
#include "common/topology.h"

namespace geosync::ctl {

void RegisterAll(CLI::App& app, int* exit_code);

void RegisterConfigCommands(CLI::App& app, int* exit_code);   // check-config
void RegisterCaptureCommands(CLI::App& app, int* exit_code);  // init, tail
void RegisterStatusCommands(CLI::App& app, int* exit_code);   // status, skip, resume
void RegisterPromoteCommands(CLI::App& app, int* exit_code);  // switchover, failover, rejoin
void RegisterVerifyCommands(CLI::App& app, int* exit_code);   // verify
void RegisterDrillCommands(CLI::App& app, int* exit_code);    // drill
void RegisterSeedCommands(CLI::App& app, int* exit_code);     // seed

// Prints a failed Status on stderr as "geosyncctl: ..." and returns its exit code.
int Fail(const Status& status);

// The topology file and the sites' admin token every multi-site command
// starts with. Errors name the file (and --token-file).
struct Deployment {
  Topology topology;
  std::string token;
};
Result<Deployment> LoadDeployment(const std::string& topology_file, const std::string& token_file);

// `geosyncctl switchover --to TO --yes` as `drill --switchover` runs it,
// printing what the command prints; with what it measured.
struct SwitchoverOutcome {
  int exit_code = 0;
  double unavailable_s = 0;  // geosyncctl's own figure: old source fenced to target writable
  uint64_t epoch = 0;        // the target's new epoch
};
SwitchoverOutcome SwitchoverForDrill(const std::string& topology, const std::string& token_file,
                                     const std::string& to, int timeout_s);
// `geosyncctl verify` of every replica; its exit code (0 equal, kExitDifferent,
// kExitBehind, or another failure).
int VerifyForDrill(const std::string& topology, const std::string& token_file, int timeout_s);

}  // namespace geosync::ctl
