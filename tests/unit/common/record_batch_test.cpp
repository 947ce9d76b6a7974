// Data frame batches: records come back byte for byte in derived form,
// relation descriptors are sent once per connection, and malformed or
// corrupted batches are rejected with offsets.
#include "common/record_batch.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "common/encoding.h"

namespace geosync {
namespace {

std::string Encoded(const Event& e) {
  std::string out;
  EncodeEvent(e, &out);
  return out;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Relation Accounts(int columns) {
  Relation r;
  r.oid = 16384;
  r.nspname = "public";
  r.relname = "accounts";
  for (int i = 0; i < columns; ++i) r.columns.push_back({"c" + std::to_string(i), 23, -1, i == 0});
  return r;
}

TEST(RecordBatchTest, RecordsRoundTripVerbatim) {
  BatchEncoder enc;
  BatchDecoder dec;
  std::string batch;
  std::string begin = Encoded(BeginEvent{.xid = 7, .final_lsn = Lsn(0x1000), .commit_time = 5});
  std::string rel = Encoded(Accounts(2));
  std::string commit = Encoded(CommitEvent{7, Lsn(0x1000), Lsn(0x1030), 5});
  enc.Append(1, Lsn(0x1000), 0x01, Bytes(begin), &batch);
  enc.Append(1, Lsn(0x1000), 0x00, Bytes(rel), &batch);
  enc.Append(1, Lsn(0x1000), 0x02, Bytes(commit), &batch);
  auto out = dec.Decode(Bytes(batch));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[0], (BatchRecord{1, Lsn(0x1000), 0x01, begin}));
  EXPECT_EQ((*out)[1].payload, rel);
  EXPECT_EQ((*out)[2], (BatchRecord{1, Lsn(0x1000), 0x02, commit}));
}

TEST(RecordBatchTest, UnchangedRelationIsSentOncePerConnection) {
  BatchEncoder enc;
  BatchDecoder dec;
  std::string rel = Encoded(Accounts(3));
  std::string first, second;
  enc.Append(1, Lsn(10), 0, Bytes(rel), &first);
  enc.Append(1, Lsn(20), 0, Bytes(rel), &second);
  EXPECT_EQ(enc.relations_deduplicated(), 1u);
  EXPECT_LT(second.size(), 12u) << "a repeated descriptor travels as a reference";
  ASSERT_TRUE(dec.Decode(Bytes(first)).ok());
  auto again = dec.Decode(Bytes(second));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)[0].payload, rel) << "the receiver expands the reference to the full record";
}

TEST(RecordBatchTest, ChangedRelationIsSentAgainInFull) {
  BatchEncoder enc;
  std::string a = Encoded(Accounts(2)), b = Encoded(Accounts(3));
  std::string out1, out2;
  enc.Append(1, Lsn(10), 0, Bytes(a), &out1);
  enc.Append(1, Lsn(20), 0, Bytes(b), &out2);
  EXPECT_EQ(enc.relations_deduplicated(), 0u);
  EXPECT_GT(out2.size(), b.size());
}

TEST(RecordBatchTest, ReferenceToUnsentRelationIsAProtocolError) {
  BatchEncoder enc;
  std::string rel = Encoded(Accounts(1));
  std::string first, second;
  enc.Append(1, Lsn(10), 0, Bytes(rel), &first);
  enc.Append(1, Lsn(20), 0, Bytes(rel), &second);
  BatchDecoder fresh;  // a new connection has no cache
  auto r = fresh.Decode(Bytes(second));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find("relation OID 16384"), std::string::npos)
      << r.status().message();
}

// A forged batch of 2-byte references to one large relation descriptor
// (issue #19): refused once it would decode past the cap, naming the offset,
// instead of growing a copy of the descriptor per reference.
TEST(RecordBatchTest, ExpansionBombIsRefusedAtTheDecodedCap) {
  BatchEncoder enc;
  std::string rel = Encoded(Accounts(200));  // a wide table: ~2.6 KB descriptor
  std::string first, ref;
  enc.Append(1, Lsn(10), 0, Bytes(rel), &first);
  enc.Append(1, Lsn(10), 0, Bytes(rel), &ref);
  ASSERT_LT(ref.size(), 8u);
  // One batch: the format byte, then 4 MB of references (each ~3 bytes).
  std::string bomb = ref.substr(0, 1);
  const std::string entry = ref.substr(1);
  while (bomb.size() < (4u << 20)) bomb += entry;
  const size_t cap = 64u << 20;  // 64 MiB here; the default is kMaxDecodedBatchBytes
  BatchDecoder dec(cap);
  ASSERT_TRUE(dec.Decode(Bytes(first)).ok());
  auto r = dec.Decode(Bytes(bomb));
  ASSERT_FALSE(r.ok()) << "4 MB of references would decode to "
                       << (bomb.size() / entry.size()) * rel.size() << " bytes";
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find("decodes to more than 67108864 bytes"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("offset"), std::string::npos) << r.status().message();
  // An honest batch of the same references, under the cap, decodes.
  std::string small = ref.substr(0, 1);
  for (int i = 0; i < 1000; ++i) small += entry;
  auto ok = dec.Decode(Bytes(small));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->size(), 1000u);
}

// A length field of 4 GB in a row entry is refused as running past the
// batch, without allocating it.
TEST(RecordBatchTest, FourGigabyteLengthFieldIsRefused) {
  BatchEncoder enc;
  BatchDecoder dec;
  std::string rel = Encoded(Accounts(2));
  std::string batch;
  enc.Append(1, Lsn(10), 0, Bytes(rel), &batch);
  auto decoded = dec.Decode(Bytes(batch));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  // A record entry (kind 0, no position) with a varint length of 2^32 - 1.
  std::string forged = batch.substr(0, 1);
  forged += '\x00';
  forged += "\xff\xff\xff\xff\x0f";
  forged += "tiny";
  auto r = dec.Decode(Bytes(forged));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find("payload"), std::string::npos) << r.status().message();
}

constexpr uint8_t kFirst = 0x01;  // the spool's kFirstInUnit
constexpr uint8_t kLast = 0x02;   // kLastInUnit
constexpr uint8_t kStandalone = kFirst | kLast;

struct Rec {
  uint64_t epoch;
  Lsn lsn;
  uint8_t flags;
  std::string payload;
};

RowChange Row(RowOp op, uint32_t oid, std::vector<std::string> values, char old_kind = 0) {
  RowChange c;
  c.op = op;
  c.rel_oid = oid;
  Tuple t;
  for (auto& v : values) t.push_back(Datum{DatumKind::kText, v});
  if (old_kind != 0) {
    c.old_kind = old_kind;
    c.old_tuple = t;
  }
  if (op != RowOp::kDelete) c.new_tuple = t;
  return c;
}

Relation Rel(uint32_t oid, const std::string& name) {
  Relation r = Accounts(3);
  r.oid = oid;
  r.relname = name;
  return r;
}

// A pgbench-like transaction as the spool holds it.
std::vector<Rec> Txn(uint32_t xid, uint64_t lsn, int64_t time, int aid) {
  const Lsn l(lsn);
  std::vector<Rec> v;
  v.push_back({1, l, kFirst, Encoded(BeginEvent{xid, l, time})});
  v.push_back({1, l, 0, Encoded(Rel(16390, "pgbench_accounts"))});
  v.push_back({1, l, 0, Encoded(Row(RowOp::kUpdate, 16390, {std::to_string(aid), "1", "-42"}))});
  v.push_back({1, l, 0, Encoded(Rel(16396, "pgbench_history"))});
  v.push_back({1, l, 0, Encoded(Row(RowOp::kInsert, 16396, {"7", "1", std::to_string(aid)}))});
  v.push_back({1, l, kLast, Encoded(CommitEvent{xid, l, Lsn(lsn + 48), time})});
  return v;
}

BatchRecord AsRecord(const Rec& r) { return BatchRecord{r.epoch, r.lsn, r.flags, r.payload}; }

std::string EncodeAll(BatchEncoder& enc, const std::vector<Rec>& recs) {
  std::string batch;
  for (const Rec& r : recs) enc.Append(r.epoch, r.lsn, r.flags, Bytes(r.payload), &batch);
  return batch;
}

// Encodes `recs` as one batch and checks that the decoder gives them back.
std::string RoundTrip(BatchEncoder& enc, BatchDecoder& dec, const std::vector<Rec>& recs) {
  std::string batch = EncodeAll(enc, recs);
  auto out = dec.Decode(Bytes(batch));
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return batch;
  EXPECT_EQ(out->size(), recs.size());
  for (size_t i = 0; i < recs.size() && i < out->size(); ++i) {
    EXPECT_EQ((*out)[i], AsRecord(recs[i])) << "record " << i;
  }
  return batch;
}

TEST(RecordBatchTest, PgbenchTransactionsRoundTripInDerivedForm) {
  BatchEncoder enc;
  BatchDecoder dec;
  RoundTrip(enc, dec, Txn(1000, 0x1000000, 800000000000000, 123456));
  const std::string second = RoundTrip(enc, dec, Txn(1001, 0x1000300, 800000000000150, 7));
  EXPECT_EQ(enc.records_derived(), 8u) << "Begin, two row changes and Commit per transaction";
  EXPECT_LT(second.size(), 50u) << "the second transaction ships in derived form";
}

TEST(RecordBatchTest, EveryChangeKindRoundTrips) {
  BatchEncoder enc;
  BatchDecoder dec;
  const Lsn l(0x5000);
  std::vector<Rec> recs = {
      {2, l, kFirst, Encoded(BeginEvent{9, l, -5})},
      {2, l, 0, Encoded(Rel(300, "t"))},
      {2, l, 0, Encoded(Row(RowOp::kInsert, 300, {"a", ""}))},
      {2, l, 0, Encoded(Row(RowOp::kUpdate, 300, {"b", "c"}, 'K'))},
      {2, l, 0, Encoded(Row(RowOp::kUpdate, 300, {"d", "e"}, 'O'))},
      {2, l, 0, Encoded(Row(RowOp::kUpdate, 300, {"f"}))},
      {2, l, 0, Encoded(Row(RowOp::kDelete, 300, {"f"}, 'K'))},
      {2, l, 0, Encoded(Row(RowOp::kDelete, 301, {"x"}, 'O'))},  // another OID: verbatim
      {2, l, 0, Encoded(TruncateEvent{true, false, {300, 301}})},
      {2, l, 0, Encoded(MessageEvent{true, l, "geosync.ddl", "ALTER TABLE t"})},
      {2, l, kLast, Encoded(CommitEvent{9, l, Lsn(0x5030), -5})},
      {3, Lsn(0x10), kStandalone, Encoded(MessageEvent{false, Lsn(0x10), "p", "c"})},
  };
  RoundTrip(enc, dec, recs);
  EXPECT_EQ(enc.records_derived(), 7u) << "Begin, five row changes on OID 300, Commit";
}

TEST(RecordBatchTest, UnderivableBeginAndCommitAreSentVerbatim) {
  BatchEncoder enc;
  BatchDecoder dec;
  std::vector<Rec> recs = {
      // final_lsn is not the record's LSN; then a commit time, then an xid differs.
      {1, Lsn(0x100), kFirst, Encoded(BeginEvent{5, Lsn(0x200), 1})},
      {1, Lsn(0x100), kLast, Encoded(CommitEvent{5, Lsn(0x100), Lsn(0x140), 1})},
      {1, Lsn(0x300), kFirst, Encoded(BeginEvent{6, Lsn(0x300), 2})},
      {1, Lsn(0x300), kLast, Encoded(CommitEvent{6, Lsn(0x300), Lsn(0x340), 3})},
      {1, Lsn(0x400), kFirst, Encoded(BeginEvent{7, Lsn(0x400), 4})},
      {1, Lsn(0x400), kLast, Encoded(CommitEvent{8, Lsn(0x400), Lsn(0x440), 4})},
      // Positions that go backwards and wrap, payloads that are no event.
      {0, Lsn(0x10), kStandalone, std::string("\x01\x42", 2)},
      {1, Lsn(UINT64_MAX), kStandalone, std::string("junk")},
  };
  RoundTrip(enc, dec, recs);
  EXPECT_EQ(enc.records_derived(), 2u) << "only the last two Begins";
}

TEST(RecordBatchTest, UnknownBatchFormatIsRejectedWithOffset) {
  BatchDecoder dec;
  auto r = dec.Decode(Bytes(std::string("\x01\x00\x00", 3)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find("unknown batch format 1 (this build reads 2) at offset 0"),
            std::string::npos)
      << r.status().message();
  EXPECT_FALSE(dec.Decode(Bytes(std::string())).ok()) << "a batch without its format byte";
}

TEST(RecordBatchTest, UnknownEntryKindAndReservedBitsAreRejectedWithOffset) {
  struct Case {
    std::string bytes;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {std::string("\x02\x70", 2), "unknown entry kind 7 at offset 1"},
           {std::string("\x02\x80", 2), "reserved bit in tag 0x80 at offset 1"},
           {std::string("\x02\x08\x01", 3), "epoch without position in tag 0x08 at offset 1"},
           {std::string("\x02\x40\x00", 3), "commit entry before any begin entry at offset 1"},
           {std::string("\x02\x50\x49\x00", 4), "row change entry before any relation at offset 1"},
           {std::string("\x02\x30\xfe\xff\xff\xff\x3f\x00", 8), "xid delta"},
       }) {
    BatchDecoder dec;
    auto r = dec.Decode(Bytes(c.bytes));
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.status().code(), Code::kProtocol);
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
  }
}

TEST(RecordBatchTest, UnknownRowChangeTypeIsRejectedWithOffset) {
  BatchEncoder enc;
  BatchDecoder dec;
  RoundTrip(enc, dec, Txn(1, 0x100, 1, 1));
  auto r = dec.Decode(Bytes(std::string("\x02\x50\x58\x00", 4)));  // type 'X'
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown row change type 0x58 at offset 2"),
            std::string::npos)
      << r.status().message();
}

TEST(RecordBatchTest, TruncationInsideAnyEntryIsRejected) {
  // After a warm-up transaction every entry of the next one is derived or a
  // reference; a cut inside an entry must fail, a cut between entries is a
  // shorter batch.
  const std::vector<Rec> warmup = Txn(1, 0x100, 1, 1);
  BatchEncoder enc;
  BatchDecoder unused;
  RoundTrip(enc, unused, warmup);
  std::string batch;
  std::vector<size_t> ends = {1};  // the format byte alone is an empty batch
  for (const Rec& r : Txn(2, 0x200, 2, 2)) {
    enc.Append(r.epoch, r.lsn, r.flags, Bytes(r.payload), &batch);
    ends.push_back(batch.size());
  }
  for (size_t n = 1; n < batch.size(); ++n) {
    BatchEncoder e2;
    BatchDecoder dec;
    RoundTrip(e2, dec, warmup);
    auto r = dec.Decode(Bytes(batch.substr(0, n)));
    if (std::find(ends.begin(), ends.end(), n) != ends.end()) {
      EXPECT_TRUE(r.ok()) << "a cut between entries, at " << n;
    } else {
      EXPECT_FALSE(r.ok()) << "accepted a batch cut inside an entry, to " << n << " bytes";
    }
  }
}

TEST(RecordBatchTest, FlippedBitNeverGivesBackTheOriginalRecords) {
  const std::vector<Rec> warmup = Txn(1, 0x100, 1, 1);
  const std::vector<Rec> recs = Txn(2, 0x200, 2, 2);
  BatchEncoder enc;
  BatchDecoder unused;
  RoundTrip(enc, unused, warmup);
  const std::string batch = EncodeAll(enc, recs);
  for (size_t i = 0; i < batch.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = batch;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      BatchEncoder e2;
      BatchDecoder dec;
      RoundTrip(e2, dec, warmup);
      auto r = dec.Decode(Bytes(bad));
      if (!r.ok()) continue;
      bool same = r->size() == recs.size();
      for (size_t k = 0; same && k < recs.size(); ++k) same = (*r)[k] == AsRecord(recs[k]);
      EXPECT_FALSE(same) << "flipping bit " << bit << " of byte " << i << " went unnoticed";
    }
  }
}

}  // namespace
}  // namespace geosync
