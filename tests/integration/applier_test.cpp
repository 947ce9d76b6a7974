// The replica applier against a real PostgreSQL 15 cluster: hand-built spool
// units in, rows and replication origin progress out. Exactly once across
// restarts and server crashes, errors that name the failing transaction.
#include "agent/replica/applier.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/pg/pg_conn.h"
#include "common/encoding.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/wait.h"

namespace geosync {
namespace {

using namespace std::chrono_literals;
using testing::PgCluster;
using testing::PgClusterOptions;
using testing::WaitFor;

namespace fs = std::filesystem;

constexpr char kPrefix[] = "geosync_test";
constexpr uint32_t kInt4 = 23;
constexpr uint32_t kText = 25;

Datum T(std::string value) { return Datum{DatumKind::kText, std::move(value)}; }
Datum Null() { return Datum{DatumKind::kNull, ""}; }
Datum Toast() { return Datum{DatumKind::kUnchangedToast, ""}; }

Relation Rel(uint32_t oid, std::string nsp, std::string name, std::vector<Column> columns,
             char identity = 'd') {
  return Relation{oid, std::move(nsp), std::move(name), identity, std::move(columns)};
}
Column Col(std::string name, uint32_t type, bool key = false) {
  return Column{std::move(name), type, -1, key};
}

RowChange Insert(uint32_t oid, Tuple row) {
  return RowChange{RowOp::kInsert, oid, 0, {}, std::move(row)};
}
RowChange Update(uint32_t oid, char old_kind, Tuple old_row, Tuple new_row) {
  return RowChange{RowOp::kUpdate, oid, old_kind, std::move(old_row), std::move(new_row)};
}
RowChange Delete(uint32_t oid, char old_kind, Tuple old_row) {
  return RowChange{RowOp::kDelete, oid, old_kind, std::move(old_row), {}};
}
MessageEvent Message(std::string_view prefix, std::string content) {
  return MessageEvent{true, Lsn(), std::string(prefix), std::move(content)};
}

class ApplierTest : public testing::PgClusterTest {
 protected:
  void SetUp() override {
    replica_ = &NewCluster("replica", PgClusterOptions{.from_template = true});
    char tmpl[] = "/tmp/geosync_applier_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto spool = Spool::Open(SpoolOptions{dir_});
    ASSERT_TRUE(spool.ok()) << spool.status().ToString();
    spool_ = std::move(spool).value();
  }
  void TearDown() override {
    (void)StopApplier();
    applier_.reset();
    spool_.reset();
    fs::remove_all(dir_);
    PgClusterTest::TearDown();
  }

  // Appends one source transaction as a spool unit and returns its Commit.
  // LSNs grow by 0x100 per transaction; the end LSN is 0x30 past the commit.
  CommitEvent AppendTxn(uint32_t xid, const std::vector<Event>& body, uint64_t epoch = 1) {
    if (epoch != epoch_) {
      epoch_ = epoch;
      next_lsn_ = 0x1000000;  // a new epoch is a new LSN space
    }
    const Lsn commit_lsn(next_lsn_);
    next_lsn_ += 0x100;
    const PgTimestamp time = 789000000000000 + xid;
    std::vector<Event> events;
    events.push_back(BeginEvent{xid, commit_lsn, time});
    events.insert(events.end(), body.begin(), body.end());
    CommitEvent commit{xid, commit_lsn, commit_lsn + 0x30, time};
    events.push_back(commit);
    for (size_t i = 0; i < events.size(); ++i) {
      std::string payload;
      EncodeEvent(events[i], &payload);
      uint8_t flags = i == 0 ? kFirstInUnit : i + 1 == events.size() ? kLastInUnit : 0;
      Status st = spool_->Append(epoch, commit_lsn, flags, AsBytes(payload));
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    return commit;
  }
  // A non-transactional heartbeat as a standalone unit.
  void AppendHeartbeat(uint64_t epoch = 1) {
    const Lsn lsn(next_lsn_);
    next_lsn_ += 0x100;
    std::string payload;
    EncodeEvent(MessageEvent{false, lsn, std::string(kHeartbeatPrefix), "{}"}, &payload);
    EXPECT_TRUE(spool_->Append(epoch, lsn, kStandalone, AsBytes(payload)).ok());
  }
  void SyncSpool() {
    Status st = spool_->Sync();
    ASSERT_TRUE(st.ok()) << st.ToString();
    if (applier_) applier_->NotifyDurable();
  }

  ApplierOptions Options(ApplyConfig batch = {}) const {
    ApplierOptions o;
    o.conninfo = replica_->ConnInfo();
    o.origin_name_prefix = kPrefix;
    o.batch = batch;
    o.retry_max = 500ms;
    return o;
  }
  void StartApplier(ApplyConfig batch = {}) {
    applier_ = std::make_unique<Applier>(Options(batch), spool_.get());
    RunAgain();
  }
  // Runs the current applier again on a new thread (after it returned).
  void RunAgain() {
    run_ = std::async(std::launch::async, [a = applier_.get()] { return a->Run(); });
  }
  bool RunReturned() { return run_.valid() && run_.wait_for(0s) == std::future_status::ready; }
  Status StopApplier() {
    if (!run_.valid()) return Status::Ok();
    applier_->Stop();
    return run_.get();
  }
  bool WaitApplied(const CommitEvent& last, const std::string& what) {
    return WaitFor(
        [&] {
          return applier_->applied() >= Position{epoch_, last.end_lsn};
        },
        30s, what);
  }

  std::string Query(const std::string& sql) { return replica_->QueryValue(sql); }
  std::string OriginProgress(uint64_t epoch = 1) {
    return Query(
        fmt::format("SELECT pg_replication_origin_progress('{}_e{}', true)", kPrefix, epoch));
  }

  PgCluster* replica_ = nullptr;
  std::string dir_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Applier> applier_;
  std::future<Status> run_;
  uint64_t epoch_ = 1;
  uint64_t next_lsn_ = 0x1000000;
};

const Relation kAccounts =
    Rel(16400, "public", "accounts",
        {Col("id", kInt4, true), Col("owner", kText), Col("balance", 1700 /* numeric */)});

void CreateAccounts(PgCluster& pg) {
  pg.Exec("CREATE TABLE public.accounts (id int PRIMARY KEY, owner text, balance numeric)");
}

TEST_F(ApplierTest, InsertsUpdatesAndDeletesByPrimaryKey) {
  CreateAccounts(*replica_);
  AppendTxn(700,
            {kAccounts, Insert(16400, {T("1"), T("ann"), T("10.50")}),
             Insert(16400, {T("2"), T("bob"), T("20")}), Insert(16400, {T("3"), T("cy"), Null()})});
  // An update without old tuple (key unchanged), one that changes the key
  // ('K' old key), and a delete by old key.
  CommitEvent last =
      AppendTxn(701, {kAccounts, Update(16400, 0, {}, {T("1"), T("ann"), T("15")}),
                      Update(16400, 'K', {T("2"), Null(), Null()}, {T("20"), T("bob"), T("20")}),
                      Delete(16400, 'K', {T("3"), Null(), Null()})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "both transactions applied"));

  EXPECT_EQ(Query("SELECT string_agg(id || ':' || owner || ':' || coalesce(balance::text, '-'), "
                  "',' ORDER BY id) FROM accounts"),
            "1:ann:15,20:bob:20")
      << "the replica holds the source's rows after insert, update, key change and delete";
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString())
      << "the origin records the last transaction's end LSN";
  Applier::Stats stats = applier_->stats();
  EXPECT_EQ(stats.txns, 2u);
  EXPECT_EQ(stats.changes, 6u);
  EXPECT_EQ(stats.last_commit_time, last.commit_time) << "lag metrics see the source commit time";
  EXPECT_EQ(applier_->applied_commit_time(), last.commit_time);
  EXPECT_TRUE(WaitFor([&] { return applier_->flushed() == applier_->applied(); }, 10s,
                      "flushed position catches up with applied"));
  EXPECT_EQ(StopApplier().code(), Code::kCancelled) << "Stop() ends Run() with Cancelled";
}

TEST_F(ApplierTest, ReplicaIdentityFullMatchesOneRowByTextIncludingJson) {
  replica_->Exec("CREATE TABLE public.events (id int, doc json, at point, score float8)");
  const Relation events =
      Rel(16410, "public", "events",
          {Col("id", kInt4), Col("doc", 114), Col("at", 600), Col("score", 701)}, 'f');
  const Tuple row = {T("1"), T(R"({"a": [1, 2]})"), T("(1.5,2)"), T("0.1")};
  AppendTxn(710, {events, Insert(16410, row), Insert(16410, row),
                  Insert(16410, {T("2"), Null(), Null(), T("-0")})});
  // json and point have no equality operator: the text comparison finds them.
  Tuple updated = row;
  updated[3] = T("0.30000000000000004");
  AppendTxn(711, {events, Update(16410, 'O', row, updated)});
  CommitEvent last =
      AppendTxn(712, {events, Delete(16410, 'O', {T("2"), Null(), Null(), T("-0")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "identity FULL transactions applied"));

  EXPECT_EQ(Query("SELECT string_agg(score::text, ',' ORDER BY score) FROM events"),
            "0.1,0.30000000000000004")
      << "exactly one of the two identical rows was updated, and the NULL-holding row deleted";
}

TEST_F(ApplierTest, UnchangedToastColumnKeepsItsValue) {
  replica_->Exec("CREATE TABLE public.docs (id int PRIMARY KEY, body text, rev int)");
  const Relation docs =
      Rel(16420, "public", "docs", {Col("id", kInt4, true), Col("body", kText), Col("rev", kInt4)});
  const std::string body(200000, 'x');
  AppendTxn(720, {docs, Insert(16420, {T("1"), T(body), T("1")})});
  CommitEvent last = AppendTxn(721, {docs, Update(16420, 0, {}, {T("1"), Toast(), T("2")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "toast update applied"));

  EXPECT_EQ(Query("SELECT length(body) || ':' || rev FROM docs WHERE id = 1"), "200000:2")
      << "the update set rev and left the unchanged TOASTed body as it was";
}

TEST_F(ApplierTest, TruncateCascadesAndRestartsIdentity) {
  replica_->Exec(
      "CREATE TABLE public.parent (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);"
      "CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES parent);"
      "SELECT setval('parent_id_seq', 50)");
  const Relation parent = Rel(16430, "public", "parent", {Col("id", kInt4, true)});
  const Relation child =
      Rel(16431, "public", "child", {Col("id", kInt4, true), Col("parent_id", kInt4)});
  AppendTxn(730, {parent, child, Insert(16430, {T("1")}), Insert(16431, {T("1"), T("1")})});
  CommitEvent last = AppendTxn(731, {parent, child, TruncateEvent{true, true, {16430, 16431}}});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "truncate applied"));

  EXPECT_EQ(Query("SELECT (SELECT count(*) FROM parent) + (SELECT count(*) FROM child)"), "0")
      << "both tables are empty";
  EXPECT_EQ(Query("SELECT last_value || ':' || is_called FROM parent_id_seq"), "1:false")
      << "RESTART IDENTITY reset the identity sequence";
}

TEST_F(ApplierTest, DdlMessageRunsInPlaceThenRowsGoToTheNewTable) {
  CreateAccounts(*replica_);
  replica_->Exec("CREATE SCHEMA app");
  const Relation items = Rel(16440, "app", "items", {Col("id", kInt4, true), Col("name", kText)});
  const std::string ddl =
      R"({"sql": "CREATE TABLE items (id int PRIMARY KEY, name text); CREATE INDEX ON items (name);",)"
      R"( "search_path": "app, public", "role": "postgres", "tags": ["CREATE TABLE", "CREATE INDEX"]})";
  AppendTxn(740,
            {kAccounts, Insert(16400, {T("1"), T("ann"), T("1")}), Message(kDdlPrefix, ddl), items,
             Insert(16440, {T("1"), T("first")}), Insert(16440, {T("2"), T("second")})});
  const Relation items2 =
      Rel(16440, "app", "items", {Col("id", kInt4, true), Col("name", kText), Col("qty", kInt4)});
  CommitEvent last = AppendTxn(
      741,
      {items, Insert(16440, {T("3"), T("third")}),
       Message(
           kDdlPrefix,
           R"({"sql": "ALTER TABLE app.items ADD COLUMN qty int", "search_path": "", "role": "postgres"})"),
       items2, Insert(16440, {T("4"), T("fourth"), T("7")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "DDL transactions applied"));

  EXPECT_EQ(Query("SELECT string_agg(id || name || coalesce(qty, 0), ',' ORDER BY id) FROM "
                  "app.items"),
            "1first0,2second0,3third0,4fourth7")
      << "rows after each DDL message went into the table it created or altered";
  EXPECT_EQ(Query("SELECT count(*) FROM pg_indexes WHERE schemaname = 'app'"), "2")
      << "the whole multi-statement DDL ran, under its search_path";
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), "1") << "the row before the DDL is there";
}

TEST_F(ApplierTest, SequenceSnapshotRaisesButNeverLowers) {
  replica_->Exec("CREATE SEQUENCE public.orders_seq; SELECT setval('orders_seq', 100)");
  const std::string low = R"([{"schema": "public", "name": "orders_seq", "last_value": 50},)"
                          R"( {"schema": "public", "name": "gone_seq", "last_value": 9}])";
  CommitEvent first = AppendTxn(750, {Message(kSequencesPrefix, low)});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(first, "low snapshot applied"));
  EXPECT_EQ(Query("SELECT last_value FROM orders_seq"), "100")
      << "a snapshot below the replica's value does not lower it";

  CommitEvent second = AppendTxn(
      751, {Message(kSequencesPrefix,
                    R"([{"schema": "public", "name": "orders_seq", "last_value": "5000"}])")});
  SyncSpool();
  ASSERT_TRUE(WaitApplied(second, "high snapshot applied"));
  EXPECT_EQ(Query("SELECT last_value || ':' || is_called FROM orders_seq"), "5000:true")
      << "a higher snapshot raises the sequence";
}

TEST_F(ApplierTest, RestartResumesFromOriginProgressWithoutDuplicates) {
  replica_->Exec("CREATE TABLE public.log (n int)");  // no key: a replay would duplicate
  const Relation log = Rel(16450, "public", "log", {Col("n", kInt4)});
  CommitEvent last;
  for (int i = 0; i < 10; ++i)
    last = AppendTxn(800 + i, {log, Insert(16450, {T(std::to_string(i))})});
  AppendHeartbeat();
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "first ten transactions applied"));
  EXPECT_EQ(StopApplier().code(), Code::kCancelled);

  for (int i = 10; i < 20; ++i)
    last = AppendTxn(800 + i, {log, Insert(16450, {T(std::to_string(i))})});
  SyncSpool();
  StartApplier();  // a new Applier: it knows only what the origin says
  ASSERT_TRUE(WaitApplied(last, "next ten transactions applied"));

  EXPECT_EQ(Query("SELECT count(*) || ':' || count(DISTINCT n) FROM log"), "20:20")
      << "each of the 20 transactions was applied exactly once across the restart";
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString())
      << "origin progress is the last transaction's end LSN";
}

TEST_F(ApplierTest, ReplicaKilledMidStreamReconnectsAndAppliesExactlyOnce) {
  replica_->Exec("CREATE TABLE public.log (n int)");
  const Relation log = Rel(16450, "public", "log", {Col("n", kInt4)});
  auto append = [&](int txn) {
    std::vector<Event> body = {log};
    for (int r = 0; r < 10; ++r) body.push_back(Insert(16450, {T(std::to_string(txn * 10 + r))}));
    return AppendTxn(static_cast<uint32_t>(10000 + txn), body);
  };
  CommitEvent first_part;
  for (int t = 0; t < 1000; ++t) first_part = append(t);
  SyncSpool();
  // Small groups and asynchronous commit: the kill lands mid-stream and loses
  // commits that were not flushed yet, which the origin must account for.
  ApplyConfig batch;
  batch.batch_max_txns = 2;
  StartApplier(batch);
  ASSERT_TRUE(WaitFor([&] { return applier_->stats().txns >= 20; }, 30s, "apply under way"));
  ASSERT_TRUE(replica_->Kill9().ok());
  const Position at_kill = applier_->applied();
  CommitEvent last;
  for (int t = 1000; t < 1050; ++t) last = append(t);
  SyncSpool();
  ASSERT_TRUE(replica_->Start().ok());
  ASSERT_TRUE(WaitApplied(last, "all 1050 transactions applied after the crash"));

  EXPECT_LT(at_kill, (Position{1, first_part.end_lsn})) << "the kill landed mid-stream";
  EXPECT_EQ(Query("SELECT count(*) || ':' || count(DISTINCT n) FROM log"), "10500:10500")
      << "every row is there exactly once after a crash of the replica";
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString());
  EXPECT_GE(applier_->stats().reconnects, 1u) << "the applier reconnected";
  EXPECT_FALSE(RunReturned()) << "a lost connection is not fatal";
}

TEST_F(ApplierTest, ConstraintViolationStopsApplyNamingTheTransactionAndSkipXidGoesOn) {
  CreateAccounts(*replica_);
  AppendTxn(100, {kAccounts, Insert(16400, {T("1"), T("a"), T("1")})});
  AppendTxn(101, {kAccounts, Insert(16400, {T("2"), T("b"), T("2")})});
  CommitEvent bad = AppendTxn(731, {kAccounts, Insert(16400, {T("1"), T("dup"), T("3")})});
  CommitEvent last = AppendTxn(102, {kAccounts, Insert(16400, {T("3"), T("c"), T("4")})});
  SyncSpool();
  StartApplier();  // the four transactions form one group, which fails
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "Run() stops on the violation"));
  Status st = run_.get();
  EXPECT_EQ(st.sqlstate(), "23505");
  EXPECT_FALSE(st.retryable()) << "a constraint violation is fatal";
  EXPECT_NE(st.message().find(fmt::format("applying xid 731 (commit {}) to public.accounts: "
                                          "PostgreSQL error 23505: duplicate key value",
                                          bad.commit_lsn.ToString())),
            std::string::npos)
      << "the message names xid, commit LSN, table and SQLSTATE: " << st.message();
  EXPECT_EQ(applier_->last_error().message(), st.message());
  EXPECT_EQ(Query("SELECT string_agg(owner, ',' ORDER BY id) FROM accounts"), "a,b")
      << "the group was retried one transaction at a time up to the failing one, which is not "
         "half-applied";
  EXPECT_EQ(applier_->stats().batch_retries, 1u);

  applier_->SkipXid(731);
  RunAgain();
  ASSERT_TRUE(WaitApplied(last, "apply continues past the skipped transaction"));
  EXPECT_EQ(Query("SELECT string_agg(owner, ',' ORDER BY id) FROM accounts"), "a,b,c")
      << "xid 731 was skipped and the next transaction applied";
  EXPECT_EQ(applier_->stats().skipped, 1u);
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString());
}

TEST_F(ApplierTest, UpdateOfMissingRowStopsApplyWithRowNotFound) {
  CreateAccounts(*replica_);
  CommitEvent bad =
      AppendTxn(742, {kAccounts, Update(16400, 0, {}, {T("42"), T("nobody"), T("0")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "Run() stops on the missing row"));
  Status st = run_.get();
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(), fmt::format("applying xid 742 (commit {}) to public.accounts: row not "
                                      "found: update found no row with (id)=(42)",
                                      bad.commit_lsn.ToString()))
      << "divergence stops apply instead of being logged and ignored";
}

// A source transaction that updates 1000 accounts by key goes out as a few
// multi-row UPDATEs, and each row gets its own values.
TEST_F(ApplierTest, UpdatesByKeyBecomeMultiRowUpdates) {
  CreateAccounts(*replica_);
  replica_->Exec("INSERT INTO accounts SELECT g, 'old', 0 FROM generate_series(1, 1000) g");
  std::vector<Event> body = {kAccounts};
  for (int id = 1; id <= 1000; ++id) {
    body.push_back(
        Update(16400, 0, {}, {T(std::to_string(id)), T("new"), T(std::to_string(id * 3) + ".5")}));
  }
  CommitEvent last = AppendTxn(5600, body);
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "1000 updates applied"));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE owner = 'new' AND balance = id * 3 + 0.5"),
            "1000");
  Applier::Stats stats = applier_->stats();
  EXPECT_EQ(stats.row_statements, 10u) << "1000 rows: 7 statements of 128, then 104 as 64 + 32 + 8";
  EXPECT_EQ(stats.collapse_fallbacks, 0u);
}

// Three updates in one transaction, the middle row missing on the replica:
// the multi-row UPDATE changes 2 rows of 3, the transaction is applied again
// in plain order, and the error names the row.
TEST_F(ApplierTest, MultiRowUpdateMissingARowStopsApplyNamingTheRow) {
  CreateAccounts(*replica_);
  replica_->Exec("INSERT INTO accounts VALUES (1, 'a', 0), (3, 'c', 0)");
  CommitEvent bad = AppendTxn(743, {kAccounts, Update(16400, 0, {}, {T("1"), T("a"), T("1")}),
                                    Update(16400, 0, {}, {T("2"), T("b"), T("1")}),
                                    Update(16400, 0, {}, {T("3"), T("c"), T("1")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "Run() stops on the missing row"));
  Status st = run_.get();
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(), fmt::format("applying xid 743 (commit {}) to public.accounts: row not "
                                      "found: update found no row with (id)=(2)",
                                      bad.commit_lsn.ToString()));
  EXPECT_EQ(Query("SELECT sum(balance) FROM accounts"), "0") << "nothing half-applied";
  EXPECT_EQ(applier_->stats().collapse_fallbacks, 1u);
}

TEST_F(ApplierTest, FailingDdlStopsApplyNamingItsTransactionAndRollsBack) {
  CreateAccounts(*replica_);
  CommitEvent bad = AppendTxn(
      743,
      {kAccounts, Insert(16400, {T("1"), T("a"), T("1")}),
       Message(
           kDdlPrefix,
           R"({"sql": "ALTER TABLE missing ADD COLUMN x int", "search_path": "public", "role": "postgres"})")});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "Run() stops on the failing DDL"));
  Status st = run_.get();
  EXPECT_EQ(st.sqlstate(), "42P01");
  EXPECT_NE(st.message().find(
                fmt::format("applying xid 743 (commit {}) running DDL [ALTER TABLE "
                            "missing ADD COLUMN x int] as role postgres: PostgreSQL error 42P01",
                            bad.commit_lsn.ToString())),
            std::string::npos)
      << st.message();
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), "0")
      << "the insert before the DDL was rolled back with it";
}

// The DDL trigger captures the client's whole query string. Its BEGIN and
// COMMIT must not end the apply group's transaction (a later failure must
// still roll back the whole group), and its INSERT arrives as a row change:
// run again, it would duplicate the row.
TEST_F(ApplierTest, DdlStringWithTransactionControlAndDataRunsOnlyItsDdl) {
  CreateAccounts(*replica_);
  AppendTxn(760, {kAccounts, Insert(16400, {T("1"), T("a"), T("1")})});
  const Relation with_note = Rel(16400, "public", "accounts",
                                 {Col("id", kInt4, true), Col("owner", kText),
                                  Col("balance", 1700 /* numeric */), Col("note", kText)});
  const std::string ddl =
      R"({"sql": "BEGIN; ALTER TABLE accounts ADD COLUMN note text; )"
      R"(INSERT INTO accounts VALUES (2, 'b', 2, 'n'); COMMIT;", "search_path": "public", "role": "postgres"})";
  AppendTxn(761,
            {Message(kDdlPrefix, ddl), with_note, Insert(16400, {T("2"), T("b"), T("2"), T("n")})});
  CommitEvent third = AppendTxn(
      762,
      {Message(
          kDdlPrefix,
          R"({"sql": "ALTER TABLE missing ADD COLUMN x int", "search_path": "", "role": "postgres"})")});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "Run() stops on the failing DDL"));
  Status st = run_.get();
  // Run whole, the text's COMMIT would have ended the group's transaction
  // and its INSERT would have collided with the replicated row (23505).
  EXPECT_EQ(st.sqlstate(), "42P01") << st.ToString();
  EXPECT_NE(st.message().find("applying xid 762"), std::string::npos) << st.ToString();
  const std::string rows =
      "SELECT string_agg(id || owner || coalesce(note, '-'), ',' ORDER BY id) FROM accounts";
  EXPECT_EQ(Query(rows), "1a-,2bn")
      << "retried one at a time up to the failing transaction; the INSERT in the DDL text did "
         "not run, row 2 came once, as a row change";

  // Skipping the failing transaction goes on, and nothing is applied twice.
  applier_->SkipXid(762);
  RunAgain();
  ASSERT_TRUE(WaitApplied(third, "apply passed the skipped transaction"));
  EXPECT_EQ(Query(rows), "1a-,2bn");
}

// Verify and drills read the replica once Held() says so. The group that
// reached the hold while it was collected commits after that: a Held()
// before its commit had a verify compare a replica that lacked it (issue
// #18). An ALWAYS trigger that fires during apply makes that commit slow.
TEST_F(ApplierTest, HeldOnlyOnceEveryTransactionBeforeTheHoldIsCommitted) {
  CreateAccounts(*replica_);
  replica_->Exec(
      "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM "
      "pg_sleep(0.3); RETURN NEW; END $$; CREATE TRIGGER slow BEFORE INSERT ON accounts FOR EACH "
      "ROW EXECUTE FUNCTION slow(); ALTER TABLE accounts ENABLE ALWAYS TRIGGER slow");
  constexpr int kTxns = 3;
  for (int t = 1; t <= kTxns; ++t) {
    AppendTxn(900 + t, {kAccounts, Insert(16400, {T(std::to_string(t)), T("o"), T("1")})});
  }
  CommitEvent held = AppendTxn(999, {kAccounts, Insert(16400, {T("-1"), T("held"), T("1")})});
  SyncSpool();
  applier_ = std::make_unique<Applier>(Options(), spool_.get());
  applier_->HoldBefore(Position{1, held.commit_lsn});
  RunAgain();
  ASSERT_TRUE(WaitFor([&] { return applier_->Held(); }, 60s, "apply holds before the last txn"));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), std::to_string(kTxns))
      << "at Held(), every transaction before the hold is committed and none after it";
  applier_->ReleaseHold();
  ASSERT_TRUE(WaitApplied(held, "the held transaction after the release"));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), std::to_string(kTxns + 1));
}

// What a forged geosync.ddl message asks for never runs, whatever its text:
// the primary refuses non-superusers pg_logical_emit_message after
// `geosyncctl init`, and the replica's allow-list stands behind that. Each
// refusal is counted once and apply goes on; the rows around it arrive.
TEST_F(ApplierTest, ForgedDdlMessagesNeverRunAndApplyGoesOn) {
  CreateAccounts(*replica_);
  replica_->Exec("CREATE ROLE app LOGIN");
  const std::vector<std::string> forged = {
      R"({"sql": "CREATE ROLE pwned SUPERUSER LOGIN", "search_path": "", "role": "postgres"})",
      R"({"sql": "ROLLBACK", "search_path": "", "role": "app"})",
      R"({"sql": "SET session_replication_role = origin", "search_path": "", "role": "app"})",
      R"({"sql": "RESET ALL", "search_path": "", "role": "app"})",
      R"({"sql": "SET statement_timeout = 1", "search_path": "", "role": "app"})",
      R"({"sql": "CREATE TABLE public.x (); COMMIT; DROP TABLE public.accounts", "role": "app"})",
      R"({"sql": "DO $$ BEGIN EXECUTE 'DROP TABLE public.accounts'; END $$", "role": "app"})",
      R"({"sql": "DROP TABLE public.accounts", "search_path": ""})",  // no role
  };
  int xid = 770;
  for (const std::string& f : forged) {
    AppendTxn(xid, {kAccounts, Insert(16400, {T(std::to_string(xid)), T("x"), T("1")}),
                    Message(kDdlPrefix, f)});
    ++xid;
  }
  // Run as its author, a DDL may do no more than its author: app does not
  // own accounts.
  CommitEvent as_app = AppendTxn(
      xid, {Message(kDdlPrefix, R"({"sql": "ALTER TABLE public.accounts ADD COLUMN c int", )"
                                R"("search_path": "", "role": "app"})")});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(
      WaitFor([&] { return RunReturned(); }, 60s, "Run() stops on the DDL app may not run"));
  Status st = run_.get();
  EXPECT_EQ(st.sqlstate(), "42501") << st.ToString();
  EXPECT_NE(st.message().find(fmt::format("applying xid {} (commit {}) running DDL [ALTER TABLE "
                                          "public.accounts ADD COLUMN c int] as role app",
                                          xid, as_app.commit_lsn.ToString())),
            std::string::npos)
      << st.message();

  EXPECT_EQ(Query("SELECT count(*) FROM pg_roles WHERE rolname = 'pwned'"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), std::to_string(forged.size()))
      << "every row around a forged message arrived, none was rolled back or dropped";
  EXPECT_EQ(Query("SELECT count(*) FROM pg_tables WHERE tablename = 'x'"), "0");
  EXPECT_EQ(applier_->stats().ddl_refused, forged.size()) << "each refusal counted once";
  EXPECT_EQ(Query("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                  "'accounts' AND column_name = 'c'"),
            "0");

  // The apply session's settings survived: a transaction after the skip is
  // applied under session_replication_role = replica, without a timeout.
  applier_->SkipXid(static_cast<uint32_t>(xid));
  replica_->Exec(
      "CREATE FUNCTION no_app_writes() RETURNS trigger LANGUAGE plpgsql AS "
      "$$ BEGIN RAISE EXCEPTION 'fired'; END $$; CREATE TRIGGER t BEFORE INSERT ON "
      "accounts FOR EACH ROW EXECUTE FUNCTION no_app_writes()");
  CommitEvent after = AppendTxn(xid + 1, {kAccounts, Insert(16400, {T("1"), T("y"), T("2")})});
  SyncSpool();
  RunAgain();
  ASSERT_TRUE(WaitApplied(after, "the transaction after the refused messages"));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), std::to_string(forged.size() + 1));
}

// Not a benchmark (bench/ measures speed): many rows per transaction, all
// applied; the rate is printed as a sanity figure only.
TEST_F(ApplierTest, FiftyThousandRowsInBulkTransactionsAllApply) {
  CreateAccounts(*replica_);
  CommitEvent last;
  constexpr int kTxns = 200;
  constexpr int kRows = 250;
  for (int t = 0; t < kTxns; ++t) {
    std::vector<Event> body = {kAccounts};
    for (int r = 0; r < kRows; ++r) {
      body.push_back(Insert(16400, {T(std::to_string(t * kRows + r)), T("owner"), T("12.5")}));
    }
    last = AppendTxn(static_cast<uint32_t>(3000 + t), body);
  }
  SyncSpool();
  const auto start = std::chrono::steady_clock::now();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "50000 rows applied"));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ applier  ] %d rows in %d transactions in %.3f s (%.0f rows/s), %llu groups\n",
              kTxns * kRows, kTxns, secs, kTxns * kRows / secs,
              static_cast<unsigned long long>(applier_->stats().groups));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), std::to_string(kTxns * kRows));
}

TEST_F(ApplierTest, ThousandOneRowTransactionsApplyInFewReplicaTransactions) {
  CreateAccounts(*replica_);
  CommitEvent last;
  for (int i = 0; i < 1000; ++i) {
    last = AppendTxn(static_cast<uint32_t>(2000 + i),
                     {kAccounts, Insert(16400, {T(std::to_string(i)), T("x"), T("1")})});
  }
  SyncSpool();
  const auto start = std::chrono::steady_clock::now();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "1000 transactions applied"));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Applier::Stats stats = applier_->stats();
  std::printf("[ applier  ] 1000 one-row transactions in %.3f s (%.0f txn/s) in %llu groups\n",
              secs, 1000 / secs, static_cast<unsigned long long>(stats.groups));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), "1000");
  EXPECT_EQ(stats.txns, 1000u);
  EXPECT_LE(stats.groups, 20u) << "grouping applied 1000 source transactions in few commits";
}

TEST_F(ApplierTest, NewEpochGetsItsOwnOriginAndResumesThere) {
  CreateAccounts(*replica_);
  AppendTxn(900, {kAccounts, Insert(16400, {T("1"), T("e1"), T("1")})}, 1);
  // After a promotion the LSN space restarts: a lower LSN in a higher epoch.
  CommitEvent e2 = AppendTxn(5, {kAccounts, Insert(16400, {T("2"), T("e2"), T("1")})}, 2);
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(e2, "both epochs applied"));
  EXPECT_EQ(StopApplier().code(), Code::kCancelled);
  EXPECT_EQ(OriginProgress(2), e2.end_lsn.ToString()) << "epoch 2 has its own origin";

  CommitEvent more = AppendTxn(6, {kAccounts, Insert(16400, {T("3"), T("e2"), T("1")})}, 2);
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(more, "restart in epoch 2"));
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), "3")
      << "restart resumed from the newest epoch's origin, nothing replayed";
}

// ---- apply.collapse ------------------------------------------------------------

// A pgbench-like group: the same branch row updated by every transaction, a
// row inserted and updated, one inserted and deleted, a TOASTed body left
// unchanged by later updates. Collapsed, it must leave exactly the rows the
// plain order leaves, with far fewer statements.
TEST_F(ApplierTest, CollapsedGroupLeavesTheRowsThePlainOrderLeaves) {
  CreateAccounts(*replica_);
  replica_->Exec("CREATE TABLE public.docs (id int PRIMARY KEY, body text, rev int)");
  const Relation docs =
      Rel(16420, "public", "docs", {Col("id", kInt4, true), Col("body", kText), Col("rev", kInt4)});
  replica_->Exec(
      "INSERT INTO accounts VALUES (1, 'branch', 0); "
      "INSERT INTO docs VALUES (1, repeat('b', 100000), 0)");
  CommitEvent last;
  int balance = 0;
  for (int t = 1; t <= 50; ++t) {
    balance += t;
    last = AppendTxn(
        static_cast<uint32_t>(4000 + t),
        {kAccounts, docs, Update(16400, 0, {}, {T("1"), T("branch"), T(std::to_string(balance))}),
         Update(16420, 0, {}, {T("1"), Toast(), T(std::to_string(t))}),
         Insert(16400, {T(std::to_string(100 + t)), T("tmp"), T("0")}),
         Update(16400, 0, {}, {T(std::to_string(100 + t)), T("tmp"), T("1")}),
         Delete(16400, 'K', {T(std::to_string(100 + t)), Null(), Null()}),
         Insert(16400, {T(std::to_string(1000 + t)), T("new"), T("0")}),
         Update(16400, 0, {}, {T(std::to_string(1000 + t)), T("kept"), T(std::to_string(t))})});
  }
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "the 50 transactions applied"));

  EXPECT_EQ(Query("SELECT balance FROM accounts WHERE id = 1"), std::to_string(balance))
      << "the branch row holds the last of its 50 updates";
  EXPECT_EQ(Query("SELECT count(*) || ':' || min(owner) || ':' || sum(balance) FROM accounts "
                  "WHERE id > 1000"),
            "50:kept:1275")
      << "each inserted-then-updated row exists once with its final values";
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE id BETWEEN 100 AND 999"), "0")
      << "rows inserted and deleted within the group do not exist";
  EXPECT_EQ(Query("SELECT (body = repeat('b', 100000)) || ':' || rev FROM docs"), "true:50")
      << "the unchanged TOAST body kept its value through the collapsed updates";
  Applier::Stats stats = applier_->stats();
  EXPECT_EQ(stats.changes, 350u) << "changes counts what the source changed";
  // In one group: 49 + 49 updates of branch and doc, 3 of each insert/update/
  // delete triple, 1 of each insert/update pair, 298 in all; a little less if
  // batch_max_ms split the group.
  EXPECT_GE(stats.collapsed, 250u) << "most changes were folded into a later one";
  EXPECT_EQ(stats.collapse_fallbacks, 0u);
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString())
      << "origin progress is the group's last transaction";
}

// Two rows swap a value under a UNIQUE constraint on a non-key column across
// three transactions of one group. Collapsed, row 1's two updates move to the
// third place, so row 2 takes 'a' while row 1 still has it: 23505. The group
// must be applied again in plain order and end as on the source.
TEST_F(ApplierTest, UniqueSwapThatCollapseBreaksFallsBackToPlainOrder) {
  replica_->Exec(
      "CREATE TABLE public.codes (id int PRIMARY KEY, code text NOT NULL UNIQUE);"
      "INSERT INTO codes VALUES (1, 'a'), (2, 'b')");
  const Relation codes =
      Rel(16460, "public", "codes", {Col("id", kInt4, true), Col("code", kText)});
  AppendTxn(4100, {codes, Update(16460, 0, {}, {T("1"), T("tmp")})});
  AppendTxn(4101, {codes, Update(16460, 0, {}, {T("2"), T("a")})});
  CommitEvent last = AppendTxn(4102, {codes, Update(16460, 0, {}, {T("1"), T("b")})});
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "the swap applied"));

  EXPECT_EQ(Query("SELECT string_agg(id || '=' || code, ',' ORDER BY id) FROM codes"), "1=b,2=a")
      << "the rows swapped their codes as on the source";
  Applier::Stats stats = applier_->stats();
  EXPECT_EQ(stats.collapse_fallbacks, 1u) << "the collapsed group failed once and fell back";
  EXPECT_EQ(stats.batch_retries, 0u) << "plain order of the whole group was enough";
  EXPECT_EQ(stats.collapsed, 0u) << "nothing was folded in what was committed";
  EXPECT_EQ(stats.groups, 1u) << "one replica transaction for the three";
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString());
  EXPECT_FALSE(RunReturned()) << "the fallback is not an apply error";
}

TEST_F(ApplierTest, CollapseOffSendsEveryChange) {
  replica_->Exec(
      "CREATE TABLE public.codes (id int PRIMARY KEY, code text NOT NULL UNIQUE);"
      "INSERT INTO codes VALUES (1, 'a'), (2, 'b')");
  const Relation codes =
      Rel(16460, "public", "codes", {Col("id", kInt4, true), Col("code", kText)});
  AppendTxn(4100, {codes, Update(16460, 0, {}, {T("1"), T("tmp")})});
  AppendTxn(4101, {codes, Update(16460, 0, {}, {T("2"), T("a")})});
  CommitEvent last = AppendTxn(4102, {codes, Update(16460, 0, {}, {T("1"), T("b")})});
  SyncSpool();
  ApplyConfig batch;
  batch.collapse = false;
  StartApplier(batch);
  ASSERT_TRUE(WaitApplied(last, "the swap applied"));

  EXPECT_EQ(Query("SELECT string_agg(id || '=' || code, ',' ORDER BY id) FROM codes"), "1=b,2=a");
  EXPECT_EQ(applier_->stats().collapse_fallbacks, 0u)
      << "with apply.collapse off the group is sent in plain order the first time";
}

}  // namespace
// ---- runs of inserts (apply.rows_per_statement) -----------------------------

const Relation kHistory =
    Rel(16480, "public", "history", {Col("aid", kInt4), Col("delta", kInt4), Col("seen", kInt4)});

// pgbench's shape: each transaction updates an account and inserts a history
// row (no key). The history inserts of the whole group go out as a few
// multi-row INSERTs, sent after account updates of later transactions, and
// the tables end exactly as in source order.
TEST_F(ApplierTest, HistoryInsertsBecomeMultiRowInsertsAcrossTransactions) {
  CreateAccounts(*replica_);
  replica_->Exec(
      "CREATE TABLE public.history (aid int, delta int, seen int);"
      "INSERT INTO accounts SELECT g, 'acct', 0 FROM generate_series(1, 10) g");
  CommitEvent last;
  int balance[11] = {};
  for (int t = 0; t < 300; ++t) {
    const int aid = 1 + t % 10;
    balance[aid] += t;
    last = AppendTxn(
        static_cast<uint32_t>(5000 + t),
        {kAccounts, kHistory,
         Update(16400, 0, {}, {T(std::to_string(aid)), T("acct"), T(std::to_string(balance[aid]))}),
         Insert(16480, {T(std::to_string(aid)), T(std::to_string(t)), Null()})});
  }
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "300 pgbench-like transactions applied"));

  std::string want;
  for (int aid = 1; aid <= 10; ++aid) {
    want += (aid > 1 ? "," : "") + std::to_string(aid) + "=" + std::to_string(balance[aid]);
  }
  EXPECT_EQ(Query("SELECT string_agg(id || '=' || balance, ',' ORDER BY id) FROM accounts"), want);
  EXPECT_EQ(Query("SELECT count(*) || ':' || sum(delta) || ':' || count(DISTINCT delta) "
                  "FROM history"),
            "300:44850:300")
      << "every history row once";
  Applier::Stats stats = applier_->stats();
  EXPECT_EQ(stats.changes, 600u);
  EXPECT_LE(stats.row_statements, stats.groups * 16)
      << "each group sent its history rows and its (collapsed) account updates in at most 8 "
         "statements each (powers of two up to 128), not one per row: "
      << stats.row_statements << " statements in " << stats.groups << " groups";
  EXPECT_LT(stats.row_statements, 100u);
}

// Within one table the order is kept: an insert, a delete of that row and an
// insert of the same key again must not become insert, insert, delete.
TEST_F(ApplierTest, InsertRunIsSentBeforeALaterChangeToTheSameTable) {
  CreateAccounts(*replica_);
  ApplyConfig batch;
  batch.collapse = false;  // the applier itself must keep the order
  AppendTxn(5400, {kAccounts, Insert(16400, {T("1"), T("first"), T("1")}),
                   Insert(16400, {T("2"), T("other"), T("1")})});
  AppendTxn(5401, {kAccounts, Delete(16400, 'K', {T("1"), Null(), Null()})});
  CommitEvent last = AppendTxn(5402, {kAccounts, Insert(16400, {T("1"), T("again"), T("2")})});
  SyncSpool();
  StartApplier(batch);
  ASSERT_TRUE(WaitApplied(last, "insert, delete, insert applied"));
  EXPECT_EQ(Query("SELECT string_agg(id || owner, ',' ORDER BY id) FROM accounts"),
            "1again,2other");
  EXPECT_EQ(applier_->stats().batch_retries, 0u) << "no error on the way";
}

// A trigger enabled ALWAYS fires during apply and may read other tables:
// then inserts are not moved past changes to other tables, and the account's
// updates are not collapsed. The BEFORE INSERT trigger records the account's
// balance when each history row goes in.
TEST_F(ApplierTest, AlwaysTriggerKeepsInsertsInSourceOrderAcrossTables) {
  CreateAccounts(*replica_);
  replica_->Exec(
      "CREATE TABLE public.history (aid int, delta int, seen int);"
      "INSERT INTO accounts VALUES (1, 'acct', 0);"
      "CREATE FUNCTION public.note_balance() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "NEW.seen := (SELECT balance FROM public.accounts WHERE id = NEW.aid); RETURN NEW; END $$;"
      "CREATE TRIGGER note BEFORE INSERT ON public.history FOR EACH ROW "
      "EXECUTE FUNCTION public.note_balance();"
      "ALTER TABLE public.history ENABLE ALWAYS TRIGGER note");
  CommitEvent last;
  for (int t = 1; t <= 20; ++t) {
    last = AppendTxn(static_cast<uint32_t>(5500 + t),
                     {kAccounts, kHistory, Insert(16480, {T("1"), T(std::to_string(t)), Null()}),
                      Update(16400, 0, {}, {T("1"), T("acct"), T(std::to_string(t))})});
  }
  SyncSpool();
  StartApplier();
  ASSERT_TRUE(WaitApplied(last, "20 transactions applied"));
  EXPECT_EQ(Query("SELECT string_agg(delta || ':' || seen, ',' ORDER BY delta) FROM history "
                  "WHERE delta <= 3"),
            "1:0,2:1,3:2")
      << "each history row saw the balance of the transactions before it, as on the source";
  EXPECT_EQ(Query("SELECT count(*) FROM history WHERE seen <> delta - 1"), "0");
  EXPECT_EQ(applier_->stats().collapsed, 0u) << "no update of account 1 was folded";
}

// ---- Parallel apply (apply.workers) -----------------------------------------

ApplyConfig TwoWorkers(int batch_max_txns) {
  ApplyConfig batch;
  batch.workers = 2;
  batch.batch_max_txns = batch_max_txns;
  return batch;
}

// Account t is inserted by transaction t, and transaction t also moves money
// out of account t - 5 (a group or two back, maybe still in flight) and, for
// every seventh t, deletes account t - 9. A group that ran before the group
// holding its rows committed would miss them; the writesets make it wait.
TEST_F(ApplierTest, TwoWorkersRunIndependentGroupsAtOnceAndWaitForTheRowsTheyNeed) {
  CreateAccounts(*replica_);
  CommitEvent last;
  constexpr int kTxns = 600;
  for (int t = 0; t < kTxns; ++t) {
    std::vector<Event> body = {kAccounts, Insert(16400, {T(std::to_string(t)), T("o"), T("100")})};
    if (t >= 5) {
      body.push_back(Update(16400, 0, {}, {T(std::to_string(t - 5)), T("o"), T("99")}));
    }
    if (t >= 9 && t % 7 == 0)
      body.push_back(Delete(16400, 'K', {T(std::to_string(t - 9)), Null(), Null()}));
    last = AppendTxn(static_cast<uint32_t>(7000 + t), body);
  }
  SyncSpool();
  StartApplier(TwoWorkers(4));
  ASSERT_TRUE(WaitApplied(last, "600 transactions applied by two sessions"));
  int rows = 0;
  int sum = 0;
  for (int t = 0; t < kTxns; ++t) {
    const bool deleted = t + 9 < kTxns && (t + 9) % 7 == 0 && t + 9 >= 9;
    if (deleted) continue;
    rows++;
    sum += t + 5 < kTxns ? 99 : 100;
  }
  EXPECT_EQ(Query("SELECT count(*) || ':' || sum(balance) FROM accounts"),
            fmt::format("{}:{}", rows, sum));
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString());
  const Applier::Stats stats = applier_->stats();
  EXPECT_GT(stats.parallel_groups, 10u) << "groups overlapped on the two sessions";
  EXPECT_EQ(stats.parallel_fallbacks, 0u)
      << "no group ran before the rows it changes were committed";
  EXPECT_EQ(stats.txns, static_cast<uint64_t>(kTxns));
}

// Another unique index could make an earlier group wait for a later one,
// which waits for the earlier one's commit: such a table's changes are
// never in flight on two sessions at once.
TEST_F(ApplierTest, TableWithAnotherUniqueIndexIsNeverAppliedOnTwoSessionsAtOnce) {
  replica_->Exec("CREATE TABLE public.users (id int PRIMARY KEY, email text UNIQUE)");
  const Relation users =
      Rel(16490, "public", "users", {Col("id", kInt4, true), Col("email", kText)});
  CommitEvent last;
  for (int t = 0; t < 200; ++t) {
    last = AppendTxn(static_cast<uint32_t>(8000 + t),
                     {users, Insert(16490, {T(std::to_string(t)), T(fmt::format("u{}@x", t))})});
  }
  SyncSpool();
  StartApplier(TwoWorkers(4));
  ASSERT_TRUE(WaitApplied(last, "200 transactions applied"));
  EXPECT_EQ(Query("SELECT count(DISTINCT email) FROM users"), "200");
  EXPECT_EQ(applier_->stats().parallel_groups, 0u);
  EXPECT_GE(applier_->stats().groups, 50u) << "groups of at most 4, one after the other";
}

// kill -9 of one apply backend (the server restarts every session) and the
// end of another (pg_terminate_backend: only that session) while both
// sessions are inside a replica transaction: the origin's progress, committed
// with each group in source order, says exactly where to go on.
TEST_F(ApplierTest, ApplySessionKilledInTheMiddleOfParallelGroupsLosesAndDuplicatesNothing) {
  replica_->Exec("CREATE TABLE public.log (n int PRIMARY KEY)");
  const Relation log = Rel(16450, "public", "log", {Col("n", kInt4, true)});
  int next = 0;
  auto append = [&](int txns) {
    CommitEvent c;
    for (int t = 0; t < txns; ++t, ++next) {
      std::vector<Event> body = {log};
      for (int r = 0; r < 5; ++r) body.push_back(Insert(16450, {T(std::to_string(next * 5 + r))}));
      c = AppendTxn(static_cast<uint32_t>(20000 + next), body);
    }
    SyncSpool();
    return c;
  };
  CommitEvent last = append(100);
  StartApplier(TwoWorkers(3));
  ASSERT_TRUE(WaitApplied(last, "the first transactions applied: the origin exists"));
  const std::string in_txn =
      "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = "
      "'geosync_applier' AND xact_start IS NOT NULL";
  for (int kill = 0; kill < 4; ++kill) {
    // Past what the last kill left to serial apply, a lock the inserts wait
    // for holds both sessions inside their groups.
    ASSERT_TRUE(WaitApplied(last, "the backlog of the last kill applied"));
    PgConn holder;
    ASSERT_TRUE(WaitFor(
        [&] {  // after a kill -9, once the server has recovered
          auto conn = PgConn::Connect(replica_->ConnInfo());
          if (!conn.ok()) return false;
          holder = std::move(conn).value();
          return true;
        },
        60s, "a session to hold the lock"));
    ASSERT_TRUE(holder.Exec("BEGIN; LOCK TABLE public.log IN SHARE MODE").ok());
    last = append(1000);
    std::string pids;
    ASSERT_TRUE(WaitFor(
        [&] {
          pids = Query(in_txn);
          return pids.find(' ') != std::string::npos;
        },
        60s, "both apply sessions inside a replica transaction"))
        << "applied " << applier_->applied().ToString() << " of " << last.end_lsn.ToString();
    const pid_t victim = std::stoi(pids.substr(0, pids.find(' ')));
    if (kill % 2 == 0) {
      ASSERT_EQ(::kill(victim, SIGKILL), 0) << "kill -9 " << victim;
    } else {
      Query(fmt::format("SELECT pg_terminate_backend({})", victim));
    }
    (void)holder.Exec("COMMIT");  // fails after kill -9: the server restarted
  }
  ASSERT_TRUE(WaitApplied(last, "every transaction applied after four kills"));
  EXPECT_EQ(Query("SELECT count(*) || ':' || count(DISTINCT n) || ':' || max(n) FROM log"),
            fmt::format("{0}:{0}:{1}", next * 5, next * 5 - 1))
      << "every row is there exactly once";
  EXPECT_EQ(OriginProgress(), last.end_lsn.ToString());
  EXPECT_GE(applier_->stats().reconnects, 1u);
  EXPECT_GT(applier_->stats().parallel_groups, 0u);
  EXPECT_FALSE(RunReturned()) << "a killed session is not fatal";
}

// A constraint error inside a parallel group: apply goes back to the origin,
// applies one group at a time, and stops naming the transaction, as without
// workers.
TEST_F(ApplierTest, ConstraintErrorInAParallelGroupStopsNamingTheTransaction) {
  CreateAccounts(*replica_);
  replica_->Exec("INSERT INTO accounts VALUES (250, 'already here', 0)");
  CommitEvent last;
  for (int t = 0; t < 400; ++t) {
    last = AppendTxn(static_cast<uint32_t>(9000 + t),
                     {kAccounts, Insert(16400, {T(std::to_string(t)), T("o"), T("1")})});
  }
  SyncSpool();
  StartApplier(TwoWorkers(8));
  ASSERT_TRUE(WaitFor([&] { return RunReturned(); }, 30s, "apply stops"));
  const Status st = run_.get();
  EXPECT_EQ(st.sqlstate(), "23505") << st.ToString();
  EXPECT_NE(st.message().find("xid 9250"), std::string::npos) << st.ToString();
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE id < 250"), "250")
      << "everything before the failing transaction is applied";
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE id > 250"), "0")
      << "nothing after it: no later group committed ahead of the failed one";
  EXPECT_GE(applier_->stats().parallel_fallbacks, 1u);
}

// Both sessions prepare the update of `d` while it is a date; after DDL
// turns it into a timestamp, neither may reuse a statement whose parameter is
// still a date (which would store midnight).
TEST_F(ApplierTest, DdlDeallocatesThePreparedStatementsOfEverySession) {
  replica_->Exec("CREATE TABLE public.events (id int PRIMARY KEY, d date)");
  const Relation before = Rel(16500, "public", "events", {Col("id", kInt4, true), Col("d", 1082)});
  const Relation after = Rel(16500, "public", "events", {Col("id", kInt4, true), Col("d", 1114)});
  uint32_t xid = 11000;
  for (int id = 0; id < 20; ++id) {
    AppendTxn(xid++, {before, Insert(16500, {T(std::to_string(id)), T("2026-01-01")})});
  }
  for (int t = 0; t < 60; ++t) {
    AppendTxn(xid++, {before, Update(16500, 0, {}, {T(std::to_string(t % 20)), T("2026-01-02")})});
  }
  AppendTxn(xid++, {before, Message(kDdlPrefix, R"({"sql": "ALTER TABLE public.events ALTER )"
                                                R"(COLUMN d TYPE timestamp", "search_path": "", )"
                                                R"("role": "postgres"})")});
  CommitEvent last;
  for (int t = 0; t < 60; ++t) {
    last = AppendTxn(xid++, {after, Update(16500, 0, {},
                                           {T(std::to_string(t % 20)), T("2026-12-03 13:58:15")})});
  }
  SyncSpool();
  StartApplier(TwoWorkers(3));
  ASSERT_TRUE(WaitApplied(last, "updates before and after the DDL applied"));
  EXPECT_EQ(Query("SELECT count(*) FROM events WHERE d = '2026-12-03 13:58:15'"), "20")
      << Query("SELECT string_agg(id || ' ' || d, ', ' ORDER BY id) FROM events");
  EXPECT_GT(applier_->stats().parallel_groups, 0u);
}

}  // namespace geosync
