// StreamIntake, the receiver's frame handling, on a real spool in a temp
// dir and without a socket: units split across frames, a unit cut short by
// a lost connection, records from a higher epoch, heartbeats, the source's
// errors and frames a source must not send.
#include "agent/replica/stream_intake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/encoding.h"
#include "tests/support/spool_records.h"
#include "tests/support/temp_dir.h"

namespace geosync {
namespace {

class StreamIntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spool = Spool::Open({.dir = dir_.path() + "/spool"});
    ASSERT_TRUE(spool.ok()) << spool.status().ToString();
    spool_ = std::move(spool).value();
    intake_ = std::make_unique<StreamIntake>(spool_.get());
  }

  // A Data frame of `records`, encoded as the source's session does.
  DecodedFrame Data(const std::vector<BatchRecord>& records) {
    DecodedFrame f;
    f.type = FrameType::kData;
    for (const auto& r : records) {
      encoder_.Append(r.epoch, r.lsn, r.flags, AsBytes(r.payload), &f.payload);
    }
    return f;
  }

  // Every record the spool holds, in order.
  std::vector<BatchRecord> SpoolRecords() {
    std::vector<BatchRecord> out;
    for (const SpoolRecord& r : testing::ReadAllRecords(*spool_)) {
      out.push_back({r.epoch, r.lsn, r.flags, std::string(r.payload.begin(), r.payload.end())});
    }
    return out;
  }

  testing::TempDir dir_{"intake"};
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<StreamIntake> intake_;
  BatchEncoder encoder_;
};

const BatchRecord kBegin{1, Lsn(0x100), kFirstInUnit, "payload begin"};
const BatchRecord kRow{1, Lsn(0x100), 0, "payload row"};
const BatchRecord kCommit{1, Lsn(0x100), kLastInUnit, "payload commit"};

TEST_F(StreamIntakeTest, AUnitSplitAcrossFramesIsReceivedAtItsLastRecord) {
  auto first = intake_->OnFrame(Data({kBegin, kRow}), 1);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->kind, Intake::Kind::kData);
  EXPECT_EQ(first->records, 2u);
  EXPECT_EQ(first->units, 0u);
  EXPECT_FALSE(first->received.lsn.valid()) << "no unit is complete yet";
  EXPECT_FALSE(first->durable.lsn.valid()) << "an open unit is not durable";
  EXPECT_TRUE(intake_->unit_open());

  auto second = intake_->OnFrame(Data({kCommit}), 1);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->units, 1u);
  EXPECT_EQ(second->received, (Position{1, Lsn(0x100)}));
  EXPECT_EQ(second->durable, (Position{1, Lsn(0x100)})) << "fsynced before it is reported";
  EXPECT_FALSE(intake_->unit_open());
  EXPECT_EQ(SpoolRecords(), (std::vector<BatchRecord>{kBegin, kRow, kCommit}));
}

TEST_F(StreamIntakeTest, AUnitCutShortByTheConnectionIsAbandonedAndNotDuplicated) {
  ASSERT_TRUE(intake_->OnFrame(Data({kBegin, kRow}), 1).ok());
  ASSERT_TRUE(intake_->unit_open());
  // The link breaks; the source's next session sends the unit from its start
  // with a fresh encoder.
  ASSERT_TRUE(intake_->NewConnection().ok());
  EXPECT_FALSE(intake_->unit_open());
  encoder_ = BatchEncoder();
  auto again = intake_->OnFrame(Data({kBegin, kRow, kCommit}), 1);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->units, 1u);
  EXPECT_EQ(SpoolRecords(), (std::vector<BatchRecord>{kBegin, kRow, kCommit}))
      << "the unit is in the spool once";
}

TEST_F(StreamIntakeTest, ARecordFromAHigherEpochIsFencedBeforeAnythingOfTheBatchIsWritten) {
  ASSERT_TRUE(intake_->OnFrame(Data({kBegin, kCommit}), 1).ok());
  const BatchRecord next{1, Lsn(0x200), kFirstInUnit | kLastInUnit, "payload next"};
  const BatchRecord ahead{2, Lsn(0x10), kFirstInUnit | kLastInUnit, "payload ahead"};
  auto r = intake_->OnFrame(Data({next, ahead}), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFenced) << r.status().ToString();
  EXPECT_NE(r.status().message().find("2@0/10"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(spool_->last_appended(), (Position{1, Lsn(0x100)})) << "nothing of the batch written";
  EXPECT_EQ(SpoolRecords(), (std::vector<BatchRecord>{kBegin, kCommit}));
}

TEST_F(StreamIntakeTest, HeartbeatsAreDecodedForTheLagFigures) {
  Heartbeat hb{1234567, Lsn(0x5000), Position{3, Lsn(0x4000)}};
  DecodedFrame f;
  f.type = FrameType::kHeartbeat;
  EncodeHeartbeat(hb, &f.payload);
  auto r = intake_->OnFrame(f, 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kind, Intake::Kind::kHeartbeat);
  EXPECT_EQ(r->heartbeat, hb);
}

TEST_F(StreamIntakeTest, TheSourcesErrorBecomesTheStatusWithItsCode) {
  DecodedFrame f;
  f.type = FrameType::kError;
  EncodeErrorMessage({Code::kFenced, "source frankfurt is fenced at epoch 4"}, &f.payload);
  auto r = intake_->OnFrame(f, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFenced);
  EXPECT_NE(r.status().message().find("source frankfurt is fenced at epoch 4"), std::string::npos);
}

TEST_F(StreamIntakeTest, FramesASourceMustNotSendAreProtocolErrors) {
  DecodedFrame hello;
  hello.type = FrameType::kHello;
  auto r = intake_->OnFrame(hello, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kProtocol);
  EXPECT_NE(r.status().message().find("unexpected frame type 2"), std::string::npos);

  DecodedFrame garbage;
  garbage.type = FrameType::kData;
  garbage.payload = std::string("\xff\xff\xff\xff garbage", 12);
  auto g = intake_->OnFrame(garbage, 1);
  EXPECT_FALSE(g.ok()) << "a batch that does not decode is an error";
  EXPECT_FALSE(spool_->last_appended().lsn.valid()) << "and writes nothing";
}

}  // namespace
}  // namespace geosync
