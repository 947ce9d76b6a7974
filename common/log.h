// Logging to stderr through spdlog, as text or as one JSON object per line.
// Never log a password: pass conninfo strings through RedactConninfo first.
#pragma once

#include <string>

#include "common/status.h"

namespace geosync {

struct LogOptions {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  bool json = false;
};

// Installs the default logger. Returns Config error for an unknown level.
Status InitLogging(const LogOptions& options);

}  // namespace geosync
