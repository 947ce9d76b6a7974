// Capture with pgoutput protocol version 2 streaming against a real
// PostgreSQL 15 whose logical_decoding_work_mem is 64kB, so that any
// transaction over a few hundred rows is streamed before it commits. The sink
// must see each committed transaction exactly as without streaming: once, in
// commit order, with only the rows that survived its savepoints.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "tests/support/capture_harness.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::IsEmpty;

// Memory of this process from /proc/self/status, in kB.
uint64_t ProcStatusKb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1));
  }
  ADD_FAILURE() << key << " not in /proc/self/status";
  return 0;
}

// Resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0, clear_refs 5).
void ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  ASSERT_TRUE(out.good()) << "cannot reset VmHWM through /proc/self/clear_refs";
}

class CaptureStreamingTest : public CaptureClusterTest {
 protected:
  void SetUp() override {
    CaptureClusterTest::SetUp();
    pg_->SetSetting("logical_decoding_work_mem", "64kB");
    Status st = pg_->Reload();
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(pg_->QueryValue("SHOW logical_decoding_work_mem"), "64kB");
  }

  CaptureOptions StreamingOptions(bool streaming = true) {
    CaptureOptions o = Options();
    o.streaming = streaming;
    spill_dir_ = pg_->Dir() + "/capture-spill";
    o.spill_dir = spill_dir_;
    return o;
  }

  size_t SpillFiles() const {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(spill_dir_, ec)) {
      n += e.path().extension() == ".spill";
    }
    return n;
  }

  // Waits until the capture has seen `n` Stream Start messages.
  bool WaitForStreamStarts(CaptureHarness& cap, uint64_t n) {
    return WaitFor([&] { return cap.stats().stream_starts.load() >= n; }, 60s,
                   fmt::format("{} Stream Start messages at the capture", n));
  }

  // One 1,000,000-row INSERT through the capture: returns its transactions
  // and prints the time and the peak RSS growth of this process.
  std::vector<RecordedTxn> MillionRows(bool streaming, uint64_t* id_sum, CaptureStats const** stats,
                                       uint64_t* peak_growth_kb);

  std::string spill_dir_;
};

std::vector<RecordedTxn> CaptureStreamingTest::MillionRows(bool streaming, uint64_t* id_sum,
                                                           CaptureStats const** stats,
                                                           uint64_t* peak_growth_kb) {
  RecordingSinkOptions sink;
  sink.store_rows = false;
  sink.on_row = [id_sum](const RowChange& c) { *id_sum += std::stoull(c.new_tuple.at(0).value); };
  auto& cap = StartCapture(StreamingOptions(streaming), sink);
  *stats = &cap.stats();
  pg_->Exec("CREATE TABLE big (id int)");
  ResetPeakRss();
  const uint64_t rss_before = ProcStatusKb("VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  pg_->Exec("INSERT INTO big SELECT generate_series(1, 1000000)");
  const auto t1 = std::chrono::steady_clock::now();
  if (!cap.WaitForCommits(1, 300s)) return {};
  const auto t2 = std::chrono::steady_clock::now();
  *peak_growth_kb = ProcStatusKb("VmHWM") - std::min(rss_before, ProcStatusKb("VmHWM"));
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::cout << fmt::format(
      "[ measure ] streaming={} insert+commit {} ms, commit->sink {} ms, total {} ms, "
      "stream starts {}, spilled {} bytes, peak RSS growth {} kB (RSS before {} kB)\n",
      streaming, ms(t1 - t0), ms(t2 - t1), ms(t2 - t0), cap.stats().stream_starts.load(),
      cap.stats().spilled_bytes.load(), *peak_growth_kb, rss_before);
  return cap.sink().Transactions();
}

TEST_F(CaptureStreamingTest, MillionRowStreamedTransactionArrivesOnceWithBoundedMemory) {
  uint64_t id_sum = 0, growth_kb = 0;
  const CaptureStats* stats = nullptr;
  auto txns = MillionRows(true, &id_sum, &stats, &growth_kb);
  ASSERT_EQ(txns.size(), 1u) << "one transaction at the sink";
  EXPECT_EQ(txns[0].row_changes, 1000000u) << "all 1,000,000 inserts in one transaction";
  EXPECT_EQ(id_sum, 500000500000u) << "each of ids 1..1,000,000 exactly once";
  EXPECT_EQ(txns[0].begin.final_lsn, txns[0].commit.commit_lsn)
      << "Begin's final LSN is the Stream Commit's commit LSN";
  EXPECT_LT(txns[0].commit.commit_lsn, txns[0].commit.end_lsn);
  const std::string xid =
      pg_->QueryValue("SELECT xmin FROM big WHERE id = 1");  // the inserting transaction
  EXPECT_EQ(std::to_string(txns[0].begin.xid), xid) << "Begin carries the streamed xid";
  EXPECT_GT(stats->stream_starts.load(), 1u) << "the transaction really was streamed in chunks";
  EXPECT_EQ(stats->streamed_transactions.load(), 1u);
  const uint64_t spilled_kb = stats->spilled_bytes.load() / 1024;
  EXPECT_GT(spilled_kb, 20000u) << "1,000,000 Insert messages went through the spill file";
  EXPECT_LT(growth_kb, spilled_kb / 4)
      << "peak RSS grew by " << growth_kb << " kB for a " << spilled_kb << " kB transaction";
  EXPECT_EQ(SpillFiles(), 0u) << "the replayed transaction's spill file is gone";
}

// Not a claim about streaming: the same measurement without it, for the report.
TEST_F(CaptureStreamingTest, MillionRowTransactionWithoutStreamingForComparison) {
  uint64_t id_sum = 0, growth_kb = 0;
  const CaptureStats* stats = nullptr;
  auto txns = MillionRows(false, &id_sum, &stats, &growth_kb);
  ASSERT_EQ(txns.size(), 1u);
  EXPECT_EQ(txns[0].row_changes, 1000000u);
  EXPECT_EQ(id_sum, 500000500000u);
  EXPECT_EQ(stats->stream_starts.load(), 0u) << "protocol version 1 streams nothing";
}

TEST_F(CaptureStreamingTest, RolledBackStreamedSubtransactionIsDropped) {
  auto& cap = StartCapture(StreamingOptions());
  pg_->Exec("CREATE TABLE sp (id int, note text)");
  PgConn conn = pg_->Connect();
  ASSERT_TRUE(conn.Exec("BEGIN").ok());
  ASSERT_TRUE(conn.Exec("SAVEPOINT a").ok());
  // The subtransaction is the first to touch sp: its Relation goes with it.
  ASSERT_TRUE(
      conn.Exec("INSERT INTO sp SELECT g, 'rolled back' FROM generate_series(1, 100000) g").ok());
  ASSERT_TRUE(WaitForStreamStarts(cap, 2));
  ASSERT_TRUE(conn.Exec("ROLLBACK TO SAVEPOINT a").ok());
  ASSERT_TRUE(
      conn.Exec("INSERT INTO sp SELECT g, 'kept' FROM generate_series(100001, 100100) g").ok());
  ASSERT_TRUE(conn.Exec("SAVEPOINT b").ok());
  ASSERT_TRUE(conn.Exec("INSERT INTO sp SELECT g, 'released' FROM generate_series(200001, "
                        "203000) g")
                  .ok());
  ASSERT_TRUE(conn.Exec("RELEASE SAVEPOINT b").ok());
  ASSERT_TRUE(conn.Exec("COMMIT").ok());
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u);
  auto rows = txns[0].Rows();
  ASSERT_EQ(rows.size(), 3100u) << "100 kept and 3000 released rows, none rolled back";
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].new_tuple.at(1).value, i < 100 ? "kept" : "released") << "row " << i;
  }
  EXPECT_EQ(rows.front().new_tuple.at(0).value, "100001");
  EXPECT_EQ(rows.back().new_tuple.at(0).value, "203000");
  ASSERT_EQ(txns[0].Relations().size(), 1u) << "sp described once, before its first change";
  EXPECT_EQ(cap.stats().streamed_transactions.load(), 1u);
}

TEST_F(CaptureStreamingTest, AbortedStreamedTransactionSendsNothing) {
  auto& cap = StartCapture(StreamingOptions());
  pg_->Exec("CREATE TABLE ab (id int)");
  PgConn conn = pg_->Connect();
  ASSERT_TRUE(conn.Exec("BEGIN").ok());
  ASSERT_TRUE(conn.Exec("INSERT INTO ab SELECT generate_series(1, 100000)").ok());
  ASSERT_TRUE(WaitForStreamStarts(cap, 2));
  EXPECT_EQ(SpillFiles(), 1u) << "the open streamed transaction has its spill file";
  ASSERT_TRUE(conn.Exec("ROLLBACK").ok());
  pg_->Exec("INSERT INTO ab VALUES (42)");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u) << "only the later transaction arrives";
  ASSERT_EQ(txns[0].row_changes, 1u);
  EXPECT_EQ(txns[0].Rows()[0].new_tuple.at(0).value, "42");
  EXPECT_EQ(cap.stats().stream_aborts.load(), 1u);
  EXPECT_EQ(cap.stats().streamed_transactions.load(), 0u);
  EXPECT_EQ(SpillFiles(), 0u) << "the aborted transaction's spill file is deleted";
}

TEST_F(CaptureStreamingTest, InterleavedStreamedTransactionsArriveInCommitOrder) {
  auto& cap = StartCapture(StreamingOptions());
  pg_->Exec("CREATE TABLE il (id int, who text)");
  PgConn one = pg_->Connect(), two = pg_->Connect();
  ASSERT_TRUE(one.Exec("BEGIN").ok());
  ASSERT_TRUE(two.Exec("BEGIN").ok());
  const std::string xid_one = one.QueryValue("SELECT pg_current_xact_id()").value();
  const std::string xid_two = two.QueryValue("SELECT pg_current_xact_id()").value();
  auto insert = [](PgConn& c, const std::string& who, int from) {
    return c
        .Exec(fmt::format("INSERT INTO il SELECT g, '{}' FROM generate_series({}, {}) g", who, from,
                          from + 49999))
        .ok();
  };
  ASSERT_TRUE(insert(one, "one", 1));
  ASSERT_TRUE(insert(two, "two", 100001));
  pg_->Exec("INSERT INTO il VALUES (-1, 'small 1')");
  ASSERT_TRUE(insert(one, "one", 50001));
  ASSERT_TRUE(insert(two, "two", 150001));
  pg_->Exec("INSERT INTO il VALUES (-2, 'small 2')");
  ASSERT_TRUE(two.Exec("COMMIT").ok());
  pg_->Exec("INSERT INTO il VALUES (-3, 'small 3')");
  ASSERT_TRUE(one.Exec("COMMIT").ok());
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 5u);
  EXPECT_EQ(txns[0].Rows().at(0).new_tuple.at(1).value, "small 1");
  EXPECT_EQ(txns[1].Rows().at(0).new_tuple.at(1).value, "small 2");
  EXPECT_EQ(std::to_string(txns[2].begin.xid), xid_two) << "two committed first";
  EXPECT_EQ(txns[3].Rows().at(0).new_tuple.at(1).value, "small 3");
  EXPECT_EQ(std::to_string(txns[4].begin.xid), xid_one) << "one committed last";
  for (size_t i : {2u, 4u}) {
    const std::string who = i == 2 ? "two" : "one";
    auto rows = txns[i].Rows();
    ASSERT_EQ(rows.size(), 100000u) << who;
    for (const auto& r : rows) ASSERT_EQ(r.new_tuple.at(1).value, who);
  }
  for (size_t i = 1; i < txns.size(); ++i) {
    EXPECT_LE(txns[i - 1].commit.end_lsn, txns[i].commit.commit_lsn) << "commit order at " << i;
  }
  EXPECT_EQ(cap.stats().streamed_transactions.load(), 2u);
}

TEST_F(CaptureStreamingTest, SchemaChangeInsideAStreamedTransaction) {
  auto& cap = StartCapture(StreamingOptions());
  pg_->Exec("CREATE TABLE sc (id int)");
  PgConn conn = pg_->Connect();
  ASSERT_TRUE(conn.Exec("BEGIN").ok());
  ASSERT_TRUE(conn.Exec("INSERT INTO sc SELECT generate_series(1, 30000)").ok());
  ASSERT_TRUE(WaitForStreamStarts(cap, 2));
  ASSERT_TRUE(conn.Exec("ALTER TABLE sc ADD COLUMN note text").ok());
  ASSERT_TRUE(
      conn.Exec("INSERT INTO sc SELECT g, 'after' FROM generate_series(30001, 60000) g").ok());
  ASSERT_TRUE(conn.Exec("COMMIT").ok());
  pg_->Exec("INSERT INTO sc VALUES (-1, 'later')");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u);
  auto rels = txns[0].Relations();
  ASSERT_EQ(rels.size(), 2u) << "sc described before its first change and again after ALTER";
  EXPECT_EQ(rels[0].columns.size(), 1u);
  EXPECT_EQ(rels[1].columns.size(), 2u);
  auto rows = txns[0].Rows();
  ASSERT_EQ(rows.size(), 60000u);
  EXPECT_EQ(rows[29999].new_tuple.size(), 1u) << "the last row before ALTER has one column";
  ASSERT_EQ(rows[30000].new_tuple.size(), 2u) << "the first row after ALTER has two";
  EXPECT_EQ(rows[30000].new_tuple[1].value, "after");
  auto later = txns[1].Rows();
  ASSERT_EQ(later.size(), 1u);
  ASSERT_EQ(later[0].new_tuple.size(), 2u) << "the next transaction uses the new schema";
  EXPECT_EQ(later[0].new_tuple[1].value, "later");
}

TEST_F(CaptureStreamingTest, ReconnectWhileStreamingDeliversExactlyOneCopy) {
  std::atomic<uint64_t> id_sum{0};
  RecordingSinkOptions sink;
  sink.store_rows = false;
  sink.on_row = [&](const RowChange& c) { id_sum += std::stoull(c.new_tuple.at(0).value); };
  auto& cap = StartCapture(StreamingOptions(), sink);
  pg_->Exec("CREATE TABLE rc (id int)");
  PgConn conn = pg_->Connect();
  ASSERT_TRUE(conn.Exec("BEGIN").ok());
  ASSERT_TRUE(conn.Exec("INSERT INTO rc SELECT generate_series(1, 100000)").ok());
  ASSERT_TRUE(WaitForStreamStarts(cap, 2));
  const uint64_t starts_before = cap.stats().stream_starts.load();
  EXPECT_EQ(SpillFiles(), 1u);
  pg_->Exec(
      "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
      "WHERE slot_name = 'geosync'");
  ASSERT_TRUE(
      WaitFor([&] { return cap.stats().reconnects.load() >= 1; }, 30s, "the capture reconnects"));
  ASSERT_TRUE(WaitForStreamStarts(cap, starts_before + 2))
      << "PostgreSQL streams the open transaction again on the new connection";
  ASSERT_TRUE(conn.Exec("INSERT INTO rc SELECT generate_series(100001, 200000)").ok());
  ASSERT_TRUE(conn.Exec("COMMIT").ok());
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u) << "exactly one copy of the transaction";
  EXPECT_EQ(txns[0].row_changes, 200000u);
  EXPECT_EQ(id_sum.load(), 20000100000u) << "each of ids 1..200,000 exactly once";
  EXPECT_EQ(SpillFiles(), 0u);
  EXPECT_THAT(cap.sink().DroppedPartialRows(), IsEmpty())
      << "nothing of the streamed transaction reached the sink before its commit";
}

}  // namespace
}  // namespace geosync::testing
