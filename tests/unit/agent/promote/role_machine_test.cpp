#include "agent/promote/role_machine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

namespace geosync {
namespace {

TEST(RoleMachine, RoleOfStateJson) {
  SiteState s;
  s.role = Role::kReplica;
  EXPECT_EQ(RoleOf(s), SiteRole::kReplica);
  s.role = Role::kSource;
  EXPECT_EQ(RoleOf(s), SiteRole::kSource);
  s.fenced = true;  // fenced wins whatever the role
  EXPECT_EQ(RoleOf(s), SiteRole::kFenced);
  s.role = Role::kReplica;
  EXPECT_EQ(RoleOf(s), SiteRole::kFenced);
}

TEST(RoleMachine, EachRequestedChangeHasItsStep) {
  const RoleTransition* promote = FindTransition(SiteRole::kReplica, NextRole::kPromote);
  ASSERT_NE(promote, nullptr);
  EXPECT_EQ(promote->to, SiteRole::kSource);
  EXPECT_EQ(promote->step, "Promote");
  EXPECT_NE(promote->run, nullptr);

  const RoleTransition* fence = FindTransition(SiteRole::kSource, NextRole::kFence);
  ASSERT_NE(fence, nullptr);
  EXPECT_EQ(fence->to, SiteRole::kFenced);
  EXPECT_EQ(fence->step, "FenceStale");

  const RoleTransition* rejoin = FindTransition(SiteRole::kFenced, NextRole::kDemote);
  ASSERT_NE(rejoin, nullptr);
  EXPECT_EQ(rejoin->to, SiteRole::kReplica);
  EXPECT_EQ(rejoin->step, "Demote");

  const RoleTransition* follow = FindTransition(SiteRole::kReplica, NextRole::kRerun);
  ASSERT_NE(follow, nullptr);
  EXPECT_EQ(follow->to, SiteRole::kReplica);
  EXPECT_EQ(follow->run, nullptr);
}

TEST(RoleMachine, ChangesThatMakeNoSenseAreNotInTheTable) {
  // A replica is never fenced or unfenced, a fenced site never promoted
  // (rejoin first), a source never promoted again.
  EXPECT_EQ(FindTransition(SiteRole::kReplica, NextRole::kFence), nullptr);
  EXPECT_EQ(FindTransition(SiteRole::kReplica, NextRole::kUnfence), nullptr);
  EXPECT_EQ(FindTransition(SiteRole::kReplica, NextRole::kDemote), nullptr);
  EXPECT_EQ(FindTransition(SiteRole::kFenced, NextRole::kPromote), nullptr);
  EXPECT_EQ(FindTransition(SiteRole::kFenced, NextRole::kUnfence), nullptr);
  EXPECT_EQ(FindTransition(SiteRole::kSource, NextRole::kPromote), nullptr);
  // Nothing asks a source to run again: a role change of its own is a fence,
  // a demote or an unfence.
  EXPECT_EQ(FindTransition(SiteRole::kSource, NextRole::kRerun), nullptr);
  for (SiteRole r : {SiteRole::kSource, SiteRole::kReplica, SiteRole::kFenced}) {
    EXPECT_EQ(FindTransition(r, NextRole::kExit), nullptr) << RoleName(r);
  }
}

TEST(RoleMachine, OneTransitionPerRoleAndEvent) {
  std::set<std::pair<SiteRole, NextRole::Kind>> seen;
  for (const RoleTransition& t : RoleTransitions()) {
    EXPECT_TRUE(seen.insert({t.from, t.event}).second)
        << RoleName(t.from) << " on " << EventName(t.event) << " twice";
    EXPECT_EQ(t.step.empty(), t.run == nullptr) << RoleName(t.from) << " " << EventName(t.event);
    EXPECT_FALSE(t.why.empty());
  }
}

// docs/architecture.md shows the diagram drawn from the table: a change to
// the table that the docs do not follow fails here.
TEST(RoleMachine, ArchitectureDocShowsTheTable) {
  const std::filesystem::path doc =
      std::filesystem::path(GEOSYNC_SOURCE_DIR) / "docs" / "architecture.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << doc;
  std::stringstream text;
  text << in.rdbuf();
  const std::string diagram = RoleDiagram();
  EXPECT_NE(text.str().find("```mermaid\n" + diagram + "```"), std::string::npos)
      << doc << " should hold this diagram:\n```mermaid\n"
      << diagram << "```";
}

}  // namespace
}  // namespace geosync
