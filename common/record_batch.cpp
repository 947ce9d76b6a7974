// Data frame batches of spool records: derived Begin/Commit/row-change
// entries, position deltas and relation descriptor de-duplication. The byte
// layout is in record_batch.h and docs/wire-format.md.
#include "common/record_batch.h"

#include <cassert>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {
namespace {

constexpr uint8_t kEntryRecord = 0;
constexpr uint8_t kEntryRelation = 1;
constexpr uint8_t kEntryRelationRef = 2;
constexpr uint8_t kEntryBegin = 3;
constexpr uint8_t kEntryCommit = 4;
constexpr uint8_t kEntryRow = 5;

constexpr uint8_t kTagRecordFlags = 0x03;
constexpr uint8_t kTagPosition = 0x04;
constexpr uint8_t kTagEpoch = 0x08;
constexpr int kTagKindShift = 4;
constexpr uint8_t kTagReserved = 0x80;

std::string_view View(std::span<const uint8_t> p) {
  return {reinterpret_cast<const char*>(p.data()), p.size()};
}

bool IsRowType(uint8_t t) { return t == 'I' || t == 'U' || t == 'D'; }

std::string BeginPayload(uint32_t xid, uint64_t lsn, int64_t commit_time) {
  std::string s;
  EncodeEvent(Event(BeginEvent{xid, Lsn(lsn), commit_time}), &s);
  return s;
}

std::string CommitPayload(const BatchState& st, uint64_t lsn, uint64_t end_delta) {
  std::string s;
  EncodeEvent(Event(CommitEvent{st.xid, Lsn(lsn), Lsn(lsn + end_delta), st.commit_time}), &s);
  return s;
}

void PutRowPrefix(uint8_t type, uint32_t rel_oid, std::string* out) {
  out->push_back(static_cast<char>(kEncodingVersion));
  out->push_back(static_cast<char>(type));
  PutVarint(rel_oid, out);
}

// Wrapping difference as a signed value: lossless for any pair.
int64_t WrapDelta(uint64_t now, uint64_t before) { return static_cast<int64_t>(now - before); }

}  // namespace

void BatchEncoder::Append(uint64_t epoch, Lsn lsn, uint8_t flags, std::span<const uint8_t> payload,
                          std::string* out) {
  assert((flags & ~kTagRecordFlags) == 0 && "spool flags have two bits");
  if (out->empty()) out->push_back(static_cast<char>(kBatchFormat));
  const std::string_view bytes = View(payload);
  uint8_t kind = kEntryRecord;
  std::string body;
  const uint8_t type = payload.size() >= 2 && payload[0] == kEncodingVersion ? payload[1] : 0;
  if (type == static_cast<uint8_t>(EventType::kRelation)) {
    auto ev = DecodeEvent(payload);
    if (ev.ok()) {
      const uint32_t oid = std::get<Relation>(*ev).oid;
      auto it = sent_.find(oid);
      if (it != sent_.end() && it->second == bytes) {
        kind = kEntryRelationRef;
        PutVarint(oid, &body);
        ++deduplicated_;
      } else {
        kind = kEntryRelation;
        sent_[oid] = std::string(bytes);
      }
      state_.rel_oid = oid;
      state_.have_rel = true;
    }
  } else if (type == static_cast<uint8_t>(EventType::kBegin)) {
    auto ev = DecodeEvent(payload);
    if (ev.ok()) {
      const auto& b = std::get<BeginEvent>(*ev);
      if (b.final_lsn == lsn && BeginPayload(b.xid, lsn.value(), b.commit_time) == bytes) {
        kind = kEntryBegin;
        PutZigzag(int64_t{b.xid} - int64_t{state_.xid}, &body);
        PutZigzag(WrapDelta(static_cast<uint64_t>(b.commit_time),
                            static_cast<uint64_t>(state_.commit_time)),
                  &body);
        state_.xid = b.xid;
        state_.commit_time = b.commit_time;
        state_.have_txn = true;
      }
    }
  } else if (type == static_cast<uint8_t>(EventType::kCommit) && state_.have_txn) {
    auto ev = DecodeEvent(payload);
    if (ev.ok()) {
      const auto& c = std::get<CommitEvent>(*ev);
      const uint64_t end_delta = c.end_lsn.value() - lsn.value();
      if (c.xid == state_.xid && c.commit_time == state_.commit_time && c.commit_lsn == lsn &&
          CommitPayload(state_, lsn.value(), end_delta) == bytes) {
        kind = kEntryCommit;
        PutVarint(end_delta, &body);
      }
    }
  } else if (IsRowType(type) && state_.have_rel) {
    // The varint reader rejects non-minimal encodings, so re-encoding the
    // OID gives back the same bytes.
    WireReader r(payload.subspan(2), "row change");
    auto oid = r.Varint32("rel_oid");
    if (oid.ok() && *oid == state_.rel_oid) {
      kind = kEntryRow;
      body.push_back(static_cast<char>(type));
      PutLengthPrefixed(bytes.substr(2 + r.offset()), &body);
    }
  }
  if (kind == kEntryRecord || kind == kEntryRelation) PutLengthPrefixed(bytes, &body);
  if (kind >= kEntryBegin) ++derived_;

  uint8_t tag = static_cast<uint8_t>((flags & kTagRecordFlags) | (kind << kTagKindShift));
  if (epoch != state_.epoch) tag |= kTagPosition | kTagEpoch;
  if (lsn.value() != state_.lsn) tag |= kTagPosition;
  out->push_back(static_cast<char>(tag));
  if (tag & kTagEpoch) PutVarint(epoch, out);
  if (tag & kTagPosition) PutZigzag(WrapDelta(lsn.value(), state_.lsn), out);
  state_.epoch = epoch;
  state_.lsn = lsn.value();
  out->append(body);
}

Result<uint8_t> BatchDecoder::ReadTag(WireReader& r, size_t at, uint8_t* tag_out) {
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t tag, r.U8("entry tag"));
  const uint8_t kind = (tag >> kTagKindShift) & 0x07;
  if (tag & kTagReserved) return r.Error(fmt::format("reserved bit in tag 0x{:02x}", tag), at);
  if (kind > kEntryRow) return r.Error(fmt::format("unknown entry kind {}", kind), at);
  if ((tag & kTagEpoch) && !(tag & kTagPosition)) {
    return r.Error(fmt::format("epoch without position in tag 0x{:02x}", tag), at);
  }
  if (tag & kTagEpoch) {
    GEOSYNC_ASSIGN_OR_RETURN(state_.epoch, r.Varint("epoch"));
  }
  if (tag & kTagPosition) {
    GEOSYNC_ASSIGN_OR_RETURN(int64_t delta, r.Zigzag("lsn delta"));
    state_.lsn += static_cast<uint64_t>(delta);
  }
  *tag_out = tag;
  return kind;
}

Status BatchDecoder::DecodeBegin(WireReader& r, BatchRecord* rec) {
  const size_t xid_at = r.offset();
  GEOSYNC_ASSIGN_OR_RETURN(int64_t xid_delta, r.Zigzag("xid delta"));
  constexpr int64_t kMaxXid = std::numeric_limits<uint32_t>::max();
  if (xid_delta < -kMaxXid || xid_delta > kMaxXid || int64_t{state_.xid} + xid_delta < 0 ||
      int64_t{state_.xid} + xid_delta > kMaxXid) {
    return r.Error(fmt::format("xid delta {} leaves 32 bits", xid_delta), xid_at);
  }
  GEOSYNC_ASSIGN_OR_RETURN(int64_t time_delta, r.Zigzag("commit_time delta"));
  state_.xid = static_cast<uint32_t>(int64_t{state_.xid} + xid_delta);
  state_.commit_time = static_cast<int64_t>(static_cast<uint64_t>(state_.commit_time) +
                                            static_cast<uint64_t>(time_delta));
  state_.have_txn = true;
  rec->payload = BeginPayload(state_.xid, state_.lsn, state_.commit_time);
  return Status::Ok();
}

Status BatchDecoder::DecodeEntry(WireReader& r, uint8_t kind, size_t at, BatchRecord* rec) {
  switch (kind) {
    case kEntryRecord: {
      GEOSYNC_ASSIGN_OR_RETURN(rec->payload, r.LengthPrefixed("payload"));
      return Status::Ok();
    }
    case kEntryRelation: {
      GEOSYNC_ASSIGN_OR_RETURN(rec->payload, r.LengthPrefixed("payload"));
      auto ev = DecodeEvent(AsBytes(rec->payload));
      if (!ev.ok() || !std::holds_alternative<Relation>(*ev)) {
        return r.Error("relation entry does not hold a Relation record", at);
      }
      state_.rel_oid = std::get<Relation>(*ev).oid;
      state_.have_rel = true;
      cache_[state_.rel_oid] = rec->payload;
      return Status::Ok();
    }
    case kEntryRelationRef: {
      GEOSYNC_ASSIGN_OR_RETURN(uint32_t oid, r.Varint32("relation oid"));
      auto it = cache_.find(oid);
      if (it == cache_.end()) {
        return r.Error(
            fmt::format("reference to relation OID {} never sent on this connection", oid), at);
      }
      rec->payload = it->second;
      state_.rel_oid = oid;
      state_.have_rel = true;
      return Status::Ok();
    }
    case kEntryBegin:
      return DecodeBegin(r, rec);
    case kEntryCommit: {
      if (!state_.have_txn) return r.Error("commit entry before any begin entry", at);
      GEOSYNC_ASSIGN_OR_RETURN(uint64_t end_delta, r.Varint("end_lsn delta"));
      rec->payload = CommitPayload(state_, state_.lsn, end_delta);
      return Status::Ok();
    }
    case kEntryRow: {
      if (!state_.have_rel) return r.Error("row change entry before any relation", at);
      const size_t type_at = r.offset();
      GEOSYNC_ASSIGN_OR_RETURN(uint8_t type, r.U8("row change type"));
      if (!IsRowType(type)) {
        return r.Error(fmt::format("unknown row change type 0x{:02x}", type), type_at);
      }
      GEOSYNC_ASSIGN_OR_RETURN(std::string body, r.LengthPrefixed("row change body"));
      PutRowPrefix(type, state_.rel_oid, &rec->payload);
      rec->payload.append(body);
      return Status::Ok();
    }
  }
  return r.Error(fmt::format("unknown entry kind {}", kind), at);
}

Result<std::vector<BatchRecord>> BatchDecoder::Decode(std::span<const uint8_t> batch) {
  std::vector<BatchRecord> records;
  WireReader r(batch, "record batch");
  GEOSYNC_ASSIGN_OR_RETURN(uint8_t format, r.U8("batch format"));
  if (format != kBatchFormat) {
    return r.Error(
        fmt::format("unknown batch format {} (this build reads {})", format, kBatchFormat), 0);
  }
  size_t decoded = 0;
  while (r.remaining() > 0) {
    const size_t at = r.offset();
    uint8_t tag = 0;
    GEOSYNC_ASSIGN_OR_RETURN(uint8_t kind, ReadTag(r, at, &tag));
    BatchRecord rec;
    rec.epoch = state_.epoch;
    rec.lsn = Lsn(state_.lsn);
    rec.flags = tag & kTagRecordFlags;
    GEOSYNC_RETURN_IF_ERROR(DecodeEntry(r, kind, at, &rec));
    decoded += rec.payload.size();
    if (decoded > max_decoded_bytes_) {
      return r.Error(fmt::format("batch of {} bytes decodes to more than {} bytes after {} records "
                                 "(expansion bomb?)",
                                 batch.size(), max_decoded_bytes_, records.size() + 1),
                     at);
    }
    records.push_back(std::move(rec));
  }
  return records;
}

}  // namespace geosync
