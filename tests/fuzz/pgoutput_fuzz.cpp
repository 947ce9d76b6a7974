// What the source reads from PostgreSQL's walsender: the replication
// CopyData messages (XLogData, keepalive) and the pgoutput messages inside
// XLogData, decoded under each protocol option set, with a RelationCache
// and the row-change check the capture runs before spooling.
//
// Oracle: a message that decodes encodes back (EncodePgOutput) to bytes
// that decode to the same message.
//
// Input: byte 0 picks the options (mod 5); the rest is fuzz::Pieces, one
// message each, decoded in order against one RelationCache.
#include "common/pgoutput.h"
#include "common/replication_protocol.h"
#include "tests/fuzz/fuzz_util.h"

using namespace geosync;

namespace {
constexpr PgOutputOptions kOptionSets[] = {
    {1, false, false}, {1, true, false}, {2, false, false}, {2, true, true}, {2, false, true}};
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const PgOutputOptions& opts = kOptionSets[data[0] % 5];
  fuzz::Pieces pieces({data + 1, size - 1});
  RelationCache cache;
  fuzz::Bytes piece;
  while (pieces.Next(&piece)) {
    (void)ParseServerReplicationMessage(piece);
    auto message = DecodePgOutput(piece, opts);
    if (!message.ok()) {
      GEOSYNC_FUZZ_CHECK(message.status().code() == Code::kProtocol);
      continue;
    }
    const std::vector<uint8_t> encoded = EncodePgOutput(*message, opts);
    auto again = DecodePgOutput(encoded, opts);
    GEOSYNC_FUZZ_CHECK(again.ok());
    GEOSYNC_FUZZ_CHECK(*again == *message);
    if (const auto* relation = std::get_if<Relation>(&message->body)) {
      cache.Update(*relation);
    } else if (const auto* change = std::get_if<RowChange>(&message->body)) {
      Status st = ValidateRowChange(*change, cache);
      GEOSYNC_FUZZ_CHECK(st.ok() || st.code() == Code::kProtocol);
    }
  }
  return 0;
}
