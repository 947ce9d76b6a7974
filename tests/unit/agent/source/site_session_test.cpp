// The source's side of a site session without a socket, on a real spool in
// a temp dir: Data batches filled from the spool up to the size limit, the
// session's sent position moving only at unit ends, and the frames a site
// sends back judged (acks bounded by what was sent, errors, strangers).
#include "agent/source/site_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/encoding.h"
#include "tests/support/temp_dir.h"

namespace geosync {
namespace {

class SiteSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spool = Spool::Open({.dir = dir_.path() + "/spool"});
    ASSERT_TRUE(spool.ok()) << spool.status().ToString();
    spool_ = std::move(spool).value();
  }

  // Units of three records (begin, row, commit) at 0x100, 0x200, ... in
  // epoch 1; returns the records in order.
  std::vector<BatchRecord> AppendUnits(int units, bool sync = true) {
    std::vector<BatchRecord> all;
    for (int u = 1; u <= units; ++u) {
      const Lsn lsn(0x100ull * (next_unit_++));
      for (uint8_t flags : {uint8_t{kFirstInUnit}, uint8_t{0}, uint8_t{kLastInUnit}}) {
        BatchRecord r{1, lsn, flags, "payload " + std::string(40, 'a' + static_cast<char>(u % 26))};
        EXPECT_TRUE(spool_->Append(r.epoch, r.lsn, r.flags, AsBytes(r.payload)).ok());
        all.push_back(r);
      }
    }
    if (sync) {
      EXPECT_TRUE(spool_->Sync().ok());
    }
    return all;
  }

  testing::TempDir dir_{"session"};
  std::unique_ptr<Spool> spool_;
  uint64_t next_unit_ = 1;
};

TEST_F(SiteSessionTest, BatchesStopAtTheLimitAndSentMovesOnlyAtUnitEnds) {
  const std::vector<BatchRecord> want = AppendUnits(10);
  auto reader = spool_->ReadFrom(Position{});
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  BatchEncoder encoder;
  BatchDecoder decoder;
  std::vector<BatchRecord> got;
  Position sent;
  int batches = 0;
  for (;;) {
    std::string batch;
    ASSERT_TRUE(FillBatch(**reader, encoder, 200, &batch, &sent).ok());
    if (batch.empty()) break;
    ++batches;
    // One record may take the batch past the limit, never two.
    EXPECT_LT(batch.size(), 200u + 80u) << "batch " << batches;
    auto records = decoder.Decode(AsBytes(batch));
    ASSERT_TRUE(records.ok()) << records.status().ToString();
    got.insert(got.end(), records->begin(), records->end());
    // sent is the end of the last complete unit in what was sent so far.
    Position want_sent;
    for (const auto& r : got) {
      if (r.flags & kLastInUnit) want_sent = Position{r.epoch, r.lsn};
    }
    EXPECT_EQ(sent, want_sent) << "after batch " << batches;
  }
  EXPECT_GT(batches, 3) << "the limit cut the 10 units into several batches";
  EXPECT_EQ(got, want) << "every record arrives once, in order, as appended";
  EXPECT_EQ(sent, (Position{1, Lsn(0xA00)}));
}

TEST_F(SiteSessionTest, NothingIsSentPastTheDurableEnd) {
  AppendUnits(1);
  AppendUnits(1, /*sync=*/false);
  auto reader = spool_->ReadFrom(Position{1, Lsn(0x100)});
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  BatchEncoder encoder;
  std::string batch;
  Position sent{1, Lsn(0x100)};
  ASSERT_TRUE(FillBatch(**reader, encoder, 1 << 20, &batch, &sent).ok());
  EXPECT_TRUE(batch.empty()) << "the second unit is not fsynced yet";
  EXPECT_EQ(sent, (Position{1, Lsn(0x100)}));
  ASSERT_TRUE(spool_->Sync().ok());
  ASSERT_TRUE(FillBatch(**reader, encoder, 1 << 20, &batch, &sent).ok());
  EXPECT_FALSE(batch.empty());
  EXPECT_EQ(sent, (Position{1, Lsn(0x200)}));
}

DecodedFrame AckFrame(const Ack& ack) {
  DecodedFrame f;
  f.type = FrameType::kAck;
  EncodeAck(ack, &f.payload);
  return f;
}

TEST_F(SiteSessionTest, AnAckWithinWhatWasSentIsRecorded) {
  const AckBound bound{Position{2, Lsn(0x900)}, 2, Lsn(0x1000)};
  Ack ack{Position{2, Lsn(0x900)}, Position{2, Lsn(0x800)}, Position{2, Lsn(0x700)}, 42};
  auto r = ReadSiteFrame(AckFrame(ack), bound, "dublin");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kind, SiteFrame::Kind::kAck);
  EXPECT_EQ(r->ack, ack);
}

TEST_F(SiteSessionTest, AnAckClaimingMoreThanWasSentIsRefusedNotRecorded) {
  const AckBound bound{Position{2, Lsn(0x900)}, 2, Lsn(0x1000)};
  Ack ack{Position{2, Lsn(0x900)}, Position{2, Lsn(0x950)}, Position{2, Lsn(0x700)}, 0};
  auto r = ReadSiteFrame(AckFrame(ack), bound, "dublin");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kind, SiteFrame::Kind::kRefusedAck);
  EXPECT_NE(r->reason.find("durable"), std::string::npos) << r->reason;
  EXPECT_EQ(r->ack, Ack{}) << "nothing of the refused ack is passed on";
}

TEST_F(SiteSessionTest, HeartbeatsErrorsAndStrangeFramesFromASite) {
  const AckBound bound{Position{1, Lsn(0x100)}, 1, Lsn(0x200)};
  DecodedFrame hb;
  hb.type = FrameType::kHeartbeat;
  auto h = ReadSiteFrame(hb, bound, "dublin");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->kind, SiteFrame::Kind::kHeartbeat);

  DecodedFrame err;
  err.type = FrameType::kError;
  EncodeErrorMessage({Code::kCorruption, "spool record at 1@0/100 fails its checksum"},
                     &err.payload);
  auto e = ReadSiteFrame(err, bound, "dublin");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kCorruption);

  DecodedFrame garbage;
  garbage.type = FrameType::kAck;
  garbage.payload = "\x01";
  auto g = ReadSiteFrame(garbage, bound, "dublin");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kProtocol);
  EXPECT_NE(g.status().message().find("site dublin"), std::string::npos) << g.status().ToString();

  DecodedFrame data;
  data.type = FrameType::kData;
  auto d = ReadSiteFrame(data, bound, "dublin");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("unexpected frame type 1 from site dublin"),
            std::string::npos)
      << d.status().ToString();
}

}  // namespace
}  // namespace geosync
