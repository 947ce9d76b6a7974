// The role table (role_machine.h).
#include "agent/promote/role_machine.h"

#include <array>

#include <fmt/format.h>

#include "agent/promote/transitions.h"

namespace geosync {
namespace {

Status RunFenceStale(SiteControl& control, const NextRole& next) {
  return FenceStale(control, next.reason);
}

Status RunUnfence(SiteControl& control, const NextRole&) { return Unfence(control); }

using R = SiteRole;
using K = NextRole;

const std::array kTransitions{
    RoleTransition{R::kReplica, K::kPromote, R::kSource, "Promote", &Promote,
                   "switchover or failover to this site, once everything received is applied"},
    RoleTransition{R::kReplica, K::kRerun, R::kReplica, "", nullptr,
                   "follow a new source, seed again, or a promotion refused"},
    RoleTransition{R::kSource, K::kDemote, R::kReplica, "Demote", &Demote,
                   "switchover: the fenced old source follows the new one"},
    RoleTransition{R::kSource, K::kUnfence, R::kSource, "Unfence", &RunUnfence,
                   "a switchover called off before the target was promoted"},
    RoleTransition{R::kSource, K::kFence, R::kFenced, "FenceStale", &RunFenceStale,
                   "another site is at a higher epoch: this old primary stops"},
    RoleTransition{R::kFenced, K::kDemote, R::kReplica, "Demote", &Demote,
                   "rejoin: the old primary follows the new source"},
};

}  // namespace

SiteRole RoleOf(const SiteState& state) {
  if (state.fenced) return SiteRole::kFenced;
  return state.role == Role::kSource ? SiteRole::kSource : SiteRole::kReplica;
}

std::string_view RoleName(SiteRole role) {
  switch (role) {
    case SiteRole::kSource:
      return "source";
    case SiteRole::kReplica:
      return "replica";
    case SiteRole::kFenced:
      return "fenced";
  }
  return "unknown";
}

std::string_view EventName(NextRole::Kind event) {
  switch (event) {
    case NextRole::kExit:
      return "exit";
    case NextRole::kRerun:
      return "rerun";
    case NextRole::kPromote:
      return "promote";
    case NextRole::kDemote:
      return "demote";
    case NextRole::kFence:
      return "fence";
    case NextRole::kUnfence:
      return "unfence";
  }
  return "unknown";
}

std::span<const RoleTransition> RoleTransitions() { return kTransitions; }

const RoleTransition* FindTransition(SiteRole from, NextRole::Kind event) {
  for (const RoleTransition& t : kTransitions) {
    if (t.from == from && t.event == event) return &t;
  }
  return nullptr;
}

std::string RoleDiagram() {
  // The first role is the config's "role".
  std::string out = "stateDiagram-v2\n    [*] --> source\n    [*] --> replica\n";
  for (const RoleTransition& t : kTransitions) {
    out += fmt::format("    {} --> {}: {}{}\n", RoleName(t.from), RoleName(t.to),
                       EventName(t.event), t.step.empty() ? "" : fmt::format(" ({})", t.step));
  }
  return out;
}

}  // namespace geosync
