// The source role wired together: Capture (own thread) -> SpoolSink -> spool
// -> StreamServer sessions; the seed server; ControlEmitter for heartbeats
// and sequence snapshots; retention on a timer; the admin API; PeerWatch for
// a higher epoch elsewhere; and the write guard kept open.
#include "agent/daemon/source_role.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
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

#include "agent/admin/slot_poller.h"
#include "agent/daemon/role_support.h"
#include "agent/daemon/source_view.h"
#include "agent/pg/pg_checks.h"
#include "agent/pg/pg_conn.h"
#include "agent/pg/write_guard.h"
#include "agent/promote/admin_actions.h"
#include "agent/promote/peer_watch.h"
#include "agent/seed/seed_server.h"
#include "agent/source/capture.h"
#include "agent/source/control_emitter.h"
#include "agent/source/retention.h"
#include "agent/source/site_registry.h"
#include "agent/source/spool_sink.h"
#include "agent/source/stream_server.h"
#include "agent/verify/verify_job.h"
#include "common/clock.h"
#include "common/handshake.h"
#include "common/link_refusals.h"

namespace geosync {
namespace {

// Sites a source accepts: the config's, plus the peers a promotion named.
std::vector<std::string> AllowedSites(const Config& config, const SiteState& state) {
  std::vector<std::string> sites = config.sites;
  for (const std::string& p : state.peers) {
    if (p != config.site && std::find(sites.begin(), sites.end(), p) == sites.end()) {
      sites.push_back(p);
    }
  }
  return sites;
}

// A source whose spool is empty although its slot already confirmed
// transactions (the spool was moved aside after corruption, or lost): the
// units up to the slot's position are in no spool here. Recording that as
// the release floor makes every site that lacks them be refused with "needs
// a re-seed" instead of being served the units after a silent gap.
Status FloorEmptySpoolAtSlot(const Config& config, const SiteState& state, Spool& spool) {
  if (spool.oldest().lsn.valid() || spool.released().lsn.valid() || spool.durable().lsn.valid()) {
    return Status::Ok();
  }
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(config.postgres.dsn));
  auto r = conn.ExecParams(
      "SELECT confirmed_flush_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 "
      "AND confirmed_flush_lsn IS NOT NULL",
      {config.postgres.slot});
  if (!r.ok()) return r.status().WithContext("reading the slot of an empty spool");
  if (r->rows() == 0) return Status::Ok();  // a new slot: nothing was confirmed before
  GEOSYNC_ASSIGN_OR_RETURN(Lsn confirmed, Lsn::Parse(r->Get(0, 0)));
  const Position floor{state.epoch, confirmed};
  spdlog::warn(
      "spool: empty, but slot \"{}\" already confirmed transactions up to {}: they are in no "
      "spool here; sites that have not received them are refused and need a re-seed "
      "(docs/spool.md, \"Corruption\")",
      config.postgres.slot, floor.ToString());
  return spool.ResetTo(floor);
}

// Members are declared in the order the role builds them, so that they are
// torn down in reverse.
class SourceRole {
 public:
  explicit SourceRole(SiteControl& control)
      : control_(control), config_(control.config()), state_(control.state()) {}

  Status Run();

 private:
  Status CheckStart(bool* fence_instead);
  bool NoHigherEpoch();
  std::optional<GuardRequest> GuardWanted() const;
  Status OpenWriteGuard();
  Status OpenSpool();
  Status StartStreaming();
  void StartCapture();
  void StartTimers();
  admin::AdminHandlers Handlers();
  void StartPeerWatch();
  void StopAll();
  void OnHigherEpoch(uint64_t epoch, const std::string& site);
  Status Shutdown(Status served);

  SiteControl& control_;
  const Config& config_;
  const SiteState state_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  LinkRefusals refusals_;
  std::optional<Topology> topology_;
  std::unique_ptr<WriteGuardKeeper> guard_keeper_;
  std::unique_ptr<Spool> spool_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::unique_ptr<SiteRegistry> registry_;
  std::unique_ptr<admin::SlotPoller> poller_;
  asio::io_context io_;
  asio::io_context capture_io_;
  std::unique_ptr<Capture> capture_;
  std::atomic<bool> fenced_{false};
  std::unique_ptr<StreamServer> server_;
  std::unique_ptr<seed::SeedServer> seed_server_;
  std::unique_ptr<SpoolSink> sink_;
  std::unique_ptr<ControlEmitter> emitter_;
  Status capture_status_;
  std::thread capture_thread_;
  asio::steady_timer retention_{io_};
  std::atomic<uint64_t> retention_runs_{0};
  admin::LagTracker tracker_;
  asio::steady_timer sampler_{io_};
  std::unique_ptr<SourceView> view_;
  std::shared_ptr<VerifyJob> verify_job_;
  std::mutex verify_mu_;
  std::thread fence_thread_;
  std::unique_ptr<admin::AdminServer> admin_server_;
  std::unique_ptr<PeerWatch> watch_;
};

constexpr auto kSamplePeriod = std::chrono::milliseconds(100);

Status SourceRole::Run() {
  bool fence_instead = false;
  GEOSYNC_RETURN_IF_ERROR(CheckStart(&fence_instead));
  if (fence_instead) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(OpenWriteGuard());
  GEOSYNC_RETURN_IF_ERROR(OpenSpool());
  GEOSYNC_RETURN_IF_ERROR(StartStreaming());
  StartCapture();
  StartTimers();
  auto admin_server = StartAdmin(io_, config_, Handlers());
  if (!admin_server.ok()) return Shutdown(admin_server.status());
  admin_server_ = std::move(*admin_server);
  StartPeerWatch();
  RunUntilSignal(io_, [this] { StopAll(); });
  return Shutdown(Status::Ok());
}

// The config has a listener, no site is at a higher epoch (else the fence
// is requested and `*fence_instead` set), and PostgreSQL suits a source.
Status SourceRole::CheckStart(bool* fence_instead) {
  if (!config_.listen) {
    return Status::Config(
        fmt::format("config {}: site {} is the source (state {}/state.json) but has no 'listen'",
                    config_.path, config_.site, config_.state_dir));
  }
  if (!config_.topology.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(topology_, LoadTopology(config_.topology));
    // An old primary coming back after a failover stops before it ships.
    if (auto higher = FindHigherEpoch(*topology_, config_.site, state_.epoch, &refusals_)) {
      NextRole next;
      next.kind = NextRole::kFence;
      next.reason = fmt::format(
          "site {} is at epoch {} > this source's {}: another site was "
          "promoted while this one was away",
          higher->site, higher->epoch, state_.epoch);
      GEOSYNC_RETURN_IF_ERROR(control_.Request(std::move(next)));
      *fence_instead = true;
      return Status::Ok();
    }
  }
  // A promoted replica's config still says "replica": check as a source.
  Config as_source = config_;
  as_source.role = Role::kSource;
  return CheckPostgresForRole(as_source);
}

bool SourceRole::NoHigherEpoch() {
  return !topology_ || !FindHigherEpoch(*topology_, config_.site, state_.epoch, &refusals_);
}

// No other site is ahead: application writes may go here. (A source whose
// switchover fence is under way keeps its guard closed.)
std::optional<GuardRequest> SourceRole::GuardWanted() const {
  if (control_.state().db_fenced) return std::nullopt;
  return GuardRequest{true, config_.site, "source", config_.site, state_.epoch, ""};
}

Status SourceRole::OpenWriteGuard() {
  if (auto open = GuardWanted()) {
    GEOSYNC_ASSIGN_OR_RETURN(PgConn guard_conn, ConnectGuardSession(config_.postgres.dsn));
    GEOSYNC_ASSIGN_OR_RETURN(int guarded, SetWriteGuard(guard_conn, *open));
    spdlog::info(
        "write guard: site {} is the source at epoch {}; application writes allowed "
        "({} table(s) guarded for a restart)",
        config_.site, state_.epoch, guarded);
  }
  guard_keeper_ = std::make_unique<WriteGuardKeeper>(
      config_.postgres.dsn, [this] { return GuardWanted(); }, [this] { return NoHigherEpoch(); });
  guard_keeper_->Start();
  return Status::Ok();
}

Status SourceRole::OpenSpool() {
  GEOSYNC_ASSIGN_OR_RETURN(spool_, Spool::Open(SpoolOptions::FromConfig(config_)));
  GEOSYNC_RETURN_IF_ERROR(FloorEmptySpoolAtSlot(config_, state_, *spool_));
  GEOSYNC_ASSIGN_OR_RETURN(tls_, TlsFor(config_, true));
  registry_ = std::make_unique<SiteRegistry>(AllowedSites(config_, state_));
  // Slot state and pg_current_wal_lsn() for the admin API and heartbeats, on
  // its own thread and connection, every 200 ms: heartbeats carry its
  // pg_current_wal_lsn(), which replicas measure a failover's potential loss
  // against.
  poller_ = std::make_unique<admin::SlotPoller>(config_.postgres.dsn, config_.postgres.slot,
                                                std::chrono::milliseconds(200));
  poller_->Start();
  return Status::Ok();
}

// The stream server listening, with the seed server behind it.
Status SourceRole::StartStreaming() {
  StreamServerOptions so = StreamServerOptions::FromConfig(config_, state_.epoch);
  so.tls = tls_;
  so.epoch_ends = state_.history;
  so.refusals = &refusals_;
  server_ = std::make_unique<StreamServer>(
      io_, so, spool_.get(), registry_.get(),
      [this] {
        // The primary's WAL position for heartbeats: the slot poller's
        // pg_current_wal_lsn() (1 s old at most) or what capture saw, if newer.
        Lsn seen = capture_ ? Lsn(capture_->stats().server_wal_end.load()) : Lsn();
        return std::max(seen, poller_->sample().current_wal_lsn);
      },
      [this](uint64_t epoch, const std::string& site) { OnHigherEpoch(epoch, site); });
  GEOSYNC_RETURN_IF_ERROR(server_->Listen());
  seed_server_ = std::make_unique<seed::SeedServer>(
      seed::SeedServerOptions::FromConfig(config_, state_.epoch), spool_.get(), registry_.get());
  server_->SetSeedHandler([this](const Hello& hello, PeerStream& stream) {
    return seed_server_->Serve(hello, stream);
  });
  return Status::Ok();
}

// Capture on its own thread into the spool; the control emitter; the
// stream server's accept loop.
void SourceRole::StartCapture() {
  sink_ = std::make_unique<SpoolSink>(spool_.get(), state_.epoch,
                                      [this](Position) { server_->NotifyDurable(); });
  if (config_.commit.policy == CommitPolicy::kSync) {
    sink_->SetSyncQuorum(
        [this] { return registry_->Quorum(config_.commit.sites, config_.commit.quorum); });
  }
  capture_ = std::make_unique<Capture>(capture_io_.get_executor(),
                                       CaptureOptions::FromConfig(config_), *sink_);
  emitter_ =
      std::make_unique<ControlEmitter>(ControlEmitterOptions::FromConfig(config_, state_.epoch));
  asio::co_spawn(capture_io_, capture_->Run(), [this](std::exception_ptr e, Status st) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        st = Status(Code::kIo, fmt::format("capture crashed: {}", ex.what()));
      }
    }
    capture_status_ = st;
    if (st.code() != Code::kCancelled) spdlog::error("capture stopped: {}", st.ToString());
    asio::post(io_, [this] { StopAll(); });
  });
  capture_thread_ = std::thread([this] { capture_io_.run(); });
  // A fenced source (switchover under way) emits nothing more: its spool
  // must end at the final marker.
  if (!state_.db_fenced) emitter_->Start();
  asio::co_spawn(io_, server_->AcceptLoop(), asio::detached);
}

void SourceRole::StartTimers() {
  Every(retention_, std::chrono::seconds(1), [this] {
    EnforceRetention(config_.spool.max_bytes, *spool_, *registry_);
    ++retention_runs_;
  });
  view_ = std::make_unique<SourceView>(SourceView{config_, state_, started_, fenced_, capture_,
                                                  *spool_, *registry_, *poller_, tracker_,
                                                  kSamplePeriod, retention_runs_});
  Every(sampler_, kSamplePeriod, [this] { tracker_.Observe(spool_->durable(), NowUs()); });
}

admin::AdminHandlers SourceRole::Handlers() {
  admin::AdminHandlers handlers;
  handlers.ready = [this] { return admin::SourceReadiness(view_->Snapshot()); };
  handlers.status = [this] {
    return WithPromotion(admin::StatusJson(view_->Snapshot()), control_);
  };
  handlers.metrics = [this] {
    return admin::MetricsText(view_->Snapshot()) + LinkRefusalMetricsText(refusals_.counts(), true);
  };
  AddVerifyActions(handlers, verify_job_, verify_mu_,
                   [this](const VerifyRequest& r, admin::HttpReply*) {
                     return VerifyJob::ForSource(config_.postgres.dsn, config_.postgres.publication,
                                                 state_.epoch, r);
                   });
  handlers.actions["drill/behind"] = [this](const admin::QueryParams& q) {
    return BehindAction(*spool_, q);
  };
  AddSourceActions(handlers, control_, *spool_, *emitter_, fence_thread_,
                   [this] { asio::post(io_, [this] { StopAll(); }); });
  return handlers;
}

void SourceRole::StartPeerWatch() {
  if (!topology_) return;
  watch_ = std::make_unique<PeerWatch>(
      *topology_, config_.site, state_.epoch,
      [this](const HigherEpoch& h) {
        asio::post(io_, [this, h] { OnHigherEpoch(h.epoch, h.site); });
      },
      std::chrono::seconds(3), &refusals_);
  watch_->Start();
}

void SourceRole::StopAll() {
  server_->Stop();
  asio::post(capture_io_, [this] { capture_->Stop(); });
  io_.stop();
}

void SourceRole::OnHigherEpoch(uint64_t epoch, const std::string& site) {
  // Callers only pass plausible epochs of authenticated sites; a fence is
  // persisted in state.json, so check the bound once more here.
  if (ClassifyEpoch(epoch, state_.epoch) != EpochClaim::kHigher) {
    spdlog::error("not fencing on site {}'s epoch {}: {}", site, epoch,
                  ImpossibleEpochReason(epoch, state_.epoch));
    return;
  }
  const SiteState now = control_.state();
  if (now.promotion_target == site && now.promotion_epoch == epoch &&
      now.promotion_final.lsn.valid()) {
    return;  // the switchover this site fenced itself for: demote follows
  }
  spdlog::critical(
      "site {} reports epoch {} > this source's {}: another site was promoted; this "
      "source stops shipping",
      site, epoch, state_.epoch);
  if (fenced_.exchange(true)) return;
  NextRole next;
  next.kind = NextRole::kFence;
  next.reason =
      fmt::format("site {} reports epoch {} > this source's {}", site, epoch, state_.epoch);
  (void)control_.Request(std::move(next));
  asio::post(io_, [this] { StopAll(); });
}

// Stops what runs and syncs the spool. `served` is the serving phase's
// error, if any; otherwise capture's, unless a role change was requested.
Status SourceRole::Shutdown(Status served) {
  if (watch_) watch_->Stop();
  if (fence_thread_.joinable()) fence_thread_.join();
  poller_->Stop();
  emitter_->Stop();
  asio::post(capture_io_, [this] { capture_->Stop(); });
  capture_thread_.join();
  Status synced = spool_->Sync();
  if (!synced.ok()) spdlog::error("final spool sync: {}", synced.ToString());
  if (!served.ok()) return served;
  if (control_.next().kind != NextRole::kExit) return Status::Ok();
  if (capture_status_.code() == Code::kCancelled) return Status::Ok();
  return capture_status_;
}

}  // namespace

Status RunSource(SiteControl& control) { return SourceRole(control).Run(); }

}  // namespace geosync
