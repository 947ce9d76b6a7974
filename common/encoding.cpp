// The Event encoding and its primitives. Every decoder below is preceded by
// the byte layout it parses; docs/wire-format.md has the same tables.
//
// Notation: u8 is one byte; varint is unsigned LEB128 (1-10 bytes); zigzag is
// a varint of the zigzag-mapped signed value; str is varint length + bytes.
// Every record starts with
//   u8 version   kEncodingVersion (1)
//   u8 type      EventType
#include "common/encoding.h"
#include "common/byte_order.h"

#include <cassert>
#include <limits>

#include <fmt/format.h>

namespace geosync {

// ---- Primitives ------------------------------------------------------------

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void PutLengthPrefixed(std::string_view bytes, std::string* out) {
  PutVarint(bytes.size(), out);
  out->append(bytes);
}

void PutFixed32(uint32_t value, std::string* out) { AppendLe(out, value); }

uint32_t DecodeFixed32(const uint8_t* p) { return LoadLe<uint32_t>(p); }

void PutRecordHeader(uint8_t type, std::string* out) {
  out->push_back(static_cast<char>(kEncodingVersion));
  out->push_back(static_cast<char>(type));
}

WireReader::WireReader(std::span<const uint8_t> bytes, std::string_view what, size_t base_offset)
    : bytes_(bytes), what_(what), base_offset_(base_offset) {}

Status WireReader::Error(std::string_view message, size_t at) const {
  return Status::Protocol(fmt::format("{}: {} at offset {}", what_, message, at));
}

Status WireReader::UnexpectedType(uint8_t got, uint8_t expected) const {
  return Error(fmt::format("unexpected record type 0x{:02x} (expected 0x{:02x})", got, expected),
               base_offset_ + 1);
}

Result<uint8_t> WireReader::U8(std::string_view field) {
  if (pos_ >= bytes_.size()) return Error(fmt::format("truncated {}", field), offset());
  return bytes_[pos_++];
}

Result<uint64_t> WireReader::Varint(std::string_view field) {
  const size_t start = offset();
  uint64_t value = 0;
  for (size_t i = 0; i < kMaxVarintBytes; ++i) {
    if (pos_ >= bytes_.size()) return Error(fmt::format("truncated varint ({})", field), start);
    const uint8_t b = bytes_[pos_++];
    // The tenth byte holds bit 63 only.
    if (i == kMaxVarintBytes - 1 && b > 1) {
      return Error(fmt::format("over-long varint ({})", field), start);
    }
    value |= uint64_t{b & 0x7Fu} << (7 * i);
    if ((b & 0x80) == 0) {
      if (b == 0 && i > 0) {
        return Error(fmt::format("non-minimal varint ({})", field), start);
      }
      return value;
    }
  }
  return Error(fmt::format("over-long varint ({})", field), start);  // unreachable
}

Result<uint32_t> WireReader::Varint32(std::string_view field) {
  const size_t start = offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t v, Varint(field));
  if (v > std::numeric_limits<uint32_t>::max()) {
    return Error(fmt::format("{} {} does not fit in 32 bits", field, v), start);
  }
  return static_cast<uint32_t>(v);
}

Result<int64_t> WireReader::Zigzag(std::string_view field) {
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t v, Varint(field));
  return ZigzagDecode(v);
}

Result<int32_t> WireReader::Zigzag32(std::string_view field) {
  const size_t start = offset();
  GEOSYNC_ASSIGN_OR_RETURN(int64_t v, Zigzag(field));
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return Error(fmt::format("{} {} does not fit in 32 bits", field, v), start);
  }
  return static_cast<int32_t>(v);
}

Result<std::span<const uint8_t>> WireReader::Bytes(uint64_t n, std::string_view field) {
  if (n > remaining()) {
    return Error(
        fmt::format("length {} of {} runs past the end ({} bytes left)", n, field, remaining()),
        offset());
  }
  auto out = bytes_.subspan(pos_, n);
  pos_ += n;
  return out;
}

Result<std::string> WireReader::LengthPrefixed(std::string_view field) {
  const size_t start = offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t len, Varint(field));
  if (len > remaining()) {
    return Error(
        fmt::format("length {} of {} runs past the end ({} bytes left)", len, field, remaining()),
        start);
  }
  GEOSYNC_ASSIGN_OR_RETURN(auto bytes, Bytes(len, field));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Result<uint64_t> WireReader::Count(std::string_view field, size_t min_element_bytes) {
  const size_t start = offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t n, Varint(field));
  if (n > remaining() / min_element_bytes) {
    return Error(
        fmt::format("count {} of {} runs past the end ({} bytes left)", n, field, remaining()),
        start);
  }
  return n;
}

Result<uint8_t> WireReader::RecordHeader() {
  const size_t at = offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t version, U8("version"));
  if (version != kEncodingVersion) {
    return Error(
        fmt::format("unknown format version {} (this build reads {})", version, kEncodingVersion),
        at);
  }
  return U8("record type");
}

Status WireReader::CheckFlags(uint8_t flags, uint8_t known_mask, size_t at) const {
  if ((flags & ~known_mask) != 0) {
    return Error(fmt::format("unknown flag bits 0x{:02x}", flags & ~known_mask), at);
  }
  return Status::Ok();
}

Status WireReader::ExpectEnd() const {
  if (remaining() != 0) return Error(fmt::format("{} trailing bytes", remaining()), offset());
  return Status::Ok();
}

// ---- Events ----------------------------------------------------------------

namespace {

constexpr uint8_t kColumnIsKey = 0x01;
constexpr uint8_t kTruncateCascade = 0x01;
constexpr uint8_t kTruncateRestartIdentity = 0x02;
constexpr uint8_t kMessageTransactional = 0x01;

void PutHeader(EventType type, std::string* out) {
  PutRecordHeader(static_cast<uint8_t>(type), out);
}

void PutTuple(const Tuple& tuple, std::string* out) {
  PutVarint(tuple.size(), out);
  for (const Datum& d : tuple) {
    out->push_back(static_cast<char>(d.kind));
    if (d.kind == DatumKind::kText || d.kind == DatumKind::kBinary) {
      PutLengthPrefixed(d.value, out);
    } else {
      assert(d.value.empty() && "NULL and unchanged-TOAST datums carry no value");
    }
  }
}

void Put(const BeginEvent& e, std::string* out) {
  PutHeader(EventType::kBegin, out);
  PutVarint(e.xid, out);
  PutVarint(e.final_lsn.value(), out);
  PutZigzag(e.commit_time, out);
}

void Put(const CommitEvent& e, std::string* out) {
  PutHeader(EventType::kCommit, out);
  PutVarint(e.xid, out);
  PutVarint(e.commit_lsn.value(), out);
  // end_lsn is just past the commit record: a delta of a few dozen bytes.
  // Unsigned wrap-around keeps any pair of values lossless.
  PutVarint(e.end_lsn.value() - e.commit_lsn.value(), out);
  PutZigzag(e.commit_time, out);
}

void Put(const Relation& r, std::string* out) {
  PutHeader(EventType::kRelation, out);
  PutVarint(r.oid, out);
  PutLengthPrefixed(r.nspname, out);
  PutLengthPrefixed(r.relname, out);
  out->push_back(r.replica_identity);
  PutVarint(r.columns.size(), out);
  for (const Column& c : r.columns) {
    out->push_back(static_cast<char>(c.is_key ? kColumnIsKey : 0));
    PutLengthPrefixed(c.name, out);
    PutVarint(c.type_oid, out);
    PutZigzag(c.type_mod, out);
  }
}

void Put(const RowChange& c, std::string* out) {
  assert((c.old_kind == 0 || c.old_kind == 'K' || c.old_kind == 'O') && "bad old_kind");
  assert((c.old_kind != 0 || c.old_tuple.empty()) && "old_tuple without old_kind");
  assert((c.op != RowOp::kInsert || c.old_kind == 0) && "insert with an old tuple");
  assert((c.op != RowOp::kDelete || c.new_tuple.empty()) && "delete with a new tuple");
  PutHeader(static_cast<EventType>(c.op), out);
  PutVarint(c.rel_oid, out);
  out->push_back(c.old_kind);
  if (c.old_kind != 0) PutTuple(c.old_tuple, out);
  if (c.op != RowOp::kDelete) PutTuple(c.new_tuple, out);
}

void Put(const TruncateEvent& t, std::string* out) {
  PutHeader(EventType::kTruncate, out);
  uint8_t flags =
      (t.cascade ? kTruncateCascade : 0) | (t.restart_identity ? kTruncateRestartIdentity : 0);
  out->push_back(static_cast<char>(flags));
  PutVarint(t.rel_oids.size(), out);
  for (uint32_t oid : t.rel_oids) PutVarint(oid, out);
}

void Put(const MessageEvent& m, std::string* out) {
  PutHeader(EventType::kMessage, out);
  out->push_back(static_cast<char>(m.transactional ? kMessageTransactional : 0));
  PutVarint(m.lsn.value(), out);
  PutLengthPrefixed(m.prefix, out);
  PutLengthPrefixed(m.content, out);
}

// Tuple:
//   varint  n             number of columns
//   n x datum:
//     u8    kind          'n' NULL, 'u' unchanged TOAST, 't' text, 'b' binary
//     str   value         only for 't' and 'b'
Result<Tuple> ReadTuple(WireReader& r, std::string_view field) {
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t n, r.Count(field, 1));
  Tuple tuple;
  tuple.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const size_t at = r.offset();
    GEOSYNC_ASSIGN_OR_RETURN(uint8_t kind, r.U8("datum kind"));
    Datum d;
    d.kind = static_cast<DatumKind>(kind);
    switch (d.kind) {
      case DatumKind::kNull:
      case DatumKind::kUnchangedToast:
        break;
      case DatumKind::kText:
      case DatumKind::kBinary: {
        GEOSYNC_ASSIGN_OR_RETURN(d.value, r.LengthPrefixed("datum value"));
        break;
      }
      default:
        return r.Error(fmt::format("unknown datum kind 0x{:02x}", kind), at);
    }
    tuple.push_back(std::move(d));
  }
  return tuple;
}

// Begin ('B'):
//   u8      version       1
//   u8      type          'B'
//   varint  xid
//   varint  final_lsn     LSN of the commit record
//   zigzag  commit_time   µs since 2000-01-01 UTC
Result<Event> ReadBegin(WireReader& r) {
  BeginEvent e;
  GEOSYNC_ASSIGN_OR_RETURN(e.xid, r.Varint32("xid"));
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint("final_lsn"));
  e.final_lsn = Lsn(lsn);
  GEOSYNC_ASSIGN_OR_RETURN(e.commit_time, r.Zigzag("commit_time"));
  return Event(e);
}

// Commit ('C'):
//   u8      version       1
//   u8      type          'C'
//   varint  xid
//   varint  commit_lsn
//   varint  end_delta     end_lsn - commit_lsn, modulo 2^64
//   zigzag  commit_time   µs since 2000-01-01 UTC
Result<Event> ReadCommit(WireReader& r) {
  CommitEvent e;
  GEOSYNC_ASSIGN_OR_RETURN(e.xid, r.Varint32("xid"));
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t commit_lsn, r.Varint("commit_lsn"));
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t end_delta, r.Varint("end_lsn delta"));
  e.commit_lsn = Lsn(commit_lsn);
  e.end_lsn = Lsn(commit_lsn + end_delta);
  GEOSYNC_ASSIGN_OR_RETURN(e.commit_time, r.Zigzag("commit_time"));
  return Event(e);
}

// Relation ('R'):
//   u8      version       1
//   u8      type          'R'
//   varint  oid           the source's OID (replicas map by name)
//   str     nspname
//   str     relname
//   u8      identity      'd', 'n', 'f' or 'i'
//   varint  n             number of columns
//   n x column:
//     u8    flags         bit 0: part of the replica identity; others 0
//     str   name
//     varint type_oid
//     zigzag type_mod     -1 when none
Result<Event> ReadRelation(WireReader& r) {
  Relation rel;
  GEOSYNC_ASSIGN_OR_RETURN(rel.oid, r.Varint32("relation oid"));
  GEOSYNC_ASSIGN_OR_RETURN(rel.nspname, r.LengthPrefixed("nspname"));
  GEOSYNC_ASSIGN_OR_RETURN(rel.relname, r.LengthPrefixed("relname"));
  const size_t identity_at = r.offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t identity, r.U8("replica identity"));
  if (identity != 'd' && identity != 'n' && identity != 'f' && identity != 'i') {
    return r.Error(fmt::format("unknown replica identity 0x{:02x}", identity), identity_at);
  }
  rel.replica_identity = static_cast<char>(identity);
  // A column takes at least 4 bytes: flags, empty name, type_oid, type_mod.
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t n, r.Count("column count", 4));
  rel.columns.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    Column c;
    const size_t flags_at = r.offset();
    GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("column flags"));
    GEOSYNC_RETURN_IF_ERROR(r.CheckFlags(flags, kColumnIsKey, flags_at));
    c.is_key = (flags & kColumnIsKey) != 0;
    GEOSYNC_ASSIGN_OR_RETURN(c.name, r.LengthPrefixed("column name"));
    GEOSYNC_ASSIGN_OR_RETURN(c.type_oid, r.Varint32("type_oid"));
    GEOSYNC_ASSIGN_OR_RETURN(c.type_mod, r.Zigzag32("type_mod"));
    rel.columns.push_back(std::move(c));
  }
  return Event(std::move(rel));
}

// Insert ('I'), Update ('U'), Delete ('D'):
//   u8      version       1
//   u8      type          'I', 'U' or 'D' (RowOp)
//   varint  rel_oid
//   u8      old_kind      0x00 no old tuple, 'K' key columns, 'O' full old row;
//                         always 0x00 for 'I'
//   tuple   old_tuple     only when old_kind != 0x00
//   tuple   new_tuple     only for 'I' and 'U'
Result<Event> ReadRowChange(WireReader& r, RowOp op) {
  RowChange c;
  c.op = op;
  GEOSYNC_ASSIGN_OR_RETURN(c.rel_oid, r.Varint32("rel_oid"));
  const size_t kind_at = r.offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t old_kind, r.U8("old_kind"));
  if ((old_kind != 0 && old_kind != 'K' && old_kind != 'O') ||
      (op == RowOp::kInsert && old_kind != 0)) {
    return r.Error(
        fmt::format("unexpected old_kind 0x{:02x} for '{}'", old_kind, static_cast<char>(op)),
        kind_at);
  }
  c.old_kind = static_cast<char>(old_kind);
  if (old_kind != 0) {
    GEOSYNC_ASSIGN_OR_RETURN(c.old_tuple, ReadTuple(r, "old tuple"));
  }
  if (op != RowOp::kDelete) {
    GEOSYNC_ASSIGN_OR_RETURN(c.new_tuple, ReadTuple(r, "new tuple"));
  }
  return Event(std::move(c));
}

// Truncate ('T'):
//   u8      version       1
//   u8      type          'T'
//   u8      flags         bit 0 CASCADE, bit 1 RESTART IDENTITY; others 0
//   varint  n
//   n x varint rel_oid
Result<Event> ReadTruncate(WireReader& r) {
  TruncateEvent t;
  const size_t flags_at = r.offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("truncate flags"));
  GEOSYNC_RETURN_IF_ERROR(
      r.CheckFlags(flags, kTruncateCascade | kTruncateRestartIdentity, flags_at));
  t.cascade = (flags & kTruncateCascade) != 0;
  t.restart_identity = (flags & kTruncateRestartIdentity) != 0;
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t n, r.Count("relation count", 1));
  t.rel_oids.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    GEOSYNC_ASSIGN_OR_RETURN(uint32_t oid, r.Varint32("rel_oid"));
    t.rel_oids.push_back(oid);
  }
  return Event(std::move(t));
}

// Message ('M'):
//   u8      version       1
//   u8      type          'M'
//   u8      flags         bit 0 transactional; others 0
//   varint  lsn
//   str     prefix
//   str     content
Result<Event> ReadMessage(WireReader& r) {
  MessageEvent m;
  const size_t flags_at = r.offset();
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("message flags"));
  GEOSYNC_RETURN_IF_ERROR(r.CheckFlags(flags, kMessageTransactional, flags_at));
  m.transactional = (flags & kMessageTransactional) != 0;
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint("lsn"));
  m.lsn = Lsn(lsn);
  GEOSYNC_ASSIGN_OR_RETURN(m.prefix, r.LengthPrefixed("prefix"));
  GEOSYNC_ASSIGN_OR_RETURN(m.content, r.LengthPrefixed("content"));
  return Event(std::move(m));
}

Result<Event> ReadEvent(WireReader& r) {
  const size_t type_at = r.offset() + 1;
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t type, r.RecordHeader());
  switch (static_cast<EventType>(type)) {
    case EventType::kBegin:
      return ReadBegin(r);
    case EventType::kCommit:
      return ReadCommit(r);
    case EventType::kRelation:
      return ReadRelation(r);
    case EventType::kInsert:
      return ReadRowChange(r, RowOp::kInsert);
    case EventType::kUpdate:
      return ReadRowChange(r, RowOp::kUpdate);
    case EventType::kDelete:
      return ReadRowChange(r, RowOp::kDelete);
    case EventType::kTruncate:
      return ReadTruncate(r);
    case EventType::kMessage:
      return ReadMessage(r);
  }
  return r.Error(fmt::format("unknown record type 0x{:02x}", type), type_at);
}

}  // namespace

void EncodeEvent(const Event& event, std::string* out) {
  std::visit([out](const auto& e) { Put(e, out); }, event);
}

Result<Event> DecodeEvent(std::span<const uint8_t> bytes) {
  WireReader r(bytes, "event decode");
  GEOSYNC_ASSIGN_OR_RETURN(Event event, ReadEvent(r));
  GEOSYNC_RETURN_IF_ERROR(r.ExpectEnd());
  return event;
}

void AppendEventRecord(const Event& event, std::string* out) {
  // Encode in place, then slide the record right by its length prefix: no
  // scratch buffer, and records are small.
  const size_t start = out->size();
  EncodeEvent(event, out);
  std::string prefix;
  PutVarint(out->size() - start, &prefix);
  out->insert(start, prefix);
}

void EncodeEvents(std::span<const Event> events, std::string* out) {
  for (const Event& e : events) AppendEventRecord(e, out);
}

// Batch: repeated { varint length; record of exactly that many bytes }.
Result<std::vector<Event>> DecodeEvents(std::span<const uint8_t> bytes) {
  std::vector<Event> events;
  WireReader batch(bytes, "event decode");
  while (batch.remaining() > 0) {
    GEOSYNC_ASSIGN_OR_RETURN(uint64_t len, batch.Varint("record length"));
    const size_t start = batch.offset();
    GEOSYNC_ASSIGN_OR_RETURN(auto record, batch.Bytes(len, "record"));
    WireReader r(record, "event decode", start);
    GEOSYNC_ASSIGN_OR_RETURN(Event event, ReadEvent(r));
    GEOSYNC_RETURN_IF_ERROR(r.ExpectEnd());
    events.push_back(std::move(event));
  }
  return events;
}

}  // namespace geosync
