// bench_decode: how fast geosync's capture (pgoutput decode, encode, spool
// append and fsync) drains a slot's backlog, against pg_recvlogical writing
// the same pgoutput stream to /dev/null: the ceiling set by the walsender.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "agent/source/capture.h"
#include "agent/source/spool_sink.h"
#include "agent/spool/spool.h"
#include "bench/bench_common.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/wait.h"

namespace geosync::bench {
namespace {

using namespace std::chrono_literals;
using geosync::testing::PgCluster;
using geosync::testing::PgClusterOptions;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int clients = 4;
  int seconds = 20;
  int rounds = 2;
  int deadline_seconds = 600;
};

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// pg_recvlogical --endpos: exits by itself once it has passed `end`.
double DrainRecvlogical(PgCluster& primary, const std::string& slot, Lsn end, const Flags& flags) {
  auto t0 = Clock::now();
  auto out = primary.RunClientTool(
      "pg_recvlogical", {"-d", primary.ConnInfo(), "--slot=" + slot, "--start", "--no-loop",
                         "--endpos=" + end.ToString(), "-F", "0", "-o", "proto_version=1", "-o",
                         "publication_names=geosync", "-o", "messages=true", "-f", "/dev/null"});
  double s = Since(t0);
  Check(out.status(), "running pg_recvlogical");
  if (out->exit_status != 0) {
    throw std::runtime_error(fmt::format("pg_recvlogical failed ({}):\n{}",
                                         testing::DescribeExitStatus(out->exit_status),
                                         out->output));
  }
  if (s > flags.deadline_seconds) throw std::runtime_error("pg_recvlogical outlived the deadline");
  return s;
}

struct OursResult {
  double seconds = 0;
  uint64_t pgoutput_bytes = 0;
  uint64_t spool_bytes = 0;
  uint64_t transactions = 0;
};

// Capture -> SpoolSink -> a temp Spool, as the source runs them; done when the
// spool holds, fsynced, a commit ending past `end`.
OursResult DrainOurs(PgCluster& primary, const std::string& slot, Lsn end, const Flags& flags) {
  std::string dir =
      std::filesystem::temp_directory_path() / fmt::format("geosync-bench-decode-{}", ::getpid());
  std::filesystem::remove_all(dir);
  SpoolOptions so;
  so.dir = dir;
  auto spool = Spool::Open(so);
  Check(spool.status(), "opening the temp spool " + dir);
  SpoolSink sink(spool->get(), 1, {});
  CaptureOptions co;
  co.conninfo = primary.ConnInfo();
  co.slot = slot;
  co.publication = "geosync";
  co.create_publication = false;
  co.max_attempts = 1;
  asio::io_context io;
  Capture capture(io.get_executor(), co, sink);
  std::optional<Status> finished;
  std::mutex mu;
  auto t0 = Clock::now();
  asio::co_spawn(io, capture.Run(), [&](std::exception_ptr e, Status st) {
    std::lock_guard lock(mu);
    finished = e ? Status::Io("capture threw an exception") : st;
  });
  std::thread thread([&] { io.run(); });
  Status waited = testing::Poll(
      [&] {
        {
          std::lock_guard lock(mu);
          if (finished) throw std::runtime_error("capture ended: " + finished->ToString());
        }
        return sink.spooled_end_lsn() >= end;
      },
      std::chrono::seconds(flags.deadline_seconds),
      "geosync capture spooled past " + end.ToString());
  OursResult r;
  r.seconds = Since(t0);
  asio::post(io, [&] { capture.Stop(); });
  thread.join();
  Check(waited, "draining with geosync's capture");
  r.pgoutput_bytes = capture.stats().bytes;
  r.transactions = sink.transactions();
  r.spool_bytes = (*spool)->size_bytes();
  spool->reset();
  std::filesystem::remove_all(dir);
  return r;
}

int Run(const Flags& flags) {
  PgClusterOptions o;
  o.name = "primary";
  PgCluster primary(o);
  try {
    Check(primary.Start(), "starting the primary");
    for (const char* tool : {"pgbench", "pg_recvlogical"}) {
      RequireExecutable(primary.BinDir() + "/" + tool);
    }
    primary.RunPgbench({"-i", "-s", std::to_string(flags.scale), "-q"});
    primary.Exec("CREATE TABLE bench_marker (id serial PRIMARY KEY, note text)");
    primary.Exec("CREATE PUBLICATION geosync FOR ALL TABLES");
    Lsn start = primary.CurrentWalLsn();
    // One pair of slots per round, all created before the backlog.
    for (int i = 1; i <= flags.rounds; ++i) {
      for (const char* kind : {"recv", "ours"}) {
        primary.Exec(fmt::format(
            "SELECT pg_create_logical_replication_slot('bench_{}_{}', 'pgoutput')", kind, i));
      }
    }
    std::vector<std::string> args = {"-n", "-c", std::to_string(flags.clients), "-T",
                                     std::to_string(flags.seconds)};
    std::cout << fmt::format("building the backlog: pgbench {}\n", fmt::join(args, " "));
    uint64_t txns = PgbenchTxns(primary.RunPgbench(args));
    Lsn end = primary.CurrentWalLsn();
    // A transaction past `end`, so both readers see a commit beyond it.
    primary.Exec("INSERT INTO bench_marker (note) VALUES ('end of backlog')");
    double wal_mb = end.BytesAfter(start) / 1e6;
    std::cout << fmt::format("backlog: {} transactions, {:.1f} MB of WAL ({} .. {})\n", txns,
                             wal_mb, start.ToString(), end.ToString());

    // Rounds alternate which reader goes first, so neither always gets the
    // colder cache.
    double recv_total = 0, ours_total = 0;
    OursResult ours;
    std::vector<std::string> rows;
    auto row = [&](int round, const std::string& reader, double s) {
      rows.push_back(fmt::format("{:<6} {:<30} {:>9.2f} {:>9.1f} {:>9.0f}", round, reader, s,
                                 wal_mb / s, txns / s));
    };
    for (int i = 1; i <= flags.rounds; ++i) {
      auto recv = [&] {
        double s = DrainRecvlogical(primary, fmt::format("bench_recv_{}", i), end, flags);
        recv_total += s;
        row(i, "pg_recvlogical -> /dev/null", s);
        std::cout << fmt::format("round {}: pg_recvlogical drained in {:.2f} s\n", i, s);
      };
      auto mine = [&] {
        ours = DrainOurs(primary, fmt::format("bench_ours_{}", i), end, flags);
        ours_total += ours.seconds;
        row(i, "geosync Capture -> SpoolSink", ours.seconds);
        std::cout << fmt::format("round {}: geosync capture drained in {:.2f} s\n", i,
                                 ours.seconds);
      };
      if (i % 2 == 1) {
        recv();
        mine();
      } else {
        mine();
        recv();
      }
    }

    std::cout << fmt::format(
        "\ndecode rate (one run; one backlog of {} transactions, {:.1f} MB of WAL, drained "
        "by each reader in turn to the same end LSN)\n{:<6} {:<30} {:>9} {:>9} {:>9}\n",
        txns, wal_mb, "round", "reader", "seconds", "WAL MB/s", "txn/s");
    for (const auto& r : rows) std::cout << r << "\n";
    std::cout << fmt::format(
        "geosync: {} transactions spooled (pgbench + marker); {:.1f} MB of pgoutput in "
        "({:.0f} B/txn), {:.1f} MB of spool out ({:.0f} B/txn)\n",
        ours.transactions, ours.pgoutput_bytes / 1e6, double(ours.pgoutput_bytes) / txns,
        ours.spool_bytes / 1e6, double(ours.spool_bytes) / txns);
    std::cout << fmt::format(
        "ratio: geosync/pg_recvlogical txn/s over {} rounds: {:.2f} (target >= 0.9)\n",
        flags.rounds, recv_total / ours_total);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_decode: FAILED: " << e.what() << "\nserver log: " << primary.LogPath()
              << "\n";
    return 1;
  }
}

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{"bench_decode: capture decode rate, geosync vs pg_recvlogical"};
  app.add_option("--scale", flags.scale, "pgbench -i scale factor")->check(CLI::PositiveNumber);
  app.add_option("--clients", flags.clients, "pgbench clients")->check(CLI::PositiveNumber);
  app.add_option("--seconds", flags.seconds, "pgbench run building the backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", flags.rounds, "drains per reader, alternating which goes first")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up on a drain after this many s")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // the capture's own info lines
  auto start = std::chrono::steady_clock::now();
  int rc = geosync::bench::Run(flags);
  std::cout << fmt::format(
      "bench_decode ran {:.0f} s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return rc;
}
