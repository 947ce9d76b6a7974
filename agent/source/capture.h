// Capture: the source role's WAL reader. It keeps a logical replication
// connection (pgoutput over replication=database) to the primary, decodes
// the stream into Events and hands them to a CaptureSink. It only ever
// confirms to PostgreSQL the position the sink declares durable, and it
// reconnects with backoff after any connection failure, resuming from the
// slot's confirmed position.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/pg/async_pg.h"
#include "agent/source/stream_spill.h"
#include "common/change.h"
#include "common/config.h"
#include "common/pgoutput.h"
#include "common/status.h"

namespace geosync {

struct CaptureOptions {
  std::string conninfo;  // the primary's database; replication=database is added
  // Also the replication connection's application_name: name it in the
  // primary's synchronous_standby_names for zero-loss commits (policy sync).
  std::string slot = "geosync";
  std::string publication = "geosync";
  std::vector<std::string> tables;  // empty: FOR ALL TABLES
  bool create_slot = true;
  bool create_publication = true;
  bool temporary_slot = false;  // dropped by PostgreSQL when the connection ends
  bool binary = false;
  // pgoutput protocol version 2 with streaming 'on': PostgreSQL sends a
  // transaction that outgrows logical_decoding_work_mem in chunks before it
  // commits. Capture spills the chunks to one file per xid under spill_dir
  // (required then; its *.spill files are deleted at every connection) and
  // replays the transaction to the sink at Stream Commit, exactly as a
  // transaction sent at commit would have arrived.
  bool streaming = false;
  std::string spill_dir;
  std::chrono::milliseconds status_interval{1000};  // well under wal_sender_timeout
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds max_backoff{5000};
  int max_attempts = 0;  // 0: retry forever
  // The site's postgres.* settings; under commit.policy sync, status every
  // 10 ms so that the primary's waiting commits are released promptly.
  static CaptureOptions FromConfig(const Config& config);
};

// Receives the decoded stream. Every transaction arrives as Begin, then for
// each table it touches a Relation descriptor before its first change (so a
// transaction is self-describing wherever a reader starts), its changes and
// messages, then Commit. Calls run on the capture's executor.
class CaptureSink {
 public:
  virtual ~CaptureSink() = default;
  virtual Status OnEvent(const Event& event) = 0;
  // No more input is buffered right now: a natural group-commit point.
  virtual Status OnIdle() = 0;
  // A new connection is about to stream; drop any incomplete transaction.
  // PostgreSQL will send again every transaction after the confirmed position.
  virtual Status OnReconnect() = 0;
  // End LSN of the last transaction that is durable downstream. Capture
  // reports this, and only this, as flush_lsn to PostgreSQL.
  virtual Lsn DurableLsn() = 0;
};

struct CaptureStats {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> transactions{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> stream_starts{0};          // Stream Start messages
  std::atomic<uint64_t> streamed_transactions{0};  // replayed at Stream Commit
  std::atomic<uint64_t> stream_aborts{0};          // whole streamed transactions aborted
  std::atomic<uint64_t> spilled_bytes{0};          // streamed messages written to spill files
  std::atomic<uint64_t> server_wal_end{0};         // from XLogData/keepalives
  std::atomic<uint64_t> confirmed_flush{0};        // last flush_lsn sent
};

class Capture {
 public:
  Capture(asio::any_io_executor ex, CaptureOptions options, CaptureSink& sink);

  // Runs until Stop(), a fatal error, or max_attempts failed connections.
  asio::awaitable<Status> Run();
  // Call on the capture's executor. From a sink callback, the current message
  // finishes and the sink's DurableLsn is confirmed before the connection ends.
  void Stop();
  const CaptureStats& stats() const { return stats_; }
  // The system identifier from IDENTIFY_SYSTEM of the last connection.
  const std::string& system_id() const { return system_id_; }

 private:
  asio::awaitable<Status> RunOnce();
  asio::awaitable<Status> Setup();
  asio::awaitable<Status> Stream();
  Status HandleCopyData(const std::string& data, bool* reply_now);
  Status HandleMessage(PgOutputMessage message);
  // Protocol version 2 streaming (capture_stream.cpp).
  Status HandleStreamed(PgOutputMessage message, std::span<const uint8_t> payload);
  Status HandleStreamControl(const PgOutputBody& body);
  Status StartReplay(const StreamCommit& commit);
  Status ReplayNext();
  Status EmitRelation(uint32_t oid);
  asio::awaitable<Status> SendFeedback(bool reply_requested);

  asio::any_io_executor ex_;
  CaptureOptions options_;
  CaptureSink& sink_;
  std::unique_ptr<AsyncPg> pg_;
  RelationCache relations_;
  std::vector<uint32_t> relations_in_txn_;
  bool in_txn_ = false;
  bool dispatching_ = false;  // inside HandleCopyData, so inside sink callbacks
  uint32_t xid_ = 0;
  Lsn received_;
  std::atomic<bool> stopping_{false};
  std::string system_id_;
  CaptureStats stats_;
  PgOutputOptions pgoutput_;
  std::unique_ptr<StreamSpill> spill_;  // set when streaming
  uint32_t stream_xid_ = 0;             // top-level xid of the open streamed block
  // A committed streamed transaction being replayed from its spill file, one
  // record per turn of the stream loop (so feedback keeps flowing); no
  // CopyData is read until it is done.
  struct Replay {
    StreamCommit commit;
    SpillReader reader;
  };
  std::optional<Replay> replay_;
  std::vector<uint8_t> replay_record_;
};

}  // namespace geosync
