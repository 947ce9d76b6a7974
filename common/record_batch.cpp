// Data frame batches of spool records, with relation descriptor de-duplication.
#include "common/record_batch.h"

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {
namespace {

constexpr uint8_t kEntryRecord = 0;
constexpr uint8_t kEntryRelation = 1;
constexpr uint8_t kEntryRelationRef = 2;

bool IsRelationPayload(std::span<const uint8_t> p) {
  return p.size() >= 2 && p[0] == kEncodingVersion &&
         p[1] == static_cast<uint8_t>(EventType::kRelation);
}

}  // namespace

void BatchEncoder::Append(uint64_t epoch, Lsn lsn, uint8_t flags,
                          std::span<const uint8_t> payload, std::string* out) {
  uint8_t kind = kEntryRecord;
  uint32_t oid = 0;
  if (IsRelationPayload(payload)) {
    auto ev = DecodeEvent(payload);
    if (ev.ok()) {
      oid = std::get<Relation>(*ev).oid;
      auto it = sent_.find(oid);
      std::string_view bytes(reinterpret_cast<const char*>(payload.data()), payload.size());
      if (it != sent_.end() && it->second == bytes) {
        kind = kEntryRelationRef;
        ++deduplicated_;
      } else {
        kind = kEntryRelation;
        sent_[oid] = std::string(bytes);
      }
    }
  }
  out->push_back(static_cast<char>(kind));
  PutVarint(epoch, out);
  PutVarint(lsn.value(), out);
  out->push_back(static_cast<char>(flags));
  if (kind == kEntryRelationRef) {
    PutVarint(oid, out);
  } else {
    PutLengthPrefixed(
        std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()), out);
  }
}

Result<std::vector<BatchRecord>> BatchDecoder::Decode(std::span<const uint8_t> batch) {
  std::vector<BatchRecord> records;
  WireReader r(batch, "record batch");
  while (r.remaining() > 0) {
    size_t at = r.offset();
    GEOSYNC_ASSIGN_OR_RETURN(uint8_t kind, r.U8("entry kind"));
    if (kind > kEntryRelationRef) {
      return r.Error(fmt::format("unknown entry kind {}", kind), at);
    }
    BatchRecord rec;
    GEOSYNC_ASSIGN_OR_RETURN(rec.epoch, r.Varint("epoch"));
    GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint("lsn"));
    rec.lsn = Lsn(lsn);
    GEOSYNC_ASSIGN_OR_RETURN(rec.flags, r.U8("flags"));
    if (rec.flags & ~0x03) return r.Error(fmt::format("unknown record flags 0x{:02x}", rec.flags), at);
    if (kind == kEntryRelationRef) {
      GEOSYNC_ASSIGN_OR_RETURN(uint32_t oid, r.Varint32("relation oid"));
      auto it = cache_.find(oid);
      if (it == cache_.end()) {
        return r.Error(fmt::format("reference to relation OID {} never sent on this connection", oid), at);
      }
      rec.payload = it->second;
    } else {
      GEOSYNC_ASSIGN_OR_RETURN(rec.payload, r.LengthPrefixed("payload"));
      if (kind == kEntryRelation) {
        auto p = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rec.payload.data()),
                                          rec.payload.size());
        auto ev = DecodeEvent(p);
        if (!ev.ok() || !std::holds_alternative<Relation>(*ev)) {
          return r.Error("relation entry does not hold a Relation record", at);
        }
        cache_[std::get<Relation>(*ev).oid] = rec.payload;
      }
    }
    records.push_back(std::move(rec));
  }
  return records;
}

}  // namespace geosync
