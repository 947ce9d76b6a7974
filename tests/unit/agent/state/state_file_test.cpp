// The site state file: atomic replacement, version and identity checks.
#include "agent/state/state_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace geosync {
namespace {

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StateFileTest, WriteThenReadReturnsTheSameState) {
  SiteState s;
  s.cluster_id = "prod";
  s.site = "dublin";
  s.epoch = 4;
  s.role = Role::kSource;
  s.source_site = "dublin";
  s.fenced = true;
  s.fence_reason = "old primary";
  s.seed_state = SeedState::kInProgress;
  s.seed_position = "4@16/B374D848";
  s.seed_created_schema = true;
  ASSERT_TRUE(WriteSiteState(dir_, s).ok());
  auto back = ReadSiteState(dir_);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state.json.tmp")) << "temp file renamed away";
}

TEST_F(StateFileTest, PromotionFieldsRoundTrip) {
  SiteState s;
  s.cluster_id = "prod";
  s.site = "frankfurt";
  s.epoch = 3;
  s.role = Role::kReplica;
  s.source_site = "dublin";
  s.upstream = Endpoint{"10.1.2.3", 7450};
  s.peers = {"dublin", "virginia"};
  s.history = {Position{1, Lsn(0x3000060)}, Position{2, Lsn(0x5000128)}};
  s.db_fenced = true;
  s.promotion_target = "virginia";
  s.promotion_epoch = 4;
  s.promotion_final = Position{3, Lsn(0x7000010)};
  s.promotion_error = "timed out";
  ASSERT_TRUE(WriteSiteState(dir_, s).ok());
  auto back = ReadSiteState(dir_);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
  EXPECT_EQ(back->EpochEnd(2), Lsn(0x5000128));
  EXPECT_FALSE(back->EpochEnd(3).has_value()) << "epoch 3 has not ended";
}

TEST_F(StateFileTest, BadUpstreamOrHistoryIsCorruptionNamingTheFile) {
  std::ofstream(dir_ + "/state.json")
      << R"({"version":1,"cluster_id":"c","site":"s","epoch":2,"role":"replica",)"
      << R"("upstream":"no-port"})";
  auto r = ReadSiteState(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("upstream"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find(dir_ + "/state.json"), std::string::npos);
  std::ofstream(dir_ + "/state.json")
      << R"({"version":1,"cluster_id":"c","site":"s","epoch":2,"role":"replica",)"
      << R"("history":["2@nonsense"]})";
  r = ReadSiteState(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("history"), std::string::npos) << r.status().ToString();
}

TEST_F(StateFileTest, FirstStartCreatesEpochOneFromConfig) {
  Config c;
  c.cluster_id = "prod";
  c.site = "frankfurt";
  c.role = Role::kSource;
  c.state_dir = dir_ + "/nested";
  auto s = LoadOrInitSiteState(c);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->epoch, 1u);
  EXPECT_EQ(s->role, Role::kSource);
  EXPECT_TRUE(ReadSiteState(c.state_dir).ok()) << "the state was persisted";
}

TEST_F(StateFileTest, StateOfAnotherSiteIsRefused) {
  SiteState dublin;
  dublin.cluster_id = "prod";
  dublin.site = "dublin";
  ASSERT_TRUE(WriteSiteState(dir_, dublin).ok());
  Config c;
  c.cluster_id = "prod";
  c.site = "virginia";
  c.state_dir = dir_;
  c.path = "virginia.json";
  auto s = LoadOrInitSiteState(c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kConfig);
  EXPECT_NE(s.status().message().find("site dublin"), std::string::npos) << s.status().message();
}

TEST_F(StateFileTest, GarbageStateIsCorruptionNamingTheFile) {
  std::ofstream(dir_ + "/state.json") << "{\"version\": 1, \"epoch\": ";
  auto s = ReadSiteState(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kCorruption);
  EXPECT_NE(s.status().message().find(dir_ + "/state.json"), std::string::npos);
}

TEST_F(StateFileTest, FutureVersionIsRejected) {
  std::ofstream(dir_ + "/state.json")
      << R"({"version": 3, "cluster_id": "p", "site": "s", "epoch": 1, "role": "source"})";
  auto s = ReadSiteState(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("version"), std::string::npos) << s.status().message();
}

TEST_F(StateFileTest, VersionOneFileReadsWithSeedDefaults) {
  std::ofstream(dir_ + "/state.json")
      << R"({"version": 1, "cluster_id": "prod", "site": "dublin", "epoch": 2, "role": "replica"})";
  auto s = ReadSiteState(dir_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->seed_state, SeedState::kNone) << "a pre-seed state file means no seed ran";
  EXPECT_FALSE(s->seed_created_schema);
  EXPECT_EQ(s->epoch, 2u);
}

}  // namespace
}  // namespace geosync
