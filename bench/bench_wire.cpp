// bench_wire: bytes on the wire per transaction for one pgbench backlog,
// shipped by native logical replication and by geosync at zstd levels 0, 1, 3,
// each link measured by a byte-counting FaultProxy. Also the drain rate.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
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
#include <nlohmann/json.hpp>

#include "bench/bench_common.h"
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
using geosync::testing::PgClusterOptions;
using geosync::testing::SiteSpec;
using Clock = std::chrono::steady_clock;

struct Flags {
  int scale = 10;
  int clients = 4;
  int seconds = 20;
  std::vector<int> levels = {0, 1, 3};
  int deadline_seconds = 600;
};

bool PortAccepts(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

const char* kTables[] = {"pgbench_accounts", "pgbench_branches", "pgbench_tellers",
                         "pgbench_history", "bench_marker"};

// Row count and an order-independent hash of every row, per table: the
// databases under comparison have different names, which CompareTables
// (one dbname for both sides) does not allow.
std::string Fingerprint(PgCluster& cluster, const std::string& dbname) {
  std::string out;
  for (const char* t : kTables) {
    out += cluster.QueryValue(
               fmt::format("SELECT count(*) || ':' || coalesce(sum(hashtext(x::text)::bigint), 0) "
                           "FROM {} x",
                           t),
               dbname) +
           " ";
  }
  return out;
}

struct Run {
  std::string name;
  int level = -1;  // geosync's zstd level; -1 for native
  double seconds = 0;
  uint64_t down = 0, up = 0;  // towards the subscriber / towards the publisher
  bool matches = false;
};

class WireBench {
 public:
  explicit WireBench(Flags flags) : flags_(std::move(flags)) {}
  ~WireBench() {
    replica_.reset();
    source_.reset();
  }

  int Run() {
    try {
      Setup();
      Backlog();
      std::vector<struct Run> runs;
      runs.push_back(DrainNative());
      for (int level : flags_.levels) runs.push_back(DrainGeosync(level));
      Report(runs);
      for (const auto& r : runs) {
        if (!r.matches) return 1;
      }
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "bench_wire: FAILED: " << e.what() << "\n";
      if (source_) source_->DumpLog();
      if (replica_) replica_->DumpLog();
      for (auto* c : {primary_.get(), target_.get()}) {
        if (c) std::cerr << "server log of " << c->name() << ": " << c->LogPath() << "\n";
      }
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
    RequireExecutable(primary_->BinDir() + "/pgbench");
    target_ = NewCluster("wire_target");
    // One seeded database on the target; each subscriber gets a file copy of it.
    target_->CreateDatabase("seed");
    const std::string marker = "CREATE TABLE bench_marker (id serial PRIMARY KEY, note text)";
    primary_->RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q"});
    primary_->Exec(marker);
    target_->RunPgbench({"-i", "-s", std::to_string(flags_.scale), "-q", "seed"});
    target_->Exec(marker, "seed");
    target_->Exec("CREATE DATABASE native TEMPLATE seed STRATEGY FILE_COPY");
    primary_->Exec(
        fmt::format("CREATE PUBLICATION bench_native FOR TABLE {}", fmt::join(kTables, ", ")));
    native_proxy_ = std::make_unique<FaultProxy>(primary_->port());
    Check(native_proxy_->Start(), "starting the proxy in front of the primary");
    target_->Exec(
        fmt::format("CREATE SUBSCRIPTION bench_native CONNECTION '{}' PUBLICATION bench_native "
                    "WITH (enabled = false, copy_data = false, create_slot = true, "
                    "slot_name = 'bench_native')",
                    native_proxy_->ConnInfo()),
        "native");
    source_port_ = testing::FreeTcpPort();
    SiteSpec s;
    s.name = "frankfurt";
    s.source = true;
    s.dsn = primary_->ConnInfo();
    s.listen_port = source_port_;
    // Every level's replica is named up front: the spool keeps the backlog
    // until all of them have it.
    for (int level : flags_.levels) s.sites.push_back(SiteName(level));
    s.extra = {{"compression_level", flags_.levels.front()}};
    source_ = std::make_unique<GeoSite>(s);
    current_level_ = flags_.levels.front();
    Check(source_->Start(), "starting the source geosyncd");
    WaitFact(
        [&] {
          return primary_->QueryValue(
                     "SELECT count(*) FROM pg_replication_slots WHERE "
                     "slot_name = 'geosync' AND active") == "1";
        },
        60s, "the source geosyncd created and streams its slot");
  }

  static std::string SiteName(int level) { return fmt::format("zstd{}", level); }

  void Backlog() {
    std::vector<std::string> args = {"-n", "-c", std::to_string(flags_.clients), "-T",
                                     std::to_string(flags_.seconds)};
    std::cout << fmt::format("building the backlog: pgbench {}\n", fmt::join(args, " "));
    Lsn before = primary_->CurrentWalLsn();
    txns_ = PgbenchTxns(primary_->RunPgbench(args));
    target_lsn_ = primary_->CurrentWalLsn();
    wal_bytes_ = target_lsn_.BytesAfter(before);
    primary_->Exec("INSERT INTO bench_marker (note) VALUES ('after the backlog')");
    WaitFact(
        [&] {
          auto lsn = Lsn::Parse(primary_->QueryValue(
              "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'geosync'"));
          return lsn.ok() && *lsn >= target_lsn_;
        },
        std::chrono::seconds(flags_.deadline_seconds), "the source spooled the backlog");
    primary_fp_ = Fingerprint(*primary_, "postgres");
    std::cout << fmt::format("backlog: {} transactions, {:.1f} MB of WAL\n", txns_,
                             wal_bytes_ / 1e6);
  }

  struct Run DrainNative() {
    struct Run r;
    r.name = "native logical replication";
    uint64_t down0 = native_proxy_->BytesForwarded(Direction::kServerToClient);
    uint64_t up0 = native_proxy_->BytesForwarded(Direction::kClientToServer);
    auto t0 = Clock::now();
    target_->Exec("ALTER SUBSCRIPTION bench_native ENABLE", "native");
    std::string subid = target_->QueryValue(
        "SELECT oid FROM pg_subscription WHERE subname = 'bench_native'", "native");
    r.seconds = WaitApplied(*target_, "native", OriginLsnQuery("pg_" + subid), target_lsn_, t0,
                            std::chrono::seconds(flags_.deadline_seconds), "native subscriber");
    r.down = native_proxy_->BytesForwarded(Direction::kServerToClient) - down0;
    r.up = native_proxy_->BytesForwarded(Direction::kClientToServer) - up0;
    target_->Exec("ALTER SUBSCRIPTION bench_native DISABLE", "native");
    r.matches = Fingerprint(*target_, "native") == primary_fp_;
    std::cout << fmt::format("native: {:.2f} s, {} bytes down, {} up\n", r.seconds, r.down, r.up);
    return r;
  }

  // Restarts the source with `level` if needed, then drains the backlog into
  // a fresh copy of the seed database through a fresh proxy.
  struct Run DrainGeosync(int level) {
    struct Run r;
    r.name = fmt::format("geosync zstd level {}", level);
    r.level = level;
    if (level != current_level_) {
      Check(source_->Stop(), "stopping the source geosyncd");
      nlohmann::json config;
      std::ifstream(source_->config_path()) >> config;
      config["compression_level"] = level;
      std::ofstream(source_->config_path()) << config.dump(2);
      Check(source_->Start(), "restarting the source geosyncd");
      current_level_ = level;
    }
    WaitFact([&] { return PortAccepts(source_port_); }, 60s, "the source geosyncd listens");
    std::string db = SiteName(level);
    target_->Exec(fmt::format("CREATE DATABASE {} TEMPLATE seed STRATEGY FILE_COPY", db));
    // Replication origins are per cluster: a previous level's progress
    // would make this replica skip the backlog.
    target_->Exec(
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname "
        "LIKE 'geosync%'");
    FaultProxy proxy(source_port_);
    Check(proxy.Start(), "starting the proxy in front of the source geosyncd");
    SiteSpec spec;
    spec.name = db;
    spec.dsn = target_->ConnInfo(db);
    spec.upstream_port = proxy.port();
    replica_ = std::make_unique<GeoSite>(spec);
    auto t0 = Clock::now();
    Check(replica_->Start(), "starting the geosync replica");
    r.seconds = WaitApplied(*target_, db, OriginLsnQuery("geosync%"), target_lsn_, t0,
                            std::chrono::seconds(flags_.deadline_seconds), r.name);
    r.down = proxy.BytesForwarded(Direction::kServerToClient);
    r.up = proxy.BytesForwarded(Direction::kClientToServer);
    Check(replica_->Stop(), "stopping the geosync replica");
    replica_.reset();
    proxy.Stop();
    r.matches = Fingerprint(*target_, db) == primary_fp_;
    std::cout << fmt::format("{}: {:.2f} s, {} bytes down, {} up\n", r.name, r.seconds, r.down,
                             r.up);
    return r;
  }

  void Report(const std::vector<struct Run>& runs) {
    const auto& native = runs.front();
    double native_per_txn = double(native.down + native.up) / txns_;
    std::cout << fmt::format(
        "\nbytes on the wire per transaction (one run; one backlog of {} pgbench transactions, "
        "{:.1f} MB of WAL, {:.0f} WAL bytes/txn)\n",
        txns_, wal_bytes_ / 1e6, double(wal_bytes_) / txns_);
    std::cout << fmt::format("{:<28} {:>10} {:>8} {:>10} {:>9} {:>8} {:>9} {:>7}\n", "shipper",
                             "down B/txn", "up B/txn", "total B/txn", "vs native", "seconds",
                             "txn/s", "match");
    std::string ratios;
    for (const auto& r : runs) {
      double per_txn = double(r.down + r.up) / txns_;
      std::cout << fmt::format(
          "{:<28} {:>10.1f} {:>8.1f} {:>10.1f} {:>9.3f} {:>8.2f} {:>9.0f} "
          "{:>7}\n",
          r.name, double(r.down) / txns_, double(r.up) / txns_, per_txn, per_txn / native_per_txn,
          r.seconds, txns_ / r.seconds, r.matches ? "yes" : "NO");
      if (&r != &native) {
        ratios += fmt::format("{}level {} {:.3f} (1/{:.1f})", ratios.empty() ? "" : ", ", r.level,
                              per_txn / native_per_txn, native_per_txn / per_txn);
      }
    }
    std::cout << "ratio: geosync/native bytes per txn: " << ratios << " (target <= 0.125)\n";
  }

  Flags flags_;
  std::unique_ptr<PgCluster> primary_, target_;
  std::unique_ptr<FaultProxy> native_proxy_;
  std::unique_ptr<GeoSite> source_, replica_;
  uint16_t source_port_ = 0;
  int current_level_ = -1;
  uint64_t txns_ = 0, wal_bytes_ = 0;
  Lsn target_lsn_;
  std::string primary_fp_;
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
  app.add_option("--deadline", flags.deadline_seconds, "give up on a drain after this many s")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  auto start = std::chrono::steady_clock::now();
  int rc = geosync::bench::WireBench(flags).Run();
  std::cout << fmt::format(
      "bench_wire ran {:.0f} s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return rc;
}
