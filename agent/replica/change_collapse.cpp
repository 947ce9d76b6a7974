// Net effect per row within one apply group; the rules are in
// change_collapse.h.
#include "agent/replica/change_collapse.h"

#include <optional>
#include <string>
#include <variant>

namespace geosync {
namespace {

struct Pos {
  size_t unit = 0;
  size_t event = 0;
};

// The net effect of the changes of one row since its chain began.
struct Chain {
  const Relation* rel = nullptr;
  RowOp first = RowOp::kInsert;  // kInsert or kUpdate
  Tuple tuple;                   // the merged new tuple
  Pos last;                      // where the net change is sent
  int count = 1;                 // changes in the chain
};

// Only rows named by a primary key or a replica identity index are collapsed.
bool Collapsible(const Relation& rel) {
  if (rel.replica_identity != 'd' && rel.replica_identity != 'i') return false;
  for (const Column& c : rel.columns) {
    if (c.is_key) return true;
  }
  return false;
}

bool IsBarrierMessage(const MessageEvent& m) {
  return m.prefix == kDdlPrefix || m.prefix == kSequencesPrefix;
}

class Planner {
 public:
  Planner(std::span<const std::span<const Event>> units,
          const std::unordered_map<uint32_t, Relation>& known)
      : units_(units), known_(known) {}

  CollapsePlan Run() {
    plan_.actions.resize(units_.size());
    for (size_t u = 0; u < units_.size(); ++u) {
      plan_.actions[u].assign(units_[u].size(), CollapsePlan::kKeep);
      for (size_t e = 0; e < units_[u].size(); ++e) OnEvent(units_[u][e], Pos{u, e});
    }
    EndAll();
    return std::move(plan_);
  }

 private:
  void OnEvent(const Event& event, Pos pos) {
    if (const auto* rel = std::get_if<Relation>(&event)) {
      const Relation* before = Lookup(rel->oid);
      if (before != nullptr && !(*before == *rel)) EndAll();
      current_[rel->oid] = rel;
    } else if (const auto* change = std::get_if<RowChange>(&event)) {
      OnChange(*change, pos);
    } else if (std::holds_alternative<TruncateEvent>(event)) {
      EndAll();
    } else if (const auto* message = std::get_if<MessageEvent>(&event)) {
      if (IsBarrierMessage(*message)) EndAll();
    }
  }

  void OnChange(const RowChange& c, Pos pos) {
    const Relation* rel = Lookup(c.rel_oid);
    if (rel == nullptr || !Collapsible(*rel)) return;  // sent as it is
    switch (c.op) {
      case RowOp::kInsert:
        return OnInsert(*rel, c, pos);
      case RowOp::kUpdate:
        return OnUpdate(*rel, c, pos);
      case RowOp::kDelete:
        return OnDelete(*rel, c, pos);
    }
  }

  void OnInsert(const Relation& rel, const RowChange& c, Pos pos) {
    auto key = Key(rel, c.new_tuple);
    if (!key) return EndRelation(rel.oid);
    End(*key);  // an insert over a live row fails as it would unreordered
    Chain chain;
    chain.rel = &rel;
    chain.first = RowOp::kInsert;
    chain.tuple = c.new_tuple;
    chain.last = pos;
    chains_.emplace(std::move(*key), std::move(chain));
  }

  void OnUpdate(const Relation& rel, const RowChange& c, Pos pos) {
    if (c.old_kind != 0 && c.old_kind != 'K') return EndRelation(rel.oid);
    auto new_key = Key(rel, c.new_tuple);
    auto old_key = c.old_kind == 'K' ? Key(rel, c.old_tuple) : new_key;
    if (!new_key || !old_key) return EndRelation(rel.oid);
    if (*old_key != *new_key) {  // a key change is sent as it is
      End(*old_key);
      End(*new_key);
      return;
    }
    auto it = chains_.find(*old_key);
    if (it == chains_.end()) {
      Chain chain;
      chain.rel = &rel;
      chain.first = RowOp::kUpdate;
      chain.tuple = c.new_tuple;
      chain.last = pos;
      chains_.emplace(std::move(*old_key), std::move(chain));
      return;
    }
    Chain& chain = it->second;
    Drop(chain.last);
    for (size_t i = 0; i < chain.tuple.size(); ++i) {
      // Unchanged TOAST: the value is what the earlier change left.
      if (c.new_tuple[i].kind != DatumKind::kUnchangedToast) chain.tuple[i] = c.new_tuple[i];
    }
    chain.last = pos;
    chain.count++;
  }

  void OnDelete(const Relation& rel, const RowChange& c, Pos pos) {
    if (c.old_kind != 'K') return EndRelation(rel.oid);
    auto key = Key(rel, c.old_tuple);
    if (!key) return EndRelation(rel.oid);
    auto it = chains_.find(*key);
    if (it == chains_.end()) return;
    Drop(it->second.last);
    // insert..delete leaves nothing; update..delete is this delete.
    if (it->second.first == RowOp::kInsert) Drop(pos);
    chains_.erase(it);
  }

  // (OID, key values) of a row, or nullopt when a key value is missing.
  std::optional<std::string> Key(const Relation& rel, const Tuple& tuple) const {
    if (tuple.size() != rel.columns.size()) return std::nullopt;
    std::string key(reinterpret_cast<const char*>(&rel.oid), sizeof rel.oid);
    for (size_t i = 0; i < tuple.size(); ++i) {
      if (!rel.columns[i].is_key) continue;
      const Datum& d = tuple[i];
      if (d.kind != DatumKind::kText && d.kind != DatumKind::kBinary) return std::nullopt;
      const uint64_t size = d.value.size();
      key.push_back(static_cast<char>(d.kind));
      key.append(reinterpret_cast<const char*>(&size), sizeof size);
      key.append(d.value);
    }
    return key;
  }

  const Relation* Lookup(uint32_t oid) const {
    if (auto it = current_.find(oid); it != current_.end()) return it->second;
    if (auto it = known_.find(oid); it != known_.end()) return &it->second;
    return nullptr;
  }

  void Drop(Pos pos) {
    plan_.actions[pos.unit][pos.event] = CollapsePlan::kDrop;
    plan_.removed++;
  }

  // Ends a chain: a chain of several changes is sent as one at its last place.
  void Finish(const Chain& chain) {
    if (chain.count == 1) return;  // the change itself
    RowChange net;
    net.op = chain.first;
    net.rel_oid = chain.rel->oid;
    net.new_tuple = chain.tuple;
    if (chain.first == RowOp::kUpdate) {
      // The key never changed within the chain: name the row by it.
      net.old_kind = 'K';
      net.old_tuple.assign(chain.tuple.size(), Datum{});
      for (size_t i = 0; i < chain.tuple.size(); ++i) {
        if (chain.rel->columns[i].is_key) net.old_tuple[i] = chain.tuple[i];
      }
    }
    plan_.actions[chain.last.unit][chain.last.event] = static_cast<int>(plan_.replacements.size());
    plan_.replacements.push_back(std::move(net));
  }

  void End(const std::string& key) {
    auto it = chains_.find(key);
    if (it == chains_.end()) return;
    Finish(it->second);
    chains_.erase(it);
  }

  void EndRelation(uint32_t oid) {
    for (auto it = chains_.begin(); it != chains_.end();) {
      if (it->second.rel->oid != oid) {
        ++it;
        continue;
      }
      Finish(it->second);
      it = chains_.erase(it);
    }
  }

  void EndAll() {
    for (const auto& [key, chain] : chains_) Finish(chain);
    chains_.clear();
  }

  std::span<const std::span<const Event>> units_;
  const std::unordered_map<uint32_t, Relation>& known_;
  std::unordered_map<uint32_t, const Relation*> current_;  // Relation events of the group
  std::unordered_map<std::string, Chain> chains_;
  CollapsePlan plan_;
};

}  // namespace

CollapsePlan PlanCollapse(std::span<const std::span<const Event>> units,
                          const std::unordered_map<uint32_t, Relation>& known) {
  return Planner(units, known).Run();
}

}  // namespace geosync
