// Parallel apply (apply.workers > 1): groups whose writesets do not conflict
// run at once on several sessions; their commits go in source order, each
// taking the replication origin in turn, so the origin's progress is exact
// and a crash anywhere loses nothing and applies nothing twice
// (docs/apply.md, "Parallel apply").
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/replica/applier.h"

namespace geosync {

// Nothing that fires during apply (CheckReorderSafe), the group order kept
// for a hold, and past the units a failed parallel group left to serial apply.
bool Applier::Parallel() const {
  if (sessions_.size() < 2 || !reorder_ok_ || check_reorder_ || plain_) return false;
  std::lock_guard lock(mu_);
  return !hold_.has_value();
}

bool Applier::ConflictsInFlight(const Writeset& writes, bool making_room) const {
  // When every session is busy, the oldest group commits before a new one is
  // sent: what it wrote is no conflict.
  size_t first = making_room && in_flight_.size() == sessions_.size() ? 1 : 0;
  for (size_t i = first; i < in_flight_.size(); ++i) {
    if (writes.Conflicts(in_flight_[i]->writes)) return true;
  }
  return false;
}

Status Applier::SendInParallel(std::vector<Unit> group, Writeset writes) {
  // Commit the groups it conflicts with, and make room.
  size_t through = 0;
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    if (writes.Conflicts(in_flight_[i]->writes)) through = i + 1;
  }
  if (in_flight_.size() >= sessions_.size()) {
    through = std::max(through, in_flight_.size() - sessions_.size() + 1);
  }
  GEOSYNC_RETURN_IF_ERROR(FinishInFlight(through));
  ApplySession* free = nullptr;
  for (auto& s : sessions_) {
    if (std::find(in_flight_.begin(), in_flight_.end(), s.get()) == in_flight_.end()) {
      free = s.get();
      break;
    }
  }
  s_ = free;
  free->group = std::move(group);
  free->writes = std::move(writes);
  const bool overlapping = !in_flight_.empty();
  parallel_send_ = true;
  Status st = SendGroup(free->group, options_.batch.collapse);
  parallel_send_ = false;
  in_flight_.push_back(free);
  if (!st.ok()) return ParallelFailed(st);
  if (overlapping) {
    std::lock_guard lock(mu_);
    stats_.parallel_groups++;
  }
  return Status::Ok();
}

// Commits the oldest `count` groups in flight, in order.
Status Applier::FinishInFlight(size_t count) {
  for (size_t i = 0; i < count; ++i) {
    s_ = in_flight_.front();
    Status st = FinishGroup();
    if (!st.ok()) return ParallelFailed(st);
    in_flight_.pop_front();
    s_->group.clear();
    s_->units = {};
    s_->writes = Writeset{};
    GEOSYNC_RETURN_IF_ERROR(UpdateFlushed(false));
  }
  return Status::Ok();
}

// Whatever failed -- a constraint, a missed row, a lock wait, a lost
// connection -- the status returned is retryable, so Run() closes every
// session, which rolls back each group not yet committed, drops what was
// collected, and applies again from the origin's progress, one group at a
// time up to the last unit that was in flight. The serial path then retries,
// falls back or stops with the error naming the source transaction.
Status Applier::ParallelFailed(const Status& st) {
  if (st.code() == Code::kCancelled || st.code() == Code::kFenced) return st;
  for (const ApplySession* s : in_flight_) {
    if (!s->group.empty()) serial_until_ = std::max(serial_until_, s->group.back().position);
  }
  {
    std::lock_guard lock(mu_);
    stats_.parallel_fallbacks++;
  }
  spdlog::info(
      "apply: a parallel group failed ({}); applying again from the origin, one group "
      "at a time up to {}",
      st.ToString(), serial_until_.ToString());
  // Never OK: the loop must not go on with a group it collected before.
  // Run() closes every session and reconnects, as after a lost connection.
  if (st.retryable()) return st;
  // The status shows in /status: the SQLSTATE, not the row values of the
  // message (logged above for the DBA).
  return Status::Io(
      fmt::format("a parallel group failed (SQLSTATE {}); applying again from the "
                  "origin one group at a time",
                  st.sqlstate().empty() ? "-" : st.sqlstate()));
}

}  // namespace geosync
