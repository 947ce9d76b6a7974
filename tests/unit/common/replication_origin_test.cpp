#include "common/replication_origin.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

TEST(ReplicationOrigin, NameAndEpochRoundTrip) {
  const std::string prefix = OriginPrefix("prod");
  EXPECT_EQ(prefix, "geosync_prod");
  EXPECT_EQ(OriginName(prefix, 7), "geosync_prod_e7");
  EXPECT_EQ(OriginNameStart(prefix), "geosync_prod_e");
  EXPECT_EQ(OriginEpoch(prefix, OriginName(prefix, 7)), 7u);
  EXPECT_EQ(OriginEpoch(prefix, OriginName(prefix, 18446744073709551615u)), 18446744073709551615u);
}

TEST(ReplicationOrigin, OtherNamesHaveNoEpoch) {
  const std::string prefix = OriginPrefix("prod");
  EXPECT_EQ(OriginEpoch(prefix, "geosync_prod_e"), std::nullopt);
  EXPECT_EQ(OriginEpoch(prefix, "geosync_prod_e1x"), std::nullopt);
  EXPECT_EQ(OriginEpoch(prefix, "geosync_prod_e-1"), std::nullopt);
  EXPECT_EQ(OriginEpoch(prefix, "geosync_prod_e99999999999999999999"), std::nullopt);
  // A cluster whose id extends this one's: its origins are not this one's.
  EXPECT_EQ(OriginEpoch(prefix, "geosync_prod_eu_e3"), std::nullopt);
  EXPECT_EQ(OriginEpoch(prefix, "geosync_staging_e3"), std::nullopt);
}

}  // namespace
}  // namespace geosync
