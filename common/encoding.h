// geosync's own binary encoding of the change model (common/change.h): one
// compact, versioned record per Event, and the byte-level primitives (LEB128
// varints, zigzag, length-prefixed strings) that control.h's records share.
// Pure functions over byte arrays; the byte layouts are in encoding.cpp above
// each decoder and in docs/wire-format.md.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/change.h"
#include "common/status.h"

namespace geosync {

// First byte of every record. A decoder rejects any other value.
inline constexpr uint8_t kEncodingVersion = 1;

// Record type bytes, ASCII so that hex dumps read like pgoutput's.
enum class EventType : uint8_t {
  kBegin = 'B',
  kCommit = 'C',
  kRelation = 'R',
  kInsert = 'I',  // RowChange with op kInsert
  kUpdate = 'U',  // RowChange with op kUpdate
  kDelete = 'D',  // RowChange with op kDelete
  kTruncate = 'T',
  kMessage = 'M',
};

// Appends one record encoding `event` to `out`.
void EncodeEvent(const Event& event, std::string* out);
// Decodes exactly one record: trailing bytes are an error. Errors are
// Status::Protocol naming the byte offset:
// "event decode: unknown datum kind 0x7a at offset 31".
Result<Event> DecodeEvent(std::span<const uint8_t> bytes);

// A plain batch is a concatenation of length-prefixed records: varint record
// length, then the record. (Data frames use common/record_batch.h instead.)
// Appends one length-prefixed record to a batch.
void AppendEventRecord(const Event& event, std::string* out);
// Appends every event as a length-prefixed record.
void EncodeEvents(std::span<const Event> events, std::string* out);
// Decodes a whole batch; error offsets count from the start of `bytes`.
Result<std::vector<Event>> DecodeEvents(std::span<const uint8_t> bytes);

// ---- Primitives shared by the record codecs --------------------------------

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Unsigned LEB128: 7 bits per byte, low groups first, high bit = "more".
// At most 10 bytes for a uint64_t.
inline constexpr size_t kMaxVarintBytes = 10;
void PutVarint(uint64_t value, std::string* out);
// Zigzag maps signed to unsigned so that small magnitudes stay small:
// 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ...
inline constexpr uint64_t ZigzagEncode(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline constexpr int64_t ZigzagDecode(uint64_t u) {
  return static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1);
}
inline void PutZigzag(int64_t value, std::string* out) { PutVarint(ZigzagEncode(value), out); }
// Varint length, then the bytes.
void PutLengthPrefixed(std::string_view bytes, std::string* out);
void PutFixed32(uint32_t value, std::string* out);  // little-endian
uint32_t DecodeFixed32(const uint8_t* p);           // little-endian

// Reads primitives from a byte span. Every failure is a Status::Protocol
// that names the record kind, the field and the absolute byte offset:
// "hello decode: truncated varint (epoch) at offset 12".
class WireReader {
 public:
  // `what` prefixes messages ("event decode"); `base_offset` is added to
  // offsets so that a record inside a batch reports its batch offset.
  WireReader(std::span<const uint8_t> bytes, std::string_view what, size_t base_offset = 0);

  size_t offset() const { return base_offset_ + pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  Result<uint8_t> U8(std::string_view field);
  // Rejects truncation, more than 10 bytes, bits beyond 64 and non-minimal
  // encodings (a final 0x00 group), so every value has one encoding.
  Result<uint64_t> Varint(std::string_view field);
  Result<uint32_t> Varint32(std::string_view field);  // also rejects > UINT32_MAX
  Result<int64_t> Zigzag(std::string_view field);
  Result<int32_t> Zigzag32(std::string_view field);
  // The next `n` bytes, checked against the end.
  Result<std::span<const uint8_t>> Bytes(uint64_t n, std::string_view field);
  // Varint length, then that many bytes; checks the length before copying.
  Result<std::string> LengthPrefixed(std::string_view field);
  // A varint element count that cannot exceed the bytes left, given that each
  // element takes at least `min_element_bytes`: safe to reserve().
  Result<uint64_t> Count(std::string_view field, size_t min_element_bytes);
  // The version byte (must be kEncodingVersion), then the type byte.
  Result<uint8_t> RecordHeader();
  // Rejects bits of a flags byte outside `known_mask`.
  Status CheckFlags(uint8_t flags, uint8_t known_mask, size_t at) const;
  // Fails when bytes remain.
  Status ExpectEnd() const;

  // "<what>: <message> at offset <at>".
  Status Error(std::string_view message, size_t at) const;
  // "unexpected record type 0x.. (expected 0x..)" at the type byte.
  Status UnexpectedType(uint8_t got, uint8_t expected) const;

 private:
  std::span<const uint8_t> bytes_;
  std::string_view what_;
  size_t base_offset_;
  size_t pos_ = 0;
};

// Every record (events, control messages, seed messages) starts with two
// bytes: kEncodingVersion, then its type.
void PutRecordHeader(uint8_t type, std::string* out);

// Decodes one whole record of `type`: checks the header, runs `body` to read
// the fields into a T, then checks that nothing is left.
// `body` is Status(WireReader&, T&).
template <typename T, typename Body>
Result<T> DecodeRecord(std::span<const uint8_t> bytes, std::string_view what, uint8_t type,
                       Body body) {
  WireReader r(bytes, what);
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t got, r.RecordHeader());
  if (got != type) return r.UnexpectedType(got, type);
  T m;
  GEOSYNC_RETURN_IF_ERROR(body(r, m));
  GEOSYNC_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

}  // namespace geosync
