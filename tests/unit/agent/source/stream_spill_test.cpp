// StreamSpill: streamed transactions on disk, subtransaction aborts that
// truncate, and damaged files that are reported with their path and offset
// (in the manner of LevelDB's db/log_test.cc).
#include "agent/source/stream_spill.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace geosync {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

class StreamSpillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/geosync-spill-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/spill";  // created by Reset
    spill_ = std::make_unique<StreamSpill>(dir_);
    ASSERT_TRUE(spill_->Reset().ok());
  }
  void TearDown() override {
    spill_.reset();
    fs::remove_all(root_);
  }

  void Append(uint32_t xid, uint32_t subxid, const std::string& s) {
    Status st = spill_->Append(xid, subxid, Bytes(s));
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // Every record of xid as a string, or the error.
  std::vector<std::string> Replay(uint32_t xid, Status* status = nullptr) {
    std::vector<std::string> out;
    Status st = spill_->Replay(xid, [&](std::span<const uint8_t> r) {
      out.emplace_back(r.begin(), r.end());
      return Status::Ok();
    });
    if (status)
      *status = st;
    else
      EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  size_t SpillFiles() const {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) n += e.path().extension() == ".spill";
    return n;
  }

  std::string root_, dir_;
  std::unique_ptr<StreamSpill> spill_;
};

TEST_F(StreamSpillTest, RecordsReplayInAppendOrderAndTheFileIsRemoved) {
  ASSERT_TRUE(spill_->Start(100, true).ok());
  Append(100, 100, "a");
  Append(100, 101, "");
  ASSERT_TRUE(spill_->Flush(100).ok());
  ASSERT_TRUE(spill_->Start(100, false).ok());
  Append(100, 100, "c");
  EXPECT_EQ(SpillFiles(), 1u) << "one file per top-level xid";
  EXPECT_THAT(Replay(100), ElementsAre("a", "", "c"));
  EXPECT_FALSE(spill_->Has(100));
  EXPECT_EQ(SpillFiles(), 0u) << "a replayed transaction leaves no file behind";
}

TEST_F(StreamSpillTest, InterleavedTransactionsKeepSeparateFiles) {
  ASSERT_TRUE(spill_->Start(1, true).ok());
  Append(1, 1, "one-a");
  ASSERT_TRUE(spill_->Start(2, true).ok());
  Append(2, 2, "two-a");
  ASSERT_TRUE(spill_->Start(1, false).ok());
  Append(1, 1, "one-b");
  EXPECT_THAT(Replay(2), ElementsAre("two-a"));
  EXPECT_THAT(Replay(1), ElementsAre("one-a", "one-b"));
}

TEST_F(StreamSpillTest, SubtransactionAbortTruncatesAtItsFirstRecord) {
  ASSERT_TRUE(spill_->Start(10, true).ok());
  Append(10, 10, "top-1");
  Append(10, 11, "sub11-1");  // SAVEPOINT a
  Append(10, 12, "sub12-1");  // SAVEPOINT b, nested in a
  ASSERT_TRUE(spill_->Flush(10).ok());
  Append(10, 11, "sub11-2");  // RELEASE b, still in a (a buffered record)
  const uint64_t before = spill_->Size(10);
  ASSERT_TRUE(spill_->Abort(10, 12).ok());  // b aborted with a: PostgreSQL sends both
  EXPECT_LT(spill_->Size(10), before);
  ASSERT_TRUE(spill_->Abort(10, 11).ok());
  Append(10, 13, "sub13-1");  // a new savepoint after the rollback
  Append(10, 10, "top-2");
  EXPECT_THAT(Replay(10), ElementsAre("top-1", "sub13-1", "top-2"))
      << "only the records of the rolled-back subtransactions are gone";
}

TEST_F(StreamSpillTest, AbortOfASubxidWithNoRecordsKeepsEverything) {
  ASSERT_TRUE(spill_->Start(10, true).ok());
  Append(10, 10, "top");
  Append(10, 11, "sub");
  ASSERT_TRUE(spill_->Abort(10, 99).ok());
  ASSERT_TRUE(spill_->Abort(77, 78).ok()) << "an unknown xid is a no-op";
  EXPECT_THAT(Replay(10), ElementsAre("top", "sub"));
}

TEST_F(StreamSpillTest, TopLevelAbortDeletesTheFile) {
  ASSERT_TRUE(spill_->Start(10, true).ok());
  Append(10, 11, "sub");
  ASSERT_TRUE(spill_->Flush(10).ok());
  ASSERT_EQ(SpillFiles(), 1u);
  ASSERT_TRUE(spill_->Abort(10, 10).ok());
  EXPECT_FALSE(spill_->Has(10));
  EXPECT_EQ(SpillFiles(), 0u);
  EXPECT_THAT(Replay(10), IsEmpty()) << "a dropped transaction replays nothing";
}

TEST_F(StreamSpillTest, FirstSegmentAgainStartsTheTransactionOver) {
  ASSERT_TRUE(spill_->Start(5, true).ok());
  Append(5, 5, "before reconnect");
  ASSERT_TRUE(spill_->Start(5, true).ok());
  Append(5, 5, "again");
  EXPECT_THAT(Replay(5), ElementsAre("again"));
}

TEST_F(StreamSpillTest, LaterSegmentWithoutTheFirstIsAProtocolError) {
  Status st = spill_->Start(5, false);
  EXPECT_EQ(st.code(), Code::kProtocol) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("xid 5"));
  EXPECT_EQ(spill_->Append(5, 5, Bytes("x")).code(), Code::kProtocol)
      << "a message for an xid outside its stream";
}

TEST_F(StreamSpillTest, ResetDeletesLeftoverSpillFilesOnly) {
  ASSERT_TRUE(spill_->Start(5, true).ok());
  Append(5, 5, "x");
  ASSERT_TRUE(spill_->Flush(5).ok());
  std::ofstream(dir_ + "/4242.spill") << "left by a previous process";
  std::ofstream(dir_ + "/notes.txt") << "not ours";
  ASSERT_TRUE(spill_->Reset().ok());
  EXPECT_FALSE(spill_->Has(5));
  EXPECT_EQ(SpillFiles(), 0u);
  EXPECT_TRUE(fs::exists(dir_ + "/notes.txt")) << "only *.spill files are removed";
}

TEST_F(StreamSpillTest, LargeRecordsCrossTheReadBuffer) {
  ASSERT_TRUE(spill_->Start(7, true).ok());
  std::string big(3 << 20, 'x');
  big[12345] = 'y';
  Append(7, 7, "small");
  Append(7, 7, big);
  Append(7, 7, "tail");
  auto records = Replay(7);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1], big);
  EXPECT_EQ(records[2], "tail");
}

TEST_F(StreamSpillTest, TruncatedFileIsCorruptionNamingPathAndOffset) {
  ASSERT_TRUE(spill_->Start(9, true).ok());
  Append(9, 9, "first record");
  Append(9, 9, "second record");
  ASSERT_TRUE(spill_->Flush(9).ok());
  const std::string path = spill_->PathFor(9);
  fs::resize_file(path, fs::file_size(path) - 3);
  Status st;
  auto records = Replay(9, &st);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr(path));
  // magic (8) + header (8) + "first record" (12): the second record starts at 28.
  EXPECT_THAT(st.message(), HasSubstr("offset 28")) << st.ToString();
  EXPECT_THAT(records, ElementsAre("first record")) << "records before the damage are read";
}

TEST_F(StreamSpillTest, FlippedPayloadByteFailsTheChecksum) {
  ASSERT_TRUE(spill_->Start(9, true).ok());
  Append(9, 9, "payload");
  ASSERT_TRUE(spill_->Flush(9).ok());
  const std::string path = spill_->PathFor(9);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 8 + 2);
    f.put('Z');
  }
  Status st;
  Replay(9, &st);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("checksum mismatch in the record at offset 8"));
}

TEST_F(StreamSpillTest, OversizedLengthIsCorruption) {
  ASSERT_TRUE(spill_->Start(9, true).ok());
  Append(9, 9, "payload");
  ASSERT_TRUE(spill_->Flush(9).ok());
  {
    std::fstream f(spill_->PathFor(9), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.put(static_cast<char>(0xff));
  }
  Status st;
  Replay(9, &st);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("at offset 8 is over the limit"));
}

TEST_F(StreamSpillTest, BadMagicIsCorruption) {
  ASSERT_TRUE(spill_->Start(9, true).ok());
  Append(9, 9, "payload");
  ASSERT_TRUE(spill_->Flush(9).ok());
  {
    std::fstream f(spill_->PathFor(9), std::ios::in | std::ios::out | std::ios::binary);
    f.put('X');
  }
  Status st;
  Replay(9, &st);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("bad magic"));
}

TEST_F(StreamSpillTest, ReplayErrorNamesTheRecordOffset) {
  ASSERT_TRUE(spill_->Start(3, true).ok());
  Append(3, 3, "ok");
  Append(3, 3, "bad");
  Status st = spill_->Replay(3, [](std::span<const uint8_t> r) {
    return r.size() == 3 ? Status::Protocol("cannot decode") : Status::Ok();
  });
  EXPECT_EQ(st.code(), Code::kProtocol);
  EXPECT_THAT(st.message(), HasSubstr("record at offset 18")) << st.ToString();
}

}  // namespace
}  // namespace geosync
