// Helpers shared by the benchmark programs in bench/: fail-fast checks,
// pgbench output parsing, and waiting for a target to apply up to an LSN.
#pragma once

#include <unistd.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "common/lsn.h"
#include "common/status.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/wait.h"

namespace geosync::bench {

using BenchClock = std::chrono::steady_clock;

inline void Check(const Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error(fmt::format("{}: {}", what, st.ToString()));
}

// A missing program is an error, never a skipped measurement.
inline void RequireExecutable(const std::string& path) {
  if (::access(path.c_str(), X_OK) != 0) {
    throw std::runtime_error(fmt::format("required program {} is missing or not executable", path));
  }
}

// "number of transactions actually processed: 12345" from pgbench's summary.
inline uint64_t PgbenchTxns(const std::string& output) {
  const std::string key = "number of transactions actually processed: ";
  auto pos = output.find(key);
  if (pos == std::string::npos) {
    throw std::runtime_error("pgbench printed no transaction count:\n" + output);
  }
  return std::stoull(output.substr(pos + key.size()));
}

// The newest remote_lsn of the replication origins named LIKE `origin_like`.
inline std::string OriginLsnQuery(const std::string& origin_like) {
  return fmt::format(
      "SELECT coalesce(max(remote_lsn), '0/0') FROM pg_replication_origin_status s JOIN "
      "pg_replication_origin o ON o.roident = s.local_id WHERE o.roname LIKE '{}'",
      origin_like);
}

// Polls `query` on one connection every 20 ms until it returns an LSN >=
// target; returns the seconds since `start`.
inline double WaitApplied(testing::PgCluster& cluster, const std::string& dbname,
                          const std::string& query, Lsn target, BenchClock::time_point start,
                          std::chrono::seconds deadline, const std::string& what) {
  PgConn conn = cluster.Connect(dbname);
  Lsn last;
  while (BenchClock::now() - start < deadline) {
    auto v = conn.QueryValue(query);
    if (!v.ok()) throw std::runtime_error(what + ": " + v.status().ToString());
    auto lsn = Lsn::Parse(*v);
    if (lsn.ok()) last = *lsn;
    if (last >= target) return std::chrono::duration<double>(BenchClock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error(fmt::format("{}: applied position {} did not reach {} within {} s", what,
                                       last.ToString(), target.ToString(), deadline.count()));
}

inline void WaitFact(const std::function<bool()>& fact, std::chrono::seconds deadline,
                     const std::string& what) {
  Check(testing::Poll(fact, deadline, what), "waiting until " + what);
}

}  // namespace geosync::bench
