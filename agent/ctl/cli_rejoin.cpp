// geosyncctl rejoin: a fenced old primary exports what it committed that no
// other site received, then follows the new source (docs/promotion.md).
#include <fmt/format.h>

#include <iostream>
#include <optional>

#include "agent/ctl/promote_run.h"

namespace geosync::ctl {
namespace {

struct RejoinPlan {
  const SiteReport* old = nullptr;     // the fenced old primary
  const SiteReport* source = nullptr;  // the source at the highest epoch
  Position end;                        // where the old primary's epoch ended on the source
};

// The newest reachable source, if it is above the old primary's epoch.
const SiteReport* NewestSource(const Run& run) {
  uint64_t max_epoch = 0;
  const SiteReport* source = nullptr;
  for (const SiteReport& s : run.sites) {
    if (s.reachable && s.role == "source" && s.epoch > max_epoch) {
      max_epoch = s.epoch;
      source = &s;
    }
  }
  return source;
}

// The plan, or nullopt after saying on stderr why rejoin is refused.
std::optional<RejoinPlan> PlanRejoin(const Run& run, const PromoteArgs& args) {
  RejoinPlan plan;
  plan.old = run.Find(args.to);
  if (!plan.old || !plan.old->reachable) {
    std::cerr << fmt::format("geosyncctl: rejoin refused: {} does not answer\n", args.to);
    return std::nullopt;
  }
  plan.source = NewestSource(run);
  if (!plan.source || plan.source->name == plan.old->name ||
      plan.source->epoch <= plan.old->epoch) {
    std::cerr << fmt::format(
        "geosyncctl: rejoin refused: no reachable source with an epoch above {}'s {}\n", args.to,
        plan.old->epoch);
    return std::nullopt;
  }
  if (plan.old->role != "fenced") {
    std::cerr << fmt::format(
        "geosyncctl: rejoin refused: {} is a {} at epoch {}, not fenced; a returning old "
        "primary fences itself when its config names the topology\n",
        args.to, plan.old->role, plan.old->epoch);
    return std::nullopt;
  }
  std::optional<Position> end;
  for (const Position& h : plan.source->history) {
    if (h.epoch == plan.old->epoch) end = h;
  }
  if (!end) {
    std::cerr << fmt::format(
        "geosyncctl: rejoin refused: {} has no record of where epoch {} ended; re-seed {}\n",
        plan.source->name, plan.old->epoch, args.to);
    return std::nullopt;
  }
  plan.end = *end;
  return plan;
}

int Report(const StepResult& e) {
  std::cerr << "geosyncctl: " << e->message << "\n";
  return e->code;
}

// Step 2: the old primary follows the new source from where its epoch ended.
int Follow(Run& run, const PromoteArgs& args, const RejoinPlan& plan) {
  std::cout << "[2/2] follow the new source\n";
  StepResult error;
  std::string query = StreamQuery(run, plan.source->name, &error);
  if (error) return Report(error);
  const std::string new_source = plan.source->name;
  if (auto e = Post(run, args.to, "rejoin/follow",
                    query + "&after=" + plan.end.ToString() + (args.reseed ? "&reseed=1" : ""))) {
    return Report(e);
  }
  if (auto e = WaitUntil(run, args.to + " to stream from " + new_source, [&](const Run& r) {
        const SiteReport* s = r.Find(args.to);
        return s && s->role == "replica" && s->connected && s->source_site == new_source &&
               s->state != "seeding";
      })) {
    return Report(e);
  }
  std::cout << "\n" << promote::FormatSurvey(run.sites);
  std::cout << fmt::format("rejoin complete: {} is a replica of {}\n", args.to, new_source);
  return kExitOk;
}

}  // namespace

int RunRejoin(const PromoteArgs& args) {
  Run run(args);
  if (int rc = Prepare(run, args); rc >= 0) return rc;
  std::cout << promote::FormatSurvey(run.sites);
  std::optional<RejoinPlan> plan = PlanRejoin(run, args);
  if (!plan) return kExitRefused;
  const std::string end = plan->end.ToString();
  std::cout << fmt::format(
      "\nplan: rejoin {} as a replica of {} (epoch {})\n"
      "  1. export what {} committed after {} (where epoch {} ended on {})\n"
      "  2. if nothing diverged, follow {} from there; otherwise stop, or with --reseed copy "
      "the new source's data again\n",
      args.to, plan->source->name, plan->source->epoch, args.to, end, plan->old->epoch,
      plan->source->name, plan->source->name);
  if (args.dry_run) {
    // The export only reads (the spool, and the slot by peeking): it shows
    // what diverged, and the database, the slot and the roles stay as they are.
    std::cout << fmt::format("preview: what {} committed after {} that {} never received\n",
                             args.to, end, plan->source->name);
    if (auto e = Post(run, args.to, "rejoin/export", "after=" + end)) return Report(e);
    std::cout << "dry run: nothing changed (the preview is in the files named above)\n";
    return kExitOk;
  }
  if (!Confirm(args, "proceed?")) return kExitRefused;
  std::cout << "[1/2] export divergent transactions\n";
  if (auto e = Post(run, args.to, "rejoin/export", "after=" + end)) return Report(e);
  return Follow(run, args, *plan);
}

}  // namespace geosync::ctl
