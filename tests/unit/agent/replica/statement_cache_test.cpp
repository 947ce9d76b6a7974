// Statement shapes, SQL text and the prepared-statement cache of the applier
// (agent/replica/statement_cache.h), in particular multi-row inserts: their
// SQL, how a run of rows is split into statements, and that each row count
// is its own prepared statement.
#include "agent/replica/statement_cache.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace geosync {
namespace {

const Relation kHistory{
    16500,
    "public",
    "pgbench history",
    'd',
    {Column{"tid", 23, -1, false}, Column{"delta", 23, -1, false}, Column{"note", 25, -1, false}}};

StatementShape InsertShape() {
  StatementShape shape;
  shape.op = RowOp::kInsert;
  shape.set_columns = {0, 1, 2};
  return shape;
}

TEST(StatementCacheTest, MultiRowInsertNumbersParametersRowByRow) {
  EXPECT_EQ(BuildInsertSql(kHistory, InsertShape(), 2),
            "INSERT INTO \"public\".\"pgbench history\" (\"tid\", \"delta\", \"note\") VALUES "
            "($1, $2, $3), ($4, $5, $6)");
  EXPECT_EQ(BuildInsertSql(kHistory, InsertShape(), 1), BuildStatementSql(kHistory, InsertShape()))
      << "a one-row insert is the plain insert";
}

TEST(StatementCacheTest, RunsSplitIntoPowersOfTwoLargestFirst) {
  EXPECT_EQ(ChunkSizes(5, 3, 128), (std::vector<int>{4, 1}));
  EXPECT_EQ(ChunkSizes(300, 3, 128), (std::vector<int>{128, 128, 32, 8, 4}));
  EXPECT_EQ(ChunkSizes(1, 3, 128), (std::vector<int>{1}));
  EXPECT_TRUE(ChunkSizes(0, 3, 128).empty());
  EXPECT_EQ(ChunkSizes(7, 3, 1), (std::vector<int>(7, 1))) << "max 1: row by row";
  EXPECT_EQ(ChunkSizes(100, 3, 100), (std::vector<int>{64, 32, 4}))
      << "a maximum that is not a power of two rounds down";
}

TEST(StatementCacheTest, NoStatementExceedsPostgresParameterLimit) {
  // 1000 columns: at most 65 rows (65000 parameters) per statement.
  const std::vector<int> sizes = ChunkSizes(1000, 1000, 4096);
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0), 1000);
  for (int rows : sizes) EXPECT_LE(rows * 1000, kMaxStatementParams);
  EXPECT_EQ(sizes.front(), 64);
}

TEST(StatementCacheTest, EachRowCountIsItsOwnPreparedStatement) {
  StatementCache cache;
  bool created = false;
  const auto& one = cache.Get(kHistory, InsertShape(), &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(one.nparams, 3);
  const auto& four = cache.Get(kHistory, InsertShape(), &created, 4);
  EXPECT_TRUE(created);
  EXPECT_EQ(four.nparams, 12);
  EXPECT_NE(four.name, one.name);
  EXPECT_EQ(four.sql, BuildInsertSql(kHistory, InsertShape(), 4));
  cache.Get(kHistory, InsertShape(), &created, 4);
  EXPECT_FALSE(created) << "the 4-row statement is prepared once";
  EXPECT_EQ(cache.size(), 2u);
}

const Relation kAccounts{
    16400,
    "public",
    "accounts",
    'd',
    {Column{"id", 23, -1, true}, Column{"owner", 25, -1, false}, Column{"mood", 90001, -1, false}}};

StatementShape UpdateShape(std::vector<int> set) {
  StatementShape shape;
  shape.op = RowOp::kUpdate;
  shape.set_columns = std::move(set);
  shape.where_columns = {0};
  return shape;
}

TEST(StatementCacheTest, MultiRowUpdateJoinsTypedValuesByKey) {
  EXPECT_EQ(BuildUpdateBatchSql(kAccounts, UpdateShape({0, 1}), 2),
            "UPDATE \"public\".\"accounts\" AS geosync_t SET \"id\" = geosync_v.c1, \"owner\" = "
            "geosync_v.c2 FROM (VALUES ($1, $2, $3), ($4, $5, $6)) AS geosync_v (c1, c2, c3) "
            "WHERE geosync_t.\"id\" = geosync_v.c3");
  StatementCache cache;
  bool created = false;
  const auto& entry = cache.Get(kAccounts, UpdateShape({0, 1}), &created, 2);
  EXPECT_EQ(entry.param_types, (std::vector<uint32_t>{23, 25, 23, 23, 25, 23}))
      << "each row's set columns, then its key, typed as the source columns";
  EXPECT_TRUE(cache.Get(kAccounts, UpdateShape({0, 1}), &created).param_types.empty())
      << "one-row statements let PostgreSQL infer the types";
}

TEST(StatementCacheTest, OnlyKeyUpdatesOfBuiltinTypesAreBatched) {
  EXPECT_TRUE(CanBatchUpdates(kAccounts, UpdateShape({0, 1})));
  EXPECT_FALSE(CanBatchUpdates(kAccounts, UpdateShape({0, 1, 2})))
      << "a user type's OID (an enum) is the source's own: not the same on the replica";
  StatementShape full = UpdateShape({0, 1});
  full.where = WhereMode::kFull;
  EXPECT_FALSE(CanBatchUpdates(kAccounts, full)) << "REPLICA IDENTITY FULL matches by text";
  StatementShape del = UpdateShape({});
  del.op = RowOp::kDelete;
  EXPECT_FALSE(CanBatchUpdates(kAccounts, del));
}

}  // namespace
}  // namespace geosync
