// The Event and control-message encodings: every alternative round-trips, the
// bytes are the documented ones, and the decoders reject every malformed
// input (unknown version/type/flags/kinds, truncation, trailing bytes,
// over-long varints, lengths past the end) with an error naming the offset.
#include "common/encoding.h"

#include <limits>

#include <gtest/gtest.h>

#include "common/control.h"

namespace geosync {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

std::string Encode(const Event& e) {
  std::string out;
  EncodeEvent(e, &out);
  return out;
}

std::span<const uint8_t> B(const std::string& s) { return AsBytes(s); }

Datum Text(std::string v) { return Datum{DatumKind::kText, std::move(v)}; }
Datum Bin(std::string v) { return Datum{DatumKind::kBinary, std::move(v)}; }
Datum Null() { return Datum{DatumKind::kNull, {}}; }
Datum Toast() { return Datum{DatumKind::kUnchangedToast, {}}; }

Relation AccountsRelation() {
  return Relation{16390,
                  "public",
                  "pgbench_accounts",
                  'd',
                  {{"aid", 23, -1, true},
                   {"bid", 23, -1, false},
                   {"abalance", 23, -1, false},
                   {"filler", 1042, 88, false}}};
}

// One of each Event alternative, and the edge cases of each.
std::vector<Event> SampleEvents() {
  std::vector<Event> events;
  events.push_back(BeginEvent{741, Lsn(0x16B374D848), 760000000000000});
  events.push_back(BeginEvent{0, Lsn(0), 0});
  events.push_back(BeginEvent{kU32Max, Lsn(kU64Max), kI64Min});
  events.push_back(CommitEvent{741, Lsn(0x16B374D848), Lsn(0x16B374D878), 760000000000000});
  events.push_back(CommitEvent{kU32Max, Lsn(kU64Max), Lsn(kU64Max), kI64Max});
  // end_lsn before commit_lsn never happens, but the encoding stays lossless.
  events.push_back(CommitEvent{1, Lsn(100), Lsn(3), -1});
  events.push_back(AccountsRelation());
  events.push_back(Relation{kU32Max, "", "", 'n', {}});
  events.push_back(
      Relation{1, "s", "t", 'f', {{"c", kU32Max, std::numeric_limits<int32_t>::min(), true}}});
  events.push_back(
      Relation{2, "s", "t", 'i', {{"", 0, std::numeric_limits<int32_t>::max(), false}}});
  events.push_back(
      RowChange{RowOp::kInsert, 16390, 0, {}, {Text("1"), Text("1"), Text("0"), Null()}});
  events.push_back(RowChange{RowOp::kInsert, 16390, 0, {}, {}});  // empty tuple
  events.push_back(
      RowChange{RowOp::kUpdate, 16390, 0, {}, {Text("7"), Toast(), Bin({"\0\xff", 2})}});
  events.push_back(RowChange{RowOp::kUpdate, 16390, 'K', {Text("7"), Null()}, {Text("8"), Null()}});
  events.push_back(RowChange{RowOp::kUpdate, 1, 'O', {}, {}});  // empty tuples both sides
  events.push_back(RowChange{RowOp::kDelete, 16390, 'K', {Text("7")}, {}});
  events.push_back(RowChange{RowOp::kDelete, kU32Max, 'O', {Bin(""), Text(""), Null()}, {}});
  events.push_back(TruncateEvent{false, false, {}});
  events.push_back(TruncateEvent{true, false, {16390}});
  events.push_back(TruncateEvent{false, true, {1, kU32Max}});
  events.push_back(TruncateEvent{true, true, {16390, 16391, 16392}});
  events.push_back(MessageEvent{false, Lsn(0x16B374D848), std::string(kHeartbeatPrefix), "{}"});
  events.push_back(MessageEvent{true, Lsn(kU64Max), "", ""});
  return events;
}

TEST(EncodingTest, EveryEventAlternativeRoundTrips) {
  for (const Event& e : SampleEvents()) {
    std::string bytes = Encode(e);
    auto decoded = DecodeEvent(B(bytes));
    ASSERT_TRUE(decoded.ok()) << "variant " << e.index() << ": " << decoded.status().ToString();
    EXPECT_EQ(*decoded, e) << "variant " << e.index() << " survives encode/decode";
  }
}

TEST(EncodingTest, BigValuesRoundTrip) {
  std::string all_bytes;
  for (int i = 0; i < (1 << 20); ++i) all_bytes.push_back(static_cast<char>(i * 7));
  Event e = RowChange{RowOp::kInsert, 1, 0, {}, {Bin(all_bytes), Text(std::string(300000, 'x'))}};
  std::string bytes = Encode(e);
  auto decoded = DecodeEvent(B(bytes));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, e);
  Event m = MessageEvent{true, Lsn(1), std::string(kDdlPrefix), std::string(200000, 'd')};
  EXPECT_EQ(*DecodeEvent(B(Encode(m))), m);
}

TEST(EncodingTest, BeginHasTheDocumentedBytes) {
  // xid 1, final_lsn 0x100 (varint 80 02), commit_time -1 (zigzag 1).
  std::string bytes = Encode(BeginEvent{1, Lsn(0x100), -1});
  EXPECT_EQ(bytes, std::string("\x01"
                               "B"
                               "\x01"
                               "\x80\x02"
                               "\x01"));
}

TEST(EncodingTest, InsertHasTheDocumentedBytes) {
  std::string bytes = Encode(RowChange{RowOp::kInsert, 300, 0, {}, {Text("ab"), Null(), Toast()}});
  // version, 'I', rel_oid 300 = ac 02, old_kind 0, 3 datums: 't' 2 "ab", 'n', 'u'.
  EXPECT_EQ(bytes, std::string("\x01"
                               "I"
                               "\xac\x02"
                               "\x00"
                               "\x03"
                               "t\x02"
                               "ab"
                               "n"
                               "u",
                               12));
}

TEST(EncodingTest, SmallValuesTakeOneByte) {
  std::string out;
  PutVarint(127, &out);
  EXPECT_EQ(out.size(), 1u);
  out.clear();
  PutVarint(kU64Max, &out);
  EXPECT_EQ(out.size(), kMaxVarintBytes);
  for (int64_t v :
       {int64_t{0}, int64_t{-1}, int64_t{1}, int64_t{-64}, int64_t{63}, kI64Min, kI64Max}) {
    EXPECT_EQ(ZigzagDecode(ZigzagEncode(v)), v);
  }
  EXPECT_EQ(ZigzagEncode(-1), 1u);
  EXPECT_EQ(ZigzagEncode(1), 2u);
}

TEST(EncodingTest, PgbenchTransactionIsCompact) {
  // The five changes of a TPC-B-like pgbench transaction, as pgoutput
  // sends them in text mode.
  std::vector<Event> txn = {
      BeginEvent{1234567, Lsn(0x3A000128), 760000000123456},
      RowChange{RowOp::kUpdate,
                16390,
                0,
                {},
                {Text("48213"), Text("1"), Text("-2931"), Text(std::string(84, ' '))}},
      RowChange{RowOp::kUpdate, 16387, 0, {}, {Text("7"), Text("1"), Text("-15522"), Null()}},
      RowChange{RowOp::kUpdate, 16384, 0, {}, {Text("1"), Text("-40134"), Null()}},
      RowChange{RowOp::kInsert,
                16393,
                0,
                {},
                {Text("7"), Text("1"), Text("48213"), Text("-2931"),
                 Text("2024-01-30 10:11:12.123456"), Null()}},
      CommitEvent{1234567, Lsn(0x3A000500), Lsn(0x3A000530), 760000000123456},
  };
  std::string batch;
  EncodeEvents(txn, &batch);
  const size_t datum_text = 5 + 1 + 5 + 84 + 1 + 1 + 6 + 1 + 6 + 1 + 1 + 5 + 5 + 26;
  // Beyond the datum text: Begin and Commit ~20 bytes each (half of it the
  // two commit timestamps), ~8 bytes per row change (length, version, type,
  // a 3-byte user-table OID, old_kind, count) and 2 bytes per datum.
  EXPECT_LE(batch.size(), datum_text + 105)
      << "a pgbench transaction encodes in " << batch.size() << " bytes";
  auto decoded = DecodeEvents(B(batch));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, txn);
}

// ---- Rejections -------------------------------------------------------------

void ExpectProtocolError(const Result<Event>& r, std::string_view needle) {
  ASSERT_FALSE(r.ok()) << "decoder accepted malformed bytes";
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message \"" << r.status().message() << "\" should contain \"" << needle << "\"";
}

TEST(EncodingTest, UnknownVersionIsRejected) {
  std::string bytes = Encode(BeginEvent{1, Lsn(2), 3});
  bytes[0] = 2;
  ExpectProtocolError(DecodeEvent(B(bytes)),
                      "unknown format version 2 (this build reads 1) at offset 0");
}

TEST(EncodingTest, UnknownRecordTypeIsRejected) {
  std::string bytes = Encode(BeginEvent{1, Lsn(2), 3});
  bytes[1] = 'Z';
  ExpectProtocolError(DecodeEvent(B(bytes)), "event decode: unknown record type 0x5a at offset 1");
}

TEST(EncodingTest, UnknownDatumKindNamesItsOffset) {
  std::string bytes = Encode(RowChange{RowOp::kInsert, 16384, 0, {}, {Text("abc"), Null()}});
  // 0 version, 1 type, 2-4 rel_oid, 5 old_kind, 6 count, 7-11 't' 3 "abc", 12 'n'.
  ASSERT_EQ(bytes[12], 'n');
  bytes[12] = 0x7a;
  auto r = DecodeEvent(B(bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "event decode: unknown datum kind 0x7a at offset 12");
}

TEST(EncodingTest, UnknownFlagBitsAreRejected) {
  std::string t = Encode(TruncateEvent{true, true, {1}});
  t[2] |= 0x04;
  ExpectProtocolError(DecodeEvent(B(t)), "unknown flag bits 0x04 at offset 2");
  std::string m = Encode(MessageEvent{true, Lsn(1), "p", "c"});
  m[2] |= 0x80;
  ExpectProtocolError(DecodeEvent(B(m)), "unknown flag bits 0x80 at offset 2");
  std::string r = Encode(Relation{1, "s", "t", 'd', {{"c", 23, -1, true}}});
  // 0 version, 1 type, 2 oid, 3-4 "s", 5-6 "t", 7 identity, 8 count, 9 column flags.
  r[9] |= 0x02;
  ExpectProtocolError(DecodeEvent(B(r)), "unknown flag bits 0x02 at offset 9");
}

TEST(EncodingTest, UnknownReplicaIdentityAndOldKindAreRejected) {
  std::string r = Encode(Relation{1, "s", "t", 'd', {}});
  r[7] = 'x';
  ExpectProtocolError(DecodeEvent(B(r)), "unknown replica identity 0x78 at offset 7");
  std::string u = Encode(RowChange{RowOp::kUpdate, 1, 0, {}, {}});
  u[3] = 'Q';
  ExpectProtocolError(DecodeEvent(B(u)), "unexpected old_kind 0x51 for 'U' at offset 3");
  std::string i = Encode(RowChange{RowOp::kInsert, 1, 0, {}, {}});
  i[3] = 'K';
  ExpectProtocolError(DecodeEvent(B(i)), "unexpected old_kind 0x4b for 'I' at offset 3");
}

TEST(EncodingTest, TruncationAtEveryBytePositionIsRejected) {
  for (const Event& e : SampleEvents()) {
    std::string bytes = Encode(e);
    for (size_t len = 0; len < bytes.size(); ++len) {
      auto r = DecodeEvent(B(bytes).first(len));
      ASSERT_FALSE(r.ok()) << "variant " << e.index() << " cut to " << len << " of " << bytes.size()
                           << " bytes was accepted";
      EXPECT_EQ(r.status().code(), Code::kProtocol);
    }
  }
}

TEST(EncodingTest, TrailingBytesAreRejected) {
  for (const Event& e : SampleEvents()) {
    std::string bytes = Encode(e) + '\0';
    auto r = DecodeEvent(B(bytes));
    ASSERT_FALSE(r.ok()) << "variant " << e.index() << " with a trailing byte was accepted";
    EXPECT_NE(
        r.status().message().find("1 trailing bytes at offset " + std::to_string(bytes.size() - 1)),
        std::string::npos)
        << r.status().message();
  }
}

TEST(EncodingTest, OverLongVarintIsRejected) {
  // A Begin whose xid varint has 11 continuation bytes.
  std::string bytes =
      "\x01"
      "B" +
      std::string(11, '\x80') + "\x01";
  ExpectProtocolError(DecodeEvent(B(bytes)), "over-long varint (xid) at offset 2");
  // Ten bytes whose last carries bits beyond 64.
  std::string lsn =
      "\x01"
      "B"
      "\x01" +
      std::string(9, '\xff') + "\x02" + "\x00";
  ExpectProtocolError(DecodeEvent(B(lsn)), "over-long varint (final_lsn) at offset 3");
}

TEST(EncodingTest, NonMinimalVarintIsRejected) {
  std::string bytes(
      "\x01"
      "B"
      "\x81\x00"
      "\x01\x01",
      6);  // xid 1 spelled in two bytes
  ExpectProtocolError(DecodeEvent(B(bytes)), "non-minimal varint (xid) at offset 2");
}

TEST(EncodingTest, ValueBeyond32BitsIsRejected) {
  std::string bytes =
      "\x01"
      "B"
      "\x80\x80\x80\x80\x10"
      "\x01\x01";  // xid 2^32
  ExpectProtocolError(DecodeEvent(B(bytes)), "xid 4294967296 does not fit in 32 bits at offset 2");
}

TEST(EncodingTest, LengthPastTheEndIsRejected) {
  std::string bytes = Encode(MessageEvent{false, Lsn(1), "abc", "payload"});
  // 0 version, 1 type, 2 flags, 3 lsn, 4 prefix length.
  bytes[4] = 0x7f;
  ExpectProtocolError(DecodeEvent(B(bytes)), "length 127 of prefix runs past the end");
}

TEST(EncodingTest, HugeCountIsRejectedBeforeAllocating) {
  // An insert claiming 2^60 datums must fail on the count, not in reserve().
  std::string bytes =
      "\x01"
      "I"
      "\x01" +
      std::string(1, '\0') + "\x80\x80\x80\x80\x80\x80\x80\x80\x10";
  ExpectProtocolError(DecodeEvent(B(bytes)),
                      "count 1152921504606846976 of new tuple runs past the end");
}

TEST(EncodingTest, NoSingleBitFlipCrashesTheDecoder) {
  // Under ASan/UBSan: any result is fine, reading out of bounds is not.
  for (const Event& e : SampleEvents()) {
    std::string bytes = Encode(e);
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string flipped = bytes;
        flipped[i] ^= static_cast<char>(1 << bit);
        auto r = DecodeEvent(B(flipped));
        if (!r.ok()) {
          EXPECT_EQ(r.status().code(), Code::kProtocol);
        }
      }
    }
  }
}

// ---- Batches ---------------------------------------------------------------

TEST(EncodingTest, BatchOfEveryEventRoundTrips) {
  std::vector<Event> events = SampleEvents();
  std::string batch;
  EncodeEvents(events, &batch);
  auto decoded = DecodeEvents(B(batch));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, events);
}

TEST(EncodingTest, AppendEventRecordBuildsTheSameBatch) {
  std::string one_by_one, at_once;
  for (const Event& e : SampleEvents()) AppendEventRecord(e, &one_by_one);
  EncodeEvents(SampleEvents(), &at_once);
  EXPECT_EQ(one_by_one, at_once);
  // A record longer than 127 bytes gets a two-byte length prefix.
  const Event long_message = MessageEvent{false, Lsn(1), "p", std::string(200, 'x')};
  const size_t record_size = Encode(long_message).size();
  ASSERT_GT(record_size, 127u);
  std::string big;
  AppendEventRecord(long_message, &big);
  EXPECT_EQ(big.size(), record_size + 2);
  EXPECT_EQ(static_cast<uint8_t>(big[0]), 0x80 | (record_size & 0x7f));
  EXPECT_EQ(static_cast<uint8_t>(big[1]), record_size >> 7);
  EXPECT_EQ(DecodeEvents(B(big))->size(), 1u);
}

TEST(EncodingTest, EmptyBatchDecodesToNoEvents) {
  auto decoded = DecodeEvents({});
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(EncodingTest, BatchTruncatedAtEveryBytePositionIsRejectedOrShorter) {
  std::string batch;
  EncodeEvents(SampleEvents(), &batch);
  size_t boundary = 0;
  std::vector<size_t> boundaries = {0};
  for (const Event& e : SampleEvents()) {
    std::string rec;
    AppendEventRecord(e, &rec);
    boundary += rec.size();
    boundaries.push_back(boundary);
  }
  for (size_t len = 0; len < batch.size(); ++len) {
    auto r = DecodeEvents(B(batch).first(len));
    bool at_boundary = std::find(boundaries.begin(), boundaries.end(), len) != boundaries.end();
    EXPECT_EQ(r.ok(), at_boundary) << "batch cut to " << len << " bytes";
  }
}

TEST(EncodingTest, BatchErrorOffsetsCountFromTheBatchStart) {
  std::string batch;
  AppendEventRecord(BeginEvent{1, Lsn(1), 1}, &batch);  // 1 + 5 bytes
  const size_t second = batch.size();
  AppendEventRecord(BeginEvent{1, Lsn(1), 1}, &batch);
  batch[second + 2] = 'Z';  // the second record's type byte
  auto r = DecodeEvents(B(batch));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "event decode: unknown record type 0x5a at offset " + std::to_string(second + 2));
}

TEST(EncodingTest, BatchRecordWithTrailingBytesIsRejected) {
  std::string rec = Encode(BeginEvent{1, Lsn(1), 1}) + 'x';
  std::string batch;
  PutLengthPrefixed(rec, &batch);
  ExpectProtocolError(Result<Event>(DecodeEvents(B(batch)).status()), "1 trailing bytes");
}

// ---- Control messages -------------------------------------------------------

template <typename T, typename Enc, typename Dec>
void ExpectRoundTrip(const T& m, Enc encode, Dec decode) {
  std::string bytes;
  encode(m, &bytes);
  auto decoded = decode(B(bytes));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_TRUE(*decoded == m);
  for (size_t len = 0; len < bytes.size(); ++len) {
    auto cut = decode(B(bytes).first(len));
    ASSERT_FALSE(cut.ok()) << "cut to " << len << " of " << bytes.size() << " bytes was accepted";
    EXPECT_EQ(cut.status().code(), Code::kProtocol);
  }
  auto trailing = decode(B(bytes + 'x'));
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("trailing"), std::string::npos);
}

TEST(ControlTest, HelloRoundTripsAndRejectsTruncation) {
  ExpectRoundTrip(Hello{kProtocolVersion, "c0ffee-cluster", "eu-west", 3,
                        Position{3, Lsn(0x16B374D848)}, kHelloAcceptsZstd | kHelloNeedsSeed},
                  EncodeHello, DecodeHello);
  ExpectRoundTrip(Hello{kU32Max, "", "", kU64Max, Position{kU64Max, Lsn(kU64Max)}, 0}, EncodeHello,
                  DecodeHello);
}

TEST(ControlTest, HelloReplyRoundTripsAndRejectsTruncation) {
  ExpectRoundTrip(HelloReply{true, "", "us-east", 4, Position{4, Lsn(0x3A000530)}},
                  EncodeHelloReply, DecodeHelloReply);
  ExpectRoundTrip(HelloReply{false, "cluster_id mismatch: replica says a, source is b", "", 0, {}},
                  EncodeHelloReply, DecodeHelloReply);
}

TEST(ControlTest, HeartbeatRoundTripsAndRejectsTruncation) {
  ExpectRoundTrip(Heartbeat{1706609472123456, Lsn(0x3A000600), Position{2, Lsn(0x3A000530)}},
                  EncodeHeartbeat, DecodeHeartbeat);
  ExpectRoundTrip(Heartbeat{kI64Min, Lsn(kU64Max), {}}, EncodeHeartbeat, DecodeHeartbeat);
}

TEST(ControlTest, AckRoundTripsAndRejectsTruncation) {
  ExpectRoundTrip(
      Ack{Position{2, Lsn(300)}, Position{2, Lsn(200)}, Position{1, Lsn(100)}, 760000000123456},
      EncodeAck, DecodeAck);
  ExpectRoundTrip(Ack{{}, {}, {}, kI64Max}, EncodeAck, DecodeAck);
}

TEST(ControlTest, ErrorMessageRoundTripsAndRebuildsTheStatus) {
  ExpectRoundTrip(ErrorMessage{Code::kFenced, "epoch 3 is older than 4"}, EncodeErrorMessage,
                  DecodeErrorMessage);
  ExpectRoundTrip(ErrorMessage{Code::kIo, ""}, EncodeErrorMessage, DecodeErrorMessage);
  auto m = ErrorMessage::FromStatus(Status::Fenced("epoch 3 is older than 4"));
  Status st = m.ToStatus();
  EXPECT_EQ(st.code(), Code::kFenced);
  EXPECT_EQ(st.message(), "peer reported: epoch 3 is older than 4");
}

TEST(ControlTest, UnknownHelloFlagIsRejected) {
  std::string bytes;
  EncodeHello(Hello{1, "c", "s", 1, {}, 0x04}, &bytes);
  auto r = DecodeHello(B(bytes));
  ASSERT_FALSE(r.ok());
  // 0 version, 1 type, 2 protocol, 3-4 "c", 5-6 "s", 7 epoch, 8-9 durable, 10 flags.
  EXPECT_EQ(r.status().message(), "hello decode: unknown flag bits 0x4 at offset 10");
}

TEST(ControlTest, UnknownHelloReplyFlagIsRejected) {
  std::string bytes;
  EncodeHelloReply(HelloReply{true, "", "s", 1, {}}, &bytes);
  bytes[2] = 0x05;
  auto r = DecodeHelloReply(B(bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "hello reply decode: unknown flag bits 0x04 at offset 2");
}

TEST(ControlTest, ARefusalCodeRoundTripsAndOnlyTravelsWithARefusal) {
  HelloReply refused{false, "unknown site \"lisbon\"", "frankfurt", 3, {}};
  refused.code = HelloRefusal::kUnknownSite;
  ExpectRoundTrip(refused, EncodeHelloReply, DecodeHelloReply);
  std::string bytes;
  EncodeHelloReply(refused, &bytes);
  EXPECT_EQ(bytes[2], 0x02) << "flags: refused, a code follows";
  EXPECT_EQ(bytes.back(), 3) << "the code is the last field";

  // Without a code (an accepted reply, or a reply to a protocol 2 replica)
  // the layout is protocol 2's.
  HelloReply legacy{false, "why", "frankfurt", 3, {}};
  std::string legacy_bytes;
  EncodeHelloReply(legacy, &legacy_bytes);
  EXPECT_EQ(legacy_bytes[2], 0x00);
  auto decoded = DecodeHelloReply(B(legacy_bytes));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->code, HelloRefusal::kUnspecified);
  HelloReply accepted{true, "", "frankfurt", 3, {}};
  accepted.code = HelloRefusal::kUnknownSite;  // ignored: never sent with an acceptance
  std::string accepted_bytes;
  EncodeHelloReply(accepted, &accepted_bytes);
  EXPECT_EQ(accepted_bytes[2], 0x01);
}

TEST(ControlTest, AnUnknownRefusalCodeOrACodeOnAnAcceptanceIsRejected) {
  HelloReply refused{false, "", "s", 1, {}};
  refused.code = HelloRefusal::kNoSeeds;
  std::string bytes;
  EncodeHelloReply(refused, &bytes);
  for (uint8_t code : {uint8_t{0}, uint8_t{kMaxHelloRefusal + 1}}) {
    std::string bad = bytes;
    bad.back() = static_cast<char>(code);
    auto r = DecodeHelloReply(B(bad));
    ASSERT_FALSE(r.ok()) << int{code};
    EXPECT_EQ(r.status().message(), "hello reply decode: unknown refusal code " +
                                        std::to_string(code) + " at offset " +
                                        std::to_string(bad.size() - 1));
  }
  std::string both = bytes;
  both[2] = 0x03;
  auto r = DecodeHelloReply(B(both));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "hello reply decode: an accepted reply carries a refusal code at offset 2");
}

TEST(ControlTest, UnknownErrorCodeIsRejected) {
  for (uint8_t code : {uint8_t{0}, uint8_t{11}}) {
    std::string bytes =
        "\x01"
        "E" +
        std::string(1, static_cast<char>(code)) + "\x00";
    bytes.resize(4);
    auto r = DecodeErrorMessage(B(bytes));
    ASSERT_FALSE(r.ok()) << "code " << int{code};
    EXPECT_EQ(r.status().message(),
              "error decode: unknown error code " + std::to_string(code) + " at offset 2");
  }
}

TEST(ControlTest, ARecordOfAnotherTypeIsRejected) {
  std::string hello;
  EncodeHello(Hello{}, &hello);
  auto r = DecodeAck(B(hello));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "ack decode: unexpected record type 0x48 (expected 0x41) at offset 1");
  std::string begin = Encode(BeginEvent{});
  EXPECT_FALSE(DecodeHeartbeat(B(begin)).ok());
}

TEST(ControlTest, TruncatedPositionNamesTheField) {
  std::string bytes;
  EncodeAck(Ack{}, &bytes);
  // 0 version, 1 type, 2-3 received, 4 durable.epoch, 5 durable.lsn.
  auto r = DecodeAck(B(bytes).first(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "ack decode: truncated varint (durable.lsn) at offset 5");
}

TEST(ControlTest, UnknownVersionIsRejected) {
  std::string bytes;
  EncodeAck(Ack{}, &bytes);
  bytes[0] = 0;
  auto r = DecodeAck(B(bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "ack decode: unknown format version 0 (this build reads 1) at offset 0");
}

}  // namespace
}  // namespace geosync
