// Every record a spool holds, for tests that compare spools or check what
// was written.
#pragma once

#include <vector>

#include "agent/spool/spool.h"

namespace geosync::testing {

// Every durable record of `spool`, oldest first. A reader error is a gtest
// failure at the call, and what was read before it is returned.
std::vector<SpoolRecord> ReadAllRecords(Spool& spool);

}  // namespace geosync::testing
