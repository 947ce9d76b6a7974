// Capture: IDENTIFY_SYSTEM, publication and slot set-up, START_REPLICATION,
// then a drain-then-wait loop over CopyData with standby status updates.
#include "agent/source/capture.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/replication_protocol.h"

namespace geosync {
namespace {

// Sync points inside a long backlog, so that durability (and the slot)
// advances while catching up, not only when the stream goes idle.
constexpr uint64_t kIdleEveryMessages = 2048;

// Group commit: when the socket runs dry less than this long after the first
// message since the last sync, capture waits out the rest of it for more
// before it fsyncs. A flowing stream (a backlog, a busy primary) is then
// fsynced in groups rather than at every read that empties the socket. The
// wait delays a sync by at most this much; a stream that never runs dry is
// synced every kIdleEveryMessages as before. PostgreSQL's commit_delay works
// the same way.
constexpr std::chrono::microseconds kGroupCommitWindow{2000};

// Text output that is the same on every site: the applier sets the same.
constexpr const char* kSessionOptions =
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 "
    // Set-up commits (CREATE PUBLICATION) must not wait for a synchronous
    // standby: under policy sync that standby is this very connection.
    "-c synchronous_commit=local";

std::string QuoteIdent(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string QuoteLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// A qualified "schema.table" quoted part by part.
std::string QuoteQualified(std::string_view name) {
  auto dot = name.find('.');
  if (dot == std::string_view::npos) return QuoteIdent(name);
  return QuoteIdent(name.substr(0, dot)) + "." + QuoteIdent(name.substr(dot + 1));
}

bool RetryableForCapture(const Status& st) {
  if (st.retryable()) return true;
  // The slot is still held by a walsender that has not noticed its client left.
  return st.code() == Code::kPostgres && st.sqlstate() == "55006";
}

}  // namespace

Capture::Capture(asio::any_io_executor ex, CaptureOptions options, CaptureSink& sink)
    : ex_(std::move(ex)), options_(std::move(options)), sink_(sink) {
  pgoutput_.protocol_version = options_.streaming ? 2 : 1;
  pgoutput_.binary = options_.binary;
  if (options_.streaming) spill_ = std::make_unique<StreamSpill>(options_.spill_dir);
}

void Capture::Stop() {
  stopping_ = true;
  // From a sink callback the stream loop is mid-message: it confirms what the
  // sink declared durable, then closes. Otherwise closing wakes it up.
  if (pg_ && !dispatching_) pg_->Close();
}

asio::awaitable<Status> Capture::Run() {
  if (options_.streaming && options_.spill_dir.empty()) {
    co_return Status::InvalidArgument("capture: streaming needs a spill directory (spill_dir)");
  }
  auto backoff = std::chrono::milliseconds(100);
  int failures = 0;
  while (!stopping_) {
    Status st = co_await RunOnce();
    if (stopping_) break;
    if (!RetryableForCapture(st)) co_return st;
    ++failures;
    stats_.reconnects++;
    if (options_.max_attempts > 0 && failures >= options_.max_attempts) co_return st;
    spdlog::warn("capture: {}; reconnecting in {} ms", st.ToString(), backoff.count());
    asio::steady_timer timer(ex_, backoff);
    co_await timer.async_wait(asio::use_awaitable);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  co_return Status::Cancelled("capture stopped");
}

asio::awaitable<Status> Capture::RunOnce() {
  GEOSYNC_RETURN_IF_ERROR_CO(sink_.OnReconnect());
  in_txn_ = false;
  relations_.Clear();
  // PostgreSQL streams every in-progress transaction again from its first
  // segment on the new connection.
  replay_.reset();
  pgoutput_.in_streamed_block = false;
  if (spill_) GEOSYNC_RETURN_IF_ERROR_CO(spill_->Reset());
  pg_ = std::make_unique<AsyncPg>(ex_);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await pg_->Connect(options_.conninfo, options_.connect_timeout,
                                                   true, kSessionOptions, options_.slot));
  GEOSYNC_RETURN_IF_ERROR_CO(co_await Setup());
  Status st = co_await Stream();
  pg_->Close();
  co_return st;
}

asio::awaitable<Status> Capture::Setup() {
  GEOSYNC_ASSIGN_OR_RETURN_CO(PgResult ident, co_await pg_->Query("IDENTIFY_SYSTEM"));
  if (ident.rows() != 1 || ident.cols() < 4) {
    co_return Status::Protocol("IDENTIFY_SYSTEM returned an unexpected result");
  }
  system_id_ = ident.Get(0, 0);
  if (ident.IsNull(0, 3)) {
    co_return Status::Config(
        "the PostgreSQL connection is not bound to a database: set dbname in postgres.dsn");
  }
  const std::string pub = options_.publication;
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult pubs,
      co_await pg_->Query("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = " +
                          QuoteLiteral(pub)));
  if (pubs.rows() == 0) {
    if (!options_.create_publication) {
      co_return Status::NotFound(fmt::format("publication \"{}\" does not exist", pub));
    }
    std::string sql = "CREATE PUBLICATION " + QuoteIdent(pub);
    if (options_.tables.empty()) {
      sql += " FOR ALL TABLES";
    } else {
      sql += " FOR TABLE ";
      for (size_t i = 0; i < options_.tables.size(); ++i) {
        sql += (i ? ", " : "") + QuoteQualified(options_.tables[i]);
      }
    }
    GEOSYNC_RETURN_IF_ERROR_CO((co_await pg_->Query(sql)).status());
    spdlog::info("capture: created publication \"{}\"", pub);
  }
  GEOSYNC_ASSIGN_OR_RETURN_CO(
      PgResult slots,
      co_await pg_->Query("SELECT plugin, coalesce(wal_status, ''), confirmed_flush_lsn, "
                          "database = current_database() FROM pg_catalog.pg_replication_slots "
                          "WHERE slot_name = " +
                          QuoteLiteral(options_.slot)));
  if (slots.rows() == 0) {
    if (!options_.create_slot) {
      co_return Status::NotFound(
          fmt::format("replication slot \"{}\" does not exist", options_.slot));
    }
    std::string sql =
        fmt::format("CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput (SNAPSHOT 'nothing')",
                    QuoteIdent(options_.slot), options_.temporary_slot ? " TEMPORARY" : "");
    GEOSYNC_ASSIGN_OR_RETURN_CO(PgResult created, co_await pg_->Query(sql));
    spdlog::info("capture: created replication slot \"{}\" at {}", options_.slot,
                 created.rows() > 0 ? created.Get(0, 1) : "?");
  } else {
    if (slots.Get(0, 0) != "pgoutput") {
      co_return Status::Config(fmt::format(
          "replication slot \"{}\" uses plugin {}, not pgoutput: choose another postgres.slot",
          options_.slot, slots.Get(0, 0)));
    }
    if (slots.Get(0, 1) == "lost") {
      co_return Status::Corruption(fmt::format(
          "replication slot \"{}\" was invalidated (wal_status lost, max_slot_wal_keep_size "
          "exceeded): transactions after {} are gone from the WAL; every site needs re-seeding",
          options_.slot, slots.Get(0, 2)));
    }
    if (slots.Get(0, 3) != "t") {
      co_return Status::Config(
          fmt::format("replication slot \"{}\" belongs to another database", options_.slot));
    }
  }
  // Start where the sink is durable, as PostgreSQL's subscriber starts at its
  // origin's LSN: PostgreSQL 15 keeps confirmed_flush in memory and may come
  // back from a restart with an older one, which would resend transactions
  // the sink already has. It starts at the later of this and confirmed_flush.
  std::string start = fmt::format(
      "START_REPLICATION SLOT {} LOGICAL {} (proto_version '{}', publication_names {}, "
      "messages 'true'{}{})",
      QuoteIdent(options_.slot), sink_.DurableLsn().ToString(), pgoutput_.protocol_version,
      QuoteLiteral(QuoteIdent(pub)), options_.binary ? ", binary 'true'" : "",
      options_.streaming ? ", streaming 'on'" : "");
  GEOSYNC_RETURN_IF_ERROR_CO(co_await pg_->StartCopy(start));
  spdlog::info("capture: streaming slot \"{}\" of system {}", options_.slot, system_id_);
  co_return Status::Ok();
}

asio::awaitable<Status> Capture::Stream() {
  auto last_feedback = std::chrono::steady_clock::now();
  uint64_t since_idle = 0;
  // When the first message since the last sync arrived.
  std::optional<std::chrono::steady_clock::time_point> group_start;
  while (!stopping_) {
    for (;;) {
      bool reply_now = false;
      Status handled;
      if (replay_) {
        dispatching_ = true;
        handled = ReplayNext();
        dispatching_ = false;
      } else {
        auto r = pg_->TryReadCopyData();
        if (!r.ok()) {
          if (r.status().code() == Code::kNotFound) break;
          co_return r.status();
        }
        if (!r->has_value()) {
          co_return Status::Io("PostgreSQL ended the replication stream");
        }
        dispatching_ = true;
        handled = HandleCopyData(**r, &reply_now);
        dispatching_ = false;
      }
      GEOSYNC_RETURN_IF_ERROR_CO(handled);
      if (!group_start) group_start = std::chrono::steady_clock::now();
      if (stopping_) {
        // Stopped by the sink (tail --limit): a last standby status update.
        GEOSYNC_RETURN_IF_ERROR_CO(co_await SendFeedback(false));
        co_return Status::Cancelled("capture stopped");
      }
      if (++since_idle >= kIdleEveryMessages) {
        since_idle = 0;
        group_start.reset();
        GEOSYNC_RETURN_IF_ERROR_CO(sink_.OnIdle());
      }
      auto now = std::chrono::steady_clock::now();
      if (reply_now || now - last_feedback >= options_.status_interval) {
        GEOSYNC_RETURN_IF_ERROR_CO(co_await SendFeedback(false));
        last_feedback = now;
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (!replay_ && group_start && now < *group_start + kGroupCommitWindow) {
      const auto rest =
          std::chrono::ceil<std::chrono::milliseconds>(*group_start + kGroupCommitWindow - now);
      GEOSYNC_RETURN_IF_ERROR_CO(co_await pg_->WaitInput(rest));
      continue;
    }
    since_idle = 0;
    group_start.reset();
    GEOSYNC_RETURN_IF_ERROR_CO(sink_.OnIdle());
    now = std::chrono::steady_clock::now();
    if (sink_.DurableLsn().value() != stats_.confirmed_flush ||
        now - last_feedback >= options_.status_interval) {
      GEOSYNC_RETURN_IF_ERROR_CO(co_await SendFeedback(false));
      last_feedback = now;
    }
    GEOSYNC_RETURN_IF_ERROR_CO(co_await pg_->WaitInput(options_.status_interval));
  }
  co_return Status::Cancelled("capture stopped");
}

Status Capture::HandleCopyData(const std::string& data, bool* reply_now) {
  auto bytes = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  GEOSYNC_ASSIGN_OR_RETURN(ServerReplicationMessage msg, ParseServerReplicationMessage(bytes));
  stats_.bytes += data.size();
  if (auto* keepalive = std::get_if<PrimaryKeepalive>(&msg)) {
    stats_.server_wal_end = std::max<uint64_t>(stats_.server_wal_end, keepalive->wal_end.value());
    *reply_now = keepalive->reply_requested;
    return Status::Ok();
  }
  auto& xlog = std::get<XLogData>(msg);
  stats_.messages++;
  stats_.server_wal_end = std::max<uint64_t>(stats_.server_wal_end, xlog.wal_end.value());
  if (xlog.wal_start > received_) received_ = xlog.wal_start;
  auto decoded = DecodePgOutput(xlog.payload, pgoutput_);
  if (!decoded.ok()) {
    return decoded.status().WithContext(
        fmt::format("decoding WAL at {}", xlog.wal_start.ToString()));
  }
  if (decoded->streamed_xid) return HandleStreamed(std::move(decoded).value(), xlog.payload);
  if (options_.streaming) {
    const PgOutputBody& body = decoded->body;
    if (std::holds_alternative<StreamStart>(body) || std::holds_alternative<StreamStop>(body) ||
        std::holds_alternative<StreamCommit>(body) || std::holds_alternative<StreamAbort>(body)) {
      return HandleStreamControl(body);
    }
  }
  return HandleMessage(std::move(decoded).value());
}

Status Capture::EmitRelation(uint32_t oid) {
  if (std::find(relations_in_txn_.begin(), relations_in_txn_.end(), oid) !=
      relations_in_txn_.end()) {
    return Status::Ok();
  }
  const Relation* rel = relations_.Lookup(oid);
  if (!rel) {
    return Status::Protocol(
        fmt::format("change for relation OID {} before its Relation message", oid));
  }
  relations_in_txn_.push_back(oid);
  return sink_.OnEvent(*rel);
}

Status Capture::HandleMessage(PgOutputMessage message) {
  return std::visit(
      [&](auto& m) -> Status {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, BeginEvent>) {
          in_txn_ = true;
          xid_ = m.xid;
          relations_in_txn_.clear();
          return sink_.OnEvent(m);
        } else if constexpr (std::is_same_v<T, CommitEvent>) {
          m.xid = xid_;
          in_txn_ = false;
          stats_.transactions++;
          return sink_.OnEvent(m);
        } else if constexpr (std::is_same_v<T, Relation>) {
          // A schema change inside a transaction re-sends the descriptor.
          // pgoutput also repeats an unchanged one (publish_via_partition_root
          // describes the root again for each partition): send that once.
          const Relation* cached = relations_.Lookup(m.oid);
          if (cached && *cached == m) return Status::Ok();
          std::erase(relations_in_txn_, m.oid);
          relations_.Update(std::move(m));
          return Status::Ok();
        } else if constexpr (std::is_same_v<T, RowChange>) {
          GEOSYNC_RETURN_IF_ERROR(ValidateRowChange(m, relations_));
          GEOSYNC_RETURN_IF_ERROR(EmitRelation(m.rel_oid));
          return sink_.OnEvent(m);
        } else if constexpr (std::is_same_v<T, TruncateEvent>) {
          for (uint32_t oid : m.rel_oids) GEOSYNC_RETURN_IF_ERROR(EmitRelation(oid));
          return sink_.OnEvent(m);
        } else if constexpr (std::is_same_v<T, MessageEvent>) {
          return sink_.OnEvent(m);
        } else if constexpr (std::is_same_v<T, OriginMessage> || std::is_same_v<T, TypeMessage>) {
          return Status::Ok();  // origins and type names are not needed downstream
        } else {
          return Status::Protocol(fmt::format(
              "pgoutput {} received but streaming of in-progress transactions was not requested",
              PgOutputMessageName(message.body)));
        }
      },
      message.body);
}

asio::awaitable<Status> Capture::SendFeedback(bool reply_requested) {
  Lsn durable = sink_.DurableLsn();
  StandbyStatusUpdate update;
  update.write_lsn = std::max(received_, durable);
  update.flush_lsn = durable;
  update.apply_lsn = durable;
  update.client_time = ToPgTimestamp(std::chrono::system_clock::now());
  update.reply_requested = reply_requested;
  auto bytes = BuildStandbyStatusUpdate(update);
  GEOSYNC_RETURN_IF_ERROR_CO(co_await pg_->WriteCopyData(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  stats_.confirmed_flush = durable.value();
  co_return Status::Ok();
}

CaptureOptions CaptureOptions::FromConfig(const Config& config) {
  CaptureOptions o;
  o.conninfo = config.postgres.dsn;
  o.slot = config.postgres.slot;
  o.publication = config.postgres.publication;
  o.tables = config.postgres.tables;
  o.binary = config.postgres.binary;
  o.streaming = config.postgres.streaming;
  o.spill_dir = config.spool.dir + "/stream-spill";
  if (config.commit.policy == CommitPolicy::kSync)
    o.status_interval = std::chrono::milliseconds(10);
  return o;
}

}  // namespace geosync
