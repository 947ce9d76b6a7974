// The streaming replication protocol's CopyData sub-messages (PostgreSQL docs,
// "Streaming Replication Protocol"): XLogData and primary keepalive from the
// server, standby status update from the client. Pure functions over bytes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "common/change.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// 'w': a section of WAL; for logical replication the payload is one output
// plugin message (pgoutput).
struct XLogData {
  Lsn wal_start;                     // where this payload starts in the WAL
  Lsn wal_end;                       // the server's current end of WAL
  PgTimestamp send_time = 0;         // server clock at transmission
  std::span<const uint8_t> payload;  // a view into the parsed buffer
};

// 'k': the server says where its WAL ends and may ask for a reply.
struct PrimaryKeepalive {
  Lsn wal_end;
  PgTimestamp send_time = 0;
  bool reply_requested = false;

  bool operator==(const PrimaryKeepalive&) const = default;
};

// 'r': the client reports progress. Each LSN is "last byte + 1" of WAL that
// was written / flushed / applied downstream.
struct StandbyStatusUpdate {
  Lsn write_lsn;
  Lsn flush_lsn;
  Lsn apply_lsn;
  PgTimestamp client_time = 0;
  bool reply_requested = false;

  bool operator==(const StandbyStatusUpdate&) const = default;
};

using ServerReplicationMessage = std::variant<XLogData, PrimaryKeepalive>;

inline constexpr uint8_t kXLogDataType = 'w';
inline constexpr uint8_t kPrimaryKeepaliveType = 'k';
inline constexpr uint8_t kStandbyStatusUpdateType = 'r';
inline constexpr size_t kXLogDataHeaderSize = 25;
inline constexpr size_t kPrimaryKeepaliveSize = 18;
inline constexpr size_t kStandbyStatusUpdateSize = 34;

// Each parser takes the whole CopyData body, type byte included. Errors are
// Status::Protocol naming the byte offset within that body.
Result<XLogData> ParseXLogData(std::span<const uint8_t> bytes);
Result<PrimaryKeepalive> ParsePrimaryKeepalive(std::span<const uint8_t> bytes);
Result<StandbyStatusUpdate> ParseStandbyStatusUpdate(std::span<const uint8_t> bytes);
// Dispatches on the type byte: 'w' or 'k'; anything else is a protocol error.
Result<ServerReplicationMessage> ParseServerReplicationMessage(std::span<const uint8_t> bytes);

std::vector<uint8_t> BuildStandbyStatusUpdate(const StandbyStatusUpdate& update);
// The server-side messages, for tests and the fault proxy.
std::vector<uint8_t> BuildXLogData(Lsn wal_start, Lsn wal_end, PgTimestamp send_time,
                                   std::span<const uint8_t> payload);
std::vector<uint8_t> BuildPrimaryKeepalive(const PrimaryKeepalive& keepalive);

// Microseconds since 2000-01-01 UTC, the clock value the protocol carries.
PgTimestamp ToPgTimestamp(std::chrono::system_clock::time_point time);

}  // namespace geosync
