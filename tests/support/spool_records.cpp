// ReadAllRecords: a spool's durable records, oldest first.
#include "tests/support/spool_records.h"

#include <gtest/gtest.h>

namespace geosync::testing {

std::vector<SpoolRecord> ReadAllRecords(Spool& spool) {
  std::vector<SpoolRecord> out;
  auto reader = spool.ReadFrom(Position{});
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return out;
  for (;;) {
    auto rec = (*reader)->Next();
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    if (!rec.ok() || !rec->has_value()) break;
    out.push_back(std::move(**rec));
  }
  return out;
}

}  // namespace geosync::testing
