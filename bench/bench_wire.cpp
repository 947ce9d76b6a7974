// bench_wire: bytes on the wire per transaction for one pgbench backlog per
// round, shipped by native logical replication and by geosync at zstd levels
// 0, 1, 3, each link measured by a byte-counting FaultProxy. Also the drain
// rate, cold on every side: each geosync level has its own source geosyncd
// and slot, stopped during the load like native's walsender, so every timed
// window holds decode, ship and apply. Rounds alternate the order of the
// shippers. Every target must match the primary (CompareTables) at the end,
// or the run exits 1.
#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "bench/bench_common.h"
#include "tests/support/deployment.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::bench {
namespace {

using namespace std::chrono_literals;
using geosync::testing::Direction;
using geosync::testing::FaultProxy;
using geosync::testing::GeoSite;
using geosync::testing::PgCluster;
using geosync::testing::SiteSpec;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int clients = 4;
  int seconds = 20;
  std::vector<int> levels = {0, 1, 3};
  int rounds = 2;
  int deadline_seconds = 600;
  bool corrupt = false;  // change a target row before verifying: the run must exit 1
};

const char* kTables[] = {"pgbench_accounts", "pgbench_branches", "pgbench_tellers",
                         "pgbench_history", "bench_marker"};

// One shipper: native (level -1) or geosync at one zstd level, each into
// its own target cluster through its own byte-counting proxy.
struct Shipper {
  std::string name;
  int level = -1;
  PgCluster* target = nullptr;
  std::unique_ptr<FaultProxy> proxy;
  GeoSite* source = nullptr;  // geosync only
  GeoSite* replica = nullptr;
  uint16_t source_port = 0;
};

// One shipper's drain of one round's backlog.
struct Drain {
  int round = 0;
  size_t shipper = 0;  // index into the shippers
  double seconds = 0;
  uint64_t down = 0, up = 0;  // towards the subscriber / towards the publisher
};

struct Backlog {
  int round = 0;
  std::string order;
  uint64_t txns = 0, wal_bytes = 0;
};

class WireBench {
 public:
  explicit WireBench(Flags flags) : flags_(std::move(flags)) {}
  ~WireBench() {
    // The proxies go before the deployment's agents and servers.
    shippers_.clear();
  }

  int Run() {
    try {
      Setup();
      for (int round = 1; round <= flags_.rounds; ++round) RunRound(round);
      Report();
      if (flags_.corrupt) {
        CorruptOneRow(*shippers_.back().target, shippers_.back().name + " target");
      }
      std::vector<std::pair<std::string, PgCluster*>> targets;
      for (auto& s : shippers_) targets.emplace_back(s.name + " target", s.target);
      return VerifyTargets(*primary_, targets) ? 0 : 1;
    } catch (const std::exception& e) {
      std::cerr << "bench_wire: FAILED: " << e.what() << "\n";
      if (deploy_) deploy_->DumpLogs();
      return 1;
    }
  }

 private:
  std::chrono::seconds deadline() const { return std::chrono::seconds(flags_.deadline_seconds); }

  // pgbench -i data (identical everywhere) and the marker table.
  void Seed(PgCluster& c) {
    c.RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q"});
    c.Exec("CREATE TABLE bench_marker (id serial PRIMARY KEY, note text)");
  }

  static std::string SiteName(int level) { return fmt::format("zstd{}", level); }

  void Setup() {
    RequireExecutable(testing::BinaryPath("geosyncd"));
    auto t0 = Clock::now();
    std::vector<std::string> sites = {"native"};
    for (int level : flags_.levels) sites.push_back(SiteName(level));
    deploy_ = std::make_unique<testing::Deployment>(
        testing::DeploymentOptions{.replicas = sites, .configure_pg = [](PgCluster& c) {
                                     // See bench_apply: re-ENABLE within 5 s would wait inside the
                                     // drain.
                                     c.SetSetting("wal_retrieve_retry_interval", "100ms");
                                   }});
    primary_ = &deploy_->Primary();
    RequireExecutable(primary_->BinDir() + "/pgbench");
    Seed(*primary_);
    primary_->Exec(
        fmt::format("CREATE PUBLICATION bench_native FOR TABLE {}", fmt::join(kTables, ", ")));
    Shipper native;
    native.name = "native logical replication";
    native.target = &deploy_->Pg("native");
    Seed(*native.target);
    native.proxy = std::make_unique<FaultProxy>(primary_->port());
    Check(native.proxy->Start(), "starting the proxy in front of the primary");
    native.target->Exec(
        fmt::format("CREATE SUBSCRIPTION bench_native CONNECTION '{}' PUBLICATION bench_native "
                    "WITH (enabled = false, copy_data = false, create_slot = true, "
                    "slot_name = 'bench_native')",
                    native.proxy->ConnInfo()));
    native_subid_ =
        native.target->QueryValue("SELECT oid FROM pg_subscription WHERE subname = 'bench_native'");
    shippers_.push_back(std::move(native));
    for (int level : flags_.levels) shippers_.push_back(GeosyncShipper(level));
    std::cout << fmt::format("setup ({} clusters, pgbench -i -s {} each): {:.1f} s\n",
                             shippers_.size() + 1, flags_.scale,
                             std::chrono::duration<double>(Clock::now() - t0).count());
  }

  // A source geosyncd with its own slot (geosync_zstdN) and compression
  // level, started once to create the slot and stopped; a proxy in front of
  // its port; a replica applying into its own target cluster.
  Shipper GeosyncShipper(int level) {
    Shipper g;
    g.name = fmt::format("geosync zstd level {}", level);
    g.level = level;
    g.target = &deploy_->Pg(SiteName(level));
    Seed(*g.target);
    g.source_port = testing::FreeTcpPort();
    nlohmann::json extra = {{"compression_level", level}};
    extra["postgres"]["slot"] = "geosync_" + SiteName(level);
    for (const char* table : kTables) extra["postgres"]["tables"].push_back(table);
    // One source agent per level, each on its own port and slot.
    SiteSpec s = deploy_->SourceSpec(extra);
    s.listen_port = g.source_port;
    s.sites = {SiteName(level)};
    g.source = &deploy_->Add(s);
    Check(g.source->Start(), "starting the source geosyncd of " + g.name);
    WaitSourceSpooling(*primary_, "geosync_" + SiteName(level), "the source geosyncd of " + g.name);
    Check(g.source->Stop(), "stopping the source geosyncd of " + g.name);
    g.proxy = std::make_unique<FaultProxy>(g.source_port);
    Check(g.proxy->Start(), "starting the proxy in front of the source of " + g.name);
    g.replica = &deploy_->AddReplica(SiteName(level), nlohmann::json::object(), g.proxy->port());
    return g;
  }

  // A backlog written while every shipper is stopped, then drained by each
  // in this round's order.
  void RunRound(int round) {
    std::vector<size_t> order;
    for (size_t i = 0; i < shippers_.size(); ++i) order.push_back(i);
    order = RoundOrder(round, order);
    struct Backlog b;
    b.round = round;
    for (size_t i : order) {
      b.order += (b.order.empty() ? "" : " > ") +
                 (shippers_[i].level < 0 ? std::string("native") : SiteName(shippers_[i].level));
    }
    std::vector<std::string> args = {"-n", "-c", std::to_string(flags_.clients), "-T",
                                     std::to_string(flags_.seconds)};
    std::cout << fmt::format("[round {}] building the backlog: pgbench {}\n", round,
                             fmt::join(args, " "));
    Lsn before = primary_->CurrentWalLsn();
    b.txns = PgbenchTxns(primary_->RunPgbench(args));
    Lsn target = primary_->CurrentWalLsn();
    b.wal_bytes = target.BytesAfter(before);
    primary_->Exec(
        fmt::format("INSERT INTO bench_marker (note) VALUES ('after backlog {}')", round));
    std::cout << fmt::format("[round {}] {} transactions, {:.1f} MB of WAL; order {}\n", round,
                             b.txns, b.wal_bytes / 1e6, b.order);
    for (size_t i : order) {
      Drain d = shippers_[i].level < 0 ? DrainNative(target) : DrainGeosync(shippers_[i], target);
      d.round = round;
      d.shipper = i;
      drains_.push_back(d);
    }
    backlogs_.push_back(b);
  }

  Drain DrainNative(Lsn target) {
    Shipper& n = shippers_.front();
    Drain d;
    uint64_t down0 = n.proxy->BytesForwarded(Direction::kServerToClient);
    uint64_t up0 = n.proxy->BytesForwarded(Direction::kClientToServer);
    auto t0 = Clock::now();
    n.target->Exec("ALTER SUBSCRIPTION bench_native ENABLE");
    d.seconds = WaitApplied(*n.target, "postgres", OriginLsnQuery("pg_" + native_subid_), target,
                            t0, deadline(), "native subscriber");
    d.down = n.proxy->BytesForwarded(Direction::kServerToClient) - down0;
    d.up = n.proxy->BytesForwarded(Direction::kClientToServer) - up0;
    n.target->Exec("ALTER SUBSCRIPTION bench_native DISABLE");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'bench_native' AND active") == "0";
        },
        60s, "the native subscription's walsender exited");
    std::cout << fmt::format("  native: {:.2f} s, {} bytes down, {} up\n", d.seconds, d.down, d.up);
    return d;
  }

  // Cold: the source starts (decodes its slot's backlog into its spool), then
  // once it listens the replica; timed until the replica's origin passes
  // `target`. Both are stopped again afterwards.
  Drain DrainGeosync(Shipper& g, Lsn target) {
    Drain d;
    uint64_t down0 = g.proxy->BytesForwarded(Direction::kServerToClient);
    uint64_t up0 = g.proxy->BytesForwarded(Direction::kClientToServer);
    auto t0 = Clock::now();
    Check(g.source->Start(), "starting the source geosyncd of " + g.name);
    WaitListening(g.source_port, deadline(), "the source geosyncd of " + g.name);
    Check(g.replica->Start(), "starting the replica of " + g.name);
    d.seconds = WaitApplied(*g.target, "postgres", OriginLsnQuery("geosync%"), target, t0,
                            deadline(), g.name);
    d.down = g.proxy->BytesForwarded(Direction::kServerToClient) - down0;
    d.up = g.proxy->BytesForwarded(Direction::kClientToServer) - up0;
    Check(g.replica->Stop(), "stopping the replica of " + g.name);
    Check(g.source->Stop(), "stopping the source geosyncd of " + g.name);
    std::cout << fmt::format("  {}: {:.2f} s, {} bytes down, {} up\n", g.name, d.seconds, d.down,
                             d.up);
    return d;
  }

  void Report() {
    uint64_t txns = 0, wal = 0;
    for (const auto& b : backlogs_) {
      txns += b.txns;
      wal += b.wal_bytes;
    }
    std::cout << fmt::format(
        "\nbytes on the wire per transaction and cold drain time ({} rounds; {} pgbench "
        "transactions, {:.1f} MB of WAL, {:.0f} WAL bytes/txn; every shipper decodes inside its "
        "timed window)\n",
        flags_.rounds, txns, wal / 1e6, double(wal) / txns);
    for (const auto& b : backlogs_) {
      std::cout << fmt::format("round {}: {} transactions, order {}\n", b.round, b.txns, b.order);
    }
    std::cout << fmt::format("{:>5} {:<28} {:>10} {:>8} {:>11} {:>9} {:>8} {:>8}\n", "round",
                             "shipper", "down B/txn", "up B/txn", "total B/txn", "vs native",
                             "seconds", "txn/s");
    // Per shipper and round; then per shipper over all rounds (round "all").
    std::vector<Drain> totals(shippers_.size());
    auto row = [&](const std::string& round, const Drain& d, uint64_t n, double native_per_txn) {
      double per_txn = double(d.down + d.up) / n;
      std::cout << fmt::format(
          "{:>5} {:<28} {:>10.1f} {:>8.1f} {:>11.1f} {:>9.3f} {:>8.2f} {:>8.0f}\n", round,
          shippers_[d.shipper].name, double(d.down) / n, double(d.up) / n, per_txn,
          per_txn / native_per_txn, d.seconds, n / d.seconds);
    };
    for (const auto& b : backlogs_) {
      double native_per_txn = 0;
      for (const auto& d : drains_) {
        if (d.round == b.round && d.shipper == 0) native_per_txn = double(d.down + d.up) / b.txns;
      }
      for (size_t i = 0; i < shippers_.size(); ++i) {
        for (const auto& d : drains_) {
          if (d.round != b.round || d.shipper != i) continue;
          row(std::to_string(b.round), d, b.txns, native_per_txn);
          totals[i].shipper = i;
          totals[i].seconds += d.seconds;
          totals[i].down += d.down;
          totals[i].up += d.up;
        }
      }
    }
    const double native_per_txn = double(totals[0].down + totals[0].up) / txns;
    for (const auto& t : totals) row("all", t, txns, native_per_txn);
    std::string bytes, speed;
    for (size_t i = 1; i < totals.size(); ++i) {
      double per_txn = double(totals[i].down + totals[i].up) / txns;
      bytes += fmt::format("{}level {} {:.3f} (1/{:.1f})", bytes.empty() ? "" : ", ",
                           shippers_[i].level, per_txn / native_per_txn, native_per_txn / per_txn);
      speed += fmt::format("{}level {} {:.2f}x", speed.empty() ? "" : ", ", shippers_[i].level,
                           totals[0].seconds / totals[i].seconds);
    }
    std::cout << "ratio geosync/native bytes per txn: " << bytes << " (target <= 0.125)\n";
    std::cout << fmt::format("ratio cold geosync/native txn/s over {} rounds: {}\n", flags_.rounds,
                             speed);
  }

  Flags flags_;
  std::unique_ptr<testing::Deployment> deploy_;
  PgCluster* primary_ = nullptr;
  std::vector<Shipper> shippers_;  // native first, then one per level
  std::string native_subid_;
  std::vector<struct Backlog> backlogs_;
  std::vector<Drain> drains_;
};

}  // namespace
}  // namespace geosync::bench

int main(int argc, char** argv) {
  geosync::bench::Flags flags;
  CLI::App app{"bench_wire: bytes per transaction on the wire, geosync vs native"};
  app.add_option("--scale", flags.scale, "pgbench -i scale factor")->check(CLI::PositiveNumber);
  app.add_option("--clients", flags.clients, "pgbench clients")->check(CLI::PositiveNumber);
  app.add_option("--seconds", flags.seconds, "pgbench run building the backlog")
      ->check(CLI::PositiveNumber);
  app.add_option("--levels", flags.levels, "geosync compression levels to measure")
      ->check(CLI::Range(0, 19));
  app.add_option("--rounds", flags.rounds,
                 "backlogs; odd rounds drain native first, then the levels; even rounds the "
                 "reverse")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline", flags.deadline_seconds, "give up on a drain after this many s")
      ->check(CLI::PositiveNumber);
  app.add_flag("--corrupt", flags.corrupt,
               "change one row on a target before verifying (tests the check: the run must exit "
               "1)");
  CLI11_PARSE(app, argc, argv);
  return geosync::bench::TimedMain("bench_wire",
                                   [&] { return geosync::bench::WireBench(flags).Run(); });
}
