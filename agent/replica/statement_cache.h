// How a row change becomes a prepared statement on the replica: the statement
// shape (which columns are set, which identify the row), its SQL text, and the
// per-session cache of prepared statement names g1, g2... Pure: no libpq here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/change.h"
#include "common/status.h"

namespace geosync {

// "accounts" -> "\"accounts\"", doubling embedded quotes.
std::string QuoteIdent(std::string_view ident);
// "\"public\".\"accounts\"": what statements name.
std::string QualifiedName(const Relation& rel);
// "public.accounts": what messages name.
std::string DisplayName(const Relation& rel);

// How an update or delete finds its row.
enum class WhereMode : uint8_t {
  kKey,   // key = $n for each replica identity column (indexable)
  kFull,  // REPLICA IDENTITY FULL: one row whose columns' text forms all match
};

// The columns a statement uses, as indexes into the Relation's columns.
struct StatementShape {
  RowOp op = RowOp::kInsert;
  std::vector<int> set_columns;    // insert: inserted columns; update: SET columns
  std::vector<int> where_columns;  // update and delete: identifying columns
  WhereMode where = WhereMode::kKey;
};

// A change ready to execute: its shape, and one parameter per $n in order
// (set columns first, then where columns). Datums point into the RowChange.
struct ShapedChange {
  StatementShape shape;
  std::vector<const Datum*> params;
  // False for an update whose every column is an unchanged TOAST value:
  // there is nothing to set.
  bool has_statement = true;
};

// Chooses the statement for `change` on `rel`:
//  - insert: every column of the new tuple;
//  - update: SET every new-tuple column except unchanged TOAST values;
//  - update/delete WHERE: old_kind 'O' (REPLICA IDENTITY FULL) compares every
//    old column as text; 'K' uses the key columns of the old tuple; no old
//    tuple (the key did not change) uses the key columns of the new tuple.
// InvalidArgument when the tuples do not match the relation or no key exists.
Result<ShapedChange> ShapeChange(const Relation& rel, const RowChange& change);

// The SQL text of a statement with text parameters $1..$n.
//   INSERT INTO t (a, b) VALUES ($1, $2)
//   UPDATE t SET a = $1 WHERE k = $2
//   DELETE FROM t WHERE ctid = (SELECT ctid FROM t WHERE a::text IS NOT
//     DISTINCT FROM $1 AND ... LIMIT 1)
std::string BuildStatementSql(const Relation& rel, const StatementShape& shape);

// A multi-row insert of `rows` rows (rows >= 1), parameters row by row:
//   INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)
std::string BuildInsertSql(const Relation& rel, const StatementShape& shape, int rows);

// Whether updates of this shape can be sent many rows per statement: by key,
// and every parameter of a built-in type (OID below 16384, the same on every
// PostgreSQL), so that the VALUES list can be typed without the catalog.
bool CanBatchUpdates(const Relation& rel, const StatementShape& shape);

// A multi-row update by key (rows >= 2), parameters row by row, each row its
// set columns then its key columns, typed as the columns' types:
//   UPDATE t AS geosync_t SET a = geosync_v.c1 FROM (VALUES ($1, $2), ($3, $4))
//     AS geosync_v (c1, c2) WHERE geosync_t.k = geosync_v.c2
// The keys of one statement must be distinct.
std::string BuildUpdateBatchSql(const Relation& rel, const StatementShape& shape, int rows);

// PostgreSQL's limit on the parameters of one statement.
inline constexpr int kMaxStatementParams = 65535;

// How a run of `rows` rows of `columns` parameters each is sent: statement
// sizes in order, each a power of two (so few distinct statements get
// prepared), at most `max_rows` rows and kMaxStatementParams parameters;
// largest first, summing to `rows`. 5 rows, max 128 -> {4, 1}.
std::vector<int> ChunkSizes(int rows, int columns, int max_rows);

// "(id, region)=(42, eu)" for messages; long values are cut.
std::string DescribeKey(const Relation& rel, const ShapedChange& change);

// Prepared statements of one session, keyed by table name, operation and
// column shape (never by OID). Clear() after DEALLOCATE ALL or reconnecting.
class StatementCache {
 public:
  struct Entry {
    std::string name;  // g1, g2...
    std::string sql;
    int nparams = 0;
    // Parameter type OIDs for the prepare; empty: PostgreSQL infers them.
    std::vector<uint32_t> param_types;
  };

  // The entry for this shape; *created is true when it is new and the caller
  // must prepare it before use.
  // `rows` > 1: a multi-row insert (BuildInsertSql) or update by key
  // (BuildUpdateBatchSql).
  const Entry& Get(const Relation& rel, const StatementShape& shape, bool* created, int rows = 1);
  // The entry for a fixed statement (not per table), e.g. sequence setval.
  const Entry& GetFixed(std::string_view key, std::string_view sql, int nparams, bool* created);
  void Clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  const Entry& Insert(std::string key, std::string sql, int nparams, bool* created,
                      std::vector<uint32_t> types = {});

  std::unordered_map<std::string, Entry> entries_;
  uint64_t next_id_ = 1;
};

}  // namespace geosync
