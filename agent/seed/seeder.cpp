// Seeder: one seed attempt on the replica. The manifest connection lives on
// its own io_context and thread (heartbeats keep the source's snapshot);
// each worker thread has its own io_context, site connection per chunk and
// database connection, and does its blocking COPY between frame reads.
#include "agent/seed/seeder.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/net/client_hello.h"
#include "agent/net/peer_stream.h"
#include "agent/seed/replica_db.h"
#include "common/clock.h"
#include "common/control.h"
#include "common/encoding.h"
#include "common/handshake.h"
#include "common/seed_protocol.h"

namespace geosync::seed {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

namespace {

// The source prepares the manifest (slot, catalog, pg_dump) before answering.
constexpr std::chrono::seconds kManifestTimeout{300};

// Runs `work` on `io` until it completes; this thread drives the loop.
Status RunIo(asio::io_context& io, asio::awaitable<Status> work) {
  Status out = Status::Cancelled("seed I/O did not complete");
  asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, Status st) {
    if (!e) {
      out = std::move(st);
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      out = Status::Io(fmt::format("seed I/O failed: {}", ex.what()));
    }
  });
  io.restart();
  io.run();
  return out;
}

// Connects to the source and says Hello asking for a seed.
asio::awaitable<Status> OpenSeedStream(const SeederOptions& o, std::unique_ptr<PeerStream>* out) {
  auto ex = co_await asio::this_coro::executor;
  const std::string where = fmt::format("{}:{}", o.upstream.host, o.upstream.port);
  tcp::resolver resolver(ex);
  auto [rec, endpoints] = co_await resolver.async_resolve(
      o.upstream.host, std::to_string(o.upstream.port), asio::as_tuple(use_awaitable));
  if (rec) co_return Status::Io(fmt::format("cannot resolve source {}: {}", where, rec.message()));
  tcp::socket socket(ex);
  asio::steady_timer timer(ex, o.peer_timeout);
  auto connected =
      co_await (asio::async_connect(socket, endpoints, asio::as_tuple(use_awaitable)) ||
                timer.async_wait(asio::as_tuple(use_awaitable)));
  if (connected.index() == 1) co_return Status::Timeout("seed: connecting to source " + where);
  if (auto [ec, ep] = std::get<0>(connected); ec) {
    co_return Status::Io(fmt::format("seed: connecting to source {}: {}", where, ec.message()));
  }
  auto stream = std::make_unique<PeerStream>(std::move(socket), o.tls, /*compression_level=*/0);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream->Handshake(false, o.peer_timeout));
  Hello hello;
  hello.cluster_id = o.cluster_id;
  hello.site_name = o.site;
  hello.epoch = o.epoch;
  hello.flags = kHelloAcceptsZstd | kHelloNeedsSeed;
  HelloExchange exchange;
  exchange.where = where;
  exchange.seed = true;
  exchange.policy.self = o.site;
  exchange.policy.epoch = o.epoch;
  exchange.policy.expected_site = o.expected_source;
  exchange.policy.sites = o.deployment_sites;
  exchange.refusals = o.refusals;
  exchange.timeout = o.peer_timeout;
  GEOSYNC_RETURN_IF_ERROR_CO(
      (co_await ExchangeHello(*stream, hello, std::move(exchange))).status());
  *out = std::move(stream);
  co_return Status::Ok();
}

// Reads the next frame, turning an Error frame into its Status.
asio::awaitable<Status> ReadSeedFrame(PeerStream& stream, std::chrono::milliseconds timeout,
                                      DecodedFrame* out) {
  GEOSYNC_ASSIGN_OR_RETURN_CO(*out, co_await stream.ReadFrame(timeout));
  if (out->type == FrameType::kError) {
    GEOSYNC_ASSIGN_OR_RETURN_CO(ErrorMessage err, DecodeErrorMessage(AsBytes(out->payload)));
    co_return err.ToStatus();
  }
  co_return Status::Ok();
}

struct ChunkJob {
  size_t table = 0;
  SeedChunk chunk;
};

// Copies one chunk: a site connection streaming COPY text into CopyIn.
asio::awaitable<Status> CopyChunk(const SeederOptions& o, PgConn& conn, const SeedManifest& m,
                                  const ChunkJob& job, SeedProgress* progress,
                                  const std::atomic<bool>& stop) {
  const SeedTable& t = m.tables[job.table];
  std::unique_ptr<PeerStream> stream;
  GEOSYNC_RETURN_IF_ERROR_CO(co_await OpenSeedStream(o, &stream));
  SeedRequest req;
  req.kind = SeedRequestKind::kChunk;
  req.snapshot = m.snapshot;
  req.schema = t.schema;
  req.table = t.name;
  req.columns = t.columns;
  req.start_page = job.chunk.start_page;
  req.end_page = job.chunk.end_page;
  std::string bytes;
  EncodeSeedRequest(req, &bytes);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream->WriteFrame(kFrameSeedRequest, bytes));
  CopyIn copy(&conn);
  GEOSYNC_RETURN_IF_ERROR_CO(copy.Begin(t));
  uint64_t rows = 0, copied = 0;
  while (!stop) {
    DecodedFrame frame;
    GEOSYNC_RETURN_IF_ERROR_CO(co_await ReadSeedFrame(*stream, o.peer_timeout, &frame));
    if (frame.type == kFrameSeedData) {
      GEOSYNC_ASSIGN_OR_RETURN_CO(std::span<const uint8_t> data,
                                  DecodeSeedData(AsBytes(frame.payload)));
      GEOSYNC_RETURN_IF_ERROR_CO(copy.Put(data));
      const uint64_t n = static_cast<uint64_t>(std::count(data.begin(), data.end(), '\n'));
      rows += n;
      copied += data.size();
      progress->Add(job.table, n, data.size());
    } else if (frame.type == kFrameSeedChunkEnd) {
      GEOSYNC_ASSIGN_OR_RETURN_CO(SeedChunkEnd end, DecodeSeedChunkEnd(AsBytes(frame.payload)));
      if (end.rows != rows || end.bytes != copied) {
        co_return Status::Protocol(fmt::format(
            "seed of {}.{} pages [{}, {}): the source sent {} rows in {} bytes, {} rows in {} "
            "bytes arrived",
            t.schema, t.name, job.chunk.start_page, job.chunk.end_page, end.rows, end.bytes, rows,
            copied));
      }
      GEOSYNC_RETURN_IF_ERROR_CO(copy.End());
      progress->ChunkDone(job.table);
      co_return Status::Ok();
    } else {
      co_return Status::Protocol(
          fmt::format("seed: unexpected frame type {} in a chunk", static_cast<int>(frame.type)));
    }
  }
  co_return Status::Cancelled("seed stopped");
}

}  // namespace

Seeder::Seeder(SeederOptions options, Spool* spool, SeedProgress* progress,
               std::function<Status(bool)> on_commit)
    : options_(std::move(options)),
      spool_(spool),
      progress_(progress),
      on_commit_(std::move(on_commit)) {}

Result<SeedOutcome> Seeder::Run() {
  progress_->SetPhase("connecting");
  asio::io_context io;
  std::unique_ptr<PeerStream> stream;
  SeedManifest manifest;
  Status got = RunIo(io, [&]() -> asio::awaitable<Status> {
    GEOSYNC_RETURN_IF_ERROR_CO(co_await OpenSeedStream(options_, &stream));
    std::string bytes;
    EncodeSeedRequest(SeedRequest{}, &bytes);
    GEOSYNC_RETURN_IF_ERROR_CO(co_await stream->WriteFrame(kFrameSeedRequest, bytes));
    DecodedFrame frame;
    GEOSYNC_RETURN_IF_ERROR_CO(co_await ReadSeedFrame(*stream, kManifestTimeout, &frame));
    if (frame.type != kFrameSeedManifest) {
      co_return Status::Protocol(fmt::format("seed: expected a manifest, got frame type {}",
                                             static_cast<int>(frame.type)));
    }
    GEOSYNC_ASSIGN_OR_RETURN_CO(manifest, DecodeSeedManifest(AsBytes(frame.payload)));
    // The seed's epoch becomes this site's (state.json): only a plausible one.
    if (ClassifyEpoch(manifest.consistent.epoch, options_.epoch) == EpochClaim::kImpossible) {
      co_return Status::Protocol(
          fmt::format("seed: the source's manifest is at {}: {}", manifest.consistent.ToString(),
                      ImpossibleEpochReason(manifest.consistent.epoch, options_.epoch)));
    }
    co_return Status::Ok();
  }());
  if (!got.ok()) return got;
  progress_->Begin(manifest);
  uint64_t total = 0;
  for (const auto& t : manifest.tables) total += t.bytes;
  spdlog::info("seed: snapshot {} at {}: {} tables, {} MB, {} workers", manifest.snapshot,
               manifest.consistent.ToString(), manifest.tables.size(), total >> 20,
               options_.workers);

  // Heartbeats on the manifest connection until the load is over, then SeedFinish.
  std::atomic<bool> done{false};
  SeedFinish finish;
  asio::steady_timer wake(io);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (!stop_) {
          std::string bytes;
          FrameType type = FrameType::kHeartbeat;
          if (done) {
            EncodeSeedFinish(finish, &bytes);
            type = kFrameSeedFinish;
          } else {
            Heartbeat hb;
            hb.sender_time_us = NowUs();
            EncodeHeartbeat(hb, &bytes);
          }
          Status st = co_await stream->WriteFrame(type, bytes);
          if (!st.ok()) {
            spdlog::warn("seed: link to the source lost: {}", st.ToString());
            link_lost_ = true;
            co_return;
          }
          if (type == kFrameSeedFinish) co_return;
          wake.expires_after(options_.heartbeat);
          co_await wake.async_wait(asio::as_tuple(use_awaitable));
        }
      },
      asio::detached);
  io.restart();
  std::thread keepalive([&] { io.run(); });
  Status loaded = Load(manifest);
  finish.ok = loaded.ok() && !declined_;
  finish.message = declined_ ? "declined: the site already has published tables"
                             : (loaded.ok() ? "" : loaded.ToString());
  done = true;
  asio::post(io, [&] { wake.cancel(); });
  keepalive.join();
  if (!loaded.ok()) return loaded;
  if (declined_) return SeedOutcome::kDeclined;
  position_ = manifest.consistent;
  return SeedOutcome::kSeeded;
}

Status Seeder::Load(const SeedManifest& m) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, ConnectForSeed(options_.conninfo));
  progress_->SetPhase("schema");
  GEOSYNC_ASSIGN_OR_RETURN(std::vector<bool> exists, ExistingTables(conn, m));
  std::vector<std::string> present, missing;
  for (size_t i = 0; i < m.tables.size(); ++i) {
    (exists[i] ? present : missing)
        .push_back(QualifiedName(conn, m.tables[i].schema, m.tables[i].name));
  }
  if (options_.only_if_empty && !present.empty()) {
    spdlog::info("seed.auto: not seeding, the database already has published tables ({}...)",
                 present.front());
    declined_ = true;
    return Status::Ok();
  }
  bool create = options_.drop_partial || present.empty();
  if (!create && !missing.empty()) {
    return Status::InvalidArgument(fmt::format(
        "cannot seed: the replica database has some published tables but lacks {}: create them "
        "or drop the others ({})",
        fmt::join(missing, ", "), fmt::join(present, ", ")));
  }
  GEOSYNC_RETURN_IF_ERROR(on_commit_(create));
  if (options_.drop_partial) GEOSYNC_RETURN_IF_ERROR(DropTables(conn, m));
  GEOSYNC_RETURN_IF_ERROR(create ? CreateSchema(conn, m) : TruncateTables(conn, m));
  if (stop_ || link_lost_) return Status::Cancelled("seed stopped");
  progress_->SetPhase("copying");
  GEOSYNC_RETURN_IF_ERROR(CopyAll(m));
  if (create) {
    progress_->SetPhase("indexes");
    GEOSYNC_RETURN_IF_ERROR(RunPostData(conn, m));
  }
  progress_->SetPhase("finishing");
  GEOSYNC_RETURN_IF_ERROR(SetSequences(conn, m));
  GEOSYNC_RETURN_IF_ERROR(SetOrigin(conn, options_.origin_prefix, m.consistent));
  // The stream continues with the first unit committing at or after C.
  return spool_->ResetTo(Position{m.consistent.epoch, Lsn(m.consistent.lsn.value() - 1)});
}

Status Seeder::CopyAll(const SeedManifest& m) {
  std::vector<ChunkJob> jobs;
  for (size_t i = 0; i < m.tables.size(); ++i) {
    for (const auto& c : m.tables[i].chunks) jobs.push_back(ChunkJob{i, c});
  }
  std::mutex mu;
  size_t next = 0;
  Status first_error;
  auto worker = [&] {
    auto conn = ConnectForSeed(options_.conninfo);
    if (!conn.ok()) {
      std::lock_guard lock(mu);
      if (first_error.ok()) first_error = conn.status();
      return;
    }
    asio::io_context wio;
    for (;;) {
      ChunkJob job;
      {
        std::lock_guard lock(mu);
        if (!first_error.ok() || next >= jobs.size()) return;
        if (stop_ || link_lost_) {
          first_error = Status::Cancelled(link_lost_ ? "seed: the link to the source was lost"
                                                     : "seed stopped");
          return;
        }
        job = jobs[next++];
      }
      Status st = RunIo(wio, CopyChunk(options_, *conn, m, job, progress_, stop_));
      if (!st.ok()) {
        std::lock_guard lock(mu);
        if (first_error.ok()) first_error = st;
        return;
      }
    }
  };
  const int n = std::max(1, std::min<int>(options_.workers, static_cast<int>(jobs.size())));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return first_error;
}

}  // namespace geosync::seed
