// Waiting on facts, with deadlines: poll a condition with a short backoff and
// fail the test, naming what was awaited, when the deadline passes. This is
// how tests synchronise with servers and daemons; never a bare sleep.
#pragma once

#include <chrono>
#include <functional>
#include <source_location>
#include <string>

#include "agent/pg/pg_conn.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync::testing {

class PgCluster;

// Polls `condition` (5 ms backoff doubling to 100 ms) until it returns true or
// `deadline` passes. An exception thrown by `condition` counts as "not yet"
// and its message is kept for the report. Timeout names `what`.
Status Poll(const std::function<bool()>& condition, std::chrono::milliseconds deadline,
            const std::string& what);

// Poll() that records a gtest failure at the caller's line on timeout.
// Returns whether the condition became true, so a test can stop early:
//   ASSERT_TRUE(WaitFor([&] { return ...; }, 10s, "replica has 1052 rows"));
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds deadline,
             const std::string& what, std::source_location where = std::source_location::current());

// Waits until `lsn_query` (one row, one column, an LSN or NULL) returns a
// position >= target, e.g. "SELECT confirmed_flush_lsn FROM pg_replication_slots
// WHERE slot_name = 'x'". The PgCluster overload reconnects as needed, so the
// server may restart while we wait. Records a gtest failure on timeout.
bool WaitForLsn(PgConn& conn, const std::string& lsn_query, Lsn target,
                std::chrono::milliseconds deadline,
                std::source_location where = std::source_location::current());
bool WaitForLsn(PgCluster& cluster, const std::string& lsn_query, Lsn target,
                std::chrono::milliseconds deadline,
                std::source_location where = std::source_location::current());

}  // namespace geosync::testing
