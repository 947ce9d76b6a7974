// The database side of promotion and fencing: blocking libpq calls that the
// daemon runs on its own threads while a site changes role. Each operation
// is idempotent, so an interrupted promotion can simply be run again.
//
//   fence      ALTER DATABASE ... SET default_transaction_read_only = on,
//              close the write guard (agent/pg/write_guard.h), then
//              terminate the database's client sessions (geosync's own are
//              kept). Durable across restarts, reversible with Unfence.
//   epoch      ALTER DATABASE ... SET geosync.epoch = 'N': the epoch lives in
//              the database as well as in the state file.
//   sequences  every serial/identity sequence raised to max(column), plus a
//              gap after a failover (values lost transactions may have used).
//   slot       the source's publication and a fresh pgoutput slot.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/pg/pg_conn.h"
#include "agent/pg/write_guard.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync::promote {

// A session for geosync's own work: it may write while the database is
// fenced (default_transaction_read_only = off) and is never terminated by a
// fence (application_name geosync_admin). Commits are local-only, so a
// synchronous_standby_names that names the old slot cannot block it. It runs
// under session_replication_role = replica: the write guard lets it through
// and its DDL (the publication) is neither captured nor refused.
Result<PgConn> ConnectAdmin(const std::string& conninfo);

// Makes the connected database read-only for every new session, closes the
// write guard as `guard` says (what the refusal names), and ends the
// existing client sessions except geosync's. Returns how many were ended.
Result<int> FenceDatabase(PgConn& conn, const GuardRequest& guard);
// Lifts the fence (RESET default_transaction_read_only).
Status UnfenceDatabase(PgConn& conn);
// Whether the database carries the fence.
Result<bool> DatabaseFenced(PgConn& conn);

// Records the epoch in the database (ALTER DATABASE ... SET geosync.epoch).
Status StoreEpoch(PgConn& conn, uint64_t epoch);
// The epoch stored in the database; 0 when none was stored.
Result<uint64_t> StoredEpoch(PgConn& conn);

// Emits a transactional geosync.marker message and returns its LSN: the
// transaction that carries it commits after every transaction committed
// before the call.
Result<Lsn> EmitMarker(PgConn& conn, const std::string& text);

struct SequenceRaise {
  std::string sequence;  // schema-qualified
  std::string column;    // table.column it serves
  int64_t before = 0;
  int64_t after = 0;
};
// Raises every sequence that backs a serial or identity column to at least
// max(column) + gap increments (and last_value + gap increments when gap > 0).
// Never lowers one. Returns the sequences it changed.
Result<std::vector<SequenceRaise>> RaiseSequences(PgConn& conn, int64_t gap);

// Creates the publication when missing (FOR ALL TABLES, or `tables`).
Status EnsurePublication(PgConn& conn, const std::string& publication,
                         const std::vector<std::string>& tables);
// Drops `slot` if it exists (ending the session that holds it, waiting up to
// `deadline` for it to become inactive) and creates it afresh with pgoutput:
// it then decodes exactly the transactions that commit from now on.
Status RecreateSlot(PgConn& conn, const std::string& slot, std::chrono::milliseconds deadline);
// Drops `slot` if it exists, as above.
Status DropSlot(PgConn& conn, const std::string& slot, std::chrono::milliseconds deadline);

// Creates replication origin `name` if needed and sets its progress to `lsn`.
Status SetOriginProgress(PgConn& conn, const std::string& name, Lsn lsn);

}  // namespace geosync::promote
