// bench_apply: how fast a replica drains a backlog, geosync against native
// logical replication and pglogical, on the same primary, the same backlog and
// the same box. Prints transactions, seconds and txn/s per workload and the
// ratios geosync/native and geosync/pglogical.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_common.h"
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
using geosync::testing::PgClusterOptions;
using geosync::testing::SiteSpec;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int clients = 4;
  int seconds = 20;
  int insert_seconds = 10;
  int deadline_seconds = 600;
  int batch_max_txns = 0;    // geosync's apply.batch_max_txns; 0 keeps its default
  bool no_collapse = false;  // geosync's apply.collapse = false
  bool pglogical = true;     // also drain through pglogical (postgresql-15-pglogical)
};

// Peak resident set size (VmHWM) of a live process, in MiB; -1 when unknown.
double PeakRssMib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

struct Drain {
  std::string workload;
  uint64_t txns = 0;
  uint64_t wal_bytes = 0;
  double native_s = 0;
  double pglogical_s = 0;  // 0: not measured
  double geosync_s = 0;
};

const char* kTables[] = {"pgbench_accounts", "pgbench_branches", "pgbench_tellers",
                         "pgbench_history",  "bench_insert",     "bench_marker"};

class ApplyBench {
 public:
  explicit ApplyBench(Flags flags) : flags_(flags) {}

  ~ApplyBench() {
    replica_.reset();
    source_.reset();
  }

  int Run() {
    try {
      Setup();
      Drain tpcb = Backlog("pgbench tpcb-like", {"-n", "-c", std::to_string(flags_.clients), "-T",
                                                 std::to_string(flags_.seconds)});
      Pause();
      Drain ins = Backlog("single-row INSERT",
                          {"-n", "-f", InsertScript(), "-c", std::to_string(flags_.clients), "-T",
                           std::to_string(flags_.insert_seconds)});
      Report({tpcb, ins});
      return verified_ ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_apply: FAILED: " << e.what() << "\n";
      if (source_) source_->DumpLog();
      if (replica_) replica_->DumpLog();
      for (auto* c : {primary_.get(), native_.get(), geo_.get(), pgl_.get()}) {
        if (c) std::cerr << "server log of " << c->name() << ": " << c->LogPath() << "\n";
      }
      return 1;
    }
  }

 private:
  std::unique_ptr<PgCluster> NewCluster(const std::string& name, bool pglogical = false) {
    PgClusterOptions o;
    o.name = name;
    auto c = std::make_unique<PgCluster>(o);
    if (pglogical) c->SetSetting("shared_preload_libraries", "pglogical");
    // The logical replication launcher starts at most one apply worker per
    // wal_retrieve_retry_interval (5 s by default): a re-ENABLE sooner than
    // that would wait out the rest of it inside the native drain.
    c->SetSetting("wal_retrieve_retry_interval", "100ms");
    Check(c->Start(), "starting cluster " + name);
    return c;
  }

  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    auto t0 = Clock::now();
    primary_ = NewCluster("primary", flags_.pglogical);
    RequireExecutable(primary_->BinDir() + "/pgbench");
    native_ = NewCluster("native_target");
    geo_ = NewCluster("geosync_target");
    if (flags_.pglogical) pgl_ = NewCluster("pglogical_target", true);
    // The same deterministic starting data everywhere (pgbench -i generates
    // identical rows), so the targets can be compared row by row at the end.
    for (auto* c : {primary_.get(), native_.get(), geo_.get(), pgl_.get()}) {
      if (c == nullptr) continue;
      c->RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q"});
      c->Exec(
          "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, k int NOT NULL, "
          "payload text NOT NULL, created timestamptz NOT NULL DEFAULT now())");
      c->Exec("CREATE TABLE bench_marker (id serial PRIMARY KEY, note text)");
    }
    primary_->Exec(
        fmt::format("CREATE PUBLICATION bench_native FOR TABLE {}", fmt::join(kTables, ", ")));
    // The slot exists before the backlog; nothing streams until ENABLE.
    native_->Exec(fmt::format(
        "CREATE SUBSCRIPTION bench_native CONNECTION '{}' PUBLICATION bench_native WITH "
        "(enabled = false, copy_data = false, create_slot = true, slot_name = 'bench_native')",
        primary_->ConnInfo()));
    if (flags_.pglogical) SetUpPglogical();
    uint16_t port = testing::FreeTcpPort();
    SiteSpec s;
    s.name = "frankfurt";
    s.source = true;
    s.dsn = primary_->ConnInfo();
    s.listen_port = port;
    s.sites = {"dublin"};
    // The bench tables only, like the other two: not pglogical's own.
    for (const char* table : kTables) s.extra["postgres"]["tables"].push_back(table);
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
    if (flags_.batch_max_txns > 0) r.extra["apply"]["batch_max_txns"] = flags_.batch_max_txns;
    if (flags_.no_collapse) r.extra["apply"]["collapse"] = false;
    replica_ = std::make_unique<GeoSite>(r);  // started only to drain
    std::cout << fmt::format("setup (3 clusters, pgbench -i -s {} each): {:.1f} s\n", flags_.scale,
                             std::chrono::duration<double>(Clock::now() - t0).count());
  }

  // A pglogical provider node on the primary with every bench table (the
  // key-less pgbench_history in the insert-only set, as pglogical requires)
  // and a subscriber without initial copy, left disabled once its slot
  // exists, like the native subscription.
  void SetUpPglogical() {
    const std::string lib = primary_->BinDir() + "/../lib/pglogical.so";
    if (!std::filesystem::exists(lib)) {
      throw std::runtime_error(lib +
                               " is missing: install postgresql-15-pglogical "
                               "(scripts/install-deps.sh) or pass --no-pglogical");
    }
    primary_->Exec("CREATE EXTENSION pglogical");
    primary_->Exec(
        fmt::format("SELECT pglogical.create_node(node_name := 'bench_provider', "
                    "dsn := '{}')",
                    primary_->ConnInfo()));
    for (const char* table : kTables) {
      const bool keyless = std::string_view(table) == "pgbench_history";
      primary_->Exec(fmt::format("SELECT pglogical.replication_set_add_table('{}', 'public.{}')",
                                 keyless ? "default_insert_only" : "default", table));
    }
    pgl_->Exec("CREATE EXTENSION pglogical");
    pgl_->Exec(
        fmt::format("SELECT pglogical.create_node(node_name := 'bench_subscriber', "
                    "dsn := '{}')",
                    pgl_->ConnInfo()));
    pgl_->Exec(fmt::format(
        "SELECT pglogical.create_subscription(subscription_name := 'bench_pgl', "
        "provider_dsn := '{}', replication_sets := ARRAY['default', 'default_insert_only'], "
        "synchronize_structure := false, synchronize_data := false, forward_origins := '{{}}')",
        primary_->ConnInfo()));
    WaitFact(
        [&] {
          return pgl_->QueryValue(
                     "SELECT status FROM pglogical.show_subscription_status('bench_pgl')") ==
                 "replicating";
        },
        60s, "the pglogical subscription replicates");
    PausePglogical();
  }

  void PausePglogical() {
    pgl_->Exec("SELECT pglogical.alter_subscription_disable('bench_pgl', true)");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE plugin = "
                     "'pglogical_output' AND active") == "0";
        },
        60s, "the pglogical subscription's walsender exited");
  }

  std::string InsertScript() {
    std::string path = source_->dir() + "/insert.sql";
    std::ofstream(path) << "\\set k random(1, 1000000)\n"
                           "INSERT INTO bench_insert (k, payload) VALUES (:k, "
                           "md5(:k::text));\n";
    std::filesystem::permissions(path, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    return path;
  }

  // Stops both subscribers so that the next workload becomes a backlog.
  void Pause() {
    native_->Exec("ALTER SUBSCRIPTION bench_native DISABLE");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'bench_native' AND active") == "0";
        },
        60s, "the native subscription's walsender exited");
    if (pgl_) PausePglogical();
    rss_replica_mib_ = std::max(rss_replica_mib_, PeakRssMib(replica_->Pid()));
    Check(replica_->Stop(), "stopping the geosync replica");
  }

  // Runs the workload while both subscribers are stopped, then drains each.
  Drain Backlog(const std::string& name, const std::vector<std::string>& pgbench_args) {
    Drain d;
    d.workload = name;
    std::cout << fmt::format("[{}] building the backlog: pgbench {}\n", name,
                             fmt::join(pgbench_args, " "));
    Lsn before = primary_->CurrentWalLsn();
    d.txns = PgbenchTxns(primary_->RunPgbench(pgbench_args));
    Lsn target = primary_->CurrentWalLsn();
    d.wal_bytes = target.BytesAfter(before);
    // A commit after `target`: the applied origins can only pass `target`
    // by applying a transaction, and this one makes sure there is one.
    primary_->Exec(fmt::format("INSERT INTO bench_marker (note) VALUES ('after {}')", name));
    // The source captures live; let it finish spooling so that its capture
    // does not compete with either drain for the CPU.
    WaitFact(
        [&] {
          auto lsn = Lsn::Parse(primary_->QueryValue(
              "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'geosync'"));
          return lsn.ok() && *lsn >= target;
        },
        std::chrono::seconds(flags_.deadline_seconds), "the source spooled the backlog");
    std::cout << fmt::format("[{}] {} transactions, {:.1f} MB of WAL; draining native...\n", name,
                             d.txns, d.wal_bytes / 1e6);
    auto deadline = std::chrono::seconds(flags_.deadline_seconds);
    auto t0 = Clock::now();
    native_->Exec("ALTER SUBSCRIPTION bench_native ENABLE");
    std::string subid =
        native_->QueryValue("SELECT oid FROM pg_subscription WHERE subname = 'bench_native'");
    d.native_s = WaitApplied(*native_, "postgres", OriginLsnQuery("pg_" + subid), target, t0,
                             deadline, "native subscriber");
    std::cout << fmt::format("[{}] native drained in {:.2f} s\n", name, d.native_s);
    if (pgl_) {
      std::cout << fmt::format("[{}] draining pglogical...\n", name);
      t0 = Clock::now();
      pgl_->Exec("SELECT pglogical.alter_subscription_enable('bench_pgl', true)");
      d.pglogical_s = WaitApplied(*pgl_, "postgres", OriginLsnQuery("pgl_%"), target, t0, deadline,
                                  "pglogical subscriber");
      std::cout << fmt::format("[{}] pglogical drained in {:.2f} s\n", name, d.pglogical_s);
    }
    std::cout << fmt::format("[{}] draining geosync...\n", name);
    t0 = Clock::now();
    Check(replica_->Start(), "starting the geosync replica");
    d.geosync_s = WaitApplied(*geo_, "postgres", OriginLsnQuery("geosync%"), target, t0, deadline,
                              "geosync replica");
    std::cout << fmt::format("[{}] geosync drained in {:.2f} s\n", name, d.geosync_s);
    rss_source_mib_ = std::max(rss_source_mib_, PeakRssMib(source_->Pid()));
    return d;
  }

  void Report(const std::vector<Drain>& drains) {
    rss_replica_mib_ = std::max(rss_replica_mib_, PeakRssMib(replica_->Pid()));
    rss_source_mib_ = std::max(rss_source_mib_, PeakRssMib(source_->Pid()));
    std::string diff_native = testing::CompareTables(*primary_, *native_);
    std::string diff_geo = testing::CompareTables(*primary_, *geo_);
    std::string diff_pgl = pgl_ ? testing::CompareTables(*primary_, *pgl_) : "";
    verified_ = diff_native.empty() && diff_geo.empty() && diff_pgl.empty();

    std::cout << "\napply drain rate (one run; same primary, same backlog, drained one after "
                 "the other)\n";
    std::cout << fmt::format("{:<20} {:<8} {:>9} {:>9} {:>9} {:>10}\n", "workload", "system",
                             "txns", "WAL MB", "seconds", "txn/s");
    for (const auto& d : drains) {
      for (auto [sys, s] : {std::pair{"native", d.native_s}, std::pair{"pglogical", d.pglogical_s},
                            std::pair{"geosync", d.geosync_s}}) {
        if (s <= 0) continue;
        std::cout << fmt::format("{:<20} {:<8} {:>9} {:>9.1f} {:>9.2f} {:>10.0f}\n", d.workload,
                                 sys, d.txns, d.wal_bytes / 1e6, s, d.txns / s);
      }
    }
    std::cout << fmt::format(
        "\npeak RSS (VmHWM): source geosyncd {:.1f} MiB, replica geosyncd "
        "{:.1f} MiB\n",
        rss_source_mib_, rss_replica_mib_);
    std::cout << fmt::format("native target matches primary: {}\n",
                             diff_native.empty() ? "yes" : "NO: " + diff_native);
    if (pgl_) {
      std::cout << fmt::format("pglogical target matches primary: {}\n",
                               diff_pgl.empty() ? "yes" : "NO: " + diff_pgl);
    }
    std::cout << fmt::format("geosync target matches primary: {}\n",
                             diff_geo.empty() ? "yes" : "NO: " + diff_geo);
    std::string ratios;
    for (const auto& d : drains) {
      ratios += fmt::format("{}{} {:.2f}x", ratios.empty() ? "" : ", ", d.workload,
                            d.native_s / d.geosync_s);
    }
    std::cout << "ratio: geosync/native txn/s: " << ratios << "\n";
    if (pgl_) {
      ratios.clear();
      for (const auto& d : drains) {
        ratios += fmt::format("{}{} {:.2f}x", ratios.empty() ? "" : ", ", d.workload,
                              d.pglogical_s / d.geosync_s);
      }
      std::cout << "ratio: geosync/pglogical txn/s: " << ratios << "\n";
    }
  }

  Flags flags_;
  std::unique_ptr<PgCluster> primary_, native_, geo_, pgl_;
  std::unique_ptr<GeoSite> source_, replica_;
  double rss_source_mib_ = -1, rss_replica_mib_ = -1;
  bool verified_ = false;
};

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{
      "bench_apply: replica drain rate, geosync vs native logical replication and pglogical"};
  app.add_option("--scale", flags.scale, "pgbench -i scale factor")->check(CLI::PositiveNumber);
  app.add_option("--clients", flags.clients, "pgbench clients")->check(CLI::PositiveNumber);
  app.add_option("--seconds", flags.seconds, "pgbench tpcb-like run building the backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--insert-seconds", flags.insert_seconds,
                 "single-row INSERT run building the second backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up on a drain after this many s")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-max-txns", flags.batch_max_txns,
                 "geosync replica's apply.batch_max_txns (default: geosync's own)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-pglogical{false}", flags.pglogical,
               "skip the pglogical subscriber (postgresql-15-pglogical)");
  app.add_flag("--no-collapse", flags.no_collapse,
               "geosync replica's apply.collapse = false (send every change in order)");
  CLI11_PARSE(app, argc, argv);
  auto start = std::chrono::steady_clock::now();
  int rc = geosync::bench::ApplyBench(flags).Run();
  std::cout << fmt::format(
      "bench_apply ran {:.0f} s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return rc;
}
