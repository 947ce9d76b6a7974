// bench_decode: how fast geosync's capture (pgoutput decode, encode, spool
// append and fsync) drains a slot's backlog, against pg_recvlogical writing
// the same pgoutput stream to a file without fsync: the ceiling set by the
// walsender. Verifies that both got the same thing: pg_recvlogical's output is
// parsed message by message (its own pgoutput reader, below) and geosync's
// spool is read back record by record; the transactions, inserts, updates,
// deletes and truncates up to the end LSN must agree with each other and with
// pgbench's count of transactions, in every round, or the run exits 1.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
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
#include "common/encoding.h"
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
  bool corrupt = false;  // drop one insert from pg_recvlogical's count: the run must exit 1
};

// What a reader got between the slot's start and the end LSN.
struct Counts {
  uint64_t transactions = 0;  // commits
  uint64_t inserts = 0, updates = 0, deletes = 0, truncates = 0;

  bool operator==(const Counts&) const = default;
  std::string ToString() const {
    return fmt::format("{} transactions, {} inserts, {} updates, {} deletes, {} truncates",
                       transactions, inserts, updates, deletes, truncates);
  }
};

// Reads pg_recvlogical's output file: every pgoutput message (protocol
// version 1, as requested) followed by one '\n', which pg_recvlogical writes
// after each message. All integers are big-endian. Layouts (PostgreSQL's
// proto.c), after the one-byte type:
//   'B' begin     final_lsn u64, commit_time i64, xid u32
//   'C' commit    flags u8, commit_lsn u64, end_lsn u64, commit_time i64
//   'O' origin    lsn u64, name cstring
//   'R' relation  relid u32, nspname cstring, relname cstring, replident u8,
//                 natts u16, per column: flags u8, name cstring, type u32, typmod i32
//   'Y' type      typid u32, nspname cstring, typname cstring
//   'I' insert    relid u32, 'N', tuple
//   'U' update    relid u32, optional ('K' | 'O', tuple), 'N', tuple
//   'D' delete    relid u32, 'K' | 'O', tuple
//   'T' truncate  nrels u32, options u8, relid u32 x nrels
//   'M' message   flags u8, lsn u64, prefix cstring, length u32, content
//   tuple         ncols u16, per column: 'n' | 'u' | ('t' | 'b', length u32, bytes)
// Throws, naming the offset, on anything else, so a misparse cannot pass
// for a count.
class RecvlogicalReader {
 public:
  explicit RecvlogicalReader(std::string data) : data_(std::move(data)) {}

  Counts Count() {
    Counts c;
    while (pos_ < data_.size()) {
      const size_t start = pos_;
      const char type = static_cast<char>(U8());
      switch (type) {
        case 'B':
          Skip(8 + 8 + 4);
          break;
        case 'C':
          Skip(1 + 8 + 8 + 8);
          c.transactions++;
          break;
        case 'O':
          Skip(8);
          CString();
          break;
        case 'R': {
          Skip(4);
          CString();
          CString();
          Skip(1);
          const uint32_t natts = Be(2);
          for (uint32_t i = 0; i < natts; ++i) {
            Skip(1);
            CString();
            Skip(4 + 4);
          }
          break;
        }
        case 'Y':
          Skip(4);
          CString();
          CString();
          break;
        case 'I':
          Skip(4);
          Expect('N');
          Tuple();
          c.inserts++;
          break;
        case 'U': {
          Skip(4);
          char k = static_cast<char>(U8());
          if (k == 'K' || k == 'O') {
            Tuple();
            k = static_cast<char>(U8());
          }
          if (k != 'N') Fail(fmt::format("update without a new tuple (0x{:02x})", k));
          Tuple();
          c.updates++;
          break;
        }
        case 'D': {
          Skip(4);
          const char k = static_cast<char>(U8());
          if (k != 'K' && k != 'O') Fail(fmt::format("delete without an old tuple (0x{:02x})", k));
          Tuple();
          c.deletes++;
          break;
        }
        case 'T':
          Skip(4 * Be(4) + 1);
          c.truncates++;
          break;
        case 'M':
          Skip(1 + 8);
          CString();
          Skip(Be(4));
          break;
        default:
          pos_ = start;
          Fail(fmt::format("unknown message type 0x{:02x}", static_cast<uint8_t>(type)));
      }
      Expect('\n');
    }
    return c;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw std::runtime_error(
        fmt::format("pg_recvlogical output: {} at offset {} of {}", what, pos_, data_.size()));
  }
  void Need(size_t n) const {
    if (data_.size() - pos_ < n) Fail(fmt::format("{} bytes needed, the file ends", n));
  }
  void Skip(size_t n) {
    Need(n);
    pos_ += n;
  }
  uint8_t U8() {
    Need(1);
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint32_t Be(int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | U8();
    return v;
  }
  void Expect(char want) {
    const uint8_t got = U8();
    if (got != static_cast<uint8_t>(want)) {
      pos_--;
      Fail(fmt::format("expected 0x{:02x}, found 0x{:02x}", want, got));
    }
  }
  void CString() {
    const size_t nul = data_.find('\0', pos_);
    if (nul == std::string::npos) Fail("unterminated string");
    pos_ = nul + 1;
  }
  void Tuple() {
    const uint32_t ncols = Be(2);
    for (uint32_t i = 0; i < ncols; ++i) {
      const char kind = static_cast<char>(U8());
      if (kind == 't' || kind == 'b') {
        Skip(Be(4));
      } else if (kind != 'n' && kind != 'u') {
        pos_--;
        Fail(fmt::format("unknown column kind 0x{:02x}", static_cast<uint8_t>(kind)));
      }
    }
  }

  std::string data_;
  size_t pos_ = 0;
};

// Reads a spool back, record by record, and counts the transactions (and
// their row changes) whose commit ends at or before `end`.
Counts CountSpool(Spool& spool, Lsn end) {
  auto reader = spool.ReadFrom(Position{});
  Check(reader.status(), "reading the spool back");
  Counts total, txn;
  for (;;) {
    auto rec = (*reader)->Next();
    Check(rec.status(), "reading a spool record");
    if (!rec->has_value()) break;
    auto event = DecodeEvent((*rec)->payload);
    Check(event.status(), "decoding a spool record");
    if (std::holds_alternative<BeginEvent>(*event)) {
      txn = Counts{};
    } else if (const auto* row = std::get_if<RowChange>(&*event)) {
      (row->op == RowOp::kInsert   ? txn.inserts
       : row->op == RowOp::kUpdate ? txn.updates
                                   : txn.deletes)++;
    } else if (std::holds_alternative<TruncateEvent>(*event)) {
      txn.truncates++;
    } else if (const auto* commit = std::get_if<CommitEvent>(&*event)) {
      if (commit->end_lsn > end) continue;
      total.transactions++;
      total.inserts += txn.inserts;
      total.updates += txn.updates;
      total.deletes += txn.deletes;
      total.truncates += txn.truncates;
    }
  }
  return total;
}

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct RecvResult {
  double seconds = 0;
  uint64_t bytes = 0;  // pgoutput messages written, with pg_recvlogical's newlines
  Counts counts;
};

// pg_recvlogical --endpos: exits by itself once it has passed `end`. Writes
// to a file (no fsync: -F 0) that is parsed after the clock has stopped.
RecvResult DrainRecvlogical(PgCluster& primary, const std::string& slot, Lsn end,
                            const Flags& flags) {
  const std::string file = primary.Dir() + "/" + slot + ".pgoutput";
  RecvResult r;
  auto t0 = Clock::now();
  auto out = primary.RunClientTool(
      "pg_recvlogical", {"-d", primary.ConnInfo(), "--slot=" + slot, "--start", "--no-loop",
                         "--endpos=" + end.ToString(), "-F", "0", "-o", "proto_version=1", "-o",
                         "publication_names=geosync", "-o", "messages=true", "-f", file});
  r.seconds = Since(t0);
  Check(out.status(), "running pg_recvlogical");
  if (out->exit_status != 0) {
    throw std::runtime_error(fmt::format("pg_recvlogical failed ({}):\n{}",
                                         testing::DescribeExitStatus(out->exit_status),
                                         out->output));
  }
  if (r.seconds > flags.deadline_seconds) {
    throw std::runtime_error("pg_recvlogical outlived the deadline");
  }
  std::ifstream in(file, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + file);
  std::filesystem::remove(file);
  r.bytes = data.size();
  r.counts = RecvlogicalReader(std::move(data)).Count();
  return r;
}

struct OursResult {
  double seconds = 0;
  uint64_t pgoutput_bytes = 0;
  uint64_t spool_bytes = 0;
  uint64_t transactions = 0;
  Counts counts;  // read back from the spool, up to the end LSN
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
  r.counts = CountSpool(**spool, end);
  spool->reset();
  std::filesystem::remove_all(dir);
  return r;
}

// Both readers must have got every pgbench transaction and the same changes.
bool VerifyRound(int round, uint64_t pgbench_txns, const Counts& recv, const Counts& ours) {
  const bool ok = recv == ours && recv.transactions == pgbench_txns;
  std::cout << fmt::format(
      "round {}: pg_recvlogical got {}; geosync spooled {}; pgbench committed {} transactions: "
      "{}\n",
      round, recv.ToString(), ours.ToString(), pgbench_txns, ok ? "same" : "MISMATCH");
  return ok;
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
    RecvResult recv;
    std::vector<std::string> rows;
    bool verified = true;
    auto row = [&](int round, const std::string& reader, double s) {
      rows.push_back(fmt::format("{:<6} {:<30} {:>9.2f} {:>9.1f} {:>9.0f}", round, reader, s,
                                 wal_mb / s, txns / s));
    };
    for (int i = 1; i <= flags.rounds; ++i) {
      auto drain_recv = [&] {
        recv = DrainRecvlogical(primary, fmt::format("bench_recv_{}", i), end, flags);
        recv_total += recv.seconds;
        row(i, "pg_recvlogical -> file", recv.seconds);
        std::cout << fmt::format("round {}: pg_recvlogical drained in {:.2f} s\n", i, recv.seconds);
      };
      auto drain_ours = [&] {
        ours = DrainOurs(primary, fmt::format("bench_ours_{}", i), end, flags);
        ours_total += ours.seconds;
        row(i, "geosync Capture -> SpoolSink", ours.seconds);
        std::cout << fmt::format("round {}: geosync capture drained in {:.2f} s\n", i,
                                 ours.seconds);
      };
      if (i % 2 == 1) {
        drain_recv();
        drain_ours();
      } else {
        drain_ours();
        drain_recv();
      }
      if (flags.corrupt) {
        recv.counts.inserts--;
        std::cout << "--corrupt: one insert less counted for pg_recvlogical\n";
      }
      verified = VerifyRound(i, txns, recv.counts, ours.counts) && verified;
    }

    std::cout << fmt::format(
        "\ndecode rate (one run; one backlog of {} transactions, {:.1f} MB of WAL, drained "
        "by each reader in turn to the same end LSN)\n{:<6} {:<30} {:>9} {:>9} {:>9}\n",
        txns, wal_mb, "round", "reader", "seconds", "WAL MB/s", "txn/s");
    for (const auto& r : rows) std::cout << r << "\n";
    std::cout << fmt::format(
        "pg_recvlogical wrote {:.1f} MB of pgoutput ({:.0f} B/txn); geosync: {} transactions "
        "spooled (pgbench + marker), {:.1f} MB of pgoutput in ({:.0f} B/txn), {:.1f} MB of spool "
        "out ({:.0f} B/txn)\n",
        recv.bytes / 1e6, double(recv.bytes) / txns, ours.transactions, ours.pgoutput_bytes / 1e6,
        double(ours.pgoutput_bytes) / txns, ours.spool_bytes / 1e6,
        double(ours.spool_bytes) / txns);
    std::cout << fmt::format(
        "ratio: geosync/pg_recvlogical txn/s over {} rounds: {:.2f} (target >= 0.9)\n",
        flags.rounds, recv_total / ours_total);
    if (!verified) {
      std::cout << "MISMATCH: the readers did not get the same changes\n";
      return 1;
    }
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
  app.add_flag("--corrupt", flags.corrupt,
               "count one insert less for pg_recvlogical (tests the check: the run must exit 1)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // the capture's own info lines
  return geosync::bench::TimedMain("bench_decode", [&] { return geosync::bench::Run(flags); });
}
