// The replica's applier: reads committed source transactions from the local
// spool and applies them to the replica database exactly once, grouping many
// source transactions per replica transaction and recording progress in a
// replication origin inside each one. Runs on its own thread with blocking
// libpq (pipeline mode); docs/apply.md describes the design.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "agent/pg/pg_conn.h"
#include "agent/replica/change_collapse.h"
#include "agent/replica/statement_cache.h"
#include "agent/replica/statement_pipeline.h"
#include "agent/replica/unit_reader.h"
#include "agent/replica/writeset.h"
#include "agent/spool/spool.h"
#include "common/change.h"
#include "common/config.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// apply.workers: `configured`, or for 0 the CPUs this process may run on
// (sched_getaffinity), at most 2: parallel apply needs a CPU for each
// backend, and 2 is what bench/bench_apply measured (docs/benchmarks.md).
int ApplyWorkers(int configured);

struct ApplierOptions {
  std::string conninfo;  // the replica database; needs superuser (origins, replica role)
  // Origins are named <prefix>_e<epoch>, e.g. "geosync_c1_e3".
  std::string origin_name_prefix;
  ApplyConfig batch;
  // How long Run() waits for NotifyDurable() before looking at the spool again.
  std::chrono::milliseconds idle_poll{200};
  // Reconnect backoff after a retryable failure: doubles from min to max.
  std::chrono::milliseconds retry_min{50};
  std::chrono::milliseconds retry_max{5000};
  // Statements sent between two pipeline sync points (bounds buffers).
  int statements_per_sync = 256;
  // postgres.dsn, apply.*, and the cluster's origin prefix.
  static ApplierOptions FromConfig(const Config& config);
};

// Queued inserts, or updates by key, of one table with one column set.
struct PendingRun {
  uint32_t rel_oid = 0;
  StatementShape shape;
  std::vector<const Datum*> params;  // row after row
  int rows = 0;
  int unit = -1;                         // the unit of the first row: what an error names
  std::unordered_set<std::string> keys;  // updates: the rows' keys, distinct
};

// One connection to the replica database and what lives in it: prepared
// statements, the pipeline, and the group being applied on it.
struct ApplySession {
  // `name_error` names a failed statement's source transaction among `units`.
  using NameError = std::function<Status(std::span<const ApplyUnit> units, int unit,
                                         std::string_view target, const Status& cause)>;
  ApplySession(int statements_per_sync, const NameError& name_error);
  ApplySession(const ApplySession&) = delete;
  ApplySession& operator=(const ApplySession&) = delete;

  PgConn conn;
  StatementCache cache;
  StatementPipeline pipeline;
  std::span<ApplyUnit> units;  // the units being applied: what errors name
  // What was sent of the group, kept until its commit.
  const ApplyUnit* last_txn = nullptr;
  bool needs_sql = false;
  bool reordered = false;  // collapsed, or multi-row updates
  uint64_t collapsed = 0;
  uint64_t row_statements = 0;
  // Parallel apply: the group sent on this session and not yet committed.
  std::vector<ApplyUnit> group;
  Writeset writes;
};

class Applier {
 public:
  struct Stats {
    uint64_t txns = 0;           // source transactions applied (skipped ones included)
    uint64_t changes = 0;        // row changes applied
    uint64_t groups = 0;         // replica transactions committed
    uint64_t bytes = 0;          // spool payload bytes applied
    uint64_t skipped = 0;        // transactions skipped on DBA request
    uint64_t reconnects = 0;     // sessions opened after a retryable failure
    uint64_t batch_retries = 0;  // failed groups retried one transaction at a time
    uint64_t collapsed = 0;      // row changes not sent: folded into a later one
    // Groups sent collapsed or with multi-row updates that failed with a
    // constraint error (SQLSTATE class 23) or a multi-row update that missed
    // a row, and were applied again in plain order.
    uint64_t collapse_fallbacks = 0;
    // Statements sent for row changes in committed groups: fewer than the
    // changes sent, as runs become multi-row statements (rows_per_statement).
    uint64_t row_statements = 0;
    // DDL messages not run: they failed the allow-list (common/ddl_text.h)
    // or named no role (docs/security.md).
    uint64_t ddl_refused = 0;
    // Groups sent while an earlier group was still in flight on another
    // session (apply.workers > 1), and parallel groups that failed and were
    // applied again from the origin one group at a time.
    uint64_t parallel_groups = 0;
    uint64_t parallel_fallbacks = 0;
    PgTimestamp last_commit_time = 0;  // source commit time of the last applied txn
    std::chrono::system_clock::time_point last_apply_time{};  // when it was committed here
    // last_apply_time minus last_commit_time: the apply lag at that moment.
    int64_t last_apply_lag_us = 0;
    // The retryable error apply is reconnecting after (PostgreSQL down or
    // restarting, out of disk: SQLSTATE 53100); "" once a group commits.
    std::string retrying;
  };

  Applier(ApplierOptions options, Spool* spool);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // Applies until Stop() (returns Cancelled) or a fatal error (returned, and
  // kept in last_error()). Retryable failures reconnect with backoff and
  // resume from the origin's progress. May be called again after it returns,
  // e.g. after SkipXid() for a transaction that failed.
  Status Run();
  // Asks Run() to return after the current replica transaction. Final: a
  // later Run() returns Cancelled at once.
  void Stop();
  // The receiver calls this after each spool Sync(): more units are durable.
  void NotifyDurable();

  // (epoch, end_lsn) of the last source transaction committed on the replica
  // (or the position of a later heartbeat). Thread-safe.
  Position applied() const;
  // Applied and known flushed to the replica's WAL: what the replica's own
  // spool may be released up to. Lags applied() under synchronous_commit=off.
  Position flushed() const;
  PgTimestamp applied_commit_time() const;
  Stats stats() const;
  Status last_error() const;
  // Skips source transaction `xid` once: when it is next to be applied, an
  // empty replica transaction advances the origin past it (logged at warn).
  void SkipXid(uint32_t xid);
  // Applies nothing at or after `at` until ReleaseHold(): the database then
  // holds exactly the source transactions before `at` (verify, drills).
  // A hold left by a crashed verify expires after `max`.
  void HoldBefore(Position at, std::chrono::seconds max = std::chrono::minutes(15));
  void ReleaseHold();
  // Whether apply is stopped at the hold: a unit at or after it is waiting,
  // and every unit before it has been applied and committed. (Reaching the
  // hold while collecting a group is not enough: that group, the last
  // before the hold, commits afterwards.)
  bool Held() const;

  // A source transaction (or a standalone unit such as a heartbeat) read from
  // the spool: the records of one unit, decoded (unit_reader.h).
  using Unit = ApplyUnit;

 private:
  using Expected = StatementPipeline::Expected;

  // Session lifecycle.
  Status ApplyLoop(std::chrono::milliseconds* delay);
  Status Connect();
  Status SetUpSession(ApplySession& session);
  void Disconnect();
  Status LoadOrigin();
  Status UseOriginFor(uint64_t epoch);
  Status UpdateFlushed(bool force);
  bool Backoff(std::chrono::milliseconds* delay);
  // Waits up to `max` for NotifyDurable() (or Stop()) after `seen`; true
  // when it came.
  bool WaitForData(uint64_t seen, std::chrono::milliseconds max);

  // Reading the spool.
  // The next unit unless a hold stops apply before it.
  Result<bool> ReadUnit(Unit* unit);
  // With `writes` (parallel apply), also the group's writeset, and the
  // group ends before a unit that would make a parallel group conflict with
  // a group in flight or turn it into a barrier.
  struct GroupWrites {
    Writeset writes;
    bool serial = false;           // holds a barrier: applied alone (writeset.h)
    bool heartbeats_only = false;  // no transaction: positions only
  };
  Status CollectGroup(std::vector<Unit>* group, GroupWrites* writes = nullptr);
  TableDeps DepsOf(const Relation& rel);
  Status LoadTableDeps();
  bool ConflictsInFlight(const Writeset& writes, bool making_room) const;
  bool SkipRequested(uint32_t xid) const;

  // Parallel apply (apply.workers > 1): groups in flight on several
  // sessions, committed in source order.
  Status SendInParallel(std::vector<Unit> group, Writeset writes);
  Status FinishInFlight(size_t count);
  Status ParallelFailed(const Status& st);
  bool Parallel() const;

  // Applying.
  Status ApplyGroup(std::span<Unit> group);
  // BEGIN and the group's statements, synced; FinishGroup() reads their
  // results and commits. Both on the session s_.
  Status SendGroup(std::span<Unit> units, bool collapse);
  Status FinishGroup();
  Status ApplyOne(Unit& unit);
  // With `collapse`, changes to the same row are folded into their net effect
  // (change_collapse.h). *reordered says whether any change was folded or
  // sent in a multi-row update: whether plain order might do better.
  Status ApplyInTransaction(std::span<Unit> units, bool collapse = false,
                            bool* reordered = nullptr);
  // The units again in plain order (plain_), after `failed` (logged).
  Status ApplyPlain(std::span<Unit> units, const Status& failed);
  Status SendUnit(const Unit& unit, int index, const CollapsePlan* plan);
  Result<const Relation*> FindRelation(uint32_t oid, int index) const;
  Status SendChange(const RowChange& change, int index);
  // Runs of inserts and of updates by key: queued per table, sent as
  // multi-row statements (applier_runs.cpp).
  bool Batchable(const Relation& rel, const StatementShape& shape) const;
  Status QueueRow(const Relation& rel, ShapedChange shaped, int index);
  // Sends the queued rows of `rel_oid` (0: of every table).
  Status FlushRuns(uint32_t rel_oid = 0);
  Status SendRun(const PendingRun& run);
  // Whether anything that fires during apply (an ENABLE ALWAYS or REPLICA
  // trigger or rule) could see one table's rows while changing another.
  Status CheckReorderSafe();
  Status SendTruncate(const TruncateEvent& truncate, int index);
  Status SendMessage(const MessageEvent& message, int index);
  Status RunDdl(const std::string& content, int index);
  void RefuseDdl(const std::string& sql, const std::string& why, int index);
  std::string SessionSettingsSql() const;
  Status SendSequences(const std::string& content, int index);
  Status SendCommit(const Unit& last_txn);
  void RecordApplied(std::span<Unit> units, uint64_t groups);
  // Names the source transaction of units[index] in an error.
  Status UnitError(int index, std::string_view target, const Status& cause) const;

  // Pipeline plumbing.
  Status CheckConnected() const;
  void Rollback();

  ApplierOptions options_;
  Spool* spool_;

  // Apply-thread state.
  // apply.workers sessions; s_ is the one statements go to. The serial path
  // uses the first.
  std::vector<std::unique_ptr<ApplySession>> sessions_;
  ApplySession* s_ = nullptr;
  // Sessions with a parallel group sent and not committed, oldest first:
  // commits go in this order.
  std::deque<ApplySession*> in_flight_;
  // After a parallel group failed: units up to here are applied serially.
  Position serial_until_;
  bool parallel_send_ = false;  // SendGroup is sending a parallel group
  // The replica's tables by "schema\0name": whether another unique index,
  // an exclusion constraint or a foreign key ties their rows (kTable), and
  // whether a keyless one has a unique index (kBarrier). Loaded with the
  // trigger check.
  std::unordered_map<std::string, TableDeps> table_deps_;
  std::unordered_map<std::string, TableDeps> keyless_deps_;
  bool skipping_ = false;  // applying a transaction skipped on DBA request
  std::unordered_map<uint32_t, Relation> relations_;
  // Queued rows, at most one run per table, in the order of their first
  // row. Datums point into the units (or the collapse plan) being applied.
  std::vector<PendingRun> runs_;
  // Inserts into one table may be sent after later changes to other tables,
  // and a row's changes collapsed: with session_replication_role = replica no
  // FK or ordinary trigger fires, so statements on different tables commute
  // and intermediate row states are never seen. Off while a trigger or rule
  // that fires during apply exists (checked per session and after DDL).
  bool reorder_ok_ = false;
  bool write_guard_ = false;  // the database has _geosync.guard_tables()
  bool check_reorder_ = true;
  uint64_t group_row_statements_ = 0;   // in the replica transaction being sent
  bool group_update_runs_ = false;      // it sent updates through runs
  std::vector<std::string> ddl_texts_;  // DDL texts of the unit being sent
  // The last refused DDL message counted: (unit, its DDL message ordinal).
  std::pair<Position, size_t> ddl_refused_upto_{};
  // Plain ordered apply (the fallback): no collapsing, no multi-row updates.
  bool plain_ = false;
  std::string reorder_blocker_;  // the trigger or rule that last turned it off
  // Units read from the spool but not yet applied: one put back by
  // CollectGroup, or the next group read ahead while the server works.
  UnitReader units_;
  // Whether `pos` must wait for ReleaseHold(); records that apply reached it.
  bool HeldBack(const Position& pos);
  void MarkHeldIfReached();
  std::optional<Position> hold_;  // under mu_
  std::chrono::steady_clock::time_point hold_until_{};
  bool held_ = false;     // under mu_
  bool reached_ = false;  // under mu_: a unit at or after the hold is next
  uint64_t origin_epoch_ = 0;
  // One session holds the origin for good; with several, each commit takes
  // it (pg_replication_origin_session_setup) and gives it back.
  bool origin_per_commit_ = false;
  bool origin_set_up_ = false;
  std::string origin_name_;
  Position resume_from_;
  std::chrono::steady_clock::time_point last_flush_check_{};

  // Shared state.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t durable_seq_ = 0;
  Position applied_;
  Position flushed_;
  Position last_txn_end_;  // (epoch, end_lsn) of the last applied transaction
  PgTimestamp applied_commit_time_ = 0;
  Stats stats_;
  Status last_error_;
  std::multiset<uint32_t> skip_xids_;
};

}  // namespace geosync
