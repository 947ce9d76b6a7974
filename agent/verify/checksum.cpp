// Table checksums; see checksum.h.
#include "agent/verify/checksum.h"

#include <fmt/format.h>

namespace geosync {
namespace {

// "schema.table" quoted, and the expression naming a row's key: its primary
// key columns as a row, or the whole row when there is no primary key.
struct Target {
  std::string from;
  std::string key;
};

Result<Target> TargetOf(PgConn& conn, const std::string& table, bool* missing) {
  auto oid = conn.ExecParams("SELECT pg_catalog.to_regclass($1)::oid", {table});
  if (!oid.ok()) return oid.status().WithContext("looking up table " + table);
  *missing = oid->IsNull(0, 0);
  if (*missing) return Target{};
  const std::string rel = oid->Get(0, 0);
  auto names = conn.ExecParams(
      "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
      "ON n.oid = c.relnamespace WHERE c.oid = $1::oid",
      {rel});
  if (!names.ok()) return names.status().WithContext("naming table " + table);
  Target t;
  t.from = conn.EscapeIdentifier(names->Get(0, 0)) + "." + conn.EscapeIdentifier(names->Get(0, 1));
  auto pk = conn.ExecParams(
      "SELECT a.attname FROM pg_catalog.pg_index i, "
      "unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
      "JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum "
      "WHERE i.indrelid = $1::oid AND i.indisprimary AND a.attrelid = $1::oid ORDER BY k.n",
      {rel});
  if (!pk.ok()) return pk.status().WithContext("reading the primary key of " + table);
  if (pk->rows() == 0) {
    t.key = "t::text";
  } else {
    std::string cols;
    for (int i = 0; i < pk->rows(); ++i) {
      cols += (i ? ", " : "") + std::string("t.") + conn.EscapeIdentifier(pk->Get(i, 0));
    }
    t.key = pk->rows() == 1 ? cols + "::text" : "ROW(" + cols + ")::text";
  }
  return t;
}

Result<uint64_t> ParseCount(const std::string& text) {
  try {
    return static_cast<uint64_t>(std::stoull(text));
  } catch (const std::exception&) {
    return Status::Protocol("expected a count, got \"" + text + "\"");
  }
}

}  // namespace

Status PrepareVerifySession(PgConn& conn) {
  auto r = conn.Exec(
      "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3; "
      "SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET statement_timeout = 0; "
      "SET application_name = 'geosync_verify'");
  return r.ok() ? Status::Ok() : r.status().WithContext("setting up the verify session");
}

Result<std::vector<std::string>> PublishedTables(PgConn& conn, const std::string& publication) {
  auto r = conn.ExecParams(
      "SELECT format('%s.%s', schemaname, tablename) FROM pg_catalog.pg_publication_tables "
      "WHERE pubname = $1 ORDER BY 1",
      {publication});
  if (!r.ok()) return r.status().WithContext("listing the tables of publication " + publication);
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->Get(i, 0));
  return out;
}

Result<TableChecksum> ChecksumTable(PgConn& conn, const std::string& table, int buckets) {
  TableChecksum sum;
  sum.table = table;
  GEOSYNC_ASSIGN_OR_RETURN(Target t, TargetOf(conn, table, &sum.missing));
  if (sum.missing) return sum;
  auto r = conn.Exec(fmt::format(
      "SELECT b, count(*), md5(string_agg(h, '' ORDER BY h)) FROM (SELECT "
      "(hashtext({}) & 2147483647) % {} AS b, md5(t::text) AS h FROM {} t) s GROUP BY b",
      t.key, buckets, t.from));
  if (!r.ok()) return r.status().WithContext("checksumming " + table);
  for (int i = 0; i < r->rows(); ++i) {
    BucketSum b;
    GEOSYNC_ASSIGN_OR_RETURN(b.rows, ParseCount(r->Get(i, 1)));
    b.md5 = r->Get(i, 2);
    sum.rows += b.rows;
    sum.buckets[std::stoi(r->Get(i, 0))] = b;
  }
  return sum;
}

Result<std::vector<std::pair<std::string, std::string>>> BucketRows(PgConn& conn,
                                                                    const std::string& table,
                                                                    int bucket, int buckets) {
  bool missing = false;
  GEOSYNC_ASSIGN_OR_RETURN(Target t, TargetOf(conn, table, &missing));
  std::vector<std::pair<std::string, std::string>> out;
  if (missing) return out;
  auto r = conn.Exec(fmt::format(
      "SELECT {}, md5(t::text) FROM {} t WHERE (hashtext({}) & 2147483647) % {} = {} ORDER BY 1",
      t.key, t.from, t.key, buckets, bucket));
  if (!r.ok()) return r.status().WithContext(fmt::format("listing bucket {} of {}", bucket, table));
  for (int i = 0; i < r->rows(); ++i) out.emplace_back(r->Get(i, 0), r->Get(i, 1));
  return out;
}

nlohmann::json ToJson(const TableChecksum& t) {
  nlohmann::json buckets = nlohmann::json::object();
  for (const auto& [b, s] : t.buckets) buckets[std::to_string(b)] = {s.rows, s.md5};
  return {{"table", t.table}, {"missing", t.missing}, {"rows", t.rows}, {"buckets", buckets}};
}

Result<TableChecksum> TableChecksumFromJson(const nlohmann::json& j) {
  try {
    TableChecksum t;
    t.table = j.at("table").get<std::string>();
    t.missing = j.at("missing").get<bool>();
    t.rows = j.at("rows").get<uint64_t>();
    for (const auto& [k, v] : j.at("buckets").items()) {
      t.buckets[std::stoi(k)] = BucketSum{v.at(0).get<uint64_t>(), v.at(1).get<std::string>()};
    }
    return t;
  } catch (const std::exception& e) {
    return Status::Protocol(fmt::format("a table checksum that does not parse: {}", e.what()));
  }
}

}  // namespace geosync
