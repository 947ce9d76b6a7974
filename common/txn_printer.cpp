// TxnPrinter: one line per transaction with its changes, LSNs and commit time.
#include "common/txn_printer.h"

#include <ctime>

#include <fmt/format.h>

namespace geosync {

std::string FormatPgTimestamp(PgTimestamp ts) {
  int64_t micros = ts % 1000000;
  int64_t secs = ts / 1000000;
  if (micros < 0) {
    micros += 1000000;
    secs -= 1;
  }
  std::time_t unix_secs = static_cast<std::time_t>(secs + kPgEpochOffsetSeconds);
  std::tm tm{};
  gmtime_r(&unix_secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:06d}+00", buf, micros);
}

namespace {

nlohmann::json DatumJson(const Datum& d) {
  switch (d.kind) {
    case DatumKind::kNull:
      return nullptr;
    case DatumKind::kUnchangedToast:
      return {{"unchanged_toast", true}};
    case DatumKind::kText:
      return d.value;
    case DatumKind::kBinary: {
      std::string hex = "\\x";
      for (unsigned char c : d.value) hex += fmt::format("{:02x}", c);
      return hex;
    }
  }
  return nullptr;
}

const char* OpName(RowOp op) {
  switch (op) {
    case RowOp::kInsert:
      return "insert";
    case RowOp::kUpdate:
      return "update";
    case RowOp::kDelete:
      return "delete";
  }
  return "?";
}

}  // namespace

std::string TxnPrinter::TableName(uint32_t oid) const {
  auto it = relations_.find(oid);
  if (it == relations_.end()) return fmt::format("oid:{}", oid);
  return it->second.nspname + "." + it->second.relname;
}

nlohmann::json TxnPrinter::ChangeJson(const RowChange& c) const {
  nlohmann::json j = {{"op", OpName(c.op)}, {"table", TableName(c.rel_oid)}};
  auto it = relations_.find(c.rel_oid);
  auto tuple_json = [&](const Tuple& t) {
    nlohmann::json row = nlohmann::json::object();
    for (size_t i = 0; i < t.size(); ++i) {
      std::string name = (it != relations_.end() && i < it->second.columns.size())
                             ? it->second.columns[i].name
                             : fmt::format("${}", i + 1);
      row[name] = DatumJson(t[i]);
    }
    return row;
  };
  if (c.old_kind) {
    j[c.old_kind == 'K' ? "key" : "old"] = tuple_json(c.old_tuple);
  }
  if (c.op != RowOp::kDelete) j["new"] = tuple_json(c.new_tuple);
  return j;
}

void TxnPrinter::Feed(const Event& event) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, BeginEvent>) {
          in_txn_ = true;
          txn_ = {{"xid", e.xid}, {"changes", nlohmann::json::array()}};
        } else if constexpr (std::is_same_v<T, Relation>) {
          relations_[e.oid] = e;
        } else if constexpr (std::is_same_v<T, RowChange>) {
          txn_["changes"].push_back(ChangeJson(e));
        } else if constexpr (std::is_same_v<T, TruncateEvent>) {
          nlohmann::json tables = nlohmann::json::array();
          for (auto oid : e.rel_oids) tables.push_back(TableName(oid));
          txn_["changes"].push_back({{"op", "truncate"},
                                     {"tables", tables},
                                     {"cascade", e.cascade},
                                     {"restart_identity", e.restart_identity}});
        } else if constexpr (std::is_same_v<T, MessageEvent>) {
          nlohmann::json m = {{"op", "message"},
                              {"prefix", e.prefix},
                              {"content", e.content},
                              {"lsn", e.lsn.ToString()},
                              {"transactional", e.transactional}};
          if (in_txn_) {
            txn_["changes"].push_back(m);
          } else {
            output_(
                format_ == Format::kJson
                    ? m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                    : fmt::format("message {} at {}: {}", e.prefix, e.lsn.ToString(), e.content));
          }
        } else if constexpr (std::is_same_v<T, CommitEvent>) {
          Flush(e);
        }
      },
      event);
}

void TxnPrinter::Flush(const CommitEvent& commit) {
  in_txn_ = false;
  ++transactions_;
  txn_["commit_lsn"] = commit.commit_lsn.ToString();
  txn_["end_lsn"] = commit.end_lsn.ToString();
  txn_["commit_time"] = FormatPgTimestamp(commit.commit_time);
  if (format_ == Format::kJson) {
    output_(txn_.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string line = fmt::format("xid {} commit {} end {} at {}:", txn_["xid"].get<uint32_t>(),
                                 commit.commit_lsn.ToString(), commit.end_lsn.ToString(),
                                 txn_["commit_time"].get<std::string>());
  for (const auto& c : txn_["changes"]) {
    line += " ";
    std::string op = c["op"];
    if (op == "message") {
      line += fmt::format("message({})", c["prefix"].get<std::string>());
    } else if (op == "truncate") {
      line += "truncate" + c["tables"].dump();
    } else {
      nlohmann::json body = c;
      body.erase("op");
      body.erase("table");
      line += fmt::format("{} {} {}", op, c["table"].get<std::string>(),
                          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    line += ";";
  }
  output_(line);
}

}  // namespace geosync
