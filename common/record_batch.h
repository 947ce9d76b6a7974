// The payload of a Data frame: a batch of spool records that a replica turns
// back into exactly the source's records, byte for byte (its spool must be
// able to serve peers after a promotion). What is predictable from earlier
// entries on the same connection is left out and re-derived on decode:
// positions travel as deltas, a transaction's Begin and Commit shrink to the
// fields that cannot be derived, a row change drops its relation OID, and a
// Relation descriptor is sent once per connection (then referenced).
//
// Batch layout, format 2 (varint = unsigned LEB128, zigzag = zigzag varint):
//   u8     batch format  2 (kBatchFormat); anything else is rejected
//   entries, each:
//     u8   tag           bits 0-1 spool record flags (kFirstInUnit, kLastInUnit)
//                        bit 2    a position follows; else the previous entry's
//                        bit 3    the epoch follows (only with bit 2)
//                        bits 4-6 entry kind, below
//                        bit 7    must be 0
//     [varint epoch]     when bit 3; else the previous epoch
//     [zigzag lsn_delta] when bit 2: lsn - previous lsn, modulo 2^64
//     body by kind:
//       0 record         str payload, verbatim
//       1 relation       str payload, a Relation record: cache it by OID
//       2 relation ref   varint oid: the payload of the last kind-1 entry for it
//       3 begin          zigzag xid delta (vs the last kind-3 xid), zigzag
//                        commit_time delta (vs the last kind-3 commit_time);
//                        payload = Begin{xid, final_lsn = lsn, commit_time}
//       4 commit         varint end_lsn - lsn (mod 2^64); payload = Commit{
//                        last kind-3 xid, commit_lsn = lsn, end_lsn, last kind-3
//                        commit_time}
//       5 row change     u8 type 'I'/'U'/'D', str body; payload = version,
//                        type, varint rel_oid of the last kind-1/2 entry, body
// "Previous" and "last" run over the whole connection, starting from epoch 0,
// lsn 0, xid 0, commit_time 0 and no relation. The encoder only uses kinds
// 3-5 when re-deriving gives back the exact payload bytes; else it sends the
// record verbatim (kind 0).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

class WireReader;

inline constexpr uint8_t kBatchFormat = 2;

struct BatchRecord {
  uint64_t epoch = 0;
  Lsn lsn;
  uint8_t flags = 0;
  std::string payload;

  bool operator==(const BatchRecord&) const = default;
};

// What both ends remember between entries of one connection.
struct BatchState {
  uint64_t epoch = 0;
  uint64_t lsn = 0;
  uint32_t xid = 0;
  int64_t commit_time = 0;
  bool have_txn = false;  // a kind-3 entry has been seen
  uint32_t rel_oid = 0;
  bool have_rel = false;  // a kind-1/2 entry has been seen
};

// Sender side: per connection. Appends `record` to `out`; an empty `out`
// first gets the batch format byte, so each batch starts with one.
class BatchEncoder {
 public:
  void Append(uint64_t epoch, Lsn lsn, uint8_t flags, std::span<const uint8_t> payload,
              std::string* out);
  uint64_t relations_deduplicated() const { return deduplicated_; }
  // Records sent in a derived form (kinds 3-5) rather than verbatim.
  uint64_t records_derived() const { return derived_; }

 private:
  std::unordered_map<uint32_t, std::string> sent_;
  BatchState state_;
  uint64_t deduplicated_ = 0;
  uint64_t derived_ = 0;
};

// The most a decoded batch may hold (sum of its payloads). A sender stops
// adding records to a batch at 256 KiB, and relation references are rare
// (pgoutput re-sends a descriptor only when it changes), so an honest batch
// stays far below this; a forged one of 2-byte references to a large
// descriptor would otherwise expand a 64 MiB frame to terabytes.
inline constexpr size_t kMaxDecodedBatchBytes = 256u << 20;

// Receiver side: per connection. Decodes one batch, re-deriving every
// payload. After an error the connection must be dropped (state is partial).
class BatchDecoder {
 public:
  explicit BatchDecoder(size_t max_decoded_bytes = kMaxDecodedBatchBytes)
      : max_decoded_bytes_(max_decoded_bytes) {}
  Result<std::vector<BatchRecord>> Decode(std::span<const uint8_t> batch);

 private:
  // The entry's tag at `at`: checks it and applies its epoch and position
  // to the state. Returns the entry kind.
  Result<uint8_t> ReadTag(WireReader& r, size_t at, uint8_t* tag);
  // The entry's body into rec->payload, by kind.
  Status DecodeEntry(WireReader& r, uint8_t kind, size_t at, BatchRecord* rec);
  Status DecodeBegin(WireReader& r, BatchRecord* rec);

  std::unordered_map<uint32_t, std::string> cache_;
  BatchState state_;
  size_t max_decoded_bytes_;
};

}  // namespace geosync
