// The applier's multi-row statements: runs of inserts into one table, and of
// updates by key, are queued and sent as one statement per up to
// apply.rows_per_statement rows (docs/apply.md, "Multi-row statements").
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/replica/applier.h"

namespace geosync {
namespace {

// The identity of an update's row: its key parameters, length-prefixed.
std::string RowKey(const ShapedChange& shaped) {
  std::string key;
  const size_t first = shaped.shape.set_columns.size();
  for (size_t i = first; i < shaped.params.size(); ++i) {
    const Datum& d = *shaped.params[i];
    key += static_cast<char>(d.kind);
    key += std::to_string(d.value.size());
    key += ':';
    key += d.value;
  }
  return key;
}

}  // namespace

// Sending queued inserts after later changes to other tables, and collapsing
// a row's changes, are safe unless something runs during apply that could
// see the difference: under session_replication_role = replica that is only
// a trigger or rule enabled ALWAYS or REPLICA.
Status Applier::CheckReorderSafe() {
  auto r = s_->conn.Exec(
      "SELECT pg_catalog.format('%s %s on %s', x.kind, x.name, x.rel::pg_catalog.regclass) "
      "FROM (SELECT tgrelid AS rel, 'trigger' AS kind, tgname::pg_catalog.text AS name "
      "      FROM pg_catalog.pg_trigger WHERE NOT tgisinternal AND tgenabled IN ('A', 'R') "
      "      UNION ALL "
      "      SELECT ev_class, 'rule', rulename::pg_catalog.text FROM pg_catalog.pg_rewrite "
      "      WHERE ev_type <> '1' AND ev_enabled IN ('A', 'R')) x LIMIT 1");
  if (!r.ok()) return r.status().WithContext("looking for triggers that fire during apply");
  const bool safe = r->rows() == 0;
  std::string blocker = safe ? "" : r->Get(0, 0);
  if (!safe && blocker != reorder_blocker_) {
    spdlog::info(
        "apply: {} fires during apply: changes are applied in source order, without "
        "collapsing, and multi-row statements only carry runs of consecutive changes to one "
        "table",
        blocker);
  }
  reorder_blocker_ = std::move(blocker);
  reorder_ok_ = safe;
  if (sessions_.size() > 1) GEOSYNC_RETURN_IF_ERROR(LoadTableDeps());
  check_reorder_ = false;
  return Status::Ok();
}

// What ties the rows of each table on the replica, for parallel apply
// (writeset.h): a unique index other than the identity (the replica identity
// index, else the primary key), an exclusion constraint or a foreign key, and
// for keyless tables any unique index at all.
Status Applier::LoadTableDeps() {
  constexpr std::string_view kTies =
      "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE (k.conrelid = c.oid AND "
      "k.contype IN ('f', 'x')) OR k.confrelid = c.oid)";
  auto r = s_->conn.Exec(fmt::format(
      "SELECT n.nspname, c.relname, "
      "  EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique "
      "          AND NOT (i.indisreplident OR (i.indisprimary AND NOT EXISTS ("
      "            SELECT 1 FROM pg_catalog.pg_index r WHERE r.indrelid = c.oid "
      "            AND r.indisreplident)))) OR {0}, "
      "  EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique) "
      "  OR {0} "
      "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' "
      "AND NOT pg_catalog.starts_with(n.nspname, 'pg_')",
      kTies));
  if (!r.ok()) return r.status().WithContext("reading the replica's unique indexes and keys");
  table_deps_.clear();
  keyless_deps_.clear();
  for (int i = 0; i < r->rows(); ++i) {
    std::string name = r->Get(i, 0);
    name.push_back('\0');
    name += r->Get(i, 1);
    table_deps_[name] = r->Get(i, 2) == "t" ? TableDeps::kTable : TableDeps::kRows;
    keyless_deps_[name] = r->Get(i, 3) == "t" ? TableDeps::kBarrier : TableDeps::kRows;
  }
  return Status::Ok();
}

bool Applier::Batchable(const Relation& rel, const StatementShape& shape) const {
  if (options_.batch.rows_per_statement < 2) return false;
  if (shape.op == RowOp::kInsert) return true;
  // Rows of one UPDATE are changed in the join's order, not the source's: a
  // unique index on another column could tell, so plain apply sends each.
  return !plain_ && CanBatchUpdates(rel, shape);
}

// Rows of one table keep their order: a table has at most one run, and a
// change to it that does not fit the run (another operation or column set,
// an update of a key already in the run) sends the run first. Without
// reorder_ok_, only one table has a run at a time, so nothing is reordered.
Status Applier::QueueRow(const Relation& rel, ShapedChange shaped, int index) {
  std::string key = shaped.shape.op == RowOp::kUpdate ? RowKey(shaped) : std::string();
  auto run = std::find_if(runs_.begin(), runs_.end(),
                          [&](const PendingRun& p) { return p.rel_oid == rel.oid; });
  if (run != runs_.end() &&
      (run->shape.op != shaped.shape.op || run->shape.set_columns != shaped.shape.set_columns ||
       run->shape.where_columns != shaped.shape.where_columns || run->keys.contains(key))) {
    GEOSYNC_RETURN_IF_ERROR(FlushRuns(rel.oid));
    run = runs_.end();
  }
  if (run == runs_.end()) {
    if (!reorder_ok_) GEOSYNC_RETURN_IF_ERROR(FlushRuns());
    runs_.push_back(PendingRun{rel.oid, std::move(shaped.shape), {}, 0, index, {}});
    run = runs_.end() - 1;
  }
  run->params.insert(run->params.end(), shaped.params.begin(), shaped.params.end());
  if (run->shape.op == RowOp::kUpdate) run->keys.insert(std::move(key));
  if (++run->rows >= options_.batch.rows_per_statement) return FlushRuns(rel.oid);
  return Status::Ok();
}

Status Applier::FlushRuns(uint32_t rel_oid) {
  if (runs_.empty()) return Status::Ok();
  std::vector<PendingRun> runs;
  if (rel_oid == 0) {
    runs.swap(runs_);
  } else {
    auto run = std::find_if(runs_.begin(), runs_.end(),
                            [&](const PendingRun& p) { return p.rel_oid == rel_oid; });
    if (run == runs_.end()) return Status::Ok();
    runs.push_back(std::move(*run));
    runs_.erase(run);
  }
  for (const PendingRun& run : runs) {
    GEOSYNC_RETURN_IF_ERROR(SendRun(run));
    if (!s_->pipeline.error().ok()) break;
  }
  return Status::Ok();
}

Status Applier::SendRun(const PendingRun& run) {
  GEOSYNC_ASSIGN_OR_RETURN(const Relation* rel, FindRelation(run.rel_oid, run.unit));
  const std::string target = " to " + DisplayName(*rel);
  const bool update = run.shape.op == RowOp::kUpdate;
  const int per_row = static_cast<int>(run.shape.set_columns.size() +
                                       (update ? run.shape.where_columns.size() : 0));
  size_t first = 0;
  for (int rows : ChunkSizes(run.rows, per_row, options_.batch.rows_per_statement)) {
    bool created = false;
    const StatementCache::Entry& entry = s_->cache.Get(*rel, run.shape, &created, rows);
    const size_t count = static_cast<size_t>(rows) * static_cast<size_t>(per_row);
    Expected expected{Expected::kChange, run.unit, target};
    if (update) {
      expected.must_match = true;
      expected.expect_rows = rows;
      group_update_runs_ = true;
    }
    GEOSYNC_RETURN_IF_ERROR(s_->pipeline.SendPrepared(
        entry, created, std::span(run.params).subspan(first, count), std::move(expected)));
    first += count;
    group_row_statements_++;
  }
  return Status::Ok();
}

}  // namespace geosync
