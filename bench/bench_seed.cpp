// bench_seed: how fast geosync seeds a new site (snapshot, schema, parallel
// chunked COPY over the site link, indexes) against `pg_dump -Fc | pg_restore`
// of the same database on the same machine. Prints MB/s of table data (heap
// size of the published tables on the primary) for both and the ratio. Each
// round seeds two new empty clusters, the two methods in alternating order;
// every target must match the primary (CompareTables), or the run exits 1.
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/bench_common.h"
#include "tests/support/deployment.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"

namespace geosync::bench {
namespace {

using namespace std::chrono_literals;
using geosync::testing::GeoSite;
using geosync::testing::PgCluster;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int workers = 4;
  int chunk_mb = 32;
  int compression_level = 3;
  int rounds = 2;  // odd rounds: geosync first; even rounds: pg_dump | pg_restore first
  int deadline_seconds = 900;
  bool corrupt = false;  // change a target row before verifying: the run must exit 1
};

struct Round {
  double geo_s = 0, dump_s = 0;
  bool geo_first = true;
};

class SeedBench {
 public:
  explicit SeedBench(Flags flags) : flags_(flags) {}

  int Run() {
    try {
      Setup();
      StartSource();
      std::vector<Round> rounds;
      for (int round = 1; round <= flags_.rounds; ++round) {
        Round r;
        r.geo_first = round % 2 == 1;
        const std::string geo_site = fmt::format("dublin{}", round);
        const std::string dump_site = fmt::format("pg_restore{}", round);
        PgCluster* geo = &deploy_->Pg(geo_site);
        PgCluster* dump = &deploy_->Pg(dump_site);
        std::cout << fmt::format(
            "[round {}] order {}\n", round,
            r.geo_first ? "geosync > pg_dump|pg_restore" : "pg_dump|pg_restore > geosync");
        if (r.geo_first) r.geo_s = SeedWithGeosync(round);
        r.dump_s = DumpRestore(*dump);
        if (!r.geo_first) r.geo_s = SeedWithGeosync(round);
        rounds.push_back(r);
        if (flags_.corrupt && round == flags_.rounds) {
          CorruptOneRow(*geo, "geosync target");
        }
        // Both copies must be the primary's, row for row, or the figures mean nothing.
        verified_ =
            VerifyTargets(*primary_, {{fmt::format("round {} geosync target", round), geo},
                                      {fmt::format("round {} pg_restore target", round), dump}}) &&
            verified_;
        // Each round's targets go with it: the disk holds one round's copies.
        replica_ = nullptr;
        deploy_->Drop(geo_site);
        deploy_->Drop(dump_site);
      }
      Report(rounds);
      return verified_ ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_seed: FAILED: " << e.what() << "\n";
      if (deploy_) deploy_->DumpLogs();
      return 1;
    }
  }

 private:
  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    std::vector<std::string> sites;
    for (int round = 1; round <= flags_.rounds; ++round) {
      sites.push_back(fmt::format("dublin{}", round));
    }
    deploy_ = std::make_unique<testing::Deployment>(testing::DeploymentOptions{.replicas = sites});
    primary_ = &deploy_->Primary();
    RequireExecutable(primary_->BinDir() + "/pg_dump");
    RequireExecutable(primary_->BinDir() + "/pg_restore");
    RequireExecutable(primary_->BinDir() + "/pgbench");
    primary_->RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q"});
    primary_->Exec("CHECKPOINT");
    heap_bytes_ = std::stoull(primary_->QueryValue(
        "SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"));
    std::cout << fmt::format("pgbench -i -s {}: {:.1f} MB of table data (heap)\n", flags_.scale,
                             heap_bytes_ / 1048576.0);
  }

  // The source geosyncd, its slot made; every round's replica site is named.
  void StartSource() {
    source_ = &deploy_->AddSource({{"seed", {{"chunk_mb", flags_.chunk_mb}}},
                                   {"compression_level", flags_.compression_level}});
    Check(source_->Start(), "starting the source geosyncd");
    deploy_->WaitSlotActive();
  }

  // Timed from starting a new replica geosyncd until its state file says
  // the seed is done; the replica is stopped afterwards.
  double SeedWithGeosync(int round) {
    replica_ = &deploy_->AddReplica(fmt::format("dublin{}", round),
                                    {{"seed", {{"auto", true}, {"workers", flags_.workers}}}});
    const std::string state_file = replica_->dir() + "/state/state.json";
    auto t0 = Clock::now();
    Check(replica_->Start(), "starting the replica geosyncd");
    WaitFact(
        [&] {
          std::ifstream in(state_file);
          auto doc = nlohmann::json::parse(in, nullptr, false);
          return doc.is_object() && doc.value("seed_state", "") == "done";
        },
        std::chrono::seconds(flags_.deadline_seconds), "the geosync seed is done");
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << fmt::format("geosync seed ({} workers, chunk_mb {}, zstd {}): {:.2f} s\n",
                             flags_.workers, flags_.chunk_mb, flags_.compression_level, secs);
    Check(replica_->Stop(), "stopping the replica geosyncd");
    return secs;
  }

  double DumpRestore(PgCluster& target) {
    const std::string bin = primary_->BinDir();
    const std::string cmd = fmt::format(
        "set -o pipefail; '{}/pg_dump' -Fc -d '{}' | '{}/pg_restore' --no-owner -d '{}'", bin,
        primary_->ConnInfo(), bin, target.ConnInfo());
    testing::ProcessSpec spec;
    spec.argv = {"/bin/bash", "-c", cmd};
    auto t0 = Clock::now();
    auto out = testing::RunProgram(spec, std::chrono::seconds(flags_.deadline_seconds));
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    Check(out.status(), "running pg_dump | pg_restore");
    if (out->exit_status != 0) {
      throw std::runtime_error("pg_dump -Fc | pg_restore failed:\n" + out->output);
    }
    std::cout << fmt::format("pg_dump -Fc | pg_restore: {:.2f} s\n", secs);
    return secs;
  }

  void Report(const std::vector<Round>& rounds) {
    const double mb = heap_bytes_ / 1048576.0;
    double geo_total = 0, dump_total = 0;
    std::cout << fmt::format(
        "\nseed throughput ({:.1f} MB of table data; {} rounds, the order alternating)\n", mb,
        rounds.size());
    std::cout << "| round | order | geosync s | geosync MB/s | pg_dump\\|pg_restore s | MB/s | "
                 "ratio |\n|---:|---|---:|---:|---:|---:|---:|\n";
    for (size_t i = 0; i < rounds.size(); ++i) {
      const Round& r = rounds[i];
      geo_total += r.geo_s;
      dump_total += r.dump_s;
      std::cout << fmt::format("| {} | {} | {:.2f} | {:.1f} | {:.2f} | {:.1f} | {:.2f}x |\n", i + 1,
                               r.geo_first ? "geosync first" : "pg_restore first", r.geo_s,
                               mb / r.geo_s, r.dump_s, mb / r.dump_s, r.dump_s / r.geo_s);
    }
    std::cout << fmt::format(
        "ratio geosync/pg_dump|pg_restore throughput over {} rounds: {:.2f}x\n", rounds.size(),
        dump_total / geo_total);
  }

  Flags flags_;
  std::unique_ptr<testing::Deployment> deploy_;
  PgCluster* primary_ = nullptr;
  GeoSite* source_ = nullptr;
  GeoSite* replica_ = nullptr;
  uint64_t heap_bytes_ = 0;
  bool verified_ = true;
};

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{"bench_seed: seed throughput, geosync vs pg_dump -Fc | pg_restore"};
  app.add_option("--scale", flags.scale, "pgbench -i scale factor")->check(CLI::PositiveNumber);
  app.add_option("--workers", flags.workers, "geosync seed.workers")->check(CLI::PositiveNumber);
  app.add_option("--chunk-mb", flags.chunk_mb, "geosync seed.chunk_mb on the source")
      ->check(CLI::PositiveNumber);
  app.add_option("--compression-level", flags.compression_level, "zstd level of the site link")
      ->check(CLI::Range(0, 19));
  app.add_option("--rounds", flags.rounds,
                 "seeds per method, each into a new cluster; the order alternates")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up after this many s")
      ->check(CLI::PositiveNumber);
  app.add_flag("--corrupt", flags.corrupt,
               "change one row on the last geosync target before verifying (tests the check: "
               "the run must exit 1)");
  CLI11_PARSE(app, argc, argv);
  return geosync::bench::TimedMain("bench_seed",
                                   [&] { return geosync::bench::SeedBench(flags).Run(); });
}
