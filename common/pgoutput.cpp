// pgoutput decoding and encoding. Every read goes through Decoder, which checks
// bounds and assembles big-endian integers with byte shifts; a failed read does
// not advance, so the error names the offset where the missing field starts.
#include "common/pgoutput.h"
#include "common/byte_order.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include <fmt/format.h>

namespace geosync {
namespace {

constexpr uint8_t kColumnFlagKey = 1;
constexpr uint8_t kMessageFlagTransactional = 1;
constexpr uint8_t kTruncateCascade = 1;
constexpr uint8_t kTruncateRestartIdentity = 2;

class Decoder {
 public:
  Decoder(std::span<const uint8_t> bytes, std::string_view name) : b_(bytes), name_(name) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return b_.size() - pos_; }

  bool U8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = b_[pos_++];
    return true;
  }
  // Reads a big-endian integer of sizeof(T) bytes. Signed types wrap modulo
  // 2^n (well defined since C++20), as PostgreSQL's pq_getmsgint does.
  template <typename T>
  bool Int(T* v) {
    if (remaining() < sizeof(T)) return false;
    uint64_t u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) u = (u << 8) | b_[pos_ + i];
    pos_ += sizeof(T);
    *v = static_cast<T>(u);
    return true;
  }
  bool LsnField(Lsn* v) {
    uint64_t u = 0;
    if (!Int(&u)) return false;
    *v = Lsn(u);
    return true;
  }
  bool Bytes(size_t n, std::string* out) {
    if (remaining() < n) return false;
    out->assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  // A NUL-terminated string; the NUL is consumed, not stored.
  bool CString(std::string* out) {
    const uint8_t* start = b_.data() + pos_;
    const void* nul = remaining() == 0 ? nullptr : std::memchr(start, 0, remaining());
    if (nul == nullptr) return false;
    size_t n = static_cast<const uint8_t*>(nul) - start;
    out->assign(reinterpret_cast<const char*>(start), n);
    pos_ += n + 1;
    return true;
  }

  Status Truncated(std::string_view field) const {
    return Error(pos_, "truncated " + std::string(field));
  }
  Status Error(size_t at, std::string_view what) const {
    return Status::Protocol(fmt::format("pgoutput {}: {} at offset {}", name_, what, at));
  }

 private:
  std::span<const uint8_t> b_;
  std::string_view name_;
  size_t pos_ = 0;
};

#define GEOSYNC_READ(reader_call, field)           \
  do {                                             \
    if (!(reader_call)) return d.Truncated(field); \
  } while (0)

// TupleData:
//   Int16  number of columns
//   per column, Byte1 kind:
//     'n'  null; no more bytes
//     'u'  unchanged TOASTed value (not sent); no more bytes
//     't'  Int32 length, Byte(length) value in text form
//     'b'  Int32 length, Byte(length) value in binary form (binary option only)
Status DecodeTuple(Decoder& d, const PgOutputOptions& opts, std::string_view label, Tuple* out) {
  int16_t ncols = 0;
  size_t at = d.offset();
  GEOSYNC_READ(d.Int(&ncols), fmt::format("{} column count", label));
  if (ncols < 0) return d.Error(at, fmt::format("negative {} column count {}", label, ncols));
  // Every column takes at least its kind byte: bound the reservation by the input.
  out->reserve(std::min<size_t>(static_cast<size_t>(ncols), d.remaining()));
  for (int i = 1; i <= ncols; ++i) {
    at = d.offset();
    uint8_t kind = 0;
    GEOSYNC_READ(d.U8(&kind), fmt::format("{} column {}", label, i));
    Datum datum;
    switch (kind) {
      case 'n':
        datum.kind = DatumKind::kNull;
        break;
      case 'u':
        datum.kind = DatumKind::kUnchangedToast;
        break;
      case 'b':
        if (!opts.binary) {
          return d.Error(at,
                         fmt::format("binary {} column {} but the binary option is off", label, i));
        }
        [[fallthrough]];
      case 't': {
        datum.kind = kind == 't' ? DatumKind::kText : DatumKind::kBinary;
        int32_t len = 0;
        size_t len_at = d.offset();
        GEOSYNC_READ(d.Int(&len), fmt::format("{} column {} length", label, i));
        if (len < 0) {
          return d.Error(len_at, fmt::format("negative length {} in {} column {}", len, label, i));
        }
        GEOSYNC_READ(d.Bytes(static_cast<size_t>(len), &datum.value),
                     fmt::format("{} column {} value", label, i));
        break;
      }
      default:
        return d.Error(at, fmt::format("unknown kind 0x{:02x} in {} column {}", kind, label, i));
    }
    out->push_back(std::move(datum));
  }
  return Status::Ok();
}

// Begin:
//   Byte1('B')
//   Int64  final LSN of the transaction (its commit record)
//   Int64  commit timestamp (PG-epoch microseconds)
//   Int32  xid
Result<PgOutputBody> DecodeBegin(Decoder& d, const PgOutputOptions&) {
  BeginEvent e;
  GEOSYNC_READ(d.LsnField(&e.final_lsn), "final LSN");
  GEOSYNC_READ(d.Int(&e.commit_time), "commit timestamp");
  GEOSYNC_READ(d.Int(&e.xid), "xid");
  return PgOutputBody(e);
}

Status ReadZeroFlags(Decoder& d) {
  size_t at = d.offset();
  uint8_t flags = 0;
  GEOSYNC_READ(d.U8(&flags), "flags");
  if (flags != 0) return d.Error(at, fmt::format("unknown flags 0x{:02x}", flags));
  return Status::Ok();
}

// Commit:
//   Byte1('C')
//   Int8   flags, currently unused: must be 0
//   Int64  LSN of the commit record
//   Int64  end LSN of the transaction
//   Int64  commit timestamp
Result<PgOutputBody> DecodeCommit(Decoder& d, const PgOutputOptions&) {
  CommitEvent e;
  GEOSYNC_RETURN_IF_ERROR(ReadZeroFlags(d));
  GEOSYNC_READ(d.LsnField(&e.commit_lsn), "commit LSN");
  GEOSYNC_READ(d.LsnField(&e.end_lsn), "end LSN");
  GEOSYNC_READ(d.Int(&e.commit_time), "commit timestamp");
  return PgOutputBody(e);
}

// Origin:
//   Byte1('O')
//   Int64  LSN of the commit on the origin server
//   String name of the origin
Result<PgOutputBody> DecodeOrigin(Decoder& d, const PgOutputOptions&) {
  OriginMessage m;
  GEOSYNC_READ(d.LsnField(&m.commit_lsn), "origin commit LSN");
  GEOSYNC_READ(d.CString(&m.name), "origin name");
  return PgOutputBody(std::move(m));
}

Status DecodeColumn(Decoder& d, int i, Column* c) {
  size_t at = d.offset();
  uint8_t flags = 0;
  GEOSYNC_READ(d.U8(&flags), fmt::format("column {} flags", i));
  if ((flags & ~kColumnFlagKey) != 0) {
    return d.Error(at, fmt::format("unknown flags 0x{:02x} on column {}", flags, i));
  }
  c->is_key = (flags & kColumnFlagKey) != 0;
  GEOSYNC_READ(d.CString(&c->name), fmt::format("column {} name", i));
  GEOSYNC_READ(d.Int(&c->type_oid), fmt::format("column {} type OID", i));
  GEOSYNC_READ(d.Int(&c->type_mod), fmt::format("column {} type modifier", i));
  return Status::Ok();
}

// Relation:
//   Byte1('R')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  relation OID
//   String namespace (empty for pg_catalog)
//   String relation name
//   Int8   replica identity: 'd', 'n', 'f' or 'i' (pg_class.relreplident)
//   Int16  number of columns, then per column:
//     Int8   flags: 1 = part of the key, no other bits defined
//     String column name
//     Int32  type OID
//     Int32  type modifier (atttypmod)
Result<PgOutputBody> DecodeRelation(Decoder& d, const PgOutputOptions&) {
  Relation r;
  GEOSYNC_READ(d.Int(&r.oid), "relation OID");
  GEOSYNC_READ(d.CString(&r.nspname), "namespace");
  GEOSYNC_READ(d.CString(&r.relname), "relation name");
  size_t at = d.offset();
  uint8_t ident = 0;
  GEOSYNC_READ(d.U8(&ident), "replica identity");
  if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i') {
    return d.Error(at, fmt::format("unknown replica identity 0x{:02x}", ident));
  }
  r.replica_identity = static_cast<char>(ident);
  at = d.offset();
  int16_t ncols = 0;
  GEOSYNC_READ(d.Int(&ncols), "column count");
  if (ncols < 0) return d.Error(at, fmt::format("negative column count {}", ncols));
  constexpr size_t kMinColumnBytes = 10;  // flags, empty name's NUL, type OID, typmod
  r.columns.reserve(std::min<size_t>(static_cast<size_t>(ncols), d.remaining() / kMinColumnBytes));
  for (int i = 1; i <= ncols; ++i) {
    Column c;
    GEOSYNC_RETURN_IF_ERROR(DecodeColumn(d, i, &c));
    r.columns.push_back(std::move(c));
  }
  return PgOutputBody(std::move(r));
}

// Type:
//   Byte1('Y')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  type OID
//   String namespace (empty for pg_catalog)
//   String type name
Result<PgOutputBody> DecodeType(Decoder& d, const PgOutputOptions&) {
  TypeMessage t;
  GEOSYNC_READ(d.Int(&t.type_oid), "type OID");
  GEOSYNC_READ(d.CString(&t.nspname), "namespace");
  GEOSYNC_READ(d.CString(&t.typname), "type name");
  return PgOutputBody(std::move(t));
}

// Reads a tuple marker byte and checks it is one of `allowed`.
Result<uint8_t> ReadMarker(Decoder& d, std::string_view allowed, std::string_view field) {
  size_t at = d.offset();
  uint8_t m = 0;
  GEOSYNC_READ(d.U8(&m), field);
  if (m == 0 || allowed.find(static_cast<char>(m)) == std::string_view::npos) {
    return d.Error(at, fmt::format("{} is 0x{:02x}, expected one of '{}'", field, m, allowed));
  }
  return m;
}

// Insert:
//   Byte1('I')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  relation OID
//   Byte1('N') then TupleData: the new row
Result<PgOutputBody> DecodeInsert(Decoder& d, const PgOutputOptions& opts) {
  RowChange c;
  c.op = RowOp::kInsert;
  GEOSYNC_READ(d.Int(&c.rel_oid), "relation OID");
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t marker, ReadMarker(d, "N", "tuple marker"));
  (void)marker;
  GEOSYNC_RETURN_IF_ERROR(DecodeTuple(d, opts, "tuple", &c.new_tuple));
  return PgOutputBody(std::move(c));
}

// Update:
//   Byte1('U')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  relation OID
//   optional: Byte1('K') + TupleData of the old key (REPLICA IDENTITY DEFAULT
//             or INDEX, key changed), or Byte1('O') + TupleData of the whole
//             old row (REPLICA IDENTITY FULL)
//   Byte1('N') then TupleData: the new row
Result<PgOutputBody> DecodeUpdate(Decoder& d, const PgOutputOptions& opts) {
  RowChange c;
  c.op = RowOp::kUpdate;
  GEOSYNC_READ(d.Int(&c.rel_oid), "relation OID");
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t marker, ReadMarker(d, "KON", "tuple marker"));
  if (marker != 'N') {
    c.old_kind = static_cast<char>(marker);
    GEOSYNC_RETURN_IF_ERROR(DecodeTuple(d, opts, "old tuple", &c.old_tuple));
    GEOSYNC_ASSIGN_OR_RETURN(marker, ReadMarker(d, "N", "new tuple marker"));
  }
  GEOSYNC_RETURN_IF_ERROR(DecodeTuple(d, opts, "new tuple", &c.new_tuple));
  return PgOutputBody(std::move(c));
}

// Delete:
//   Byte1('D')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  relation OID
//   Byte1('K') + TupleData of the old key, or Byte1('O') + TupleData of the
//   whole old row
Result<PgOutputBody> DecodeDelete(Decoder& d, const PgOutputOptions& opts) {
  RowChange c;
  c.op = RowOp::kDelete;
  GEOSYNC_READ(d.Int(&c.rel_oid), "relation OID");
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t marker, ReadMarker(d, "KO", "tuple marker"));
  c.old_kind = static_cast<char>(marker);
  GEOSYNC_RETURN_IF_ERROR(DecodeTuple(d, opts, "old tuple", &c.old_tuple));
  return PgOutputBody(std::move(c));
}

// Truncate:
//   Byte1('T')
//   Int32  xid (protocol 2, inside a streamed block only)
//   Int32  number of relations
//   Int8   options: 1 = CASCADE, 2 = RESTART IDENTITY, no other bits defined
//   Int32  relation OID, repeated once per relation
Result<PgOutputBody> DecodeTruncate(Decoder& d, const PgOutputOptions&) {
  TruncateEvent t;
  size_t at = d.offset();
  int32_t nrels = 0;
  GEOSYNC_READ(d.Int(&nrels), "relation count");
  if (nrels < 0) return d.Error(at, fmt::format("negative relation count {}", nrels));
  at = d.offset();
  uint8_t options = 0;
  GEOSYNC_READ(d.U8(&options), "options");
  if ((options & ~(kTruncateCascade | kTruncateRestartIdentity)) != 0) {
    return d.Error(at, fmt::format("unknown options 0x{:02x}", options));
  }
  t.cascade = (options & kTruncateCascade) != 0;
  t.restart_identity = (options & kTruncateRestartIdentity) != 0;
  t.rel_oids.reserve(std::min<size_t>(static_cast<size_t>(nrels), d.remaining() / 4));
  for (int32_t i = 1; i <= nrels; ++i) {
    uint32_t oid = 0;
    GEOSYNC_READ(d.Int(&oid), fmt::format("relation OID {}", i));
    t.rel_oids.push_back(oid);
  }
  return PgOutputBody(std::move(t));
}

// Message (pg_logical_emit_message):
//   Byte1('M')
//   Int32  xid (protocol 2, inside a streamed block only; only transactional
//          messages are ever decoded inside one)
//   Int8   flags: 1 = transactional, no other bits defined
//   Int64  LSN of the message
//   String prefix
//   Int32  length of the content
//   Byte(n) content
Result<PgOutputBody> DecodeMessage(Decoder& d, const PgOutputOptions& opts) {
  MessageEvent m;
  size_t at = d.offset();
  uint8_t flags = 0;
  GEOSYNC_READ(d.U8(&flags), "flags");
  if ((flags & ~kMessageFlagTransactional) != 0) {
    return d.Error(at, fmt::format("unknown flags 0x{:02x}", flags));
  }
  m.transactional = (flags & kMessageFlagTransactional) != 0;
  if (opts.in_streamed_block && !m.transactional) {
    return d.Error(at, "non-transactional message inside a streamed block");
  }
  GEOSYNC_READ(d.LsnField(&m.lsn), "message LSN");
  GEOSYNC_READ(d.CString(&m.prefix), "prefix");
  at = d.offset();
  int32_t len = 0;
  GEOSYNC_READ(d.Int(&len), "content length");
  if (len < 0) return d.Error(at, fmt::format("negative content length {}", len));
  GEOSYNC_READ(d.Bytes(static_cast<size_t>(len), &m.content), "content");
  return PgOutputBody(std::move(m));
}

// Stream Start (protocol 2):
//   Byte1('S')
//   Int32  xid
//   Int8   1 if this is the transaction's first segment, else 0
Result<PgOutputBody> DecodeStreamStart(Decoder& d, const PgOutputOptions&) {
  StreamStart s;
  GEOSYNC_READ(d.Int(&s.xid), "xid");
  size_t at = d.offset();
  uint8_t first = 0;
  GEOSYNC_READ(d.U8(&first), "first-segment flag");
  if (first > 1)
    return d.Error(at, fmt::format("first-segment flag must be 0 or 1, got {}", first));
  s.first_segment = first == 1;
  return PgOutputBody(s);
}

// Stream Stop (protocol 2):
//   Byte1('E')
Result<PgOutputBody> DecodeStreamStop(Decoder&, const PgOutputOptions&) {
  return PgOutputBody(StreamStop{});
}

// Stream Commit (protocol 2):
//   Byte1('c')
//   Int32  xid
//   Int8   flags, currently unused: must be 0
//   Int64  LSN of the commit record
//   Int64  end LSN of the transaction
//   Int64  commit timestamp
Result<PgOutputBody> DecodeStreamCommit(Decoder& d, const PgOutputOptions&) {
  StreamCommit s;
  GEOSYNC_READ(d.Int(&s.xid), "xid");
  GEOSYNC_RETURN_IF_ERROR(ReadZeroFlags(d));
  GEOSYNC_READ(d.LsnField(&s.commit_lsn), "commit LSN");
  GEOSYNC_READ(d.LsnField(&s.end_lsn), "end LSN");
  GEOSYNC_READ(d.Int(&s.commit_time), "commit timestamp");
  return PgOutputBody(s);
}

// Stream Abort (protocol 2):
//   Byte1('A')
//   Int32  xid of the top-level transaction
//   Int32  xid of the aborted subtransaction (equal to the above for the top level)
Result<PgOutputBody> DecodeStreamAbort(Decoder& d, const PgOutputOptions&) {
  StreamAbort s;
  GEOSYNC_READ(d.Int(&s.xid), "xid");
  GEOSYNC_READ(d.Int(&s.subxid), "subtransaction xid");
  return PgOutputBody(s);
}

#undef GEOSYNC_READ

// Where in the stream a message type may appear.
enum class Where { kAnywhere, kOutsideStreamedBlock, kInsideStreamedBlock };

struct MessageKind {
  uint8_t type;
  std::string_view name;
  int min_version;
  bool carries_streamed_xid;
  Where where;
  Result<PgOutputBody> (*decode)(Decoder&, const PgOutputOptions&);
};

constexpr MessageKind kKinds[] = {
    {'B', "Begin", 1, false, Where::kOutsideStreamedBlock, DecodeBegin},
    {'C', "Commit", 1, false, Where::kOutsideStreamedBlock, DecodeCommit},
    {'O', "Origin", 1, false, Where::kAnywhere, DecodeOrigin},
    {'R', "Relation", 1, true, Where::kAnywhere, DecodeRelation},
    {'Y', "Type", 1, true, Where::kAnywhere, DecodeType},
    {'I', "Insert", 1, true, Where::kAnywhere, DecodeInsert},
    {'U', "Update", 1, true, Where::kAnywhere, DecodeUpdate},
    {'D', "Delete", 1, true, Where::kAnywhere, DecodeDelete},
    {'T', "Truncate", 1, true, Where::kAnywhere, DecodeTruncate},
    {'M', "Message", 1, true, Where::kAnywhere, DecodeMessage},
    {'S', "Stream Start", 2, false, Where::kOutsideStreamedBlock, DecodeStreamStart},
    {'E', "Stream Stop", 2, false, Where::kInsideStreamedBlock, DecodeStreamStop},
    {'c', "Stream Commit", 2, false, Where::kOutsideStreamedBlock, DecodeStreamCommit},
    {'A', "Stream Abort", 2, false, Where::kOutsideStreamedBlock, DecodeStreamAbort},
};

const MessageKind* FindKind(uint8_t type) {
  for (const MessageKind& k : kKinds) {
    if (k.type == type) return &k;
  }
  return nullptr;
}

Status CheckPlacement(const MessageKind& kind, const PgOutputOptions& opts, const Decoder& d) {
  if (opts.protocol_version < kind.min_version) {
    return d.Error(0, fmt::format("needs protocol version {}, the stream uses version {}",
                                  kind.min_version, opts.protocol_version));
  }
  if (kind.where == Where::kOutsideStreamedBlock && opts.in_streamed_block) {
    return d.Error(0, "not allowed inside a streamed block (between Stream Start and Stop)");
  }
  if (kind.where == Where::kInsideStreamedBlock && !opts.in_streamed_block) {
    return d.Error(0, "not allowed outside a streamed block (without a Stream Start)");
  }
  return Status::Ok();
}

// Encoding: big-endian, the mirror of Decoder.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(v); }
  template <typename T>
  void Int(T v) {
    AppendBe(out_, static_cast<std::make_unsigned_t<T>>(v));
  }
  void LsnField(Lsn v) { Int(v.value()); }
  void Bytes(std::string_view s) { out_->insert(out_->end(), s.begin(), s.end()); }
  void CString(std::string_view s) {
    assert(s.find('\0') == std::string_view::npos && "pgoutput strings cannot hold NUL");
    Bytes(s);
    U8(0);
  }

 private:
  std::vector<uint8_t>* out_;
};

void EncodeTuple(Writer& w, const Tuple& tuple) {
  assert(tuple.size() <= 32767);
  w.Int(static_cast<int16_t>(tuple.size()));
  for (const Datum& datum : tuple) {
    w.U8(static_cast<uint8_t>(datum.kind));
    if (datum.kind == DatumKind::kText || datum.kind == DatumKind::kBinary) {
      w.Int(static_cast<int32_t>(datum.value.size()));
      w.Bytes(datum.value);
    }
  }
}

struct BodyEncoder {
  Writer& w;

  void operator()(const BeginEvent& e) {
    w.LsnField(e.final_lsn);
    w.Int(e.commit_time);
    w.Int(e.xid);
  }
  void operator()(const CommitEvent& e) {
    w.U8(0);
    w.LsnField(e.commit_lsn);
    w.LsnField(e.end_lsn);
    w.Int(e.commit_time);
  }
  void operator()(const OriginMessage& m) {
    w.LsnField(m.commit_lsn);
    w.CString(m.name);
  }
  void operator()(const Relation& r) {
    w.Int(r.oid);
    w.CString(r.nspname);
    w.CString(r.relname);
    w.U8(static_cast<uint8_t>(r.replica_identity));
    assert(r.columns.size() <= 32767);
    w.Int(static_cast<int16_t>(r.columns.size()));
    for (const Column& c : r.columns) {
      w.U8(c.is_key ? kColumnFlagKey : 0);
      w.CString(c.name);
      w.Int(c.type_oid);
      w.Int(c.type_mod);
    }
  }
  void operator()(const TypeMessage& t) {
    w.Int(t.type_oid);
    w.CString(t.nspname);
    w.CString(t.typname);
  }
  void operator()(const RowChange& c) {
    w.Int(c.rel_oid);
    if (c.op == RowOp::kDelete) {
      assert(c.old_kind == 'K' || c.old_kind == 'O');
    }
    if (c.op != RowOp::kInsert && c.old_kind != 0) {
      w.U8(static_cast<uint8_t>(c.old_kind));
      EncodeTuple(w, c.old_tuple);
    }
    if (c.op != RowOp::kDelete) {
      w.U8('N');
      EncodeTuple(w, c.new_tuple);
    }
  }
  void operator()(const TruncateEvent& t) {
    w.Int(static_cast<int32_t>(t.rel_oids.size()));
    w.U8((t.cascade ? kTruncateCascade : 0) | (t.restart_identity ? kTruncateRestartIdentity : 0));
    for (uint32_t oid : t.rel_oids) w.Int(oid);
  }
  void operator()(const MessageEvent& m) {
    w.U8(m.transactional ? kMessageFlagTransactional : 0);
    w.LsnField(m.lsn);
    w.CString(m.prefix);
    w.Int(static_cast<int32_t>(m.content.size()));
    w.Bytes(m.content);
  }
  void operator()(const StreamStart& s) {
    w.Int(s.xid);
    w.U8(s.first_segment ? 1 : 0);
  }
  void operator()(const StreamStop&) {}
  void operator()(const StreamCommit& s) {
    w.Int(s.xid);
    w.U8(0);
    w.LsnField(s.commit_lsn);
    w.LsnField(s.end_lsn);
    w.Int(s.commit_time);
  }
  void operator()(const StreamAbort& s) {
    w.Int(s.xid);
    w.Int(s.subxid);
  }
};

uint8_t TypeByte(const PgOutputBody& body) {
  struct {
    uint8_t operator()(const BeginEvent&) const { return 'B'; }
    uint8_t operator()(const CommitEvent&) const { return 'C'; }
    uint8_t operator()(const OriginMessage&) const { return 'O'; }
    uint8_t operator()(const Relation&) const { return 'R'; }
    uint8_t operator()(const TypeMessage&) const { return 'Y'; }
    uint8_t operator()(const RowChange& c) const { return static_cast<uint8_t>(c.op); }
    uint8_t operator()(const TruncateEvent&) const { return 'T'; }
    uint8_t operator()(const MessageEvent&) const { return 'M'; }
    uint8_t operator()(const StreamStart&) const { return 'S'; }
    uint8_t operator()(const StreamStop&) const { return 'E'; }
    uint8_t operator()(const StreamCommit&) const { return 'c'; }
    uint8_t operator()(const StreamAbort&) const { return 'A'; }
  } visitor;
  return std::visit(visitor, body);
}

}  // namespace

Result<PgOutputMessage> DecodePgOutput(std::span<const uint8_t> bytes,
                                       const PgOutputOptions& opts) {
  if (opts.protocol_version != 1 && opts.protocol_version != 2) {
    return Status::InvalidArgument(fmt::format(
        "pgoutput protocol version {} is not supported (1 or 2)", opts.protocol_version));
  }
  if (opts.in_streamed_block && opts.protocol_version < 2) {
    return Status::InvalidArgument("pgoutput streamed blocks need protocol version 2");
  }
  if (bytes.empty()) return Status::Protocol("pgoutput: empty message at offset 0");
  const MessageKind* kind = FindKind(bytes[0]);
  if (kind == nullptr) {
    return Status::Protocol(
        fmt::format("pgoutput: unknown message type 0x{:02x} at offset 0", bytes[0]));
  }
  Decoder d(bytes, kind->name);
  uint8_t type = 0;
  (void)d.U8(&type);
  GEOSYNC_RETURN_IF_ERROR(CheckPlacement(*kind, opts, d));
  PgOutputMessage message;
  if (kind->carries_streamed_xid && opts.in_streamed_block) {
    uint32_t xid = 0;
    if (!d.Int(&xid)) return d.Truncated("streamed xid");
    message.streamed_xid = xid;
  }
  GEOSYNC_ASSIGN_OR_RETURN(message.body, kind->decode(d, opts));
  if (d.remaining() != 0) {
    return d.Error(d.offset(), fmt::format("{} trailing bytes", d.remaining()));
  }
  return message;
}

std::vector<uint8_t> EncodePgOutput(const PgOutputMessage& message, const PgOutputOptions& opts) {
  std::vector<uint8_t> out;
  Writer w(&out);
  uint8_t type = TypeByte(message.body);
  w.U8(type);
  const MessageKind* kind = FindKind(type);
  assert(kind != nullptr);
  bool wants_xid = kind->carries_streamed_xid && opts.in_streamed_block;
  assert(wants_xid == message.streamed_xid.has_value() &&
         "streamed_xid must be set exactly for xid-carrying messages in a streamed block");
  if (wants_xid) w.Int(message.streamed_xid.value_or(0));
  std::visit(BodyEncoder{w}, message.body);
  return out;
}

std::string_view PgOutputMessageName(const PgOutputBody& body) {
  const MessageKind* kind = FindKind(TypeByte(body));
  return kind != nullptr ? kind->name : "unknown";
}

void RelationCache::Update(Relation relation) {
  uint32_t oid = relation.oid;
  relations_.insert_or_assign(oid, std::move(relation));
}

const Relation* RelationCache::Lookup(uint32_t oid) const {
  auto it = relations_.find(oid);
  return it == relations_.end() ? nullptr : &it->second;
}

Status ValidateRowChange(const RowChange& change, const RelationCache& cache) {
  std::string_view op = change.op == RowOp::kInsert   ? "Insert"
                        : change.op == RowOp::kUpdate ? "Update"
                                                      : "Delete";
  const Relation* rel = cache.Lookup(change.rel_oid);
  if (rel == nullptr) {
    return Status::Protocol(
        fmt::format("pgoutput {}: relation OID {} was not described by a Relation message", op,
                    change.rel_oid));
  }
  auto check = [&](const Tuple& tuple, std::string_view label) -> Status {
    if (tuple.size() == rel->columns.size()) return Status::Ok();
    return Status::Protocol(fmt::format(
        "pgoutput {}: relation {}.{} (OID {}) has {} columns but the {} has {}", op, rel->nspname,
        rel->relname, rel->oid, rel->columns.size(), label, tuple.size()));
  };
  if (change.op != RowOp::kDelete) GEOSYNC_RETURN_IF_ERROR(check(change.new_tuple, "new tuple"));
  if (change.op == RowOp::kDelete || change.old_kind != 0) {
    GEOSYNC_RETURN_IF_ERROR(check(change.old_tuple, "old tuple"));
  }
  return Status::Ok();
}

}  // namespace geosync
