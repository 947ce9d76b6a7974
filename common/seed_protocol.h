// The seeding protocol: how a replica site copies the primary from a
// consistent snapshot over the site link. Pure encodings of the Seed* frames
// (frame types 16-31, common/frame.h); layouts above each decoder in
// seed_protocol.cpp and in docs/wire-format.md. The flow is in docs/seed.md.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/frame.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Frame types of the seeding protocol (inside the reserved 16-31 range).
inline constexpr FrameType kFrameSeedRequest = static_cast<FrameType>(16);   // replica -> source
inline constexpr FrameType kFrameSeedManifest = static_cast<FrameType>(17);  // source -> replica
inline constexpr FrameType kFrameSeedData = static_cast<FrameType>(18);      // source -> replica
inline constexpr FrameType kFrameSeedChunkEnd = static_cast<FrameType>(19);  // source -> replica
inline constexpr FrameType kFrameSeedFinish = static_cast<FrameType>(20);    // replica -> source

enum class SeedRequestKind : uint8_t {
  kManifest = 1,  // take a snapshot and describe it; hold it while this connection lives
  kChunk = 2,     // COPY one page range of one table in that snapshot
};

// Replica -> source, right after an accepted Hello with kHelloNeedsSeed.
struct SeedRequest {
  SeedRequestKind kind = SeedRequestKind::kManifest;
  // kChunk only:
  std::string snapshot;              // exported snapshot name from the manifest
  std::string schema, table;         // the table to copy
  std::vector<std::string> columns;  // in this order
  uint64_t start_page = 0;           // ctid >= (start_page, 0)
  uint64_t end_page = 0;             // ctid < (end_page, 0); 0 = to the end of the table

  bool operator==(const SeedRequest&) const = default;
};

struct SeedChunk {
  uint64_t start_page = 0;
  uint64_t end_page = 0;  // 0 = to the end of the table
  bool operator==(const SeedChunk&) const = default;
};

struct SeedTable {
  std::string schema, name;
  std::vector<std::string> columns;  // stored (not generated, not dropped), in attnum order
  uint64_t bytes = 0;                // pg_relation_size when the snapshot was taken
  uint64_t rows_estimate = 0;        // pg_class.reltuples, 0 when unknown
  std::vector<SeedChunk> chunks;     // at least one
  bool operator==(const SeedTable&) const = default;
};

struct SeedSequence {
  std::string schema, name;
  int64_t last_value = 0;
  bool is_called = false;
  bool operator==(const SeedSequence&) const = default;
};

// Source -> replica, answer to a kManifest request.
struct SeedManifest {
  std::string snapshot;  // exported by CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')
  // The slot's consistent point C at the source's epoch: transactions that
  // commit before C are in the snapshot, every later one is in the spool.
  Position consistent;
  std::string pre_data;   // SQL: pg_dump --schema-only --section=pre-data of the tables
  std::string post_data;  // SQL: --section=post-data (indexes, constraints), run after rows
  std::vector<SeedTable> tables;
  std::vector<SeedSequence> sequences;

  bool operator==(const SeedManifest&) const = default;
};

// Source -> replica after the last data frame of a chunk.
struct SeedChunkEnd {
  uint64_t rows = 0;
  uint64_t bytes = 0;  // COPY text bytes sent for this chunk
  bool operator==(const SeedChunkEnd&) const = default;
};

// Replica -> source on the manifest connection when the seed is over: the
// snapshot may be released.
struct SeedFinish {
  bool ok = false;
  std::string message;
  bool operator==(const SeedFinish&) const = default;
};

// Each Encode* appends one record; each Decode* takes exactly one record and
// reports problems as Status::Protocol naming the byte offset.
void EncodeSeedRequest(const SeedRequest& m, std::string* out);
Result<SeedRequest> DecodeSeedRequest(std::span<const uint8_t> bytes);
void EncodeSeedManifest(const SeedManifest& m, std::string* out);
Result<SeedManifest> DecodeSeedManifest(std::span<const uint8_t> bytes);
// A data frame carries COPY text bytes after a two-byte header.
void EncodeSeedData(std::string_view copy_bytes, std::string* out);
Result<std::span<const uint8_t>> DecodeSeedData(std::span<const uint8_t> bytes);
void EncodeSeedChunkEnd(const SeedChunkEnd& m, std::string* out);
Result<SeedChunkEnd> DecodeSeedChunkEnd(std::span<const uint8_t> bytes);
void EncodeSeedFinish(const SeedFinish& m, std::string* out);
Result<SeedFinish> DecodeSeedFinish(std::span<const uint8_t> bytes);

}  // namespace geosync
