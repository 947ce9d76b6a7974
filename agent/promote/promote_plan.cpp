// Survey and planning for switchover / failover; see promote_plan.h.
#include "agent/promote/promote_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "agent/admin/admin_client.h"

namespace geosync::promote {
namespace {

using json = nlohmann::json;

Position PositionOf(const json& j) {
  if (!j.is_object() || !j.contains("position")) return Position{};
  auto p = Position::Parse(j.at("position").get<std::string>());
  return p.ok() ? *p : Position{};
}

std::string TextOf(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_string()) return "";
  return j.at(key).get<std::string>();
}

std::optional<double> NumberOf(const json& j) {
  if (!j.is_number()) return std::nullopt;
  return j.get<double>();
}

const SiteReport* Find(const std::vector<SiteReport>& sites, const std::string& name) {
  for (const auto& s : sites) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

uint64_t MaxEpoch(const std::vector<SiteReport>& sites) {
  uint64_t e = 0;
  for (const auto& s : sites) {
    if (s.reachable) e = std::max(e, s.epoch);
  }
  return e;
}

// The one site that is the source at `epoch`, or a refusal.
std::string SourceAt(const std::vector<SiteReport>& sites, uint64_t epoch, std::string* refusal) {
  std::string found;
  for (const auto& s : sites) {
    if (!s.reachable || s.role != "source" || s.epoch != epoch) continue;
    if (!found.empty()) {
      *refusal =
          fmt::format("both {} and {} claim to be the source at epoch {}", found, s.name, epoch);
      return "";
    }
    found = s.name;
  }
  return found;
}

// A site (other than `except`) in the middle of a promotion to another target.
std::string OtherPromotion(const std::vector<SiteReport>& sites, const std::string& target) {
  for (const auto& s : sites) {
    if (s.reachable && !s.promotion_target.empty() && s.promotion_target != target) {
      return fmt::format(
          "site {} reports a promotion of {} to epoch {} in progress; finish it "
          "or call it off first",
          s.name, s.promotion_target, s.promotion_epoch);
    }
  }
  return "";
}

// The checks every promotion starts with: the target answers and no other
// promotion is under way. The target, or nullptr with plan->refusal set.
const SiteReport* StartPlan(const std::vector<SiteReport>& sites, const std::string& target,
                            Plan* plan) {
  const SiteReport* t = Find(sites, target);
  if (!t || !t->reachable) {
    plan->refusal = fmt::format("target {} does not answer{}", target, t ? ": " + t->error : "");
    return nullptr;
  }
  if (std::string other = OtherPromotion(sites, target); !other.empty()) {
    plan->refusal = other;
    return nullptr;
  }
  if (t->state == "seeding") {
    plan->refusal = fmt::format("target {} is half-seeded: it cannot be promoted", target);
    return nullptr;
  }
  plan->epoch = MaxEpoch(sites);
  return t;
}

}  // namespace

SiteReport ReportFromStatus(const std::string& name, const json& status) {
  SiteReport r;
  r.name = name;
  r.reachable = true;
  try {
    r.role = status.at("role").get<std::string>();
    r.state = status.at("state").get<std::string>();
    r.epoch = status.at("epoch").get<uint64_t>();
    if (status.at("site").get<std::string>() != name) {
      r.reachable = false;
      r.error = fmt::format("answers as site {}", status.at("site").get<std::string>());
      return r;
    }
    const json& spool = status.at("spool");
    if (r.role == "replica") {
      const json& rep = status.at("replica");
      r.connected = rep.at("connected").get<bool>();
      r.source_site = TextOf(rep, "source_site");
      r.durable = PositionOf(rep.at("durable"));
      r.applied = PositionOf(rep.at("applied"));
      if (auto w = TextOf(rep, "primary_wal_lsn"); !w.empty()) {
        auto l = Lsn::Parse(w);
        if (l.ok()) r.primary_wal_lsn = *l;
      }
      r.durable_lag_s = NumberOf(rep.at("lag").at("durable").at("seconds"));
      r.heartbeat_age_s = NumberOf(rep.at("heartbeat_age_seconds"));
      if (rep.contains("potential_loss")) {  // geosyncd before 0.2 lacks it
        const json& loss = rep.at("potential_loss");
        r.loss_seconds = NumberOf(loss.value("seconds", json()));
        r.txns_per_mb = NumberOf(loss.value("transactions_per_mb", json()));
      }
      r.apply_error = TextOf(rep.at("apply"), "error");
    } else {
      r.durable = PositionOf(spool.value("durable", json()));
    }
    if (status.contains("promotion")) {
      const json& p = status.at("promotion");
      r.promotion_target = TextOf(p, "target");
      if (p.at("epoch").is_number()) r.promotion_epoch = p.at("epoch").get<uint64_t>();
      if (auto f = TextOf(p, "final"); !f.empty()) {
        auto pos = Position::Parse(f);
        if (pos.ok()) r.final_pos = *pos;
      }
      r.promotion_error = TextOf(p, "error");
      r.db_fenced = p.at("db_fenced").get<bool>();
      for (const auto& h : p.at("history")) {
        auto pos = Position::Parse(h.get<std::string>());
        if (pos.ok()) r.history.push_back(*pos);
      }
    }
  } catch (const json::exception& e) {
    r.reachable = false;
    r.error = fmt::format("/status does not follow status.schema.json: {}", e.what());
  }
  return r;
}

// What one site's GET /status answer says about it.
SiteReport ReportFromAnswer(const Topology& topology, const TopologySite& site,
                            const Result<admin::HttpAnswer>& answer) {
  SiteReport r;
  r.name = site.name;
  if (!answer.ok()) {
    r.error = answer.status().message();
    return r;
  }
  if (answer->status != 200) {
    r.error = fmt::format("GET /status answered HTTP {}", answer->status);
    r.unauthorized = answer->status == 401;
    return r;
  }
  json doc = json::parse(answer->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    r.error = "GET /status did not return a JSON object";
  } else if (doc.value("cluster_id", "") != topology.cluster_id) {
    r.error = fmt::format("belongs to cluster {}, not {}", doc.value("cluster_id", ""),
                          topology.cluster_id);
  } else {
    r = ReportFromStatus(site.name, doc);
  }
  return r;
}

std::vector<SiteReport> Survey(const Topology& topology, const std::string& token) {
  std::vector<Result<admin::HttpAnswer>> answers =
      admin::FetchStatusOfAll(topology, std::chrono::milliseconds(2000), token);
  std::vector<SiteReport> out;
  for (size_t i = 0; i < topology.sites.size(); ++i) {
    out.push_back(ReportFromAnswer(topology, topology.sites[i], answers[i]));
  }
  return out;
}

std::string FormatSurvey(const std::vector<SiteReport>& sites) {
  std::string out =
      fmt::format("{:<12} {:<8} {:>5} {:<12} {:<12} {:<16} {:<16} {}\n", "SITE", "ROLE", "EPOCH",
                  "STATE", "FOLLOWS", "DURABLE", "APPLIED", "PROMOTION");
  for (const auto& s : sites) {
    if (!s.reachable) {
      out +=
          fmt::format("{:<12} {:<8} {:>5} {:<12} {}\n", s.name, "-", "-", "unreachable", s.error);
      continue;
    }
    std::string promotion = "-";
    if (!s.promotion_target.empty()) {
      promotion =
          fmt::format("to {} epoch {}{}", s.promotion_target, s.promotion_epoch,
                      s.final_pos.lsn.valid() ? " fenced at " + s.final_pos.ToString() : "");
    }
    if (!s.promotion_error.empty()) promotion += " error: " + s.promotion_error;
    out += fmt::format("{:<12} {:<8} {:>5} {:<12} {:<12} {:<16} {:<16} {}\n", s.name, s.role,
                       s.epoch, s.state, s.source_site.empty() ? "-" : s.source_site,
                       s.durable.lsn.valid() ? s.durable.ToString() : "-",
                       s.applied.lsn.valid() ? s.applied.ToString() : "-", promotion);
  }
  return out;
}

Plan PlanSwitchover(const std::vector<SiteReport>& sites, const std::string& target) {
  Plan plan;
  const SiteReport* t = StartPlan(sites, target, &plan);
  if (!t) return plan;
  if (t->role == "source") {
    if (t->epoch != plan.epoch) {
      plan.refusal =
          fmt::format("{} is a source at epoch {}, below epoch {}", target, t->epoch, plan.epoch);
      return plan;
    }
    // Already promoted by an earlier run: finish re-pointing and demoting.
    plan.new_epoch = t->epoch;
    for (const auto& s : sites) {
      if (s.reachable && s.name != target && s.role == "source") plan.old_source = s.name;
    }
    plan.first_step = 3;
    return plan;
  }
  if (t->role != "replica") {
    plan.refusal = fmt::format("target {} is {}: it cannot be promoted", target, t->role);
    return plan;
  }
  std::string refusal;
  plan.old_source = SourceAt(sites, plan.epoch, &refusal);
  if (!refusal.empty() || plan.old_source.empty()) {
    plan.refusal = refusal.empty() ? fmt::format(
                                         "no reachable site is the source at epoch {}; if the "
                                         "primary is lost, use failover",
                                         plan.epoch)
                                   : refusal;
    return plan;
  }
  const SiteReport* old = Find(sites, plan.old_source);
  if (old->promotion_target == target) {
    plan.new_epoch = old->promotion_epoch;
    plan.final_pos = old->final_pos;
    plan.first_step = old->final_pos.lsn.valid() ? 1 : 0;
    return plan;
  }
  if (t->source_site != plan.old_source || !t->connected) {
    plan.refusal =
        fmt::format("target {} is not streaming from the source {} (follows {}, {})", target,
                    plan.old_source, t->source_site.empty() ? "nothing" : t->source_site,
                    t->connected ? "connected" : "disconnected");
    return plan;
  }
  if (!t->apply_error.empty()) {
    plan.refusal = fmt::format("target {} has an apply error: {}", target, t->apply_error);
    return plan;
  }
  if (t->epoch != plan.epoch) {
    plan.refusal = fmt::format("target {} is at epoch {}, not {}", target, t->epoch, plan.epoch);
    return plan;
  }
  plan.new_epoch = plan.epoch + 1;
  return plan;
}

LossEstimate EstimateLoss(const std::vector<SiteReport>& sites, const SiteReport& target) {
  LossEstimate loss;
  loss.holds = target.durable;
  loss.last_known = target.durable;
  loss.last_known_from = target.name;
  // The last known source position: what any reachable replica holds or
  // heard the primary had written. One site's stale heartbeat (or a
  // durable position past it, which made "WAL ahead 0 B") does not hide
  // what another site heard later.
  std::optional<double> per_mb = target.txns_per_mb;
  for (const SiteReport& s : sites) {
    if (!s.reachable || s.role != "replica") continue;
    if (s.durable > loss.last_known) {
      loss.last_known = s.durable;
      loss.last_known_from = s.name;
    }
    const Position heard{s.epoch, s.primary_wal_lsn};
    if (s.primary_wal_lsn.valid() && heard > loss.last_known) {
      loss.last_known = heard;
      loss.last_known_from = s.name;
    }
    if (!per_mb) per_mb = s.txns_per_mb;
  }
  if (loss.holds.lsn.valid() && loss.last_known.epoch == loss.holds.epoch) {
    loss.bytes = loss.last_known.lsn.BytesAfter(loss.holds.lsn);
  }
  loss.txns_per_mb = per_mb;
  if (per_mb) loss.transactions = admin::TransactionsIn(loss.bytes, *per_mb / 1e6);
  // Heard nothing since it started: unknown, never 0.
  if (target.heartbeat_age_s) {
    loss.seconds = target.loss_seconds;
    loss.heard_s_ago = target.heartbeat_age_s;
  } else {
    loss.bytes.reset();
    loss.transactions.reset();
  }
  return loss;
}

std::string FormatLoss(const LossEstimate& loss, const std::string& target,
                       const std::string& old_source) {
  const std::string old = old_source.empty() ? "the old primary" : old_source;
  std::string out = fmt::format("potential data loss if {} is promoted:\n", target);
  out += fmt::format("  holds up to        {}\n", loss.holds.ToString());
  if (!loss.heard_s_ago) {
    out += fmt::format(
        "  UNKNOWN: {} has not heard from {} since it started; treat it as unknown, not as no "
        "loss\n",
        target, old);
  } else {
    out += fmt::format(
        "  source at least    {} (the highest position a reachable site heard of: {})\n",
        loss.last_known.ToString(), loss.last_known_from);
    out += fmt::format(
        "  WAL ahead          {}\n",
        loss.bytes ? admin::HumanBytes(*loss.bytes) + fmt::format(" ({} bytes)", *loss.bytes)
                   : std::string("unknown (another epoch)"));
    out += fmt::format("  transactions       {}\n",
                       loss.transactions && loss.txns_per_mb
                           ? fmt::format("about {} (at {:.0f} per MB of WAL in the stream lately)",
                                         *loss.transactions, *loss.txns_per_mb)
                           : std::string("unknown (no recent stream to count them by)"));
    out += fmt::format(
        "  seconds            {} (of commits {} made that {} lacks, on {}'s clock at its last "
        "heartbeat)\n",
        loss.seconds ? fmt::format("{:.1f}", *loss.seconds) : std::string("unknown"), old, target,
        old);
    out += fmt::format(
        "  last heartbeat     {:.1f} s ago ({}'s clock); what {} committed since is "
        "not counted\n",
        *loss.heard_s_ago, target, old);
  }
  out += fmt::format(
      "  exactly            `geosyncctl rejoin --site {}` exports every lost transaction when it "
      "returns\n",
      old_source.empty() ? "OLD" : old_source);
  return out;
}

Plan PlanFailover(const std::vector<SiteReport>& sites, const std::string& target,
                  const FailoverChecks& checks) {
  Plan plan;
  const SiteReport* t = StartPlan(sites, target, &plan);
  if (!t) return plan;
  if (t->role == "source" && t->epoch == plan.epoch) {
    plan.new_epoch = t->epoch;  // promoted by an earlier run
    plan.first_step = 1;
    return plan;
  }
  if (t->role != "replica") {
    plan.refusal = fmt::format("target {} is {}: it cannot be promoted", target, t->role);
    return plan;
  }
  std::string refusal;
  std::string live_source = SourceAt(sites, plan.epoch, &refusal);
  plan.old_source = live_source.empty() ? t->source_site : live_source;
  if (!live_source.empty() && !checks.force) {
    plan.refusal = fmt::format(
        "the source {} still answers: use `geosyncctl switchover` for a planned move, or "
        "--force if it is cut off from its clients and must be replaced",
        live_source);
    return plan;
  }
  // The most advanced reachable replica holds the most of the lost primary.
  const SiteReport* best = t;
  for (const auto& s : sites) {
    if (s.reachable && s.role == "replica" && s.durable > best->durable) best = &s;
  }
  if (best != t && !checks.allow_behind) {
    plan.refusal = fmt::format(
        "{} holds up to {} but {} holds more ({}): promote {} or pass --allow-behind (the "
        "transactions in between would be lost)",
        target, t->durable.ToString(), best->name, best->durable.ToString(), best->name);
    return plan;
  }
  plan.loss = EstimateLoss(sites, *t);
  plan.loss_report = FormatLoss(plan.loss, target, plan.old_source);
  if (checks.max_lag_s >= 0 && !checks.accept_loss && !plan.loss.seconds) {
    plan.refusal = fmt::format(
        "{} has not heard from the primary since it started: the potential loss is unknown, so "
        "--max-lag cannot be checked; pass --accept-data-loss to fail over anyway",
        target);
    return plan;
  }
  const double seconds = plan.loss.seconds.value_or(0);
  if (checks.max_lag_s >= 0 && seconds > checks.max_lag_s && !checks.accept_loss) {
    plan.refusal = fmt::format(
        "the potential loss ({:.1f} s) exceeds --max-lag {:.1f} s; pass --accept-data-loss to "
        "fail over anyway",
        seconds, checks.max_lag_s);
    return plan;
  }
  plan.new_epoch = plan.epoch + 1;
  return plan;
}

}  // namespace geosync::promote
