// Lsn and Position: parsing, formatting, arithmetic and ordering.
#include "common/lsn.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

TEST(LsnTest, ParsesAndFormatsPostgresNotation) {
  auto lsn = Lsn::Parse("16/B374D848");
  ASSERT_TRUE(lsn.ok()) << lsn.status().ToString();
  EXPECT_EQ(lsn->value(), 0x16B374D848ull);
  EXPECT_EQ(lsn->ToString(), "16/B374D848");
  EXPECT_EQ(Lsn(0).ToString(), "0/0");
  EXPECT_EQ(Lsn(0xFFFFFFFFFFFFFFFFull).ToString(), "FFFFFFFF/FFFFFFFF");
}

TEST(LsnTest, ParsesLowercaseAndShortForms) {
  EXPECT_EQ(Lsn::Parse("0/1")->value(), 1u);
  EXPECT_EQ(Lsn::Parse("a/bc")->value(), 0xA000000BCull);
}

TEST(LsnTest, RejectsMalformedText) {
  for (const char* bad : {"", "/", "16", "16/", "/B3", "16/B374D848X", "G/1", "123456789/0", "1/-1",
                          " 1/1", "1/1 ", "1//1"}) {
    auto r = Lsn::Parse(bad);
    EXPECT_FALSE(r.ok()) << "accepted \"" << bad << "\"";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
      EXPECT_NE(r.status().message().find(bad), std::string::npos)
          << "message names the bad input: " << r.status().message();
    }
  }
}

TEST(LsnTest, OrdersAndMeasuresDistance) {
  Lsn a(100), b(250);
  EXPECT_LT(a, b);
  EXPECT_EQ(a + 150, b);
  EXPECT_EQ(b.BytesAfter(a), 150u);
  EXPECT_EQ(a.BytesAfter(b), 0u) << "lag never goes negative";
  EXPECT_FALSE(Lsn::Invalid().valid());
  EXPECT_TRUE(a.valid());
}

TEST(PositionTest, EpochOrdersBeforeLsn) {
  Position old_primary{1, Lsn(0xFFFFFF)};
  Position new_primary{2, Lsn(0x10)};
  EXPECT_LT(old_primary, new_primary) << "a later epoch is ahead whatever its LSN";
  EXPECT_LT((Position{2, Lsn(1)}), (Position{2, Lsn(2)}));
}

TEST(PositionTest, RoundTripsText) {
  Position p{7, Lsn(0x16B374D848ull)};
  EXPECT_EQ(p.ToString(), "7@16/B374D848");
  auto back = Position::Parse(p.ToString());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, p);
  EXPECT_FALSE(Position::Parse("16/B374D848").ok());
  EXPECT_FALSE(Position::Parse("x@1/1").ok());
  EXPECT_FALSE(Position::Parse("1@zz").ok());
}

}  // namespace
}  // namespace geosync
