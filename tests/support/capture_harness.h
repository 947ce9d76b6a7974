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
#include <source_location>
#include <string>
#include <thread>
#include <vector>

#include "agent/source/capture.h"
#include "common/change.h"
#include "common/status.h"

namespace geosync::testing {

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

}  // namespace geosync::testing
