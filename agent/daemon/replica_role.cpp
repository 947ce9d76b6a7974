// The replica role wired together: Receiver -> spool -> Applier (own
// thread), the seed when one is needed, the admin API with apply, verify,
// drill and promotion actions, and the write guard kept closed.
#include "agent/daemon/replica_role.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/daemon/apply_supervisor.h"
#include "agent/daemon/replica_view.h"
#include "agent/daemon/role_support.h"
#include "agent/pg/write_guard.h"
#include "agent/promote/admin_actions.h"
#include "agent/replica/applier.h"
#include "agent/replica/receiver.h"
#include "agent/seed/replica_seed.h"
#include "agent/verify/drill_job.h"
#include "agent/verify/verify_job.h"
#include "common/clock.h"
#include "common/link_refusals.h"

namespace geosync {
namespace {

// Who may answer as this replica's source (common/handshake.h
// CheckSourceReply): the site a promotion pointed it at (state.json), else
// the config's upstream.site; and the deployment's sites: config "sites",
// the peers a promotion named, the topology's.
struct SourceIdentity {
  std::string expected;
  std::vector<std::string> sites;
};

SourceIdentity SourceIdentityFor(const Config& config, const SiteState& state) {
  SourceIdentity id;
  id.expected = state.upstream ? state.source_site : config.upstream_site;
  auto add = [&](const std::string& name) {
    if (std::find(id.sites.begin(), id.sites.end(), name) == id.sites.end()) {
      id.sites.push_back(name);
    }
  };
  for (const std::string& s : config.sites) add(s);
  for (const std::string& s : state.peers) add(s);
  if (!config.topology.empty()) {
    auto topology = LoadTopology(config.topology);
    if (topology.ok()) {
      for (const TopologySite& s : topology->sites) add(s.name);
    } else {
      spdlog::warn("replica: the topology's sites do not vouch for the source: {}",
                   topology.status().ToString());
    }
  }
  return id;
}

// Members are declared in the order the role builds them, so that they are
// torn down in reverse.
class ReplicaRole {
 public:
  explicit ReplicaRole(SiteControl& control)
      : control_(control), config_(control.config()), state_(control.state()) {}

  Status Run();

 private:
  Status Open();
  std::optional<GuardRequest> GuardWanted() const;
  void CloseWriteGuard();
  void BuildPipeline();
  void StartSampling();
  admin::AdminHandlers Handlers();
  void AddVerifyAndDrill(admin::AdminHandlers& handlers);
  admin::HttpReply SeedAction();
  void StartStreaming();
  void StartSeedOrStreaming();
  void FinishPromotionWait();
  Status Shutdown();

  SiteControl& control_;
  const Config& config_;
  SiteState state_;  // the seed records its progress here (and in state.json)
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Endpoint upstream_;
  std::unique_ptr<Spool> spool_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  LinkRefusals refusals_;
  SourceIdentity source_identity_;
  std::unique_ptr<seed::ReplicaSeed> seed_;
  bool must_seed_ = false;
  std::unique_ptr<Applier> applier_;
  std::atomic<bool> stopping_{false};
  ApplyControl apply_control_;
  std::thread apply_thread_;  // started once any seed is done
  std::unique_ptr<Receiver> receiver_;
  std::unique_ptr<WriteGuardKeeper> guard_keeper_;
  admin::LagTracker tracker_;  // (source_commit, source time) from heartbeats
  admin::LagTracker primary_tracker_;
  admin::TxnDensity density_;
  admin::RateMeter apply_rate_;
  std::unique_ptr<ReplicaView> view_;
  asio::steady_timer sampler_{io_};
  int64_t last_heartbeat_us_ = 0;
  asio::steady_timer retention_{io_};
  std::shared_ptr<VerifyJob> verify_job_;
  std::mutex verify_mu_;
  std::shared_ptr<DrillJob> drill_job_;
  std::mutex drill_mu_;
  asio::steady_timer reseed_timer_{io_};
  std::unique_ptr<admin::AdminServer> admin_server_;
  Status receiver_status_;
  std::thread seed_thread_;
};

Status ReplicaRole::Run() {
  GEOSYNC_RETURN_IF_ERROR(Open());
  CloseWriteGuard();
  BuildPipeline();
  StartSampling();
  GEOSYNC_ASSIGN_OR_RETURN(admin_server_, StartAdmin(io_, config_, Handlers()));
  StartSeedOrStreaming();
  RunUntilSignal(io_, [this] {
    seed_->Stop();
    receiver_->Stop();
    io_.stop();
  });
  return Shutdown();
}

Status ReplicaRole::Open() {
  if (!state_.upstream && !config_.upstream) {
    return Status::Config(fmt::format("config {}: a replica needs 'upstream'", config_.path));
  }
  upstream_ = state_.upstream ? *state_.upstream : *config_.upstream;
  GEOSYNC_ASSIGN_OR_RETURN(spool_, Spool::Open(SpoolOptions::FromConfig(config_)));
  GEOSYNC_ASSIGN_OR_RETURN(tls_, TlsFor(config_, false));
  source_identity_ = SourceIdentityFor(config_, state_);
  seed_ = std::make_unique<seed::ReplicaSeed>(
      config_, &state_, spool_.get(), tls_,
      [this](const std::function<void(SiteState&)>& change) { return control_.Update(change); });
  seed_->SetSourceIdentity(source_identity_.expected, source_identity_.sites, &refusals_);
  must_seed_ = seed_->Needed();
  return Status::Ok();
}

// Applications write at the source only; apply and seed pass the guard. The
// refusal names the source: the one streaming to this site, else the one a
// promotion named.
std::optional<GuardRequest> ReplicaRole::GuardWanted() const {
  const SiteState now = control_.state();
  std::string source = receiver_ ? receiver_->status().source_site : std::string();
  if (source.empty()) source = now.source_site;
  if (source.empty()) source = source_identity_.expected;
  return GuardRequest{false, config_.site, "replica", source, now.epoch, ""};
}

void ReplicaRole::CloseWriteGuard() {
  auto guard_conn = ConnectGuardSession(config_.postgres.dsn);
  Status st = guard_conn.status();
  if (st.ok()) st = SetWriteGuard(*guard_conn, *GuardWanted()).status();
  if (!st.ok()) spdlog::warn("write guard: {} (retrying every second)", st.ToString());
}

// The applier and the receiver, joined through the spool; the guard keeper.
void ReplicaRole::BuildPipeline() {
  applier_ = std::make_unique<Applier>(ApplierOptions::FromConfig(config_), spool_.get());
  ReceiverOptions ro = ReceiverOptions::FromConfig(config_, upstream_);
  ro.expected_source = source_identity_.expected;
  ro.deployment_sites = source_identity_.sites;
  ro.refusals = &refusals_;
  ro.tls = tls_;
  receiver_ = std::make_unique<Receiver>(
      io_.get_executor(), ro, spool_.get(), state_.epoch, [this] { return applier_->applied(); },
      [this] { return applier_->applied_commit_time(); }, [this] { applier_->NotifyDurable(); },
      [this](uint64_t epoch) { return control_.Update([&](SiteState& s) { s.epoch = epoch; }); });
  guard_keeper_ = std::make_unique<WriteGuardKeeper>(
      config_.postgres.dsn, [this] { return GuardWanted(); }, nullptr);
  guard_keeper_->Start();
}

// Lag samples from heartbeats every 100 ms; spool retention every second.
void ReplicaRole::StartSampling() {
  view_ = std::make_unique<ReplicaView>(
      ReplicaView{config_, upstream_, *receiver_, *applier_, *spool_, apply_control_, tracker_,
                  primary_tracker_, density_, apply_rate_, started_, *seed_});
  Every(sampler_, std::chrono::milliseconds(100), [this] {
    ReceiverStatus rs = receiver_->status();
    if (rs.local_time_us != last_heartbeat_us_) {
      last_heartbeat_us_ = rs.local_time_us;
      tracker_.Observe(rs.source_commit, rs.source_time_us);
      primary_tracker_.Observe(Position{receiver_->epoch(), rs.primary_wal_lsn}, rs.source_time_us);
    }
    density_.Observe(rs.received.lsn, rs.units, NowUs());
    apply_rate_.Observe(applier_->stats().txns, NowUs());
  });
  // Segments applied and flushed on the database go, oldest first, beyond
  // what the site keeps to serve its peers once promoted:
  // spool.keep_applied_mb, at most half of spool.max_mb.
  Every(retention_, std::chrono::seconds(1), [this] {
    uint64_t keep = config_.spool.keep_applied_bytes;
    if (config_.spool.max_bytes > 0) keep = std::min(keep, config_.spool.max_bytes / 2);
    const Position flushed = applier_->flushed();
    if (!flushed.lsn.valid() || spool_->size_bytes() <= keep) return;
    Status st = spool_->ReleaseUpTo(flushed, keep);
    if (!st.ok()) spdlog::error("spool retention: {}", st.ToString());
  });
}

admin::AdminHandlers ReplicaRole::Handlers() {
  admin::AdminHandlers handlers;
  handlers.ready = [this] {
    return admin::ReplicaReadiness(view_->Snapshot(), config_.admin.ready_max_lag_s);
  };
  handlers.status = [this] {
    return WithPromotion(admin::StatusJson(view_->Snapshot()), control_);
  };
  handlers.metrics = [this] {
    return admin::MetricsText(view_->Snapshot()) +
           LinkRefusalMetricsText(refusals_.counts(), false);
  };
  handlers.actions["apply/skip"] = [this](const admin::QueryParams& q) {
    return SkipAction(*applier_, q);
  };
  handlers.actions["apply/resume"] = [this](const admin::QueryParams&) {
    return ResumeAction(apply_control_);
  };
  AddReplicaActions(handlers, control_, [this] { receiver_->Stop(); });
  AddVerifyAndDrill(handlers);
  handlers.actions["seed"] = [this](const admin::QueryParams&) { return SeedAction(); };
  return handlers;
}

void ReplicaRole::AddVerifyAndDrill(admin::AdminHandlers& handlers) {
  AddVerifyActions(
      handlers, verify_job_, verify_mu_,
      [this](const VerifyRequest& r, admin::HttpReply* error) {
        std::unique_ptr<VerifyJob> job;
        if (!r.position.lsn.valid() || r.tables.empty()) {
          *error = {400, "text/plain; charset=utf-8",
                    "a replica verifies at ?position=E@X/Y over ?tables=...\n"};
          return job;
        }
        return VerifyJob::ForReplica(config_.postgres.dsn, applier_.get(), r);
      },
      [this] {
        const Position a = applier_->applied();
        applier_->HoldBefore(Position{a.epoch, Lsn(a.lsn.value() + 1)});
      },
      [this] { applier_->ReleaseHold(); });
  AddDrillActions(handlers, drill_job_, drill_mu_, config_.postgres.dsn, applier_.get(),
                  config_.state_dir);
}

// POST /admin/seed: once accepted, the reply goes out, then the role runs
// again to seed.
admin::HttpReply ReplicaRole::SeedAction() {
  admin::HttpReply reply = seed_->Request();
  if (reply.status != 202) return reply;
  NextRole rerun;
  rerun.kind = NextRole::kRerun;
  (void)control_.Request(rerun);
  reseed_timer_.expires_after(std::chrono::milliseconds(200));
  reseed_timer_.async_wait([this](auto ec) {
    if (ec) return;
    receiver_->Stop();
    io_.stop();
  });
  return reply;
}

void ReplicaRole::StartStreaming() {
  apply_thread_ = std::thread([this] { RunApplyLoop(*applier_, apply_control_, stopping_); });
  asio::co_spawn(io_, receiver_->Run(), [this](std::exception_ptr e, Status st) {
    if (e) std::rethrow_exception(e);
    receiver_status_ = st;
    if (st.code() != Code::kCancelled) spdlog::error("receiver stopped: {}", st.ToString());
    io_.stop();
  });
}

// A seed runs on its own thread while the admin API serves its progress; a
// half-seeded site never applies or streams.
void ReplicaRole::StartSeedOrStreaming() {
  if (!must_seed_) {
    StartStreaming();
    return;
  }
  seed_thread_ = std::thread([this] {
    Status st = seed_->Run();
    asio::post(io_, [this, st] {
      if (st.ok()) {
        StartStreaming();
      } else if (st.code() != Code::kCancelled) {
        receiver_status_ = st;
        io_.stop();
      }
    });
  });
}

// Everything received must be applied before this site takes writes; if
// it cannot be, the promotion is refused and the role runs again.
void ReplicaRole::FinishPromotionWait() {
  if (control_.next().kind != NextRole::kPromote) return;
  Status caught = WaitAllApplied(*applier_, *spool_, apply_control_, std::chrono::seconds(120));
  if (caught.ok()) return;
  spdlog::error("promotion refused: {}", caught.ToString());
  control_.ClearNext();
  (void)control_.Update([&](SiteState& s) { s.promotion_error = caught.ToString(); });
  NextRole rerun;
  rerun.kind = NextRole::kRerun;
  (void)control_.Request(rerun);
}

Status ReplicaRole::Shutdown() {
  {
    std::lock_guard lock(verify_mu_);
    verify_job_.reset();  // a verify's hold must not outlive the role
  }
  {
    std::lock_guard lock(drill_mu_);
    drill_job_.reset();  // waits for a running drill to roll back
  }
  FinishPromotionWait();
  seed_->Stop();
  if (seed_thread_.joinable()) seed_thread_.join();
  apply_control_.Stop(stopping_);
  applier_->Stop();
  if (apply_thread_.joinable()) apply_thread_.join();
  if (receiver_status_.code() == Code::kCancelled || receiver_status_.ok()) return Status::Ok();
  return receiver_status_;
}

}  // namespace

Status RunReplica(SiteControl& control) { return ReplicaRole(control).Run(); }

}  // namespace geosync
