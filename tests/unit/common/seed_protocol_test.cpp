// Seed* records: round trips, and every decoder refusing truncation, unknown
// versions, kinds and flags, and trailing bytes.
#include "common/seed_protocol.h"

#include <gtest/gtest.h>

namespace geosync {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

SeedManifest SampleManifest() {
  SeedManifest m;
  m.snapshot = "00000003-00000002-1";
  m.consistent = Position{3, Lsn(0x16B374D848)};
  m.pre_data = "CREATE TABLE public.t (id integer);\n";
  m.post_data = "ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n";
  SeedTable t;
  t.schema = "public";
  t.name = "pgbench_accounts";
  t.columns = {"aid", "bid", "abalance", "filler"};
  t.bytes = 67584000;
  t.rows_estimate = 500000;
  t.chunks = {{0, 4096}, {4096, 0}};
  m.tables.push_back(t);
  SeedTable empty;
  empty.schema = "app";
  empty.name = "e";
  empty.chunks = {{0, 0}};
  m.tables.push_back(empty);
  m.sequences = {{"public", "s", -5, true}, {"app", "t_id_seq", 1, false}};
  return m;
}

TEST(SeedProtocolTest, ManifestRoundTrips) {
  SeedManifest m = SampleManifest();
  std::string bytes;
  EncodeSeedManifest(m, &bytes);
  auto back = DecodeSeedManifest(Bytes(bytes));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
}

TEST(SeedProtocolTest, RequestRoundTripsBothKinds) {
  SeedRequest manifest;
  std::string a;
  EncodeSeedRequest(manifest, &a);
  auto back = DecodeSeedRequest(Bytes(a));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, manifest);

  SeedRequest chunk;
  chunk.kind = SeedRequestKind::kChunk;
  chunk.snapshot = "00000003-00000002-1";
  chunk.schema = "public";
  chunk.table = "t";
  chunk.columns = {"a", "b c"};
  chunk.start_page = 300;
  chunk.end_page = 600;
  std::string b;
  EncodeSeedRequest(chunk, &b);
  auto back2 = DecodeSeedRequest(Bytes(b));
  ASSERT_TRUE(back2.ok()) << back2.status().ToString();
  EXPECT_EQ(*back2, chunk);
}

TEST(SeedProtocolTest, DataChunkEndAndFinishRoundTrip) {
  std::string d;
  EncodeSeedData("1\tfoo\n2\tbar\n", &d);
  auto data = DecodeSeedData(Bytes(d));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data->data()), data->size()),
            "1\tfoo\n2\tbar\n");

  SeedChunkEnd end{12345, 987654321};
  std::string e;
  EncodeSeedChunkEnd(end, &e);
  auto end_back = DecodeSeedChunkEnd(Bytes(e));
  ASSERT_TRUE(end_back.ok());
  EXPECT_EQ(*end_back, end);

  SeedFinish fin{false, "COPY failed"};
  std::string f;
  EncodeSeedFinish(fin, &f);
  auto fin_back = DecodeSeedFinish(Bytes(f));
  ASSERT_TRUE(fin_back.ok());
  EXPECT_EQ(*fin_back, fin);
}

TEST(SeedProtocolTest, EveryTruncationOfAManifestIsRejected) {
  std::string bytes;
  EncodeSeedManifest(SampleManifest(), &bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = DecodeSeedManifest(Bytes(bytes.substr(0, n)));
    ASSERT_FALSE(r.ok()) << "manifest truncated to " << n << " bytes decoded";
    EXPECT_EQ(r.status().code(), Code::kProtocol);
  }
}

TEST(SeedProtocolTest, EveryTruncationOfARequestIsRejected) {
  SeedRequest chunk;
  chunk.kind = SeedRequestKind::kChunk;
  chunk.snapshot = "snap";
  chunk.schema = "public";
  chunk.table = "t";
  chunk.columns = {"a"};
  chunk.end_page = 200;
  std::string bytes;
  EncodeSeedRequest(chunk, &bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeSeedRequest(Bytes(bytes.substr(0, n))).ok()) << n << " bytes";
  }
}

TEST(SeedProtocolTest, UnknownVersionIsRejectedNamingOffsetZero) {
  std::string bytes;
  EncodeSeedChunkEnd({1, 2}, &bytes);
  bytes[0] = 2;
  auto r = DecodeSeedChunkEnd(Bytes(bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("offset 0"), std::string::npos) << r.status().ToString();
  std::string d;
  EncodeSeedData("x", &d);
  d[0] = 9;
  EXPECT_FALSE(DecodeSeedData(Bytes(d)).ok());
}

TEST(SeedProtocolTest, UnknownRequestKindIsRejected) {
  std::string bytes;
  EncodeSeedRequest(SeedRequest{}, &bytes);
  bytes[2] = 7;
  auto r = DecodeSeedRequest(Bytes(bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("kind 7"), std::string::npos) << r.status().ToString();
}

TEST(SeedProtocolTest, TableWithoutChunksIsRejected) {
  SeedManifest m;
  SeedTable t;
  t.schema = "s";
  t.name = "t";
  m.tables.push_back(t);  // no chunks: not a valid manifest
  std::string bytes;
  EncodeSeedManifest(m, &bytes);
  EXPECT_FALSE(DecodeSeedManifest(Bytes(bytes)).ok());
}

TEST(SeedProtocolTest, UnknownFlagBitsAndTrailingBytesAreRejected) {
  std::string f;
  EncodeSeedFinish({true, ""}, &f);
  f[2] = 0x03;
  EXPECT_FALSE(DecodeSeedFinish(Bytes(f)).ok()) << "finish flag bit 1 is unknown";
  std::string e;
  EncodeSeedChunkEnd({1, 2}, &e);
  e.push_back('\0');
  EXPECT_FALSE(DecodeSeedChunkEnd(Bytes(e)).ok()) << "a trailing byte";
  std::string wrong;
  EncodeSeedChunkEnd({1, 2}, &wrong);
  EXPECT_FALSE(DecodeSeedFinish(Bytes(wrong)).ok()) << "a chunk end is not a finish";
}

}  // namespace
}  // namespace geosync
