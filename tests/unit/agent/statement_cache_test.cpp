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
  EXPECT_EQ(InsertChunkSizes(5, 3, 128), (std::vector<int>{4, 1}));
  EXPECT_EQ(InsertChunkSizes(300, 3, 128), (std::vector<int>{128, 128, 32, 8, 4}));
  EXPECT_EQ(InsertChunkSizes(1, 3, 128), (std::vector<int>{1}));
  EXPECT_TRUE(InsertChunkSizes(0, 3, 128).empty());
  EXPECT_EQ(InsertChunkSizes(7, 3, 1), (std::vector<int>(7, 1))) << "max 1: row by row";
  EXPECT_EQ(InsertChunkSizes(100, 3, 100), (std::vector<int>{64, 32, 4}))
      << "a maximum that is not a power of two rounds down";
}

TEST(StatementCacheTest, NoStatementExceedsPostgresParameterLimit) {
  // 1000 columns: at most 65 rows (65000 parameters) per statement.
  const std::vector<int> sizes = InsertChunkSizes(1000, 1000, 4096);
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

}  // namespace
}  // namespace geosync
