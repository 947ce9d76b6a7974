// Statement shapes and SQL for applying row changes, and the per-session cache
// of prepared statement names.
#include "agent/replica/statement_cache.h"

#include <fmt/format.h>

#include <algorithm>

namespace geosync {

std::string QuoteIdent(std::string_view ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string QualifiedName(const Relation& rel) {
  return QuoteIdent(rel.nspname) + "." + QuoteIdent(rel.relname);
}

std::string DisplayName(const Relation& rel) { return rel.nspname + "." + rel.relname; }

namespace {

Status CheckTuple(const Relation& rel, const Tuple& tuple, std::string_view which) {
  if (tuple.size() == rel.columns.size()) return Status::Ok();
  return Status::InvalidArgument(fmt::format("{} tuple of {} has {} columns, the relation has {}",
                                             which, DisplayName(rel), tuple.size(),
                                             rel.columns.size()));
}

// Fills the WHERE part of an update or delete.
Status ShapeWhere(const Relation& rel, const RowChange& change, ShapedChange* out) {
  const bool has_old = change.old_kind == 'K' || change.old_kind == 'O';
  if (has_old) GEOSYNC_RETURN_IF_ERROR(CheckTuple(rel, change.old_tuple, "old"));
  if (change.old_kind == 'O') {
    // REPLICA IDENTITY FULL: the whole old row identifies it. An unchanged
    // TOAST value cannot be compared (it is not in the stream), so skip it.
    out->shape.where = WhereMode::kFull;
    for (size_t i = 0; i < rel.columns.size(); ++i) {
      if (change.old_tuple[i].kind == DatumKind::kUnchangedToast) continue;
      out->shape.where_columns.push_back(static_cast<int>(i));
      out->params.push_back(&change.old_tuple[i]);
    }
    if (out->shape.where_columns.empty()) {
      return Status::InvalidArgument(
          fmt::format("old row of {} has no comparable column", DisplayName(rel)));
    }
    return Status::Ok();
  }
  if (change.old_kind != 0 && !has_old) {
    return Status::InvalidArgument(fmt::format(
        "unknown old tuple kind 0x{:02x} for {}",
        static_cast<unsigned>(static_cast<uint8_t>(change.old_kind)), DisplayName(rel)));
  }
  if (!has_old && change.op == RowOp::kDelete) {
    return Status::InvalidArgument(
        fmt::format("delete from {} carries no old key", DisplayName(rel)));
  }
  const Tuple& source = has_old ? change.old_tuple : change.new_tuple;
  out->shape.where = WhereMode::kKey;
  for (size_t i = 0; i < rel.columns.size(); ++i) {
    if (!rel.columns[i].is_key) continue;
    if (source[i].kind == DatumKind::kUnchangedToast) {
      return Status::InvalidArgument(fmt::format("key column {} of {} is an unchanged TOAST value",
                                                 rel.columns[i].name, DisplayName(rel)));
    }
    out->shape.where_columns.push_back(static_cast<int>(i));
    out->params.push_back(&source[i]);
  }
  if (out->shape.where_columns.empty()) {
    return Status::InvalidArgument(
        fmt::format("{} has no replica identity key columns: cannot apply an update or delete",
                    DisplayName(rel)));
  }
  return Status::Ok();
}

}  // namespace

Result<ShapedChange> ShapeChange(const Relation& rel, const RowChange& change) {
  ShapedChange out;
  out.shape.op = change.op;
  if (change.op == RowOp::kInsert || change.op == RowOp::kUpdate) {
    GEOSYNC_RETURN_IF_ERROR(CheckTuple(rel, change.new_tuple, "new"));
    for (size_t i = 0; i < rel.columns.size(); ++i) {
      if (change.new_tuple[i].kind == DatumKind::kUnchangedToast) {
        if (change.op == RowOp::kInsert) {
          return Status::InvalidArgument(
              fmt::format("insert into {} has an unchanged TOAST value", DisplayName(rel)));
        }
        continue;  // leave the column as it is
      }
      out.shape.set_columns.push_back(static_cast<int>(i));
      out.params.push_back(&change.new_tuple[i]);
    }
  }
  if (change.op == RowOp::kInsert) return out;
  if (change.op == RowOp::kUpdate && out.shape.set_columns.empty()) {
    out.has_statement = false;
    out.params.clear();
    return out;
  }
  GEOSYNC_RETURN_IF_ERROR(ShapeWhere(rel, change, &out));
  return out;
}

namespace {

std::string WhereSql(const Relation& rel, const StatementShape& shape, int first_param) {
  std::string sql;
  int n = first_param;
  if (shape.where == WhereMode::kKey) {
    for (size_t i = 0; i < shape.where_columns.size(); ++i) {
      if (i > 0) sql += " AND ";
      sql += fmt::format("{} = ${}", QuoteIdent(rel.columns[shape.where_columns[i]].name), n++);
    }
    return sql;
  }
  // Text comparison works for every type, including those without an
  // equality operator (json, point); ctid picks exactly one of several
  // identical rows, as the source changed exactly one.
  sql = fmt::format("ctid = (SELECT ctid FROM {} WHERE ", QualifiedName(rel));
  for (size_t i = 0; i < shape.where_columns.size(); ++i) {
    if (i > 0) sql += " AND ";
    sql += fmt::format("{}::pg_catalog.text IS NOT DISTINCT FROM ${}",
                       QuoteIdent(rel.columns[shape.where_columns[i]].name), n++);
  }
  sql += " LIMIT 1)";
  return sql;
}

}  // namespace

std::string BuildStatementSql(const Relation& rel, const StatementShape& shape) {
  const std::string table = QualifiedName(rel);
  std::string sql;
  int n = 1;
  switch (shape.op) {
    case RowOp::kInsert:
      return BuildInsertSql(rel, shape, 1);
    case RowOp::kUpdate: {
      sql = fmt::format("UPDATE {} SET ", table);
      for (size_t i = 0; i < shape.set_columns.size(); ++i) {
        if (i > 0) sql += ", ";
        sql += fmt::format("{} = ${}", QuoteIdent(rel.columns[shape.set_columns[i]].name), n++);
      }
      return sql + " WHERE " + WhereSql(rel, shape, n);
    }
    case RowOp::kDelete:
      return fmt::format("DELETE FROM {} WHERE {}", table, WhereSql(rel, shape, n));
  }
  return sql;
}

std::string BuildInsertSql(const Relation& rel, const StatementShape& shape, int rows) {
  std::string cols;
  for (size_t i = 0; i < shape.set_columns.size(); ++i) {
    if (i > 0) cols += ", ";
    cols += QuoteIdent(rel.columns[shape.set_columns[i]].name);
  }
  std::string sql = fmt::format("INSERT INTO {} ({}) VALUES ", QualifiedName(rel), cols);
  int n = 1;
  for (int row = 0; row < rows; ++row) {
    sql += row > 0 ? ", (" : "(";
    for (size_t i = 0; i < shape.set_columns.size(); ++i) {
      if (i > 0) sql += ", ";
      sql += fmt::format("${}", n++);
    }
    sql += ')';
  }
  return sql;
}

bool CanBatchUpdates(const Relation& rel, const StatementShape& shape) {
  constexpr uint32_t kFirstNormalObjectId = 16384;
  if (shape.op != RowOp::kUpdate || shape.where != WhereMode::kKey) return false;
  if (shape.set_columns.empty() || shape.where_columns.empty()) return false;
  auto builtin = [&rel](int i) {
    const uint32_t type = rel.columns[i].type_oid;
    return type != 0 && type < kFirstNormalObjectId;
  };
  return std::all_of(shape.set_columns.begin(), shape.set_columns.end(), builtin) &&
         std::all_of(shape.where_columns.begin(), shape.where_columns.end(), builtin);
}

std::string BuildUpdateBatchSql(const Relation& rel, const StatementShape& shape, int rows) {
  const size_t nset = shape.set_columns.size();
  const size_t per_row = nset + shape.where_columns.size();
  std::string sql = fmt::format("UPDATE {} AS geosync_t SET ", QualifiedName(rel));
  for (size_t i = 0; i < nset; ++i) {
    if (i > 0) sql += ", ";
    sql += fmt::format("{} = geosync_v.c{}", QuoteIdent(rel.columns[shape.set_columns[i]].name),
                       i + 1);
  }
  sql += " FROM (VALUES ";
  int n = 1;
  for (int row = 0; row < rows; ++row) {
    sql += row > 0 ? ", (" : "(";
    for (size_t i = 0; i < per_row; ++i) {
      if (i > 0) sql += ", ";
      sql += fmt::format("${}", n++);
    }
    sql += ')';
  }
  sql += ") AS geosync_v (";
  for (size_t i = 0; i < per_row; ++i) sql += fmt::format("{}c{}", i > 0 ? ", " : "", i + 1);
  sql += ") WHERE ";
  for (size_t i = 0; i < shape.where_columns.size(); ++i) {
    if (i > 0) sql += " AND ";
    sql += fmt::format("geosync_t.{} = geosync_v.c{}",
                       QuoteIdent(rel.columns[shape.where_columns[i]].name), nset + i + 1);
  }
  return sql;
}

std::vector<int> ChunkSizes(int rows, int columns, int max_rows) {
  int cap = std::max(1, max_rows);
  if (columns > 0) cap = std::min(cap, kMaxStatementParams / columns);
  int largest = 1;
  while (largest * 2 <= cap) largest *= 2;
  std::vector<int> sizes;
  for (int size = largest; rows > 0; size /= 2) {
    while (rows >= size) {
      sizes.push_back(size);
      rows -= size;
    }
  }
  return sizes;
}

std::string DescribeKey(const Relation& rel, const ShapedChange& change) {
  constexpr size_t kMaxValue = 64;
  std::string names;
  std::string values;
  const size_t first =
      change.shape.set_columns.size() * (change.shape.op == RowOp::kUpdate ? 1 : 0);
  for (size_t i = 0; i < change.shape.where_columns.size(); ++i) {
    if (i > 0) {
      names += ", ";
      values += ", ";
    }
    names += rel.columns[change.shape.where_columns[i]].name;
    const Datum* d = first + i < change.params.size() ? change.params[first + i] : nullptr;
    if (d == nullptr || d->kind == DatumKind::kNull) {
      values += "NULL";
    } else if (d->kind == DatumKind::kBinary) {
      values += "<binary>";
    } else if (d->value.size() > kMaxValue) {
      values.append(d->value, 0, kMaxValue);
      values.append("...");
    } else {
      values += d->value;
    }
  }
  return fmt::format("({})=({})", names, values);
}

const StatementCache::Entry& StatementCache::Get(const Relation& rel, const StatementShape& shape,
                                                 bool* created, int rows) {
  // Names and column names cannot contain NUL, so it separates fields.
  std::string key;
  key += static_cast<char>(shape.op);
  key += static_cast<char>(shape.where);
  auto add = [&key](std::string_view field) {
    key.append(field);
    key.push_back('\0');
  };
  add(rel.nspname);
  add(rel.relname);
  for (int i : shape.set_columns) add(rel.columns[i].name);
  key.push_back('\1');
  for (int i : shape.where_columns) add(rel.columns[i].name);
  if (rows > 1) {
    key.push_back('\3');
    key += std::to_string(rows);
  }
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    *created = false;
    return it->second;
  }
  if (rows > 1 && shape.op == RowOp::kUpdate) {
    std::vector<uint32_t> types;
    for (int row = 0; row < rows; ++row) {
      for (int i : shape.set_columns) types.push_back(rel.columns[i].type_oid);
      for (int i : shape.where_columns) types.push_back(rel.columns[i].type_oid);
    }
    const int nparams = static_cast<int>(types.size());
    return Insert(std::move(key), BuildUpdateBatchSql(rel, shape, rows), nparams, created,
                  std::move(types));
  }
  if (rows > 1) {
    const int nparams = static_cast<int>(shape.set_columns.size()) * rows;
    return Insert(std::move(key), BuildInsertSql(rel, shape, rows), nparams, created);
  }
  const int nparams = static_cast<int>(shape.set_columns.size() + shape.where_columns.size());
  return Insert(std::move(key), BuildStatementSql(rel, shape), nparams, created);
}

const StatementCache::Entry& StatementCache::GetFixed(std::string_view key, std::string_view sql,
                                                      int nparams, bool* created) {
  std::string k(1, '\2');
  k.append(key);
  auto it = entries_.find(k);
  if (it != entries_.end()) {
    *created = false;
    return it->second;
  }
  return Insert(std::move(k), std::string(sql), nparams, created);
}

const StatementCache::Entry& StatementCache::Insert(std::string key, std::string sql, int nparams,
                                                    bool* created, std::vector<uint32_t> types) {
  *created = true;
  Entry entry{fmt::format("g{}", next_id_++), std::move(sql), nparams, std::move(types)};
  return entries_.emplace(std::move(key), std::move(entry)).first->second;
}

}  // namespace geosync
