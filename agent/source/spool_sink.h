// SpoolSink: the source's CaptureSink. It appends every captured transaction
// to the source spool as one unit of encoded records, fsyncs at group-commit
// points, and tells Capture how far the slot may be confirmed: under policy
// async, up to what the spool holds durably; under sync, only up to what a
// quorum of named sites also holds durably.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "agent/source/capture.h"
#include "agent/spool/spool.h"

namespace geosync {

class SpoolSink final : public CaptureSink {
 public:
  // `on_durable` runs (on the capture thread) after each Sync that made new
  // units durable, so stream sessions can wake up.
  SpoolSink(Spool* spool, uint64_t epoch, std::function<void(Position)> on_durable);

  // Under policy sync: returns the position (epoch, commit LSN) that a quorum
  // of sync sites holds durably. Not set: policy async.
  void SetSyncQuorum(std::function<Position()> quorum) { quorum_ = std::move(quorum); }

  Status OnEvent(const Event& event) override;
  Status OnIdle() override;
  Status OnReconnect() override;
  Lsn DurableLsn() override;

  uint64_t transactions() const { return transactions_; }
  uint64_t skipped_duplicates() const { return skipped_; }
  // Last commit end LSN made durable in the spool (not necessarily confirmed).
  Lsn spooled_end_lsn() const { return Lsn(spooled_end_.load()); }

 private:
  Status Append(Lsn lsn, uint8_t flags, const Event& event);

  Spool* spool_;
  uint64_t epoch_;
  std::function<void(Position)> on_durable_;
  std::function<Position()> quorum_;
  std::string buf_;
  bool in_txn_ = false;
  bool skipping_ = false;  // a transaction the spool already holds
  bool unit_dirty_ = false;
  Lsn txn_lsn_;
  Lsn last_unit_lsn_;  // newest unit appended (synced or not)
  Lsn pending_end_;    // end LSN of the newest appended commit
  std::atomic<uint64_t> spooled_end_{0};
  // (commit LSN, end LSN) of recently spooled transactions, to map a quorum
  // position (commit LSN) back to the end LSN PostgreSQL wants confirmed.
  std::mutex mu_;
  std::deque<std::pair<Lsn, Lsn>> recent_;
  Lsn quorum_confirmed_;
  std::atomic<uint64_t> transactions_{0};
  std::atomic<uint64_t> skipped_{0};
};

}  // namespace geosync
