// The status model without a network: lag tracking, /status JSON, the
// Prometheus page, readiness, topology parsing and the deployment table.
#include "agent/admin/status_model.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "agent/admin/admin_server.h"

namespace geosync::admin {
namespace {

constexpr int64_t kSecond = 1'000'000;

Position At(uint64_t lsn) { return Position{1, Lsn(lsn)}; }

TEST(LagTracker, UnknownBeforeAnyObservation) {
  LagTracker t;
  EXPECT_FALSE(t.LagSeconds(At(100), 10 * kSecond, 0).has_value());
}

TEST(LagTracker, IdleSiteThatHoldsTheNewestPositionShowsNoLag) {
  LagTracker t;
  t.Observe(At(100), 1 * kSecond);
  // Heartbeats keep arriving with the same position: nothing new was written.
  for (int i = 2; i <= 60; ++i) t.Observe(At(100), i * kSecond);
  EXPECT_EQ(*t.LagSeconds(At(100), 60 * kSecond + 500'000, kSecond), 0.0)
      << "an idle database shows 0 s, not the time since the last write";
}

TEST(LagTracker, SilenceBeyondTheHeartbeatIntervalCountsAsLag) {
  LagTracker t;
  t.Observe(At(100), 10 * kSecond);
  // Link cut: no heartbeat for 4.2 s with a 200 ms interval.
  EXPECT_NEAR(*t.LagSeconds(At(100), 14'200'000, 200'000), 4.0, 1e-9);
}

TEST(LagTracker, BehindSiteLagsSinceTheFirstObservationItLacks) {
  LagTracker t;
  t.Observe(At(100), 1 * kSecond);
  t.Observe(At(200), 2 * kSecond);
  t.Observe(At(300), 3 * kSecond);
  EXPECT_NEAR(*t.LagSeconds(At(150), 5 * kSecond, 0), 3.0, 1e-9)
      << "position 150 lacks what the source held at t=2 s";
  EXPECT_NEAR(*t.LagSeconds(At(200), 5 * kSecond, 0), 2.0, 1e-9);
  EXPECT_NEAR(*t.LagSeconds(At(0), 5 * kSecond, 0), 4.0, 1e-9);
}

TEST(LagTracker, NeverNegativeUnderClockJitter) {
  LagTracker t;
  t.Observe(At(100), 10 * kSecond);
  t.Observe(At(200), 11 * kSecond);
  EXPECT_EQ(*t.LagSeconds(At(100), 10 * kSecond, 0), 0.0);
}

TEST(LagTracker, HistoryIsBoundedAndStillCoversTheOldestSample) {
  LagTracker t(64);
  for (int i = 1; i <= 10000; ++i) t.Observe(At(i * 10), i * kSecond);
  EXPECT_LT(t.size(), 64u) << "memory does not grow with backlog";
  double lag = *t.LagSeconds(At(5), 10001 * kSecond, 0);
  EXPECT_NEAR(lag, 10000.0, 1.0) << "the oldest observation is kept";
  EXPECT_NEAR(*t.LagSeconds(At(99995), 10001 * kSecond, 0), 1.0, 1e-9)
      << "recent history keeps full resolution";
}

TEST(RateMeter, CountsPerSecondOverTheWindow) {
  RateMeter m(10 * kSecond);
  m.Observe(0, 0);
  EXPECT_EQ(m.PerSecond(), 0.0);
  m.Observe(500, 5 * kSecond);
  EXPECT_DOUBLE_EQ(m.PerSecond(), 100.0);
  m.Observe(500, 30 * kSecond);
  EXPECT_DOUBLE_EQ(m.PerSecond(), 0.0) << "samples older than the window are dropped";
}

ReplicaSnapshot Replica() {
  ReplicaSnapshot s;
  s.id = {"dublin", "prod", 3, "0.1.0", 12.5};
  s.connected = true;
  s.source_site = "frankfurt";
  s.upstream = "10.0.0.1:7450";
  s.received = Position{3, Lsn(0x16B374D848)};
  s.durable = s.received;
  s.applied = Position{3, Lsn(0x16B3740000)};
  s.primary_wal_lsn = Lsn(0x16B3750000);
  s.applied_lag = {s.primary_wal_lsn.BytesAfter(s.applied.lsn), 0.25};
  s.received_lag = {s.primary_wal_lsn.BytesAfter(s.received.lsn), 0.0};
  s.durable_lag = s.received_lag;
  s.spool_bytes = 4096;
  s.txns = 1052;
  return s;
}

TEST(StatusJson, ReplicaCarriesPositionsBothWaysAndLagOnThreeClocks) {
  auto doc = StatusJson(Replica());
  EXPECT_EQ(doc["role"], "replica");
  EXPECT_EQ(doc["state"], "streaming");
  EXPECT_EQ(doc["epoch"], 3);
  EXPECT_EQ(doc["replica"]["received"]["position"], "3@16/B374D848");
  EXPECT_EQ(doc["replica"]["received"]["lsn"], "16/B374D848");
  EXPECT_EQ(doc["replica"]["primary_wal_lsn"], "16/B3750000");
  EXPECT_EQ(doc["replica"]["lag"]["applied"]["bytes"], 0x10000);
  EXPECT_EQ(doc["replica"]["lag"]["applied"]["seconds"], 0.25);
  EXPECT_TRUE(doc["last_error"].is_null());
  EXPECT_FALSE(doc.contains("source"));
}

TEST(StatusJson, UnknownPositionsAndLagAreNullNotZero) {
  ReplicaSnapshot s;
  s.id.site = "dublin";
  s.receiver_error = "I/O error: connection refused";
  auto doc = StatusJson(s);
  EXPECT_EQ(doc["state"], "connecting");
  EXPECT_TRUE(doc["replica"]["applied"].is_null());
  EXPECT_TRUE(doc["replica"]["lag"]["applied"]["seconds"].is_null());
  EXPECT_EQ(doc["last_error"], "I/O error: connection refused");
}

TEST(StatusJson, ApplyErrorWinsOverStreaming) {
  ReplicaSnapshot s = Replica();
  s.apply_error = "PostgreSQL error 23505: duplicate key";
  EXPECT_EQ(ReplicaState(s), "apply_error");
  EXPECT_EQ(StatusJson(s)["last_error"], "PostgreSQL error 23505: duplicate key");
}

SourceSnapshot Source() {
  SourceSnapshot s;
  s.id = {"frankfurt", "prod", 3, "0.1.0", 100};
  s.slot_name = "geosync";
  s.slot_polled = true;
  s.slot_active = true;
  s.current_wal_lsn = Lsn(0x3000);
  s.slot_restart_lsn = Lsn(0x1000);
  s.slot_retained_wal_bytes = 0x2000;
  s.slot_wal_status = "reserved";
  s.slot_wal_keep_size_bytes = -1;
  s.spool_durable = Position{3, Lsn(0x2F00)};
  SourceSiteSnapshot d;
  d.site = "dublin";
  d.connected = true;
  d.received = Position{3, Lsn(0x2F00)};
  d.received_lag = {0x100, 0.0};
  SourceSiteSnapshot v;
  v.site = "virginia";
  v.dropped = true;
  v.last_error = "dropped from retention";
  s.sites = {d, v};
  return s;
}

TEST(StatusJson, SourceListsEverySiteWithItsRetentionFlag) {
  auto doc = StatusJson(Source());
  EXPECT_EQ(doc["state"], "streaming");
  EXPECT_EQ(doc["source"]["slot"]["retained_wal_bytes"], 0x2000);
  EXPECT_EQ(doc["source"]["capture_lag_bytes"], 0x100);
  ASSERT_EQ(doc["source"]["sites"].size(), 2u);
  EXPECT_EQ(doc["source"]["sites"][1]["dropped"], true);
  EXPECT_EQ(doc["source"]["sites"][1]["last_error"], "dropped from retention");
}

TEST(Readiness, ReplicaNeedsRunningApplyAndLagUnderTheBound) {
  ReplicaSnapshot s = Replica();
  EXPECT_TRUE(ReplicaReadiness(s, 60).ready);
  s.applied_lag.seconds = 75;
  auto r = ReplicaReadiness(s, 60);
  EXPECT_FALSE(r.ready);
  EXPECT_NE(r.reason.find("admin.ready_max_lag_s"), std::string::npos) << r.reason;
  s.applied_lag.seconds.reset();
  EXPECT_FALSE(ReplicaReadiness(s, 60).ready) << "unknown lag is not ready";
  s = Replica();
  s.apply_error = "boom";
  EXPECT_NE(ReplicaReadiness(s, 60).reason.find("boom"), std::string::npos);
}

TEST(Readiness, HalfSeededReplicaIsNeverReady) {
  ReplicaSnapshot s = Replica();
  s.seed.state = "in_progress";
  s.seed.phase = "copying";
  auto r = ReplicaReadiness(s, 60);
  EXPECT_FALSE(r.ready) << "a seed in progress leaves a partial copy";
  EXPECT_NE(r.reason.find("seed in progress (copying)"), std::string::npos) << r.reason;
  EXPECT_EQ(ReplicaState(s), "seeding");
  auto doc = StatusJson(s);
  EXPECT_EQ(doc["state"], "seeding");
  EXPECT_EQ(doc["replica"]["seed"]["phase"], "copying");
  s.seed.state = "done";
  EXPECT_TRUE(ReplicaReadiness(s, 60).ready) << "a finished seed does not hold readiness back";
}

TEST(Readiness, SourceNeedsAnActiveSlot) {
  SourceSnapshot s = Source();
  EXPECT_TRUE(SourceReadiness(s).ready);
  s.slot_active = false;
  EXPECT_FALSE(SourceReadiness(s).ready);
  EXPECT_EQ(SourceState(s), "connecting");
}

TEST(MetricsText, EveryFamilyHasHelpAndTypeBeforeItsSamples) {
  std::string text = MetricsText(Replica());
  std::istringstream in(text);
  std::string line, family;
  std::set<std::string> typed;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.starts_with("# HELP ")) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (line.starts_with("# TYPE ")) {
      EXPECT_EQ(line.substr(7, family.size()), family);
      EXPECT_TRUE(typed.insert(family).second) << family << " declared twice";
    } else {
      EXPECT_EQ(line.substr(0, family.size()), family) << line;
    }
  }
  EXPECT_NE(text.find("geosync_replay_lag_bytes{site=\"dublin\"} 65536\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("geosync_replay_lag_seconds{site=\"dublin\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_role{role=\"replica\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_epoch 3\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_applied_transactions_total 1052\n"), std::string::npos);
}

TEST(MetricsText, SourceReportsSlotRetentionAndPerSiteLag) {
  std::string text = MetricsText(Source());
  EXPECT_NE(text.find("geosync_slot_retained_wal_bytes{slot=\"geosync\"} 8192\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("geosync_write_lag_bytes{site=\"dublin\"} 256\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_site_dropped{site=\"virginia\"} 1\n"), std::string::npos);
}

TEST(MetricsText, SourceReportsStreamingOfLargeTransactions) {
  SourceSnapshot s = Source();
  s.stream_starts = 2013;
  s.streamed_txns = 1;
  s.stream_aborts = 2;
  s.spilled_bytes = 23068672;
  std::string text = MetricsText(s);
  EXPECT_NE(text.find("geosync_capture_stream_starts_total 2013\n"), std::string::npos) << text;
  EXPECT_NE(text.find("geosync_capture_streamed_transactions_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_capture_stream_aborts_total 2\n"), std::string::npos);
  EXPECT_NE(text.find("geosync_capture_spilled_bytes_total 23068672\n"), std::string::npos);
  auto doc = StatusJson(s);
  EXPECT_EQ(doc["source"]["capture"]["stream_starts"], 2013);
  EXPECT_EQ(doc["source"]["capture"]["spilled_bytes"], 23068672);
}

TEST(MetricsText, WalDiskFreeIsExportedOnlyWhenKnown) {
  SourceSnapshot s = Source();
  s.wal_disk_free_bytes.reset();
  EXPECT_EQ(MetricsText(s).find("geosync_wal_disk_free_bytes"), std::string::npos)
      << "unknown free space is absent, not zero";
  s.wal_disk_free_bytes = 5000000;
  EXPECT_NE(MetricsText(s).find("geosync_wal_disk_free_bytes 5000000\n"), std::string::npos)
      << MetricsText(s);
}

TEST(MetricsText, SourceReportsSlotInvalidationAndKeepSize) {
  SourceSnapshot s = Source();
  std::string text = MetricsText(s);
  EXPECT_NE(text.find("geosync_slot_invalidated{slot=\"geosync\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("geosync_slot_wal_keep_size_bytes{slot=\"geosync\"} -1\n"), std::string::npos)
      << "unlimited max_slot_wal_keep_size is -1, as in PostgreSQL\n"
      << text;
  s.slot_wal_status = "lost";
  s.slot_wal_keep_size_bytes = int64_t{1} << 30;
  text = MetricsText(s);
  EXPECT_NE(text.find("geosync_slot_invalidated{slot=\"geosync\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("geosync_slot_wal_keep_size_bytes{slot=\"geosync\"} 1073741824\n"),
            std::string::npos);
  auto doc = StatusJson(s);
  EXPECT_EQ(doc["source"]["slot"]["invalidated"], true);
  EXPECT_EQ(doc["source"]["slot"]["wal_status"], "lost");
  EXPECT_EQ(doc["source"]["slot"]["wal_keep_size_bytes"], int64_t{1} << 30);
}

TEST(MetricsText, SlotInvalidatedIsAbsentBeforeTheFirstPoll) {
  SourceSnapshot s = Source();
  s.slot_polled = false;
  s.slot_wal_keep_size_bytes.reset();
  std::string text = MetricsText(s);
  EXPECT_EQ(text.find("geosync_slot_invalidated"), std::string::npos) << text;
  EXPECT_EQ(text.find("geosync_slot_wal_keep_size_bytes"), std::string::npos) << text;
}

TEST(SlotWatchdog, WarnsAtEightyPercentOfMaxSlotWalKeepSize) {
  const int64_t limit = 1000 * 1024 * 1024;
  EXPECT_FALSE(CheckSlotWal("geosync", 799 * 1024 * 1024, limit, "reserved").near_limit);
  SlotHealth h = CheckSlotWal("geosync", 800 * 1024 * 1024, limit, "extended");
  EXPECT_TRUE(h.near_limit);
  EXPECT_FALSE(h.invalidated);
  EXPECT_NE(h.message.find("80% of max_slot_wal_keep_size"), std::string::npos) << h.message;
}

TEST(SlotWatchdog, UnlimitedOrUnknownRetentionNeverWarns) {
  EXPECT_FALSE(CheckSlotWal("geosync", uint64_t{1} << 40, -1, "reserved").near_limit);
  EXPECT_FALSE(CheckSlotWal("geosync", std::nullopt, 1 << 20, "reserved").near_limit);
  EXPECT_TRUE(CheckSlotWal("geosync", uint64_t{1} << 40, -1, "reserved").message.empty());
}

TEST(SlotWatchdog, LostOrUnreservedSlotIsInvalidated) {
  SlotHealth lost = CheckSlotWal("geosync", std::nullopt, 1 << 20, "lost");
  EXPECT_TRUE(lost.invalidated);
  EXPECT_NE(lost.message.find("re-seed"), std::string::npos) << lost.message;
  EXPECT_NE(lost.message.find("'lost'"), std::string::npos) << lost.message;
  SlotHealth unreserved = CheckSlotWal("geosync", 2 << 20, 1 << 20, "unreserved");
  EXPECT_TRUE(unreserved.invalidated);
  EXPECT_TRUE(unreserved.near_limit);
  EXPECT_NE(unreserved.message.find("next checkpoint"), std::string::npos) << unreserved.message;
  EXPECT_FALSE(CheckSlotWal("geosync", 0, 1 << 20, "reserved").invalidated);
}

TEST(MetricsText, LabelValuesAreEscaped) {
  ReplicaSnapshot s = Replica();
  s.id.site = "a\"b\\c";
  EXPECT_NE(MetricsText(s).find("site=\"a\\\"b\\\\c\""), std::string::npos);
}

TEST(Topology, ParsesSitesAndRejectsUnknownKeys) {
  auto t = ParseTopology(
      R"({"cluster_id": "prod", "sites": [{"name": "frankfurt", "admin": "http://127.0.0.1:7451"}]})",
      "t.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->sites[0].admin, "http://127.0.0.1:7451");
  auto bad = ParseTopology(
      R"({"cluster_id": "prod", "sites": [{"name": "x", "admin": "http://h:1", "adimn": 1}]})",
      "t.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sites[0].adimn"), std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(ParseTopology(R"({"cluster_id": "prod", "sites": []})", "t.json").ok());
  EXPECT_FALSE(
      ParseTopology(R"({"cluster_id": "p", "sites": [{"name": "x", "admin": "ftp://h:1"}]})", "t")
          .ok());
}

// Found by tests/fuzz/config_fuzz, as for ParseConfig.
TEST(Topology, ANumberBeyondADoubleIsAnErrorNamingTheFile) {
  auto t = ParseTopology(R"({"cluster_id": 1e999, "sites": []})", "t.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kConfig);
  EXPECT_NE(t.status().message().find("topology t.json: not valid JSON"), std::string::npos)
      << t.status().message();
}

TEST(Table, UnreachableSiteIsARowWithItsError) {
  TopologySite f{"frankfurt", "http://127.0.0.1:1", ""};
  TopologySite d{"dublin", "http://127.0.0.1:2", ""};
  std::vector<StatusRow> rows = {RowFromStatus(d, StatusJson(Replica())),
                                 UnreachableRow(f, "connect: Connection refused")};
  std::string table = FormatTable(rows);
  EXPECT_NE(table.find("frankfurt"), std::string::npos);
  EXPECT_NE(table.find("unreachable"), std::string::npos);
  EXPECT_NE(table.find("connect: Connection refused"), std::string::npos);
  EXPECT_NE(table.find("16/B374D848"), std::string::npos) << table;
  auto json = RowsJson(rows);
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["applied_lsn"], "16/B3740000");
  EXPECT_EQ(json[0]["lag_seconds"], 0.25);
  EXPECT_EQ(json[1]["state"], "unreachable");
  EXPECT_EQ(json[1]["reachable"], false);
}

TEST(Table, MalformedStatusIsShownNotThrown) {
  TopologySite d{"dublin", "http://127.0.0.1:2", ""};
  StatusRow row = RowFromStatus(d, nlohmann::json{{"role", 5}});
  EXPECT_EQ(row.state, "invalid");
}

TEST(Route, HealthStatusAndMetricsAnswerGet) {
  AdminHandlers h;
  h.status = [] { return nlohmann::json{{"site", "x"}}; };
  h.metrics = [] { return std::string("geosync_epoch 1\n"); };
  h.ready = [] { return Readiness{false, "apply lag 75 s"}; };
  EXPECT_EQ(Route({"GET", "/healthz", ""}, h, "t").status, 200u);
  EXPECT_EQ(Route({"GET", "/status", ""}, h, "t").content_type, "application/json");
  auto ready = Route({"GET", "/readyz", ""}, h, "t");
  EXPECT_EQ(ready.status, 503u);
  EXPECT_EQ(ready.body, "apply lag 75 s\n");
  EXPECT_EQ(Route({"GET", "/nope", ""}, h, "t").status, 404u);
  EXPECT_EQ(Route({"POST", "/status", ""}, h, "t").status, 405u);
}

TEST(Route, AdminCallsNeedTheBearerTokenBeforeAnythingElse) {
  AdminHandlers h;
  QueryParams seen;
  h.actions["apply/skip"] = [&](const QueryParams& q) {
    seen = q;
    return HttpReply{200, "text/plain", "ok"};
  };
  EXPECT_EQ(Route({"POST", "/admin/apply/skip?xid=7", ""}, h, "s3cret").status, 401u);
  EXPECT_EQ(Route({"POST", "/admin/apply/skip?xid=7", "Bearer wrong!"}, h, "s3cret").status, 401u);
  EXPECT_EQ(Route({"POST", "/admin/unknown", ""}, h, "s3cret").status, 401u)
      << "paths are not revealed without a token";
  EXPECT_EQ(Route({"POST", "/admin/apply/skip?xid=7", "Bearer s3cret"}, h, "").status, 401u)
      << "no token file: admin calls disabled";
  EXPECT_EQ(Route({"POST", "/admin/unknown", "Bearer s3cret"}, h, "s3cret").status, 404u);
  EXPECT_EQ(Route({"POST", "/admin/apply/skip?xid=7", "Bearer s3cret"}, h, "s3cret").status, 200u);
  EXPECT_EQ(seen["xid"], "7");
}

// Dry runs check the token with an authenticated GET /status: a wrong token
// is refused, not answered with the anonymous view (issue #25).
TEST(Route, StatusWithAWrongTokenIs401AndWithoutOneIsAnonymous) {
  AdminHandlers h;
  h.status = [] { return nlohmann::json{{"site", "x"}}; };
  EXPECT_EQ(Route({"GET", "/status", "Bearer wrong"}, h, "s3cret").status, 401u);
  EXPECT_EQ(Route({"GET", "/readyz", "Bearer wrong"}, h, "s3cret").status, 401u);
  EXPECT_EQ(Route({"GET", "/status", "Bearer s3cret"}, h, "").status, 401u)
      << "a site without a token file holds no token to match";
  EXPECT_EQ(Route({"GET", "/status", "Bearer s3cret"}, h, "s3cret").status, 200u);
  EXPECT_EQ(Route({"GET", "/status", ""}, h, "s3cret").status, 200u) << "anonymous: redacted";
  EXPECT_EQ(Route({"GET", "/healthz", "Bearer wrong"}, h, "s3cret").status, 200u);
}

TEST(TxnDensity, CountsUnitsPerWalByteOverTheRecentWindowOnly) {
  TxnDensity d(2'000'000);
  EXPECT_FALSE(d.PerByte().has_value());
  // A bulk load: one unit of 10 MB, then a steady 1 unit per 500 bytes.
  d.Observe(Lsn(1'000), 10, 0);
  d.Observe(Lsn(10'001'000), 11, 100'000);
  uint64_t lsn = 10'001'000, units = 11;
  for (int64_t t = 200'000; t <= 5'000'000; t += 100'000) {
    lsn += 50'000;
    units += 100;
    d.Observe(Lsn(lsn), units, t);
  }
  ASSERT_TRUE(d.PerByte().has_value());
  EXPECT_NEAR(*d.PerByte(), 1.0 / 500, 1e-6) << "the bulk load left the window";
  // A new stream (lower LSN) starts over.
  d.Observe(Lsn(5), 0, 5'100'000);
  EXPECT_FALSE(d.PerByte().has_value());
}

TEST(TransactionsIn, RoundsAndCountsAnyWalWithTransactionsAsAtLeastOne) {
  EXPECT_EQ(TransactionsIn(std::nullopt, 0.01), std::nullopt);
  EXPECT_EQ(TransactionsIn(1000, std::nullopt), std::nullopt);
  EXPECT_EQ(TransactionsIn(0, 0.01), 0u);
  EXPECT_EQ(TransactionsIn(1000, 0.01), 10u);
  EXPECT_EQ(TransactionsIn(10, 0.01), 1u);
}

TEST(ParseQuery, DecodesPercentAndPlus) {
  auto q = ParseQuery("a=1&b=x%20y+z&c&&d=%zz");
  EXPECT_EQ(q["a"], "1");
  EXPECT_EQ(q["b"], "x y z");
  EXPECT_EQ(q["c"], "");
  EXPECT_EQ(q["d"], "%zz");
}

}  // namespace
}  // namespace geosync::admin
