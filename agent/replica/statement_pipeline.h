// The applier's libpq pipeline: statements sent without waiting, results
// read back in order, two sync segments in flight so that the server works
// on one while the next is sent. Keeps the first failure of the replica
// transaction being sent (error()); everything after it is discarded by the
// server and here.
#pragma once

#include <deque>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

#include "agent/pg/pg_conn.h"
#include "agent/replica/statement_cache.h"
#include "common/change.h"
#include "common/status.h"

namespace geosync {

// A libpq error result (or a dead connection) as a Status with its SQLSTATE.
Status PgError(PGconn* conn, const PGresult* r);
// The connection's error while `doing`, e.g. "sending a statement".
Status ConnectionLost(PGconn* conn, std::string_view doing);

class StatementPipeline {
 public:
  // One result the pipeline will return, and what it belongs to.
  struct Expected {
    enum Kind { kCommand, kPrepare, kChange, kSequence, kCommit, kSync };
    Expected() = default;
    explicit Expected(Kind k, int u = -1, std::string t = {})
        : kind(k), unit(u), target(std::move(t)) {}

    Kind kind = kCommand;
    int unit = -1;       // index in the units being applied; -1: not a unit's statement
    std::string target;  // " to public.accounts": completes "applying xid N (commit L)"
    std::string key;     // kChange of an update/delete: what "row not found" reports
    bool must_match = false;
    int expect_rows = 0;  // a multi-row update: it must change this many rows
  };
  // Names the source transaction of a failed statement (the applier's).
  using NameError = std::function<Status(int unit, std::string_view target, const Status& cause)>;

  // `conn` is the session, reconnected by its owner (call Reset() then).
  StatementPipeline(PgConn* conn, int statements_per_sync, NameError name_error);

  Status Enter();
  Status Exit();
  bool in_pipeline() const { return in_pipeline_; }
  // Prepares `entry` first when `created`; syncs and reads back every
  // statements_per_sync statements.
  Status SendPrepared(const StatementCache::Entry& entry, bool created,
                      std::span<const Datum* const> params, Expected expected);
  Status SendSimple(const std::string& sql, std::vector<std::string> params, Expected expected);
  Status Sync();
  // Reads results until at most `keep_syncs` syncs are outstanding.
  Status Drain(int keep_syncs);
  // Reads the results that have already arrived, without waiting; true when
  // nothing is outstanding any more.
  Result<bool> DrainArrived();
  int unsynced() const { return unsynced_; }

  // The first failure of the replica transaction being sent.
  Status& error() { return error_; }
  // Forgets everything in flight: the session was closed.
  void Reset();

 private:
  // Reads the next result (blocking) and checks it against expected_.
  Status TakeResult();
  void NoteResult(const Expected& expected, PGresult* r);

  PgConn* conn_;
  int statements_per_sync_;
  NameError name_error_;
  bool in_pipeline_ = false;
  std::deque<Expected> expected_;
  int unsynced_ = 0;  // statements sent since the last sync
  int syncs_outstanding_ = 0;
  Status error_;
  std::vector<const char*> values_;  // parameter arrays, reused
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

}  // namespace geosync
