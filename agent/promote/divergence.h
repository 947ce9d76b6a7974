// Divergence of a returning old primary: the transactions it committed
// after the position where its epoch ended on the new primary. They are
// never applied anywhere and never silently discarded: rejoin writes them to
// a reviewable file, as JSON lines and as SQL, before the site is made a
// replica again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/spool/spool.h"
#include "common/change.h"
#include "common/config.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

struct DivergenceReport {
  uint64_t transactions = 0;
  uint64_t changes = 0;
  Lsn first, last;  // commit LSNs of the first and last divergent transaction
  std::string json_path, sql_path;
};

// Collects what this site committed after `after` (same epoch): its spool's
// units after that position, then what its replication slot still holds
// beyond the spool (peeked, not consumed), and writes
// <dir>/divergent-e<epoch>.jsonl (one transaction per line, as `geosyncctl
// tail --format json` prints them) and <dir>/divergent-e<epoch>.sql.
Result<DivergenceReport> ExportDivergent(const Config& config, Spool& spool, Position after,
                                         const std::string& dir);

// One statement that redoes `change` on `relation` with literal values:
// INSERT, UPDATE ... WHERE key, or DELETE ... WHERE key. Values in binary
// form cannot be written as literals and are rendered as a comment + NULL.
std::string ChangeToSql(const Relation& relation, const RowChange& change);

}  // namespace geosync
