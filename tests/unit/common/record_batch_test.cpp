// Data frame batches: records round-trip verbatim, relation descriptors are
// sent once per connection, and malformed batches are rejected with offsets.
#include "common/record_batch.h"

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

TEST(RecordBatchTest, UnknownEntryKindAndFlagsAreRejectedWithOffset) {
  BatchDecoder dec;
  std::string bad = "\x07";
  auto r = dec.Decode(Bytes(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown entry kind 7 at offset 0"), std::string::npos)
      << r.status().message();
  std::string flags("\x00\x01\x0a\x80", 4);
  auto f = dec.Decode(Bytes(flags));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("unknown record flags"), std::string::npos);
}

TEST(RecordBatchTest, TruncationAtEveryByteIsRejected) {
  BatchEncoder enc;
  std::string batch;
  std::string rec = Encoded(BeginEvent{.xid = 1, .final_lsn = Lsn(99), .commit_time = 1});
  enc.Append(1, Lsn(99), 0x03, Bytes(rec), &batch);
  for (size_t n = 1; n < batch.size(); ++n) {
    BatchDecoder dec;
    auto r = dec.Decode(Bytes(batch.substr(0, n)));
    EXPECT_FALSE(r.ok()) << "accepted a batch cut to " << n << " bytes";
  }
}

}  // namespace
}  // namespace geosync
