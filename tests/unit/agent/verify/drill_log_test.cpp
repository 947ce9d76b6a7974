#include "agent/verify/drill_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace geosync {
namespace {

class DrillLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-drill-log-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DrillLogTest, APassedDrillIsExportedAndSurvivesARestart) {
  auto empty = DrillLog::Read(dir_);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  DrillLog log(dir_, *empty);
  EXPECT_EQ(log.MetricsText(), "") << "nothing to export before any drill passed";
  ASSERT_TRUE(log.Record("frozen-replica", 1'800'000'000).ok());
  ASSERT_TRUE(log.Record("switchover", 1'800'000'100).ok());
  ASSERT_TRUE(log.Record("frozen-replica", 1'800'000'200).ok());
  const std::string text = log.MetricsText();
  EXPECT_NE(text.find("# TYPE geosync_drill_last_passed_timestamp_seconds gauge"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("geosync_drill_last_passed_timestamp_seconds{kind=\"frozen-replica\"} "
                      "1800000200\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("geosync_drill_last_passed_timestamp_seconds{kind=\"switchover\"} 1800000100\n"),
      std::string::npos)
      << text;
  auto reread = DrillLog::Read(dir_);
  ASSERT_TRUE(reread.ok()) << reread.status().ToString();
  EXPECT_EQ(DrillLog(dir_, *reread).MetricsText(), text);
}

TEST_F(DrillLogTest, AnUnknownKindIsRefusedAndNothingIsWritten) {
  DrillLog log(dir_);
  Status st = log.Record("failover", 1);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("unknown drill kind \"failover\""), std::string::npos)
      << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/drills.json"));
}

TEST_F(DrillLogTest, ADamagedFileIsAnErrorNamingIt) {
  std::ofstream(dir_ + "/drills.json") << "{\"switchover\": \"yesterday\"}";
  auto r = DrillLog::Read(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(dir_ + "/drills.json"), std::string::npos)
      << r.status().ToString();
  std::ofstream(dir_ + "/drills.json") << "not json";
  EXPECT_FALSE(DrillLog::Read(dir_).ok());
}

}  // namespace
}  // namespace geosync
