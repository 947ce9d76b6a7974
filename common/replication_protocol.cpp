// Streaming replication CopyData sub-messages: fixed big-endian layouts, read
// with byte shifts so that no input can cause a misaligned or out-of-bounds read.
#include "common/replication_protocol.h"
#include "common/byte_order.h"

#include <initializer_list>

#include <fmt/format.h>

namespace geosync {
namespace {

uint64_t LoadU64(std::span<const uint8_t> b, size_t at) { return LoadBe<uint64_t>(b.data() + at); }

void PutU64(std::vector<uint8_t>* out, uint64_t v) { AppendBe(out, v); }

// Checks the type byte and that exactly `size` bytes (or at least `size`,
// when `open_ended`) are present.
Status CheckShape(std::span<const uint8_t> b, std::string_view name, uint8_t type, size_t size,
                  bool open_ended, std::initializer_list<std::string_view> fields) {
  if (b.empty()) return Status::Protocol(fmt::format("{}: empty message at offset 0", name));
  if (b[0] != type) {
    return Status::Protocol(fmt::format("{}: type byte 0x{:02x} is not '{}' at offset 0", name,
                                        b[0], static_cast<char>(type)));
  }
  if (b.size() < size) {
    // Name the first field that does not fit: fields are Int64 except a
    // trailing Byte1 in the fixed-size messages.
    size_t at = 1;
    for (std::string_view field : fields) {
      size_t width = at + 8 <= size ? 8 : 1;
      if (b.size() < at + width) {
        return Status::Protocol(fmt::format("{}: truncated {} at offset {}", name, field, at));
      }
      at += width;
    }
  }
  if (!open_ended && b.size() > size) {
    return Status::Protocol(
        fmt::format("{}: {} trailing bytes at offset {}", name, b.size() - size, size));
  }
  return Status::Ok();
}

Result<bool> ReadBool(std::span<const uint8_t> b, size_t at, std::string_view name,
                      std::string_view field) {
  if (b[at] > 1) {
    return Status::Protocol(
        fmt::format("{}: {} must be 0 or 1, got {} at offset {}", name, field, b[at], at));
  }
  return b[at] == 1;
}

}  // namespace

// XLogData, CopyData from the server:
//   Byte1('w')
//   Int64  start of the WAL data in this message
//   Int64  current end of WAL on the server
//   Int64  server clock at transmission (PG-epoch microseconds)
//   Byte(n) the WAL data (for logical replication: one output plugin message)
Result<XLogData> ParseXLogData(std::span<const uint8_t> bytes) {
  GEOSYNC_RETURN_IF_ERROR(CheckShape(bytes, "XLogData", kXLogDataType, kXLogDataHeaderSize,
                                     /*open_ended=*/true, {"WAL start", "WAL end", "send time"}));
  XLogData d;
  d.wal_start = Lsn(LoadU64(bytes, 1));
  d.wal_end = Lsn(LoadU64(bytes, 9));
  d.send_time = static_cast<PgTimestamp>(LoadU64(bytes, 17));
  d.payload = bytes.subspan(kXLogDataHeaderSize);
  return d;
}

// Primary keepalive, CopyData from the server:
//   Byte1('k')
//   Int64  current end of WAL on the server
//   Int64  server clock at transmission (PG-epoch microseconds)
//   Byte1  1 if the client should reply as soon as possible, else 0
Result<PrimaryKeepalive> ParsePrimaryKeepalive(std::span<const uint8_t> bytes) {
  constexpr std::string_view kName = "primary keepalive";
  GEOSYNC_RETURN_IF_ERROR(CheckShape(bytes, kName, kPrimaryKeepaliveType, kPrimaryKeepaliveSize,
                                     /*open_ended=*/false,
                                     {"WAL end", "send time", "reply-requested flag"}));
  PrimaryKeepalive k;
  k.wal_end = Lsn(LoadU64(bytes, 1));
  k.send_time = static_cast<PgTimestamp>(LoadU64(bytes, 9));
  GEOSYNC_ASSIGN_OR_RETURN(k.reply_requested, ReadBool(bytes, 17, kName, "reply-requested flag"));
  return k;
}

// Standby status update, CopyData from the client:
//   Byte1('r')
//   Int64  last WAL byte + 1 received and written to disk
//   Int64  last WAL byte + 1 flushed to disk
//   Int64  last WAL byte + 1 applied
//   Int64  client clock at transmission (PG-epoch microseconds)
//   Byte1  1 if the client asks the server to reply immediately, else 0
Result<StandbyStatusUpdate> ParseStandbyStatusUpdate(std::span<const uint8_t> bytes) {
  constexpr std::string_view kName = "standby status update";
  GEOSYNC_RETURN_IF_ERROR(CheckShape(
      bytes, kName, kStandbyStatusUpdateType, kStandbyStatusUpdateSize, /*open_ended=*/false,
      {"write LSN", "flush LSN", "apply LSN", "client time", "reply-requested flag"}));
  StandbyStatusUpdate u;
  u.write_lsn = Lsn(LoadU64(bytes, 1));
  u.flush_lsn = Lsn(LoadU64(bytes, 9));
  u.apply_lsn = Lsn(LoadU64(bytes, 17));
  u.client_time = static_cast<PgTimestamp>(LoadU64(bytes, 25));
  GEOSYNC_ASSIGN_OR_RETURN(u.reply_requested, ReadBool(bytes, 33, kName, "reply-requested flag"));
  return u;
}

Result<ServerReplicationMessage> ParseServerReplicationMessage(std::span<const uint8_t> bytes) {
  if (bytes.empty()) {
    return Status::Protocol("replication CopyData: empty message at offset 0");
  }
  switch (bytes[0]) {
    case kXLogDataType: {
      GEOSYNC_ASSIGN_OR_RETURN(XLogData d, ParseXLogData(bytes));
      return ServerReplicationMessage(d);
    }
    case kPrimaryKeepaliveType: {
      GEOSYNC_ASSIGN_OR_RETURN(PrimaryKeepalive k, ParsePrimaryKeepalive(bytes));
      return ServerReplicationMessage(k);
    }
    default:
      return Status::Protocol(
          fmt::format("replication CopyData: unknown message type 0x{:02x} at offset 0", bytes[0]));
  }
}

std::vector<uint8_t> BuildStandbyStatusUpdate(const StandbyStatusUpdate& update) {
  std::vector<uint8_t> out;
  out.reserve(kStandbyStatusUpdateSize);
  out.push_back(kStandbyStatusUpdateType);
  PutU64(&out, update.write_lsn.value());
  PutU64(&out, update.flush_lsn.value());
  PutU64(&out, update.apply_lsn.value());
  PutU64(&out, static_cast<uint64_t>(update.client_time));
  out.push_back(update.reply_requested ? 1 : 0);
  return out;
}

std::vector<uint8_t> BuildXLogData(Lsn wal_start, Lsn wal_end, PgTimestamp send_time,
                                   std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kXLogDataHeaderSize + payload.size());
  out.push_back(kXLogDataType);
  PutU64(&out, wal_start.value());
  PutU64(&out, wal_end.value());
  PutU64(&out, static_cast<uint64_t>(send_time));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> BuildPrimaryKeepalive(const PrimaryKeepalive& keepalive) {
  std::vector<uint8_t> out;
  out.reserve(kPrimaryKeepaliveSize);
  out.push_back(kPrimaryKeepaliveType);
  PutU64(&out, keepalive.wal_end.value());
  PutU64(&out, static_cast<uint64_t>(keepalive.send_time));
  out.push_back(keepalive.reply_requested ? 1 : 0);
  return out;
}

PgTimestamp ToPgTimestamp(std::chrono::system_clock::time_point time) {
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  return static_cast<PgTimestamp>(micros) - kPgEpochOffsetSeconds * 1'000'000;
}

}  // namespace geosync
