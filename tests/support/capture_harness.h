// A Capture under test: runs it on its own io_context thread with a recording
// CaptureSink that groups the stream into transactions, lets the test declare
// the durable LSN (or confirm every commit), and waits on commits with deadlines.
#pragma once

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <source_location>
#include <string>
#include <thread>
#include <vector>

#include "agent/source/capture.h"
#include "common/change.h"
#include "common/status.h"
#include "tests/support/pg_cluster.h"

namespace geosync {
// Readable gtest output for datums: t'text', n, u, b'..'.
void PrintTo(const Datum& d, std::ostream* os);
}  // namespace geosync

namespace geosync::testing {

// A text datum and a NULL, for expected tuples.
inline Datum Text(std::string value) { return Datum{DatumKind::kText, std::move(value)}; }
inline Datum Null() { return Datum{}; }

// One committed transaction as the sink saw it. `events` holds everything
// between Begin and Commit (Relations, changes, truncates, messages); row
// changes are left out when the sink only counts them.
struct RecordedTxn {
  BeginEvent begin;
  CommitEvent commit;
  std::vector<Event> events;
  uint64_t row_changes = 0;

  std::vector<RowChange> Rows() const;
  std::vector<MessageEvent> Messages() const;
  std::vector<Relation> Relations() const;
  std::vector<TruncateEvent> Truncates() const;
};

struct RecordingSinkOptions {
  // Keep RowChanges in RecordedTxn::events; off for huge transactions, where
  // only the count (and on_row) is kept so memory stays small.
  bool store_rows = true;
  // Declare each transaction durable as soon as its Commit arrives.
  bool auto_durable = false;
  // Called on the capture thread for every RowChange, stored or not.
  std::function<void(const RowChange&)> on_row;
};

// Thread-safe: Capture calls it on the harness thread, the test reads it.
class RecordingSink final : public CaptureSink {
 public:
  explicit RecordingSink(RecordingSinkOptions options) : options_(std::move(options)) {}

  Status OnEvent(const Event& event) override;
  Status OnIdle() override { return Status::Ok(); }
  Status OnReconnect() override;
  Lsn DurableLsn() override { return Lsn(durable_.load()); }

  void SetDurable(Lsn lsn) { durable_ = lsn.value(); }
  size_t CommitCount() const;
  std::vector<RecordedTxn> Transactions() const;
  // Messages that arrived outside any transaction (non-transactional).
  std::vector<MessageEvent> LooseMessages() const;
  // Row changes of the transaction being received right now (0 between them).
  uint64_t OpenTxnRows() const { return open_rows_; }
  int Reconnects() const { return reconnects_; }
  // Incomplete transactions dropped at a reconnect, with their row counts.
  std::vector<uint64_t> DroppedPartialRows() const;
  // Anything that broke the event grammar (Begin inside a transaction, a
  // change outside one, a change before its Relation...): empty when none.
  std::vector<std::string> GrammarErrors() const;

 private:
  RecordingSinkOptions options_;
  mutable std::mutex mu_;
  std::optional<RecordedTxn> open_;
  std::vector<uint32_t> described_;  // relations described in the open txn
  std::vector<RecordedTxn> txns_;
  std::vector<MessageEvent> loose_;
  std::vector<uint64_t> dropped_;
  std::vector<std::string> errors_;
  std::atomic<uint64_t> open_rows_{0};
  std::atomic<int> reconnects_{0};
  std::atomic<uint64_t> durable_{0};
};

class CaptureHarness {
 public:
  CaptureHarness(CaptureOptions options, RecordingSinkOptions sink_options = {});
  ~CaptureHarness();  // Stop()
  CaptureHarness(const CaptureHarness&) = delete;
  CaptureHarness& operator=(const CaptureHarness&) = delete;

  void Start();
  // Stops the capture and joins its thread; returns what Run() returned
  // (Cancelled after a clean stop).
  Status Stop();
  // Set once Run() returned by itself (a fatal error).
  std::optional<Status> Finished() const;

  RecordingSink& sink() { return sink_; }
  const CaptureStats& stats() const { return capture_->stats(); }
  const CaptureOptions& options() const { return options_; }

  // Waits until at least `n` transactions committed at the sink; records a
  // gtest failure at the caller's line on timeout.
  bool WaitForCommits(size_t n, std::chrono::milliseconds deadline,
                      std::source_location where = std::source_location::current());
  // Waits until a committed transaction carries a logical message with this
  // prefix and content: a marker the test emits after its writes.
  bool WaitForMarker(const std::string& prefix, const std::string& content,
                     std::chrono::milliseconds deadline,
                     std::source_location where = std::source_location::current());

 private:
  CaptureOptions options_;
  RecordingSink sink_;
  boost::asio::io_context io_;
  std::unique_ptr<Capture> capture_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::optional<Status> result_;
};

// The slot's confirmed_flush_lsn query for WaitForLsn.
std::string ConfirmedFlushQuery(const std::string& slot);

// Fixture: one primary (copied from the template data dir) and captures on it.
class CaptureClusterTest : public PgClusterTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Options for a capture of the primary's postgres database with a short
  // status interval and backoff, so that feedback and reconnects are quick.
  CaptureOptions Options(const std::string& slot = "geosync") const;
  // Starts a capture and waits until its slot streams: only writes after
  // that are captured (the slot is created with SNAPSHOT 'nothing').
  CaptureHarness& StartCapture(CaptureOptions options, RecordingSinkOptions sink_options = {});
  // Emits a transactional marker, waits for it, and returns the transactions
  // the capture committed since the previous Collect() (the marker's own
  // transaction left out).
  std::vector<RecordedTxn> Collect(CaptureHarness& capture,
                                   std::source_location where = std::source_location::current());
  // Runs `sql` and returns the SQLSTATE it failed with ("" when it succeeded).
  std::string ExecError(const std::string& sql);

  PgCluster* pg_ = nullptr;
  std::vector<std::unique_ptr<CaptureHarness>> captures_;
  std::map<CaptureHarness*, size_t> collected_;
  int markers_ = 0;
};

}  // namespace geosync::testing
