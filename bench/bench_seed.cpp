// bench_seed: how fast geosync seeds a new site (snapshot, schema, parallel
// chunked COPY over the site link, indexes) against `pg_dump -Fc | pg_restore`
// of the same database on the same machine. Prints MB/s of table data (heap
// size of the published tables on the primary) for both and the ratio.
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/bench_common.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"

namespace geosync::bench {
namespace {

using namespace std::chrono_literals;
using geosync::testing::GeoSite;
using geosync::testing::PgCluster;
using geosync::testing::PgClusterOptions;
using geosync::testing::SiteSpec;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int workers = 4;
  int chunk_mb = 32;
  int compression_level = 3;
  int deadline_seconds = 900;
};

class SeedBench {
 public:
  explicit SeedBench(Flags flags) : flags_(flags) {}
  ~SeedBench() {
    replica_.reset();
    source_.reset();
  }

  int Run() {
    try {
      Setup();
      const double geo_s = SeedWithGeosync();
      const double dump_s = DumpRestore();
      Report(geo_s, dump_s);
      return verified_ ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_seed: FAILED: " << e.what() << "\n";
      if (source_) source_->DumpLog();
      if (replica_) replica_->DumpLog();
      return 1;
    }
  }

 private:
  std::unique_ptr<PgCluster> NewCluster(const std::string& name) {
    PgClusterOptions o;
    o.name = name;
    auto c = std::make_unique<PgCluster>(o);
    Check(c->Start(), "starting cluster " + name);
    return c;
  }

  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    primary_ = NewCluster("primary");
    RequireExecutable(primary_->BinDir() + "/pg_dump");
    RequireExecutable(primary_->BinDir() + "/pg_restore");
    RequireExecutable(primary_->BinDir() + "/pgbench");
    geo_ = NewCluster("geosync_target");
    dump_ = NewCluster("pg_restore_target");
    primary_->RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q"});
    primary_->Exec("CHECKPOINT");
    heap_bytes_ = std::stoull(primary_->QueryValue(
        "SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"));
    std::cout << fmt::format("pgbench -i -s {}: {:.1f} MB of table data (heap)\n", flags_.scale,
                             heap_bytes_ / 1048576.0);
  }

  double SeedWithGeosync() {
    uint16_t port = testing::FreeTcpPort();
    SiteSpec s;
    s.name = "frankfurt";
    s.source = true;
    s.dsn = primary_->ConnInfo();
    s.listen_port = port;
    s.sites = {"dublin"};
    s.extra = {{"seed", {{"chunk_mb", flags_.chunk_mb}}},
               {"compression_level", flags_.compression_level}};
    source_ = std::make_unique<GeoSite>(s);
    Check(source_->Start(), "starting the source geosyncd");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'geosync' AND active") == "1";
        },
        60s, "the source geosyncd created and streams its slot");
    SiteSpec r;
    r.name = "dublin";
    r.dsn = geo_->ConnInfo();
    r.upstream_port = port;
    r.extra = {{"seed", {{"auto", true}, {"workers", flags_.workers}}}};
    replica_ = std::make_unique<GeoSite>(r);
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
    return secs;
  }

  double DumpRestore() {
    const std::string bin = primary_->BinDir();
    const std::string cmd = fmt::format(
        "set -o pipefail; '{}/pg_dump' -Fc -d '{}' | '{}/pg_restore' --no-owner -d '{}'", bin,
        primary_->ConnInfo(), bin, dump_->ConnInfo());
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

  void Report(double geo_s, double dump_s) {
    // Both copies must be the primary's, row for row, or the figures mean nothing.
    std::string geo_diff = testing::CompareTables(*primary_, *geo_);
    std::string dump_diff = testing::CompareTables(*primary_, *dump_);
    verified_ = geo_diff.empty() && dump_diff.empty();
    const double mb = heap_bytes_ / 1048576.0;
    std::cout << fmt::format("\n| method | seconds | MB/s of table data |\n|---|---:|---:|\n");
    std::cout << fmt::format("| geosync seed | {:.2f} | {:.1f} |\n", geo_s, mb / geo_s);
    std::cout << fmt::format("| pg_dump -Fc \\| pg_restore | {:.2f} | {:.1f} |\n", dump_s,
                             mb / dump_s);
    std::cout << fmt::format("ratio geosync/pg_dump|pg_restore throughput: {:.2f}x\n",
                             dump_s / geo_s);
    std::cout << "targets identical to the primary: geosync "
              << (geo_diff.empty() ? "yes" : "NO: " + geo_diff) << ", pg_restore "
              << (dump_diff.empty() ? "yes" : "NO: " + dump_diff) << "\n";
  }

  Flags flags_;
  std::unique_ptr<PgCluster> primary_, geo_, dump_;
  std::unique_ptr<GeoSite> source_, replica_;
  uint64_t heap_bytes_ = 0;
  bool verified_ = false;
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
  app.add_option("--deadline", flags.deadline_seconds, "give up after this many s")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return geosync::bench::SeedBench(flags).Run();
}
