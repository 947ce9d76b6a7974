// Writesets for parallel apply (writeset.h).
#include "agent/replica/writeset.h"

#include "common/change.h"

#include <optional>
#include <string>
#include <variant>

namespace geosync {
namespace {

bool Keyed(const Relation& rel) {
  if (rel.replica_identity == 'f') return true;
  if (rel.replica_identity != 'd' && rel.replica_identity != 'i') return false;
  for (const Column& c : rel.columns) {
    if (c.is_key) return true;
  }
  return false;
}

// The row's identity: its key columns, or every column under REPLICA
// IDENTITY FULL. nullopt when a value is missing.
std::optional<uint64_t> RowHash(const Relation& rel, const Tuple& tuple) {
  if (tuple.size() != rel.columns.size()) return std::nullopt;
  const bool full = rel.replica_identity == 'f';
  std::string key(reinterpret_cast<const char*>(&rel.oid), sizeof rel.oid);
  for (size_t i = 0; i < tuple.size(); ++i) {
    if (!full && !rel.columns[i].is_key) continue;
    const Datum& d = tuple[i];
    if (d.kind == DatumKind::kUnchangedToast || (!full && d.kind == DatumKind::kNull)) {
      return std::nullopt;
    }
    const uint64_t size = d.value.size();
    key.push_back(static_cast<char>(d.kind));
    key.append(reinterpret_cast<const char*>(&size), sizeof size);
    key.append(d.value);
  }
  return std::hash<std::string>{}(key);
}

class Builder {
 public:
  Builder(const std::unordered_map<uint32_t, Relation>& sent,
          std::unordered_map<uint32_t, Relation>* group, const TableDepsFn& deps, Writeset* out)
      : sent_(sent), group_(*group), deps_(deps), out_(*out) {}

  void OnEvent(const Event& event) {
    if (const auto* rel = std::get_if<Relation>(&event)) {
      const Relation* before = Lookup(rel->oid);
      if (before != nullptr && !(*before == *rel)) out_.barrier = true;
      group_[rel->oid] = *rel;
    } else if (const auto* change = std::get_if<RowChange>(&event)) {
      Change(*change);
    } else if (const auto* message = std::get_if<MessageEvent>(&event)) {
      // DDL and sequence snapshots run SQL; heartbeats and markers only
      // carry a position.
      if (message->prefix == kDdlPrefix || message->prefix == kSequencesPrefix) {
        out_.barrier = true;
      }
    } else {
      out_.barrier = true;  // TRUNCATE
    }
  }

 private:
  const Relation* Lookup(uint32_t oid) const {
    if (auto it = group_.find(oid); it != group_.end()) return &it->second;
    if (auto it = sent_.find(oid); it != sent_.end()) return &it->second;
    return nullptr;
  }

  void Change(const RowChange& c) {
    const Relation* rel = Lookup(c.rel_oid);
    if (rel == nullptr) {
      out_.barrier = true;
      return;
    }
    out_.tables.insert(rel->oid);
    switch (deps_(*rel)) {
      case TableDeps::kBarrier:
        out_.barrier = true;
        return;
      case TableDeps::kTable:
        out_.whole.insert(rel->oid);
        return;
      case TableDeps::kRows:
        break;
    }
    if (!Keyed(*rel)) {
      if (c.op != RowOp::kInsert) out_.whole.insert(rel->oid);
      return;
    }
    if (c.op != RowOp::kInsert && c.old_kind != 0) Row(*rel, c.old_tuple);
    if (c.op != RowOp::kDelete) Row(*rel, c.new_tuple);
    if (c.op == RowOp::kDelete && c.old_kind == 0) out_.whole.insert(rel->oid);
  }

  void Row(const Relation& rel, const Tuple& tuple) {
    if (auto hash = RowHash(rel, tuple)) {
      out_.rows.insert(*hash);
    } else {
      out_.whole.insert(rel.oid);
    }
  }

  const std::unordered_map<uint32_t, Relation>& sent_;
  std::unordered_map<uint32_t, Relation>& group_;
  const TableDepsFn& deps_;
  Writeset& out_;
};

bool WholeMeets(const Writeset& a, const Writeset& b) {
  for (uint32_t oid : a.whole) {
    if (b.tables.contains(oid)) return true;
  }
  return false;
}

}  // namespace

bool Writeset::Conflicts(const Writeset& other) const {
  if (barrier || other.barrier) return true;
  if (WholeMeets(*this, other) || WholeMeets(other, *this)) return true;
  const Writeset& small = rows.size() <= other.rows.size() ? *this : other;
  const Writeset& large = &small == this ? other : *this;
  for (uint64_t h : small.rows) {
    if (large.rows.contains(h)) return true;
  }
  return false;
}

void Writeset::Merge(const Writeset& other) {
  rows.insert(other.rows.begin(), other.rows.end());
  tables.insert(other.tables.begin(), other.tables.end());
  whole.insert(other.whole.begin(), other.whole.end());
  barrier = barrier || other.barrier;
}

void AddToWriteset(const ApplyUnit& unit, const std::unordered_map<uint32_t, Relation>& sent,
                   std::unordered_map<uint32_t, Relation>* group, const TableDepsFn& deps,
                   Writeset* out) {
  Builder builder(sent, group, deps, out);
  for (const Event& event : unit.events) builder.OnEvent(event);
}

}  // namespace geosync
