// bench_backlog_rss: memory of both geosyncd processes across a big backlog.
// Issue 4 asks that "a 2 GB backlog must not take either side past about
// 256 MB RSS". With the replica geosyncd stopped, the primary writes big rows
// (8 KB text values in transactions of --txn-mb) and a pgbench run until the
// source's spool holds --backlog-mb; then the replica starts and drains it.
// VmRSS of both processes is sampled every --sample-ms throughout, and VmHWM
// read at the end. Prints the backlog size, the drain time, the peak RSS of
// each side, and whether the replica matches the primary (CompareTables: every
// user table row by row); a mismatch or a peak of 256 MiB makes it exit 1.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_common.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::bench {
namespace {

using namespace std::chrono_literals;
using geosync::testing::GeoSite;
using geosync::testing::PgCluster;
using Clock = std::chrono::steady_clock;

struct Flags {
  uint64_t backlog_mb = 2048;  // spool bytes on the source before the drain
  int row_kb = 8;              // size of each big row's text value
  int txn_mb = 32;             // big rows per transaction, in MB
  int pgbench_seconds = 10;    // a tpcb-like run inside the backlog
  int sample_ms = 100;
  int deadline_seconds = 1800;
  bool corrupt = false;  // change a replica row before verifying: the run must exit 1
};

// A "VmRSS:"/"VmHWM:" line of /proc/PID/status, in KiB; 0 when unknown.
uint64_t ProcKib(pid_t pid, const std::string& key) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size()));
  }
  return 0;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code size_ec;
    uint64_t size = e.file_size(size_ec);
    if (!size_ec) total += size;
  }
  return total;
}

// Samples VmRSS of a process on a thread; the peak in KiB.
class RssSampler {
 public:
  RssSampler(pid_t pid, std::chrono::milliseconds period)
      : thread_([this, pid, period] {
          while (!stop_) {
            uint64_t kib = ProcKib(pid, "VmRSS:");
            if (kib > peak_) peak_ = kib;
            samples_++;
            std::this_thread::sleep_for(period);
          }
        }) {}
  ~RssSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t peak_kib() const { return peak_; }
  uint64_t samples() const { return samples_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0}, samples_{0};
  std::thread thread_;
};

class BacklogRssBench {
 public:
  explicit BacklogRssBench(Flags flags) : flags_(flags) {}

  int Run() {
    try {
      Setup();
      BuildBacklog();
      DrainBacklog();
      return Report() ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_backlog_rss: FAILED: " << e.what() << "\n";
      if (deploy_) deploy_->DumpLogs();
      return 1;
    }
  }

 private:
  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    deploy_ = std::make_unique<testing::Deployment>(
        testing::DeploymentOptions{.replicas = {"dublin"}, .configure_pg = [](PgCluster& c) {
                                     // Room for a 2 GB backlog of WAL without checkpoints every few
                                     // seconds.
                                     c.SetSetting("max_wal_size", "8GB");
                                   }});
    primary_ = &deploy_->Primary();
    RequireExecutable(primary_->BinDir() + "/pgbench");
    target_ = &deploy_->Pg("dublin");
    for (auto* c : {primary_, target_}) {
      c->RunPgbench({"-i", "-s", "1", "-q"});  // identical rows on both
      c->Exec("CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL)");
      // 64 KB of hex; each big row is a slice of it at its own offset, so a
      // row does not compress on its own (no TOAST compression) and the
      // values are cheap to make. Not published; the same on both sides,
      // so that every user table compares.
      c->Exec(
          "CREATE TABLE big_pool AS SELECT string_agg(md5(g::text), '' ORDER BY g) AS pool FROM "
          "generate_series(1, 2048) g");
    }

    source_ =
        &deploy_->AddSource({{"postgres",
                              {{"tables",
                                {"public.big", "public.pgbench_accounts", "public.pgbench_branches",
                                 "public.pgbench_tellers", "public.pgbench_history"}}}},
                             {"spool", {{"segment_mb", 64}}}});
    Check(source_->Start(), "starting the source geosyncd");
    deploy_->WaitSlotActive();
    // Started only to drain.
    replica_ = &deploy_->AddReplica("dublin", {{"spool", {{"segment_mb", 64}}}});
  }

  void WaitSpooled(Lsn target) {
    WaitFact(
        [&] {
          auto lsn = Lsn::Parse(primary_->QueryValue(
              "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'geosync'"));
          return lsn.ok() && *lsn >= target;
        },
        std::chrono::seconds(flags_.deadline_seconds), "the source spooled the backlog");
  }

  void BuildBacklog() {
    const auto t0 = Clock::now();
    RssSampler source_rss(source_->Pid(), std::chrono::milliseconds(flags_.sample_ms));
    const std::string spool_dir = source_->dir() + "/spool";
    const uint64_t want = flags_.backlog_mb << 20;
    const int row_bytes = flags_.row_kb * 1024;
    const int64_t rows_per_txn = std::max<int64_t>(1, (int64_t{flags_.txn_mb} << 20) / row_bytes);
    Lsn start = primary_->CurrentWalLsn();
    bool pgbench_done = false;
    int64_t next_id = 1;
    for (;;) {
      // Writes run ahead of the capture by at most one round of transactions.
      Lsn target = primary_->CurrentWalLsn();
      WaitSpooled(target);
      uint64_t spooled = DirBytes(spool_dir);
      std::cout << fmt::format("[backlog] {:.0f} MB spooled, {} big rows, {:.0f} s\n",
                               spooled / 1048576.0, next_id - 1,
                               std::chrono::duration<double>(Clock::now() - t0).count())
                << std::flush;
      if (spooled >= want) break;
      if (!pgbench_done && spooled >= want / 2) {
        txns_ += PgbenchTxns(
            primary_->RunPgbench({"-n", "-c", "2", "-T", std::to_string(flags_.pgbench_seconds)}));
        pgbench_done = true;
        continue;
      }
      // About 256 MB of big rows per round (half the backlog when that is
      // less, so the pgbench run still comes in between), in transactions
      // of txn_mb.
      const int64_t round_bytes = std::min<int64_t>(int64_t{256} << 20, want / 2);
      int64_t rounds = std::max<int64_t>(1, round_bytes / (rows_per_txn * row_bytes));
      for (int64_t i = 0; i < rounds; ++i) {
        primary_->Exec(fmt::format(
            "INSERT INTO big (id, body) SELECT g, substr(p.pool, 1 + (g * 7919) % (length(p.pool) "
            "- {}), {}) FROM generate_series({}, {}) g, big_pool p",
            row_bytes, row_bytes, next_id, next_id + rows_per_txn - 1));
        next_id += rows_per_txn;
        txns_++;
      }
    }
    source_rss.Stop();
    big_rows_ = next_id - 1;
    backlog_bytes_ = DirBytes(spool_dir);
    target_lsn_ = primary_->CurrentWalLsn();
    wal_bytes_ = target_lsn_.BytesAfter(start);
    // A commit after the target: the replica's origin passes it only by
    // applying a transaction.
    primary_->Exec(
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES "
        "(1, 1, 1, 0, now())");
    WaitSpooled(primary_->CurrentWalLsn());
    build_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
    build_source_peak_kib_ = source_rss.peak_kib();
  }

  void DrainBacklog() {
    std::cout << fmt::format("[drain] {:.0f} MB in the source's spool; starting the replica\n",
                             backlog_bytes_ / 1048576.0)
              << std::flush;
    RssSampler source_rss(source_->Pid(), std::chrono::milliseconds(flags_.sample_ms));
    const auto t0 = Clock::now();
    Check(replica_->Start(), "starting the geosync replica");
    RssSampler replica_rss(replica_->Pid(), std::chrono::milliseconds(flags_.sample_ms));
    std::atomic<bool> progress_done{false};
    std::thread progress([&] {
      while (!progress_done) {
        for (int i = 0; i < 300 && !progress_done; ++i) std::this_thread::sleep_for(100ms);
        if (progress_done) break;
        std::cout << fmt::format(
                         "[drain] {:.0f} s: replica spool {:.0f} MB, RSS source {:.0f} MiB, "
                         "replica {:.0f} MiB\n",
                         std::chrono::duration<double>(Clock::now() - t0).count(),
                         DirBytes(replica_->dir() + "/spool") / 1048576.0,
                         source_rss.peak_kib() / 1024.0, replica_rss.peak_kib() / 1024.0)
                  << std::flush;
      }
    });
    try {
      drain_s_ = WaitApplied(*target_, "postgres", OriginLsnQuery("geosync%"), target_lsn_, t0,
                             std::chrono::seconds(flags_.deadline_seconds), "geosync replica");
    } catch (...) {
      progress_done = true;
      progress.join();
      throw;
    }
    progress_done = true;
    progress.join();
    source_rss.Stop();
    replica_rss.Stop();
    drain_source_peak_kib_ = source_rss.peak_kib();
    drain_replica_peak_kib_ = replica_rss.peak_kib();
    source_hwm_kib_ = ProcKib(source_->Pid(), "VmHWM:");
    replica_hwm_kib_ = ProcKib(replica_->Pid(), "VmHWM:");
    replica_spool_bytes_ = DirBytes(replica_->dir() + "/spool");
    samples_ = source_rss.samples() + replica_rss.samples();
  }

  bool Report() {
    const double mib = 1024.0;
    std::cout << "\nbacklog RSS (one run)\n";
    std::cout << fmt::format(
        "backlog: {:.0f} MB in the source spool ({} big rows of {} KB in "
        "{} MB transactions + pgbench -T {}; {} txns), {:.0f} MB of WAL\n",
        backlog_bytes_ / 1048576.0, big_rows_, flags_.row_kb, flags_.txn_mb, flags_.pgbench_seconds,
        txns_, wal_bytes_ / 1048576.0);
    std::cout << fmt::format(
        "built in {:.0f} s; drained in {:.1f} s ({:.1f} MB/s of spool); "
        "replica spool after drain {:.0f} MB\n",
        build_s_, drain_s_, backlog_bytes_ / 1048576.0 / drain_s_,
        replica_spool_bytes_ / 1048576.0);
    std::cout << fmt::format("{:<10} {:>22} {:>22} {:>14}\n", "geosyncd", "peak VmRSS build MiB",
                             "peak VmRSS drain MiB", "VmHWM MiB");
    std::cout << fmt::format("{:<10} {:>22.1f} {:>22.1f} {:>14.1f}\n", "source",
                             build_source_peak_kib_ / mib, drain_source_peak_kib_ / mib,
                             source_hwm_kib_ / mib);
    std::cout << fmt::format("{:<10} {:>22} {:>22.1f} {:>14.1f}\n", "replica", "-",
                             drain_replica_peak_kib_ / mib, replica_hwm_kib_ / mib);
    std::cout << fmt::format("RSS samples: {} every {} ms\n", samples_, flags_.sample_ms);
    const double limit_kib = 256 * 1024;
    const bool under = source_hwm_kib_ < limit_kib && replica_hwm_kib_ < limit_kib;
    std::cout << fmt::format("ratio: peak RSS / 256 MiB: source {:.2f}, replica {:.2f}\n",
                             source_hwm_kib_ / limit_kib, replica_hwm_kib_ / limit_kib);
    if (flags_.corrupt) {
      CorruptOneRow(*target_, "replica");
    }
    // Every user table row by row: the whole backlog is read into this
    // process twice (a 2 GB backlog needs about 5 GB of memory here for a
    // moment, and the servers sort it on disk), after the figures above.
    const bool same = VerifyTargets(*primary_, {{"replica", target_}});
    return same && under;
  }

  Flags flags_;
  std::unique_ptr<testing::Deployment> deploy_;
  PgCluster* primary_ = nullptr;
  PgCluster* target_ = nullptr;
  GeoSite* source_ = nullptr;
  GeoSite* replica_ = nullptr;
  Lsn target_lsn_;
  uint64_t backlog_bytes_ = 0, wal_bytes_ = 0, replica_spool_bytes_ = 0, txns_ = 0, samples_ = 0;
  int64_t big_rows_ = 0;
  double build_s_ = 0, drain_s_ = 0;
  uint64_t build_source_peak_kib_ = 0, drain_source_peak_kib_ = 0, drain_replica_peak_kib_ = 0;
  uint64_t source_hwm_kib_ = 0, replica_hwm_kib_ = 0;
};

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{"bench_backlog_rss: geosyncd RSS across a big backlog (issue 4: 2 GB, 256 MB)"};
  app.add_option("--backlog-mb", flags.backlog_mb, "spool bytes to build on the source, in MB")
      ->check(CLI::PositiveNumber);
  app.add_option("--row-kb", flags.row_kb, "size of each big row's text value, in KB")
      ->check(CLI::Range(1, 1024));
  app.add_option("--txn-mb", flags.txn_mb, "big rows per transaction, in MB")
      ->check(CLI::Range(1, 1024));
  app.add_option("--pgbench-seconds", flags.pgbench_seconds, "tpcb-like run inside the backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--sample-ms", flags.sample_ms, "VmRSS sampling period")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up on a phase after this many s")
      ->check(CLI::PositiveNumber);
  app.add_flag("--corrupt", flags.corrupt,
               "change one row on the replica before verifying (tests the check: the run must "
               "exit 1)");
  CLI11_PARSE(app, argc, argv);
  return geosync::bench::TimedMain("bench_backlog_rss",
                                   [&] { return geosync::bench::BacklogRssBench(flags).Run(); });
}
