// Collapsing the row changes of one apply group (several source transactions
// applied in one replica transaction) into their net effect per row, so that
// a row updated 50 times in a group is updated once. Pure: no libpq here; the
// applier (agent/replica/applier.cpp) sends what the plan says and falls back
// to plain ordered apply when a constraint error shows the collapse was not
// safe. docs/apply.md, "Collapsing changes to the same row", has the rules.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/change.h"

namespace geosync {

// What the applier does with each event of a group.
//
// A row is (relation OID, replica identity key values) of a relation with a
// primary key or replica identity index (REPLICA IDENTITY DEFAULT with key
// columns, or INDEX). The changes of one row between two barriers form a
// chain, and the chain is sent as one change at the position of its LAST
// change; the earlier ones are dropped:
//   update, update...      -> one update with the merged new tuple (a column
//                             that is unchanged TOAST in a later update takes
//                             the earlier update's value)
//   insert, update...      -> one insert with the merged final tuple
//   insert, [update...], delete -> nothing
//   update..., delete      -> the delete (by the same, unchanged key)
// A chain ends at a delete, at an insert of a key that already has a chain,
// and at a key change (an update whose old key differs from its new key),
// which is sent as it is and ends the chains of both keys.
// Barriers end every chain: TRUNCATE, a geosync.ddl or geosync.sequences
// message, and a Relation event that changes a known descriptor.
// Relations with REPLICA IDENTITY FULL or NOTHING, without key columns, and
// changes whose key cannot be read (unchanged TOAST or NULL in a key column,
// a tuple that does not match the relation) are sent as they are; the latter
// also end every chain of their relation.
struct CollapsePlan {
  static constexpr int kKeep = -1;  // send the event as it is
  static constexpr int kDrop = -2;  // do not send it
  // actions[unit][event]: kKeep, kDrop, or an index into replacements (send
  // that change instead). Only RowChange events are ever dropped or replaced.
  std::vector<std::vector<int>> actions;
  std::vector<RowChange> replacements;
  uint64_t removed = 0;  // row changes that will not be sent

  int action(size_t unit, size_t event) const { return actions[unit][event]; }
};

// Plans the group `units` (each the events of one spool unit, between Begin
// and Commit). `known` holds the relations seen before the group, by OID;
// Relation events inside the group are followed as the applier does.
CollapsePlan PlanCollapse(std::span<const std::span<const Event>> units,
                          const std::unordered_map<uint32_t, Relation>& known);

}  // namespace geosync
