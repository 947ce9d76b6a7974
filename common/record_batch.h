// The payload of a Data frame: a batch of spool records, shipped verbatim so
// that a replica's spool holds exactly the source's records (and can serve
// peers after a promotion). Relation descriptors are sent once per connection
// and again when they change; repeats travel as a short reference.
//
// Entry layout (all integers unsigned LEB128 varints unless noted):
//   u8     kind: 0 record, 1 relation record (cache it), 2 relation reference
//   kind 0 and 1:
//     varint epoch
//     varint lsn          the record's unit LSN (commit LSN of its transaction)
//     u8     flags        spool unit flags (kFirstInUnit, kLastInUnit)
//     varint n, n bytes   the record payload (one encoded Event)
//   kind 2:
//     varint epoch, varint lsn, u8 flags   as above
//     varint oid          the source relation OID whose last kind-1 payload
//                         on this connection is the payload
// A batch is a concatenation of entries with nothing after the last one.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

struct BatchRecord {
  uint64_t epoch = 0;
  Lsn lsn;
  uint8_t flags = 0;
  std::string payload;

  bool operator==(const BatchRecord&) const = default;
};

// Sender side: per connection. Appends `record` to `out`, replacing a
// Relation payload already sent unchanged on this connection by a reference.
class BatchEncoder {
 public:
  void Append(uint64_t epoch, Lsn lsn, uint8_t flags, std::span<const uint8_t> payload,
              std::string* out);
  uint64_t relations_deduplicated() const { return deduplicated_; }

 private:
  std::unordered_map<uint32_t, std::string> sent_;
  uint64_t deduplicated_ = 0;
};

// Receiver side: per connection. Decodes one batch, expanding references.
class BatchDecoder {
 public:
  Result<std::vector<BatchRecord>> Decode(std::span<const uint8_t> batch);

 private:
  std::unordered_map<uint32_t, std::string> cache_;
};

}  // namespace geosync
