// Encoding of the Seed* records. Same notation as control.cpp: u8 is one
// byte, varint unsigned LEB128, zigzag a zigzag-mapped varint, str a varint
// length + bytes, and a position is { varint epoch; varint lsn }.
#include "common/seed_protocol.h"

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {
namespace {

constexpr uint8_t kRequestType = 'Q';
constexpr uint8_t kManifestType = 'S';
constexpr uint8_t kDataType = 'd';
constexpr uint8_t kChunkEndType = 'e';
constexpr uint8_t kFinishType = 'F';

constexpr uint8_t kFinishOk = 0x01;
constexpr uint8_t kSequenceCalled = 0x01;

void PutStrings(const std::vector<std::string>& v, std::string* out) {
  PutVarint(v.size(), out);
  for (const auto& s : v) PutLengthPrefixed(s, out);
}

Result<std::vector<std::string>> ReadStrings(WireReader& r, std::string_view field) {
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t n, r.Count(field, 1));
  std::vector<std::string> v;
  v.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    GEOSYNC_ASSIGN_OR_RETURN(std::string s, r.LengthPrefixed(field));
    v.push_back(std::move(s));
  }
  return v;
}

}  // namespace

void EncodeSeedRequest(const SeedRequest& m, std::string* out) {
  PutRecordHeader(kRequestType, out);
  out->push_back(static_cast<char>(m.kind));
  PutLengthPrefixed(m.snapshot, out);
  PutLengthPrefixed(m.schema, out);
  PutLengthPrefixed(m.table, out);
  PutStrings(m.columns, out);
  PutVarint(m.start_page, out);
  PutVarint(m.end_page, out);
}

// SeedRequest ('Q', frame type 16):
//   u8      version      1
//   u8      type         'Q'
//   u8      kind         1 manifest, 2 chunk; others rejected
//   str     snapshot     exported snapshot name (chunk), empty (manifest)
//   str     schema
//   str     table
//   varint  n_columns
//   str     column       n times
//   varint  start_page   ctid >= (start_page,0)
//   varint  end_page     ctid < (end_page,0); 0 = to the end
Result<SeedRequest> DecodeSeedRequest(std::span<const uint8_t> bytes) {
  return DecodeRecord<SeedRequest>(
      bytes, "seed request decode", kRequestType, [](WireReader& r, SeedRequest& m) -> Status {
        const size_t kind_at = r.offset();
        GEOSYNC_ASSIGN_OR_RETURN(uint8_t kind, r.U8("kind"));
        if (kind != static_cast<uint8_t>(SeedRequestKind::kManifest) &&
            kind != static_cast<uint8_t>(SeedRequestKind::kChunk)) {
          return r.Error(fmt::format("unknown seed request kind {}", kind), kind_at);
        }
        m.kind = static_cast<SeedRequestKind>(kind);
        GEOSYNC_ASSIGN_OR_RETURN(m.snapshot, r.LengthPrefixed("snapshot"));
        GEOSYNC_ASSIGN_OR_RETURN(m.schema, r.LengthPrefixed("schema"));
        GEOSYNC_ASSIGN_OR_RETURN(m.table, r.LengthPrefixed("table"));
        GEOSYNC_ASSIGN_OR_RETURN(m.columns, ReadStrings(r, "columns"));
        GEOSYNC_ASSIGN_OR_RETURN(m.start_page, r.Varint("start_page"));
        GEOSYNC_ASSIGN_OR_RETURN(m.end_page, r.Varint("end_page"));
        return Status::Ok();
      });
}

void EncodeSeedManifest(const SeedManifest& m, std::string* out) {
  PutRecordHeader(kManifestType, out);
  PutLengthPrefixed(m.snapshot, out);
  PutVarint(m.consistent.epoch, out);
  PutVarint(m.consistent.lsn.value(), out);
  PutLengthPrefixed(m.pre_data, out);
  PutLengthPrefixed(m.post_data, out);
  PutVarint(m.tables.size(), out);
  for (const SeedTable& t : m.tables) {
    PutLengthPrefixed(t.schema, out);
    PutLengthPrefixed(t.name, out);
    PutStrings(t.columns, out);
    PutVarint(t.bytes, out);
    PutVarint(t.rows_estimate, out);
    PutVarint(t.chunks.size(), out);
    for (const SeedChunk& c : t.chunks) {
      PutVarint(c.start_page, out);
      PutVarint(c.end_page, out);
    }
  }
  PutVarint(m.sequences.size(), out);
  for (const SeedSequence& s : m.sequences) {
    PutLengthPrefixed(s.schema, out);
    PutLengthPrefixed(s.name, out);
    PutZigzag(s.last_value, out);
    out->push_back(static_cast<char>(s.is_called ? kSequenceCalled : 0));
  }
}

// SeedManifest ('S', frame type 17):
//   u8      version              1
//   u8      type                 'S'
//   str     snapshot             exported snapshot name
//   varint  consistent.epoch
//   varint  consistent.lsn       the slot's consistent point
//   str     pre_data             SQL
//   str     post_data            SQL
//   varint  n_tables
//   table   n_tables times:
//     str     schema
//     str     name
//     varint  n_columns, then str column n_columns times
//     varint  bytes
//     varint  rows_estimate
//     varint  n_chunks (>= 1), then { varint start_page; varint end_page } n_chunks times
//   varint  n_sequences
//   sequence n_sequences times:
//     str     schema
//     str     name
//     zigzag  last_value
//     u8      flags              bit 0 is_called; others 0
Result<SeedManifest> DecodeSeedManifest(std::span<const uint8_t> bytes) {
  return DecodeRecord<SeedManifest>(
      bytes, "seed manifest decode", kManifestType, [](WireReader& r, SeedManifest& m) -> Status {
        GEOSYNC_ASSIGN_OR_RETURN(m.snapshot, r.LengthPrefixed("snapshot"));
        GEOSYNC_ASSIGN_OR_RETURN(m.consistent.epoch, r.Varint("consistent.epoch"));
        GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint("consistent.lsn"));
        m.consistent.lsn = Lsn(lsn);
        GEOSYNC_ASSIGN_OR_RETURN(m.pre_data, r.LengthPrefixed("pre_data"));
        GEOSYNC_ASSIGN_OR_RETURN(m.post_data, r.LengthPrefixed("post_data"));
        // A table takes at least 7 bytes (five empty or one-byte fields, one chunk).
        GEOSYNC_ASSIGN_OR_RETURN(uint64_t n_tables, r.Count("n_tables", 7));
        m.tables.reserve(n_tables);
        for (uint64_t i = 0; i < n_tables; ++i) {
          SeedTable t;
          GEOSYNC_ASSIGN_OR_RETURN(t.schema, r.LengthPrefixed("table.schema"));
          GEOSYNC_ASSIGN_OR_RETURN(t.name, r.LengthPrefixed("table.name"));
          GEOSYNC_ASSIGN_OR_RETURN(t.columns, ReadStrings(r, "table.columns"));
          GEOSYNC_ASSIGN_OR_RETURN(t.bytes, r.Varint("table.bytes"));
          GEOSYNC_ASSIGN_OR_RETURN(t.rows_estimate, r.Varint("table.rows_estimate"));
          const size_t chunks_at = r.offset();
          GEOSYNC_ASSIGN_OR_RETURN(uint64_t n_chunks, r.Count("table.n_chunks", 2));
          if (n_chunks == 0) return r.Error("table without chunks", chunks_at);
          for (uint64_t c = 0; c < n_chunks; ++c) {
            SeedChunk chunk;
            GEOSYNC_ASSIGN_OR_RETURN(chunk.start_page, r.Varint("chunk.start_page"));
            GEOSYNC_ASSIGN_OR_RETURN(chunk.end_page, r.Varint("chunk.end_page"));
            t.chunks.push_back(chunk);
          }
          m.tables.push_back(std::move(t));
        }
        GEOSYNC_ASSIGN_OR_RETURN(uint64_t n_seqs, r.Count("n_sequences", 4));
        m.sequences.reserve(n_seqs);
        for (uint64_t i = 0; i < n_seqs; ++i) {
          SeedSequence s;
          GEOSYNC_ASSIGN_OR_RETURN(s.schema, r.LengthPrefixed("sequence.schema"));
          GEOSYNC_ASSIGN_OR_RETURN(s.name, r.LengthPrefixed("sequence.name"));
          GEOSYNC_ASSIGN_OR_RETURN(s.last_value, r.Zigzag("sequence.last_value"));
          const size_t flags_at = r.offset();
          GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("sequence.flags"));
          GEOSYNC_RETURN_IF_ERROR(r.CheckFlags(flags, kSequenceCalled, flags_at));
          s.is_called = (flags & kSequenceCalled) != 0;
          m.sequences.push_back(std::move(s));
        }
        return Status::Ok();
      });
}

void EncodeSeedData(std::string_view copy_bytes, std::string* out) {
  PutRecordHeader(kDataType, out);
  out->append(copy_bytes);
}

// SeedData ('d', frame type 18):
//   u8      version      1
//   u8      type         'd'
//   bytes   copy_data    the rest of the payload: COPY text format rows
Result<std::span<const uint8_t>> DecodeSeedData(std::span<const uint8_t> bytes) {
  WireReader r(bytes, "seed data decode");
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t got, r.RecordHeader());
  if (got != kDataType) {
    return r.Error(
        fmt::format("unexpected record type 0x{:02x} (expected 0x{:02x})", got, kDataType), 1);
  }
  return bytes.subspan(2);
}

void EncodeSeedChunkEnd(const SeedChunkEnd& m, std::string* out) {
  PutRecordHeader(kChunkEndType, out);
  PutVarint(m.rows, out);
  PutVarint(m.bytes, out);
}

// SeedChunkEnd ('e', frame type 19):
//   u8      version      1
//   u8      type         'e'
//   varint  rows         rows in the chunk
//   varint  bytes        COPY bytes sent in its data frames
Result<SeedChunkEnd> DecodeSeedChunkEnd(std::span<const uint8_t> bytes) {
  return DecodeRecord<SeedChunkEnd>(bytes, "seed chunk end decode", kChunkEndType,
                                    [](WireReader& r, SeedChunkEnd& m) -> Status {
                                      GEOSYNC_ASSIGN_OR_RETURN(m.rows, r.Varint("rows"));
                                      GEOSYNC_ASSIGN_OR_RETURN(m.bytes, r.Varint("bytes"));
                                      return Status::Ok();
                                    });
}

void EncodeSeedFinish(const SeedFinish& m, std::string* out) {
  PutRecordHeader(kFinishType, out);
  out->push_back(static_cast<char>(m.ok ? kFinishOk : 0));
  PutLengthPrefixed(m.message, out);
}

// SeedFinish ('F', frame type 20):
//   u8      version      1
//   u8      type         'F'
//   u8      flags        bit 0 the seed succeeded; others 0
//   str     message      why not, when it failed
Result<SeedFinish> DecodeSeedFinish(std::span<const uint8_t> bytes) {
  return DecodeRecord<SeedFinish>(
      bytes, "seed finish decode", kFinishType, [](WireReader& r, SeedFinish& m) -> Status {
        const size_t flags_at = r.offset();
        GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("flags"));
        GEOSYNC_RETURN_IF_ERROR(r.CheckFlags(flags, kFinishOk, flags_at));
        m.ok = (flags & kFinishOk) != 0;
        GEOSYNC_ASSIGN_OR_RETURN(m.message, r.LengthPrefixed("message"));
        return Status::Ok();
      });
}

}  // namespace geosync
