// geosyncd's roles wired together. Source: Capture (own thread) -> SpoolSink
// -> spool -> StreamServer sessions; ControlEmitter for heartbeats and
// sequence snapshots; retention on a timer. Replica: Receiver -> spool ->
// Applier (own thread). Both serve the admin HTTP API when configured.
#include "agent/daemon.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/slot_poller.h"
#include "agent/admin/status_model.h"
#include "agent/pg/pg_checks.h"
#include "agent/pg/pg_conn.h"
#include "agent/pg/write_guard.h"
#include "agent/promote/admin_actions.h"
#include "agent/promote/peer_watch.h"
#include "agent/promote/site_control.h"
#include "agent/promote/site_ops.h"
#include "agent/promote/transitions.h"
#include "agent/replica/applier.h"
#include "agent/replica/receiver.h"
#include "agent/seed/replica_seed.h"
#include "agent/seed/seed_server.h"
#include "agent/source/capture.h"
#include "agent/source/control_emitter.h"
#include "agent/source/retention.h"
#include "agent/source/site_registry.h"
#include "agent/source/spool_sink.h"
#include "agent/source/stream_server.h"
#include "agent/state/state_file.h"
#include "agent/verify/drill_job.h"
#include "agent/verify/drill_log.h"
#include "agent/verify/verify_job.h"
#include "common/encoding.h"
#include "common/handshake.h"
#include "common/link_refusals.h"

namespace geosync {

Status CheckPostgres(const Config& config) { return CheckPostgresForRole(config); }

namespace {

Result<std::shared_ptr<asio::ssl::context>> TlsFor(const Config& config, bool server) {
  if (!config.tls.enabled) return std::shared_ptr<asio::ssl::context>();
  return MakeTlsContext(config.tls, server);
}

SpoolOptions SpoolOptionsFor(const Config& config) {
  SpoolOptions o;
  o.dir = config.spool.dir;
  o.segment_bytes = config.spool.segment_bytes;
  o.max_bytes = config.spool.max_bytes;
  return o;
}

// Runs `io` on this thread until SIGINT/SIGTERM, calling `stop` once.
void RunUntilSignal(asio::io_context& io, std::function<void()> stop) {
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, stopping", sig);
    stop();
  });
  io.run();
}

// A replica deletes segments applied and flushed on its database, oldest
// first, beyond what it keeps to serve its peers once promoted:
// spool.keep_applied_mb, at most half of spool.max_mb.
void ReleaseApplied(const Config& config, Spool& spool, Position flushed) {
  uint64_t keep = config.spool.keep_applied_bytes;
  if (config.spool.max_bytes > 0) keep = std::min(keep, config.spool.max_bytes / 2);
  if (!flushed.lsn.valid() || spool.size_bytes() <= keep) return;
  Status st = spool.ReleaseUpTo(flushed, keep);
  if (!st.ok()) spdlog::error("spool retention: {}", st.ToString());
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

admin::SiteIdentity IdentityOf(const Config& config, uint64_t epoch,
                               std::chrono::steady_clock::time_point started) {
  admin::SiteIdentity id;
  id.site = config.site;
  id.cluster_id = config.cluster_id;
  id.epoch = epoch;
  id.version = GEOSYNC_VERSION;
  id.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return id;
}

// The admin API's listener, token (admin.token_file: 0600, 32+ characters)
// and TLS context. Config errors name the key and the file.
Result<admin::AdminServerOptions> AdminOptionsFor(const Config& config) {
  admin::AdminServerOptions o;
  if (config.admin.listen) o.listen = *config.admin.listen;
  if (!config.admin.token_file.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(o.token, admin::ReadTokenFile(config.admin.token_file));
  }
  if (config.admin.tls.enabled) {
    GEOSYNC_ASSIGN_OR_RETURN(o.tls, admin::MakeAdminTlsContext(config.admin.tls));
  }
  return o;
}

// geosyncd asks its peers' admin APIs for their epoch (PeerWatch): https://
// peers are verified against the deployment CA, with the site's certificate
// as the client certificate.
void SetPeerClientTls(const Config& config) {
  admin::ClientTls t;
  t.ca_file = !config.admin.tls.ca_file.empty() ? config.admin.tls.ca_file : config.tls.ca_file;
  if (config.tls.enabled) {
    t.cert_file = config.tls.cert_file;
    t.key_file = config.tls.key_file;
  } else if (config.admin.tls.enabled) {
    t.cert_file = config.admin.tls.cert_file;
    t.key_file = config.admin.tls.key_file;
  }
  admin::SetDefaultClientTls(t);
}

// Serves the admin API when `admin.listen` is configured; nullptr otherwise.
Result<std::unique_ptr<admin::AdminServer>> StartAdmin(asio::io_context& io, const Config& config,
                                                       admin::AdminHandlers handlers) {
  if (!config.admin.listen) return std::unique_ptr<admin::AdminServer>();
  GEOSYNC_ASSIGN_OR_RETURN(admin::AdminServerOptions o, AdminOptionsFor(config));
  // Every role keeps when each kind of drill last passed here.
  auto passed = DrillLog::Read(config.state_dir);
  if (!passed.ok()) {
    spdlog::warn("{}; starting with an empty drill log", passed.status().ToString());
  }
  auto drills = std::make_shared<DrillLog>(
      config.state_dir, passed.ok() ? *passed : std::map<std::string, int64_t>{});
  handlers.actions["drill/passed"] = [drills](const admin::QueryParams& q) {
    auto it = q.find("kind");
    Status st = drills->Record(it == q.end() ? "" : it->second, std::time(nullptr));
    if (!st.ok()) {
      return admin::HttpReply{st.code() == Code::kInvalidArgument ? 400u : 500u,
                              "text/plain; charset=utf-8", st.ToString() + "\n"};
    }
    return admin::HttpReply{200, "text/plain; charset=utf-8", "recorded\n"};
  };
  if (handlers.metrics) {
    handlers.metrics = [inner = std::move(handlers.metrics), drills] {
      return inner() + drills->MetricsText();
    };
  }
  auto server = std::make_unique<admin::AdminServer>(io, o, std::move(handlers));
  GEOSYNC_RETURN_IF_ERROR(server->Listen());
  asio::co_spawn(io, server->AcceptLoop(), asio::detached);
  return server;
}

// Calls `tick` now and then every `period` on `io` until the timer dies.
void Every(asio::steady_timer& timer, std::chrono::milliseconds period,
           std::function<void()> tick) {
  tick();
  timer.expires_after(period);
  timer.async_wait([&timer, period, tick = std::move(tick)](auto ec) {
    if (!ec) Every(timer, period, tick);
  });
}

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
    auto topology = admin::LoadTopology(config.topology);
    if (topology.ok()) {
      for (const admin::TopologySite& s : topology->sites) add(s.name);
    } else {
      spdlog::warn("replica: the topology's sites do not vouch for the source: {}",
                   topology.status().ToString());
    }
  }
  return id;
}

// POST /admin/drill/behind?after=E@X/Y: the transactions (with row changes)
// and payload bytes the source holds after a site's durable position: what
// that site would lose if the primary were lost now (the drill's RPO).
admin::HttpReply BehindAction(Spool& spool, const admin::QueryParams& q) {
  auto it = q.find("after");
  auto after = Position::Parse(it == q.end() ? "" : it->second);
  if (!after.ok()) {
    return {400, "text/plain; charset=utf-8", "expected ?after=EPOCH@X/Y\n"};
  }
  auto reader = spool.ReadFrom(*after);
  if (!reader.ok()) return {409, "text/plain; charset=utf-8", reader.status().ToString() + "\n"};
  uint64_t txns = 0, bytes = 0;
  bool changes = false;
  PgTimestamp unit_commit = 0, oldest_commit = 0;
  while (true) {
    auto rec = (*reader)->Next();
    if (!rec.ok()) return {500, "text/plain; charset=utf-8", rec.status().ToString() + "\n"};
    if (!rec->has_value()) break;
    const SpoolRecord& r = **rec;
    bytes += r.payload.size();
    auto event = DecodeEvent(r.payload);
    if (event.ok() && (std::holds_alternative<RowChange>(*event) ||
                       std::holds_alternative<TruncateEvent>(*event))) {
      changes = true;
    }
    if (event.ok()) {
      if (const auto* b = std::get_if<BeginEvent>(&*event)) unit_commit = b->commit_time;
    }
    if (r.last_in_unit()) {
      if (changes && txns++ == 0) oldest_commit = unit_commit;
      changes = false;
    }
  }
  // Seconds agree with the count: how long ago (on this host's clock, where
  // the primary runs) the oldest of those transactions committed; 0 only
  // when there is none.
  nlohmann::json seconds = 0.0;
  if (txns > 0 && oldest_commit == 0) seconds = nullptr;  // no commit time: unknown
  if (txns > 0 && oldest_commit != 0) {
    const int64_t committed_us = oldest_commit + kPgEpochOffsetSeconds * 1'000'000;
    seconds = std::max<int64_t>(1, NowUs() - committed_us) / 1e6;
  }
  nlohmann::json doc = {
      {"after", after->ToString()}, {"transactions", txns}, {"bytes", bytes}, {"seconds", seconds}};
  return {200, "application/json", doc.dump() + "\n"};
}

// Figures for the source's /status and /metrics, read on the event loop.
struct SourceView {
  const Config& config;
  const SiteState& state;
  std::chrono::steady_clock::time_point started;
  const std::atomic<bool>& fenced;
  const std::unique_ptr<Capture>& capture;
  Spool& spool;
  SiteRegistry& registry;
  admin::SlotPoller& poller;
  admin::LagTracker& tracker;  // (spool durable, time) samples
  std::chrono::milliseconds sample_period;
  const std::atomic<uint64_t>& retention_runs;

  admin::LagFigures Lag(Position pos, Lsn wal, int64_t now) const {
    admin::LagFigures f;
    if (wal.valid() && pos.lsn.valid()) f.bytes = wal.BytesAfter(pos.lsn);
    if (pos.lsn.valid()) {
      f.seconds = tracker.LagSeconds(pos, now, sample_period.count() * 1000);
    }
    return f;
  }

  admin::SourceSnapshot Snapshot() const {
    admin::SourceSnapshot s;
    s.id = IdentityOf(config, state.epoch, started);
    s.fenced = fenced;
    s.slot_name = config.postgres.slot;
    admin::SlotSample slot = poller.sample();
    s.slot_polled = slot.polled;
    s.slot_active = slot.active;
    s.slot_confirmed_flush = slot.confirmed_flush;
    s.slot_restart_lsn = slot.restart_lsn;
    s.current_wal_lsn = slot.current_wal_lsn;
    s.slot_retained_wal_bytes = slot.retained_wal_bytes;
    s.slot_wal_status = slot.wal_status;
    s.slot_wal_keep_size_bytes = slot.wal_keep_size_bytes;
    s.wal_disk_free_bytes = slot.wal_disk_free_bytes;
    s.slot_error = slot.error;
    if (capture) {
      const CaptureStats& cs = capture->stats();
      s.server_wal_end = Lsn(cs.server_wal_end.load());
      s.confirmed_flush_sent = Lsn(cs.confirmed_flush.load());
      s.captured_txns = cs.transactions.load();
      s.captured_bytes = cs.bytes.load();
      s.messages = cs.messages.load();
      s.capture_reconnects = cs.reconnects.load();
      s.stream_starts = cs.stream_starts.load();
      s.streamed_txns = cs.streamed_transactions.load();
      s.stream_aborts = cs.stream_aborts.load();
      s.spilled_bytes = cs.spilled_bytes.load();
    }
    s.spool_bytes = spool.size_bytes();
    s.spool_durable = spool.durable();
    s.spool_oldest = spool.oldest();
    s.retention_runs = retention_runs.load();
    s.spool_write_error = spool.write_error();
    Lsn wal = std::max(s.current_wal_lsn, s.server_wal_end);
    int64_t now = NowUs();
    for (const SiteProgress& p : registry.Snapshot()) {
      admin::SourceSiteSnapshot x;
      x.site = p.site;
      x.connected = p.connected;
      x.remote = p.remote;
      x.received = p.received;
      x.durable = p.durable;
      x.applied = p.applied;
      x.received_lag = Lag(p.received, wal, now);
      x.durable_lag = Lag(p.durable, wal, now);
      x.applied_lag = Lag(p.applied, wal, now);
      x.dropped = p.dropped;
      x.last_error = p.last_error;
      if (p.last_seen_unix_us > 0) x.last_seen_age_s = (now - p.last_seen_unix_us) / 1e6;
      x.raw_bytes_out = p.raw_bytes_out;
      x.wire_bytes_out = p.wire_bytes_out;
      s.sites.push_back(std::move(x));
    }
    return s;
  }
};

// The status document with the site's promotion state added.
nlohmann::json WithPromotion(nlohmann::json doc, const SiteControl& control) {
  doc["promotion"] = admin::PromotionJson(PromotionOf(control));
  return doc;
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

Status RunSource(SiteControl& control) {
  const Config& config = control.config();
  const SiteState state = control.state();
  if (!config.listen) {
    return Status::Config(
        fmt::format("config {}: site {} is the source (state {}/state.json) but has no 'listen'",
                    config.path, config.site, config.state_dir));
  }
  LinkRefusals refusals;
  std::optional<admin::Topology> topology;
  if (!config.topology.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(topology, admin::LoadTopology(config.topology));
    // An old primary coming back after a failover stops before it ships.
    if (auto higher = FindHigherEpoch(*topology, config.site, state.epoch, &refusals)) {
      NextRole next;
      next.kind = NextRole::kFence;
      next.reason = fmt::format(
          "site {} is at epoch {} > this source's {}: another site was "
          "promoted while this one was away",
          higher->site, higher->epoch, state.epoch);
      GEOSYNC_RETURN_IF_ERROR(control.Request(std::move(next)));
      return Status::Ok();
    }
  }
  {
    // A promoted replica's config still says "replica": check as a source.
    Config as_source = config;
    as_source.role = Role::kSource;
    GEOSYNC_RETURN_IF_ERROR(CheckPostgresForRole(as_source));
  }
  const auto started = std::chrono::steady_clock::now();
  // No other site is ahead: application writes may go here. (A source whose
  // switchover fence is under way keeps its guard closed.)
  auto source_guard = [&]() -> std::optional<GuardRequest> {
    if (control.state().db_fenced) return std::nullopt;
    return GuardRequest{true, config.site, "source", config.site, state.epoch, ""};
  };
  if (auto open = source_guard()) {
    GEOSYNC_ASSIGN_OR_RETURN(PgConn guard_conn, ConnectGuardSession(config.postgres.dsn));
    GEOSYNC_ASSIGN_OR_RETURN(int guarded, SetWriteGuard(guard_conn, *open));
    spdlog::info(
        "write guard: site {} is the source at epoch {}; application writes allowed "
        "({} table(s) guarded for a restart)",
        config.site, state.epoch, guarded);
  }
  WriteGuardKeeper guard_keeper(config.postgres.dsn, source_guard, [&] {
    return !topology || !FindHigherEpoch(*topology, config.site, state.epoch, &refusals);
  });
  guard_keeper.Start();
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptionsFor(config)));
  GEOSYNC_RETURN_IF_ERROR(FloorEmptySpoolAtSlot(config, state, *spool));
  GEOSYNC_ASSIGN_OR_RETURN(auto tls, TlsFor(config, true));
  SiteRegistry registry(AllowedSites(config, state));
  // Slot state and pg_current_wal_lsn() for the admin API and heartbeats, on
  // its own thread and connection.
  // Every 200 ms: heartbeats carry its pg_current_wal_lsn(), which replicas
  // measure a failover's potential loss against.
  admin::SlotPoller poller(config.postgres.dsn, config.postgres.slot,
                           std::chrono::milliseconds(200));
  poller.Start();
  asio::io_context io;
  asio::io_context capture_io;
  std::unique_ptr<Capture> capture;
  std::atomic<bool> fenced{false};
  std::function<void()> stop_all;

  StreamServerOptions so;
  so.cluster_id = config.cluster_id;
  so.site = config.site;
  so.epoch = state.epoch;
  so.listen = *config.listen;
  so.tls = tls;
  so.compression_level = config.compression_level;
  so.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  so.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  so.bandwidth_bytes_per_sec = config.bandwidth_bytes_per_sec;
  so.epoch_ends = state.history;
  so.allow_plaintext = config.allow_plaintext_links;
  so.refusals = &refusals;
  auto on_higher_epoch = [&](uint64_t epoch, const std::string& site) {
    // Callers only pass plausible epochs of authenticated sites; a fence is
    // persisted in state.json, so check the bound once more here.
    if (ClassifyEpoch(epoch, state.epoch) != EpochClaim::kHigher) {
      spdlog::error("not fencing on site {}'s epoch {}: {}", site, epoch,
                    ImpossibleEpochReason(epoch, state.epoch));
      return;
    }
    const SiteState now = control.state();
    if (now.promotion_target == site && now.promotion_epoch == epoch &&
        now.promotion_final.lsn.valid()) {
      return;  // the switchover this site fenced itself for: demote follows
    }
    spdlog::critical(
        "site {} reports epoch {} > this source's {}: another site was promoted; this "
        "source stops shipping",
        site, epoch, state.epoch);
    if (fenced.exchange(true)) return;
    NextRole next;
    next.kind = NextRole::kFence;
    next.reason =
        fmt::format("site {} reports epoch {} > this source's {}", site, epoch, state.epoch);
    (void)control.Request(std::move(next));
    asio::post(io, [&] { stop_all(); });
  };
  StreamServer server(
      io, so, spool.get(), &registry,
      [&] {
        // The primary's WAL position for heartbeats: the slot poller's
        // pg_current_wal_lsn() (1 s old at most) or what capture saw, if newer.
        Lsn seen = capture ? Lsn(capture->stats().server_wal_end.load()) : Lsn();
        return std::max(seen, poller.sample().current_wal_lsn);
      },
      on_higher_epoch);
  GEOSYNC_RETURN_IF_ERROR(server.Listen());
  seed::SeedServerOptions seed_options;
  seed_options.conninfo = config.postgres.dsn;
  seed_options.publication = config.postgres.publication;
  seed_options.epoch = state.epoch;
  seed_options.chunk_bytes = config.seed.chunk_bytes;
  seed_options.bandwidth_bytes_per_sec = config.bandwidth_bytes_per_sec;
  seed_options.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  seed::SeedServer seed_server(seed_options, spool.get(), &registry);
  server.SetSeedHandler(
      [&](const Hello& hello, PeerStream& stream) { return seed_server.Serve(hello, stream); });

  SpoolSink sink(spool.get(), state.epoch, [&](Position) { server.NotifyDurable(); });
  CaptureOptions co;
  co.conninfo = config.postgres.dsn;
  co.slot = config.postgres.slot;
  co.publication = config.postgres.publication;
  co.tables = config.postgres.tables;
  co.binary = config.postgres.binary;
  co.streaming = config.postgres.streaming;
  co.spill_dir = config.spool.dir + "/stream-spill";
  if (config.commit.policy == CommitPolicy::kSync) {
    sink.SetSyncQuorum([&] { return registry.Quorum(config.commit.sites, config.commit.quorum); });
    co.status_interval = std::chrono::milliseconds(10);
  }
  capture = std::make_unique<Capture>(capture_io.get_executor(), co, sink);

  ControlEmitterOptions eo;
  eo.conninfo = config.postgres.dsn;
  eo.site = config.site;
  eo.epoch = state.epoch;
  eo.heartbeat_interval = std::chrono::milliseconds(config.heartbeat_ms);
  ControlEmitter emitter(eo);

  Status capture_status;
  stop_all = [&] {
    server.Stop();
    asio::post(capture_io, [&] { capture->Stop(); });
    io.stop();
  };
  asio::co_spawn(capture_io, capture->Run(), [&](std::exception_ptr e, Status st) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        st = Status(Code::kIo, fmt::format("capture crashed: {}", ex.what()));
      }
    }
    capture_status = st;
    if (st.code() != Code::kCancelled) spdlog::error("capture stopped: {}", st.ToString());
    asio::post(io, [&] { stop_all(); });
  });
  std::thread capture_thread([&] { capture_io.run(); });
  // A fenced source (switchover under way) emits nothing more: its spool
  // must end at the final marker.
  if (!state.db_fenced) emitter.Start();

  asio::co_spawn(io, server.AcceptLoop(), asio::detached);
  asio::steady_timer retention(io);
  std::atomic<uint64_t> retention_runs{0};
  std::function<void()> retention_tick = [&] {
    EnforceRetention(config.spool.max_bytes, *spool, registry);
    ++retention_runs;
    retention.expires_after(std::chrono::seconds(1));
    retention.async_wait([&](auto ec) {
      if (!ec) retention_tick();
    });
  };
  retention_tick();

  admin::LagTracker tracker;
  const auto sample_period = std::chrono::milliseconds(100);
  SourceView view{config,   state,  started, fenced,        capture,       *spool,
                  registry, poller, tracker, sample_period, retention_runs};
  asio::steady_timer sampler(io);
  Every(sampler, sample_period, [&] { tracker.Observe(spool->durable(), NowUs()); });
  admin::AdminHandlers handlers;
  handlers.ready = [&] { return admin::SourceReadiness(view.Snapshot()); };
  handlers.status = [&] { return WithPromotion(admin::StatusJson(view.Snapshot()), control); };
  handlers.metrics = [&] {
    return admin::MetricsText(view.Snapshot()) + LinkRefusalMetricsText(refusals.counts(), true);
  };
  std::shared_ptr<VerifyJob> verify_job;
  std::mutex verify_mu;
  AddVerifyActions(handlers, verify_job, verify_mu, [&](const VerifyRequest& r, admin::HttpReply*) {
    return VerifyJob::ForSource(config.postgres.dsn, config.postgres.publication, state.epoch, r);
  });
  handlers.actions["drill/behind"] = [&](const admin::QueryParams& q) {
    return BehindAction(*spool, q);
  };
  std::thread fence_thread;
  AddSourceActions(handlers, control, *spool, emitter, fence_thread,
                   [&] { asio::post(io, [&] { stop_all(); }); });
  auto admin_server = StartAdmin(io, config, std::move(handlers));
  if (!admin_server.ok()) {
    emitter.Stop();
    asio::post(capture_io, [&] { capture->Stop(); });
    capture_thread.join();
    return admin_server.status();
  }
  std::unique_ptr<PeerWatch> watch;
  if (topology) {
    watch = std::make_unique<PeerWatch>(
        *topology, config.site, state.epoch,
        [&](const HigherEpoch& h) { asio::post(io, [&, h] { on_higher_epoch(h.epoch, h.site); }); },
        std::chrono::seconds(3), &refusals);
    watch->Start();
  }
  RunUntilSignal(io, stop_all);

  if (watch) watch->Stop();
  if (fence_thread.joinable()) fence_thread.join();
  poller.Stop();
  emitter.Stop();
  asio::post(capture_io, [&] { capture->Stop(); });
  capture_thread.join();
  Status synced = spool->Sync();
  if (!synced.ok()) spdlog::error("final spool sync: {}", synced.ToString());
  if (control.next().kind != NextRole::kExit) return Status::Ok();
  if (capture_status.code() == Code::kCancelled) return Status::Ok();
  return capture_status;
}

// The replica's apply thread: Applier::Run() again after a fatal error, with
// a backoff that POST /admin/apply/resume cuts short. Records the error
// while apply makes no progress past it.
struct ApplyControl {
  std::mutex mu;
  std::condition_variable cv;
  bool wake = false;
  bool waiting = false;  // in the backoff after an error
  std::string error;
  Position error_at;  // applied() when the error happened
  uint64_t failures = 0;

  void Stop(std::atomic<bool>& stopping) {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
  }
};

void RunApplyLoop(Applier& applier, ApplyControl& control, std::atomic<bool>& stopping) {
  auto backoff = std::chrono::seconds(1);
  while (!stopping) {
    Status st = applier.Run();
    if (stopping) break;
    spdlog::error(
        "apply stopped: {}; receiving into the spool continues; retrying in {} s (or on POST "
        "/admin/apply/resume)",
        st.ToString(), backoff.count());
    std::unique_lock lock(control.mu);
    control.error = st.ToString();
    control.error_at = applier.applied();
    control.failures++;
    control.waiting = true;
    control.cv.wait_for(lock, backoff, [&] { return stopping || control.wake; });
    control.waiting = false;
    const bool woken = control.wake;
    control.wake = false;
    backoff = woken ? std::chrono::seconds(1) : std::min(backoff * 2, std::chrono::seconds(60));
  }
}

admin::HttpReply SkipAction(Applier& applier, const admin::QueryParams& q) {
  auto it = q.find("xid");
  uint32_t xid = 0;
  const char* end = nullptr;
  if (it != q.end()) {
    end = it->second.data() + it->second.size();
    auto [p, ec] = std::from_chars(it->second.data(), end, xid);
    if (ec != std::errc() || p != end || xid == 0) end = nullptr;
  }
  if (!end) return {400, "text/plain; charset=utf-8", "expected ?xid=N, a transaction id > 0\n"};
  applier.SkipXid(xid);
  return {200, "text/plain; charset=utf-8",
          fmt::format("xid {} will be skipped once when it is next to apply; POST "
                      "/admin/apply/resume to retry now\n",
                      xid)};
}

admin::HttpReply ResumeAction(ApplyControl& control) {
  {
    std::lock_guard lock(control.mu);
    if (!control.waiting) {
      return {409, "text/plain; charset=utf-8", "apply is running: nothing to resume\n"};
    }
    control.wake = true;
  }
  control.cv.notify_all();
  spdlog::info("apply: resumed on DBA request");
  return {200, "text/plain; charset=utf-8", "apply resumes now\n"};
}

// Waits until the applier has applied everything the spool holds durably;
// an apply error or the deadline ends the wait with that error.
Status WaitAllApplied(Applier& applier, Spool& spool, ApplyControl& apply,
                      std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    const Position durable = spool.durable(), applied = applier.applied();
    if (applied >= durable) return Status::Ok();
    {
      std::lock_guard lock(apply.mu);
      if (apply.waiting) {
        return Status::InvalidArgument(fmt::format("apply stopped at {} of {} received: {}",
                                                   applied.ToString(), durable.ToString(),
                                                   apply.error));
      }
    }
    if (std::chrono::steady_clock::now() > until) {
      return Status::Timeout(fmt::format("apply reached {} of {} received in {} s",
                                         applied.ToString(), durable.ToString(), deadline.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Figures for the replica's /status and /metrics, read on the event loop.
struct ReplicaView {
  const Config& config;
  const Endpoint& upstream;
  Receiver& receiver;
  Applier& applier;
  Spool& spool;
  ApplyControl& control;
  admin::LagTracker& tracker;
  admin::LagTracker& primary_tracker;  // (primary WAL, source time) from heartbeats
  admin::TxnDensity& density;
  admin::RateMeter& rate;
  std::chrono::steady_clock::time_point started;
  seed::ReplicaSeed& seed;

  // What promoting this site would lose, as of the last heartbeat: the
  // primary's WAL beyond what it holds, and since when (source clock), so
  // the figures stop at the source's last word instead of growing with the
  // time since (issue #25: the age was added twice and kept growing).
  admin::PotentialLoss Loss(const ReceiverStatus& rs, Position durable) const {
    admin::PotentialLoss loss;
    if (rs.local_time_us == 0) return loss;  // no heartbeat since the role started
    const Position primary{receiver.epoch(), rs.primary_wal_lsn};
    if (rs.primary_wal_lsn.valid() && durable.lsn.valid() && durable.epoch == primary.epoch) {
      loss.bytes = rs.primary_wal_lsn.BytesAfter(durable.lsn);
    }
    loss.seconds = primary_tracker.LagSeconds(durable, rs.source_time_us, 0);
    if (auto per_byte = density.PerByte()) loss.transactions_per_mb = *per_byte * 1e6;
    loss.transactions = admin::TransactionsIn(loss.bytes, density.PerByte());
    return loss;
  }

  admin::ReplicaSnapshot Snapshot() const {
    admin::ReplicaSnapshot s;
    s.id = IdentityOf(config, receiver.epoch(), started);
    ReceiverStatus rs = receiver.status();
    s.connected = rs.connected;
    s.source_site = rs.source_site;
    s.upstream = fmt::format("{}:{}", upstream.host, upstream.port);
    s.durable = std::max(rs.durable, spool.durable());
    s.received = std::max(rs.received, s.durable);
    s.applied = applier.applied();
    s.primary_wal_lsn = rs.primary_wal_lsn;
    const int64_t now = NowUs();
    if (rs.local_time_us > 0) s.heartbeat_age_s = (now - rs.local_time_us) / 1e6;
    // The source's clock now, as carried by its last heartbeat: no clock skew.
    const int64_t source_now = rs.source_time_us + (now - rs.local_time_us);
    const int64_t grace = int64_t{config.heartbeat_ms} * 1000;
    auto lag = [&](Position pos) {
      admin::LagFigures f;
      if (rs.primary_wal_lsn.valid() && pos.lsn.valid()) {
        f.bytes = rs.primary_wal_lsn.BytesAfter(pos.lsn);
      }
      f.seconds = tracker.LagSeconds(pos, source_now, grace);
      return f;
    };
    s.received_lag = lag(s.received);
    s.durable_lag = lag(s.durable);
    s.applied_lag = lag(s.applied);
    s.potential_loss = Loss(rs, s.durable);
    s.received_txns = rs.units;
    s.spool_bytes = spool.size_bytes();
    s.spool_oldest = spool.oldest();
    s.spool_write_error = spool.write_error();
    s.receiver_error = rs.last_error;
    {
      std::lock_guard lock(control.mu);
      // An error stays current until apply gets past the point where it stopped.
      if (!control.error.empty() && s.applied == control.error_at) s.apply_error = control.error;
      s.apply_running = !control.waiting;
      s.apply_failures = control.failures;
    }
    s.raw_bytes_in = rs.raw_bytes_in;
    s.wire_bytes_in = rs.wire_bytes_in;
    s.frames = rs.frames;
    s.records = rs.records;
    s.receiver_reconnects = rs.reconnects;
    Applier::Stats as = applier.stats();
    s.txns = as.txns;
    s.changes = as.changes;
    s.groups = as.groups;
    s.apply_bytes = as.bytes;
    s.skipped = as.skipped;
    s.apply_reconnects = as.reconnects;
    s.batch_retries = as.batch_retries;
    s.collapsed = as.collapsed;
    s.collapse_fallbacks = as.collapse_fallbacks;
    s.ddl_refused = as.ddl_refused;
    s.apply_retrying = as.retrying;
    s.apply_rate = rate.PerSecond();
    s.seed = seed.Snapshot();
    return s;
  }
};

// A seed requested through POST /admin/seed reruns this role, which then
// seeds before streaming.
Status RunReplica(SiteControl& control) {
  const Config& config = control.config();
  SiteState state = control.state();
  const auto started = std::chrono::steady_clock::now();
  if (!state.upstream && !config.upstream) {
    return Status::Config(fmt::format("config {}: a replica needs 'upstream'", config.path));
  }
  const Endpoint upstream = state.upstream ? *state.upstream : *config.upstream;
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptionsFor(config)));
  GEOSYNC_ASSIGN_OR_RETURN(auto tls, TlsFor(config, false));
  asio::io_context io;
  LinkRefusals refusals;
  const SourceIdentity source_identity = SourceIdentityFor(config, state);
  seed::ReplicaSeed seed(
      config, &state, spool.get(), tls,
      [&](const std::function<void(SiteState&)>& change) { return control.Update(change); });
  seed.SetSourceIdentity(source_identity.expected, source_identity.sites, &refusals);
  const bool must_seed = seed.Needed();
  // Applications write at the source only; apply and seed pass the guard.
  // The refusal names the source: the one streaming to this site, else the
  // one a promotion named.
  std::function<std::string()> connected_source = [] { return std::string(); };
  auto replica_guard = [&]() -> std::optional<GuardRequest> {
    const SiteState now = control.state();
    std::string source = connected_source();
    if (source.empty()) source = now.source_site;
    if (source.empty()) source = source_identity.expected;
    return GuardRequest{false, config.site, "replica", source, now.epoch, ""};
  };
  {
    auto guard_conn = ConnectGuardSession(config.postgres.dsn);
    Status st = guard_conn.status();
    if (st.ok()) st = SetWriteGuard(*guard_conn, *replica_guard()).status();
    if (!st.ok()) spdlog::warn("write guard: {} (retrying every second)", st.ToString());
  }

  ApplierOptions ao;
  ao.conninfo = config.postgres.dsn;
  ao.origin_name_prefix = "geosync_" + config.cluster_id;
  ao.batch = config.apply;
  Applier applier(ao, spool.get());
  std::atomic<bool> stopping{false};
  ApplyControl apply_control;
  std::thread apply_thread;  // started once any seed is done

  ReceiverOptions ro;
  ro.cluster_id = config.cluster_id;
  ro.site = config.site;
  ro.upstream = upstream;
  ro.expected_source = source_identity.expected;
  ro.deployment_sites = source_identity.sites;
  ro.refusals = &refusals;
  ro.tls = tls;
  ro.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  ro.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  Receiver receiver(
      io.get_executor(), ro, spool.get(), state.epoch, [&] { return applier.applied(); },
      [&] { return applier.applied_commit_time(); }, [&] { applier.NotifyDurable(); },
      [&](uint64_t epoch) { return control.Update([&](SiteState& s) { s.epoch = epoch; }); });
  connected_source = [&] { return receiver.status().source_site; };
  WriteGuardKeeper guard_keeper(config.postgres.dsn, replica_guard, nullptr);
  guard_keeper.Start();
  admin::LagTracker tracker;  // (source_commit, source time) from heartbeats
  admin::LagTracker primary_tracker;
  admin::TxnDensity density;
  admin::RateMeter apply_rate;
  ReplicaView view{config,  upstream,        receiver, applier,    *spool,  apply_control,
                   tracker, primary_tracker, density,  apply_rate, started, seed};
  asio::steady_timer sampler(io);
  int64_t last_heartbeat_us = 0;
  Every(sampler, std::chrono::milliseconds(100), [&] {
    ReceiverStatus rs = receiver.status();
    if (rs.local_time_us != last_heartbeat_us) {
      last_heartbeat_us = rs.local_time_us;
      tracker.Observe(rs.source_commit, rs.source_time_us);
      primary_tracker.Observe(Position{receiver.epoch(), rs.primary_wal_lsn}, rs.source_time_us);
    }
    density.Observe(rs.received.lsn, rs.units, NowUs());
    apply_rate.Observe(applier.stats().txns, NowUs());
  });
  asio::steady_timer retention(io);
  Every(retention, std::chrono::seconds(1),
        [&] { ReleaseApplied(config, *spool, applier.flushed()); });
  admin::AdminHandlers handlers;
  handlers.ready = [&] {
    return admin::ReplicaReadiness(view.Snapshot(), config.admin.ready_max_lag_s);
  };
  handlers.status = [&] { return WithPromotion(admin::StatusJson(view.Snapshot()), control); };
  handlers.metrics = [&] {
    return admin::MetricsText(view.Snapshot()) + LinkRefusalMetricsText(refusals.counts(), false);
  };
  handlers.actions["apply/skip"] = [&](const admin::QueryParams& q) {
    return SkipAction(applier, q);
  };
  handlers.actions["apply/resume"] = [&](const admin::QueryParams&) {
    return ResumeAction(apply_control);
  };
  AddReplicaActions(handlers, control, [&] { receiver.Stop(); });
  std::shared_ptr<VerifyJob> verify_job;
  std::mutex verify_mu;
  AddVerifyActions(
      handlers, verify_job, verify_mu,
      [&](const VerifyRequest& r, admin::HttpReply* error) {
        std::unique_ptr<VerifyJob> job;
        if (!r.position.lsn.valid() || r.tables.empty()) {
          *error = {400, "text/plain; charset=utf-8",
                    "a replica verifies at ?position=E@X/Y over ?tables=...\n"};
          return job;
        }
        return VerifyJob::ForReplica(config.postgres.dsn, &applier, r);
      },
      [&] {
        const Position a = applier.applied();
        applier.HoldBefore(Position{a.epoch, Lsn(a.lsn.value() + 1)});
      },
      [&] { applier.ReleaseHold(); });
  std::shared_ptr<DrillJob> drill_job;
  std::mutex drill_mu;
  AddDrillActions(handlers, drill_job, drill_mu, config.postgres.dsn, &applier, config.state_dir);
  asio::steady_timer reseed_timer(io);
  handlers.actions["seed"] = [&](const admin::QueryParams&) {
    admin::HttpReply reply = seed.Request();
    if (reply.status == 202) {
      // Let the reply go out, then run the replica role again to seed.
      NextRole rerun;
      rerun.kind = NextRole::kRerun;
      (void)control.Request(rerun);
      reseed_timer.expires_after(std::chrono::milliseconds(200));
      reseed_timer.async_wait([&](auto ec) {
        if (ec) return;
        receiver.Stop();
        io.stop();
      });
    }
    return reply;
  };
  auto admin_server = StartAdmin(io, config, std::move(handlers));
  if (!admin_server.ok()) return admin_server.status();

  Status receiver_status;
  auto start_streaming = [&] {
    apply_thread = std::thread([&] { RunApplyLoop(applier, apply_control, stopping); });
    asio::co_spawn(io, receiver.Run(), [&](std::exception_ptr e, Status st) {
      if (e) std::rethrow_exception(e);
      receiver_status = st;
      if (st.code() != Code::kCancelled) spdlog::error("receiver stopped: {}", st.ToString());
      io.stop();
    });
  };
  // A seed runs on its own thread while the admin API serves its progress;
  // a half-seeded site never applies or streams.
  std::thread seed_thread;
  if (must_seed) {
    seed_thread = std::thread([&] {
      Status st = seed.Run();
      asio::post(io, [&, st] {
        if (st.ok()) {
          start_streaming();
        } else if (st.code() != Code::kCancelled) {
          receiver_status = st;
          io.stop();
        }
      });
    });
  } else {
    start_streaming();
  }
  RunUntilSignal(io, [&] {
    seed.Stop();
    receiver.Stop();
    io.stop();
  });
  {
    std::lock_guard lock(verify_mu);
    verify_job.reset();  // a verify's hold must not outlive the role
  }
  {
    std::lock_guard lock(drill_mu);
    drill_job.reset();  // waits for a running drill to roll back
  }
  if (control.next().kind == NextRole::kPromote) {
    // Everything received must be applied before this site takes writes.
    Status caught = WaitAllApplied(applier, *spool, apply_control, std::chrono::seconds(120));
    if (!caught.ok()) {
      spdlog::error("promotion refused: {}", caught.ToString());
      control.ClearNext();
      (void)control.Update([&](SiteState& s) { s.promotion_error = caught.ToString(); });
      NextRole rerun;
      rerun.kind = NextRole::kRerun;
      (void)control.Request(rerun);
    }
  }
  seed.Stop();
  if (seed_thread.joinable()) seed_thread.join();
  apply_control.Stop(stopping);
  applier.Stop();
  if (apply_thread.joinable()) apply_thread.join();
  if (receiver_status.code() == Code::kCancelled || receiver_status.ok()) return Status::Ok();
  return receiver_status;
}

// A site fenced because a higher epoch exists: it keeps its database
// read-only (retrying until PostgreSQL answers), ships and applies nothing,
// and serves the admin API so that status shows why and rejoin can run.
Status RunFenced(SiteControl& control) {
  const Config& config = control.config();
  const auto started = std::chrono::steady_clock::now();
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptionsFor(config)));
  asio::io_context io;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread fencer([&] {
    std::unique_lock lock(mu);
    while (!stopping && !control.state().db_fenced) {
      lock.unlock();
      auto conn = promote::ConnectAdmin(config.postgres.dsn);
      Status st = conn.status();
      const SiteState now = control.state();
      GuardRequest guard{false, config.site, "fenced", "", now.epoch, now.fence_reason};
      if (st.ok()) st = promote::FenceDatabase(*conn, guard).status();
      if (st.ok()) st = control.Update([](SiteState& s) { s.db_fenced = true; });
      if (!st.ok()) spdlog::warn("fenced site: cannot fence the database yet: {}", st.ToString());
      lock.lock();
      cv.wait_for(lock, std::chrono::seconds(2), [&] { return stopping; });
    }
  });
  auto snapshot = [&] {
    const SiteState s = control.state();
    admin::FencedSnapshot f;
    f.id = IdentityOf(config, s.epoch, started);
    f.reason = s.fence_reason;
    f.spool_bytes = spool->size_bytes();
    f.spool_oldest = spool->oldest();
    f.spool_durable = spool->durable();
    return f;
  };
  admin::AdminHandlers handlers;
  handlers.ready = [&] {
    return admin::Readiness{false, "fenced: " + control.state().fence_reason};
  };
  handlers.status = [&] { return WithPromotion(admin::StatusJson(snapshot()), control); };
  handlers.metrics = [&] { return admin::MetricsText(snapshot()); };
  AddRejoinActions(handlers, control, *spool, [&] { asio::post(io, [&] { io.stop(); }); });
  auto admin_server = StartAdmin(io, config, std::move(handlers));
  Status result = admin_server.status();
  if (result.ok()) RunUntilSignal(io, [&] { io.stop(); });
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  fencer.join();
  return result;
}

Status ChangeRole(SiteControl& control, const NextRole& next) {
  switch (next.kind) {
    case NextRole::kExit:
    case NextRole::kRerun:
      return Status::Ok();
    case NextRole::kPromote:
      return Promote(control, next);
    case NextRole::kDemote:
      return Demote(control, next);
    case NextRole::kFence:
      return FenceStale(control, next.reason);
    case NextRole::kUnfence:
      return Unfence(control);
  }
  return Status::Ok();
}

}  // namespace

Status CheckAdminSetup(const Config& config) {
  if (!config.admin.listen) return Status::Ok();
  return AdminOptionsFor(config).status();
}

Status RunDaemon(const Config& config) {
  SetPeerClientTls(config);
  GEOSYNC_ASSIGN_OR_RETURN(SiteState initial, LoadOrInitSiteState(config));
  SiteControl control(config, std::move(initial));
  while (true) {
    const SiteState state = control.state();
    spdlog::info("geosyncd {} site {} of cluster {}: role {}, epoch {}", GEOSYNC_VERSION,
                 config.site, config.cluster_id,
                 state.fenced ? "fenced" : (state.role == Role::kSource ? "source" : "replica"),
                 state.epoch);
    Status st;
    if (state.fenced) {
      st = RunFenced(control);
    } else if (state.role == Role::kSource) {
      st = RunSource(control);
    } else {
      st = RunReplica(control);
    }
    const NextRole next = control.next();
    control.ClearNext();
    if (next.kind == NextRole::kExit) return st;
    if (!st.ok()) spdlog::warn("role ended with {} before the role change", st.ToString());
    Status changed = ChangeRole(control, next);
    control.SetStep("");
    if (!changed.ok()) {
      spdlog::error("role change failed: {}; the site keeps its role (run the command again)",
                    changed.ToString());
      (void)control.Update([&](SiteState& s) { s.promotion_error = changed.ToString(); });
      // Do not spin on a failure that will recur at once.
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace geosync
