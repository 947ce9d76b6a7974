// Streaming replication CopyData sub-messages: parsed from hand-written byte
// arrays laid out as in the PostgreSQL docs, built and parsed back.
#include "common/replication_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace geosync {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> XLogDataBytes() {
  return {'w',  0x00, 0x00, 0x00, 0x16, 0xB3, 0x74, 0xD8, 0x48,  // start 16/B374D848
          0x00, 0x00, 0x00, 0x16, 0xB3, 0x74, 0xE0, 0x00,        // end 16/B374E000
          0x00, 0x02, 0xA5, 0x3B, 0x0B, 0x1F, 0x2E, 0x40,        // send time
          'E'};                                                  // payload: Stream Stop
}

TEST(ReplicationProtocolTest, XLogDataFieldsAreBigEndianAndPayloadIsTheRest) {
  auto bytes = XLogDataBytes();
  auto d = ParseXLogData(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->wal_start.ToString(), "16/B374D848");
  EXPECT_EQ(d->wal_end.ToString(), "16/B374E000");
  EXPECT_EQ(d->send_time, 0x0002A53B0B1F2E40);
  ASSERT_EQ(d->payload.size(), 1u);
  EXPECT_EQ(d->payload[0], 'E');
  EXPECT_EQ(d->payload.data(), bytes.data() + 25) << "payload is a view, not a copy";
}

TEST(ReplicationProtocolTest, XLogDataWithEmptyPayloadIsValid) {
  auto bytes = XLogDataBytes();
  bytes.pop_back();
  auto d = ParseXLogData(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->payload.empty());
}

TEST(ReplicationProtocolTest, TruncatedXLogDataHeaderNamesFieldAndOffset) {
  auto bytes = XLogDataBytes();
  for (size_t len = 0; len < kXLogDataHeaderSize; ++len) {
    auto d = ParseXLogData(std::span(bytes).first(len));
    ASSERT_FALSE(d.ok()) << "a " << len << "-byte XLogData must be rejected";
    EXPECT_EQ(d.status().code(), Code::kProtocol);
    EXPECT_THAT(d.status().message(), HasSubstr("XLogData"));
  }
  EXPECT_EQ(ParseXLogData(std::span(bytes).first(12)).status().message(),
            "XLogData: truncated WAL end at offset 9");
  EXPECT_EQ(ParseXLogData(std::span(bytes).first(20)).status().message(),
            "XLogData: truncated send time at offset 17");
}

TEST(ReplicationProtocolTest, WrongTypeByteIsRejected) {
  auto bytes = XLogDataBytes();
  bytes[0] = 'k';
  auto d = ParseXLogData(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("at offset 0"));
}

std::vector<uint8_t> KeepaliveBytes(uint8_t reply) {
  return {'k',  0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28,  // wal end 1/28
          0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,        // send time -2
          reply};
}

TEST(ReplicationProtocolTest, KeepaliveParsesWalEndTimeAndReplyFlag) {
  auto k = ParsePrimaryKeepalive(KeepaliveBytes(1));
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k->wal_end.ToString(), "1/28");
  EXPECT_EQ(k->send_time, -2);
  EXPECT_TRUE(k->reply_requested);
  EXPECT_FALSE(ParsePrimaryKeepalive(KeepaliveBytes(0))->reply_requested);
}

TEST(ReplicationProtocolTest, KeepaliveReplyFlagOtherThanZeroOrOneIsRejected) {
  auto k = ParsePrimaryKeepalive(KeepaliveBytes(2));
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), Code::kProtocol);
  EXPECT_THAT(k.status().message(), HasSubstr("at offset 17"));
}

TEST(ReplicationProtocolTest, KeepaliveTruncationAndTrailingBytesNameOffset) {
  auto bytes = KeepaliveBytes(0);
  for (size_t len = 0; len < bytes.size(); ++len) {
    auto k = ParsePrimaryKeepalive(std::span(bytes).first(len));
    ASSERT_FALSE(k.ok()) << len;
    EXPECT_EQ(k.status().code(), Code::kProtocol);
  }
  EXPECT_EQ(ParsePrimaryKeepalive(std::span(bytes).first(17)).status().message(),
            "primary keepalive: truncated reply-requested flag at offset 17");
  bytes.push_back(0);
  EXPECT_EQ(ParsePrimaryKeepalive(bytes).status().message(),
            "primary keepalive: 1 trailing bytes at offset 18");
}

TEST(ReplicationProtocolTest, StandbyStatusUpdateHasDocumentedLayout) {
  StandbyStatusUpdate u{Lsn(0x0000001600000010), Lsn(0x0000001600000008), Lsn(0x0000000000000001),
                        0x0102030405060708, true};
  std::vector<uint8_t> expected = {'r',  0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x10,
                                   0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x08, 0x00,
                                   0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02,
                                   0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x01};
  EXPECT_EQ(BuildStandbyStatusUpdate(u), expected);
  auto back = ParseStandbyStatusUpdate(expected);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, u);
}

TEST(ReplicationProtocolTest, TruncatedStandbyStatusUpdateNamesField) {
  auto bytes = BuildStandbyStatusUpdate({});
  EXPECT_EQ(ParseStandbyStatusUpdate(std::span(bytes).first(30)).status().message(),
            "standby status update: truncated client time at offset 25");
}

TEST(ReplicationProtocolTest, ServerMessagesDispatchOnTypeByte) {
  PrimaryKeepalive k{Lsn(42), 7, false};
  auto m = ParseServerReplicationMessage(BuildPrimaryKeepalive(k));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(std::holds_alternative<PrimaryKeepalive>(*m));
  EXPECT_EQ(std::get<PrimaryKeepalive>(*m), k);

  std::vector<uint8_t> payload = {'E'};
  auto x = BuildXLogData(Lsn(1), Lsn(2), 3, payload);
  m = ParseServerReplicationMessage(x);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(std::holds_alternative<XLogData>(*m));
  EXPECT_EQ(std::get<XLogData>(*m).wal_end, Lsn(2));

  std::vector<uint8_t> unknown = {'h', 0, 0};
  m = ParseServerReplicationMessage(unknown);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "replication CopyData: unknown message type 0x68 at offset 0");
  EXPECT_FALSE(ParseServerReplicationMessage({}).ok());
}

TEST(ReplicationProtocolTest, PgTimestampCountsFromYear2000) {
  auto y2k = std::chrono::system_clock::time_point(std::chrono::seconds(kPgEpochOffsetSeconds));
  EXPECT_EQ(ToPgTimestamp(y2k), 0);
  EXPECT_EQ(ToPgTimestamp(y2k + std::chrono::microseconds(1500)), 1500);
  EXPECT_EQ(ToPgTimestamp(y2k - std::chrono::seconds(1)), -1'000'000);
}

}  // namespace
}  // namespace geosync
