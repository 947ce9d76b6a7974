// Site config files (common/config.h) and topology files
// (agent/admin/status_model.h): JSON that an operator, or a broken editor,
// wrote. Anything that does not parse is Status::Config naming the file.
//
// Input: the file's text.
#include <string_view>

#include "common/config.h"
#include "common/topology.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ParseConfig(text, "fuzz-site.json");
  if (!config.ok()) {
    GEOSYNC_FUZZ_CHECK(config.status().message().find("fuzz-site.json") != std::string::npos);
  }
  auto topology = ParseTopology(text, "fuzz-topology.json");
  if (!topology.ok()) {
    GEOSYNC_FUZZ_CHECK(topology.status().message().find("fuzz-topology.json") != std::string::npos);
  }
  return 0;
}
