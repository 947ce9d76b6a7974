// SpoolSink: captured transactions into the source spool, exactly once.
#include "agent/source/spool_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"

namespace geosync {
namespace {
constexpr size_t kMaxRecent = 1 << 16;
}

SpoolSink::SpoolSink(Spool* spool, uint64_t epoch, std::function<void(Position)> on_durable)
    : spool_(spool), epoch_(epoch), on_durable_(std::move(on_durable)) {
  Position last = spool_->durable();
  if (last.epoch == epoch_) last_unit_lsn_ = last.lsn;
}

Status SpoolSink::Append(Lsn lsn, uint8_t flags, const Event& event) {
  buf_.clear();
  EncodeEvent(event, &buf_);
  unit_dirty_ = true;
  return spool_->Append(
      epoch_, lsn, flags,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()));
}

Status SpoolSink::OnEvent(const Event& event) {
  if (const auto* begin = std::get_if<BeginEvent>(&event)) {
    if (in_txn_) {
      return Status::Protocol(
          fmt::format("Begin of xid {} inside an open transaction", begin->xid));
    }
    in_txn_ = true;
    txn_lsn_ = begin->final_lsn;
    // PostgreSQL resends every transaction after the slot's confirmed
    // position; the spool may already hold some of them.
    skipping_ = last_unit_lsn_.valid() && begin->final_lsn <= last_unit_lsn_;
    if (skipping_) {
      skipped_++;
      return Status::Ok();
    }
    return Append(txn_lsn_, kFirstInUnit, event);
  }
  if (const auto* commit = std::get_if<CommitEvent>(&event)) {
    if (!in_txn_) return Status::Protocol("Commit outside a transaction");
    in_txn_ = false;
    if (skipping_) {
      skipping_ = false;
      return Status::Ok();
    }
    GEOSYNC_RETURN_IF_ERROR(Append(txn_lsn_, kLastInUnit, event));
    last_unit_lsn_ = txn_lsn_;
    pending_end_ = commit->end_lsn;
    {
      std::lock_guard lock(mu_);
      recent_.emplace_back(commit->commit_lsn, commit->end_lsn);
      if (recent_.size() > kMaxRecent) recent_.pop_front();
    }
    transactions_++;
    return Status::Ok();
  }
  if (!in_txn_) {
    // Only non-transactional logical messages arrive outside a transaction.
    const auto* msg = std::get_if<MessageEvent>(&event);
    if (!msg) return Status::Protocol("row change outside a transaction");
    if (last_unit_lsn_.valid() && msg->lsn <= last_unit_lsn_) return Status::Ok();
    GEOSYNC_RETURN_IF_ERROR(Append(msg->lsn, kStandalone, event));
    last_unit_lsn_ = msg->lsn;
    return Status::Ok();
  }
  if (skipping_) return Status::Ok();
  return Append(txn_lsn_, 0, event);
}

Status SpoolSink::OnIdle() {
  if (!unit_dirty_) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(spool_->Sync());
  unit_dirty_ = in_txn_ && !skipping_;
  if (pending_end_.value() > spooled_end_) {
    spooled_end_ = pending_end_.value();
    if (on_durable_) on_durable_(spool_->durable());
  }
  return Status::Ok();
}

Status SpoolSink::OnReconnect() {
  // A write that failed (a full disk) left the spool refusing writes: cut it
  // back to its durable end and go on from there. While the disk still
  // refuses, the error goes back to Capture, which retries with its backoff:
  // a pause, and nothing lost, since the slot is confirmed only up to what
  // the spool holds durably and PostgreSQL sends the rest again.
  if (spool_->failed()) {
    GEOSYNC_RETURN_IF_ERROR(spool_->ReopenWriter());
    in_txn_ = false;
    skipping_ = false;
    unit_dirty_ = false;
    pending_end_ = Lsn(spooled_end_.load());  // what was cut is no longer spooled
    const Position durable = spool_->durable();
    last_unit_lsn_ = durable.epoch == epoch_ ? durable.lsn : Lsn();
    return Status::Ok();
  }
  if (in_txn_ && !skipping_) {
    spdlog::info("capture: dropping the incomplete transaction at {} (it will be sent again)",
                 txn_lsn_.ToString());
    GEOSYNC_RETURN_IF_ERROR(spool_->AbandonIncompleteUnit());
  }
  in_txn_ = false;
  skipping_ = false;
  return Status::Ok();
}

Lsn SpoolSink::DurableLsn() {
  Lsn spooled(spooled_end_.load());
  if (!quorum_) return spooled;
  Position q = quorum_();
  std::lock_guard lock(mu_);
  Lsn best = quorum_confirmed_;
  if (q.epoch != epoch_ || !q.lsn.valid()) return best;
  // The newest spooled transaction whose commit the quorum holds.
  while (!recent_.empty() && recent_.front().first <= q.lsn) {
    best = recent_.front().second;
    if (recent_.size() == 1) break;  // keep the newest for the next call
    recent_.pop_front();
  }
  if (!recent_.empty() && recent_.front().first <= q.lsn) best = recent_.front().second;
  quorum_confirmed_ = std::min(best, spooled);
  return quorum_confirmed_;
}

}  // namespace geosync
