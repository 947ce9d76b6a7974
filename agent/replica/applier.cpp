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

#include "common/ddl_text.h"
#include "common/encoding.h"
#include "common/logical_message.h"

namespace geosync {
namespace {

constexpr std::string_view kXactSetupSql =
    "SELECT pg_catalog.pg_replication_origin_xact_setup($1::pg_catalog.pg_lsn, "
    "$2::pg_catalog.timestamptz), pg_catalog.pg_current_xact_id()";
// Raises a sequence to the shipped value, never lowers it. One row when the
// sequence exists (NULL when it was already high enough), none when it does not.
constexpr std::string_view kSetvalSql =
    "SELECT CASE WHEN s.last_value IS NULL OR s.last_value < $3::pg_catalog.int8 THEN "
    "pg_catalog.setval(pg_catalog.format('%I.%I', s.schemaname, s.sequencename)::"
    "pg_catalog.regclass, $3::pg_catalog.int8, true) END "
    "FROM pg_catalog.pg_sequences s WHERE s.schemaname = $1 AND s.sequencename = $2";

// A libpq error result (or a dead connection) as a Status with its SQLSTATE.
Status PgError(PGconn* conn, const PGresult* r) {
  std::string sqlstate;
  std::string message;
  if (r != nullptr) {
    if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) sqlstate = s;
    if (const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) message = m;
    if (const char* d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)) {
      message += fmt::format(" ({})", d);
    }
    if (message.empty()) message = PQresultErrorMessage(r);
  }
  if (message.empty() && conn != nullptr) message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  if (sqlstate.empty() && (conn == nullptr || PQstatus(conn) != CONNECTION_OK)) {
    sqlstate = "08006";  // connection failure
  }
  if (sqlstate.empty()) sqlstate = "XX000";
  return Status::Postgres(message, sqlstate);
}

Status ConnectionLost(PGconn* conn, std::string_view doing) {
  return PgError(conn, nullptr).WithContext(doing);
}

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

// Decodes the records of one spool unit.
Status DecodeUnit(const std::vector<SpoolRecord>& records, Applier::Unit* unit) {
  *unit = Applier::Unit{};
  unit->position = records.front().position();
  for (size_t i = 0; i < records.size(); ++i) {
    const SpoolRecord& rec = records[i];
    unit->bytes += rec.payload.size();
    auto event = DecodeEvent(rec.payload);
    if (!event.ok()) {
      return event.status().WithContext(
          fmt::format("spool unit {} record {}", unit->position.ToString(), i));
    }
    if (auto* begin = std::get_if<BeginEvent>(&*event)) {
      if (i != 0) return Status::Corruption("Begin inside spool unit " + unit->position.ToString());
      unit->is_txn = true;
      unit->begin = *begin;
    } else if (auto* commit = std::get_if<CommitEvent>(&*event)) {
      if (!unit->is_txn || i + 1 != records.size()) {
        return Status::Corruption("misplaced Commit in spool unit " + unit->position.ToString());
      }
      unit->commit = *commit;
    } else {
      unit->events.push_back(std::move(*event));
    }
  }
  if (unit->is_txn && !unit->commit.end_lsn.valid()) {
    return Status::Corruption("spool unit " + unit->position.ToString() + " has no Commit");
  }
  return Status::Ok();
}

bool IsSqlMessage(const Event& e) {
  const auto* m = std::get_if<MessageEvent>(&e);
  return m && (m->prefix == kDdlPrefix || m->prefix == kSequencesPrefix);
}

}  // namespace

Applier::Applier(ApplierOptions options, Spool* spool)
    : options_(std::move(options)), spool_(spool) {
  options_.batch.batch_max_txns = std::max(1, options_.batch.batch_max_txns);
  options_.statements_per_sync = std::max(1, options_.statements_per_sync);
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
  if (st.code() != Code::kCancelled) {
    // Unit errors already say "PostgreSQL error <SQLSTATE>".
    const bool named = st.message().find("PostgreSQL error " + st.sqlstate()) != std::string::npos;
    spdlog::error("apply stopped: {}", named ? st.message() : st.ToString());
    std::lock_guard lock(mu_);
    last_error_ = st;
  }
  return st;
}

Status Applier::ApplyLoop(std::chrono::milliseconds* delay) {
  while (true) {
    uint64_t seen;
    {
      std::lock_guard lock(mu_);
      if (stop_) return Status::Cancelled("applier stopped");
      seen = durable_seq_;
    }
    std::vector<Unit> group;
    GEOSYNC_RETURN_IF_ERROR(CollectGroup(&group));
    if (group.empty()) {
      // Every group collected before the hold has committed.
      MarkHeldIfReached();
      GEOSYNC_RETURN_IF_ERROR(UpdateFlushed(true));
      WaitForData(seen);
      continue;
    }
    GEOSYNC_RETURN_IF_ERROR(ApplyGroup(group));
    *delay = options_.retry_min;  // progress: the next failure starts a new backoff
    GEOSYNC_RETURN_IF_ERROR(UpdateFlushed(false));
  }
}

bool Applier::Backoff(std::chrono::milliseconds* delay) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, *delay, [&] { return stop_; });
  *delay = std::min(*delay * 2, options_.retry_max);
  return !stop_;
}

void Applier::WaitForData(uint64_t seen) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, options_.idle_poll, [&] { return stop_ || durable_seq_ != seen; });
}

// ---- Session -------------------------------------------------------------------

Status Applier::Connect() {
  Disconnect();
  auto conn = PgConn::Connect(options_.conninfo);
  if (!conn.ok()) return conn.status();
  conn_ = std::move(conn).value();
  GEOSYNC_RETURN_IF_ERROR(SetUpSession());
  GEOSYNC_RETURN_IF_ERROR(LoadOrigin());
  return OpenReader();
}

std::string Applier::SessionSettingsSql() const {
  return fmt::format(
      "SET session_replication_role = replica; SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; "
      "SET extra_float_digits = 3; SET search_path = ''; SET statement_timeout = 0; "
      "SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
      "SET default_transaction_read_only = off; "
      "SET application_name = 'geosync_applier'; SET synchronous_commit = {}",
      options_.batch.synchronous_commit ? "on" : "off");
}

Status Applier::SetUpSession() {
  // Replica role: no user triggers, no FK triggers, no event triggers (so
  // applied DDL is not captured again). Text values round-trip exactly under
  // the capture session's TimeZone, DateStyle and extra_float_digits. An empty
  // search_path, as PostgreSQL's own apply worker uses: every name we send is
  // schema-qualified. Writable even where geosync fenced the database
  // read-only for applications (an old primary that now follows).
  std::string sql = SessionSettingsSql();
  auto r = conn_.Exec(sql);
  check_reorder_ = true;
  if (!r.ok()) return r.status().WithContext("setting up the apply session");
  auto guard =
      conn_.QueryValue("SELECT pg_catalog.to_regproc('_geosync.guard_tables') IS NOT NULL");
  if (!guard.ok()) return guard.status().WithContext("looking for the write guard");
  write_guard_ = *guard == "t";
  return Status::Ok();
}

void Applier::Disconnect() {
  conn_ = PgConn();
  in_pipeline_ = false;
  origin_set_up_ = false;
  cache_.Clear();
  expected_.clear();
  unsynced_ = 0;
  syncs_outstanding_ = 0;
  reader_.reset();
  partial_.clear();
  runs_.clear();
  pending_units_.clear();
}

// Finds the newest epoch's origin and its flushed progress. The next
// transaction's commit LSN is at least the previous one's end LSN, so reading
// the spool after (epoch, end_lsn - 1) resumes exactly at the next one.
Status Applier::LoadOrigin() {
  auto r = conn_.ExecParams(
      "SELECT roname, pg_catalog.pg_replication_origin_progress(roname, true) "
      "FROM pg_catalog.pg_replication_origin WHERE pg_catalog.starts_with(roname, $1)",
      {options_.origin_name_prefix + "_e"});
  if (!r.ok()) return r.status().WithContext("reading replication origins");
  const size_t prefix_len = options_.origin_name_prefix.size() + 2;
  bool found = false;
  uint64_t best_epoch = 0;
  Lsn best_lsn;
  for (int i = 0; i < r->rows(); ++i) {
    std::string name = r->Get(i, 0);
    uint64_t epoch = 0;
    const char* begin = name.data() + prefix_len;
    const char* end = name.data() + name.size();
    auto [p, ec] = std::from_chars(begin, end, epoch);
    if (ec != std::errc() || p != end || begin == end) continue;  // another prefix
    if (found && epoch < best_epoch) continue;
    found = true;
    best_epoch = epoch;
    best_lsn = Lsn();
    if (auto text = r->GetOpt(i, 1)) {
      GEOSYNC_ASSIGN_OR_RETURN(best_lsn, Lsn::Parse(*text));
    }
  }
  if (!found) {
    resume_from_ = Position{};
    spdlog::info("apply: no replication origin {}_e*: applying the spool from its start",
                 options_.origin_name_prefix);
    return Status::Ok();
  }
  resume_from_ = Position{best_epoch, best_lsn.valid() ? Lsn(best_lsn.value() - 1) : Lsn()};
  {
    std::lock_guard lock(mu_);
    applied_ = flushed_ = last_txn_end_ = Position{best_epoch, best_lsn};
  }
  spdlog::info("apply: resuming after {} (origin {}_e{})",
               Position{best_epoch, best_lsn}.ToString(), options_.origin_name_prefix, best_epoch);
  return UseOriginFor(best_epoch);
}

// Sets the session's origin to the one of `epoch`, creating it on the first
// transaction of a new epoch. Never inside a replica transaction.
Status Applier::UseOriginFor(uint64_t epoch) {
  if (origin_set_up_ && origin_epoch_ == epoch) return Status::Ok();
  if (origin_set_up_ && epoch < origin_epoch_) {
    return Status::Fenced(
        fmt::format("spool unit of epoch {} after epoch {} was applied", epoch, origin_epoch_));
  }
  const std::string name = fmt::format("{}_e{}", options_.origin_name_prefix, epoch);
  auto r = conn_.ExecParams(
      "SELECT pg_catalog.pg_replication_origin_create($1) WHERE NOT EXISTS "
      "(SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = $1)",
      {name});
  if (!r.ok()) return r.status().WithContext("creating replication origin " + name);
  if (origin_set_up_) {
    auto reset = conn_.Exec("SELECT pg_catalog.pg_replication_origin_session_reset()");
    if (!reset.ok()) return reset.status().WithContext("resetting the session's origin");
    origin_set_up_ = false;
  }
  auto setup =
      conn_.ExecParams("SELECT pg_catalog.pg_replication_origin_session_setup($1)", {name});
  if (!setup.ok()) return setup.status().WithContext("setting up replication origin " + name);
  origin_set_up_ = true;
  origin_epoch_ = epoch;
  origin_name_ = name;
  spdlog::info("apply: session uses replication origin {}", name);
  return Status::Ok();
}

Status Applier::OpenReader() {
  auto reader = spool_->ReadFrom(resume_from_);
  if (!reader.ok()) return reader.status().WithContext("opening the spool for apply");
  reader_ = std::move(reader).value();
  partial_.clear();
  pending_units_.clear();
  return Status::Ok();
}

// With synchronous_commit = off, commits reach the replica's disk a little
// later; asking the origin's progress with flush = true flushes WAL up to it
// and says what is durable.
Status Applier::UpdateFlushed(bool force) {
  if (!origin_set_up_) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(CheckConnected());
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_flush_check_ < std::chrono::seconds(1)) return Status::Ok();
  Position applied;
  {
    std::lock_guard lock(mu_);
    if (flushed_ == applied_) return Status::Ok();
    applied = applied_;
  }
  last_flush_check_ = now;
  auto r = conn_.ExecParams("SELECT pg_catalog.pg_replication_origin_progress($1, true)",
                            {origin_name_});
  if (!r.ok()) return r.status().WithContext("reading the origin's flushed progress");
  auto text = r->GetOpt(0, 0);
  if (!text) return Status::Ok();
  GEOSYNC_ASSIGN_OR_RETURN(Lsn lsn, Lsn::Parse(*text));
  std::lock_guard lock(mu_);
  Position progress{origin_epoch_, lsn};
  // Heartbeats after the last transaction are flushed once it is.
  flushed_ = progress >= last_txn_end_ ? applied : progress;
  return Status::Ok();
}

// ---- Reading the spool -------------------------------------------------------

void Applier::HoldBefore(Position at, std::chrono::seconds max) {
  std::lock_guard lock(mu_);
  hold_ = at;
  hold_until_ = std::chrono::steady_clock::now() + max;
  held_ = false;
  reached_ = false;
  durable_seq_++;  // an idle loop looks again now
  cv_.notify_all();
  spdlog::info("apply: holding before {} (verify or drill)", at.ToString());
}

void Applier::ReleaseHold() {
  {
    std::lock_guard lock(mu_);
    if (!hold_) return;
    hold_.reset();
    held_ = false;
    reached_ = false;
    durable_seq_++;  // wake the loop
  }
  cv_.notify_all();
  spdlog::info("apply: hold released");
}

bool Applier::Held() const {
  std::lock_guard lock(mu_);
  return held_;
}

bool Applier::HeldBack(const Position& pos) {
  std::lock_guard lock(mu_);
  if (!hold_ || pos < *hold_) return false;
  if (std::chrono::steady_clock::now() > hold_until_) {
    spdlog::warn("apply: the hold before {} expired; applying again", hold_->ToString());
    hold_.reset();
    held_ = false;
    reached_ = false;
    return false;
  }
  reached_ = true;
  return true;
}

void Applier::MarkHeldIfReached() {
  std::lock_guard lock(mu_);
  if (hold_ && reached_ && !held_) {
    held_ = true;
    spdlog::info("apply: holding before {}: everything before it is applied (applied {})",
                 hold_->ToString(), applied_.ToString());
  }
}

Result<bool> Applier::ReadUnit(Unit* unit) {
  if (pending_units_.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadSpoolUnit(unit));
    if (!got) return false;
    pending_units_.push_back(std::move(*unit));
  }
  if (HeldBack(pending_units_.front().position)) return false;
  *unit = std::move(pending_units_.front());
  pending_units_.pop_front();
  return true;
}

// While the server executes a group, the next one is read and decoded.
Status Applier::ReadAhead() {
  uint64_t bytes = 0;
  for (const Unit& u : pending_units_) bytes += u.bytes;
  while (pending_units_.size() < static_cast<size_t>(options_.batch.batch_max_txns) &&
         bytes < options_.batch.batch_max_bytes) {
    Unit unit;
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadSpoolUnit(&unit));
    if (!got) break;
    bytes += unit.bytes;
    pending_units_.push_back(std::move(unit));
  }
  return Status::Ok();
}

Result<bool> Applier::ReadSpoolUnit(Unit* unit) {
  while (true) {
    GEOSYNC_ASSIGN_OR_RETURN(std::optional<SpoolRecord> rec, reader_->Next());
    if (!rec) return false;
    if (rec->first_in_unit() != partial_.empty()) {
      return Status::Corruption(
          fmt::format("spool record at {} breaks the unit structure", rec->position().ToString()));
    }
    const bool last = rec->last_in_unit();
    partial_.push_back(std::move(*rec));
    if (last) break;
  }
  Status st = DecodeUnit(partial_, unit);
  partial_.clear();
  if (!st.ok()) return st;
  return true;
}

// Gathers consecutive units for one replica transaction: up to batch_max_txns
// transactions, batch_max_bytes of spool payload and batch_max_ms spent
// reading, never across an epoch change, with a transaction to skip alone.
// Whatever is durable is applied at once: no waiting for a fuller group.
Status Applier::CollectGroup(std::vector<Unit>* group) {
  const auto start = std::chrono::steady_clock::now();
  const auto max_time = std::chrono::milliseconds(options_.batch.batch_max_ms);
  uint64_t bytes = 0;
  int txns = 0;
  while (true) {
    Unit unit;
    GEOSYNC_ASSIGN_OR_RETURN(bool got, ReadUnit(&unit));
    if (!got) break;
    const bool skip = unit.is_txn && SkipRequested(unit.begin.xid);
    if (!group->empty() && (unit.position.epoch != group->front().position.epoch || skip)) {
      pending_units_.push_front(std::move(unit));
      break;
    }
    txns += unit.is_txn ? 1 : 0;
    bytes += unit.bytes;
    group->push_back(std::move(unit));
    if (skip || txns >= options_.batch.batch_max_txns || bytes >= options_.batch.batch_max_bytes ||
        std::chrono::steady_clock::now() - start >= max_time) {
      break;
    }
  }
  return Status::Ok();
}

bool Applier::SkipRequested(uint32_t xid) const {
  std::lock_guard lock(mu_);
  return skip_xids_.count(xid) > 0;
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
  GEOSYNC_RETURN_IF_ERROR(CheckConnected());
  if (check_reorder_ && !in_pipeline_) GEOSYNC_RETURN_IF_ERROR(CheckReorderSafe());
  current_ = units;
  batch_error_ = Status::Ok();
  const Unit* last_txn = nullptr;
  bool needs_sql = false;
  for (const Unit& u : units) {
    if (u.is_txn) last_txn = &u;
    needs_sql =
        needs_sql || u.is_txn || std::any_of(u.events.begin(), u.events.end(), IsSqlMessage);
  }
  if (!needs_sql) {  // heartbeats only
    RecordApplied(units, 0);
    return Status::Ok();
  }
  std::optional<CollapsePlan> plan;
  // A trigger that fires during apply could see the states collapsing skips.
  if (collapse && reorder_ok_ && !plain_ && !skipping_ && units.size() > 1) {
    std::vector<std::span<const Event>> events;
    events.reserve(units.size());
    for (const Unit& u : units) events.emplace_back(u.events);
    plan = PlanCollapse(events, relations_);
    if (plan->removed == 0) plan.reset();
  }
  if (last_txn) GEOSYNC_RETURN_IF_ERROR(UseOriginFor(last_txn->position.epoch));
  runs_.clear();
  group_row_statements_ = 0;
  group_update_runs_ = false;
  GEOSYNC_RETURN_IF_ERROR(EnterPipeline());
  Status st = SendSimple("BEGIN", {}, Expected{});
  for (size_t i = 0; st.ok() && batch_error_.ok() && i < units.size(); ++i) {
    st = SendUnit(units[i], static_cast<int>(i), plan ? &*plan : nullptr);
  }
  if (st.ok() && batch_error_.ok()) st = FlushRuns();
  runs_.clear();
  if (st.ok()) st = Sync();
  // The server is busy with the group: read the next one meanwhile.
  if (st.ok()) st = ReadAhead();
  if (st.ok()) st = Drain(0);
  if (st.ok()) st = batch_error_;
  if (st.ok()) {
    st = last_txn ? SendCommit(*last_txn) : SendSimple("COMMIT", {}, Expected(Expected::kCommit));
    if (st.ok()) st = Sync();
    if (st.ok()) st = Drain(0);
    if (st.ok() && !batch_error_.ok()) {
      // A deferred constraint or the commit itself failed: with one source
      // transaction, it is that transaction's error.
      st = units.size() == 1 ? UnitError(0, "", batch_error_) : batch_error_;
    }
  }
  if (st.ok()) st = ExitPipeline();
  if (reordered) *reordered = plan.has_value() || group_update_runs_;
  if (!st.ok()) {
    if (!st.retryable()) Rollback();
    return st;
  }
  RecordApplied(units, 1);
  {
    std::lock_guard lock(mu_);
    if (plan) stats_.collapsed += plan->removed;
    stats_.row_statements += group_row_statements_;
  }
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
    if (!batch_error_.ok()) return Status::Ok();  // the rest would be discarded
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
  const StatementCache::Entry& entry = cache_.Get(*rel, shaped->shape, &created);
  Expected expected{Expected::kChange, index, target};
  group_row_statements_++;
  if (change.op != RowOp::kInsert) {
    expected.must_match = true;
    expected.key =
        fmt::format("{} found no row with {}", change.op == RowOp::kUpdate ? "update" : "delete",
                    DescribeKey(*rel, *shaped));
  }
  return SendPrepared(entry, created, shaped->params, std::move(expected));
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
  return SendSimple(sql, {}, Expected(Expected::kCommand, index, " to " + display));
}

Status Applier::SendMessage(const MessageEvent& message, int index) {
  if (message.prefix == kDdlPrefix) return RunDdl(message.content, index);
  if (message.prefix == kSequencesPrefix) return SendSequences(message.content, index);
  return Status::Ok();  // heartbeats and markers: progress only
}

// A DDL message: {"sql": ..., "search_path": ..., "role": ...}, written by
// the trigger of schemas/ddl_capture.sql (only it and superusers may emit
// messages on an initialised primary). Its text is a client's query string:
// only the allow-listed DDL in it runs (common/ddl_text.h), as the role that
// ran it on the source, so it can do no more here than there. A message
// that fails the check is not run, is logged with its transaction and
// position, and counted (ddl_refused); apply goes on. The query string may
// hold several statements, which only the simple query protocol runs, so the
// pipeline is drained and left for it. Prepared statements may depend on the
// old table shapes: all are deallocated afterwards.
Status Applier::RunDdl(const std::string& content, int index) {
  auto parsed = ParseDdlMessage(content);
  if (!parsed.ok()) return UnitError(index, "", parsed.status());
  std::string sql = std::move(parsed->sql);
  const std::string search_path = std::move(parsed->search_path);
  const std::string role = std::move(parsed->role);
  // A caller of _geosync.emit_ddl_message inside DDL can repeat a genuine
  // message: a text runs once per source transaction.
  if (std::find(ddl_texts_.begin(), ddl_texts_.end(), sql) != ddl_texts_.end()) {
    return Status::Ok();
  }
  ddl_texts_.push_back(sql);
  DdlReplay replay = DdlToReplay(sql);
  if (replay.refusal.empty() && role.empty()) {
    replay.refusal =
        "it names no role (written before `geosyncctl init` was rerun on the source, or not by "
        "geosync)";
  }
  if (!replay.refusal.empty()) {
    RefuseDdl(sql, replay.refusal, index);
    return Status::Ok();
  }
  for (const std::string& left_out : replay.skipped) {
    spdlog::info(
        "apply: of DDL [{}], not running [{}]: transaction control, session settings, or data "
        "that arrives as row changes",
        sql.substr(0, 120), left_out.substr(0, 120));
  }
  sql = std::move(replay.sql);
  GEOSYNC_RETURN_IF_ERROR(Sync());
  GEOSYNC_RETURN_IF_ERROR(Drain(0));
  if (!batch_error_.ok()) return Status::Ok();
  GEOSYNC_RETURN_IF_ERROR(ExitPipeline());
  const std::string target = fmt::format(" running DDL [{}] as role {}", sql.substr(0, 120), role);
  // After the DDL, whatever a function it ran set for the session is
  // undone: the apply session's own settings are asserted again.
  // A table it created gets the write guard in the same transaction
  // (agent/pg/write_guard.h).
  std::vector<std::string> steps = {
      fmt::format("SELECT pg_catalog.set_config('search_path', {}, true)",
                  conn_.EscapeLiteral(search_path)),
      "SET LOCAL ROLE " + conn_.EscapeIdentifier(role),
      sql,
      "RESET ROLE; SET LOCAL search_path TO ''; DEALLOCATE ALL",
      SessionSettingsSql(),
  };
  if (write_guard_) steps.push_back("SELECT _geosync.guard_tables()");
  for (const std::string& step : steps) {
    PgResult r(PQexec(conn_.get(), step.c_str()));
    auto status = PQresultStatus(r.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      Status err = PgError(conn_.get(), r.get());
      if (err.retryable()) return err.WithContext("running DDL");
      if (&step == &steps[1]) {
        err = Status(err.code(),
                     fmt::format("{}: role {} ran this DDL on the source; create the role on this "
                                 "site (roles are not replicated) or skip the transaction",
                                 err.message(), role),
                     err.sqlstate());
      }
      batch_error_ = UnitError(index, target, err);
      return EnterPipeline();  // the caller syncs and rolls back
    }
  }
  cache_.Clear();
  // The DDL may have added a trigger that fires during apply.
  reorder_ok_ = false;
  check_reorder_ = true;
  return EnterPipeline();
}

void Applier::RefuseDdl(const std::string& sql, const std::string& why, int index) {
  const Unit* u =
      index >= 0 && static_cast<size_t>(index) < current_.size() ? &current_[index] : nullptr;
  // A group applied again (one at a time, or after a reconnect) meets the
  // same message again: log and count it once.
  std::pair<Position, size_t> key{u ? u->position : Position{}, ddl_texts_.size()};
  if (key <= ddl_refused_upto_) return;
  ddl_refused_upto_ = key;
  std::string who =
      !u          ? "a spool unit"
      : u->is_txn ? fmt::format("xid {} (commit {})", u->begin.xid, u->commit.commit_lsn.ToString())
                  : fmt::format("spool unit {}", u->position.ToString());
  spdlog::warn("apply: refused DDL message of {} at {}: {}; not run: [{}]", who,
               u ? u->position.ToString() : "?", why, sql.substr(0, 200));
  std::lock_guard lock(mu_);
  stats_.ddl_refused++;
}

// A sequence snapshot: [{"schema": ..., "name": ..., "last_value": ...}].
Status Applier::SendSequences(const std::string& content, int index) {
  auto seqs = ParseSequencesMessage(content);
  if (!seqs.ok()) return UnitError(index, "", seqs.status());
  for (const SequenceValue& s : *seqs) {
    bool created = false;
    const auto& entry = cache_.GetFixed("setval", kSetvalSql, 3, &created);
    Datum schema{DatumKind::kText, s.schema};
    Datum name{DatumKind::kText, s.name};
    Datum value{DatumKind::kText, s.last_value};
    const Datum* params[] = {&schema, &name, &value};
    Expected expected{Expected::kSequence, index, " to sequence " + s.schema + "." + s.name};
    GEOSYNC_RETURN_IF_ERROR(SendPrepared(entry, created, params, std::move(expected)));
  }
  return Status::Ok();
}

// Progress is committed with the data: the origin moves to the group's last
// end LSN in the same replica transaction. pg_current_xact_id() gives the
// transaction an xid, so that even an empty one (a skipped transaction)
// writes a commit record that carries the origin's progress.
Status Applier::SendCommit(const Unit& last_txn) {
  GEOSYNC_RETURN_IF_ERROR(SendSimple(
      std::string(kXactSetupSql),
      {last_txn.commit.end_lsn.ToString(), TimestampLiteral(last_txn.commit.commit_time)},
      Expected{}));
  return SendSimple("COMMIT", {}, Expected(Expected::kCommit));
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
  if (index < 0 || static_cast<size_t>(index) >= current_.size()) return cause;
  const Unit& u = current_[index];
  std::string who = u.is_txn ? fmt::format("applying xid {} (commit {})", u.begin.xid,
                                           u.commit.commit_lsn.ToString())
                             : fmt::format("applying spool unit {}", u.position.ToString());
  std::string text = cause.code() == Code::kPostgres ? cause.ToString() : cause.message();
  return Status(cause.code(), fmt::format("{}{}: {}", who, target, text), cause.sqlstate());
}

// ---- Pipeline plumbing -------------------------------------------------------

Status Applier::CheckConnected() const {
  if (conn_.connected()) return Status::Ok();
  return Status::Postgres("the connection to the replica is closed", "08003");
}

Status Applier::EnterPipeline() {
  if (in_pipeline_) return Status::Ok();
  if (PQenterPipelineMode(conn_.get()) != 1) {
    return ConnectionLost(conn_.get(), "entering pipeline mode");
  }
  in_pipeline_ = true;
  return Status::Ok();
}

Status Applier::ExitPipeline() {
  if (!in_pipeline_) return Status::Ok();
  if (PQexitPipelineMode(conn_.get()) != 1) {
    return ConnectionLost(conn_.get(), "leaving pipeline mode");
  }
  in_pipeline_ = false;
  return Status::Ok();
}

Status Applier::SendPrepared(const StatementCache::Entry& entry, bool created,
                             std::span<const Datum* const> params, Expected expected) {
  if (created) {
    static_assert(sizeof(Oid) == sizeof(uint32_t));
    const Oid* types = entry.param_types.empty()
                           ? nullptr
                           : reinterpret_cast<const Oid*>(entry.param_types.data());
    if (PQsendPrepare(conn_.get(), entry.name.c_str(), entry.sql.c_str(), entry.nparams, types) !=
        1) {
      return ConnectionLost(conn_.get(), "sending a prepare");
    }
    expected_.push_back(Expected(Expected::kPrepare, expected.unit, expected.target));
    unsynced_++;
  }
  values_.clear();
  lengths_.clear();
  formats_.clear();
  for (const Datum* d : params) {
    const bool null = d->kind == DatumKind::kNull;
    values_.push_back(null ? nullptr : d->value.c_str());
    lengths_.push_back(static_cast<int>(d->value.size()));
    formats_.push_back(d->kind == DatumKind::kBinary ? 1 : 0);
  }
  if (PQsendQueryPrepared(conn_.get(), entry.name.c_str(), static_cast<int>(params.size()),
                          values_.data(), lengths_.data(), formats_.data(), 0) != 1) {
    return ConnectionLost(conn_.get(), "sending a statement");
  }
  expected_.push_back(std::move(expected));
  if (++unsynced_ >= options_.statements_per_sync) {
    // Two sync segments in flight: the server works on one while we send
    // the next, and neither side's buffers grow without bound.
    GEOSYNC_RETURN_IF_ERROR(Sync());
    GEOSYNC_RETURN_IF_ERROR(Drain(1));
  }
  return Status::Ok();
}

Status Applier::SendSimple(const std::string& sql, std::vector<std::string> params,
                           Expected expected) {
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) != 1) {
    return ConnectionLost(conn_.get(), "sending a statement");
  }
  expected_.push_back(std::move(expected));
  unsynced_++;
  return Status::Ok();
}

Status Applier::Sync() {
  if (PQpipelineSync(conn_.get()) != 1) return ConnectionLost(conn_.get(), "sending a sync");
  expected_.push_back(Expected(Expected::kSync));
  syncs_outstanding_++;
  unsynced_ = 0;
  return Status::Ok();
}

Status Applier::Drain(int keep_syncs) {
  while (syncs_outstanding_ > keep_syncs && !expected_.empty()) {
    Expected e = std::move(expected_.front());
    expected_.pop_front();
    PGresult* raw = PQgetResult(conn_.get());
    if (raw == nullptr) return ConnectionLost(conn_.get(), "reading results");
    PgResult r(raw);
    if (e.kind == Expected::kSync) {
      if (PQresultStatus(raw) != PGRES_PIPELINE_SYNC) {
        return ConnectionLost(conn_.get(), "reading a pipeline sync");
      }
      syncs_outstanding_--;
      continue;
    }
    NoteResult(e, raw);
    while (PGresult* extra = PQgetResult(conn_.get())) PQclear(extra);
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      return batch_error_.retryable() ? batch_error_
                                      : ConnectionLost(conn_.get(), "reading results");
    }
  }
  return Status::Ok();
}

void Applier::NoteResult(const Expected& e, PGresult* r) {
  const ExecStatusType status = PQresultStatus(r);
  if (status == PGRES_PIPELINE_ABORTED) return;  // follows an error already noted
  if (!batch_error_.ok()) return;                // keep the first
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Status err = PgError(conn_.get(), r);
    batch_error_ = err.retryable() ? err : UnitError(e.unit, e.target, err);
    return;
  }
  switch (e.kind) {
    case Expected::kChange:
      if (e.expect_rows > 0) {
        const std::string_view n = PQcmdTuples(r);
        if (n != std::to_string(e.expect_rows)) {
          batch_error_ = UnitError(
              e.unit, e.target,
              Status::NotFound(fmt::format(
                  "row not found: an update by key of {} row(s) changed {}", e.expect_rows, n)));
        }
      } else if (e.must_match && std::string_view(PQcmdTuples(r)) == "0") {
        // Logical replication would log and go on; a DR copy must not
        // silently diverge, so apply stops.
        batch_error_ = UnitError(e.unit, e.target, Status::NotFound("row not found: " + e.key));
      }
      break;
    case Expected::kSequence:
      if (PQntuples(r) == 0) {
        spdlog::warn("apply: sequence snapshot: {} does not exist on the replica",
                     e.target.substr(4));
      }
      break;
    case Expected::kCommit:
      if (std::string_view(PQcmdStatus(r)) != "COMMIT") {
        batch_error_ =
            Status::Postgres("the replica transaction was rolled back at COMMIT", "40000");
      }
      break;
    default:
      break;
  }
}

// Ends a failed replica transaction. Statements prepared in it may or may not
// exist (a prepare after an error is skipped), so all are deallocated.
void Applier::Rollback() {
  cache_.Clear();
  if (!conn_.connected()) return;
  const Status saved = batch_error_;
  Status st = EnterPipeline();
  if (st.ok() && unsynced_ > 0) st = Sync();
  if (st.ok()) st = Drain(0);
  if (st.ok()) st = SendSimple("ROLLBACK", {}, Expected{});
  if (st.ok()) st = SendSimple("DEALLOCATE ALL", {}, Expected{});
  if (st.ok()) st = Sync();
  if (st.ok()) st = Drain(0);
  if (st.ok()) st = ExitPipeline();
  if (!st.ok()) {
    // The server rolls back when the session ends; the next statement sees
    // the closed connection and Run() reconnects.
    spdlog::warn("apply: rolling back: {}; closing the session", st.ToString());
    conn_ = PgConn();
    in_pipeline_ = false;
  }
  batch_error_ = saved;
}

}  // namespace geosync
