// Collapsing an apply group's changes per row (agent/replica/change_collapse.h):
// what is dropped, what is sent instead and where, what is left alone, and a
// randomized check that a collapsed group leaves a keyed table exactly as the
// plain ordered group does.
#include "agent/replica/change_collapse.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace geosync {
namespace {

constexpr uint32_t kInt4 = 23;
constexpr uint32_t kText = 25;
constexpr uint32_t kAccounts = 16400;
constexpr uint32_t kBranches = 16401;
constexpr uint32_t kEvents = 16402;  // REPLICA IDENTITY FULL
constexpr uint32_t kLog = 16403;     // no key

Datum T(std::string value) { return Datum{DatumKind::kText, std::move(value)}; }
Datum Null() { return Datum{DatumKind::kNull, ""}; }
Datum Toast() { return Datum{DatumKind::kUnchangedToast, ""}; }

Relation Rel(uint32_t oid, std::string name, char identity, bool keyed) {
  Relation r;
  r.oid = oid;
  r.nspname = "public";
  r.relname = std::move(name);
  r.replica_identity = identity;
  r.columns = {Column{"id", kInt4, -1, keyed}, Column{"owner", kText, -1, false},
               Column{"balance", kInt4, -1, false}};
  return r;
}

const Relation kAccountsRel = Rel(kAccounts, "accounts", 'd', true);
const Relation kBranchesRel = Rel(kBranches, "branches", 'd', true);
// pgoutput marks every column as key under REPLICA IDENTITY FULL.
const Relation kEventsRel = [] {
  Relation r = Rel(kEvents, "events", 'f', true);
  for (Column& c : r.columns) c.is_key = true;
  return r;
}();
const Relation kLogRel = Rel(kLog, "log", 'd', false);

RowChange Insert(uint32_t oid, Tuple row) {
  return RowChange{RowOp::kInsert, oid, 0, {}, std::move(row)};
}
RowChange Update(uint32_t oid, Tuple row) {
  return RowChange{RowOp::kUpdate, oid, 0, {}, std::move(row)};
}
RowChange UpdateKey(uint32_t oid, std::string old_id, Tuple row) {
  return RowChange{
      RowOp::kUpdate, oid, 'K', {T(std::move(old_id)), Null(), Null()}, std::move(row)};
}
RowChange Delete(uint32_t oid, std::string id) {
  return RowChange{RowOp::kDelete, oid, 'K', {T(std::move(id)), Null(), Null()}, {}};
}
Tuple Row(std::string id, std::string owner, std::string balance) {
  return {T(std::move(id)), T(std::move(owner)), T(std::move(balance))};
}

using Units = std::vector<std::vector<Event>>;

std::unordered_map<uint32_t, Relation> Known() {
  return {
      {kAccounts, kAccountsRel}, {kBranches, kBranchesRel}, {kEvents, kEventsRel}, {kLog, kLogRel}};
}

CollapsePlan Plan(const Units& units,
                  const std::unordered_map<uint32_t, Relation>& known = Known()) {
  std::vector<std::span<const Event>> spans(units.begin(), units.end());
  return PlanCollapse(spans, known);
}

// "[K1]": the old tuple's kind and the values it holds.
std::string OldKey(const RowChange& c) {
  std::string s = "[";
  s += c.old_kind;
  for (const Datum& d : c.old_tuple) {
    if (d.kind == DatumKind::kText) s += d.value;
  }
  return s + "]";
}

// What the applier sends for the group, in order: "unit.event:" and the change.
std::vector<std::string> Sent(const Units& units, const CollapsePlan& plan) {
  auto text = [](const RowChange& c) {
    std::string s(1, static_cast<char>(c.op));
    if (c.old_kind != 0) s += OldKey(c);
    s += "(";
    for (size_t i = 0; i < c.new_tuple.size(); ++i) {
      if (i > 0) s += ",";
      const Datum& d = c.new_tuple[i];
      s += d.kind == DatumKind::kUnchangedToast ? "u" : d.kind == DatumKind::kNull ? "-" : d.value;
    }
    return s + ")";
  };
  std::vector<std::string> out;
  for (size_t u = 0; u < units.size(); ++u) {
    for (size_t e = 0; e < units[u].size(); ++e) {
      const auto* change = std::get_if<RowChange>(&units[u][e]);
      if (change == nullptr) continue;
      const int action = plan.action(u, e);
      if (action == CollapsePlan::kDrop) continue;
      const RowChange& sent = action == CollapsePlan::kKeep ? *change : plan.replacements[action];
      out.push_back(std::to_string(u) + "." + std::to_string(e) + ":" + text(sent));
    }
  }
  return out;
}

TEST(ChangeCollapseTest, UpdateChainOfOneRowBecomesOneUpdateAtTheLastPlace) {
  Units units = {{kBranchesRel, Update(kBranches, Row("1", "b", "10"))},
                 {kBranchesRel, Update(kBranches, Row("1", "b", "25"))},
                 {kBranchesRel, Update(kBranches, Row("1", "b", "40"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(plan.removed, 2u) << "three updates of branch 1 are sent as one";
  EXPECT_EQ(Sent(units, plan), std::vector<std::string>{"2.1:U[K1](1,b,40)"})
      << "the one update carries the last tuple, by key, where the last update was";
}

TEST(ChangeCollapseTest, InsertThenUpdatesBecomesOneInsertOfTheFinalRow) {
  Units units = {{kAccountsRel, Insert(kAccounts, Row("7", "ann", "1"))},
                 {kAccountsRel, Update(kAccounts, Row("7", "ann", "2"))},
                 {kAccountsRel, Update(kAccounts, Row("7", "bea", "3"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan), std::vector<std::string>{"2.1:I(7,bea,3)"});
  EXPECT_EQ(plan.removed, 2u);
}

TEST(ChangeCollapseTest, InsertThenDeleteSendsNothing) {
  Units units = {{kAccountsRel, Insert(kAccounts, Row("7", "ann", "1"))},
                 {kAccountsRel, Update(kAccounts, Row("7", "ann", "2"))},
                 {kAccountsRel, Delete(kAccounts, "7"), Insert(kAccounts, Row("8", "cy", "0"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan), std::vector<std::string>{"2.2:I(8,cy,0)"})
      << "a row born and gone within the group is never sent";
  EXPECT_EQ(plan.removed, 3u);
}

TEST(ChangeCollapseTest, UpdatesThenDeleteBecomeTheDeleteByTheOriginalKey) {
  Units units = {{kAccountsRel, Update(kAccounts, Row("3", "x", "1"))},
                 {kAccountsRel, Update(kAccounts, Row("3", "y", "2")), Delete(kAccounts, "3")}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan), std::vector<std::string>{"1.2:D[K3]()"});
  EXPECT_EQ(plan.removed, 2u);
}

TEST(ChangeCollapseTest, DeleteThenInsertOfTheSameKeyAreBothSentInOrder) {
  Units units = {{kAccountsRel, Update(kAccounts, Row("3", "x", "1")), Delete(kAccounts, "3")},
                 {kAccountsRel, Insert(kAccounts, Row("3", "new", "0"))},
                 {kAccountsRel, Update(kAccounts, Row("3", "new", "5"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan), (std::vector<std::string>{"0.2:D[K3]()", "2.1:I(3,new,5)"}))
      << "the delete ends the first chain; the re-insert starts a new one after it";
}

TEST(ChangeCollapseTest, KeyChangeIsNotCollapsedAndEndsBothKeysChains) {
  Units units = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                 {kAccountsRel, Update(kAccounts, Row("1", "a", "2"))},
                 {kAccountsRel, UpdateKey(kAccounts, "1", Row("9", "a", "2"))},
                 {kAccountsRel, Update(kAccounts, Row("9", "a", "3"))},
                 {kAccountsRel, Update(kAccounts, Row("9", "a", "4"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan),
            (std::vector<std::string>{"1.1:U[K1](1,a,2)", "2.1:U[K1](9,a,2)", "4.1:U[K9](9,a,4)"}))
      << "the chain of key 1 is sent before the key change, the key change as it was, and the "
         "chain of key 9 after it";
}

TEST(ChangeCollapseTest, OldKeyEqualToNewKeyIsTheSameRow) {
  // pgoutput also sends the old key when it holds external TOAST values.
  Units units = {{kAccountsRel, UpdateKey(kAccounts, "5", Row("5", "a", "1"))},
                 {kAccountsRel, Update(kAccounts, Row("5", "a", "2"))}};
  EXPECT_EQ(Sent(units, Plan(units)), std::vector<std::string>{"1.1:U[K5](5,a,2)"});
}

TEST(ChangeCollapseTest, UnchangedToastInALaterUpdateTakesTheEarlierValue) {
  Units units = {{kAccountsRel, Update(kAccounts, {T("1"), T("long body v2"), T("1")})},
                 {kAccountsRel, Update(kAccounts, {T("1"), Toast(), T("2")})},
                 {kAccountsRel, Update(kAccounts, {T("2"), Toast(), Toast()})},
                 {kAccountsRel, Update(kAccounts, {T("2"), Toast(), T("7")})}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan),
            (std::vector<std::string>{"1.1:U[K1](1,long body v2,2)", "3.1:U[K2](2,u,7)"}))
      << "row 1 gets the body the first update set; row 2's body stays untouched";
}

TEST(ChangeCollapseTest, InsertThenToastUpdateIsAFullInsert) {
  Units units = {{kAccountsRel, Insert(kAccounts, Row("1", "body", "1"))},
                 {kAccountsRel, Update(kAccounts, {T("1"), Toast(), T("2")})}};
  EXPECT_EQ(Sent(units, Plan(units)), std::vector<std::string>{"1.1:I(1,body,2)"})
      << "an insert never carries an unchanged TOAST value";
}

TEST(ChangeCollapseTest, KeyWithUnchangedToastOrNullIsLeftAlone) {
  Units units = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                 {kAccountsRel, Update(kAccounts, {Toast(), T("b"), T("2")})},
                 {kAccountsRel, Update(kAccounts, Row("1", "a", "3"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(plan.removed, 0u) << "a change whose key cannot be read ends the table's chains";
}

TEST(ChangeCollapseTest, TruncateDdlAndSequenceMessagesAreBarriers) {
  const MessageEvent ddl{true, Lsn(), std::string(kDdlPrefix), R"({"sql": "SELECT 1"})"};
  const MessageEvent seq{true, Lsn(), std::string(kSequencesPrefix), "[]"};
  const MessageEvent heartbeat{false, Lsn(), std::string(kHeartbeatPrefix), "{}"};
  for (const Event& barrier :
       {Event(TruncateEvent{false, false, {kLog}}), Event(ddl), Event(seq)}) {
    Units units = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                   {barrier},
                   {kAccountsRel, Update(kAccounts, Row("1", "a", "2"))}};
    EXPECT_EQ(Plan(units).removed, 0u)
        << "nothing moves across barrier event index " << barrier.index();
  }
  Units units = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                 {heartbeat},
                 {kAccountsRel, Update(kAccounts, Row("1", "a", "2"))}};
  EXPECT_EQ(Plan(units).removed, 1u) << "a heartbeat is not a barrier";
}

TEST(ChangeCollapseTest, ChangedRelationDescriptorIsABarrierButARepeatedOneIsNot) {
  Relation wider = kAccountsRel;
  wider.columns.push_back(Column{"note", kText, -1, false});
  Units repeated = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                    {kAccountsRel, Update(kAccounts, Row("1", "a", "2"))}};
  EXPECT_EQ(Plan(repeated).removed, 1u)
      << "every source transaction repeats its Relation events; that is no barrier";
  Units changed = {{kAccountsRel, Update(kAccounts, Row("1", "a", "1"))},
                   {wider, Update(kAccounts, {T("1"), T("a"), T("2"), T("n")})}};
  CollapsePlan plan = Plan(changed);
  EXPECT_EQ(plan.removed, 0u) << "a new shape of the table ends its chains";
}

TEST(ChangeCollapseTest, SameKeyInDifferentTablesAreDifferentRows) {
  Units units = {{kAccountsRel, kBranchesRel, Update(kAccounts, Row("1", "a", "1")),
                  Update(kBranches, Row("1", "b", "1"))},
                 {kAccountsRel, kBranchesRel, Update(kBranches, Row("1", "b", "2")),
                  Update(kAccounts, Row("1", "a", "2"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(Sent(units, plan), (std::vector<std::string>{"1.2:U[K1](1,b,2)", "1.3:U[K1](1,a,2)"}));
}

TEST(ChangeCollapseTest, ReplicaIdentityFullAndKeylessTablesAreUntouched) {
  Units units = {
      {kEventsRel, kLogRel, Insert(kEvents, Row("1", "e", "1")), Insert(kLog, Row("1", "l", "1"))},
      {kEventsRel, kLogRel,
       RowChange{RowOp::kUpdate, kEvents, 'O', Row("1", "e", "1"), Row("1", "e", "2")},
       RowChange{RowOp::kDelete, kEvents, 'O', Row("1", "e", "2"), {}},
       Insert(kLog, Row("1", "l", "1"))}};
  CollapsePlan plan = Plan(units);
  EXPECT_EQ(plan.removed, 0u) << "rows without a key are sent one change at a time";
  EXPECT_EQ(Sent(units, plan).size(), 5u);
}

TEST(ChangeCollapseTest, UnknownRelationIsLeftToTheApplier) {
  Units units = {{Update(99, Row("1", "a", "1"))}, {Update(99, Row("1", "a", "2"))}};
  EXPECT_EQ(Plan(units, {}).removed, 0u)
      << "a change without a descriptor is sent as it is, so the applier reports it";
}

// ---- Randomized: collapsed == plain on a keyed table --------------------------

// A keyed table in memory, applied to as the replica would: inserts of an
// existing key, and updates or deletes of a missing one, are errors.
struct Table {
  std::map<std::string, Tuple> rows;
  bool failed = false;

  void Apply(const RowChange& c) {
    const std::string key = c.op == RowOp::kInsert ? c.new_tuple[0].value
                            : c.old_kind == 'K'    ? c.old_tuple[0].value
                                                   : c.new_tuple[0].value;
    auto it = rows.find(key);
    switch (c.op) {
      case RowOp::kInsert:
        if (it != rows.end()) failed = true;
        rows[key] = c.new_tuple;
        break;
      case RowOp::kUpdate: {
        if (it == rows.end()) {
          failed = true;
          return;
        }
        Tuple row = it->second;
        for (size_t i = 0; i < row.size(); ++i) {
          if (c.new_tuple[i].kind != DatumKind::kUnchangedToast) row[i] = c.new_tuple[i];
        }
        rows.erase(it);
        if (rows.count(row[0].value)) failed = true;
        rows[row[0].value] = row;
        break;
      }
      case RowOp::kDelete:
        if (it == rows.end()) failed = true;
        if (it != rows.end()) rows.erase(it);
        break;
    }
  }
};

TEST(ChangeCollapseTest, RandomGroupsLeaveTheSameRowsAsPlainOrderedApply) {
  std::mt19937 rng(20261128);
  uint64_t removed = 0;
  for (int round = 0; round < 300; ++round) {
    // The source's own view, to generate only valid changes.
    std::map<std::string, Tuple> source;
    for (int k = 0; k < 6; ++k) source[std::to_string(k)] = Row(std::to_string(k), "o", "0");
    Table plain{source, false};
    Table collapsed{source, false};
    Units units;
    int value = 0;
    for (int u = 0; u < 12; ++u) {
      std::vector<Event> events = {kAccountsRel};
      for (int n = 0; n < 3; ++n) {
        const std::string key = std::to_string(rng() % 9);
        const bool exists = source.count(key) > 0;
        const int pick = static_cast<int>(rng() % 10);
        const std::string v = std::to_string(++value);
        if (!exists) {
          source[key] = Row(key, "i" + v, v);
          events.push_back(Insert(kAccounts, source[key]));
        } else if (pick < 5) {
          Tuple row = {T(key), rng() % 3 == 0 ? Toast() : T("o" + v), T(v)};
          if (row[1].kind != DatumKind::kUnchangedToast) source[key][1] = row[1];
          source[key][2] = row[2];
          events.push_back(rng() % 4 == 0 ? UpdateKey(kAccounts, key, row)
                                          : Update(kAccounts, row));
        } else if (pick < 7) {
          const std::string to = std::to_string(10 + rng() % 5);
          if (source.count(to)) continue;
          Tuple row = source[key];
          row[0] = T(to);
          source.erase(key);
          source[to] = row;
          events.push_back(UpdateKey(kAccounts, key, row));
        } else {
          source.erase(key);
          events.push_back(Delete(kAccounts, key));
        }
      }
      if (rng() % 15 == 0) events.push_back(TruncateEvent{false, false, {kLog}});
      units.push_back(std::move(events));
    }
    CollapsePlan plan = Plan(units);
    removed += plan.removed;
    for (size_t u = 0; u < units.size(); ++u) {
      for (size_t e = 0; e < units[u].size(); ++e) {
        const auto* change = std::get_if<RowChange>(&units[u][e]);
        if (change == nullptr) continue;
        plain.Apply(*change);
        const int action = plan.action(u, e);
        if (action == CollapsePlan::kKeep) collapsed.Apply(*change);
        if (action >= 0) collapsed.Apply(plan.replacements[action]);
      }
    }
    ASSERT_FALSE(plain.failed) << "round " << round << ": the generator made a valid stream";
    ASSERT_FALSE(collapsed.failed) << "round " << round << ": the collapsed group applies cleanly";
    ASSERT_EQ(collapsed.rows, plain.rows) << "round " << round << ": same final rows";
    ASSERT_EQ(plain.rows, source) << "round " << round;
  }
  EXPECT_GT(removed, 1000u) << "the random groups did collapse";
}

}  // namespace
}  // namespace geosync
