// Paths the tests need: the source tree and the build tree's binaries.
#pragma once

#include <string>

namespace geosync::testing {

std::string SourceDir();
std::string BinaryDir();
// Path of a built program, e.g. BinaryPath("geosyncd").
std::string BinaryPath(const std::string& name);

}  // namespace geosync::testing
