// The roles a site runs and the transitions between them, as one table.
// geosyncd's role loop (agent/daemon/daemon.cpp) looks every requested
// change up here, logs it from here and runs the step the table names; the
// state diagram in docs/architecture.md is drawn from the same table
// (RoleDiagram; a unit test keeps the two equal).
//
// A transition is requested with SiteControl::Request by the running role
// or an admin action (admin_actions.h), which then stops the role. Every
// step writes state.json first, so a crash at any point leaves a state from
// which the same step can run again (transitions.h).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "agent/promote/site_control.h"
#include "agent/state/state_file.h"
#include "common/status.h"

namespace geosync {

enum class SiteRole { kSource, kReplica, kFenced };

// The role state.json names: fenced first, then source or replica.
SiteRole RoleOf(const SiteState& state);
std::string_view RoleName(SiteRole role);
std::string_view EventName(NextRole::Kind event);

struct RoleTransition {
  SiteRole from;
  NextRole::Kind event;
  SiteRole to;
  std::string_view step;                         // the step of transitions.h, "" for none
  Status (*run)(SiteControl&, const NextRole&);  // nullptr for none
  std::string_view why;                          // who asks for it, and when
};

// Every transition. NextRole::kExit is not one: the daemon leaves.
std::span<const RoleTransition> RoleTransitions();

// The transition for `event` from `from`; nullptr when there is none (the
// site then keeps its role).
const RoleTransition* FindTransition(SiteRole from, NextRole::Kind event);

// The table as a Mermaid state diagram.
std::string RoleDiagram();

}  // namespace geosync
