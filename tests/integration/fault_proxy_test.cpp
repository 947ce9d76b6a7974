// The WAN fault proxy in front of a real PostgreSQL cluster: each fault is
// observed the way geosync would observe it, through libpq.
#include "tests/support/fault_proxy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include <chrono>
#include <future>

#include "tests/support/pg_cluster.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class FaultProxyTest : public PgClusterTest {
 protected:
  void SetUp() override {
    // The proxy tests do not care about site identity, so share one initdb.
    PgClusterOptions options;
    options.from_template = true;
    PgCluster& target = NewCluster("target", options);
    proxy_ = std::make_unique<FaultProxy>(target.port());
    Status st = proxy_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override {
    proxy_.reset();  // joins before the cluster goes away
    PgClusterTest::TearDown();
  }

  Result<PgConn> ConnectThroughProxy() {
    return PgConn::Connect(proxy_->ConnInfo("user=postgres dbname=postgres connect_timeout=5"));
  }

  // Milliseconds one query takes on `conn`; -1 when it failed.
  static int64_t TimeQuery(PgConn& conn, const std::string& sql) {
    auto t0 = Clock::now();
    auto r = conn.Exec(sql);
    if (!r.ok()) return -1;
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  }

  PgCluster& target() { return *clusters_.front(); }
  std::unique_ptr<FaultProxy> proxy_;
};

TEST_F(FaultProxyTest, QueryThroughProxyReachesTarget) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto port = conn->QueryValue("SELECT inet_server_port()");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(*port, std::to_string(target().port())) << "the proxy forwards to the target cluster";
  EXPECT_NE(proxy_->port(), target().port());
  EXPECT_GT(proxy_->BytesForwarded(Direction::kClientToServer), 0u);
  EXPECT_GT(proxy_->BytesForwarded(Direction::kServerToClient), 0u);
  EXPECT_EQ(proxy_->ConnectionsAccepted(), 1u);
  EXPECT_EQ(proxy_->ActiveConnections(), 1u);
}

TEST_F(FaultProxyTest, CutBreaksConnectionsUntilRestore) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(conn->Exec("SELECT 1").ok());

  proxy_->Cut();
  auto broken = conn->Exec("SELECT 1");
  ASSERT_FALSE(broken.ok()) << "an established connection breaks at the cut";
  EXPECT_TRUE(broken.status().retryable()) << broken.status().ToString();
  EXPECT_FALSE(ConnectThroughProxy().ok()) << "new connections fail while cut";
  EXPECT_TRUE(WaitFor([&] { return proxy_->ActiveConnections() == 0; }, 5s,
                      "the proxy to drop its sessions"));

  proxy_->Restore();
  auto healed = ConnectThroughProxy();
  ASSERT_TRUE(healed.ok()) << "connections work again after Restore: "
                           << healed.status().ToString();
  EXPECT_TRUE(healed->Exec("SELECT 1").ok());
}

TEST_F(FaultProxyTest, HangFreezesTrafficAndRestoreDeliversIt) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  proxy_->Cut(CutMode::kHang);
  auto answer = std::async(std::launch::async, [&] { return conn->QueryValue("SELECT 42"); });
  EXPECT_EQ(answer.wait_for(300ms), std::future_status::timeout) << "no reply crosses a hung link";
  proxy_->Restore();
  ASSERT_EQ(answer.wait_for(10s), std::future_status::ready);
  auto value = answer.get();
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(*value, "42") << "the held query is delivered intact once the link heals";
}

// The fastest of several round trips, so that one stall of a loaded 2-core
// box does not count as latency; a delay shows in every one of them.
TEST_F(FaultProxyTest, DelayAddsLatencyInEachDirection) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto fastest = [&](int n) {
    int64_t best = INT64_MAX;
    for (int i = 0; i < n; ++i) best = std::min(best, TimeQuery(*conn, "SELECT 1"));
    return best;
  };
  int64_t baseline = fastest(5);
  ASSERT_GE(baseline, 0);
  EXPECT_LT(baseline, 200) << "without delay a local round trip is fast";

  proxy_->SetDelay(200ms);
  int64_t delayed = fastest(3);
  EXPECT_GE(delayed, 400) << "200 ms each way makes a round trip take at least 400 ms";
  EXPECT_LT(delayed, 2000) << "the delay is added once per direction, not per byte";

  proxy_->SetDelay(0ms);
  EXPECT_LT(fastest(5), 200) << "SetDelay(0) removes the latency";
}

TEST_F(FaultProxyTest, BandwidthCapSlowsBigTransfer) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  const std::string big = "SELECT repeat('x', 400000)";
  int64_t uncapped = TimeQuery(*conn, big);
  ASSERT_GE(uncapped, 0);

  proxy_->SetBandwidth(400'000);  // bytes per second: the reply needs ~1 s
  int64_t capped = TimeQuery(*conn, big);
  ASSERT_GE(capped, 0) << "the transfer still completes under the cap";
  EXPECT_GE(capped, 800) << "400 kB at 400 kB/s takes about a second (uncapped: " << uncapped
                         << " ms)";
  EXPECT_GT(capped, uncapped + 500) << "the cap measurably slowed the transfer";
}

TEST_F(FaultProxyTest, CorruptedRequestByteMakesLibpqReportAnError) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  proxy_->CorruptNextBytes(Direction::kClientToServer, 1);
  auto r = conn->Exec("SELECT 1");
  ASSERT_FALSE(r.ok()) << "the server rejects a message with a flipped type byte";
  EXPECT_FALSE(r.status().message().empty());
}

TEST_F(FaultProxyTest, CorruptedReplyByteMakesLibpqReportAnError) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  proxy_->CorruptNextBytes(Direction::kServerToClient, 1);
  auto r = conn->Exec("SELECT 1");
  ASSERT_FALSE(r.ok()) << "libpq rejects a reply with a flipped type byte";
  EXPECT_FALSE(r.status().message().empty());
}

TEST_F(FaultProxyTest, StopWithOpenConnectionsJoinsAndClosesThem) {
  auto conn = ConnectThroughProxy();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  proxy_->SetDelay(500ms);
  auto t0 = Clock::now();
  proxy_->Stop();
  EXPECT_LT(Clock::now() - t0, 2s) << "Stop does not wait for delayed chunks";
  EXPECT_FALSE(conn->Exec("SELECT 1").ok()) << "connections through a stopped proxy are closed";
}

}  // namespace
}  // namespace geosync::testing
