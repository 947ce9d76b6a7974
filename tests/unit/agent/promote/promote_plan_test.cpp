// The planning rules of switchover and failover, from site reports alone.
#include "agent/promote/promote_plan.h"

#include <gtest/gtest.h>

namespace geosync::promote {
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
  sites[1].loss_seconds = 2.5;
  sites[1].heartbeat_age_s = 4.0;
  sites[1].txns_per_mb = 1000;  // one transaction per 1000 bytes of WAL
  FailoverChecks checks;
  checks.max_lag_s = 2;
  Plan p = PlanFailover(sites, "dublin", checks);
  EXPECT_NE(p.loss_report.find("2048 bytes"), std::string::npos) << p.loss_report;
  EXPECT_NE(p.loss_report.find("about 2 "), std::string::npos) << p.loss_report;
  EXPECT_NE(p.loss_report.find("seconds            2.5"), std::string::npos) << p.loss_report;
  EXPECT_NE(p.loss_report.find("4.0 s ago"), std::string::npos) << p.loss_report;
  EXPECT_NE(p.refusal.find("2.5 s) exceeds --max-lag"), std::string::npos) << p.refusal;
  checks.accept_loss = true;
  EXPECT_EQ(PlanFailover(sites, "dublin", checks).refusal, "");
}

// Issue #25: the seconds were the durable lag plus the heartbeat age, two
// ages of the same silence, so they grew twice as fast as real time and
// --max-lag refused only because time passed.
TEST(PlanFailover, SecondsDoNotGrowWithTheTimeSinceTheLastHeartbeat) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1].primary_wal_lsn = Lsn(0x3100);
  sites[1].loss_seconds = 0.4;
  sites[1].durable_lag_s = 12.0;  // the old, growing figure: not used
  FailoverChecks checks;
  checks.max_lag_s = 5;
  for (double age : {1.0, 12.0, 600.0}) {
    sites[1].heartbeat_age_s = age;
    Plan p = PlanFailover(sites, "dublin", checks);
    EXPECT_EQ(p.refusal, "") << "heard " << age << " s ago: " << p.loss_report;
    ASSERT_TRUE(p.loss.seconds.has_value());
    EXPECT_DOUBLE_EQ(*p.loss.seconds, 0.4);
    EXPECT_DOUBLE_EQ(*p.loss.heard_s_ago, age);
  }
}

// Issue #25: "primary WAL ahead 0 B" with 966 transactions lost. The
// target's own heartbeat was older than what it had received since (its
// durable position passed the primary position it had heard of); another
// site heard a later one.
TEST(EstimateLoss, CountsAgainstTheHighestPositionAnyReachableSiteHeardOf) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1].durable = Position{1, Lsn(0x10000)};
  sites[1].primary_wal_lsn = Lsn(0xF000);  // stale: behind what dublin holds
  sites[1].heartbeat_age_s = 0.5;
  sites[1].loss_seconds = 0.3;
  sites[1].txns_per_mb = 2000;
  sites[2].durable = Position{1, Lsn(0xF800)};
  sites[2].primary_wal_lsn = Lsn(0x10000 + 500'000);
  LossEstimate loss = EstimateLoss(sites, sites[1]);
  EXPECT_EQ(loss.last_known, (Position{1, Lsn(0x10000 + 500'000)}));
  EXPECT_EQ(loss.last_known_from, "virginia");
  ASSERT_TRUE(loss.bytes.has_value());
  EXPECT_EQ(*loss.bytes, 500'000u);
  ASSERT_TRUE(loss.transactions.has_value());
  EXPECT_EQ(*loss.transactions, 1000u) << "500 kB at 2000 transactions per MB";
  // Alone, dublin counts against what it holds: nothing ahead, not negative.
  LossEstimate alone = EstimateLoss({sites[0], sites[1]}, sites[1]);
  EXPECT_EQ(*alone.bytes, 0u);
  EXPECT_EQ(*alone.transactions, 0u);
}

TEST(EstimateLoss, NothingHeardSinceTheStartIsUnknownNotZero) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1].txns_per_mb = 2000;
  LossEstimate loss = EstimateLoss(sites, sites[1]);
  EXPECT_FALSE(loss.bytes.has_value());
  EXPECT_FALSE(loss.transactions.has_value());
  EXPECT_FALSE(loss.seconds.has_value());
  std::string text = FormatLoss(loss, "dublin", "frankfurt");
  EXPECT_NE(text.find("UNKNOWN"), std::string::npos) << text;
  EXPECT_NE(text.find("geosyncctl rejoin --site frankfurt"), std::string::npos) << text;
}

TEST(EstimateLoss, DensityComesFromAnotherSiteWhenTheTargetHasNone) {
  auto sites = Healthy();
  sites[0] = Unreachable("frankfurt");
  sites[1].primary_wal_lsn = Lsn(0x3000 + 10'000);
  sites[1].heartbeat_age_s = 1;
  sites[2].txns_per_mb = 500;
  LossEstimate loss = EstimateLoss(sites, sites[1]);
  ASSERT_TRUE(loss.transactions.has_value());
  EXPECT_EQ(*loss.transactions, 5u);
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
}  // namespace geosync::promote
