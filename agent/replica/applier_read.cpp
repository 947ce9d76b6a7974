// The applier's side of reading the spool: holds (verify, drills), skips on
// DBA request, and gathering units into groups (unit_reader.h reads them).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "agent/replica/applier.h"

namespace geosync {

// ---- Reading the spool -------------------------------------------------------

void Applier::HoldBefore(Position at, std::chrono::seconds max) {
  std::lock_guard lock(mu_);
  hold_ = at;
  hold_until_ = std::chrono::steady_clock::now() + max;
  held_ = false;
  reached_ = false;
  durable_seq_++;  // an idle loop looks again now
  cv_.notify_all();
  spdlog::info("apply: holding before {} (verify or drill)", at.ToString());
}

void Applier::ReleaseHold() {
  {
    std::lock_guard lock(mu_);
    if (!hold_) return;
    hold_.reset();
    held_ = false;
    reached_ = false;
    durable_seq_++;  // wake the loop
  }
  cv_.notify_all();
  spdlog::info("apply: hold released");
}

bool Applier::Held() const {
  std::lock_guard lock(mu_);
  return held_;
}

bool Applier::HeldBack(const Position& pos) {
  std::lock_guard lock(mu_);
  if (!hold_ || pos < *hold_) return false;
  if (std::chrono::steady_clock::now() > hold_until_) {
    spdlog::warn("apply: the hold before {} expired; applying again", hold_->ToString());
    hold_.reset();
    held_ = false;
    reached_ = false;
    return false;
  }
  reached_ = true;
  return true;
}

void Applier::MarkHeldIfReached() {
  std::lock_guard lock(mu_);
  if (hold_ && reached_ && !held_) {
    held_ = true;
    spdlog::info("apply: holding before {}: everything before it is applied (applied {})",
                 hold_->ToString(), applied_.ToString());
  }
}

Result<bool> Applier::ReadUnit(Unit* unit) {
  GEOSYNC_ASSIGN_OR_RETURN(const Unit* next, units_.Peek());
  if (!next || HeldBack(next->position)) return false;
  *unit = units_.Pop();
  return true;
}

// Gathers consecutive units for one replica transaction: up to batch_max_txns
// transactions, batch_max_bytes of spool payload and batch_max_ms spent
// reading, never across an epoch change, with a transaction to skip alone.
// Whatever is durable is applied at once: no waiting for a fuller group.
// For parallel apply (`writes`), a group without barriers ends before a
// barrier, and before a unit that conflicts with a group in flight unless
// its first unit already does (it then waits for that group anyway).
Status Applier::CollectGroup(std::vector<Unit>* group, GroupWrites* writes) {
  const auto start = std::chrono::steady_clock::now();
  const auto max_time = std::chrono::milliseconds(options_.batch.batch_max_ms);
  uint64_t bytes = 0;
  int txns = 0;
  std::unordered_map<uint32_t, Relation> described;  // Relation events of the group
  const TableDepsFn deps = [this](const Relation& rel) { return DepsOf(rel); };
  bool conflicted = false;
  bool has_txn = false;
  while (true) {
    Unit unit;
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadUnit(&unit));
    if (!got) break;
    const bool skip = unit.is_txn && SkipRequested(unit.begin.xid);
    if (!group->empty() && (unit.position.epoch != group->front().position.epoch || skip)) {
      units_.PutBack(std::move(unit));
      break;
    }
    if (writes) {
      Writeset w;
      AddToWriteset(unit, relations_, &described, deps, &w);
      const bool barrier = w.barrier || skip || unit.position <= serial_until_ || !origin_set_up_ ||
                           unit.position.epoch != origin_epoch_;
      if (group->empty()) {
        writes->serial = barrier;
        conflicted = !barrier && ConflictsInFlight(w, true);
      } else if (!writes->serial && (barrier || (!conflicted && ConflictsInFlight(w, true)))) {
        units_.PutBack(std::move(unit));
        break;
      }
      if (!writes->serial) writes->writes.Merge(w);
    }
    has_txn = has_txn || unit.is_txn;
    txns += unit.is_txn ? 1 : 0;
    bytes += unit.bytes;
    group->push_back(std::move(unit));
    if (skip || txns >= options_.batch.batch_max_txns || bytes >= options_.batch.batch_max_bytes ||
        std::chrono::steady_clock::now() - start >= max_time) {
      break;
    }
  }
  // Heartbeats alone commit nothing: their place is after every group sent.
  if (writes && !has_txn) writes->serial = writes->heartbeats_only = true;
  return Status::Ok();
}

// Looked up in the catalog read with the trigger check; a table that was not
// there is applied alone, and the catalog is read again.
TableDeps Applier::DepsOf(const Relation& rel) {
  std::string name = rel.nspname;
  name.push_back('\0');
  name += rel.relname;
  const bool keyed =
      (rel.replica_identity == 'd' || rel.replica_identity == 'i') &&
      std::any_of(rel.columns.begin(), rel.columns.end(), [](const Column& c) { return c.is_key; });
  const auto& map = keyed ? table_deps_ : keyless_deps_;
  auto it = map.find(name);
  if (it == map.end()) {
    check_reorder_ = true;
    return TableDeps::kBarrier;
  }
  // Rows of REPLICA IDENTITY FULL are their whole contents: a unique index
  // ties them as it ties keyed rows.
  if (rel.replica_identity == 'f' && it->second == TableDeps::kBarrier) return TableDeps::kTable;
  return it->second;
}

bool Applier::SkipRequested(uint32_t xid) const {
  std::lock_guard lock(mu_);
  return skip_xids_.count(xid) > 0;
}

}  // namespace geosync
