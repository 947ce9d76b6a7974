// bench_apply: how fast a replica drains a backlog, geosync against native
// logical replication and pglogical, on the same primary, the same backlog and
// the same box. Cold (the headline): every system's timed window holds the
// decoding of the backlog, its shipping and its apply; geosync's source and
// replica were both stopped during the load, as native's walsender only
// decodes after ALTER SUBSCRIPTION ... ENABLE. Warm (reported apart): the
// source had already spooled the backlog and only a replica starts. Rounds
// alternate the order of the systems. Every target must match the primary
// (CompareTables) at the end, or the run exits 1.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
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
  int scale = 10;
  int clients = 4;
  int seconds = 20;
  int insert_seconds = 10;
  int simple_update_seconds = 0;  // pgbench -b simple-update; 0: not run
  int steady_seconds = 0;         // pgbench with replication running; 0: not run
  int rounds = 2;                 // each round: both workloads, the systems in alternating order
  int deadline_seconds = 600;
  int batch_max_txns = 0;    // geosync's apply.batch_max_txns; 0 keeps its default
  bool no_collapse = false;  // geosync's apply.collapse = false
  int workers = 0;           // geosync's apply.workers; 0 keeps its default
  bool pglogical = true;     // also drain through pglogical (postgresql-15-pglogical)
  bool corrupt = false;      // change a target row before verifying: the run must exit 1
  bool two_hosts = false;    // primary side on CPU 0, replica side on CPU 1 (taskset)
  std::string perf_dir;      // perf record -a -g of each native and cold geosync drain
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

enum class System { kNative, kPglogical, kGeosync };

std::string SystemName(System s) {
  switch (s) {
    case System::kNative:
      return "native";
    case System::kPglogical:
      return "pglogical";
    case System::kGeosync:
      return "geosync";
  }
  return "?";
}

// One backlog, drained by every system.
struct Drain {
  int round = 0;
  std::string workload;
  std::string order;  // "native > pglogical > geosync"
  uint64_t txns = 0;
  uint64_t wal_bytes = 0;
  double native_s = 0;
  double pglogical_s = 0;  // 0: not measured
  double cold_s = 0;       // geosync: source and replica started after the load
  double warm_s = 0;       // geosync: the source had spooled it; only a replica starts
};

const char* kTables[] = {"pgbench_accounts", "pgbench_branches", "pgbench_tellers",
                         "pgbench_history",  "bench_insert",     "bench_marker"};

class ApplyBench {
 public:
  explicit ApplyBench(Flags flags) : flags_(flags) {}

  int Run() {
    try {
      Setup();
      std::vector<Drain> drains;
      for (int round = 1; round <= flags_.rounds; ++round) {
        drains.push_back(Backlog(
            round, "pgbench tpcb-like",
            {"-n", "-c", std::to_string(flags_.clients), "-T", std::to_string(flags_.seconds)}));
        drains.push_back(Backlog(round, "single-row INSERT",
                                 {"-n", "-f", InsertScript(), "-c", std::to_string(flags_.clients),
                                  "-T", std::to_string(flags_.insert_seconds)}));
        if (flags_.simple_update_seconds > 0) {
          drains.push_back(
              Backlog(round, "pgbench simple-update",
                      {"-n", "-b", "simple-update", "-c", std::to_string(flags_.clients), "-T",
                       std::to_string(flags_.simple_update_seconds)}));
        }
      }
      Report(drains);
      if (flags_.steady_seconds > 0) SteadyState();
      if (flags_.corrupt) {
        CorruptOneRow(*geo_, "geosync target (cold)");
      }
      std::vector<std::pair<std::string, PgCluster*>> targets = {{"native target", native_},
                                                                 {"geosync target (cold)", geo_},
                                                                 {"geosync target (warm)", warm_}};
      if (pgl_) targets.insert(targets.begin() + 1, {"pglogical target", pgl_});
      return VerifyTargets(*primary_, targets) ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_apply: FAILED: " << e.what() << "\n";
      if (deploy_) deploy_->DumpLogs();
      return 1;
    }
  }

 private:
  std::chrono::seconds deadline() const { return std::chrono::seconds(flags_.deadline_seconds); }

  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    auto t0 = Clock::now();
    // Both replicas are named at the source: the spool keeps each backlog
    // until both have it.
    deploy_ = std::make_unique<testing::Deployment>(testing::DeploymentOptions{
        .replicas = {"dublin", "warm"},
        .two_hosts = flags_.two_hosts,
        .configure_pg = [this](PgCluster& c) {
          const bool pglogical = c.name() == "frankfurt" || c.name() == "pglogical";
          if (flags_.pglogical && pglogical) {
            c.SetSetting("shared_preload_libraries", "pglogical");
          }
          // The logical replication launcher starts at most one apply worker
          // per wal_retrieve_retry_interval (5 s by default): a re-ENABLE
          // sooner than that would wait out the rest of it inside the native
          // drain.
          c.SetSetting("wal_retrieve_retry_interval", "100ms");
        }});
    primary_ = &deploy_->Primary();
    RequireExecutable(primary_->BinDir() + "/pgbench");
    native_ = &deploy_->Pg("native");
    geo_ = &deploy_->Pg("dublin");
    warm_ = &deploy_->Pg("warm");
    if (flags_.pglogical) pgl_ = &deploy_->Pg("pglogical");
    // The same deterministic starting data everywhere (pgbench -i generates
    // identical rows), so the targets can be compared row by row at the end.
    for (auto* c : {primary_, native_, geo_, warm_, pgl_}) {
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
    native_subid_ =
        native_->QueryValue("SELECT oid FROM pg_subscription WHERE subname = 'bench_native'");
    if (flags_.pglogical) SetUpPglogical();
    nlohmann::json extra;
    // The bench tables only, like the other two: not pglogical's own.
    for (const char* table : kTables) extra["postgres"]["tables"].push_back(table);
    source_ = &deploy_->AddSource(extra);
    source_port_ = deploy_->SourcePort();
    // Started once to create its slot and publication, then stopped: like
    // the other two, geosync decodes each backlog only when it drains it.
    Check(source_->Start(), "starting the source geosyncd");
    WaitSourceSpooling(*primary_, "geosync", "the source geosyncd");
    StopSite(*source_, "the source geosyncd");
    replica_ = &deploy_->AddReplica("dublin", ApplyConfig());
    warm_replica_ = &deploy_->AddReplica("warm", ApplyConfig());
    if (flags_.two_hosts) {
      std::cout << "two emulated hosts: primary, source agent and pgbench on CPU 0; targets, "
                   "their agents and apply workers on CPU 1\n";
    }
    std::cout << fmt::format("setup ({} clusters, pgbench -i -s {} each): {:.1f} s\n", pgl_ ? 5 : 4,
                             flags_.scale,
                             std::chrono::duration<double>(Clock::now() - t0).count());
  }

  // The replicas' apply settings from the flags.
  nlohmann::json ApplyConfig() const {
    nlohmann::json extra = nlohmann::json::object();
    if (flags_.batch_max_txns > 0) extra["apply"]["batch_max_txns"] = flags_.batch_max_txns;
    if (flags_.no_collapse) extra["apply"]["collapse"] = false;
    if (flags_.workers > 0) extra["apply"]["workers"] = flags_.workers;
    return extra;
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

  void PauseNative() {
    native_->Exec("ALTER SUBSCRIPTION bench_native DISABLE");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'bench_native' AND active") == "0";
        },
        60s, "the native subscription's walsender exited");
  }

  void StopSite(GeoSite& site, const std::string& what) {
    if (site.Pid() != 0 && site.IsRunning()) Check(site.Stop(), "stopping " + what);
  }

  // The applier's summary, logged when it stops: how many groups ran beside
  // another (apply.workers).
  static void PrintApplySummary(GeoSite& site, const std::string& what) {
    const std::string log = site.ReadLog();
    const size_t at = log.rfind("transactions applied in");
    if (at == std::string::npos) return;
    const size_t begin = log.rfind("apply: ", at);
    const size_t end = log.find('\n', at);
    std::cout << fmt::format("  {} {}\n", what, log.substr(begin, end - begin));
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

  // Runs the workload while every subscriber and both geosyncd are stopped,
  // then lets each system drain it in this round's order; each is stopped
  // again once it has, so no drain competes with another system.
  Drain Backlog(int round, const std::string& name, const std::vector<std::string>& pgbench_args) {
    Drain d;
    d.round = round;
    d.workload = name;
    std::vector<System> order = {System::kNative, System::kGeosync};
    if (pgl_) order.insert(order.begin() + 1, System::kPglogical);
    order = RoundOrder(round, order);
    for (System sys : order) d.order += (d.order.empty() ? "" : " > ") + SystemName(sys);
    std::cout << fmt::format("[round {}, {}] building the backlog: pgbench {}\n", round, name,
                             fmt::join(pgbench_args, " "));
    Lsn before = primary_->CurrentWalLsn();
    d.txns = PgbenchTxns(primary_->RunPgbench(pgbench_args));
    Lsn target = primary_->CurrentWalLsn();
    d.wal_bytes = target.BytesAfter(before);
    // A commit after `target`: the applied origins can only pass `target`
    // by applying a transaction, and this one makes sure there is one.
    primary_->Exec(
        fmt::format("INSERT INTO bench_marker (note) VALUES ('round {} after {}')", round, name));
    std::cout << fmt::format("[round {}, {}] {} transactions, {:.1f} MB of WAL; order {}\n", round,
                             name, d.txns, d.wal_bytes / 1e6, d.order);
    for (System sys : order) {
      switch (sys) {
        case System::kNative:
          d.native_s = DrainNative(target);
          break;
        case System::kPglogical:
          d.pglogical_s = DrainPglogical(target);
          break;
        case System::kGeosync:
          DrainGeosync(target, &d);
          break;
      }
    }
    return d;
  }

  double DrainNative(Lsn target) {
    PerfWindow perf(flags_.perf_dir, fmt::format("native-{}", ++native_drains_));
    auto t0 = Clock::now();
    native_->Exec("ALTER SUBSCRIPTION bench_native ENABLE");
    double s = WaitApplied(*native_, "postgres", OriginLsnQuery("pg_" + native_subid_), target, t0,
                           deadline(), "native subscriber");
    std::cout << fmt::format("  native drained in {:.2f} s\n", s);
    PauseNative();
    return s;
  }

  double DrainPglogical(Lsn target) {
    auto t0 = Clock::now();
    pgl_->Exec("SELECT pglogical.alter_subscription_enable('bench_pgl', true)");
    double s = WaitApplied(*pgl_, "postgres", OriginLsnQuery("pgl_%"), target, t0, deadline(),
                           "pglogical subscriber");
    std::cout << fmt::format("  pglogical drained in {:.2f} s\n", s);
    PausePglogical();
    return s;
  }

  // Cold: starts the source (its capture decodes the backlog from the slot
  // into its spool) and, once it listens, the replica; timed until the
  // replica's origin passes `target`. Warm: then a second replica drains the
  // same backlog from the source's spool, timed the same way.
  void DrainGeosync(Lsn target, Drain* d) {
    auto perf = std::make_unique<PerfWindow>(flags_.perf_dir,
                                             fmt::format("geosync-cold-{}", ++geosync_drains_));
    auto t0 = Clock::now();
    Check(source_->Start(), "starting the source geosyncd");
    WaitListening(source_port_, deadline(), "the source geosyncd");
    Check(replica_->Start(), "starting the geosync replica");
    d->cold_s = WaitApplied(*geo_, "postgres", OriginLsnQuery("geosync%"), target, t0, deadline(),
                            "geosync replica (cold)");
    perf.reset();
    std::cout << fmt::format("  geosync (cold: source and replica started) drained in {:.2f} s\n",
                             d->cold_s);
    rss_replica_mib_ = std::max(rss_replica_mib_, PeakRssMib(replica_->Pid()));
    StopSite(*replica_, "the geosync replica");
    // The source has spooled the backlog by now: its slot confirms past it
    // only what its spool holds durably.
    auto t1 = Clock::now();
    Check(warm_replica_->Start(), "starting the warm geosync replica");
    d->warm_s = WaitApplied(*warm_, "postgres", OriginLsnQuery("geosync%"), target, t1, deadline(),
                            "geosync replica (warm)");
    std::cout << fmt::format(
        "  geosync (warm: backlog already in the source's spool) drained in {:.2f} s\n", d->warm_s);
    rss_replica_mib_ = std::max(rss_replica_mib_, PeakRssMib(warm_replica_->Pid()));
    rss_source_mib_ = std::max(rss_source_mib_, PeakRssMib(source_->Pid()));
    StopSite(*warm_replica_, "the warm geosync replica");
    PrintApplySummary(*replica_, "cold replica:");
    PrintApplySummary(*warm_replica_, "warm replica:");
    StopSite(*source_, "the source geosyncd");
  }

  // Brings the targets that sat out the steady state up to `target`, so that
  // every target can be compared with the primary at the end.
  void CatchUp(Lsn target) {
    native_->Exec("ALTER SUBSCRIPTION bench_native ENABLE");
    WaitApplied(*native_, "postgres", OriginLsnQuery("pg_" + native_subid_), target, Clock::now(),
                deadline(), "native subscriber catching up");
    PauseNative();
    if (pgl_) {
      pgl_->Exec("SELECT pglogical.alter_subscription_enable('bench_pgl', true)");
      WaitApplied(*pgl_, "postgres", OriginLsnQuery("pgl_%"), target, Clock::now(), deadline(),
                  "pglogical subscriber catching up");
      PausePglogical();
    }
    Check(warm_replica_->Start(), "starting the warm geosync replica");
    WaitApplied(*warm_, "postgres", OriginLsnQuery("geosync%"), target, Clock::now(), deadline(),
                "warm geosync replica catching up");
    StopSite(*warm_replica_, "the warm geosync replica");
  }

  // Steady state: pgbench runs with each system replicating during the load
  // (and once with none), one after the other. Reports the primary's tps and
  // how long each target took, after the load stopped, to apply everything
  // the load wrote (its lag at the end).
  void SteadyState() {
    const std::vector<std::string> args = {"-n", "-c", std::to_string(flags_.clients), "-T",
                                           std::to_string(flags_.steady_seconds)};
    struct Run {
      std::string system;
      double tps = 0;
      double lag_s = 0;
    };
    std::vector<Run> runs;
    auto load = [&](const std::string& system) {
      std::cout << fmt::format("[steady state, {}] pgbench {}\n", system, fmt::join(args, " "));
      Run run{system};
      run.tps = PgbenchTxns(primary_->RunPgbench(args)) / double(flags_.steady_seconds);
      return run;
    };
    runs.push_back(load("none"));
    // The WAL position now, and a commit after it: an origin passes it only
    // by applying that commit.
    auto mark = [&](const std::string& note) {
      Lsn at = primary_->CurrentWalLsn();
      primary_->Exec(fmt::format("INSERT INTO bench_marker (note) VALUES ('steady {}')", note));
      return at;
    };

    native_->Exec("ALTER SUBSCRIPTION bench_native ENABLE");
    Lsn now = mark("native before");
    WaitApplied(*native_, "postgres", OriginLsnQuery("pg_" + native_subid_), now, Clock::now(),
                deadline(), "native subscriber before the steady load");
    runs.push_back(load("native"));
    Lsn end = mark("native after");
    runs.back().lag_s = WaitApplied(*native_, "postgres", OriginLsnQuery("pg_" + native_subid_),
                                    end, Clock::now(), deadline(), "native subscriber (steady)");
    PauseNative();

    Check(source_->Start(), "starting the source geosyncd");
    WaitListening(source_port_, deadline(), "the source geosyncd");
    Check(replica_->Start(), "starting the geosync replica");
    now = mark("geosync before");
    WaitApplied(*geo_, "postgres", OriginLsnQuery("geosync%"), now, Clock::now(), deadline(),
                "geosync replica before the steady load");
    runs.push_back(load("geosync"));
    end = mark("geosync after");
    runs.back().lag_s = WaitApplied(*geo_, "postgres", OriginLsnQuery("geosync%"), end,
                                    Clock::now(), deadline(), "geosync replica (steady)");
    const Lsn done = mark("steady done");
    WaitApplied(*geo_, "postgres", OriginLsnQuery("geosync%"), done, Clock::now(), deadline(),
                "geosync replica after the steady load");
    StopSite(*replica_, "the geosync replica");
    CatchUp(done);
    StopSite(*source_, "the source geosyncd");

    std::cout << fmt::format(
        "\nsteady state: pgbench tpcb-like, {} clients, {} s, replication running during the "
        "load\n{:<10} {:>12} {:>10} {:>22}\n",
        flags_.clients, flags_.steady_seconds, "system", "primary tps", "vs none",
        "lag at end (s)");
    for (const Run& r : runs) {
      std::cout << fmt::format("{:<10} {:>12.0f} {:>9.2f}x {:>22}\n", r.system, r.tps,
                               r.tps / runs[0].tps,
                               r.system == "none" ? "-" : fmt::format("{:.2f}", r.lag_s));
    }
    std::cout << fmt::format("ratio steady primary tps geosync/native: {:.2f}x\n",
                             runs[2].tps / runs[1].tps);
  }

  static std::string Ratio(double base_s, double geo_s) {
    return base_s > 0 && geo_s > 0 ? fmt::format("{:.2f}x", base_s / geo_s) : "-";
  }

  void Report(const std::vector<Drain>& drains) {
    std::cout << "\napply drain rate, cold: every system decodes, ships and applies the backlog "
                 "inside its timed window\n(both geosyncd were stopped during the load; same "
                 "primary, same backlog, drained one after the other)\n";
    std::cout << fmt::format("{:>5} {:<18} {:<30} {:<10} {:>8} {:>7} {:>8} {:>8}\n", "round",
                             "workload", "order", "system", "txns", "WAL MB", "seconds", "txn/s");
    for (const auto& d : drains) {
      for (auto [sys, s] : {std::pair{"native", d.native_s}, std::pair{"pglogical", d.pglogical_s},
                            std::pair{"geosync", d.cold_s}}) {
        if (s <= 0) continue;
        std::cout << fmt::format("{:>5} {:<18} {:<30} {:<10} {:>8} {:>7.1f} {:>8.2f} {:>8.0f}\n",
                                 d.round, d.workload, d.order, sys, d.txns, d.wal_bytes / 1e6, s,
                                 d.txns / s);
      }
    }
    std::cout << "\napply drain rate, warm (NOT comparable with the cold figures: the source had "
                 "decoded and spooled the backlog before the timer started; only the replica "
                 "starts)\n";
    std::cout << fmt::format("{:>5} {:<18} {:<10} {:>8} {:>8} {:>8}\n", "round", "workload",
                             "system", "txns", "seconds", "txn/s");
    for (const auto& d : drains) {
      std::cout << fmt::format("{:>5} {:<18} {:<10} {:>8} {:>8.2f} {:>8.0f}\n", d.round, d.workload,
                               "geosync", d.txns, d.warm_s, d.txns / d.warm_s);
    }
    std::cout << fmt::format(
        "\npeak RSS (VmHWM): source geosyncd {:.1f} MiB, replica geosyncd {:.1f} MiB\n",
        rss_source_mib_, rss_replica_mib_);
    // Per workload, over all rounds: the same transactions for every system,
    // so the ratio of total seconds is the ratio of txn/s.
    std::vector<std::string> workloads;
    for (const auto& d : drains) {
      if (std::find(workloads.begin(), workloads.end(), d.workload) == workloads.end()) {
        workloads.push_back(d.workload);
      }
    }
    auto line = [&](const std::string& label, double Drain::*base, double Drain::*geo) {
      std::string out;
      for (const auto& w : workloads) {
        double b = 0, g = 0;
        std::string per_round;
        for (const auto& d : drains) {
          if (d.workload != w) continue;
          b += d.*base;
          g += d.*geo;
          per_round += (per_round.empty() ? "" : " ") + Ratio(d.*base, d.*geo);
        }
        out +=
            fmt::format("{}{} {} (rounds: {})", out.empty() ? "" : ", ", w, Ratio(b, g), per_round);
      }
      std::cout << fmt::format("ratio {} txn/s over {} rounds: {}\n", label, flags_.rounds, out);
    };
    line("cold geosync/native", &Drain::native_s, &Drain::cold_s);
    if (pgl_) line("cold geosync/pglogical", &Drain::pglogical_s, &Drain::cold_s);
    line("warm geosync/native (geosync's decode not timed)", &Drain::native_s, &Drain::warm_s);
  }

  Flags flags_;
  std::unique_ptr<testing::Deployment> deploy_;
  PgCluster *primary_ = nullptr, *native_ = nullptr, *geo_ = nullptr, *warm_ = nullptr,
            *pgl_ = nullptr;
  GeoSite *source_ = nullptr, *replica_ = nullptr, *warm_replica_ = nullptr;
  uint16_t source_port_ = 0;
  std::string native_subid_;
  double rss_source_mib_ = -1, rss_replica_mib_ = -1;
  int native_drains_ = 0, geosync_drains_ = 0;
};

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{
      "bench_apply: replica drain rate (cold: decode, ship and apply timed on every side; warm "
      "apart), geosync vs native logical replication and pglogical"};
  app.add_option("--scale", flags.scale, "pgbench -i scale factor")->check(CLI::PositiveNumber);
  app.add_option("--clients", flags.clients, "pgbench clients")->check(CLI::PositiveNumber);
  app.add_option("--seconds", flags.seconds, "pgbench tpcb-like run building the backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--insert-seconds", flags.insert_seconds,
                 "single-row INSERT run building the second backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--steady-seconds", flags.steady_seconds,
                 "also a steady-state run of this many seconds per system: pgbench with no "
                 "replication, with native running, with geosync running; 0: none")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--simple-update-seconds", flags.simple_update_seconds,
                 "also a pgbench simple-update run of this many seconds (rows that rarely "
                 "collide: what apply.workers > 1 runs in parallel); 0: none")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rounds", flags.rounds,
                 "backlogs per workload; odd rounds drain native, pglogical, geosync, even "
                 "rounds the reverse")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up on a drain after this many s")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-max-txns", flags.batch_max_txns,
                 "geosync replica's apply.batch_max_txns (default: geosync's own)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-pglogical{false}", flags.pglogical,
               "skip the pglogical subscriber (postgresql-15-pglogical)");
  app.add_flag("--two-hosts", flags.two_hosts,
               "emulate two hosts: the primary, the source agent and pgbench on CPU 0; every "
               "target and its agent or apply worker on CPU 1 (taskset)");
  app.add_option("--perf", flags.perf_dir,
                 "record `perf record -a -g` of each native and cold geosync drain into this "
                 "directory (bench/perf_summary.sh summarises them)");
  app.add_option("--workers", flags.workers,
                 "geosync replicas' apply.workers (default: geosync's own)")
      ->check(CLI::Range(1, 64));
  app.add_flag("--no-collapse", flags.no_collapse,
               "geosync replica's apply.collapse = false (send every change in order)");
  app.add_flag("--corrupt", flags.corrupt,
               "change one row on the geosync target before verifying (tests the check: the run "
               "must exit 1)");
  CLI11_PARSE(app, argc, argv);
  return geosync::bench::TimedMain("bench_apply",
                                   [&] { return geosync::bench::ApplyBench(flags).Run(); });
}
