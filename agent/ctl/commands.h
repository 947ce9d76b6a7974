// geosyncctl command families. Each Register* adds its subcommands to the
// app; a command's callback stores its exit code in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

#include "common/status.h"

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

}  // namespace geosync::ctl
