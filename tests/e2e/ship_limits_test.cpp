// End to end: the source's shipping limits. The per-site bandwidth cap holds
// each site's received byte rate near the cap (each site gets the cap, it is
// not shared) while an uncapped source drains the same backlog much faster.
// Spool retention deletes a segment once every site holds it durably, and at
// spool.max_mb drops the slowest site instead of filling the disk: the log and
// /status say so, the other site keeps replicating, the dropped site is
// refused with an error naming `geosyncctl seed`, and that seed brings it back
// identical to the primary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"
#include "tests/support/deployment.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/site.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct SpoolUsage {
  std::set<std::string> segments;  // *.seg file names
  uint64_t bytes = 0;              // their total size
};

SpoolUsage ReadSpoolUsage(const std::string& dir) {
  SpoolUsage u;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (!name.ends_with(".seg")) continue;
    std::error_code size_ec;
    uint64_t size = e.file_size(size_ec);
    if (size_ec) continue;  // released between listing and stat
    u.segments.insert(name);
    u.bytes += size;
  }
  return u;
}

class ShipLimitsE2E : public DeploymentTest {
 protected:
  void SetUp() override {
    Deployment& d = Deploy({.admin = true, .token_seed = "ship"});
    dir_ = d.dir();
    token_file_ = d.token_file();
    primary_ = &d.Primary();
    source_port_ = d.SourcePort();
  }

  void TearDown() override {
    if (HasFailure()) deploy().DumpLogs();
    deploy().ClearSites();
    proxies_.clear();
    for (const auto& m : mounts_) {
      ProcessSpec umount;
      umount.argv = {"/bin/umount", "-l", m};
      (void)RunProgram(umount, 30s);
    }
    deploy_.reset();
  }

  std::string Url(const std::string& site) { return deploy().AdminUrl(site); }

  GeoSite& AddSource(const nlohmann::json& extra) { return deploy().AddSource(extra); }

  GeoSite& AddReplica(const std::string& name, uint16_t upstream_port,
                      const nlohmann::json& extra = nlohmann::json::object()) {
    return deploy().AddReplica(name, extra, upstream_port);
  }

  // A tmpfs of `mb` MB at `path` (the test runs as root), unmounted in
  // TearDown.
  void MountTmpfs(const std::string& path, int mb) {
    std::filesystem::create_directories(path);
    ProcessSpec mount;
    mount.argv = {"/bin/mount", "-t", "tmpfs", "-o", fmt::format("size={}m,mode=0755", mb),
                  "tmpfs",      path};
    auto r = RunProgram(mount, 30s);
    ASSERT_TRUE(r.ok() && r->exit_status == 0)
        << "mounting a tmpfs at " << path << ": " << (r.ok() ? r->output : r.status().ToString());
    mounts_.push_back(path);
  }

  // Creates `path`, allocated so that `leave` bytes stay free on its
  // filesystem.
  void FillLeaving(const std::string& path, uint64_t leave) {
    struct statvfs fs {};
    ASSERT_EQ(::statvfs(std::filesystem::path(path).parent_path().c_str(), &fs), 0);
    const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
    ASSERT_GT(free_bytes, leave) << path;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << path;
    const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(free_bytes - leave));
    ::close(fd);
    ASSERT_EQ(rc, 0) << "allocating " << path;
  }

  FaultProxy& AddProxy(uint16_t target) {
    proxies_.push_back(std::make_unique<FaultProxy>(target));
    EXPECT_TRUE(proxies_.back()->Start().ok());
    return *proxies_.back();
  }

  std::string WriteTopology() { return deploy().WriteTopology(); }

  void WaitForSlot() { deploy().WaitSlotActive(); }

  // Waits until the source's slot confirms `target`: under policy async the
  // transactions are then durable in the source's spool.
  void WaitSpooled(Lsn target) {
    ASSERT_TRUE(WaitForLsn(*primary_,
                           "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE "
                           "slot_name = 'geosync'",
                           target, 120s));
  }

  void WaitApplied(PgCluster& pg, Lsn target, std::chrono::milliseconds deadline = 120s) {
    ASSERT_TRUE(WaitFor([&] { return AppliedLsn(pg) >= target; }, deadline,
                        fmt::format("{} applied up to {}", pg.name(), target.ToString())));
  }

  // `rows` rows of about `row_bytes` bytes of random hex each, in one
  // transaction, into table blobs (created by CreateBlobs).
  void InsertBlobs(int rows, int row_bytes) {
    primary_->Exec(fmt::format(
        "INSERT INTO blobs (id, body) SELECT next_id + g, (SELECT string_agg(md5(random()::text "
        "|| g::text || h::text), '') FROM generate_series(1, {}) h) FROM generate_series(1, {}) "
        "g, (SELECT coalesce(max(id), 0) AS next_id FROM blobs) m",
        std::max(1, row_bytes / 32), rows));
  }
  void CreateBlobs() { primary_->Exec("CREATE TABLE blobs (id bigint PRIMARY KEY, body text)"); }

  // A site's GET /status document, or null.
  nlohmann::json StatusOf(const std::string& site) {
    admin::HttpCall call;
    call.base_url = Url(site);
    call.target = "/status";
    auto r = admin::Http(call);
    return r.ok() && r->status == 200 ? nlohmann::json::parse(r->body, nullptr, false)
                                      : nlohmann::json();
  }

  // The source's GET /status document, or null.
  nlohmann::json SourceStatus() {
    admin::HttpCall call;
    call.base_url = Url("frankfurt");
    call.target = "/status";
    auto r = admin::Http(call);
    if (!r.ok() || r->status != 200) return nullptr;
    auto doc = nlohmann::json::parse(r->body, nullptr, false);
    if (!doc.is_object() || !doc.contains("source")) return nullptr;
    return doc;
  }

  // The source's GET /status entry for `site`, or null.
  nlohmann::json SourceSiteStatus(const std::string& site) {
    nlohmann::json doc = SourceStatus();
    if (doc.is_null()) return nullptr;
    for (const auto& s : doc["source"]["sites"]) {
      if (s.value("site", "") == site) return s;
    }
    return nullptr;
  }

  // Spool retention passes the source has made (status spool.retention_runs).
  uint64_t RetentionRuns() {
    nlohmann::json doc = SourceStatus();
    if (doc.is_null() || !doc["spool"].contains("retention_runs")) return 0;
    return doc["spool"]["retention_runs"].get<uint64_t>();
  }

  std::string dir_, token_file_;
  std::vector<std::string> mounts_;
  PgCluster* primary_ = nullptr;
  uint16_t source_port_ = 0;
  std::vector<std::unique_ptr<FaultProxy>> proxies_;
};

TEST_F(ShipLimitsE2E, BandwidthCapHoldsEachSiteNearTheCapAndUncappedDrainsFaster) {
  constexpr uint64_t kCap = 256 * 1024;  // bytes per second, per site
  constexpr int kRows = 6000, kRowBytes = 1024;
  PgCluster& dublin_pg = deploy().Pg("dublin");
  PgCluster& virginia_pg = deploy().Pg("virginia");
  GeoSite& source = AddSource({{"bandwidth_bytes_per_sec", kCap}});
  FaultProxy& to_dublin = AddProxy(source_port_);
  FaultProxy& to_virginia = AddProxy(source_port_);
  GeoSite& dublin = AddReplica("dublin", to_dublin.port());
  GeoSite& virginia = AddReplica("virginia", to_virginia.port());
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(virginia.Start().ok());
  CreateBlobs();
  Lsn created = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, created);
  WaitApplied(virginia_pg, created);

  // A backlog built while both sites are away, then drained through the cap.
  auto drain = [&](const std::string& phase, bool measure) -> Clock::duration {
    EXPECT_TRUE(dublin.Stop().ok());
    EXPECT_TRUE(virginia.Stop().ok());
    for (int i = 0; i < 3; ++i) InsertBlobs(kRows / 3, kRowBytes);
    Lsn target = primary_->CurrentWalLsn();
    WaitSpooled(target);
    uint64_t base_d = to_dublin.BytesForwarded(Direction::kServerToClient);
    uint64_t base_v = to_virginia.BytesForwarded(Direction::kServerToClient);
    const auto started = Clock::now();
    EXPECT_TRUE(dublin.Start().ok());
    EXPECT_TRUE(virginia.Start().ok());
    if (measure) {
      // The window opens once both have their first Data frame, and lasts 8 s.
      EXPECT_TRUE(WaitFor(
          [&] {
            return to_dublin.BytesForwarded(Direction::kServerToClient) > base_d + 64 * 1024 &&
                   to_virginia.BytesForwarded(Direction::kServerToClient) > base_v + 64 * 1024;
          },
          60s, "both sites receive the backlog"));
      const auto t0 = Clock::now();
      const uint64_t d0 = to_dublin.BytesForwarded(Direction::kServerToClient);
      const uint64_t v0 = to_virginia.BytesForwarded(Direction::kServerToClient);
      std::this_thread::sleep_for(8s);  // the measurement window, not a synchronisation
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      const uint64_t d1 = to_dublin.BytesForwarded(Direction::kServerToClient);
      const uint64_t v1 = to_virginia.BytesForwarded(Direction::kServerToClient);
      EXPECT_LT(AppliedLsn(dublin_pg), target) << "dublin was still draining at the window's end";
      EXPECT_LT(AppliedLsn(virginia_pg), target)
          << "virginia was still draining at the window's end";
      // The cap is an upper bound that load cannot break. The lower bounds
      // leave room for a starved 2-core box: each site moves, and together
      // they move more than one shared cap would let through.
      for (auto [name, bytes] : {std::pair{"dublin", d1 - d0}, std::pair{"virginia", v1 - v0}}) {
        const double rate = static_cast<double>(bytes) / secs;
        RecordProperty(fmt::format("{}_bytes_per_sec", name), static_cast<int>(rate));
        EXPECT_LE(rate, 1.3 * kCap) << name << " received " << bytes << " bytes in " << secs
                                    << " s, cap " << kCap << " B/s";
        EXPECT_GE(rate, 0.3 * kCap) << name << " received " << bytes << " bytes in " << secs
                                    << " s, cap " << kCap << " B/s";
      }
      EXPECT_GE(static_cast<double>((d1 - d0) + (v1 - v0)) / secs, 1.15 * kCap)
          << "the cap is per site, not shared: dublin " << d1 - d0 << " and virginia " << v1 - v0
          << " bytes in " << secs << " s, cap " << kCap << " B/s";
    }
    WaitApplied(dublin_pg, target, 180s);
    WaitApplied(virginia_pg, target, 180s);
    auto took = Clock::now() - started;
    RecordProperty(
        phase + "_drain_ms",
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    RecordProperty(phase + "_wire_bytes",
                   static_cast<int>(to_dublin.BytesForwarded(Direction::kServerToClient) - base_d));
    return took;
  };

  const Clock::duration capped = drain("capped", true);
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(CompareTables(*primary_, virginia_pg), "");

  // The same backlog again from the same source without a cap.
  ASSERT_TRUE(source.Stop().ok());
  nlohmann::json config;
  std::ifstream(source.config_path()) >> config;
  config.erase("bandwidth_bytes_per_sec");
  std::ofstream(source.config_path()) << config.dump(2);
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  const Clock::duration uncapped = drain("uncapped", false);
  EXPECT_LT(uncapped * 2, capped) << "uncapped drain "
                                  << std::chrono::duration<double>(uncapped).count()
                                  << " s vs capped "
                                  << std::chrono::duration<double>(capped).count() << " s";
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(CompareTables(*primary_, virginia_pg), "");
}

TEST_F(ShipLimitsE2E, SpoolSegmentIsDeletedOnceEverySiteHoldsIt) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  PgCluster& virginia_pg = deploy().Pg("virginia");
  GeoSite& source = AddSource({{"spool", {{"segment_mb", 1}}}});
  GeoSite& dublin = AddReplica("dublin", source_port_);
  GeoSite& virginia = AddReplica("virginia", source_port_);
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(virginia.Start().ok());
  CreateBlobs();
  Lsn created = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, created);
  WaitApplied(virginia_pg, created);

  ASSERT_TRUE(virginia.Stop().ok());
  for (int i = 0; i < 8; ++i) InsertBlobs(1000, 512);  // ~4 MB over 1 MB segments
  Lsn target = primary_->CurrentWalLsn();
  WaitSpooled(target);
  const std::string spool_dir = source.dir() + "/spool";
  const SpoolUsage written = ReadSpoolUsage(spool_dir);
  ASSERT_GE(written.segments.size(), 4u) << "the backlog spans several 1 MB segments";
  WaitApplied(dublin_pg, target);
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json s = SourceSiteStatus("dublin");
        if (!s.is_object() || !s["durable"].is_object()) return false;
        auto lsn = Lsn::Parse(s["durable"]["lsn"].get<std::string>());
        return lsn.ok() && *lsn >= target;
      },
      30s, "the source knows dublin holds the backlog durably"));
  // Over three retention passes, counted by the source itself, nothing
  // virginia lacks goes.
  const uint64_t runs_before = RetentionRuns();
  ASSERT_TRUE(WaitFor(
      [&] {
        const SpoolUsage now = ReadSpoolUsage(spool_dir);
        EXPECT_TRUE(std::includes(now.segments.begin(), now.segments.end(),
                                  written.segments.begin(), written.segments.end()))
            << "a segment virginia has not acknowledged was deleted";
        return RetentionRuns() >= runs_before + 3;
      },
      30s, "three more retention passes on the source"));
  ASSERT_GT(runs_before, 0u) << "the source reports its retention passes";

  ASSERT_TRUE(virginia.Start().ok());
  WaitApplied(virginia_pg, target);
  ASSERT_TRUE(WaitFor(
      [&] {
        // All but the newest written segment, which may still be the active
        // one (never deleted).
        const SpoolUsage now = ReadSpoolUsage(spool_dir);
        return now.segments.size() <= 2 && !now.segments.empty() &&
               *now.segments.begin() >= *written.segments.rbegin();
      },
      30s, "the segments both sites hold are deleted"));
  EXPECT_NE(source.ReadLog().find("spool: released"), std::string::npos);
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(CompareTables(*primary_, virginia_pg), "");
}

// A replica's spool keeps only spool.keep_applied_mb of applied transactions
// (at most half of spool.max_mb): older applied segments are deleted, so a
// capped replica spool never stalls receiving once everything in it is applied.
TEST_F(ShipLimitsE2E, ReplicaSpoolDeletesOldAppliedSegmentsAndItsCapDoesNotStallIt) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  GeoSite& source = AddSource(nlohmann::json::object());
  GeoSite& dublin =
      AddReplica("dublin", source_port_, {{"spool", {{"segment_mb", 1}, {"max_mb", 3}}}});
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  CreateBlobs();
  const std::string spool_dir = dublin.dir() + "/spool";
  std::atomic<bool> done{false};
  std::atomic<uint64_t> peak{0};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max<uint64_t>(peak, ReadSpoolUsage(spool_dir).bytes);
      std::this_thread::sleep_for(20ms);
    }
  });
  for (int i = 0; i < 16; ++i) InsertBlobs(1000, 512);  // ~8 MB through a 3 MB replica spool
  const Lsn target = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, target);
  // Keep: min(keep_applied_mb 1024, max_mb / 2) = 1.5 MB, plus the active
  // segment, which is never deleted.
  const bool shrank = WaitFor([&] { return ReadSpoolUsage(spool_dir).bytes <= (5u << 20) / 2; },
                              30s, "dublin's spool is back to what it keeps");
  done = true;
  sampler.join();
  EXPECT_TRUE(shrank) << ReadSpoolUsage(spool_dir).bytes << " bytes in " << spool_dir;
  // The cap can be overshot by the one unit (a 0.5 MB transaction) already started.
  EXPECT_LE(peak.load(), 4u << 20) << "dublin's spool went past its 3 MB cap";
  EXPECT_GE(peak.load(), 1u << 20) << "the sampler saw the spool";
  EXPECT_NE(dublin.ReadLog().find("spool: released"), std::string::npos);
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
}

TEST_F(ShipLimitsE2E, SpoolCapDropsTheSlowestSiteWhichIsRefusedUntilReseeded) {
  constexpr uint64_t kCapMb = 6;
  PgCluster& dublin_pg = deploy().Pg("dublin");
  PgCluster& virginia_pg = deploy().Pg("virginia");
  GeoSite& source = AddSource({{"spool", {{"segment_mb", 1}, {"max_mb", kCapMb}}}});
  GeoSite& dublin = AddReplica("dublin", source_port_);
  GeoSite& virginia = AddReplica("virginia", source_port_);
  const std::string topology = WriteTopology();
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(virginia.Start().ok());
  CreateBlobs();
  Lsn created = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, created);
  WaitApplied(virginia_pg, created);

  // dublin goes away; the primary writes twice the cap.
  ASSERT_TRUE(dublin.Stop().ok());
  const std::string spool_dir = source.dir() + "/spool";
  std::atomic<bool> sampling{true};
  std::atomic<uint64_t> peak{0};
  std::thread sampler([&] {
    while (sampling) {
      uint64_t b = ReadSpoolUsage(spool_dir).bytes;
      if (b > peak) peak = b;
      std::this_thread::sleep_for(20ms);
    }
  });
  // ~12 MB in 0.5 MB transactions, each applied by virginia before the next:
  // virginia stays well within the cap of the head, so only dublin is in the
  // way. Retention releases what virginia holds before it drops anybody, so
  // the spool growing past the cap between two runs does not cost virginia
  // its place (a CI run once dropped it that way).
  for (int i = 0; i < 24; ++i) {
    InsertBlobs(1000, 512);
    WaitApplied(virginia_pg, primary_->CurrentWalLsn());
  }
  Lsn target = primary_->CurrentWalLsn();
  WaitSpooled(target);
  WaitApplied(virginia_pg, target);
  sampling = false;
  sampler.join();
  const uint64_t cap = kCapMb << 20;
  RecordProperty("spool_peak_bytes", static_cast<int>(peak.load()));
  // Between retention runs (1 s) the spool refuses a new transaction at the
  // cap, so it passes it by at most one transaction and one segment.
  EXPECT_LE(peak.load(), cap + (2u << 20)) << "the spool stayed near its cap of " << cap;
  EXPECT_GE(peak.load(), cap - (1u << 20)) << "the spool filled up to its cap";
  EXPECT_LT(ReadSpoolUsage(spool_dir).bytes, cap) << "after the drop the spool is under the cap";

  // Loud in the log and in /status.
  const std::string log = source.ReadLog();
  EXPECT_NE(log.find("SITE dublin dropped from retention: the spool reached its cap of 6 MB"),
            std::string::npos)
      << log;
  nlohmann::json st = SourceSiteStatus("dublin");
  ASSERT_TRUE(st.is_object());
  EXPECT_EQ(st["dropped"], true) << st.dump();
  EXPECT_NE(st["last_error"].get<std::string>().find("geosyncctl seed --site dublin"),
            std::string::npos)
      << st.dump();
  EXPECT_EQ(SourceSiteStatus("virginia")["dropped"], false);
  EXPECT_EQ(CompareTables(*primary_, virginia_pg), "") << "virginia kept replicating";

  // dublin comes back and is refused, with the command that repairs it.
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string l = dublin.ReadLog();
        return l.find("refused this site") != std::string::npos &&
               l.find("needs a re-seed") != std::string::npos &&
               l.find("geosyncctl seed --site dublin") != std::string::npos;
      },
      60s, "dublin is refused and told to re-seed"));
  EXPECT_NE(source.ReadLog().find("refused site dublin"), std::string::npos);
  EXPECT_TRUE(dublin.IsRunning()) << "a refused site keeps running so that it can be seeded";

  // Writes continue; a re-seed brings dublin back.
  InsertBlobs(200, 512);
  ProcessSpec seed;
  seed.argv = {BinaryPath("geosyncctl"), "seed",     "--site", "dublin", "--topology", topology,
               "--token-file",           token_file_};
  auto out = RunProgram(seed, 180s);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->exit_status, 0) << out->output;
  InsertBlobs(200, 512);
  Lsn end = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, end);
  WaitApplied(virginia_pg, end);
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "") << "the re-seeded dublin matches the primary";
  EXPECT_EQ(CompareTables(*primary_, virginia_pg), "");
  EXPECT_EQ(SourceSiteStatus("dublin")["dropped"], false) << "the seed readmitted dublin";
}

// A full disk is a pause (issue #19). Each spool sits on its own small
// tmpfs; a filler file leaves it less room than the backlog. The source,
// then a replica, runs out of space under 0.5 MB transactions: the agent
// keeps running, says "spool disk full" in /status and /metrics, confirms
// nothing it did not write, and once the filler is deleted resumes by itself.
// Every table ends identical: nothing lost, nothing applied twice.
TEST_F(ShipLimitsE2E, ASpoolOnAFullDiskPausesAndResumesOnceSpaceIsFreed) {
  const std::string source_fs = dir_ + "/source-fs", dublin_fs = dir_ + "/dublin-fs";
  MountTmpfs(source_fs, 24);
  MountTmpfs(dublin_fs, 24);
  PgCluster& dublin_pg = deploy().Pg("dublin");
  GeoSite& source =
      AddSource({{"spool", {{"dir", source_fs + "/spool"}, {"segment_mb", 1}, {"max_mb", 0}}}});
  GeoSite& dublin = AddReplica("dublin", source_port_,
                               {{"spool", {{"dir", dublin_fs + "/spool"}, {"segment_mb", 1}}}});
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  CreateBlobs();
  InsertBlobs(10, 512);
  WaitApplied(dublin_pg, primary_->CurrentWalLsn());

  auto metrics_of = [&](const std::string& site) {
    admin::HttpCall call;
    call.base_url = Url(site);
    call.target = "/metrics";
    auto r = admin::Http(call);
    return r.ok() ? r->body : std::string();
  };
  auto full_disk_reported = [&](const std::string& site) {
    nlohmann::json st = StatusOf(site);
    return st.is_object() && st["last_error"].is_string() &&
           st["last_error"].get<std::string>().find("spool disk full") != std::string::npos &&
           metrics_of(site).find("geosync_spool_write_failed 1") != std::string::npos;
  };

  // The source: dublin is away, so the backlog stays in the source's spool.
  ASSERT_TRUE(dublin.Stop().ok());
  const std::string filler = source_fs + "/filler";
  FillLeaving(filler, 2u << 20);
  const Lsn before = primary_->CurrentWalLsn();
  for (int i = 0; i < 12; ++i) InsertBlobs(1000, 512);  // ~6 MB in 0.5 MB transactions
  const Lsn target = primary_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return full_disk_reported("frankfurt"); }, 60s,
                      "the source reports its spool disk full"));
  const Lsn confirmed = Lsn::Parse(primary_->QueryValue("SELECT confirmed_flush_lsn FROM "
                                                        "pg_replication_slots WHERE slot_name = "
                                                        "'geosync'"))
                            .value();
  EXPECT_LT(confirmed, target) << "the slot is not confirmed past what the spool could not hold";
  EXPECT_GE(confirmed, before);
  EXPECT_TRUE(source.IsRunning()) << "a full disk is a pause, not an exit";
  std::filesystem::remove(filler);
  WaitSpooled(target);
  EXPECT_FALSE(full_disk_reported("frankfurt"));
  EXPECT_TRUE(source.IsRunning());

  // The replica: its spool fills while it receives the backlog.
  const std::string dublin_filler = dublin_fs + "/filler";
  FillLeaving(dublin_filler, 2u << 20);
  ASSERT_TRUE(dublin.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return full_disk_reported("dublin"); }, 60s,
                      "dublin reports its spool disk full"));
  EXPECT_LT(AppliedLsn(dublin_pg), target);
  std::filesystem::remove(dublin_filler);
  WaitApplied(dublin_pg, target, 180s);
  EXPECT_TRUE(dublin.IsRunning()) << "the replica paused, it did not exit";
  EXPECT_TRUE(source.IsRunning());
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(dublin_pg.QueryValue("SELECT count(*) FROM blobs"), "12010")
      << "every transaction applied once";
}

// The replica's PostgreSQL runs out of disk during apply: dublin keeps its
// copy of `blobs` in a tablespace on a small tmpfs, and a filler leaves it
// less room than the backlog. Apply fails with SQLSTATE 53100 (disk full),
// which /status reports, rolls back and retries with its backoff while the
// receiver keeps spooling. Once the filler is deleted, apply resumes by
// itself: no restart, nothing lost, nothing applied twice.
TEST_F(ShipLimitsE2E, ReplicaPostgresOutOfDiskRetriesApplyAndResumesOnceSpaceIsFreed) {
  const std::string fs = dir_ + "/dublin-tablespace";
  MountTmpfs(fs, 16);
  const std::string location = fs + "/ts";
  std::filesystem::create_directories(location);
  if (::geteuid() == 0) {  // the server runs as postgres and must reach and own its tablespace
    std::filesystem::permissions(
        dir_, std::filesystem::perms::group_exec | std::filesystem::perms::others_exec,
        std::filesystem::perm_options::add);
    struct passwd* pw = ::getpwnam("postgres");
    ASSERT_NE(pw, nullptr);
    ASSERT_EQ(::chown(location.c_str(), pw->pw_uid, pw->pw_gid), 0);
  }
  PgCluster& dublin_pg = deploy().Pg("dublin");
  GeoSite& source = AddSource(nlohmann::json::object());
  GeoSite& dublin = AddReplica("dublin", source_port_);
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  CreateBlobs();
  InsertBlobs(10, 512);
  WaitApplied(dublin_pg, primary_->CurrentWalLsn());
  // A DBA's repair-path change on the replica (a superuser under
  // session_replication_role = replica, docs/security.md): the table and
  // its TOAST move to the small tablespace.
  dublin_pg.Exec(fmt::format("CREATE TABLESPACE small LOCATION '{}'", location));
  dublin_pg.Exec(
      "SET session_replication_role = replica; ALTER TABLE blobs SET TABLESPACE small; "
      "RESET session_replication_role");

  const std::string filler = fs + "/filler";
  FillLeaving(filler, 1u << 20);
  const Lsn before = AppliedLsn(dublin_pg);
  for (int i = 0; i < 8; ++i) InsertBlobs(1000, 512);  // ~4 MB in 0.5 MB transactions
  const Lsn target = primary_->CurrentWalLsn();
  nlohmann::json reported;
  ASSERT_TRUE(WaitFor(
      [&] {
        reported = StatusOf("dublin");
        return reported.is_object() && reported["last_error"].is_string() &&
               reported["last_error"].get<std::string>().find("53100") != std::string::npos;
      },
      90s, "dublin reports apply retrying on SQLSTATE 53100 (disk full)"));
  EXPECT_NE(reported["last_error"].get<std::string>().find("apply retrying"), std::string::npos)
      << reported["last_error"];
  EXPECT_TRUE(reported["replica"]["apply"]["retrying"].is_string()) << reported["replica"]["apply"];
  EXPECT_TRUE(reported["replica"]["apply"]["error"].is_null())
      << "a full disk is retried, not a stop that needs a DBA";
  EXPECT_LT(AppliedLsn(dublin_pg), target);
  EXPECT_GE(AppliedLsn(dublin_pg), before);
  std::filesystem::remove(filler);
  WaitApplied(dublin_pg, target, 180s);
  EXPECT_TRUE(dublin.IsRunning()) << "apply retried inside the agent; nothing restarted it";
  EXPECT_TRUE(source.IsRunning());
  EXPECT_TRUE(StatusOf("dublin")["replica"]["apply"]["retrying"].is_null());
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(dublin_pg.QueryValue("SELECT count(*) FROM blobs"), "8010")
      << "every transaction applied once";
}

// kill -9 right after a spool segment rotates, then a restart with a larger
// segment_mb, four times in turn on the source and on a replica while a
// writer keeps committing 100 kB transactions. The restarted agent reopens
// its newest segment under the new size and never appends to a sealed one
// (docs/spool.md). Every table ends identical, every row applied once.
TEST_F(ShipLimitsE2E, KillNineRightAfterSegmentRotationsThenLargerSegmentsLoseNothing) {
  PgCluster& dublin_pg = deploy().Pg("dublin");
  GeoSite& source = AddSource({{"spool", {{"segment_mb", 1}, {"max_mb", 0}}}});
  GeoSite& dublin = AddReplica("dublin", source_port_, {{"spool", {{"segment_mb", 1}}}});
  ASSERT_TRUE(source.Start().ok());
  WaitForSlot();
  ASSERT_TRUE(dublin.Start().ok());
  CreateBlobs();
  InsertBlobs(10, 512);
  WaitApplied(dublin_pg, primary_->CurrentWalLsn());

  std::atomic<bool> stop{false};
  std::atomic<int> inserted{10};
  std::thread writer([&] {
    while (!stop) {
      InsertBlobs(200, 512);
      inserted += 200;
    }
  });
  auto config_of = [](GeoSite& site) {
    std::ifstream in(site.config_path());
    return nlohmann::json::parse(in);
  };
  // The newest segment file of a spool directory: its name and size.
  auto newest = [](const std::string& dir) {
    std::pair<std::string, uintmax_t> best;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".seg") && name > best.first) best = {name, e.file_size(ec)};
    }
    return best;
  };
  for (int round = 0; round < 4; ++round) {
    GeoSite& victim = round % 2 == 0 ? source : dublin;
    nlohmann::json config = config_of(victim);
    const std::string spool_dir = config["spool"]["dir"].get<std::string>();
    const std::string before = newest(spool_dir).first;
    std::pair<std::string, uintmax_t> fresh;
    ASSERT_TRUE(WaitFor(
        [&] {
          fresh = newest(spool_dir);
          return fresh.first > before && fresh.second < (256u << 10);
        },
        60s, "a new segment in " + spool_dir));
    ASSERT_TRUE(victim.Kill9().ok());
    std::cerr << "round " << round << ": killed " << victim.spec().name << " with segment "
              << fresh.first << " at " << fresh.second << " bytes\n";
    config["spool"]["segment_mb"] = config["spool"]["segment_mb"].get<int>() * 2;
    std::ofstream(victim.config_path()) << config.dump(2);
    ASSERT_TRUE(victim.Start().ok());
  }
  stop = true;
  writer.join();
  // A few more segments under the new sizes.
  for (int i = 0; i < 20; ++i) InsertBlobs(200, 512);
  const Lsn target = primary_->CurrentWalLsn();
  WaitApplied(dublin_pg, target, 180s);
  EXPECT_TRUE(source.IsRunning()) << "a restart after kill -9 opened its spool";
  EXPECT_TRUE(dublin.IsRunning());
  EXPECT_EQ(CompareTables(*primary_, dublin_pg), "");
  EXPECT_EQ(dublin_pg.QueryValue("SELECT count(*) FROM blobs"), std::to_string(inserted + 4000))
      << "every transaction applied once";
}

}  // namespace
}  // namespace geosync::testing
