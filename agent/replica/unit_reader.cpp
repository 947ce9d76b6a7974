// Spool units for apply (unit_reader.h).
#include "agent/replica/unit_reader.h"

#include <variant>

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {

Status DecodeUnit(const std::vector<SpoolRecord>& records, ApplyUnit* unit) {
  *unit = ApplyUnit{};
  unit->position = records.front().position();
  for (size_t i = 0; i < records.size(); ++i) {
    const SpoolRecord& rec = records[i];
    unit->bytes += rec.payload.size();
    auto event = DecodeEvent(rec.payload);
    if (!event.ok()) {
      return event.status().WithContext(
          fmt::format("spool unit {} record {}", unit->position.ToString(), i));
    }
    if (auto* begin = std::get_if<BeginEvent>(&*event)) {
      if (i != 0) return Status::Corruption("Begin inside spool unit " + unit->position.ToString());
      unit->is_txn = true;
      unit->begin = *begin;
    } else if (auto* commit = std::get_if<CommitEvent>(&*event)) {
      if (!unit->is_txn || i + 1 != records.size()) {
        return Status::Corruption("misplaced Commit in spool unit " + unit->position.ToString());
      }
      unit->commit = *commit;
    } else {
      unit->events.push_back(std::move(*event));
    }
  }
  if (unit->is_txn && !unit->commit.end_lsn.valid()) {
    return Status::Corruption("spool unit " + unit->position.ToString() + " has no Commit");
  }
  return Status::Ok();
}

Status UnitReader::Open(Spool& spool, Position after) {
  Close();
  auto reader = spool.ReadFrom(after);
  if (!reader.ok()) return reader.status().WithContext("opening the spool for apply");
  reader_ = std::move(reader).value();
  return Status::Ok();
}

void UnitReader::Close() {
  reader_.reset();
  partial_.clear();
  pending_.clear();
}

Result<const ApplyUnit*> UnitReader::Peek() {
  if (pending_.empty()) {
    ApplyUnit unit;
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadSpoolUnit(&unit));
    if (!got) return nullptr;
    pending_.push_back(std::move(unit));
  }
  return &pending_.front();
}

ApplyUnit UnitReader::Pop() {
  ApplyUnit unit = std::move(pending_.front());
  pending_.pop_front();
  return unit;
}

void UnitReader::PutBack(ApplyUnit unit) { pending_.push_front(std::move(unit)); }

Status UnitReader::ReadAhead(size_t max_units, uint64_t max_bytes) {
  uint64_t bytes = 0;
  for (const ApplyUnit& u : pending_) bytes += u.bytes;
  while (pending_.size() < max_units && bytes < max_bytes) {
    ApplyUnit unit;
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadSpoolUnit(&unit));
    if (!got) break;
    bytes += unit.bytes;
    pending_.push_back(std::move(unit));
  }
  return Status::Ok();
}

Result<bool> UnitReader::ReadSpoolUnit(ApplyUnit* unit) {
  if (!reader_) return Status::Io("apply: the spool is not open");
  while (true) {
    GEOSYNC_ASSIGN_OR_RETURN(std::optional<SpoolRecord> rec, reader_->Next());
    if (!rec) return false;
    if (rec->first_in_unit() != partial_.empty()) {
      return Status::Corruption(
          fmt::format("spool record at {} breaks the unit structure", rec->position().ToString()));
    }
    const bool last = rec->last_in_unit();
    partial_.push_back(std::move(*rec));
    if (last) break;
  }
  Status st = DecodeUnit(partial_, unit);
  partial_.clear();
  if (!st.ok()) return st;
  return true;
}

}  // namespace geosync
