// SeedServer: the source's manifest and chunk sessions (docs/seed.md).
#include "agent/seed/seed_server.h"

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "agent/pg/async_pg.h"
#include "agent/seed/blocking.h"
#include "agent/seed/pg_dump.h"
#include "common/encoding.h"

namespace geosync::seed {

using asio::use_awaitable;

namespace {

constexpr size_t kDataFrameBytes = 256 * 1024;
constexpr std::chrono::milliseconds kConnectTimeout{10000};

std::string Literal(PGconn* conn, std::string_view s) {
  char* q = PQescapeLiteral(conn, s.data(), s.size());
  std::string out = q ? q : "''";
  PQfreemem(q);
  return out;
}

std::string Ident(PGconn* conn, std::string_view s) {
  char* q = PQescapeIdentifier(conn, s.data(), s.size());
  std::string out = q ? q : "\"\"";
  PQfreemem(q);
  return out;
}

// Opens a transaction in the exported snapshot, with the text formats both
// ends of a seed agree on.
// (Named arrays, not initializer lists: GCC 12 mishandles the lifetime of an
// initializer list's temporaries across co_await in a range-for.)
asio::awaitable<Status> BeginInSnapshot(AsyncPg& pg, const std::string& snapshot) {
  std::vector<std::string> statements;
  statements.push_back(
      "SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET "
      "TimeZone = 'UTC'");
  statements.push_back("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  statements.push_back("SET TRANSACTION SNAPSHOT " + Literal(pg.raw(), snapshot));
  for (size_t i = 0; i < statements.size(); ++i) {
    auto r = co_await pg.Query(statements[i]);
    if (!r.ok()) co_return r.status().WithContext("importing seed snapshot " + snapshot);
  }
  co_return Status::Ok();
}

}  // namespace

std::vector<SeedChunk> PlanChunks(uint64_t bytes, uint64_t block_size, uint64_t chunk_bytes) {
  std::vector<SeedChunk> chunks;
  const uint64_t pages = block_size ? bytes / block_size : 0;
  const uint64_t per_chunk = std::max<uint64_t>(1, block_size ? chunk_bytes / block_size : 1);
  for (uint64_t start = 0; start + per_chunk < pages; start += per_chunk) {
    chunks.push_back(SeedChunk{start, start + per_chunk});
  }
  SeedChunk last;
  last.start_page = chunks.empty() ? 0 : chunks.back().end_page;
  last.end_page = 0;
  chunks.push_back(last);
  return chunks;
}

SeedServer::SeedServer(SeedServerOptions options, Spool* spool, SiteRegistry* registry)
    : options_(std::move(options)), spool_(spool), registry_(registry) {}

asio::awaitable<Status> SeedServer::Serve(const Hello& hello, PeerStream& stream) {
  GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame frame, co_await stream.ReadFrame(options_.peer_timeout));
  if (frame.type != kFrameSeedRequest) {
    co_return Status::Protocol(fmt::format("site {} asked for a seed but sent frame type {}",
                                           hello.site_name, static_cast<int>(frame.type)));
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(SeedRequest request, DecodeSeedRequest(AsBytes(frame.payload)));
  if (request.kind == SeedRequestKind::kManifest) {
    co_return co_await ServeManifest(hello.site_name, stream);
  }
  co_return co_await ServeChunk(hello.site_name, request, stream);
}

asio::awaitable<Result<SeedManifest>> SeedServer::ReadCatalog(const std::string& snapshot) {
  AsyncPg pg(co_await asio::this_coro::executor);
  GEOSYNC_RETURN_IF_ERROR_CO(
      co_await pg.Connect(options_.conninfo, kConnectTimeout, false, "", "geosync_seed"));
  GEOSYNC_RETURN_IF_ERROR_CO(co_await BeginInSnapshot(pg, snapshot));
  const std::string pub = Literal(pg.raw(), options_.publication);
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult has_pub,
      co_await pg.Query("SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = " + pub));
  if (has_pub.Get(0, 0) != "1") {
    co_return Status::NotFound(fmt::format(
        "publication {} does not exist on the primary: nothing to seed", options_.publication));
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult tables,
      co_await pg.Query(
          "SELECT p.schemaname, p.tablename, pg_catalog.pg_relation_size(c.oid), "
          "greatest(c.reltuples, 0)::bigint, coalesce((SELECT json_agg(a.attname ORDER BY "
          "a.attnum) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
          "AND NOT a.attisdropped AND a.attgenerated = '')::text, '[]'), "
          "current_setting('block_size')::bigint "
          "FROM pg_catalog.pg_publication_tables p "
          "JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname "
          "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename "
          "WHERE p.pubname = " +
          pub + " ORDER BY 3 DESC, 1, 2"));
  SeedManifest m;
  for (int i = 0; i < tables.rows(); ++i) {
    SeedTable t;
    t.schema = tables.Get(i, 0);
    t.name = tables.Get(i, 1);
    t.bytes = std::stoull(tables.Get(i, 2));
    t.rows_estimate = std::stoull(tables.Get(i, 3));
    for (const auto& col : nlohmann::json::parse(tables.Get(i, 4))) {
      t.columns.push_back(col.get<std::string>());
    }
    t.chunks = PlanChunks(t.bytes, std::stoull(tables.Get(i, 5)), options_.chunk_bytes);
    m.tables.push_back(std::move(t));
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult seqs,
      co_await pg.Query("SELECT schemaname, sequencename, last_value FROM pg_catalog.pg_sequences "
                        "WHERE last_value IS NOT NULL AND schemaname NOT IN ('pg_catalog', "
                        "'information_schema', '_geosync') ORDER BY 1, 2"));
  for (int i = 0; i < seqs.rows(); ++i) {
    SeedSequence s;
    s.schema = seqs.Get(i, 0);
    s.name = seqs.Get(i, 1);
    s.last_value = std::stoll(seqs.Get(i, 2));
    s.is_called = true;
    m.sequences.push_back(std::move(s));
  }
  auto done = co_await pg.Query("COMMIT");
  if (!done.ok()) co_return done.status();
  co_return m;
}

asio::awaitable<Status> SeedServer::ServeManifest(const std::string& site, PeerStream& stream) {
  // Hold the spool from what is durable now until the consistent point is known.
  registry_->Seeding(site, spool_->durable());
  AsyncPg repl(co_await asio::this_coro::executor);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await repl.Connect(options_.conninfo, kConnectTimeout,
                                                   /*replication=*/true, "", "geosync_seed"));
  const std::string slot = fmt::format("geosync_seed_{}_{}", ::getpid(), next_slot_++);
  auto created = co_await repl.Query(fmt::format(
      "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')", slot));
  if (!created.ok()) co_return created.status().WithContext("creating the seed's slot " + slot);
  GEOSYNC_ASSIGN_OR_RETURN_CO(Lsn consistent, Lsn::Parse(created->Get(0, 1)));
  const std::string snapshot = created->Get(0, 2);
  auto catalog = co_await ReadCatalog(snapshot);
  if (!catalog.ok()) co_return catalog.status().WithContext("seed of site " + site);
  SeedManifest m = std::move(catalog).value();
  m.snapshot = snapshot;
  m.consistent = Position{options_.epoch, consistent};
  std::vector<std::pair<std::string, std::string>> names;
  for (const auto& t : m.tables) names.emplace_back(t.schema, t.name);
  for (int pass = 0; pass < 2; ++pass) {
    std::string conninfo = options_.conninfo, snap = snapshot;
    std::string sect = pass == 0 ? "pre-data" : "post-data";
    auto ex = co_await asio::this_coro::executor;
    auto dump = RunBlocking<Result<std::string>>(
        ex, [conninfo, snap, names, sect] { return DumpSchema(conninfo, snap, names, sect); });
    Result<std::string> sql = co_await std::move(dump);
    if (!sql.ok()) co_return sql.status().WithContext("seed of site " + site);
    if (pass == 0) {
      m.pre_data = std::move(sql).value();
    } else {
      m.post_data = std::move(sql).value();
    }
  }
  // The replica continues the stream after C - 1: every unit committing at or
  // after C, none before.
  const Position floor{options_.epoch, Lsn(consistent.value() - 1)};
  if (floor < spool_->released()) {
    co_return Status::NotFound(
        fmt::format("seed of site {}: the spool was released up to {}, past the snapshot's {}",
                    site, spool_->released().ToString(), floor.ToString()));
  }
  registry_->Seeding(site, floor);
  uint64_t total = 0;
  for (const auto& t : m.tables) total += t.bytes;
  spdlog::info("seed of site {}{}: snapshot {} at {} (slot {}), {} tables, {} MB", site,
               stream.tls() ? " over TLS" : "", snapshot, consistent.ToString(), slot,
               m.tables.size(), total >> 20);
  std::string bytes;
  EncodeSeedManifest(m, &bytes);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.WriteFrame(kFrameSeedManifest, bytes));
  // Keep the snapshot (the idle replication connection) while the replica
  // copies; it sends heartbeats, then SeedFinish.
  const auto wait =
      std::max<std::chrono::milliseconds>(options_.peer_timeout * 3, std::chrono::seconds(30));
  for (;;) {
    auto frame = co_await stream.ReadFrame(wait);
    if (!frame.ok()) {
      co_return frame.status().WithContext(fmt::format(
          "seed of site {} ended before it finished (snapshot {} released)", site, snapshot));
    }
    if (frame->type == FrameType::kHeartbeat) continue;
    if (frame->type == FrameType::kError) {
      GEOSYNC_ASSIGN_OR_RETURN_CO(ErrorMessage err, DecodeErrorMessage(AsBytes(frame->payload)));
      co_return err.ToStatus();
    }
    if (frame->type != kFrameSeedFinish) {
      co_return Status::Protocol(fmt::format("seed of site {}: unexpected frame type {}", site,
                                             static_cast<int>(frame->type)));
    }
    GEOSYNC_ASSIGN_OR_RETURN_CO(SeedFinish fin, DecodeSeedFinish(AsBytes(frame->payload)));
    if (fin.ok) {
      spdlog::info("seed of site {} finished; it continues the stream after {}", site,
                   floor.ToString());
    } else {
      spdlog::warn("seed of site {} failed on the site: {}", site, fin.message);
    }
    co_return Status::Ok();
  }
}

asio::awaitable<Status> SeedServer::ServeChunk(const std::string& site, const SeedRequest& req,
                                               PeerStream& stream) {
  AsyncPg pg(co_await asio::this_coro::executor);
  GEOSYNC_RETURN_IF_ERROR_CO(
      co_await pg.Connect(options_.conninfo, kConnectTimeout, false, "", "geosync_seed"));
  GEOSYNC_RETURN_IF_ERROR_CO(co_await BeginInSnapshot(pg, req.snapshot));
  const std::string table = Ident(pg.raw(), req.schema) + "." + Ident(pg.raw(), req.table);
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult published,
      co_await pg.Query(fmt::format(
          "SELECT count(*) FROM pg_catalog.pg_publication_tables WHERE pubname = {} AND "
          "schemaname = {} AND tablename = {}",
          Literal(pg.raw(), options_.publication), Literal(pg.raw(), req.schema),
          Literal(pg.raw(), req.table))));
  if (published.Get(0, 0) == "0") {
    co_return Status::InvalidArgument(
        fmt::format("site {} asked to seed table {}, which is not in publication {}", site, table,
                    options_.publication));
  }
  std::string columns;
  for (const auto& c : req.columns) columns += (columns.empty() ? "" : ", ") + Ident(pg.raw(), c);
  std::string where;
  if (req.start_page > 0 || req.end_page > 0) {
    where = fmt::format(" WHERE ctid >= '({},0)'::tid", req.start_page);
    if (req.end_page > 0) where += fmt::format(" AND ctid < '({},0)'::tid", req.end_page);
  }
  const std::string sql =
      fmt::format("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT", columns, table, where);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await pg.StartCopy(sql));
  SeedChunkEnd end;
  std::string raw;
  auto flush = [&]() -> asio::awaitable<Status> {
    if (raw.size() <= 2) co_return Status::Ok();
    uint64_t before = stream.counters().wire_out;
    GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.WriteFrame(kFrameSeedData, raw));
    raw.clear();
    if (options_.bandwidth_bytes_per_sec > 0) {
      uint64_t sent = stream.counters().wire_out - before;
      asio::steady_timer pace(
          co_await asio::this_coro::executor,
          std::chrono::microseconds(sent * 1000000 / options_.bandwidth_bytes_per_sec));
      co_await pace.async_wait(asio::as_tuple(use_awaitable));
    }
    co_return Status::Ok();
  };
  for (;;) {
    auto data = co_await pg.ReadCopyData();
    if (!data.ok()) co_return data.status().WithContext(fmt::format("COPY of {}", table));
    if (!data->has_value()) break;
    if (raw.empty()) EncodeSeedData("", &raw);
    end.rows++;
    end.bytes += (*data)->size();
    raw += **data;
    if (raw.size() >= kDataFrameBytes) GEOSYNC_RETURN_IF_ERROR_CO(co_await flush());
  }
  GEOSYNC_RETURN_IF_ERROR_CO(co_await flush());
  std::string bytes;
  EncodeSeedChunkEnd(end, &bytes);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await stream.WriteFrame(kFrameSeedChunkEnd, bytes));
  (void)co_await pg.Query("COMMIT");
  spdlog::debug("seed of site {}: {} pages [{}, {}) sent, {} rows, {} bytes", site, table,
                req.start_page, req.end_page, end.rows, end.bytes);
  co_return Status::Ok();
}

SeedServerOptions SeedServerOptions::FromConfig(const Config& config, uint64_t epoch) {
  SeedServerOptions o;
  o.conninfo = config.postgres.dsn;
  o.publication = config.postgres.publication;
  o.epoch = epoch;
  o.chunk_bytes = config.seed.chunk_bytes;
  o.bandwidth_bytes_per_sec = config.bandwidth_bytes_per_sec;
  o.peer_timeout = std::chrono::milliseconds(config.peer_timeout_ms);
  return o;
}

}  // namespace geosync::seed
