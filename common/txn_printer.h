// Renders a decoded stream one transaction per line, as text or JSON: what
// `geosyncctl tail` prints for DBAs and tests.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/change.h"

namespace geosync {

class TxnPrinter {
 public:
  enum class Format { kText, kJson };
  using Output = std::function<void(const std::string& line)>;

  TxnPrinter(Format format, Output output) : format_(format), output_(std::move(output)) {}
  // Feeds one event; a line is written at each Commit (and for a message
  // outside a transaction).
  void Feed(const Event& event);
  uint64_t transactions() const { return transactions_; }

 private:
  nlohmann::json ChangeJson(const RowChange& c) const;
  std::string TableName(uint32_t oid) const;
  void Flush(const CommitEvent& commit);

  Format format_;
  Output output_;
  std::unordered_map<uint32_t, Relation> relations_;
  nlohmann::json txn_;
  bool in_txn_ = false;
  uint64_t transactions_ = 0;
};

// "2026-11-27 23:09:48.123456+00" from a PostgreSQL timestamp.
std::string FormatPgTimestamp(PgTimestamp ts);

}  // namespace geosync
