// The planning rules of switchover and failover, from site reports alone.
#include "agent/ctl/promote_plan.h"

#include <gtest/gtest.h>

namespace geosync::ctl {
namespace {

SiteReport Source(const std::string& name, uint64_t epoch, Lsn durable) {
  SiteReport r;
  r.name = name;
  r.reachable = true;
  r.role = "source";
  r.state = "streaming";
  r.epoch = epoch;
  r.durable = Position{epoch, durable};
  return r;
}

SiteReport Replica(const std::string& name, uint64_t epoch, const std::string& follows,
                   Lsn durable) {
  SiteReport r;
  r.name = name;
  r.reachable = true;
  r.role = "replica";
  r.state = "streaming";
  r.epoch = epoch;
  r.connected = true;
  r.source_site = follows;
  r.durable = r.applied = Position{epoch, durable};
  return r;
}

SiteReport Unreachable(const std::string& name) {
  SiteReport r;
  r.name = name;
  r.error = "connect: Connection refused";
  return r;
}

std::vector<SiteReport> Healthy() {
  return {Source("frankfurt", 1, Lsn(0x3000)), Replica("dublin", 1, "frankfurt", Lsn(0x3000)),
          Replica("virginia", 1, "frankfurt", Lsn(0x2000))};
}

TEST(PlanSwitchover, FencesTheCurrentSourceAndTakesTheNextEpoch) {
  Plan p = PlanSwitchover(Healthy(), "dublin");
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.old_source, "frankfurt");
  EXPECT_EQ(p.new_epoch, 2u);
  EXPECT_EQ(p.first_step, 0u);
}

TEST(PlanSwitchover, ResumesAfterTheFenceWhenTheSourceIsFencedForThisTarget) {
  auto sites = Healthy();
  sites[0].promotion_target = "dublin";
  sites[0].promotion_epoch = 2;
  sites[0].final_pos = Position{1, Lsn(0x3100)};
  Plan p = PlanSwitchover(sites, "dublin");
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.first_step, 1u) << "wait for catch-up, do not fence again";
  EXPECT_EQ(p.final_pos, (Position{1, Lsn(0x3100)}));
  EXPECT_EQ(p.new_epoch, 2u);
}

TEST(PlanSwitchover, ResumesAtRepointWhenTheTargetIsAlreadyPromoted) {
  auto sites = Healthy();
  sites[1] = Source("dublin", 2, Lsn(0x100));
  sites[0].promotion_target = "dublin";
  sites[0].promotion_epoch = 2;
  Plan p = PlanSwitchover(sites, "dublin");
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.first_step, 3u);
  EXPECT_EQ(p.old_source, "frankfurt");
}

TEST(PlanSwitchover, RefusesWhileAnotherPromotionIsUnderWay) {
  auto sites = Healthy();
  sites[0].promotion_target = "virginia";
  sites[0].promotion_epoch = 2;
  Plan p = PlanSwitchover(sites, "dublin");
  EXPECT_NE(p.refusal.find("promotion of virginia"), std::string::npos) << p.refusal;
}

TEST(PlanSwitchover, RefusesATargetThatIsNotStreamingOrHasAnApplyError) {
  auto sites = Healthy();
  sites[1].connected = false;
  EXPECT_NE(PlanSwitchover(sites, "dublin").refusal.find("not streaming"), std::string::npos);
  sites = Healthy();
  sites[1].apply_error = "23505 duplicate key";
  EXPECT_NE(PlanSwitchover(sites, "dublin").refusal.find("apply error"), std::string::npos);
  sites = Healthy();
  sites[1] = Unreachable("dublin");
  EXPECT_NE(PlanSwitchover(sites, "dublin").refusal.find("does not answer"), std::string::npos);
}

TEST(PlanSwitchover, RefusesWithoutAReachableSourceAndPointsToFailover) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  EXPECT_NE(PlanSwitchover(sites, "dublin").refusal.find("failover"), std::string::npos);
}

TEST(PlanFailover, RefusesWhileThePrimaryAnswersUnlessForced) {
  Plan p = PlanFailover(Healthy(), "dublin", {});
  EXPECT_NE(p.refusal.find("still answers"), std::string::npos) << p.refusal;
  FailoverChecks force;
  force.force = true;
  p = PlanFailover(Healthy(), "dublin", force);
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.new_epoch, 2u);
}

TEST(PlanFailover, RefusesALessAdvancedTargetAndNamesTheBetterSite) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  Plan p = PlanFailover(sites, "virginia", {});
  EXPECT_NE(p.refusal.find("dublin holds more"), std::string::npos) << p.refusal;
  FailoverChecks behind;
  behind.allow_behind = true;
  EXPECT_EQ(PlanFailover(sites, "virginia", behind).refusal, "");
  p = PlanFailover(sites, "dublin", {});
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.old_source, "frankfurt") << "named by the replicas when it is gone";
}

TEST(PlanFailover, ReportsPotentialLossAndRefusesAboveMaxLag) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1].primary_wal_lsn = Lsn(0x3800);
  sites[1].durable_lag_s = 1.5;
  sites[1].heartbeat_age_s = 4.0;
  FailoverChecks checks;
  checks.max_lag_s = 2;
  Plan p = PlanFailover(sites, "dublin", checks);
  EXPECT_NE(p.loss_report.find("2048 bytes"), std::string::npos) << p.loss_report;
  EXPECT_NE(p.loss_report.find("5.5"), std::string::npos) << p.loss_report;
  EXPECT_NE(p.refusal.find("--max-lag"), std::string::npos) << p.refusal;
  checks.accept_loss = true;
  EXPECT_EQ(PlanFailover(sites, "dublin", checks).refusal, "");
}

TEST(PlanFailover, UnknownLossIsRefusedUnderMaxLag) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  FailoverChecks checks;
  checks.max_lag_s = 30;
  Plan p = PlanFailover(sites, "dublin", checks);
  EXPECT_NE(p.refusal.find("unknown"), std::string::npos) << p.refusal;
  checks.accept_loss = true;
  EXPECT_EQ(PlanFailover(sites, "dublin", checks).refusal, "");
}

TEST(PlanFailover, ResumesAtRepointWhenTheTargetIsAlreadyTheSource) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1] = Source("dublin", 2, Lsn(0x100));
  Plan p = PlanFailover(sites, "dublin", {});
  EXPECT_EQ(p.refusal, "");
  EXPECT_EQ(p.first_step, 1u);
}

TEST(ReportFromStatus, ReadsPromotionAndHistory) {
  nlohmann::json doc = {{"site", "dublin"},
                        {"role", "source"},
                        {"state", "streaming"},
                        {"epoch", 2},
                        {"spool", {{"bytes", 10}, {"durable", {{"position", "2@0/3000"}}}}},
                        {"promotion",
                         {{"in_progress", false},
                          {"target", nullptr},
                          {"epoch", nullptr},
                          {"step", nullptr},
                          {"final", nullptr},
                          {"error", nullptr},
                          {"db_fenced", false},
                          {"history", {"1@0/21B8848"}}}}};
  SiteReport r = ReportFromStatus("dublin", doc);
  ASSERT_TRUE(r.reachable) << r.error;
  EXPECT_EQ(r.durable, (Position{2, Lsn(0x3000)}));
  ASSERT_EQ(r.history.size(), 1u);
  EXPECT_EQ(r.history[0], (Position{1, Lsn(0x21B8848)}));
  SiteReport other = ReportFromStatus("virginia", doc);
  EXPECT_FALSE(other.reachable) << "a site answering under another name is not trusted";
}

}  // namespace
}  // namespace geosync::ctl
