// The change model: what geosync captures from the primary's WAL, stores in
// its spools, ships between sites and applies. It is independent of pgoutput
// (the capture side's input) and of the wire encoding (common/encoding.h).
//
// A stream is a sequence of Events. A committed source transaction is a run
//   Begin, (Relation | RowChange | Truncate | Message)*, Commit
// and is always contiguous: transactions are never interleaved in a stream.
// Relation events may also appear between transactions. Non-transactional
// messages (heartbeats) appear between transactions as Message events with
// transactional == false.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/lsn.h"

namespace geosync {

// Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's own timestamp
// epoch, as pgoutput carries it.
using PgTimestamp = int64_t;
// Seconds between the Unix epoch and PostgreSQL's epoch.
inline constexpr int64_t kPgEpochOffsetSeconds = 946684800;

struct Column {
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_mod = -1;
  bool is_key = false;  // part of the replica identity

  bool operator==(const Column&) const = default;
};

// A table's shape as the source saw it. Replicas map it by
// (nspname, relname), never by OID: OIDs differ between clusters.
struct Relation {
  uint32_t oid = 0;
  std::string nspname;
  std::string relname;
  // 'd' default (primary key), 'n' nothing, 'f' full, 'i' index.
  char replica_identity = 'd';
  std::vector<Column> columns;

  bool operator==(const Relation&) const = default;
};

enum class DatumKind : uint8_t {
  kNull = 'n',
  kUnchangedToast = 'u',  // value not sent: unchanged TOASTed column in an update
  kText = 't',            // PostgreSQL's text output form
  kBinary = 'b',          // binary send/recv form (pgoutput binary option)
};

struct Datum {
  DatumKind kind = DatumKind::kNull;
  std::string value;  // empty unless kText or kBinary

  bool operator==(const Datum&) const = default;
};

using Tuple = std::vector<Datum>;

struct BeginEvent {
  uint32_t xid = 0;
  Lsn final_lsn;  // the commit record's LSN, known at Begin
  PgTimestamp commit_time = 0;

  bool operator==(const BeginEvent&) const = default;
};

struct CommitEvent {
  uint32_t xid = 0;
  Lsn commit_lsn;  // LSN of the commit record
  Lsn end_lsn;     // end of the commit record: the transaction's stream position
  PgTimestamp commit_time = 0;

  bool operator==(const CommitEvent&) const = default;
};

enum class RowOp : uint8_t { kInsert = 'I', kUpdate = 'U', kDelete = 'D' };

struct RowChange {
  RowOp op = RowOp::kInsert;
  uint32_t rel_oid = 0;
  // For updates and deletes: 'K' when old_tuple holds only the key columns
  // (others null), 'O' when it holds the full old row, 0 when absent (an
  // update that did not change the key under REPLICA IDENTITY DEFAULT).
  char old_kind = 0;
  Tuple old_tuple;
  Tuple new_tuple;  // inserts and updates

  bool operator==(const RowChange&) const = default;
};

struct TruncateEvent {
  bool cascade = false;
  bool restart_identity = false;
  std::vector<uint32_t> rel_oids;

  bool operator==(const TruncateEvent&) const = default;
};

// A logical message (pg_logical_emit_message). geosync's own control
// messages use prefixes under "geosync.": geosync.heartbeat, geosync.ddl,
// geosync.sequences, geosync.marker.
struct MessageEvent {
  bool transactional = false;
  Lsn lsn;
  std::string prefix;
  std::string content;

  bool operator==(const MessageEvent&) const = default;
};

using Event =
    std::variant<BeginEvent, CommitEvent, Relation, RowChange, TruncateEvent, MessageEvent>;

inline constexpr std::string_view kHeartbeatPrefix = "geosync.heartbeat";
inline constexpr std::string_view kDdlPrefix = "geosync.ddl";
inline constexpr std::string_view kSequencesPrefix = "geosync.sequences";
inline constexpr std::string_view kMarkerPrefix = "geosync.marker";

}  // namespace geosync
