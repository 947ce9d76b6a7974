// pgoutput decoding and encoding: every message type round-trips, hand-written
// byte arrays (from the documented layout, not from the encoder) pin the two to
// PostgreSQL's format, and every malformed input is a Protocol error naming the
// message and the offset.
#include "common/pgoutput.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace geosync {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Bytes = std::vector<uint8_t>;

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
// A NUL-terminated pgoutput String.
Bytes S(std::string_view s) {
  Bytes b(s.begin(), s.end());
  b.push_back(0);
  return b;
}

constexpr PgOutputOptions kV1{1, false, false};
constexpr PgOutputOptions kV1Binary{1, true, false};
constexpr PgOutputOptions kV2{2, false, false};
constexpr PgOutputOptions kV2Streamed{2, false, true};
constexpr PgOutputOptions kV2StreamedBinary{2, true, true};

Datum Text(std::string v) { return {DatumKind::kText, std::move(v)}; }
Datum Bin(std::string v) { return {DatumKind::kBinary, std::move(v)}; }
Datum Null() { return {DatumKind::kNull, ""}; }
Datum Toast() { return {DatumKind::kUnchangedToast, ""}; }

Relation UsersRelation() {
  return {16384, "public", "users", 'd', {{"id", 23, -1, true}, {"name", 25, -1, false}}};
}

struct Case {
  std::string name;
  PgOutputMessage message;
  PgOutputOptions opts;
};

std::vector<Case> AllCases() {
  std::vector<Case> c;
  auto add = [&](std::string name, PgOutputBody body, PgOutputOptions opts,
                 std::optional<uint32_t> xid = std::nullopt) {
    c.push_back({std::move(name), PgOutputMessage{std::move(body), xid}, opts});
  };
  add("Begin", BeginEvent{742, Lsn(0x16B374D848), 733'000'000'000'000}, kV1);
  add("Commit", CommitEvent{0, Lsn(0x16B374D848), Lsn(0x16B374D880), -5}, kV1);
  add("Origin", OriginMessage{Lsn(0x10), "pg_16385"}, kV1);
  add("OriginInStreamedBlock", OriginMessage{Lsn(0x20), "site_b"}, kV2Streamed);
  add("Relation", UsersRelation(), kV1);
  Relation full{1, "", "t", 'f', {{"a", 1043, 36, false}}};
  add("RelationFullIdentity", full, kV2);
  add("RelationNoColumns", Relation{2, "s", "empty", 'n', {}}, kV1);
  add("RelationIndexIdentity", Relation{3, "s", "i", 'i', {{"k", 20, -1, true}}}, kV1);
  add("Type", TypeMessage{90001, "public", "mood"}, kV1);
  add("Insert", RowChange{RowOp::kInsert, 16384, 0, {}, {Text("7"), Null()}}, kV1);
  add("InsertEmptyText", RowChange{RowOp::kInsert, 9, 0, {}, {Text("")}}, kV1);
  add("InsertNoColumns", RowChange{RowOp::kInsert, 9, 0, {}, {}}, kV1);
  add("InsertBinary",
      RowChange{RowOp::kInsert, 16384, 0, {}, {Bin(std::string("\0\0\0\7", 4)), Text("x")}},
      kV1Binary);
  add("UpdateWithoutOldTuple", RowChange{RowOp::kUpdate, 16384, 0, {}, {Text("7"), Toast()}}, kV1);
  add("UpdateWithOldKey",
      RowChange{RowOp::kUpdate, 16384, 'K', {Text("7"), Null()}, {Text("8"), Text("b")}}, kV1);
  add("UpdateWithOldRow",
      RowChange{RowOp::kUpdate, 16384, 'O', {Text("7"), Text("a")}, {Text("7"), Toast()}}, kV2);
  add("DeleteKey", RowChange{RowOp::kDelete, 16384, 'K', {Text("7"), Null()}, {}}, kV1);
  add("DeleteFullRow", RowChange{RowOp::kDelete, 16384, 'O', {Text("7"), Text("a")}, {}}, kV1);
  add("TruncateCascadeRestart", TruncateEvent{true, true, {16384, 16390, 4000000000u}}, kV1);
  add("TruncatePlain", TruncateEvent{false, false, {1}}, kV1);
  add("TruncateRestartOnly", TruncateEvent{false, true, {}}, kV1);
  add("MessageTransactional",
      MessageEvent{true, Lsn(0x99), "geosync.ddl", "CREATE TABLE t (a int)"}, kV1);
  add("MessageNonTransactional",
      MessageEvent{false, Lsn(0x100), "geosync.heartbeat", std::string("\0\x01\xff", 3)}, kV2);
  add("MessageEmptyPrefixAndContent", MessageEvent{false, Lsn(1), "", ""}, kV1);
  // Protocol 2 streaming: the streamed xid after the type byte.
  add("StreamStartFirst", StreamStart{1000, true}, kV2);
  add("StreamStartLater", StreamStart{1000, false}, kV2);
  add("StreamedRelation", UsersRelation(), kV2Streamed, 1000);
  add("StreamedType", TypeMessage{90001, "", "int4range"}, kV2Streamed, 1000);
  add("StreamedInsert", RowChange{RowOp::kInsert, 16384, 0, {}, {Text("1"), Text("a")}},
      kV2Streamed, 1000);
  add("StreamedInsertBinary", RowChange{RowOp::kInsert, 16384, 0, {}, {Bin("\x01"), Null()}},
      kV2StreamedBinary, 1001);
  add("StreamedUpdate",
      RowChange{RowOp::kUpdate, 16384, 'K', {Text("1"), Null()}, {Text("2"), Toast()}}, kV2Streamed,
      0xFFFFFFFF);
  add("StreamedDelete", RowChange{RowOp::kDelete, 16384, 'O', {Text("1"), Text("a")}, {}},
      kV2Streamed, 1000);
  add("StreamedTruncate", TruncateEvent{true, false, {16384}}, kV2Streamed, 1000);
  add("StreamedMessage", MessageEvent{true, Lsn(0x500), "geosync.marker", "m1"}, kV2Streamed, 1000);
  add("StreamStop", StreamStop{}, kV2Streamed);
  add("StreamCommit", StreamCommit{1000, Lsn(0x600), Lsn(0x630), 12345}, kV2);
  add("StreamAbortTopLevel", StreamAbort{1000, 1000}, kV2);
  add("StreamAbortSubxact", StreamAbort{1000, 1003}, kV2);
  return c;
}

// The offset an error message names, or -1.
long NamedOffset(const Status& status) {
  constexpr std::string_view kMarker = " at offset ";
  const std::string& text = status.message();
  size_t at = text.rfind(kMarker);
  if (at == std::string::npos) return -1;
  std::string digits = text.substr(at + kMarker.size());
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stol(digits);
}

TEST(PgOutputTest, EveryMessageTypeRoundTrips) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    Bytes bytes = EncodePgOutput(c.message, c.opts);
    auto decoded = DecodePgOutput(bytes, c.opts);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, c.message);
    EXPECT_EQ(EncodePgOutput(*decoded, c.opts), bytes);
  }
}

TEST(PgOutputTest, BeginMatchesDocumentedLayout) {
  Bytes bytes = {'B',  0x00, 0x00, 0x00, 0x16, 0xB3, 0x74, 0xD8, 0x48,  // final LSN
                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,        // commit time 256
                 0x00, 0x00, 0x02, 0xE6};                               // xid 742
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(BeginEvent{742, Lsn(0x16B374D848), 256}));
  EXPECT_FALSE(m->streamed_xid.has_value());
  EXPECT_EQ(EncodePgOutput(*m, kV1), bytes);
}

TEST(PgOutputTest, CommitMatchesDocumentedLayout) {
  Bytes bytes = {'C',  0x00,                                       // flags
                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,   // commit LSN 0/100
                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x28,   // end LSN 0/128
                 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};  // commit time -1
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(CommitEvent{0, Lsn(0x100), Lsn(0x128), -1}));
  EXPECT_EQ(EncodePgOutput(*m, kV1), bytes);
}

Bytes UsersRelationBytes() {
  return Bytes{'R', 0x00, 0x00, 0x40, 0x00} + S("public") + S("users") +
         Bytes{'d', 0x00, 0x02,  // identity, 2 columns
               0x01} +
         S("id") + Bytes{0x00, 0x00, 0x00, 0x17, 0xFF, 0xFF, 0xFF, 0xFF} + Bytes{0x00} + S("name") +
         Bytes{0x00, 0x00, 0x00, 0x19, 0xFF, 0xFF, 0xFF, 0xFF};
}

TEST(PgOutputTest, RelationMatchesDocumentedLayoutWithKeyFlag) {
  Bytes bytes = UsersRelationBytes();
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(UsersRelation()));
  EXPECT_EQ(EncodePgOutput(*m, kV1), bytes);
}

TEST(PgOutputTest, InsertMatchesDocumentedLayout) {
  Bytes bytes = {'I', 0x00, 0x00, 0x40, 0x00, 'N', 0x00, 0x02,  // oid, 'N', 2 columns
                 't', 0x00, 0x00, 0x00, 0x01, '7',              // text "7"
                 'n'};                                          // null
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(RowChange{RowOp::kInsert, 16384, 0, {}, {Text("7"), Null()}}));
  EXPECT_EQ(EncodePgOutput(*m, kV1), bytes);
}

TEST(PgOutputTest, StreamedUpdateCarriesXidBeforeRelationOid) {
  Bytes bytes = {'U',  0x00, 0x00, 0x03, 0xE8,  // streamed xid 1000
                 0x00, 0x00, 0x40, 0x00,        // relation 16384
                 'K',  0x00, 0x02, 't',  0x00, 0x00, 0x00, 0x01, '7', 'n',
                 'N',  0x00, 0x02, 't',  0x00, 0x00, 0x00, 0x01, '8', 'u'};
  auto m = DecodePgOutput(bytes, kV2Streamed);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->streamed_xid, 1000u);
  EXPECT_EQ(m->body, PgOutputBody(RowChange{
                         RowOp::kUpdate, 16384, 'K', {Text("7"), Null()}, {Text("8"), Toast()}}));
  EXPECT_EQ(EncodePgOutput(*m, kV2Streamed), bytes);
}

TEST(PgOutputTest, TruncateMatchesDocumentedLayout) {
  Bytes bytes = {'T',  0x00, 0x00, 0x00, 0x02, 0x03,  // 2 relations, cascade|restart
                 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x40, 0x06};
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(TruncateEvent{true, true, {16384, 16390}}));
}

TEST(PgOutputTest, MessageMatchesDocumentedLayout) {
  Bytes bytes = Bytes{'M', 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x99} +
                S("geosync.heartbeat") + Bytes{0x00, 0x00, 0x00, 0x02, 'h', 'i'};
  auto m = DecodePgOutput(bytes, kV1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->body, PgOutputBody(MessageEvent{true, Lsn(0x99), "geosync.heartbeat", "hi"}));
}

TEST(PgOutputTest, StreamControlMessagesMatchDocumentedLayout) {
  auto start = DecodePgOutput(Bytes{'S', 0x00, 0x00, 0x03, 0xE8, 0x01}, kV2);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(start->body, PgOutputBody(StreamStart{1000, true}));
  auto abort = DecodePgOutput(Bytes{'A', 0x00, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0xEB}, kV2);
  ASSERT_TRUE(abort.ok()) << abort.status().ToString();
  EXPECT_EQ(abort->body, PgOutputBody(StreamAbort{1000, 1003}));
  auto commit = DecodePgOutput(Bytes{'c', 0x00, 0x00, 0x03, 0xE8, 0x00,               // xid, flags
                                     0,   0,    0,    0,    0,    0,    0x06, 0x00,   // commit LSN
                                     0,   0,    0,    0,    0,    0,    0x06, 0x30,   // end LSN
                                     0,   0,    0,    0,    0,    0,    0x30, 0x39},  // time 12345
                               kV2);
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_EQ(commit->body, PgOutputBody(StreamCommit{1000, Lsn(0x600), Lsn(0x630), 12345}));
  auto stop = DecodePgOutput(Bytes{'E'}, kV2Streamed);
  ASSERT_TRUE(stop.ok()) << stop.status().ToString();
  EXPECT_TRUE(std::holds_alternative<StreamStop>(stop->body));
}

// --- error paths ---

Status DecodeError(const Bytes& bytes, const PgOutputOptions& opts) {
  auto m = DecodePgOutput(bytes, opts);
  if (m.ok()) return Status::Ok();
  return m.status();
}

TEST(PgOutputTest, TruncationAtEveryPositionOfEveryMessageNamesTypeAndOffset) {
  for (const Case& c : AllCases()) {
    Bytes bytes = EncodePgOutput(c.message, c.opts);
    std::string prefix = "pgoutput " + std::string(PgOutputMessageName(c.message.body)) + ": ";
    for (size_t len = 1; len < bytes.size(); ++len) {
      SCOPED_TRACE(c.name + " cut to " + std::to_string(len) + " bytes");
      Status st = DecodeError(Bytes(bytes.begin(), bytes.begin() + len), c.opts);
      ASSERT_FALSE(st.ok());
      EXPECT_EQ(st.code(), Code::kProtocol);
      EXPECT_THAT(st.message(), StartsWith(prefix + "truncated "));
      long at = NamedOffset(st);
      EXPECT_GE(at, 1);
      EXPECT_LE(at, static_cast<long>(len));
    }
  }
}

TEST(PgOutputTest, TrailingBytesAfterAnyMessageAreRejected) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    Bytes bytes = EncodePgOutput(c.message, c.opts);
    size_t size = bytes.size();
    bytes.push_back(0);
    bytes.push_back(0x42);
    Status st = DecodeError(bytes, c.opts);
    EXPECT_EQ(st.code(), Code::kProtocol);
    EXPECT_THAT(st.message(), HasSubstr("2 trailing bytes at offset " + std::to_string(size)));
  }
}

Bytes ThreeColumnInsert() {
  return {'I', 0x00, 0x00, 0x40, 0x00, 'N', 0x00, 0x03,  // offsets 0..7
          't', 0x00, 0x00, 0x00, 0x01, 'a',              // column 1: 8..13
          'n',                                           // column 2: 14
          't', 0x00, 0x00, 0x00, 0x03, 'a', 'b',  'c'};  // column 3: 15..22
}

TEST(PgOutputTest, TruncatedInsertTupleNamesColumnAndOffset) {
  Bytes full = ThreeColumnInsert();
  auto cut = [&](size_t n) { return DecodeError(Bytes(full.begin(), full.begin() + n), kV1); };
  EXPECT_EQ(cut(15).message(), "pgoutput Insert: truncated tuple column 3 at offset 15");
  EXPECT_EQ(cut(17).message(), "pgoutput Insert: truncated tuple column 3 length at offset 16");
  EXPECT_EQ(cut(21).message(), "pgoutput Insert: truncated tuple column 3 value at offset 20");
  EXPECT_EQ(cut(7).message(), "pgoutput Insert: truncated tuple column count at offset 6");
  EXPECT_EQ(cut(3).message(), "pgoutput Insert: truncated relation OID at offset 1");
  EXPECT_TRUE(DecodePgOutput(full, kV1).ok());
}

TEST(PgOutputTest, HugeLengthFieldIsTruncationNotAnAllocation) {
  Bytes bytes = ThreeColumnInsert();
  bytes[16] = 0x7F;
  bytes[17] = 0xFF;
  bytes[18] = 0xFF;
  bytes[19] = 0xFF;
  EXPECT_EQ(DecodeError(bytes, kV1).message(),
            "pgoutput Insert: truncated tuple column 3 value at offset 20");
}

TEST(PgOutputTest, NegativeLengthsAreRejected) {
  Bytes text = ThreeColumnInsert();
  text[16] = 0xFF;
  EXPECT_EQ(DecodeError(text, kV1).message(),
            "pgoutput Insert: negative length -16777213 in tuple column 3 at offset 16");

  Bytes ncols = ThreeColumnInsert();
  ncols[6] = 0x80;
  EXPECT_THAT(DecodeError(ncols, kV1).message(),
              HasSubstr("negative tuple column count -32765 at offset 6"));

  Bytes content = Bytes{'M', 0x00, 0, 0, 0, 0, 0, 0, 0, 1} + S("p") + Bytes{0xFF, 0xFF, 0xFF, 0xFF};
  EXPECT_EQ(DecodeError(content, kV1).message(),
            "pgoutput Message: negative content length -1 at offset 12");

  Bytes nrels = {'T', 0xFF, 0xFF, 0xFF, 0xFE, 0x00};
  EXPECT_EQ(DecodeError(nrels, kV1).message(),
            "pgoutput Truncate: negative relation count -2 at offset 1");

  Bytes rel = UsersRelationBytes();
  rel[19] = 0xFF;  // high byte of the column count, after "R" oid "public\0" "users\0" 'd'
  EXPECT_THAT(DecodeError(rel, kV1).message(), HasSubstr("negative column count"));
}

TEST(PgOutputTest, EmptyAndUnknownMessageTypesAreRejected) {
  EXPECT_EQ(DecodeError({}, kV1).message(), "pgoutput: empty message at offset 0");
  Status st = DecodeError({'Z', 0, 0}, kV1);
  EXPECT_EQ(st.code(), Code::kProtocol);
  EXPECT_EQ(st.message(), "pgoutput: unknown message type 0x5a at offset 0");
  EXPECT_EQ(DecodeError({'w'}, kV2).message(), "pgoutput: unknown message type 0x77 at offset 0");
}

TEST(PgOutputTest, CommitWithNonZeroFlagsIsRejected) {
  Bytes bytes = EncodePgOutput({CommitEvent{0, Lsn(1), Lsn(2), 3}, {}}, kV1);
  bytes[1] = 0x01;
  EXPECT_EQ(DecodeError(bytes, kV1).message(), "pgoutput Commit: unknown flags 0x01 at offset 1");
  Bytes stream = EncodePgOutput({StreamCommit{5, Lsn(1), Lsn(2), 3}, {}}, kV2);
  stream[5] = 0x80;
  EXPECT_EQ(DecodeError(stream, kV2).message(),
            "pgoutput Stream Commit: unknown flags 0x80 at offset 5");
}

TEST(PgOutputTest, UnknownFlagBitsAreRejected) {
  Bytes rel = UsersRelationBytes();
  rel[21] = 0x03;  // first column's flags: key bit plus an undefined bit
  EXPECT_EQ(DecodeError(rel, kV1).message(),
            "pgoutput Relation: unknown flags 0x03 on column 1 at offset 21");

  Bytes truncate = {'T', 0x00, 0x00, 0x00, 0x00, 0x04};
  EXPECT_EQ(DecodeError(truncate, kV1).message(),
            "pgoutput Truncate: unknown options 0x04 at offset 5");

  Bytes message = Bytes{'M', 0x02, 0, 0, 0, 0, 0, 0, 0, 1} + S("p") + Bytes{0, 0, 0, 0};
  EXPECT_EQ(DecodeError(message, kV1).message(),
            "pgoutput Message: unknown flags 0x02 at offset 1");

  Bytes start = {'S', 0x00, 0x00, 0x03, 0xE8, 0x02};
  EXPECT_EQ(DecodeError(start, kV2).message(),
            "pgoutput Stream Start: first-segment flag must be 0 or 1, got 2 at offset 5");
}

TEST(PgOutputTest, UnknownReplicaIdentityIsRejected) {
  Bytes rel = UsersRelationBytes();
  rel[18] = 'x';
  EXPECT_EQ(DecodeError(rel, kV1).message(),
            "pgoutput Relation: unknown replica identity 0x78 at offset 18");
}

TEST(PgOutputTest, BinaryColumnIsRejectedUnlessBinaryOptionIsOn) {
  Bytes bytes = ThreeColumnInsert();
  bytes[15] = 'b';
  EXPECT_EQ(DecodeError(bytes, kV1).message(),
            "pgoutput Insert: binary tuple column 3 but the binary option is off at offset 15");
  auto m = DecodePgOutput(bytes, kV1Binary);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(std::get<RowChange>(m->body).new_tuple[2], Bin("abc"));
}

TEST(PgOutputTest, UnknownTupleColumnKindIsRejected) {
  Bytes bytes = ThreeColumnInsert();
  bytes[14] = 'x';
  EXPECT_EQ(DecodeError(bytes, kV1).message(),
            "pgoutput Insert: unknown kind 0x78 in tuple column 2 at offset 14");
}

TEST(PgOutputTest, TupleMarkersOutsideTheDocumentedSetAreRejected) {
  Bytes insert = ThreeColumnInsert();
  insert[5] = 'K';
  EXPECT_EQ(DecodeError(insert, kV1).message(),
            "pgoutput Insert: tuple marker is 0x4b, expected one of 'N' at offset 5");

  Bytes del = {'D', 0x00, 0x00, 0x40, 0x00, 'N', 0x00, 0x00};
  EXPECT_EQ(DecodeError(del, kV1).message(),
            "pgoutput Delete: tuple marker is 0x4e, expected one of 'KO' at offset 5");

  Bytes update = {'U', 0x00, 0x00, 0x40, 0x00, 'X', 0x00, 0x00};
  EXPECT_THAT(DecodeError(update, kV1).message(), HasSubstr("expected one of 'KON' at offset 5"));

  Bytes twice_old = {'U', 0x00, 0x00, 0x40, 0x00, 'K', 0x00, 0x00, 'O', 0x00, 0x00};
  EXPECT_EQ(DecodeError(twice_old, kV1).message(),
            "pgoutput Update: new tuple marker is 0x4f, expected one of 'N' at offset 8");

  Bytes zero = {'U', 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00};
  EXPECT_THAT(DecodeError(zero, kV1).message(), HasSubstr("tuple marker is 0x00"));
}

TEST(PgOutputTest, StreamMessagesNeedProtocolVersion2) {
  for (Bytes bytes : {Bytes{'S', 0, 0, 0, 1, 1}, Bytes{'c'}, Bytes{'A', 0, 0, 0, 1, 0, 0, 0, 1}}) {
    Status st = DecodeError(bytes, kV1);
    EXPECT_EQ(st.code(), Code::kProtocol);
    EXPECT_THAT(st.message(), HasSubstr("needs protocol version 2, the stream uses version 1"));
  }
}

TEST(PgOutputTest, MessagesOutOfPlaceForTheStreamingStateAreRejected) {
  Bytes begin = EncodePgOutput({BeginEvent{1, Lsn(2), 3}, {}}, kV2);
  EXPECT_EQ(DecodeError(begin, kV2Streamed).message(),
            "pgoutput Begin: not allowed inside a streamed block (between Stream Start and Stop) "
            "at offset 0");
  Bytes start = EncodePgOutput({StreamStart{1, false}, {}}, kV2);
  EXPECT_THAT(DecodeError(start, kV2Streamed).message(), HasSubstr("inside a streamed block"));
  Bytes commit = EncodePgOutput({StreamCommit{1, Lsn(1), Lsn(2), 3}, {}}, kV2);
  EXPECT_THAT(DecodeError(commit, kV2Streamed).message(), HasSubstr("inside a streamed block"));
  EXPECT_EQ(DecodeError({'E'}, kV2).message(),
            "pgoutput Stream Stop: not allowed outside a streamed block (without a Stream Start) "
            "at offset 0");
}

TEST(PgOutputTest, NonTransactionalMessageInsideStreamedBlockIsRejected) {
  Bytes bytes =
      Bytes{'M', 0x00, 0x00, 0x03, 0xE8, 0x00, 0, 0, 0, 0, 0, 0, 0, 1} + S("p") + Bytes{0, 0, 0, 0};
  EXPECT_EQ(DecodeError(bytes, kV2Streamed).message(),
            "pgoutput Message: non-transactional message inside a streamed block at offset 5");
}

TEST(PgOutputTest, StreamedXidIsOnlyReadInsideStreamedBlocks) {
  Bytes plain = {'T', 0x00, 0x00, 0x00, 0x00, 0x00};  // no relations
  auto outside = DecodePgOutput(plain, kV2);
  ASSERT_TRUE(outside.ok()) << outside.status().ToString();
  EXPECT_FALSE(outside->streamed_xid.has_value());
  // The same bytes inside a block: the first four are the xid, then too few remain.
  EXPECT_EQ(DecodeError(plain, kV2Streamed).message(),
            "pgoutput Truncate: truncated relation count at offset 5");
  EXPECT_EQ(DecodeError({'I', 0x00, 0x00}, kV2Streamed).message(),
            "pgoutput Insert: truncated streamed xid at offset 1");
}

TEST(PgOutputTest, UnsupportedOptionsAreInvalidArgument) {
  Bytes begin = EncodePgOutput({BeginEvent{1, Lsn(2), 3}, {}}, kV1);
  EXPECT_EQ(DecodeError(begin, {3, false, false}).code(), Code::kInvalidArgument);
  EXPECT_EQ(DecodeError(begin, {0, false, false}).code(), Code::kInvalidArgument);
  EXPECT_EQ(DecodeError(begin, {1, false, true}).code(), Code::kInvalidArgument);
}

TEST(PgOutputTest, StringWithoutTerminatorIsTruncation) {
  Bytes bytes = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 's', 'i', 't', 'e'};
  EXPECT_EQ(DecodeError(bytes, kV1).message(),
            "pgoutput Origin: truncated origin name at offset 9");
}

// --- relation cache ---

TEST(RelationCacheTest, UnknownOidLooksUpAsNull) {
  RelationCache cache;
  EXPECT_EQ(cache.Lookup(16384), nullptr);
  cache.Update(UsersRelation());
  EXPECT_EQ(cache.Lookup(16385), nullptr);
  ASSERT_NE(cache.Lookup(16384), nullptr);
  EXPECT_EQ(*cache.Lookup(16384), UsersRelation());
}

TEST(RelationCacheTest, NewRelationMessageReplacesCachedSchema) {
  RelationCache cache;
  cache.Update(UsersRelation());
  Relation altered = UsersRelation();
  altered.columns.push_back({"email", 25, -1, false});
  cache.Update(altered);
  EXPECT_EQ(cache.size(), 1u);
  ASSERT_NE(cache.Lookup(16384), nullptr);
  EXPECT_EQ(cache.Lookup(16384)->columns.size(), 3u) << "the ALTERed schema replaced the old one";
  cache.Clear();
  EXPECT_EQ(cache.Lookup(16384), nullptr);
}

TEST(RelationCacheTest, DecodedStreamValidatesAgainstTheRelationItDescribed) {
  RelationCache cache;
  auto rel = DecodePgOutput(UsersRelationBytes(), kV1);
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  cache.Update(std::get<Relation>(rel->body));
  Bytes two_columns = {'I', 0x00, 0x00, 0x40, 0x00, 'N', 0x00, 0x02, 'n', 'n'};
  auto ok = DecodePgOutput(two_columns, kV1);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ValidateRowChange(std::get<RowChange>(ok->body), cache).ok());

  auto three = DecodePgOutput(ThreeColumnInsert(), kV1);
  ASSERT_TRUE(three.ok());
  Status st = ValidateRowChange(std::get<RowChange>(three->body), cache);
  EXPECT_EQ(st.code(), Code::kProtocol);
  EXPECT_EQ(st.message(),
            "pgoutput Insert: relation public.users (OID 16384) has 2 columns but the new tuple "
            "has 3");
}

TEST(RelationCacheTest, OldTupleArityIsCheckedForUpdatesAndDeletes) {
  RelationCache cache;
  cache.Update(UsersRelation());
  RowChange del{RowOp::kDelete, 16384, 'K', {Text("1")}, {}};
  EXPECT_THAT(ValidateRowChange(del, cache).message(),
              HasSubstr("pgoutput Delete: relation public.users (OID 16384) has 2 columns but "
                        "the old tuple has 1"));
  RowChange upd{RowOp::kUpdate, 16384, 'O', {Text("1"), Null(), Null()}, {Text("1"), Null()}};
  EXPECT_THAT(ValidateRowChange(upd, cache).message(), HasSubstr("old tuple has 3"));
  RowChange upd_no_old{RowOp::kUpdate, 16384, 0, {}, {Text("1"), Toast()}};
  EXPECT_TRUE(ValidateRowChange(upd_no_old, cache).ok());
}

TEST(RelationCacheTest, ChangeForUndescribedRelationNamesTheOid) {
  RelationCache cache;
  Status st = ValidateRowChange(RowChange{RowOp::kInsert, 777, 0, {}, {}}, cache);
  EXPECT_EQ(st.code(), Code::kProtocol);
  EXPECT_EQ(st.message(),
            "pgoutput Insert: relation OID 777 was not described by a Relation message");
}

}  // namespace
}  // namespace geosync
