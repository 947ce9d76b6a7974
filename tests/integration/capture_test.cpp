// Capture against a real PostgreSQL 15: every pgoutput message type as the
// sink sees it, geosync's control messages, feedback that never confirms more
// than the sink declared durable, and reconnects that lose no transaction.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "agent/source/control_emitter.h"
#include "common/replication_protocol.h"
#include "tests/support/capture_harness.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

using CaptureTest = CaptureClusterTest;

Lsn SlotConfirmed(PgCluster& pg, const std::string& slot) {
  return Lsn::Parse(pg.QueryValue(ConfirmedFlushQuery(slot))).value();
}

TEST_F(CaptureTest, BeginAndCommitCarryXidLsnsAndCommitTime) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE items (id int PRIMARY KEY, name varchar(10), price numeric)");
  PgConn conn = pg_->Connect();
  ASSERT_TRUE(conn.Exec("BEGIN").ok());
  const std::string xid = conn.QueryValue("SELECT pg_current_xact_id()").value();
  ASSERT_TRUE(conn.Exec("INSERT INTO items VALUES (1, 'one', 1.5)").ok());
  const PgTimestamp before = ToPgTimestamp(std::chrono::system_clock::now());
  ASSERT_TRUE(conn.Exec("COMMIT").ok());
  const PgTimestamp after = ToPgTimestamp(std::chrono::system_clock::now());
  const Lsn wal_after = pg_->CurrentWalLsn();
  pg_->Exec("INSERT INTO items VALUES (2, 'two', 2)");

  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u) << "two committed transactions, the CREATE TABLE sends nothing";
  const RecordedTxn& t = txns[0];
  EXPECT_EQ(std::to_string(t.begin.xid), xid) << "Begin carries the transaction's xid";
  EXPECT_EQ(t.commit.xid, t.begin.xid) << "Commit carries the xid copied from Begin";
  EXPECT_EQ(t.begin.final_lsn, t.commit.commit_lsn) << "Begin's final LSN is the commit record";
  EXPECT_LT(t.commit.commit_lsn, t.commit.end_lsn) << "the commit record ends after it starts";
  EXPECT_LE(t.commit.end_lsn, wal_after) << "the commit ended before the next WAL position read";
  EXPECT_EQ(t.begin.commit_time, t.commit.commit_time) << "Begin and Commit agree on the time";
  EXPECT_GE(t.commit.commit_time, before - 1000) << "commit time is when COMMIT ran";
  EXPECT_LE(t.commit.commit_time, after + 1000) << "commit time is when COMMIT ran";
  EXPECT_LE(t.commit.end_lsn, txns[1].begin.final_lsn) << "transactions arrive in commit order";
  EXPECT_LE(t.commit.commit_time, txns[1].commit.commit_time);

  auto rels = t.Relations();
  ASSERT_EQ(rels.size(), 1u) << "the first change of a table is preceded by its Relation";
  EXPECT_EQ(rels[0].nspname, "public");
  EXPECT_EQ(rels[0].relname, "items");
  EXPECT_EQ(rels[0].replica_identity, 'd');
  ASSERT_EQ(rels[0].columns.size(), 3u);
  EXPECT_EQ(rels[0].columns[0], (Column{"id", 23, -1, true})) << "int4 primary key";
  EXPECT_EQ(rels[0].columns[1], (Column{"name", 1043, 14, false})) << "varchar(10): typmod 14";
  EXPECT_EQ(rels[0].columns[2], (Column{"price", 1700, -1, false})) << "numeric";
  ASSERT_EQ(t.Rows().size(), 1u);
  EXPECT_EQ(t.Rows()[0].op, RowOp::kInsert);
  EXPECT_EQ(t.Rows()[0].rel_oid, rels[0].oid);
  EXPECT_THAT(t.Rows()[0].new_tuple, ElementsAre(Text("1"), Text("one"), Text("1.5")));
  EXPECT_EQ(txns[1].Relations().size(), 1u) << "every transaction is self-describing";
}

TEST_F(CaptureTest, AddColumnMidTransactionResendsRelationBeforeTheNextChange) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int PRIMARY KEY)");
  pg_->Exec(
      "BEGIN; INSERT INTO t VALUES (1); ALTER TABLE t ADD COLUMN note text DEFAULT 'n'; "
      "INSERT INTO t VALUES (2, 'two'); COMMIT");
  pg_->Exec("ALTER TABLE t ADD COLUMN extra int");
  pg_->Exec("INSERT INTO t VALUES (3, 'three', 3)");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u) << "the ALTER-only transaction sends nothing";
  const auto& ev = txns[0].events;
  ASSERT_EQ(ev.size(), 4u) << "Relation, Insert, Relation (new shape), Insert";
  ASSERT_TRUE(std::holds_alternative<Relation>(ev[0]));
  EXPECT_EQ(std::get<Relation>(ev[0]).columns.size(), 1u);
  EXPECT_THAT(std::get<RowChange>(ev[1]).new_tuple, ElementsAre(Text("1")));
  ASSERT_TRUE(std::holds_alternative<Relation>(ev[2])) << "ADD COLUMN re-describes the table";
  ASSERT_EQ(std::get<Relation>(ev[2]).columns.size(), 2u);
  EXPECT_EQ(std::get<Relation>(ev[2]).columns[1].name, "note");
  EXPECT_THAT(std::get<RowChange>(ev[3]).new_tuple, ElementsAre(Text("2"), Text("two")));
  auto later = txns[1].Relations();
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].columns.size(), 3u) << "a later transaction carries the newest shape";
  EXPECT_THAT(txns[1].Rows()[0].new_tuple, ElementsAre(Text("3"), Text("three"), Text("3")));
}

TEST_F(CaptureTest, ReplicaIdentityDefaultSendsOldKeyOnlyWhenTheKeyChanges) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
  pg_->Exec("INSERT INTO t VALUES (1, 'a')");
  pg_->Exec("UPDATE t SET v = 'b' WHERE id = 1");
  pg_->Exec("UPDATE t SET id = 2 WHERE id = 1");
  pg_->Exec("DELETE FROM t WHERE id = 2");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 4u);
  RowChange same_key = txns[1].Rows().at(0);
  EXPECT_EQ(same_key.op, RowOp::kUpdate);
  EXPECT_EQ(same_key.old_kind, 0) << "no old tuple when the key did not change";
  EXPECT_THAT(same_key.new_tuple, ElementsAre(Text("1"), Text("b")));
  RowChange new_key = txns[2].Rows().at(0);
  EXPECT_EQ(new_key.old_kind, 'K') << "a key change sends the old key";
  EXPECT_THAT(new_key.old_tuple, ElementsAre(Text("1"), Null())) << "key columns only";
  EXPECT_THAT(new_key.new_tuple, ElementsAre(Text("2"), Text("b")));
  RowChange del = txns[3].Rows().at(0);
  EXPECT_EQ(del.op, RowOp::kDelete);
  EXPECT_EQ(del.old_kind, 'K');
  EXPECT_THAT(del.old_tuple, ElementsAre(Text("2"), Null()));
  EXPECT_TRUE(del.new_tuple.empty()) << "a delete has no new tuple";
}

TEST_F(CaptureTest, ReplicaIdentityFullSendsTheWholeOldRow) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int, v text); ALTER TABLE t REPLICA IDENTITY FULL");
  pg_->Exec("INSERT INTO t VALUES (1, 'a')");
  pg_->Exec("UPDATE t SET v = 'b'");
  pg_->Exec("DELETE FROM t");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 3u);
  EXPECT_EQ(txns[0].Relations().at(0).replica_identity, 'f');
  RowChange upd = txns[1].Rows().at(0);
  EXPECT_EQ(upd.old_kind, 'O') << "FULL sends the old row with every update";
  EXPECT_THAT(upd.old_tuple, ElementsAre(Text("1"), Text("a")));
  EXPECT_THAT(upd.new_tuple, ElementsAre(Text("1"), Text("b")));
  RowChange del = txns[2].Rows().at(0);
  EXPECT_EQ(del.old_kind, 'O');
  EXPECT_THAT(del.old_tuple, ElementsAre(Text("1"), Text("b")));
}

TEST_F(CaptureTest, ReplicaIdentityUsingIndexKeysOnTheIndexColumns) {
  auto& cap = StartCapture(Options());
  pg_->Exec(
      "CREATE TABLE t (id int, code text NOT NULL, v text); "
      "CREATE UNIQUE INDEX t_code ON t (code); ALTER TABLE t REPLICA IDENTITY USING INDEX t_code");
  pg_->Exec("INSERT INTO t VALUES (1, 'c1', 'a')");
  pg_->Exec("UPDATE t SET v = 'b'");
  pg_->Exec("UPDATE t SET code = 'c2'");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 3u);
  Relation rel = txns[0].Relations().at(0);
  EXPECT_EQ(rel.replica_identity, 'i');
  EXPECT_FALSE(rel.columns[0].is_key);
  EXPECT_TRUE(rel.columns[1].is_key) << "the index column is the key";
  EXPECT_EQ(txns[1].Rows().at(0).old_kind, 0) << "index key unchanged: no old tuple";
  RowChange upd = txns[2].Rows().at(0);
  EXPECT_EQ(upd.old_kind, 'K');
  EXPECT_THAT(upd.old_tuple, ElementsAre(Null(), Text("c1"), Null()));
}

TEST_F(CaptureTest, ReplicaIdentityNothingMakesThePrimaryRejectUpdatesAndDeletes) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t REPLICA IDENTITY NOTHING");
  pg_->Exec("INSERT INTO t VALUES (1, 'a')");
  PgConn conn = pg_->Connect();
  auto upd = conn.Exec("UPDATE t SET v = 'b'");
  ASSERT_FALSE(upd.ok()) << "an update of a published table without replica identity fails";
  EXPECT_EQ(upd.status().sqlstate(), "55000");
  EXPECT_THAT(upd.status().message(), HasSubstr("does not have a replica identity"));
  EXPECT_EQ(ExecError("DELETE FROM t"), "55000") << "so does a delete";
  EXPECT_EQ(pg_->QueryValue("SELECT v FROM t"), "a") << "the row is unchanged on the primary";
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u) << "only the insert's transaction reaches the stream";
  EXPECT_EQ(txns[0].Relations().at(0).replica_identity, 'n');
  ASSERT_EQ(txns[0].Rows().size(), 1u);
  EXPECT_EQ(txns[0].Rows()[0].op, RowOp::kInsert);
}

TEST_F(CaptureTest, TruncateCarriesCascadeAndRestartIdentityFlags) {
  auto& cap = StartCapture(Options());
  pg_->Exec(
      "CREATE TABLE parent (id serial PRIMARY KEY); "
      "CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent)");
  pg_->Exec("INSERT INTO parent DEFAULT VALUES; INSERT INTO child VALUES (1, 1)");
  pg_->Exec("TRUNCATE parent CASCADE");
  pg_->Exec("INSERT INTO parent DEFAULT VALUES");
  pg_->Exec("TRUNCATE parent RESTART IDENTITY CASCADE");
  pg_->Exec("TRUNCATE child");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 5u);
  auto oid_of = [&](const RecordedTxn& t, const std::string& name) {
    for (const auto& r : t.Relations()) {
      if (r.relname == name) return r.oid;
    }
    return 0u;
  };
  TruncateEvent cascade = txns[1].Truncates().at(0);
  EXPECT_TRUE(cascade.cascade);
  EXPECT_FALSE(cascade.restart_identity);
  EXPECT_THAT(cascade.rel_oids,
              ::testing::UnorderedElementsAre(oid_of(txns[1], "parent"), oid_of(txns[1], "child")))
      << "CASCADE truncates and describes both tables";
  TruncateEvent both = txns[3].Truncates().at(0);
  EXPECT_TRUE(both.cascade);
  EXPECT_TRUE(both.restart_identity);
  TruncateEvent plain = txns[4].Truncates().at(0);
  EXPECT_FALSE(plain.cascade);
  EXPECT_FALSE(plain.restart_identity);
  EXPECT_THAT(plain.rel_oids, ElementsAre(oid_of(txns[4], "child")));
}

TEST_F(CaptureTest, LogicalMessagesTransactionalInsideTxnNonTransactionalOutside) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int PRIMARY KEY)");
  pg_->Exec(
      "BEGIN; INSERT INTO t VALUES (1); "
      "SELECT pg_logical_emit_message(true, 'test.tx', 'in the transaction'); COMMIT");
  pg_->Exec(
      "BEGIN; INSERT INTO t VALUES (2); "
      "SELECT pg_logical_emit_message(true, 'test.tx', 'rolled back'); "
      "SELECT pg_logical_emit_message(false, 'test.loose', 'survives rollback'); ROLLBACK");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 1u) << "the rolled back transaction sends nothing";
  auto msgs = txns[0].Messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(msgs[0].transactional);
  EXPECT_EQ(msgs[0].prefix, "test.tx");
  EXPECT_EQ(msgs[0].content, "in the transaction");
  EXPECT_LE(msgs[0].lsn, txns[0].commit.commit_lsn) << "the message record ends by its commit";
  EXPECT_TRUE(std::holds_alternative<MessageEvent>(txns[0].events.back()))
      << "the message comes after the insert, in WAL order";
  auto loose = cap.sink().LooseMessages();
  ASSERT_EQ(loose.size(), 1u) << "the non-transactional message arrives outside a transaction";
  EXPECT_FALSE(loose[0].transactional);
  EXPECT_EQ(loose[0].prefix, "test.loose");
  EXPECT_EQ(loose[0].content, "survives rollback");
}

TEST_F(CaptureTest, MillionRowTransactionArrivesComplete) {
  std::atomic<uint64_t> id_sum{0};
  RecordingSinkOptions sink;
  sink.store_rows = false;
  sink.on_row = [&](const RowChange& c) { id_sum += std::stoull(c.new_tuple.at(0).value); };
  auto& cap = StartCapture(Options(), sink);
  pg_->Exec("CREATE TABLE big (id int)");
  pg_->Exec("INSERT INTO big SELECT generate_series(1, 1000000)");
  ASSERT_TRUE(cap.WaitForCommits(1, 120s));
  auto txns = cap.sink().Transactions();
  ASSERT_EQ(txns.size(), 1u);
  EXPECT_EQ(txns[0].row_changes, 1000000u) << "all 1,000,000 inserts in one transaction";
  EXPECT_EQ(id_sum.load(), 500000500000u) << "each of ids 1..1,000,000 exactly once";
}

TEST_F(CaptureTest, HeartbeatAndSequenceSnapshotArriveAsControlMessages) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE SEQUENCE s1; CREATE SEQUENCE s2; SELECT nextval('s1'), nextval('s1')");
  ControlEmitterOptions o;
  o.conninfo = pg_->ConnInfo();
  o.site = "frankfurt";
  o.epoch = 7;
  Status st = ControlEmitter::EmitOnce(o, true);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u) << "a heartbeat transaction and a sequences transaction";
  auto hb = txns[0].Messages();
  ASSERT_EQ(hb.size(), 1u);
  EXPECT_EQ(hb[0].prefix, kHeartbeatPrefix);
  EXPECT_TRUE(hb[0].transactional);
  auto j = nlohmann::json::parse(hb[0].content);
  EXPECT_EQ(j["site"], "frankfurt");
  EXPECT_EQ(j["epoch"], 7);
  EXPECT_TRUE(Lsn::Parse(j["wal_lsn"].get<std::string>()).ok()) << hb[0].content;
  EXPECT_GT(j["time_us"].get<int64_t>(), 1700000000000000) << "a Unix time in microseconds";
  auto seq = txns[1].Messages();
  ASSERT_EQ(seq.size(), 1u);
  EXPECT_EQ(seq[0].prefix, kSequencesPrefix);
  auto list = nlohmann::json::parse(seq[0].content);
  ASSERT_EQ(list.size(), 1u) << "only sequences that were used: " << seq[0].content;
  EXPECT_EQ(list[0]["schema"], "public");
  EXPECT_EQ(list[0]["name"], "s1");
  EXPECT_EQ(list[0]["last_value"], 2) << "s1 was advanced twice";
}

TEST_F(CaptureTest, DdlCaptureEmitsCreateAndDropButNotTempTables) {
  ProcessSpec init;
  init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", pg_->ConnInfo()};
  auto r = RunProgram(init, 30s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->exit_status, 0) << r->output;
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE ddl_t (id int PRIMARY KEY)");
  pg_->Exec("CREATE TEMP TABLE tmp_t (id int)");
  pg_->Exec("DROP TABLE ddl_t");
  auto txns = Collect(cap);
  ASSERT_EQ(txns.size(), 2u) << "CREATE TABLE and DROP TABLE each send one transaction";
  auto create = txns[0].Messages();
  ASSERT_EQ(create.size(), 1u);
  EXPECT_EQ(create[0].prefix, kDdlPrefix);
  EXPECT_TRUE(create[0].transactional) << "in the same transaction as the DDL";
  auto j = nlohmann::json::parse(create[0].content);
  EXPECT_EQ(j["sql"], "CREATE TABLE ddl_t (id int PRIMARY KEY)");
  EXPECT_EQ(j["tags"], nlohmann::json::array({"CREATE INDEX", "CREATE TABLE"}));
  EXPECT_EQ(j["search_path"], "\"$user\", public");
  auto drop = txns[1].Messages();
  ASSERT_EQ(drop.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(drop[0].content)["sql"], "DROP TABLE ddl_t");
}

// The slot never confirms past what the sink declared durable.
TEST_F(CaptureTest, ConfirmedFlushNeverPassesTheSinkDurableLsn) {
  auto& cap = StartCapture(Options());
  pg_->Exec("CREATE TABLE t (id int PRIMARY KEY)");
  pg_->Exec("INSERT INTO t VALUES (1)");
  ASSERT_TRUE(cap.WaitForCommits(1, 30s));
  const Lsn x = cap.sink().Transactions()[0].commit.end_lsn;
  cap.sink().SetDurable(x);
  ASSERT_TRUE(WaitForLsn(*pg_, ConfirmedFlushQuery("geosync"), x, 30s));
  for (int i = 2; i <= 6; ++i) pg_->Exec(fmt::format("INSERT INTO t VALUES ({})", i));
  ASSERT_TRUE(cap.WaitForCommits(6, 30s));
  // Several status intervals with five newer transactions received.
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(SlotConfirmed(*pg_, "geosync"), x)
        << "confirmed_flush_lsn stays at the declared durable LSN";
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(cap.stats().server_wal_end.load(), cap.sink().Transactions()[5].commit.end_lsn.value())
      << "the newer transactions were received, just not durable";
  const Lsn y = cap.sink().Transactions()[5].commit.end_lsn;
  cap.sink().SetDurable(y);
  ASSERT_TRUE(WaitForLsn(*pg_, ConfirmedFlushQuery("geosync"), y, 30s));
  EXPECT_EQ(SlotConfirmed(*pg_, "geosync"), y) << "and it moves exactly to the new durable LSN";
}

// Reconnect scenario: 20 small transactions confirmed, a large one being
// streamed when `interrupt` runs, 20 more small ones; the sink declares each
// commit durable as it arrives.
class CaptureReconnectTest : public CaptureClusterTest {
 protected:
  void Run(const std::function<void()>& interrupt, bool cut_mid_transaction) {
    RecordingSinkOptions so;
    so.store_rows = false;
    so.auto_durable = true;
    auto& cap = StartCapture(Options(), so);
    pg_->Exec("CREATE TABLE small (id int PRIMARY KEY); CREATE TABLE big (id int)");
    for (int i = 1; i <= 20; ++i) pg_->Exec(fmt::format("INSERT INTO small VALUES ({})", i));
    ASSERT_TRUE(cap.WaitForCommits(20, 30s));
    ASSERT_TRUE(WaitForLsn(*pg_, ConfirmedFlushQuery("geosync"), cap.sink().DurableLsn(), 30s));
    const Lsn confirmed = SlotConfirmed(*pg_, "geosync");
    pg_->Exec("INSERT INTO big SELECT generate_series(1, 300000)");
    ASSERT_TRUE(WaitFor([&] { return cap.sink().OpenTxnRows() > 1000; }, 30s,
                        "the large transaction is being streamed"));
    interrupt();
    for (int i = 21; i <= 40; ++i) pg_->Exec(fmt::format("INSERT INTO small VALUES ({})", i));
    ASSERT_TRUE(WaitFor([&] { return Distinct(cap.sink().Transactions()).size() >= 41; }, 60s,
                        "the sink has all 41 committed transactions"))
        << Describe(cap);
    EXPECT_GE(cap.stats().reconnects.load(), 1u) << "capture reconnected by itself";
    if (cut_mid_transaction) {
      EXPECT_THAT(cap.sink().DroppedPartialRows(), ::testing::Contains(::testing::Gt(0u)))
          << "the large transaction was cut off mid-stream and dropped at the reconnect";
    }
    auto txns = cap.sink().Transactions();
    std::map<uint64_t, int> seen;
    for (const auto& t : txns) seen[t.commit.end_lsn.value()]++;
    for (const auto& [end, n] : seen) {
      EXPECT_EQ(n, 1) << "transaction ending at " << Lsn(end).ToString() << " arrived " << n
                      << " times; it was "
                      << (end <= confirmed.value() ? "confirmed to PostgreSQL"
                                                   : "declared durable by the sink")
                      << " before the interruption";
    }
    auto distinct = Distinct(txns);
    EXPECT_EQ(distinct.size(), 41u) << "20 + 1 + 20 transactions, none missing, none extra";
    uint64_t big = 0, small = 0;
    for (const auto& t : distinct) {
      if (t.row_changes == 300000) ++big;
      if (t.row_changes == 1) ++small;
    }
    EXPECT_EQ(big, 1u) << "the large transaction arrived complete";
    EXPECT_EQ(small, 40u) << "every small transaction arrived";
  }

  static std::string Describe(CaptureHarness& cap) {
    std::string out = fmt::format(
        "open txn rows {}, dropped partial txns [{}]; committed:", cap.sink().OpenTxnRows(),
        fmt::join(cap.sink().DroppedPartialRows(), ","));
    for (const auto& t : cap.sink().Transactions()) {
      out += fmt::format(" {}({} rows)", t.commit.end_lsn.ToString(), t.row_changes);
    }
    return out;
  }

  static std::vector<RecordedTxn> Distinct(const std::vector<RecordedTxn>& txns) {
    std::vector<RecordedTxn> out;
    std::set<uint64_t> ends;
    for (const auto& t : txns) {
      if (ends.insert(t.commit.end_lsn.value()).second) out.push_back(t);
    }
    return out;
  }
};

TEST_F(CaptureReconnectTest, WalsenderTerminatedMidTransactionLosesNothing) {
  Run(
      [&] {
        EXPECT_EQ(pg_->QueryValue("SELECT pg_terminate_backend(active_pid) FROM "
                                  "pg_replication_slots WHERE slot_name = 'geosync'"),
                  "t");
      },
      /*cut_mid_transaction=*/true);
}

TEST_F(CaptureReconnectTest, PrimaryRestartLosesNothingAndResendsNothingTheSinkHas) {
  Run(
      [&] {
        Status st = pg_->Restart();
        ASSERT_TRUE(st.ok()) << st.ToString();
      },
      /*cut_mid_transaction=*/false);  // a fast shutdown lets the walsender finish sending
}

}  // namespace
}  // namespace geosync::testing
