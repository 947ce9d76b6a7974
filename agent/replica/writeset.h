// What a source transaction writes, as far as parallel apply must know: the
// rows it changes, named by (relation, replica identity key), and the tables
// it touches. Two groups whose writesets do not conflict change disjoint rows
// of tables where nothing else on the replica ties rows together, so they can
// run at once on two sessions; commits stay in source order. Pure: the
// applier says what the replica's catalog holds (TableDeps). docs/apply.md,
// "Parallel apply", has the rules.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "agent/replica/unit_reader.h"
#include "common/change.h"

namespace geosync {

// How the changes to one table depend on each other on the replica.
enum class TableDeps : uint8_t {
  kRows,     // only through the rows they change
  kTable,    // a unique index or exclusion constraint other than the replica
             // identity, or a foreign key: every change to the table depends
             // on every other change to it
  kBarrier,  // unknown: applied alone, after everything before it committed
};

struct Writeset {
  std::unordered_set<uint64_t> rows;    // hashes of (relation OID, key values)
  std::unordered_set<uint32_t> tables;  // relations changed
  std::unordered_set<uint32_t> whole;   // relations changed as a whole (kTable)
  bool barrier = false;                 // applied alone

  // Whether the two must not run at once (a hash collision only says yes).
  bool Conflicts(const Writeset& other) const;
  void Merge(const Writeset& other);
};

using TableDepsFn = std::function<TableDeps(const Relation&)>;

// Adds one spool unit to `out`. Relations are looked up in `group` (Relation
// events seen earlier in this group, which this adds to) and then in `sent`
// (the applier's descriptors). Barriers: TRUNCATE; DDL and sequence
// messages (heartbeats and markers are none); a Relation event that changes a known descriptor; a
// change to a relation no Relation event described; a table `deps` calls a
// barrier. A keyless table (REPLICA IDENTITY NOTHING, or DEFAULT without a
// primary key) only receives inserts, which name no row; an update or delete
// to one, or a change whose key cannot be read (unchanged TOAST or NULL in a
// key column), touches its whole table.
void AddToWriteset(const ApplyUnit& unit, const std::unordered_map<uint32_t, Relation>& sent,
                   std::unordered_map<uint32_t, Relation>* group, const TableDepsFn& deps,
                   Writeset* out);

}  // namespace geosync
