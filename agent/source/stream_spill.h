// StreamSpill: the on-disk store of streamed in-progress transactions
// (pgoutput protocol version 2). Capture appends each message of a streamed
// chunk to one file per top-level xid and, at Stream Commit, reads the file
// back in order, so a transaction of any size costs a bounded amount of memory.
//
// A subtransaction's abort truncates the file at the offset where that
// subxid's first message was written, as PostgreSQL's apply worker does
// (worker.c, subxact_info_add / stream_abort): a subtransaction is open from
// its first change until it aborts, so every message after that offset
// belongs to it or to subtransactions nested in it, all of which abort too.
//
// File layout (only ever read by the process that wrote it):
//   8 bytes  magic "GSSPILL1"
//   then records, integers big-endian:
//     UInt32  length of the payload
//     UInt32  CRC-32C of the payload
//     Byte[length] the pgoutput message as received, streamed xid included
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace geosync {

// Reads a spill file's records in order through a fixed buffer: memory stays
// at 1 MiB plus the largest record. Valid until its transaction is dropped.
class SpillReader {
 public:
  SpillReader(int fd, std::string path, uint64_t size);
  // The next record into `record`; false at the end of the file. A short or
  // oversized record is Status::Corruption naming the file and offset.
  Result<bool> Next(std::vector<uint8_t>* record);
  // Offset of the record Next returned last.
  uint64_t record_offset() const { return record_offset_; }
  const std::string& path() const { return path_; }

 private:
  Status Read(size_t n, std::vector<uint8_t>* out, std::string_view what);
  Status Fill(std::string_view what);

  int fd_;
  std::string path_;
  uint64_t size_;
  uint64_t offset_ = 0;
  uint64_t record_offset_ = 0;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
};

class StreamSpill {
 public:
  // Largest record accepted: PostgreSQL's own limit for one message is 1 GB.
  static constexpr uint32_t kMaxRecord = 1u << 30;

  // `dir` is created on Reset() when missing.
  explicit StreamSpill(std::string dir);
  ~StreamSpill();
  StreamSpill(const StreamSpill&) = delete;
  StreamSpill& operator=(const StreamSpill&) = delete;

  // Forgets every transaction and deletes every spill file in the directory,
  // also those a previous process left: after a reconnect PostgreSQL streams
  // in-progress transactions again from their first segment.
  Status Reset();
  // Stream Start. The first segment starts (or truncates) the xid's file;
  // a later segment needs the file from an earlier one.
  Status Start(uint32_t xid, bool first_segment);
  // Appends one message of (sub)transaction `subxid` of top-level `xid`.
  Status Append(uint32_t xid, uint32_t subxid, std::span<const uint8_t> payload);
  // Stream Stop: writes buffered records out (no fsync: the file never
  // outlives the connection that fills it).
  Status Flush(uint32_t xid);
  // Stream Abort: subxid == xid drops the transaction, otherwise the messages
  // from subxid's first one on. Unknown xids and subxids are no-ops.
  Status Abort(uint32_t xid, uint32_t subxid);
  // Stream Commit: a reader over the xid's records (buffered ones written
  // out first), its header checked. Drop(xid) when done with it.
  Result<SpillReader> OpenReader(uint32_t xid);
  // Reads every record through `fn`, then drops the transaction. A missing
  // transaction replays nothing.
  Status Replay(uint32_t xid, const std::function<Status(std::span<const uint8_t>)>& fn);
  // Forgets the transaction and deletes its file.
  void Drop(uint32_t xid);

  bool Has(uint32_t xid) const { return txns_.count(xid) > 0; }
  size_t open_transactions() const { return txns_.size(); }
  // Bytes in the xid's file, buffered records included; 0 when unknown.
  uint64_t Size(uint32_t xid) const;
  std::string PathFor(uint32_t xid) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Txn {
    int fd = -1;
    uint64_t written = 0;                                 // bytes in the file
    std::vector<uint8_t> buffer;                          // records not yet written
    std::vector<std::pair<uint32_t, uint64_t>> subxacts;  // subxid, first offset
  };

  Status Open(uint32_t xid, Txn* txn);
  Status WriteBuffer(uint32_t xid, Txn* txn);
  Status Truncate(uint32_t xid, Txn* txn, uint64_t size);

  std::string dir_;
  std::map<uint32_t, Txn> txns_;
};

}  // namespace geosync
