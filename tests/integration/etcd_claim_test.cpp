// The promotion lock against a real etcd: compare-and-swap claims, a resumed
// claim, a refused lower or equal epoch, and one winner out of a race.
#include "agent/promote/etcd_claim.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/support/etcd.h"

namespace geosync::testing {
namespace {

using promote::ClaimEtcd;
using promote::EtcdClaim;
using promote::ReadEtcdClaim;

EtcdClaim Claim(uint64_t epoch, std::string primary) {
  EtcdClaim c;
  c.epoch = epoch;
  c.primary = std::move(primary);
  c.kind = "switchover";
  return c;
}

class EtcdClaimTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(etcd_.Start().ok()) << etcd_.ReadLog(); }
  std::vector<std::string> Endpoints() const { return {etcd_.url()}; }
  EtcdServer etcd_;
};

TEST_F(EtcdClaimTest, FirstClaimIsStoredAndAResumedClaimIsAccepted) {
  auto none = ReadEtcdClaim(Endpoints(), "prod");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(ClaimEtcd(Endpoints(), "prod", Claim(2, "dublin")).ok());
  auto stored = ReadEtcdClaim(Endpoints(), "prod");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->epoch, 2u);
  EXPECT_EQ((*stored)->primary, "dublin");
  EXPECT_TRUE(ClaimEtcd(Endpoints(), "prod", Claim(2, "dublin")).ok())
      << "the same claim again: a resumed switchover";
  EXPECT_TRUE(ClaimEtcd(Endpoints(), "prod", Claim(3, "frankfurt")).ok()) << "the next epoch";
}

TEST_F(EtcdClaimTest, AnEpochAlreadyClaimedForAnotherSiteIsRefused) {
  ASSERT_TRUE(ClaimEtcd(Endpoints(), "prod", Claim(2, "dublin")).ok());
  Status st = ClaimEtcd(Endpoints(), "prod", Claim(2, "virginia"));
  EXPECT_EQ(st.code(), Code::kFenced) << st.ToString();
  EXPECT_NE(st.message().find("epoch 2 was already claimed for dublin"), std::string::npos)
      << st.ToString();
  EXPECT_EQ(ClaimEtcd(Endpoints(), "prod", Claim(1, "virginia")).code(), Code::kFenced);
  EXPECT_TRUE(ClaimEtcd(Endpoints(), "other-cluster", Claim(2, "virginia")).ok())
      << "clusters have their own keys";
}

TEST_F(EtcdClaimTest, OfTwoOperatorsRacingForTheSameEpochExactlyOneWins) {
  for (uint64_t epoch = 2; epoch < 12; ++epoch) {
    std::atomic<int> wins{0}, refused{0};
    std::thread a([&] {
      Status st = ClaimEtcd(Endpoints(), "race", Claim(epoch, "dublin"));
      (st.ok() ? wins : refused)++;
    });
    std::thread b([&] {
      Status st = ClaimEtcd(Endpoints(), "race", Claim(epoch, "virginia"));
      (st.ok() ? wins : refused)++;
    });
    a.join();
    b.join();
    EXPECT_EQ(wins.load(), 1) << "epoch " << epoch;
    EXPECT_EQ(refused.load(), 1) << "epoch " << epoch;
  }
}

TEST_F(EtcdClaimTest, NoReachableEndpointIsAnError) {
  Status st = ClaimEtcd({"http://127.0.0.1:1"}, "prod", Claim(2, "dublin"));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.code(), Code::kFenced);
  EXPECT_NE(st.ToString().find("127.0.0.1:1"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace geosync::testing
