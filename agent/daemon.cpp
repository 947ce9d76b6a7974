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

#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/pg/pg_conn.h"
#include "agent/replica/applier.h"
#include "agent/replica/receiver.h"
#include "agent/source/capture.h"
#include "agent/source/control_emitter.h"
#include "agent/source/site_registry.h"
#include "agent/source/spool_sink.h"
#include "agent/source/stream_server.h"
#include "agent/state/state_file.h"

namespace geosync {

Status CheckPostgres(const Config& config) {
  // Bound the connection attempt unless the user chose a timeout.
  setenv("PGCONNECT_TIMEOUT", "5", /*overwrite=*/0);
  auto conn = PgConn::Connect(config.postgres.dsn);
  if (!conn.ok()) {
    return conn.status().WithContext(fmt::format("site {} (config {})", config.site, config.path));
  }
  if (config.role == Role::kSource) {
    GEOSYNC_ASSIGN_OR_RETURN(std::string level, conn->QueryValue("SHOW wal_level"));
    if (level != "logical") {
      return Status::Config(fmt::format(
          "PostgreSQL of source site {} has wal_level = {}: set wal_level = logical in "
          "postgresql.conf and restart it",
          config.site, level));
    }
  }
  return Status::Ok();
}

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

// Deletes spool segments every site has acknowledged; when the spool is over
// its cap, drops the slowest site from retention (it will need a re-seed).
void EnforceRetention(const Config& config, Spool& spool, SiteRegistry& registry) {
  if (config.spool.max_bytes > 0) {
    while (spool.size_bytes() >= config.spool.max_bytes) {
      std::string slowest = registry.Slowest();
      if (slowest.empty()) break;
      std::string why = fmt::format(
          "dropped from retention: the spool reached its cap of {} MB (spool.max_mb) while "
          "site {} lagged; it needs a re-seed (geosyncctl seed --site {})",
          config.spool.max_bytes >> 20, slowest, slowest);
      spdlog::error("SITE {} {}", slowest, why);
      registry.Drop(slowest, why);
      Position floor = registry.RetentionFloor();
      Status st = spool.ReleaseUpTo(floor.lsn.valid() ? floor : spool.last_appended());
      if (!st.ok()) spdlog::error("retention: {}", st.ToString());
      if (!floor.lsn.valid()) break;
    }
  }
  Position floor = registry.RetentionFloor();
  if (floor.lsn.valid()) {
    Status st = spool.ReleaseUpTo(floor);
    if (!st.ok()) spdlog::error("retention: {}", st.ToString());
  }
}

Status RunSource(const Config& config, SiteState state) {
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptionsFor(config)));
  GEOSYNC_ASSIGN_OR_RETURN(auto tls, TlsFor(config, true));
  SiteRegistry registry(config.sites);
  asio::io_context io;
  asio::io_context capture_io;
  std::unique_ptr<Capture> capture;
  std::atomic<bool> fenced{false};

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
  StreamServer server(
      io, so, spool.get(), &registry,
      [&] { return capture ? Lsn(capture->stats().server_wal_end.load()) : Lsn(); },
      [&](uint64_t epoch, const std::string& site) {
        spdlog::critical(
            "site {} reports epoch {} > this source's {}: another site was promoted; this "
            "source stops shipping",
            site, epoch, state.epoch);
        fenced = true;
        if (capture) asio::post(capture_io, [&] { capture->Stop(); });
      });
  GEOSYNC_RETURN_IF_ERROR(server.Listen());

  SpoolSink sink(spool.get(), state.epoch, [&](Position) { server.NotifyDurable(); });
  CaptureOptions co;
  co.conninfo = config.postgres.dsn;
  co.slot = config.postgres.slot;
  co.publication = config.postgres.publication;
  co.tables = config.postgres.tables;
  co.binary = config.postgres.binary;
  if (config.commit.policy == CommitPolicy::kSync) {
    sink.SetSyncQuorum(
        [&] { return registry.Quorum(config.commit.sites, config.commit.quorum); });
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
  auto stop_all = [&] {
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
  emitter.Start();

  asio::co_spawn(io, server.AcceptLoop(), asio::detached);
  asio::steady_timer retention(io);
  std::function<void()> retention_tick = [&] {
    EnforceRetention(config, *spool, registry);
    retention.expires_after(std::chrono::seconds(1));
    retention.async_wait([&](auto ec) {
      if (!ec) retention_tick();
    });
  };
  retention_tick();
  RunUntilSignal(io, stop_all);

  emitter.Stop();
  asio::post(capture_io, [&] { capture->Stop(); });
  capture_thread.join();
  Status synced = spool->Sync();
  if (!synced.ok()) spdlog::error("final spool sync: {}", synced.ToString());
  if (fenced) return Status::Fenced("a site with a higher epoch exists; this source stopped");
  if (capture_status.code() == Code::kCancelled) return Status::Ok();
  return capture_status;
}

Status RunReplica(const Config& config, SiteState state) {
  if (!config.upstream) {
    return Status::Config(fmt::format("config {}: a replica needs 'upstream'", config.path));
  }
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptionsFor(config)));
  GEOSYNC_ASSIGN_OR_RETURN(auto tls, TlsFor(config, false));
  asio::io_context io;

  ApplierOptions ao;
  ao.conninfo = config.postgres.dsn;
  ao.origin_name_prefix = "geosync_" + config.cluster_id;
  ao.batch = config.apply;
  Applier applier(ao, spool.get());
  std::atomic<bool> stopping{false};
  std::thread apply_thread([&] {
    auto backoff = std::chrono::seconds(1);
    while (!stopping) {
      Status st = applier.Run();
      if (stopping) break;
      spdlog::error("apply stopped: {}; receiving into the spool continues; retrying in {} s",
                    st.ToString(), backoff.count());
      std::mutex m;
      std::unique_lock lock(m);
      for (int i = 0; i < backoff.count() * 10 && !stopping; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      backoff = std::min(backoff * 2, std::chrono::seconds(60));
    }
  });

  ReceiverOptions ro;
  ro.cluster_id = config.cluster_id;
  ro.site = config.site;
  ro.upstream = *config.upstream;
  ro.tls = tls;
  ro.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  ro.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  Receiver receiver(
      io.get_executor(), ro, spool.get(), state.epoch, [&] { return applier.applied(); },
      [&] { return applier.applied_commit_time(); }, [&] { applier.NotifyDurable(); },
      [&](uint64_t epoch) {
        state.epoch = epoch;
        return WriteSiteState(config.state_dir, state);
      });
  Status receiver_status;
  asio::co_spawn(io, receiver.Run(), [&](std::exception_ptr e, Status st) {
    if (e) std::rethrow_exception(e);
    receiver_status = st;
    if (st.code() != Code::kCancelled) spdlog::error("receiver stopped: {}", st.ToString());
    io.stop();
  });
  RunUntilSignal(io, [&] {
    receiver.Stop();
    io.stop();
  });
  stopping = true;
  applier.Stop();
  apply_thread.join();
  if (receiver_status.code() == Code::kCancelled || receiver_status.ok()) return Status::Ok();
  return receiver_status;
}

}  // namespace

Status RunDaemon(const Config& config) {
  GEOSYNC_ASSIGN_OR_RETURN(SiteState state, LoadOrInitSiteState(config));
  if (state.fenced) {
    return Status::Fenced(fmt::format(
        "site {} is fenced ({}): it will not ship or apply until `geosyncctl rejoin --site {}`",
        config.site, state.fence_reason, config.site));
  }
  spdlog::info("geosyncd {} site {} of cluster {}: role {}, epoch {}", GEOSYNC_VERSION,
               config.site, config.cluster_id, state.role == Role::kSource ? "source" : "replica",
               state.epoch);
  if (state.role == Role::kSource) return RunSource(config, state);
  return RunReplica(config, state);
}

}  // namespace geosync
