// What geosyncd's and geosyncctl's main() share: parsing the command line
// with CLI11 the same way. Included by the two mains beside it only.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>

#include "common/exit_codes.h"

namespace geosync {

// Parses argv into `app`. --help and --version print and exit 0 (CLI11's
// Success); a usage error prints and exits kExitUsage. Returns the exit code
// main() must return now, or nullopt to go on.
inline std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace geosync
