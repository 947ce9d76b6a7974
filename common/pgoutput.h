// The pgoutput logical replication message format (PostgreSQL 15 docs,
// "Logical Replication Message Formats"), protocol versions 1 and 2: a decoder
// that never trusts its input, the matching encoder, and the relation cache
// that row changes are checked against. Pure functions over bytes; the full
// byte layouts are in docs/pgoutput.md.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/change.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

struct PgOutputOptions {
  int protocol_version = 1;  // 1, or 2 for streaming of in-progress transactions
  bool binary = false;       // the subscription's binary option: 'b' columns allowed
  // Between Stream Start and Stream Stop. Protocol version 2 then puts an
  // Int32 xid after the type byte of Relation, Type, Insert, Update, Delete,
  // Truncate and (transactional) Message. Requires protocol_version 2.
  bool in_streamed_block = false;
};

// 'O': the transaction came from another node (replication origins).
struct OriginMessage {
  Lsn commit_lsn;  // the commit's LSN on the origin server
  std::string name;

  bool operator==(const OriginMessage&) const = default;
};

// 'Y': a non-builtin data type used by a following Relation.
struct TypeMessage {
  uint32_t type_oid = 0;
  std::string nspname;  // empty for pg_catalog
  std::string typname;

  bool operator==(const TypeMessage&) const = default;
};

// 'S': the start of a chunk of an in-progress (streamed) transaction.
struct StreamStart {
  uint32_t xid = 0;
  bool first_segment = false;

  bool operator==(const StreamStart&) const = default;
};

// 'E': the end of a chunk.
struct StreamStop {
  bool operator==(const StreamStop&) const = default;
};

// 'c': a streamed transaction committed.
struct StreamCommit {
  uint32_t xid = 0;
  Lsn commit_lsn;
  Lsn end_lsn;
  PgTimestamp commit_time = 0;

  bool operator==(const StreamCommit&) const = default;
};

// 'A': a streamed (sub)transaction aborted; subxid == xid for the top level.
struct StreamAbort {
  uint32_t xid = 0;
  uint32_t subxid = 0;

  bool operator==(const StreamAbort&) const = default;
};

// Begin maps to BeginEvent, Commit to CommitEvent (whose xid pgoutput does
// not carry: the decoder leaves it 0 and the caller copies it from Begin),
// Relation to Relation, Insert/Update/Delete to RowChange, Truncate to
// TruncateEvent and Message to MessageEvent.
using PgOutputBody =
    std::variant<BeginEvent, CommitEvent, OriginMessage, Relation, TypeMessage, RowChange,
                 TruncateEvent, MessageEvent, StreamStart, StreamStop, StreamCommit, StreamAbort>;

struct PgOutputMessage {
  PgOutputBody body;
  // The xid that protocol version 2 prefixes to a message inside a streamed
  // block; set exactly when the message carries one.
  std::optional<uint32_t> streamed_xid;

  bool operator==(const PgOutputMessage&) const = default;
};

// Decodes one pgoutput message (the payload of one XLogData). Any malformed,
// truncated or over-long input, unknown type, unknown flag, or a message that
// cannot occur in the given streaming state is Status::Protocol, naming the
// message and the byte offset (from the type byte, which is offset 0), e.g.
// "pgoutput Insert: truncated tuple column 3 at offset 17". Tuple columns are
// numbered from 1. Options that cannot work are Status::InvalidArgument.
Result<PgOutputMessage> DecodePgOutput(std::span<const uint8_t> bytes, const PgOutputOptions& opts);

// Writes the exact bytes PostgreSQL would send for `message`: the matched pair
// of DecodePgOutput, for tests. `message.streamed_xid` must be set exactly
// when the options and message type call for it; strings must not contain NUL.
std::vector<uint8_t> EncodePgOutput(const PgOutputMessage& message, const PgOutputOptions& opts);

// "Insert", "Stream Commit", ...: the names used in error messages.
std::string_view PgOutputMessageName(const PgOutputBody& body);

// The latest Relation message per relation OID. PostgreSQL resends Relation
// whenever a table's schema changes, so an update replaces the old entry.
class RelationCache {
 public:
  void Update(Relation relation);
  // The cached relation, or nullptr. The pointer stays valid until Clear();
  // an Update for the same OID changes what it points to.
  const Relation* Lookup(uint32_t oid) const;
  size_t size() const { return relations_.size(); }
  void Clear() { relations_.clear(); }

 private:
  std::unordered_map<uint32_t, Relation> relations_;
};

// Checks that the change names a cached relation and that each of its tuples
// has one datum per column of that relation. Status::Protocol otherwise,
// naming the relation.
Status ValidateRowChange(const RowChange& change, const RelationCache& cache);

}  // namespace geosync
