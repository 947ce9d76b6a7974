// Test paths from the build system.
#include "tests/support/test_env.h"

namespace geosync::testing {

std::string SourceDir() { return GEOSYNC_SOURCE_DIR; }
std::string BinaryDir() { return GEOSYNC_BINARY_DIR; }
std::string BinaryPath(const std::string& name) { return BinaryDir() + "/agent/" + name; }

}  // namespace geosync::testing
