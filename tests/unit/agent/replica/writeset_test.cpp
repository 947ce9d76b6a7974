// Writesets for parallel apply: which groups may run at once. Rows by key,
// keys changed by an update, REPLICA IDENTITY FULL, keyless tables, tables
// tied by other unique indexes or foreign keys, and the barriers.
#include "agent/replica/writeset.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace geosync {
namespace {

Datum T(std::string v) { return Datum{DatumKind::kText, std::move(v)}; }
Column Col(std::string name, bool key = false) { return Column{std::move(name), 23, -1, key}; }

const Relation kAccounts{1, "public", "accounts", 'd', {Col("id", true), Col("balance")}};
const Relation kHistory{2, "public", "history", 'd', {Col("n"), Col("note")}};
const Relation kFull{3, "public", "full", 'f', {Col("a"), Col("b")}};
const Relation kTied{4, "public", "tied", 'd', {Col("id", true), Col("email")}};

RowChange Insert(uint32_t oid, Tuple row) { return {RowOp::kInsert, oid, 0, {}, std::move(row)}; }
RowChange Update(uint32_t oid, char old_kind, Tuple old_row, Tuple row) {
  return {RowOp::kUpdate, oid, old_kind, std::move(old_row), std::move(row)};
}
RowChange Delete(uint32_t oid, char old_kind, Tuple old_row) {
  return {RowOp::kDelete, oid, old_kind, std::move(old_row), {}};
}

ApplyUnit Txn(std::vector<Event> events) {
  ApplyUnit u;
  u.is_txn = true;
  u.events = std::move(events);
  return u;
}

class WritesetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const Relation& r : {kAccounts, kHistory, kFull, kTied}) sent_[r.oid] = r;
  }
  Writeset Of(const ApplyUnit& unit) {
    Writeset w;
    std::unordered_map<uint32_t, Relation> group;
    AddToWriteset(unit, sent_, &group, deps_, &w);
    return w;
  }

  std::unordered_map<uint32_t, Relation> sent_;
  TableDepsFn deps_ = [](const Relation& rel) {
    return rel.oid == kTied.oid ? TableDeps::kTable : TableDeps::kRows;
  };
};

TEST_F(WritesetTest, DifferentRowsDoNotConflictAndTheSameRowDoes) {
  Writeset a = Of(Txn({Update(1, 0, {}, {T("1"), T("10")})}));
  Writeset b = Of(Txn({Update(1, 0, {}, {T("2"), T("10")})}));
  Writeset c = Of(Txn({Delete(1, 'K', {T("1"), Datum{}})}));
  EXPECT_FALSE(a.Conflicts(b));
  EXPECT_TRUE(a.Conflicts(c)) << "an update and a delete of row 1";
  EXPECT_FALSE(a.barrier || b.barrier || c.barrier);
}

TEST_F(WritesetTest, AnUpdateThatChangesTheKeyNamesBothKeys) {
  Writeset move = Of(Txn({Update(1, 'K', {T("1"), Datum{}}, {T("7"), T("0")})}));
  EXPECT_TRUE(move.Conflicts(Of(Txn({Insert(1, {T("7"), T("0")})}))));
  EXPECT_TRUE(move.Conflicts(Of(Txn({Insert(1, {T("1"), T("0")})}))));
  EXPECT_FALSE(move.Conflicts(Of(Txn({Insert(1, {T("8"), T("0")})}))));
}

TEST_F(WritesetTest, FullIdentityRowsAreTheirWholeContents) {
  Writeset a = Of(Txn({Update(3, 'O', {T("x"), T("1")}, {T("x"), T("2")})}));
  EXPECT_TRUE(a.Conflicts(Of(Txn({Delete(3, 'O', {T("x"), T("2")})}))));
  EXPECT_FALSE(a.Conflicts(Of(Txn({Delete(3, 'O', {T("x"), T("3")})}))));
}

TEST_F(WritesetTest, KeylessInsertsNeverConflictButAnUpdateTakesTheTable) {
  Writeset a = Of(Txn({Insert(2, {T("1"), T("a")})}));
  Writeset b = Of(Txn({Insert(2, {T("1"), T("a")})}));
  EXPECT_FALSE(a.Conflicts(b)) << "no key and no unique index: inserts commute";
  Writeset update = Of(Txn({Update(2, 'O', {T("1"), T("a")}, {T("1"), T("b")})}));
  EXPECT_TRUE(update.Conflicts(a));
}

TEST_F(WritesetTest, TiedTableConflictsWithAnyChangeToIt) {
  Writeset a = Of(Txn({Insert(4, {T("1"), T("x@example")})}));
  Writeset b = Of(Txn({Insert(4, {T("2"), T("y@example")})}));
  Writeset other = Of(Txn({Insert(1, {T("2"), T("0")})}));
  EXPECT_TRUE(a.Conflicts(b)) << "another unique index could tie the rows";
  EXPECT_FALSE(a.Conflicts(other));
}

TEST_F(WritesetTest, UnreadableKeyTakesTheTable) {
  Writeset toast = Of(Txn({Update(1, 0, {}, {Datum{DatumKind::kUnchangedToast, ""}, T("1")})}));
  EXPECT_TRUE(toast.Conflicts(Of(Txn({Insert(1, {T("99"), T("0")})}))));
}

TEST_F(WritesetTest, BarriersConflictWithEverything) {
  Writeset row = Of(Txn({Insert(1, {T("1"), T("0")})}));
  ApplyUnit heartbeat;  // not a transaction: only a position
  heartbeat.events.push_back(MessageEvent{false, Lsn(), "geosync.heartbeat", "{}"});
  EXPECT_FALSE(Of(heartbeat).barrier);
  EXPECT_FALSE(Of(heartbeat).Conflicts(row));
  EXPECT_TRUE(Of(Txn({MessageEvent{true, Lsn(), "geosync.sequences", "x"}})).barrier);
  EXPECT_TRUE(Of(Txn({TruncateEvent{false, false, {1}}})).barrier);
  EXPECT_TRUE(Of(Txn({MessageEvent{true, Lsn(), "geosync.ddl", "x"}})).barrier);
  EXPECT_TRUE(Of(Txn({Insert(99, {T("1")})})).barrier) << "a relation never described";
  Relation changed = kAccounts;
  changed.columns.push_back(Col("added"));
  EXPECT_TRUE(Of(Txn({changed})).barrier) << "a changed descriptor";
  EXPECT_FALSE(Of(Txn({kAccounts})).barrier) << "the same descriptor again";
  Writeset barrier = Of(Txn({TruncateEvent{false, false, {2}}}));
  EXPECT_TRUE(barrier.Conflicts(row));
  EXPECT_TRUE(row.Conflicts(barrier));
  deps_ = [](const Relation&) { return TableDeps::kBarrier; };
  EXPECT_TRUE(Of(Txn({Insert(1, {T("1"), T("0")})})).barrier);
}

TEST_F(WritesetTest, MergeUnitesRowsTablesAndBarriers) {
  Writeset group = Of(Txn({Insert(1, {T("1"), T("0")})}));
  group.Merge(Of(Txn({Insert(4, {T("1"), T("a")})})));
  EXPECT_TRUE(group.Conflicts(Of(Txn({Update(1, 0, {}, {T("1"), T("5")})}))));
  EXPECT_TRUE(group.Conflicts(Of(Txn({Insert(4, {T("9"), T("b")})}))));
  EXPECT_FALSE(group.Conflicts(Of(Txn({Insert(1, {T("2"), T("0")})}))));
}

}  // namespace
}  // namespace geosync
