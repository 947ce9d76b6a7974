// Table checksums for `geosyncctl verify`: each table's rows are hashed by
// key into N buckets (N the same on every site) and each bucket gets a row
// count and an md5 over the md5s of its rows' text, sorted. Equal buckets
// mean equal rows; a differing bucket is listed key by key (BucketRows) to
// name the rows that differ. PostgreSQL does the work; geosync holds one
// bucket's key list at most, so memory stays bounded on large tables.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/pg/pg_conn.h"
#include "common/status.h"

namespace geosync {

struct BucketSum {
  uint64_t rows = 0;
  std::string md5;
  bool operator==(const BucketSum&) const = default;
};

struct TableChecksum {
  std::string table;  // schema.table
  bool missing = false;
  uint64_t rows = 0;
  std::map<int, BucketSum> buckets;
};

// Session settings that make a row's text the same on every site.
Status PrepareVerifySession(PgConn& conn);
// schema.table of every table in `publication`, sorted.
Result<std::vector<std::string>> PublishedTables(PgConn& conn, const std::string& publication);
// One table's bucket sums; `missing` when it does not exist here.
Result<TableChecksum> ChecksumTable(PgConn& conn, const std::string& table, int buckets);
// (key, md5 of the row) of every row in one bucket, ordered by key.
Result<std::vector<std::pair<std::string, std::string>>> BucketRows(PgConn& conn,
                                                                    const std::string& table,
                                                                    int bucket, int buckets);

nlohmann::json ToJson(const TableChecksum& t);
Result<TableChecksum> TableChecksumFromJson(const nlohmann::json& j);

}  // namespace geosync
