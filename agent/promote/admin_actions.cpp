// The admin API's promotion actions (POST /admin/promotion/..., /admin/rejoin/...),
// wired by RunSource, RunReplica and RunFenced; see docs/promotion.md.
#include "agent/promote/admin_actions.h"

#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "agent/promote/divergence.h"
#include "agent/promote/transitions.h"

namespace geosync {
namespace {

admin::HttpReply Reply(unsigned code, std::string text) {
  return {code, "text/plain; charset=utf-8", std::move(text) + "\n"};
}

// A required query parameter, or a 400 reply naming it.
const std::string* Param(const admin::QueryParams& q, const std::string& key,
                         admin::HttpReply* error) {
  auto it = q.find(key);
  if (it == q.end() || it->second.empty()) {
    *error = Reply(400, fmt::format("missing query parameter '{}'", key));
    return nullptr;
  }
  return &it->second;
}

bool UintParam(const admin::QueryParams& q, const std::string& key, uint64_t* out,
               admin::HttpReply* error) {
  const std::string* v = Param(q, key, error);
  if (!v) return false;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), *out);
  if (ec != std::errc() || p != v->data() + v->size()) {
    *error = Reply(400, fmt::format("query parameter '{}' must be a number, got \"{}\"", key, *v));
    return false;
  }
  return true;
}

// ?site=B&host=H&port=P: the new source and where its stream listens.
bool SourceParams(const admin::QueryParams& q, std::string* site, Endpoint* upstream,
                  admin::HttpReply* error) {
  const std::string* s = Param(q, "site", error);
  const std::string* h = Param(q, "host", error);
  uint64_t port = 0;
  if (!s || !h || !UintParam(q, "port", &port, error)) return false;
  if (port == 0 || port > 65535) {
    *error = Reply(400, "query parameter 'port' must be 1-65535");
    return false;
  }
  *site = *s;
  upstream->host = *h;
  upstream->port = static_cast<uint16_t>(port);
  return true;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// ?after=E@X/Y: where this site's epoch ended on the new source.
bool AfterParam(const admin::QueryParams& q, Position* after, admin::HttpReply* error) {
  const std::string* v = Param(q, "after", error);
  if (!v) return false;
  auto pos = Position::Parse(*v);
  if (!pos.ok()) {
    *error = Reply(400, "query parameter 'after': " + pos.status().message());
    return false;
  }
  *after = *pos;
  return true;
}

}  // namespace

// Switchover, source side, on its own thread while the source keeps
// serving: no more heartbeats, the database fenced, the final marker, and
// the spool holding it. Then promotion_final is the source's last position.
static void RunFence(SiteControl& control, Spool& spool, ControlEmitter& emitter,
                     std::string target, uint64_t epoch) {
  emitter.Stop();
  auto marker = FenceForSwitchover(control.config(), target, epoch);
  Status st = marker.status();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (st.ok() && spool.durable().lsn < *marker) {
    if (std::chrono::steady_clock::now() > until) {
      st = Status::Timeout(
          fmt::format("the spool did not reach the final marker at {} within 60 s (it holds {})",
                      marker->ToString(), spool.durable().ToString()));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (st.ok()) {
    const Position final_pos = spool.durable();
    st = control.Update([&](SiteState& s) { s.promotion_final = final_pos; });
    if (st.ok()) {
      spdlog::warn("switchover to {}: fenced; final position {}", target, final_pos.ToString());
      control.SetStep("fenced");
      return;
    }
  }
  spdlog::error("switchover to {}: fencing failed: {}", target, st.ToString());
  (void)control.Update([&](SiteState& s) { s.promotion_error = st.ToString(); });
  control.SetStep("fence failed");
}

// POST /admin/promotion/{fence,unfence,demote} on the source.
void AddSourceActions(admin::AdminHandlers& handlers, SiteControl& control, Spool& spool,
                      ControlEmitter& emitter, std::thread& fence_thread,
                      std::function<void()> stop) {
  handlers.actions["promotion/fence"] = [&control, &spool, &emitter,
                                         &fence_thread](const admin::QueryParams& q) {
    admin::HttpReply error;
    const std::string* target = Param(q, "target", &error);
    uint64_t epoch = 0;
    if (!target || !UintParam(q, "epoch", &epoch, &error)) return error;
    const SiteState s = control.state();
    const bool same = s.promotion_target == *target && s.promotion_epoch == epoch;
    if (!s.promotion_target.empty() && !same) {
      return Reply(409, fmt::format("a promotion of {} to epoch {} is already under way here",
                                    s.promotion_target, s.promotion_epoch));
    }
    if (same && s.promotion_final.lsn.valid()) {
      return Reply(200, "fenced; final position " + s.promotion_final.ToString());
    }
    if (control.step() == "fencing") return Reply(202, "fencing");
    if (epoch <= s.epoch) {
      return Reply(409, fmt::format("epoch {} is not above this site's epoch {}", epoch, s.epoch));
    }
    Status st = control.Update([&](SiteState& x) {
      x.promotion_target = *target;
      x.promotion_epoch = epoch;
      x.promotion_error.clear();
      x.db_fenced = true;  // from here on a restart emits nothing
    });
    if (!st.ok()) return Reply(500, st.ToString());
    if (fence_thread.joinable()) fence_thread.join();
    control.SetStep("fencing");
    fence_thread = std::thread([&control, &spool, &emitter, t = *target, epoch] {
      RunFence(control, spool, emitter, t, epoch);
    });
    return Reply(202, fmt::format("fencing for a switchover to {} at epoch {}", *target, epoch));
  };
  handlers.actions["promotion/unfence"] = [&control, stop](const admin::QueryParams&) {
    const SiteState s = control.state();
    if (s.promotion_target.empty() && !s.db_fenced) return Reply(200, "not fenced");
    if (control.step() == "fencing") return Reply(409, "the fence is being set up; retry");
    NextRole next;
    next.kind = NextRole::kUnfence;
    Status st = control.Request(next);
    if (!st.ok()) return Reply(409, st.message());
    stop();
    return Reply(202, "lifting the fence; this site stays the source");
  };
  handlers.actions["promotion/demote"] = [&control, stop](const admin::QueryParams& q) {
    admin::HttpReply error;
    NextRole next;
    next.kind = NextRole::kDemote;
    if (!SourceParams(q, &next.source_site, &next.upstream, &error)) return error;
    const SiteState s = control.state();
    if (!s.promotion_final.lsn.valid()) {
      return Reply(409, "this source is not fenced for a switchover: POST promotion/fence first");
    }
    Status st = control.Request(next);
    if (!st.ok()) return Reply(409, st.message());
    stop();
    return Reply(202, fmt::format("demoting: this site becomes a replica of {} ({}:{})",
                                  next.source_site, next.upstream.host, next.upstream.port));
  };
}

// POST /admin/promotion/{promote,follow} on a replica. `stop_receiver` ends
// the role (the receiver's end stops the event loop).
void AddReplicaActions(admin::AdminHandlers& handlers, SiteControl& control,
                       std::function<void()> stop_receiver) {
  handlers.actions["promotion/promote"] = [&control, stop_receiver](const admin::QueryParams& q) {
    admin::HttpReply error;
    NextRole next;
    next.kind = NextRole::kPromote;
    if (!UintParam(q, "epoch", &next.epoch, &error)) return error;
    uint64_t gap = 0;
    if (q.count("sequence_gap") && !UintParam(q, "sequence_gap", &gap, &error)) return error;
    next.sequence_gap = static_cast<int64_t>(gap);
    if (auto it = q.find("peers"); it != q.end()) next.peers = SplitList(it->second);
    auto reason = q.find("reason");
    next.reason = reason == q.end() ? "promotion" : reason->second;
    const SiteState s = control.state();
    if (s.seed_state == SeedState::kInProgress) {
      return Reply(409, "this site is half-seeded: it cannot be promoted until its seed is done");
    }
    if (next.epoch <= s.epoch) {
      return Reply(409,
                   fmt::format("epoch {} is not above this site's epoch {}", next.epoch, s.epoch));
    }
    if (!control.config().listen) {
      return Reply(409, fmt::format("config {} has no 'listen': this site cannot serve as the "
                                    "source; add listen (host, port) and restart it",
                                    control.config().path));
    }
    Status st = control.Request(next);
    if (!st.ok()) return Reply(409, st.message());
    (void)control.Update([&](SiteState& x) { x.promotion_error.clear(); });
    control.SetStep("applying what was received");
    stop_receiver();
    return Reply(202, fmt::format("promoting to source at epoch {}", next.epoch));
  };
  handlers.actions["promotion/follow"] = [&control, stop_receiver](const admin::QueryParams& q) {
    admin::HttpReply error;
    std::string site;
    Endpoint up;
    if (!SourceParams(q, &site, &up, &error)) return error;
    const SiteState s = control.state();
    if (s.source_site == site && s.upstream && s.upstream->host == up.host &&
        s.upstream->port == up.port) {
      return Reply(200, fmt::format("already following {}", site));
    }
    NextRole next;
    next.kind = NextRole::kRerun;
    Status st = control.Request(next);
    if (!st.ok()) return Reply(409, st.message());
    st = control.Update([&](SiteState& x) {
      x.source_site = site;
      x.upstream = up;
    });
    if (!st.ok()) return Reply(500, st.ToString());
    spdlog::warn("following {} at {}:{} from now on", site, up.host, up.port);
    stop_receiver();
    return Reply(202, fmt::format("now following {} ({}:{})", site, up.host, up.port));
  };
}

// POST /admin/rejoin/{export,follow} on a fenced old primary.
void AddRejoinActions(admin::AdminHandlers& handlers, SiteControl& control, Spool& spool,
                      std::function<void()> stop) {
  // Blocks the event loop while it reads the spool and the slot: the site
  // does nothing else while fenced.
  handlers.actions["rejoin/export"] = [&control, &spool](const admin::QueryParams& q) {
    admin::HttpReply error;
    Position after;
    if (!AfterParam(q, &after, &error)) return error;
    const Config& config = control.config();
    auto report = ExportDivergent(config, spool, after, config.state_dir + "/rejoin");
    if (!report.ok()) return Reply(500, report.status().ToString());
    nlohmann::json doc = {{"site", config.site},
                          {"after", after.ToString()},
                          {"transactions", report->transactions},
                          {"changes", report->changes},
                          {"json", report->json_path},
                          {"sql", report->sql_path}};
    return admin::HttpReply{200, "application/json", doc.dump() + "\n"};
  };
  handlers.actions["rejoin/follow"] = [&control, &spool, stop](const admin::QueryParams& q) {
    admin::HttpReply error;
    NextRole next;
    next.kind = NextRole::kDemote;
    Position after;
    if (!SourceParams(q, &next.source_site, &next.upstream, &error) ||
        !AfterParam(q, &after, &error)) {
      return error;
    }
    // Only a site with nothing beyond `after` can follow without a re-seed.
    auto report =
        ExportDivergent(control.config(), spool, after, control.config().state_dir + "/rejoin");
    if (!report.ok()) return Reply(500, report.status().ToString());
    auto reseed = q.find("reseed");
    next.reseed = reseed != q.end() && reseed->second == "1";
    if (report->transactions > 0 && !next.reseed) {
      return Reply(409, fmt::format("{} divergent transaction(s) after {} (exported to {}): the "
                                    "site must be re-seeded from {} (rejoin --reseed)",
                                    report->transactions, after.ToString(), report->sql_path,
                                    next.source_site));
    }
    Status st = control.Request(next);
    if (!st.ok()) return Reply(409, st.message());
    stop();
    if (next.reseed) {
      return Reply(202, fmt::format("{} divergent transaction(s) exported; this site becomes a "
                                    "replica of {} and is seeded again from it",
                                    report->transactions, next.source_site));
    }
    return Reply(202, fmt::format("no divergence after {}: this site becomes a replica of {}",
                                  after.ToString(), next.source_site));
  };
}

}  // namespace geosync
