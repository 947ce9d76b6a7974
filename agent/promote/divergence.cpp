// Divergent-transaction export; see divergence.h.
#include "agent/promote/divergence.h"

#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/promote/site_ops.h"
#include "common/encoding.h"
#include "common/pgoutput.h"
#include "common/txn_printer.h"

namespace geosync {
namespace {

std::string Ident(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Literal(const Datum& d) {
  switch (d.kind) {
    case DatumKind::kNull:
      return "NULL";
    case DatumKind::kUnchangedToast:
      return "/* unchanged TOAST value */ NULL";
    case DatumKind::kBinary:
      return "/* binary value not rendered */ NULL";
    case DatumKind::kText:
      break;
  }
  std::string out = "'";
  for (char c : d.value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string Table(const Relation& r) { return Ident(r.nspname) + "." + Ident(r.relname); }

// "a" = 'x' AND "b" IS NULL over the key columns (all columns for a full old row).
std::string Where(const Relation& r, const Tuple& tuple, bool all_columns) {
  std::string out;
  for (size_t i = 0; i < r.columns.size() && i < tuple.size(); ++i) {
    if (!all_columns && !r.columns[i].is_key) continue;
    if (tuple[i].kind == DatumKind::kUnchangedToast) continue;
    if (!out.empty()) out += " AND ";
    out += Ident(r.columns[i].name);
    out += tuple[i].kind == DatumKind::kNull ? " IS NULL" : " = " + Literal(tuple[i]);
  }
  return out.empty() ? "false /* no key to identify the row */" : out;
}

// Decoded events grouped into transactions, fed to both writers.
class Writer {
 public:
  Writer(std::ofstream& json, std::ofstream& sql)
      : sql_(sql), printer_(TxnPrinter::Format::kJson, [&json](const std::string& line) {
          json << line << "\n";
        }) {}

  void NoteRelation(const Relation& r) {
    relations_[r.oid] = r;
    printer_.Feed(r);  // stored, prints nothing
  }

  Status Feed(const Event& event, DivergenceReport* report) {
    printer_.Feed(event);
    if (const auto* b = std::get_if<BeginEvent>(&event)) {
      sql_ << fmt::format("-- xid {} committed at {} (commit LSN {})\nBEGIN;\n", b->xid,
                          FormatPgTimestamp(b->commit_time), b->final_lsn.ToString());
      if (!report->first.valid()) report->first = b->final_lsn;
      report->last = b->final_lsn;
    } else if (std::get_if<CommitEvent>(&event)) {
      sql_ << "COMMIT;\n\n";
      report->transactions++;
    } else if (const auto* r = std::get_if<Relation>(&event)) {
      relations_[r->oid] = *r;
    } else if (const auto* c = std::get_if<RowChange>(&event)) {
      auto it = relations_.find(c->rel_oid);
      if (it == relations_.end()) {
        return Status::Corruption(
            fmt::format("divergent change to relation {} without its descriptor", c->rel_oid));
      }
      sql_ << ChangeToSql(it->second, *c) << "\n";
      report->changes++;
    } else if (const auto* t = std::get_if<TruncateEvent>(&event)) {
      std::string names;
      for (uint32_t oid : t->rel_oids) {
        auto it = relations_.find(oid);
        names +=
            (names.empty() ? "" : ", ") +
            (it == relations_.end() ? fmt::format("/* relation {} */", oid) : Table(it->second));
      }
      sql_ << fmt::format("TRUNCATE {}{}{};\n", names,
                          t->restart_identity ? " RESTART IDENTITY" : "",
                          t->cascade ? " CASCADE" : "");
      report->changes++;
    } else if (const auto* m = std::get_if<MessageEvent>(&event)) {
      std::string content = m->content;
      for (char& ch : content) {
        if (ch == '\n') ch = ' ';
      }
      sql_ << fmt::format("-- message {}: {}\n", m->prefix, content);
    }
    return Status::Ok();
  }

 private:
  std::ofstream& sql_;
  TxnPrinter printer_;
  std::unordered_map<uint32_t, Relation> relations_;
};

std::vector<uint8_t> FromHex(const std::string& text) {
  std::vector<uint8_t> out;
  size_t i = text.rfind("\\x", 0) == 0 ? 2 : 0;
  auto nibble = [](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
  };
  for (; i + 1 < text.size(); i += 2) out.push_back(nibble(text[i]) << 4 | nibble(text[i + 1]));
  return out;
}

// Transactions the slot holds beyond `after` and beyond the spool's end.
Status PeekSlot(const Config& config, Lsn after, Writer& writer, DivergenceReport* report) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
  auto exists = conn.ExecParams(
      "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", {config.postgres.slot});
  if (!exists.ok()) return exists.status().WithContext("looking up the slot");
  if (exists->rows() == 0) return Status::Ok();  // nothing beyond the spool is retained
  auto r = conn.ExecParams(
      "SELECT data FROM pg_catalog.pg_logical_slot_peek_binary_changes($1, NULL, NULL, "
      "'proto_version', '1', 'publication_names', $2, 'messages', 'true')",
      {config.postgres.slot, config.postgres.publication});
  if (!r.ok()) return r.status().WithContext("reading the slot's undelivered transactions");
  PgOutputOptions opts;
  opts.protocol_version = 1;
  bool keep = false;
  uint32_t xid = 0;
  for (int i = 0; i < r->rows(); ++i) {
    std::vector<uint8_t> bytes = FromHex(r->Get(i, 0));
    GEOSYNC_ASSIGN_OR_RETURN(PgOutputMessage msg, DecodePgOutput(bytes, opts));
    if (auto* b = std::get_if<BeginEvent>(&msg.body)) {
      keep = b->final_lsn > after;
      xid = b->xid;
      if (keep) GEOSYNC_RETURN_IF_ERROR(writer.Feed(*b, report));
      continue;
    }
    if (auto* rel = std::get_if<Relation>(&msg.body)) {
      // pgoutput describes a relation once per decoding session, maybe in a
      // transaction before `after`: remember it whether or not it is kept.
      writer.NoteRelation(*rel);
      continue;
    }
    if (!keep) continue;
    Status st = std::visit(
        [&](auto& body) -> Status {
          using T = std::decay_t<decltype(body)>;
          if constexpr (std::is_same_v<T, CommitEvent>) {
            body.xid = xid;
            return writer.Feed(body, report);
          } else if constexpr (std::is_same_v<T, RowChange> || std::is_same_v<T, TruncateEvent> ||
                               std::is_same_v<T, MessageEvent>) {
            return writer.Feed(body, report);
          } else {
            return Status::Ok();
          }
        },
        msg.body);
    GEOSYNC_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

}  // namespace

std::string ChangeToSql(const Relation& r, const RowChange& c) {
  if (c.op == RowOp::kInsert) {
    std::string cols, vals;
    for (size_t i = 0; i < r.columns.size() && i < c.new_tuple.size(); ++i) {
      cols += (i ? ", " : "") + Ident(r.columns[i].name);
      vals += (i ? ", " : "") + Literal(c.new_tuple[i]);
    }
    return fmt::format("INSERT INTO {} ({}) VALUES ({});", Table(r), cols, vals);
  }
  const bool full_old = c.old_kind == 'O';
  const Tuple& key_tuple = c.old_kind ? c.old_tuple : c.new_tuple;
  const std::string where = Where(r, key_tuple, full_old);
  if (c.op == RowOp::kDelete) return fmt::format("DELETE FROM {} WHERE {};", Table(r), where);
  std::string set;
  for (size_t i = 0; i < r.columns.size() && i < c.new_tuple.size(); ++i) {
    if (c.new_tuple[i].kind == DatumKind::kUnchangedToast) continue;
    set += (set.empty() ? "" : ", ") + Ident(r.columns[i].name) + " = " + Literal(c.new_tuple[i]);
  }
  return fmt::format("UPDATE {} SET {} WHERE {};", Table(r), set, where);
}

Result<DivergenceReport> ExportDivergent(const Config& config, Spool& spool, Position after,
                                         const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io(fmt::format("creating {}: {}", dir, ec.message()));
  DivergenceReport report;
  report.json_path = fmt::format("{}/divergent-e{}.jsonl", dir, after.epoch);
  report.sql_path = fmt::format("{}/divergent-e{}.sql", dir, after.epoch);
  std::ofstream json(report.json_path, std::ios::trunc), sql(report.sql_path, std::ios::trunc);
  if (!json || !sql)
    return Status::Io(fmt::format("cannot write {} or {}", report.json_path, report.sql_path));
  sql << fmt::format(
      "-- Transactions site {} committed in epoch {} after {} that the new primary never\n"
      "-- received. Review before applying any of them to the new primary.\n\n",
      config.site, after.epoch, after.lsn.ToString());
  Writer writer(json, sql);
  // 1. What the spool holds beyond the point where the epoch ended.
  GEOSYNC_ASSIGN_OR_RETURN(auto reader, spool.ReadFrom(after));
  Lsn spool_end = after.lsn;
  while (true) {
    GEOSYNC_ASSIGN_OR_RETURN(auto rec, reader->Next());
    if (!rec) break;
    if (rec->epoch != after.epoch) continue;
    GEOSYNC_ASSIGN_OR_RETURN(Event event, DecodeEvent(rec->payload));
    GEOSYNC_RETURN_IF_ERROR(writer.Feed(event, &report));
    spool_end = std::max(spool_end, rec->lsn);
  }
  // 2. What PostgreSQL committed that the source never spooled.
  GEOSYNC_RETURN_IF_ERROR(PeekSlot(config, spool_end, writer, &report));
  json.flush();
  sql.flush();
  if (!json || !sql) return Status::Io(fmt::format("writing {}: disk full?", dir));
  spdlog::warn("rejoin: {} divergent transaction(s), {} change(s) after {} exported to {} and {}",
               report.transactions, report.changes, after.ToString(), report.json_path,
               report.sql_path);
  return report;
}

}  // namespace geosync
