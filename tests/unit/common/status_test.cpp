// Status and Result: codes, the retryable/fatal split, SQLSTATEs, context.
#include "common/status.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

TEST(StatusTest, DefaultIsOkAndCostsNothing) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.ToString(), "ok");
  EXPECT_EQ(sizeof(Status), sizeof(void*) * 2) << "OK holds only an empty shared_ptr";
}

TEST(StatusTest, NetworkIoAndTimeoutsAreRetryable) {
  EXPECT_TRUE(Status::Io("connection reset").retryable());
  EXPECT_TRUE(Status::Timeout("no heartbeat for 10 s").retryable());
}

TEST(StatusTest, CorruptionConfigProtocolAndFencingAreFatal) {
  EXPECT_FALSE(Status::Corruption("crc").retryable());
  EXPECT_FALSE(Status::Config("bad key").retryable());
  EXPECT_FALSE(Status::Protocol("bad frame").retryable());
  EXPECT_FALSE(Status::Fenced("epoch 3 < 4").retryable());
  EXPECT_FALSE(Status::Cancelled("shutdown").retryable());
  EXPECT_FALSE(Status::InvalidArgument("x").retryable());
}

TEST(StatusTest, PostgresRetryableOnlyForConnectionClassSqlstates) {
  EXPECT_TRUE(Status::Postgres("server closed the connection", "08006").retryable());
  EXPECT_TRUE(Status::Postgres("terminating connection", "57P01").retryable());
  EXPECT_TRUE(Status::Postgres("too many connections", "53300").retryable());
  EXPECT_FALSE(Status::Postgres("duplicate key", "23505").retryable())
      << "a constraint violation in apply must stop, not loop";
  EXPECT_FALSE(Status::Postgres("relation does not exist", "42P01").retryable());
}

TEST(StatusTest, ToStringCarriesSqlstateAndContext) {
  Status s = Status::Postgres("duplicate key value violates unique constraint", "23505")
                 .WithContext("applying transaction 731 at 0/16B3740");
  EXPECT_EQ(s.sqlstate(), "23505");
  EXPECT_EQ(s.ToString(),
            "PostgreSQL error 23505: applying transaction 731 at 0/16B3740: duplicate key "
            "value violates unique constraint");
  EXPECT_EQ(Status::Corruption("bad crc").WithContext("segment 3").ToString(),
            "corruption: segment 3: bad crc");
}

Result<int> Half(int n) {
  if (n % 2) return Status::InvalidArgument("odd");
  return n / 2;
}

Result<int> Quarter(int n) {
  GEOSYNC_ASSIGN_OR_RETURN(int h, Half(n));
  GEOSYNC_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(ResultTest, CarriesValueOrPropagatesStatus) {
  auto r = Quarter(8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 2);
  auto bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "odd");
}

}  // namespace
}  // namespace geosync
