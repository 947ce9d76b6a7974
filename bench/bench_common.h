// Helpers shared by the benchmark programs in bench/: fail-fast checks,
// pgbench output parsing, waiting for a target to apply up to an LSN, the
// order of the systems in a round, and the check that every target holds the
// primary's data.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/lsn.h"
#include "common/status.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
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

// Runs a benchmark program's body and prints its whole wall time under its
// name; returns the body's exit status.
inline int TimedMain(const std::string& name, const std::function<int()>& body) {
  const auto start = BenchClock::now();
  const int rc = body();
  std::cout << fmt::format("{} ran {:.0f} s\n", name,
                           std::chrono::duration<double>(BenchClock::now() - start).count());
  return rc;
}

inline void WaitFact(const std::function<bool()>& fact, std::chrono::seconds deadline,
                     const std::string& what) {
  Check(testing::Poll(fact, deadline, what), "waiting until " + what);
}

// Waits until a new source geosyncd streams its slot `slot` and has spooled
// at least one transaction (its own heartbeat will do): its slot confirms
// only what its spool holds durably. A source stopped with an empty spool
// would come back with its spool reset to the slot's position and refuse
// replicas that ask from the start (they would need a seed).
inline void WaitSourceSpooling(testing::PgCluster& primary, const std::string& slot,
                               const std::string& what) {
  // While the slot is being created it is active with no confirmed_flush_lsn
  // yet (the snapshot is still being built): wait for both.
  const std::string active = fmt::format(
      "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active AND "
      "confirmed_flush_lsn IS NOT NULL",
      slot);
  WaitFact([&] { return primary.QueryValue(active) == "1"; }, std::chrono::seconds(60),
           what + " created and streams its slot");
  const std::string confirmed = fmt::format(
      "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'", slot);
  auto created = Lsn::Parse(primary.QueryValue(confirmed));
  Check(created.status(), "reading the confirmed_flush_lsn of slot " + slot);
  WaitFact(
      [&] {
        auto lsn = Lsn::Parse(primary.QueryValue(confirmed));
        return lsn.ok() && *lsn > *created;
      },
      std::chrono::seconds(60), what + " spooled a first transaction");
}

// Whether something accepts TCP connections on 127.0.0.1:port.
inline bool PortAccepts(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// Inside a timed window: checks every 5 ms (no growing backoff, which would
// add up to its last step to the measurement) until the port accepts.
inline void WaitListening(uint16_t port, std::chrono::seconds deadline, const std::string& what) {
  auto t0 = BenchClock::now();
  while (!PortAccepts(port)) {
    if (BenchClock::now() - t0 > deadline) {
      throw std::runtime_error(
          fmt::format("{} does not listen on port {} after {} s", what, port, deadline.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The order in which round `round` (1-based) drains: `systems` as given in odd
// rounds, reversed in even ones, so no system always goes first (colder
// caches) or last (the box warmed up by the others).
template <typename T>
std::vector<T> RoundOrder(int round, std::vector<T> systems) {
  if (round % 2 == 0) std::reverse(systems.begin(), systems.end());
  return systems;
}

// --corrupt: changes one row on `target` behind replication's back (past a
// geosync replica's write guard), so that the check below must fail.
inline void CorruptOneRow(testing::PgCluster& target, const std::string& what) {
  target.Exec(
      "SET default_transaction_read_only = off; SET session_replication_role = replica; "
      "UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1");
  std::cout << "--corrupt: changed one row of pgbench_branches on the " << what << "\n";
}

// Compares every target with the primary (testing::CompareTables: every user
// table, row by row) and prints one line per target. True when all match.
inline bool VerifyTargets(testing::PgCluster& primary,
                          const std::vector<std::pair<std::string, testing::PgCluster*>>& targets) {
  bool all = true;
  for (const auto& [what, target] : targets) {
    std::string diff = testing::CompareTables(primary, *target);
    all = all && diff.empty();
    std::cout << fmt::format("{} matches the primary (CompareTables): {}\n", what,
                             diff.empty() ? "yes" : "NO: " + diff);
  }
  if (!all) std::cout << "MISMATCH: at least one target differs from the primary\n";
  return all;
}

// `perf record -a -g` over one timed window (a drain), written to
// <dir>/<name>.data, when `dir` is not empty: the whole machine while only
// one system runs. bench/perf_summary.sh reads the files. A missing perf is
// an error, never a skip.
class PerfWindow {
 public:
  PerfWindow(const std::string& dir, const std::string& name) {
    if (dir.empty()) return;
    RequireExecutable("/usr/bin/perf");
    std::filesystem::create_directories(dir);
    testing::ProcessSpec spec;
    spec.argv = {"/usr/bin/perf",           "record", "-a", "-g", "-F", "499", "--quiet", "-o",
                 dir + "/" + name + ".data"};
    spec.log_path = dir + "/" + name + ".log";
    perf_ = std::make_unique<testing::ChildProcess>(spec);
    Check(perf_->Start(), "starting perf record for " + name);
  }
  ~PerfWindow() {
    if (!perf_) return;
    (void)perf_->Kill(SIGINT);  // perf writes its file on SIGINT
    (void)perf_->Wait(std::chrono::seconds(60));
  }
  PerfWindow(const PerfWindow&) = delete;
  PerfWindow& operator=(const PerfWindow&) = delete;

 private:
  std::unique_ptr<testing::ChildProcess> perf_;
};

}  // namespace geosync::bench
