// ReplicaSeed: seed decisions, retries and state.json transitions.
#include "agent/seed/replica_seed.h"
#include "common/replication_origin.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace geosync::seed {

ReplicaSeed::ReplicaSeed(const Config& config, SiteState* state, Spool* spool,
                         std::shared_ptr<boost::asio::ssl::context> tls, StateUpdate update)
    : config_(config),
      state_(state),
      update_(std::move(update)),
      spool_(spool),
      tls_(std::move(tls)) {
  progress_.SetState(SeedStateName(state->seed_state));
  if (!state->seed_position.empty()) {
    auto pos = Position::Parse(state->seed_position);
    if (pos.ok()) {
      SeedManifest m;
      m.consistent = *pos;
      progress_.Begin(m);
    }
  }
}

bool ReplicaSeed::Needed() {
  std::lock_guard lock(mu_);
  if (state_->seed_state == SeedState::kInProgress) {
    spdlog::warn("site {}: a seed is in progress ({}): copying the primary again from scratch",
                 config_.site,
                 state_->seed_created_schema ? "its partial tables are dropped first"
                                             : "its tables are emptied first");
    return true;
  }
  // seed.auto: a site that never received anything; the seed declines if the
  // database already has a published table.
  auto_ = config_.seed.auto_seed && state_->seed_state == SeedState::kNone &&
          !spool_->durable().lsn.valid();
  return auto_;
}

Status ReplicaSeed::Persist(const std::function<void(SiteState&)>& change) {
  std::lock_guard lock(mu_);
  SiteState next = *state_;
  change(next);
  if (update_) {
    GEOSYNC_RETURN_IF_ERROR(update_(change));
  } else {
    GEOSYNC_RETURN_IF_ERROR(WriteSiteState(config_.state_dir, next));
  }
  *state_ = next;
  progress_.SetState(SeedStateName(next.seed_state));
  return Status::Ok();
}

// The seeder's options for one attempt: the source to copy from is the one
// a promotion pointed this site at, else the config's.
Result<SeederOptions> ReplicaSeed::AttemptOptions() {
  SeederOptions o;
  o.cluster_id = config_.cluster_id;
  o.site = config_.site;
  if (state_->upstream) {
    o.upstream = *state_->upstream;
  } else if (config_.upstream) {
    o.upstream = *config_.upstream;
  } else {
    return Status::Config(fmt::format("config {}: a replica needs 'upstream'", config_.path));
  }
  o.tls = tls_;
  o.expected_source = expected_source_;
  o.deployment_sites = deployment_sites_;
  o.refusals = refusals_;
  o.conninfo = config_.postgres.dsn;
  o.origin_prefix = OriginPrefix(config_.cluster_id);
  o.workers = config_.seed.workers;
  o.heartbeat = std::chrono::milliseconds(config_.heartbeat_ms);
  o.peer_timeout = std::chrono::milliseconds(config_.peer_timeout_ms);
  std::lock_guard lock(mu_);
  o.epoch = state_->epoch;
  const bool committed = state_->seed_state == SeedState::kInProgress;
  o.only_if_empty = auto_ && !committed;
  o.drop_partial = committed && state_->seed_created_schema;
  return o;
}

Status ReplicaSeed::Run() {
  progress_.SetState("in_progress");
  auto backoff = std::chrono::seconds(1);
  for (int attempt = 1;; ++attempt) {
    GEOSYNC_ASSIGN_OR_RETURN(SeederOptions o, AttemptOptions());
    Seeder seeder(o, spool_, &progress_, [&](bool created) {
      return Persist([&](SiteState& s) {
        s.seed_state = SeedState::kInProgress;
        s.seed_created_schema = s.seed_created_schema || created;
      });
    });
    {
      std::lock_guard lock(mu_);
      if (stop_) return Status::Cancelled("seed stopped");
      current_ = &seeder;
    }
    spdlog::info("seed: attempt {} for site {}", attempt, config_.site);
    auto outcome = seeder.Run();
    {
      std::lock_guard lock(mu_);
      current_ = nullptr;
    }
    if (outcome.ok() && *outcome == SeedOutcome::kDeclined) {
      progress_.SetState(SeedStateName(state_->seed_state));
      return Status::Ok();
    }
    if (outcome.ok()) {
      const Position pos = seeder.position();
      GEOSYNC_RETURN_IF_ERROR(Persist([&](SiteState& s) {
        s.seed_state = SeedState::kDone;
        s.seed_position = pos.ToString();
        s.seed_created_schema = false;
        if (pos.epoch > s.epoch) s.epoch = pos.epoch;
      }));
      progress_.SetPhase("");
      progress_.SetError("");
      spdlog::info("seed of site {} done: the stream continues after {}", config_.site,
                   Position{pos.epoch, Lsn(pos.lsn.value() - 1)}.ToString());
      return Status::Ok();
    }
    Status st = outcome.status();
    if (stop_) return Status::Cancelled("seed stopped");
    if (st.code() == Code::kInvalidArgument || st.code() == Code::kConfig ||
        st.code() == Code::kFenced) {
      progress_.SetError(st.ToString());
      return st.WithContext("seed");
    }
    progress_.SetError(st.ToString());
    progress_.SetPhase("retrying");
    spdlog::warn("seed attempt {} failed: {}; starting again from scratch in {} s", attempt,
                 st.ToString(), backoff.count());
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return stop_.load(); });
    backoff = std::min(backoff * 2, std::chrono::seconds(30));
  }
}

void ReplicaSeed::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  if (current_) current_->Stop();
  cv_.notify_all();
}

admin::SeedSnapshot ReplicaSeed::Snapshot() const { return progress_.Snapshot(); }

admin::HttpReply ReplicaSeed::Request() {
  {
    std::lock_guard lock(mu_);
    if (state_->seed_state == SeedState::kInProgress || current_ != nullptr) {
      return {409, "text/plain; charset=utf-8", "a seed is already in progress\n"};
    }
  }
  Status st = Persist([](SiteState& s) {
    s.seed_state = SeedState::kInProgress;
    s.seed_created_schema = false;
  });
  if (!st.ok()) return {500, "text/plain; charset=utf-8", st.ToString() + "\n"};
  spdlog::warn("site {}: seed requested: streaming stops, the primary is copied again",
               config_.site);
  return {202, "text/plain; charset=utf-8",
          fmt::format("seed of site {} started: it stops streaming and copies the primary; "
                      "follow it in GET /status (replica.seed)\n",
                      config_.site)};
}

}  // namespace geosync::seed
