// Turning the replica's spool into units to apply: the records of one spool
// unit (a source transaction, or a standalone unit such as a heartbeat),
// decoded, with read-ahead so that the next group is decoded while the
// server executes the current one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "agent/spool/spool.h"
#include "common/change.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

struct ApplyUnit {
  Position position;  // the spool unit's (epoch, commit lsn)
  bool is_txn = false;
  BeginEvent begin;
  CommitEvent commit;
  std::vector<Event> events;  // between Begin and Commit (all of a standalone unit)
  uint64_t bytes = 0;         // spool payload bytes
};

// Decodes the records of one spool unit. A transaction is Begin, its events,
// then Commit; anything else in that place is Status::Corruption naming the
// unit (and the record, for one that does not decode).
Status DecodeUnit(const std::vector<SpoolRecord>& records, ApplyUnit* unit);

class UnitReader {
 public:
  // Reads the units after `after`; forgets whatever was read before.
  Status Open(Spool& spool, Position after);
  void Close();

  // The next unit (one put back or read ahead first), without taking it;
  // nullptr when the spool holds no whole unit more for now.
  Result<const ApplyUnit*> Peek();
  // Takes the unit Peek() returned.
  ApplyUnit Pop();
  // Puts a unit taken with Pop() back in front.
  void PutBack(ApplyUnit unit);
  // Reads and decodes units until `max_units` or `max_bytes` are waiting, or
  // the spool holds no whole unit more.
  Status ReadAhead(size_t max_units, uint64_t max_bytes);

 private:
  Result<bool> ReadSpoolUnit(ApplyUnit* unit);

  std::unique_ptr<SpoolReader> reader_;
  std::vector<SpoolRecord> partial_;  // records of a unit not yet complete
  std::deque<ApplyUnit> pending_;     // read but not yet taken
};

}  // namespace geosync
