// The replica's applier: spool units to replica transactions, exactly once
// through replication origins, many source transactions per replica
// transaction, one pipelined round trip per few hundred statements.
#include "agent/replica/applier.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <optional>

#include <sched.h>

#include "common/ddl_text.h"
#include "common/encoding.h"
#include "common/logical_message.h"
#include "common/replication_origin.h"

namespace geosync {
namespace {

// How often apply looks at the oldest parallel group's results while
// waiting for more durable units.
constexpr std::chrono::milliseconds kInFlightWait{1};

constexpr std::string_view kXactSetupSql =
    "SELECT pg_catalog.pg_replication_origin_xact_setup($1::pg_catalog.pg_lsn, "
    "$2::pg_catalog.timestamptz), pg_catalog.pg_current_xact_id()";
// PgTimestamp (µs since 2000-01-01 UTC) as a timestamptz literal.
std::string TimestampLiteral(PgTimestamp t) {
  int64_t secs = t / 1000000;
  int64_t micros = t % 1000000;
  if (micros < 0) {
    micros += 1000000;
    secs -= 1;
  }
  const time_t unix_secs = static_cast<time_t>(secs + kPgEpochOffsetSeconds);
  std::tm tm{};
  gmtime_r(&unix_secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

PgTimestamp NowPgTimestamp() {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  return us - kPgEpochOffsetSeconds * 1000000;
}

bool IsSqlMessage(const Event& e) {
  const auto* m = std::get_if<MessageEvent>(&e);
  return m && (m->prefix == kDdlPrefix || m->prefix == kSequencesPrefix);
}

// The error of units[index], named by its source transaction.
Status NameUnit(std::span<const ApplyUnit> units, int index, std::string_view target,
                const Status& cause) {
  if (index < 0 || static_cast<size_t>(index) >= units.size()) return cause;
  const ApplyUnit& u = units[index];
  std::string who = u.is_txn ? fmt::format("applying xid {} (commit {})", u.begin.xid,
                                           u.commit.commit_lsn.ToString())
                             : fmt::format("applying spool unit {}", u.position.ToString());
  std::string text = cause.code() == Code::kPostgres ? cause.ToString() : cause.message();
  return Status(cause.code(), fmt::format("{}{}: {}", who, target, text), cause.sqlstate());
}

}  // namespace

ApplySession::ApplySession(int statements_per_sync, const NameError& name_error)
    : pipeline(&conn, statements_per_sync,
               [this, name_error](int unit, std::string_view target, const Status& cause) {
                 return name_error(units, unit, target, cause);
               }) {}

Applier::Applier(ApplierOptions options, Spool* spool)
    : options_(std::move(options)), spool_(spool) {
  options_.batch.batch_max_txns = std::max(1, options_.batch.batch_max_txns);
  options_.statements_per_sync = std::max(1, options_.statements_per_sync);
  options_.batch.workers = ApplyWorkers(options_.batch.workers);
  origin_per_commit_ = options_.batch.workers > 1;
  for (int i = 0; i < options_.batch.workers; ++i) {
    sessions_.push_back(std::make_unique<ApplySession>(options_.statements_per_sync, &NameUnit));
  }
  s_ = sessions_.front().get();
}

Applier::~Applier() = default;

// ---- Control and observation -----------------------------------------------

void Applier::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

void Applier::NotifyDurable() {
  std::lock_guard lock(mu_);
  durable_seq_++;
  cv_.notify_all();
}

Position Applier::applied() const {
  std::lock_guard lock(mu_);
  return applied_;
}

Position Applier::flushed() const {
  std::lock_guard lock(mu_);
  return flushed_;
}

PgTimestamp Applier::applied_commit_time() const {
  std::lock_guard lock(mu_);
  return applied_commit_time_;
}

Applier::Stats Applier::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status Applier::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void Applier::SkipXid(uint32_t xid) {
  std::lock_guard lock(mu_);
  skip_xids_.insert(xid);
  spdlog::info("apply: xid {} will be skipped once on DBA request", xid);
}

// ---- The loop ----------------------------------------------------------------

Status Applier::Run() {
  std::chrono::milliseconds delay = options_.retry_min;
  Status st;
  bool reconnecting = false;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stop_) {
        st = Status::Cancelled("applier stopped");
        break;
      }
    }
    st = Connect();
    if (st.ok()) {
      if (reconnecting) {
        std::lock_guard lock(mu_);
        stats_.reconnects++;
      }
      st = ApplyLoop(&delay);
    }
    if (st.code() == Code::kCancelled || !st.retryable()) break;
    spdlog::warn("apply: {}; reconnecting in {} ms", st.ToString(), delay.count());
    {
      std::lock_guard lock(mu_);
      stats_.retrying = st.ToString();
    }
    Disconnect();
    reconnecting = true;
    if (!Backoff(&delay)) {
      st = Status::Cancelled("applier stopped");
      break;
    }
  }
  Disconnect();
  {
    std::lock_guard lock(mu_);
    spdlog::info(
        "apply: {} transactions applied in {} replica transactions ({} sent while another "
        "was running, {} parallel fallbacks)",
        stats_.txns, stats_.groups, stats_.parallel_groups, stats_.parallel_fallbacks);
  }
  if (st.code() != Code::kCancelled) {
    // Unit errors already say "PostgreSQL error <SQLSTATE>".
    const bool named = st.message().find("PostgreSQL error " + st.sqlstate()) != std::string::npos;
    spdlog::error("apply stopped: {}", named ? st.message() : st.ToString());
    std::lock_guard lock(mu_);
    last_error_ = st;
    stats_.retrying.clear();  // stopped, not retrying
  }
  return st;
}

// Groups are collected and applied one after the other; with apply.workers
// > 1 a group whose writeset conflicts with no group in flight is sent on a
// free session without waiting for the earlier ones, which commit first.
Status Applier::ApplyLoop(std::chrono::milliseconds* delay) {
  while (true) {
    uint64_t seen;
    {
      std::lock_guard lock(mu_);
      if (stop_) return Status::Cancelled("applier stopped");
      seen = durable_seq_;
    }
    if (sessions_.size() > 1 && check_reorder_) {
      GEOSYNC_RETURN_IF_ERROR(FinishInFlight(in_flight_.size()));
      s_ = sessions_.front().get();
      GEOSYNC_RETURN_IF_ERROR(CheckReorderSafe());
    }
    std::vector<Unit> group;
    GroupWrites writes;
    const bool parallel = Parallel();
    GEOSYNC_RETURN_IF_ERROR(CollectGroup(&group, parallel ? &writes : nullptr));
    if (parallel && writes.heartbeats_only && !in_flight_.empty()) {
      // Positions only: they wait for the groups in flight, without
      // blocking on them while transactions behind them could be sent.
      for (auto it = group.rbegin(); it != group.rend(); ++it) units_.PutBack(std::move(*it));
      group.clear();
    }
    if (group.empty() && !in_flight_.empty()) {
      // The oldest group commits once its results are in; until then, what
      // the receiver makes durable can be sent beside it.
      auto done = in_flight_.front()->pipeline.DrainArrived();
      if (!done.ok()) {
        GEOSYNC_RETURN_IF_ERROR(ParallelFailed(done.status()));
      } else if (*done) {
        GEOSYNC_RETURN_IF_ERROR(FinishInFlight(1));
      } else {
        WaitForData(seen, kInFlightWait);
      }
      continue;
    }
    if (group.empty()) {
      s_ = sessions_.front().get();
      // Every group collected before the hold has committed.
      MarkHeldIfReached();
      GEOSYNC_RETURN_IF_ERROR(UpdateFlushed(true));
      WaitForData(seen, options_.idle_poll);
      continue;
    }
    if (parallel && !writes.serial) {
      GEOSYNC_RETURN_IF_ERROR(SendInParallel(std::move(group), std::move(writes.writes)));
    } else {
      GEOSYNC_RETURN_IF_ERROR(FinishInFlight(in_flight_.size()));
      s_ = sessions_.front().get();
      GEOSYNC_RETURN_IF_ERROR(ApplyGroup(group));
      GEOSYNC_RETURN_IF_ERROR(UpdateFlushed(false));
    }
    *delay = options_.retry_min;  // progress: the next failure starts a new backoff
  }
}

bool Applier::Backoff(std::chrono::milliseconds* delay) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, *delay, [&] { return stop_; });
  *delay = std::min(*delay * 2, options_.retry_max);
  return !stop_;
}

bool Applier::WaitForData(uint64_t seen, std::chrono::milliseconds max) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, max, [&] { return stop_ || durable_seq_ != seen; });
}

// ---- Applying ------------------------------------------------------------------

// One replica transaction for the group; if it fails for a reason other than
// the connection, each source transaction again on its own, so that the error
// names the transaction that fails.
Status Applier::ApplyGroup(std::span<Unit> group) {
  if (group.size() == 1) return ApplyOne(group[0]);
  bool reordered = false;
  Status st = ApplyInTransaction(group, options_.batch.collapse, &reordered);
  if (st.ok() || st.retryable() || st.code() == Code::kCancelled) return st;
  if (reordered && (st.sqlstate().starts_with("23") || st.code() == Code::kNotFound)) {
    // Moving a row's net change to its last place, or changing rows in a
    // multi-row update's order, can break a unique index on another column
    // that the original order kept (two rows swapping a value): the same
    // group in plain order.
    st = ApplyPlain(group, st);
    if (st.ok() || st.retryable() || st.code() == Code::kCancelled) return st;
  }
  spdlog::info("apply: a group of {} units failed ({}); applying them one at a time", group.size(),
               st.ToString());
  {
    std::lock_guard lock(mu_);
    stats_.batch_retries++;
  }
  for (Unit& unit : group) GEOSYNC_RETURN_IF_ERROR(ApplyOne(unit));
  return Status::Ok();
}

Status Applier::ApplyPlain(std::span<Unit> units, const Status& failed) {
  spdlog::info(
      "apply: {} unit(s) sent collapsed or with multi-row updates failed ({}); applying "
      "in plain order",
      units.size(), failed.ToString());
  {
    std::lock_guard lock(mu_);
    stats_.collapse_fallbacks++;
  }
  plain_ = true;
  Status st = ApplyInTransaction(units);
  plain_ = false;
  return st;
}

Status Applier::ApplyOne(Unit& unit) {
  skipping_ = unit.is_txn && SkipRequested(unit.begin.xid);
  auto one = std::span<Unit>(&unit, 1);
  bool reordered = false;
  Status st = ApplyInTransaction(one, false, &reordered);
  if (reordered && !st.ok() && !st.retryable() && st.code() != Code::kCancelled) {
    // Plain order names the row a multi-row update missed.
    st = ApplyPlain(one, st);
  }
  if (skipping_ && st.ok()) {
    spdlog::warn("apply: skipped xid {} at commit LSN {} on DBA request", unit.begin.xid,
                 unit.commit.commit_lsn.ToString());
    std::lock_guard lock(mu_);
    auto it = skip_xids_.find(unit.begin.xid);
    if (it != skip_xids_.end()) skip_xids_.erase(it);
    stats_.skipped++;
  }
  skipping_ = false;
  return st;
}

// BEGIN; every unit's statements; origin progress; COMMIT. Statements are
// pipelined; results are read at each sync point, and COMMIT is sent only
// after every change's result was checked, so a failure rolls back the whole
// replica transaction.
Status Applier::ApplyInTransaction(std::span<Unit> units, bool collapse, bool* reordered) {
  Status st = SendGroup(units, collapse);
  if (reordered) *reordered = s_->reordered;
  if (st.ok() && !s_->needs_sql) {  // heartbeats only
    RecordApplied(units, 0);
    return Status::Ok();
  }
  // The server is busy with the group: read the next one meanwhile.
  if (st.ok()) {
    st = units_.ReadAhead(static_cast<size_t>(options_.batch.batch_max_txns),
                          options_.batch.batch_max_bytes);
  }
  if (st.ok()) return FinishGroup();
  if (!st.retryable()) Rollback();
  return st;
}

Status Applier::SendGroup(std::span<Unit> units, bool collapse) {
  ApplySession& s = *s_;
  s.reordered = false;
  GEOSYNC_RETURN_IF_ERROR(CheckConnected());
  if (check_reorder_ && !s.pipeline.in_pipeline()) GEOSYNC_RETURN_IF_ERROR(CheckReorderSafe());
  s.units = units;
  s.pipeline.error() = Status::Ok();
  s.last_txn = nullptr;
  s.needs_sql = false;
  for (const Unit& u : units) {
    if (u.is_txn) s.last_txn = &u;
    s.needs_sql =
        s.needs_sql || u.is_txn || std::any_of(u.events.begin(), u.events.end(), IsSqlMessage);
  }
  if (!s.needs_sql) return Status::Ok();
  std::optional<CollapsePlan> plan;
  // A trigger that fires during apply could see the states collapsing skips.
  if (collapse && reorder_ok_ && !plain_ && !skipping_ && units.size() > 1) {
    std::vector<std::span<const Event>> events;
    events.reserve(units.size());
    for (const Unit& u : units) events.emplace_back(u.events);
    plan = PlanCollapse(events, relations_);
    if (plan->removed == 0) plan.reset();
  }
  if (s.last_txn) GEOSYNC_RETURN_IF_ERROR(UseOriginFor(s.last_txn->position.epoch));
  runs_.clear();
  group_row_statements_ = 0;
  group_update_runs_ = false;
  GEOSYNC_RETURN_IF_ERROR(s.pipeline.Enter());
  Status st = s.pipeline.SendSimple("BEGIN", {}, Expected{});
  // Parallel groups wait for no lock of one another (writeset.h); one that
  // does is applied again alone rather than left waiting on a commit that
  // must come after its own (or an earlier group waiting on a later one).
  if (st.ok() && parallel_send_) {
    st = s.pipeline.SendSimple("SET LOCAL lock_timeout = '5s'", {}, Expected{});
  }
  for (size_t i = 0; st.ok() && s.pipeline.error().ok() && i < units.size(); ++i) {
    st = SendUnit(units[i], static_cast<int>(i), plan ? &*plan : nullptr);
  }
  if (st.ok() && s.pipeline.error().ok()) st = FlushRuns();
  runs_.clear();
  if (st.ok()) st = s.pipeline.Sync();
  s.reordered = plan.has_value() || group_update_runs_;
  s.collapsed = plan ? plan->removed : 0;
  s.row_statements = group_row_statements_;
  return st;
}

Status Applier::FinishGroup() {
  ApplySession& s = *s_;
  Status st = s.pipeline.Drain(0);
  if (st.ok()) st = s.pipeline.error();
  if (st.ok()) {
    st = s.last_txn ? SendCommit(*s.last_txn)
                    : s.pipeline.SendSimple("COMMIT", {}, Expected(Expected::kCommit));
    if (st.ok()) st = s.pipeline.Sync();
    if (st.ok()) st = s.pipeline.Drain(0);
    if (st.ok() && !s.pipeline.error().ok()) {
      // A deferred constraint or the commit itself failed: with one source
      // transaction, it is that transaction's error.
      st = s.units.size() == 1 ? UnitError(0, "", s.pipeline.error()) : s.pipeline.error();
    }
  }
  if (st.ok()) st = s.pipeline.Exit();
  if (!st.ok()) {
    if (!st.retryable()) Rollback();
    return st;
  }
  RecordApplied(s.units, 1);
  std::lock_guard lock(mu_);
  stats_.collapsed += s.collapsed;
  stats_.row_statements += s.row_statements;
  return Status::Ok();
}

Status Applier::SendUnit(const Unit& unit, int index, const CollapsePlan* plan) {
  if (skipping_) return Status::Ok();
  ddl_texts_.clear();
  for (size_t i = 0; i < unit.events.size(); ++i) {
    const Event& event = unit.events[i];
    Status st;
    if (const auto* rel = std::get_if<Relation>(&event)) {
      auto known = relations_.find(rel->oid);
      if (known != relations_.end() && known->second != *rel) st = FlushRuns();
      relations_[rel->oid] = *rel;
    } else if (const auto* change = std::get_if<RowChange>(&event)) {
      const int action = plan ? plan->action(index, i) : CollapsePlan::kKeep;
      if (action == CollapsePlan::kKeep) {
        st = SendChange(*change, index);
      } else if (action >= 0) {
        st = SendChange(plan->replacements[action], index);
      }
    } else if (const auto* truncate = std::get_if<TruncateEvent>(&event)) {
      st = FlushRuns();
      if (st.ok()) st = SendTruncate(*truncate, index);
    } else if (const auto* message = std::get_if<MessageEvent>(&event)) {
      if (IsSqlMessage(event)) st = FlushRuns();
      if (st.ok()) st = SendMessage(*message, index);
    }
    GEOSYNC_RETURN_IF_ERROR(st);
    if (!s_->pipeline.error().ok()) return Status::Ok();  // the rest would be discarded
  }
  return Status::Ok();
}

Result<const Relation*> Applier::FindRelation(uint32_t oid, int index) const {
  auto it = relations_.find(oid);
  if (it != relations_.end()) return &it->second;
  return UnitError(index, "",
                   Status::InvalidArgument(fmt::format(
                       "change to relation OID {} without a Relation event before it", oid)));
}

Status Applier::SendChange(const RowChange& change, int index) {
  GEOSYNC_ASSIGN_OR_RETURN(const Relation* rel, FindRelation(change.rel_oid, index));
  const std::string target = " to " + DisplayName(*rel);
  auto shaped = ShapeChange(*rel, change);
  if (!shaped.ok()) return UnitError(index, target, shaped.status());
  if (!shaped->has_statement) return Status::Ok();
  if (Batchable(*rel, shaped->shape)) return QueueRow(*rel, std::move(shaped).value(), index);
  GEOSYNC_RETURN_IF_ERROR(FlushRuns(reorder_ok_ ? change.rel_oid : 0));
  bool created = false;
  const StatementCache::Entry& entry = s_->cache.Get(*rel, shaped->shape, &created);
  Expected expected{Expected::kChange, index, target};
  group_row_statements_++;
  if (change.op != RowOp::kInsert) {
    expected.must_match = true;
    expected.key =
        fmt::format("{} found no row with {}", change.op == RowOp::kUpdate ? "update" : "delete",
                    DescribeKey(*rel, *shaped));
  }
  return s_->pipeline.SendPrepared(entry, created, shaped->params, std::move(expected));
}

// Tables are named from the transaction's Relation events. The source lists
// every table it truncated (cascaded ones included), so the flags are replayed
// as they were.
Status Applier::SendTruncate(const TruncateEvent& truncate, int index) {
  std::string names;
  std::string display;
  for (uint32_t oid : truncate.rel_oids) {
    GEOSYNC_ASSIGN_OR_RETURN(const Relation* rel, FindRelation(oid, index));
    names += (names.empty() ? "" : ", ") + QualifiedName(*rel);
    display += (display.empty() ? "" : ", ") + DisplayName(*rel);
  }
  if (names.empty()) return Status::Ok();
  std::string sql = "TRUNCATE TABLE " + names;
  if (truncate.restart_identity) sql += " RESTART IDENTITY";
  if (truncate.cascade) sql += " CASCADE";
  return s_->pipeline.SendSimple(sql, {}, Expected(Expected::kCommand, index, " to " + display));
}

// Progress is committed with the data: the origin moves to the group's last
// end LSN in the same replica transaction. pg_current_xact_id() gives the
// transaction an xid, so that even an empty one (a skipped transaction)
// writes a commit record that carries the origin's progress.
Status Applier::SendCommit(const Unit& last_txn) {
  StatementPipeline& pipeline = s_->pipeline;
  // Several sessions take the origin in turn, one commit at a time: the one
  // before has committed and given it back (FinishInFlight).
  if (origin_per_commit_) {
    GEOSYNC_RETURN_IF_ERROR(pipeline.SendSimple(
        "SELECT pg_catalog.pg_replication_origin_session_setup($1)", {origin_name_}, Expected{}));
  }
  GEOSYNC_RETURN_IF_ERROR(pipeline.SendSimple(
      std::string(kXactSetupSql),
      {last_txn.commit.end_lsn.ToString(), TimestampLiteral(last_txn.commit.commit_time)},
      Expected{}));
  GEOSYNC_RETURN_IF_ERROR(pipeline.SendSimple("COMMIT", {}, Expected(Expected::kCommit)));
  if (!origin_per_commit_) return Status::Ok();
  return pipeline.SendSimple("SELECT pg_catalog.pg_replication_origin_session_reset()", {},
                             Expected{});
}

void Applier::RecordApplied(std::span<Unit> units, uint64_t groups) {
  const auto now = std::chrono::system_clock::now();
  std::lock_guard lock(mu_);
  stats_.groups += groups;
  if (groups > 0) stats_.retrying.clear();
  for (const Unit& u : units) {
    stats_.bytes += u.bytes;
    if (!u.is_txn) {
      applied_ = std::max(applied_, u.position);
      continue;
    }
    stats_.txns++;
    if (!skipping_) {
      stats_.changes += std::count_if(u.events.begin(), u.events.end(), [](const Event& e) {
        return std::holds_alternative<RowChange>(e);
      });
    }
    last_txn_end_ = Position{u.position.epoch, u.commit.end_lsn};
    applied_ = std::max(applied_, last_txn_end_);
    applied_commit_time_ = u.commit.commit_time;
    stats_.last_commit_time = u.commit.commit_time;
  }
  if (groups > 0) {
    stats_.last_apply_time = now;
    stats_.last_apply_lag_us = NowPgTimestamp() - stats_.last_commit_time;
  }
}

Status Applier::UnitError(int index, std::string_view target, const Status& cause) const {
  return NameUnit(s_->units, index, target, cause);
}

// ---- Pipeline plumbing -------------------------------------------------------

Status Applier::CheckConnected() const {
  if (s_->conn.connected()) return Status::Ok();
  return Status::Postgres("the connection to the replica is closed", "08003");
}

// Ends a failed replica transaction. Statements prepared in it may or may not
// exist (a prepare after an error is skipped), so all are deallocated.
void Applier::Rollback() {
  ApplySession& s = *s_;
  s.cache.Clear();
  if (!s.conn.connected()) return;
  const Status saved = s.pipeline.error();
  Status st = s.pipeline.Enter();
  if (st.ok() && s.pipeline.unsynced() > 0) st = s.pipeline.Sync();
  if (st.ok()) st = s.pipeline.Drain(0);
  if (st.ok()) st = s.pipeline.SendSimple("ROLLBACK", {}, Expected{});
  if (st.ok()) st = s.pipeline.SendSimple("DEALLOCATE ALL", {}, Expected{});
  // A commit that failed after taking the origin (SendCommit) still holds it.
  if (st.ok() && origin_per_commit_) {
    st = s.pipeline.SendSimple(
        "SELECT pg_catalog.pg_replication_origin_session_reset() "
        "WHERE pg_catalog.pg_replication_origin_session_is_setup()",
        {}, Expected{});
  }
  if (st.ok()) st = s.pipeline.Sync();
  if (st.ok()) st = s.pipeline.Drain(0);
  if (st.ok()) st = s.pipeline.Exit();
  if (!st.ok()) {
    // The server rolls back when the session ends; the next statement sees
    // the closed connection and Run() reconnects.
    spdlog::warn("apply: rolling back: {}; closing the session", st.ToString());
    s.conn = PgConn();
    s.pipeline.Reset();
  }
  s.pipeline.error() = saved;
}

int ApplyWorkers(int configured) {
  if (configured > 0) return configured;
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (sched_getaffinity(0, sizeof cpus, &cpus) != 0) return 1;
  return std::clamp(CPU_COUNT(&cpus), 1, 2);
}

ApplierOptions ApplierOptions::FromConfig(const Config& config) {
  ApplierOptions o;
  o.conninfo = config.postgres.dsn;
  o.origin_name_prefix = OriginPrefix(config.cluster_id);
  o.batch = config.apply;
  return o;
}

}  // namespace geosync
