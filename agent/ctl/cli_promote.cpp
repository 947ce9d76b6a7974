// geosyncctl switchover / failover / rejoin: moving the source role to another site
// through every site's admin API. Each command is a small state machine
// (one table of steps below); every step is idempotent on the sites, and the
// first step works out from the sites' own state where an interrupted run
// stopped, so running the same command again finishes it.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "agent/ctl/promote_run.h"
#include "agent/promote/etcd_claim.h"
#include "agent/promote/promote_plan.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

// The promotion plan and the etcd claim are the promote layer's.
using namespace ::geosync::promote;  // NOLINT(google-build-using-namespace)
namespace {

// --- the steps ------------------------------------------------------------

StepResult Fence(Run& run) {
  run.fenced_at = Clock::now();
  if (auto e = Post(run, run.old_source, "promotion/fence",
                    fmt::format("target={}&epoch={}", run.args.to, run.new_epoch))) {
    return e;
  }
  auto e = WaitUntil(run, "the primary to fence itself", [&](const Run& r) {
    const SiteReport* s = r.Find(r.old_source);
    return s && (s->final_pos.lsn.valid() || !s->promotion_error.empty());
  });
  if (e) return e;
  const SiteReport* s = run.Find(run.old_source);
  if (!s->promotion_error.empty()) {
    return StepError{kExitFailure,
                     fmt::format("{} could not fence: {}", run.old_source, s->promotion_error)};
  }
  run.final_pos = s->final_pos;
  std::cout << fmt::format("    {} is read-only; its final position is {}\n", run.old_source,
                           run.final_pos.ToString());
  return std::nullopt;
}

StepResult CatchUp(Run& run) {
  auto e =
      WaitUntil(run, fmt::format("{} to apply up to {}", run.args.to, run.final_pos.ToString()),
                [&](const Run& r) {
                  const SiteReport* t = r.Find(r.args.to);
                  return t && t->applied >= r.final_pos;
                });
  if (!e) return std::nullopt;
  // Roll back: the primary takes writes again, nothing else changed.
  std::cout << fmt::format("    {} did not catch up; lifting the fence on {}\n", run.args.to,
                           run.old_source);
  if (auto u = Post(run, run.old_source, "promotion/unfence", "")) {
    e->message += "; lifting the fence failed too: " + u->message;
  } else {
    e->message += "; the switchover was rolled back and " + run.old_source + " takes writes again";
  }
  return e;
}

StepResult PromoteTarget(Run& run) {
  std::string peers;
  for (const auto& s : run.topology.sites) {
    if (s.name == run.args.to) continue;
    peers += (peers.empty() ? "" : ",") + s.name;
  }
  int64_t gap = run.args.sequence_gap >= 0 ? run.args.sequence_gap : (run.failover ? 1000 : 0);
  if (auto e = Post(run, run.args.to, "promotion/promote",
                    fmt::format("epoch={}&peers={}&sequence_gap={}&reason={}", run.new_epoch, peers,
                                gap, run.failover ? "failover" : "switchover"))) {
    return e;
  }
  auto e =
      WaitUntil(run, fmt::format("{} to become the source at epoch {}", run.args.to, run.new_epoch),
                [&](const Run& r) {
                  const SiteReport* t = r.Find(r.args.to);
                  if (t && t->role == "replica" && !t->promotion_error.empty()) return true;
                  return t && t->role == "source" && t->epoch == r.new_epoch;
                });
  if (e) return e;
  const SiteReport* t = run.Find(run.args.to);
  if (t->role != "source") {
    return StepError{kExitFailure,
                     fmt::format("{} refused the promotion: {}", run.args.to, t->promotion_error)};
  }
  if (run.fenced_at != Clock::time_point{}) {
    run.unavailable_s = std::chrono::duration<double>(Clock::now() - run.fenced_at).count();
  }
  return std::nullopt;
}

// Other replicas follow the new source; they catch up from its spool.
StepResult Repoint(Run& run) {
  StepResult error;
  std::string query = StreamQuery(run, run.args.to, &error);
  if (error) return error;
  for (const SiteReport& s : run.sites) {
    if (s.name == run.args.to || s.name == run.old_source || !s.reachable) continue;
    if (s.role != "replica") continue;
    if (auto e = Post(run, s.name, "promotion/follow", query)) return e;
  }
  return std::nullopt;
}

StepResult DemoteOld(Run& run) {
  StepResult error;
  std::string query = StreamQuery(run, run.args.to, &error);
  if (error) return error;
  const SiteReport* old = run.Find(run.old_source);
  if (old && old->role == "replica") return std::nullopt;  // done by an earlier run
  return Post(run, run.old_source, "promotion/demote", query);
}

// Every reachable site other than the new source streams from it.
StepResult Settle(Run& run) {
  return WaitUntil(run, "every reachable site to stream from " + run.args.to, [&](const Run& r) {
    for (const SiteReport& s : r.sites) {
      if (s.name == r.args.to) {
        if (s.role != "source") return false;
        continue;
      }
      if (std::find(r.absent.begin(), r.absent.end(), s.name) != r.absent.end()) {
        continue;  // lost before the run: it fences itself on return
      }
      if (!s.reachable) return false;  // restarting in its new role
      if (s.role == "fenced") continue;
      if (s.role != "replica" || !s.connected || s.source_site != r.args.to) {
        return false;
      }
    }
    return true;
  });
}

struct Step {
  const char* name;
  StepResult (*run)(Run&);
};

// The two state machines: steps in order; a run starts at the step that
// FirstStep() finds and logs each transition.
constexpr Step kSwitchover[] = {
    {"fence the primary and take its final position", Fence},
    {"wait until the target has applied the final position", CatchUp},
    {"promote the target at the new epoch", PromoteTarget},
    {"re-point the other replicas to the new source", Repoint},
    {"make the old primary a replica of the new source", DemoteOld},
    {"wait until every site streams from the new source", Settle},
};
constexpr Step kFailover[] = {
    {"promote the target at the new epoch", PromoteTarget},
    {"re-point the other replicas to the new source", Repoint},
    {"wait until every reachable site streams from the new source", Settle},
};

// With an etcd cluster in the topology: claims (new epoch, target) there by
// compare-and-swap before anything changes. -1 when claimed or no etcd.
int ClaimPromotion(const Run& run, const char* kind) {
  if (run.topology.etcd.empty()) return -1;
  EtcdClaim claim;
  claim.epoch = run.new_epoch;
  claim.primary = run.args.to;
  claim.kind = kind;
  Status st = ClaimEtcd(run.topology.etcd, run.topology.cluster_id, claim);
  if (!st.ok()) {
    std::cerr << "geosyncctl: " << kind << " refused: " << st.message() << "\n";
    return st.code() == Code::kFenced ? kExitRefused : ExitCodeFor(st);
  }
  std::cout << fmt::format("claimed epoch {} for {} in etcd\n", run.new_epoch, run.args.to);
  return -1;
}

int Execute(Run& run, std::span<const Step> steps, size_t first) {
  for (size_t i = first; i < steps.size(); ++i) {
    std::cout << fmt::format("[{}/{}] {}\n", i + 1, steps.size(), steps[i].name);
    const auto t0 = Clock::now();
    if (StepResult e = steps[i].run(run)) {
      std::cerr << fmt::format("geosyncctl: step {} ({}) failed: {}\n", i + 1, steps[i].name,
                               e->message);
      return e->code;
    }
    std::cout << fmt::format("      done in {:.2f} s\n",
                             std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return kExitOk;
}

// After the plan: --dry-run, confirmation, the etcd claim, then the steps.
// -1 when every step succeeded, else the exit code.
int Proceed(Run& run, const char* kind, std::span<const Step> steps, size_t first) {
  if (run.args.dry_run) {
    std::cout << "dry run: nothing changed\n";
    return kExitOk;
  }
  if (!Confirm(run.args, "proceed?")) {
    std::cout << "nothing changed\n";
    return kExitRefused;
  }
  if (int rc = ClaimPromotion(run, kind); rc >= 0) return rc;
  int rc = Execute(run, steps, first);
  return rc == kExitOk ? -1 : rc;
}

int RunSwitchover(const PromoteArgs& args, SwitchoverOutcome* outcome = nullptr) {
  Run run{args};
  if (int rc = Prepare(run, args); rc >= 0) return rc;
  std::cout << FormatSurvey(run.sites);
  Plan plan = PlanSwitchover(run.sites, args.to);
  if (!plan.refusal.empty()) {
    std::cerr << "geosyncctl: switchover refused: " << plan.refusal << "\n";
    return kExitRefused;
  }
  run.old_source = plan.old_source;
  run.epoch = plan.epoch;
  run.new_epoch = plan.new_epoch;
  run.final_pos = plan.final_pos;
  if (args.abort) {
    if (plan.first_step >= 2) {
      std::cerr << "geosyncctl: too late to abort: " << args.to << " is already promoted\n";
      return kExitRefused;
    }
    if (auto e = Post(run, run.old_source, "promotion/unfence", "")) {
      std::cerr << "geosyncctl: " << e->message << "\n";
      return e->code;
    }
    std::cout << "switchover called off; " << run.old_source << " stays the source\n";
    return kExitOk;
  }
  std::cout << fmt::format(
      "\nplan: switchover from {} to {} at epoch {} -> {}{}\n", run.old_source, args.to, run.epoch,
      run.new_epoch,
      plan.first_step > 0 ? fmt::format(" (resuming at step {})", plan.first_step + 1) : "");
  for (size_t i = plan.first_step; i < std::size(kSwitchover); ++i) {
    std::cout << fmt::format("  {}. {}\n", i + 1, kSwitchover[i].name);
  }
  std::cout << fmt::format("  writes on {} are refused from step 1 until step 3 ends\n",
                           run.old_source);
  if (int rc = Proceed(run, "switchover", kSwitchover, plan.first_step); rc >= 0) return rc;
  if (outcome) {
    outcome->unavailable_s = run.unavailable_s;
    outcome->epoch = run.new_epoch;
  }
  std::cout << "\n" << FormatSurvey(run.sites);
  std::cout << fmt::format(
      "switchover complete: {} is the source at epoch {}; writes were unavailable for {:.2f} s\n",
      args.to, run.new_epoch, run.unavailable_s);
  return kExitOk;
}

int RunFailover(const PromoteArgs& args) {
  Run run{args};
  run.failover = true;
  if (int rc = Prepare(run, args); rc >= 0) return rc;
  std::cout << FormatSurvey(run.sites);
  FailoverChecks checks;
  checks.force = args.force;
  checks.allow_behind = args.allow_behind;
  checks.max_lag_s = args.max_lag_s;
  checks.accept_loss = args.accept_loss;
  Plan plan = PlanFailover(run.sites, args.to, checks);
  std::cout << plan.loss_report;
  if (!plan.refusal.empty()) {
    std::cerr << "geosyncctl: failover refused: " << plan.refusal << "\n";
    return kExitRefused;
  }
  run.old_source = plan.old_source;
  run.epoch = plan.epoch;
  run.new_epoch = plan.new_epoch;
  std::cout << fmt::format("\nplan: failover from {} to {} at epoch {} -> {}\n",
                           run.old_source.empty() ? "(unknown)" : run.old_source, args.to,
                           run.epoch, run.new_epoch);
  for (size_t i = plan.first_step; i < std::size(kFailover); ++i) {
    std::cout << fmt::format("  {}. {}\n", i + 1, kFailover[i].name);
  }
  if (int rc = Proceed(run, "failover", kFailover, plan.first_step); rc >= 0) return rc;
  std::cout << "\n" << FormatSurvey(run.sites);
  std::cout << fmt::format(
      "failover complete: {} is the source at epoch {}. When {} returns it fences itself; "
      "`geosyncctl rejoin --site {}` then exports what it committed that {} never received.\n",
      args.to, run.new_epoch, run.old_source.empty() ? "the old primary" : run.old_source,
      run.old_source.empty() ? "OLD" : run.old_source, args.to);
  return kExitOk;
}

// geosyncctl rejoin: a returning old primary (fenced) becomes a replica of
// the new source, after its divergent transactions are exported.
void AddCommon(CLI::App* cmd, PromoteArgs& a) {
  cmd->add_option("--topology", a.topology, "topology file (schemas/topology.schema.json)")
      ->required();
  cmd->add_option("--token-file", a.token_file, "file holding the sites' admin bearer token")
      ->required();
  cmd->add_flag("--yes,-y", a.yes, "do not ask for confirmation");
  cmd->add_flag("--dry-run", a.dry_run, "show the plan and change nothing");
  cmd->add_option("--timeout", a.timeout_s, "seconds each step may wait (default 120)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--sequence-gap", a.sequence_gap,
                  "increments each sequence is raised beyond the highest value seen "
                  "(default 0 for switchover, 1000 for failover)")
      ->check(CLI::NonNegativeNumber);
}

}  // namespace

SwitchoverOutcome SwitchoverForDrill(const std::string& topology, const std::string& token_file,
                                     const std::string& to, int timeout_s) {
  PromoteArgs args;
  args.topology = topology;
  args.token_file = token_file;
  args.to = to;
  args.yes = true;
  args.timeout_s = timeout_s;
  SwitchoverOutcome outcome;
  outcome.exit_code = RunSwitchover(args, &outcome);
  return outcome;
}

void RegisterPromoteCommands(CLI::App& app, int* exit_code) {
  auto sw = std::make_shared<PromoteArgs>();
  auto* s = app.add_subcommand("switchover", "planned move of the source role, no data lost");
  s->add_option("--to", sw->to, "the site to promote")->required();
  AddCommon(s, *sw);
  s->add_flag("--abort", sw->abort,
              "call off an interrupted switchover before the target was promoted");
  s->callback([sw, exit_code] { *exit_code = RunSwitchover(*sw); });

  auto fo = std::make_shared<PromoteArgs>();
  auto* f = app.add_subcommand("failover", "promote a site because the primary is lost");
  f->add_option("--to", fo->to, "the site to promote")->required();
  AddCommon(f, *fo);
  f->add_flag("--force", fo->force, "fail over even though the primary still answers");
  f->add_flag("--allow-behind", fo->allow_behind,
              "promote the target even though another reachable site holds more");
  f->add_option("--max-lag", fo->max_lag_s,
                "refuse when the potential loss exceeds this many seconds");
  f->add_flag("--accept-data-loss", fo->accept_loss, "fail over even above --max-lag");
  f->callback([fo, exit_code] { *exit_code = RunFailover(*fo); });

  auto rj = std::make_shared<PromoteArgs>();
  auto* r = app.add_subcommand(
      "rejoin",
      "make a returning old primary a replica of the new source, after exporting "
      "what it committed that the new source never received");
  r->add_option("--site", rj->to, "the returning old primary")->required();
  r->add_flag("--reseed", rj->reseed,
              "when it diverged (exit 8 without this), export its divergent transactions, then "
              "empty its tables and seed them again from the new source");
  AddCommon(r, *rj);
  r->callback([rj, exit_code] { *exit_code = RunRejoin(*rj); });
}

}  // namespace geosync::ctl
