// The spool's on-disk format: one record's header, segment file names, and a
// bounded-memory sequential reader of one segment file. agent/spool/spool.h
// builds the durable, rotating, multi-reader spool on top of it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// A spool is a directory of segment files. A segment holds whole records, back
// to back, with no file header. Every integer is little-endian.
//
//   offset  size  field
//   0       4     magic "GSR1" (0x47 0x53 0x52 0x31); the '1' is the format version
//   4       4     CRC-32C of bytes 8..31 of this header followed by the payload
//   8       4     payload length n, at most kMaxRecordPayload
//   12      1     flags: bit0 kFirstInUnit, bit1 kLastInUnit; other bits must be 0
//   13      3     reserved, must be 0
//   16      8     epoch
//   24      8     lsn: for records of a transaction, its commit LSN (Begin.final_lsn)
//   32      n     payload, opaque to the spool
//
// A unit is a run of records that share (epoch, lsn): the first has bit0, the
// last has bit1, a standalone record (heartbeat) has both. A transaction never
// spans two segments, and (epoch, lsn) never decreases along the spool.
inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr std::array<uint8_t, 4> kRecordMagic = {'G', 'S', 'R', '1'};
inline constexpr uint32_t kMaxRecordPayload = 1u << 30;
inline constexpr uint8_t kFirstInUnit = 0x01;
inline constexpr uint8_t kLastInUnit = 0x02;
inline constexpr uint8_t kStandalone = kFirstInUnit | kLastInUnit;

struct SpoolRecord {
  uint64_t epoch = 0;
  Lsn lsn;
  uint8_t flags = 0;
  std::vector<uint8_t> payload;

  Position position() const { return Position{epoch, lsn}; }
  bool first_in_unit() const { return (flags & kFirstInUnit) != 0; }
  bool last_in_unit() const { return (flags & kLastInUnit) != 0; }
};

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// The 32-byte header for a record; the CRC covers `payload` too.
std::array<uint8_t, kRecordHeaderSize> EncodeRecordHeader(uint64_t epoch, Lsn lsn, uint8_t flags,
                                                          std::span<const uint8_t> payload);

// "0000000000000001-0000000016B374D8.seg": the epoch and LSN of the segment's
// first record as fixed-width hex, so that names sort in spool order.
std::string SegmentFileName(Position first);
// The inverse of SegmentFileName; nullopt for any other name.
std::optional<Position> ParseSegmentFileName(std::string_view name);

// Reads records one by one from an open segment file with a fixed-size
// buffer (payloads larger than the buffer are read straight into the record).
// It never reads at or past `limit`, the number of bytes known to be valid.
// Does not own the file descriptor.
class SegmentReader {
 public:
  enum class Step {
    kRecord,      // *out holds the record; offset() moved past it
    kEnd,         // offset() == limit: no more bytes
    kIncomplete,  // a header or payload is cut short by `limit`
    kBad,         // bad magic, version, flags, reserved bytes, length or CRC
  };

  SegmentReader(int fd, std::string name, uint64_t offset);

  // Reads the record at offset(). On kIncomplete and kBad, offset() stays at
  // the record's start and `problem` (when given) says what is wrong, without
  // the offset: "checksum mismatch", "incomplete record (payload: 5 of 90 bytes)".
  Result<Step> Next(uint64_t limit, SpoolRecord* out, std::string* problem = nullptr);

  uint64_t offset() const { return offset_; }
  const std::string& name() const { return name_; }

 private:
  // Copies up to dst.size() bytes at `pos` (bounded by `limit`) into dst;
  // returns how many it copied.
  Result<size_t> ReadAt(uint64_t pos, std::span<uint8_t> dst, uint64_t limit);
  Result<size_t> Pread(uint64_t pos, std::span<uint8_t> dst);

  int fd_;
  std::string name_;
  uint64_t offset_;
  std::vector<uint8_t> buf_;
  uint64_t buf_pos_ = 0;  // file offset of buf_[0]
  size_t buf_len_ = 0;
};

}  // namespace geosync
