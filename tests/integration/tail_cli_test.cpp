// `geosyncctl tail` against a real PostgreSQL 15: one JSON line per
// transaction, a temporary slot that disappears with the process, and a slot
// whose confirmed position moves only with --confirm.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"
#include "tests/support/wait.h"

namespace geosync::testing {
namespace {

using namespace std::chrono_literals;

class TailCliTest : public PgClusterTest {
 protected:
  void SetUp() override {
    PgClusterOptions o;
    o.from_template = true;
    pg_ = &NewCluster("primary", o);
    pg_->Exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
  }

  // Starts `geosyncctl tail` with `args`; with `wait_streaming`, waits until
  // it streams `slot` (a tail that has its --limit waiting exits at once).
  std::unique_ptr<ChildProcess> StartTail(const std::vector<std::string>& args,
                                          const std::string& slot, bool wait_streaming = true) {
    ProcessSpec spec;
    spec.argv = {BinaryPath("geosyncctl"), "tail", "--dsn", pg_->ConnInfo(), "--slot", slot};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.log_path = fmt::format("{}/tail-{}.log", pg_->Dir(), ++runs_);
    auto child = std::make_unique<ChildProcess>(spec);
    Status st = child->Start();
    if (!st.ok()) throw std::runtime_error(st.ToString());
    if (!wait_streaming) return child;
    WaitFor(
        [&] {
          return pg_->QueryValue(fmt::format("SELECT count(*) FROM pg_replication_slots WHERE "
                                             "slot_name = '{}' AND active",
                                             slot)) == "1";
        },
        30s, "geosyncctl tail streams slot " + slot);
    return child;
  }

  // Waits for a clean exit; returns the JSON lines it printed (logs, which go
  // to stderr in the same file, are skipped).
  std::vector<nlohmann::json> Finish(ChildProcess& tail) {
    auto code = tail.Wait(30s);
    EXPECT_TRUE(code.ok()) << "tail exits by itself after --limit: " << code.status().ToString();
    EXPECT_EQ(code.ok() ? *code : -1, 0) << tail.ReadLog();
    std::vector<nlohmann::json> out;
    std::istringstream in(tail.ReadLog());
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] == '{') out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

  std::string Confirmed(const std::string& slot) {
    return pg_->QueryValue(fmt::format(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'", slot));
  }

  PgCluster* pg_ = nullptr;
  int runs_ = 0;
};

TEST_F(TailCliTest, JsonPrintsOneLinePerTransactionAndTemporarySlotIsDropped) {
  auto tail = StartTail({"--temporary", "--format", "json", "--limit", "3"}, "tail_tmp");
  const auto before = std::chrono::system_clock::now();
  pg_->Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
  pg_->Exec("UPDATE t SET id = 3, v = 'c' WHERE id = 1");
  pg_->Exec(
      "BEGIN; DELETE FROM t WHERE id = 2; "
      "SELECT pg_logical_emit_message(true, 'test.m', 'hello'); COMMIT");
  auto lines = Finish(*tail);
  ASSERT_EQ(lines.size(), 3u) << "exactly --limit 3 lines, one per transaction";
  for (const auto& l : lines) {
    EXPECT_TRUE(Lsn::Parse(l["commit_lsn"].get<std::string>()).ok()) << l.dump();
    EXPECT_TRUE(Lsn::Parse(l["end_lsn"].get<std::string>()).ok()) << l.dump();
    EXPECT_THAT(l["commit_time"].get<std::string>(),
                ::testing::MatchesRegex(
                    R"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00)"));
    EXPECT_GT(l["xid"].get<uint32_t>(), 0u);
  }
  EXPECT_LT(Lsn::Parse(lines[0]["end_lsn"].get<std::string>()).value(),
            Lsn::Parse(lines[1]["end_lsn"].get<std::string>()).value())
      << "lines come in commit order";
  std::time_t now = std::chrono::system_clock::to_time_t(before);
  char year[8];
  std::strftime(year, sizeof year, "%Y", std::gmtime(&now));
  EXPECT_EQ(lines[0]["commit_time"].get<std::string>().substr(0, 4), year) << "a UTC timestamp";
  EXPECT_EQ(lines[0]["changes"], nlohmann::json::parse(R"([
              {"op":"insert","table":"public.t","new":{"id":"1","v":"a"}},
              {"op":"insert","table":"public.t","new":{"id":"2","v":"b"}}])"));
  EXPECT_EQ(lines[1]["changes"], nlohmann::json::parse(R"([
              {"op":"update","table":"public.t","key":{"id":"1","v":null},
               "new":{"id":"3","v":"c"}}])"));
  ASSERT_EQ(lines[2]["changes"].size(), 2u);
  EXPECT_EQ(
      lines[2]["changes"][0],
      nlohmann::json::parse(R"({"op":"delete","table":"public.t","key":{"id":"2","v":null}})"));
  EXPECT_EQ(lines[2]["changes"][1]["op"], "message");
  EXPECT_EQ(lines[2]["changes"][1]["prefix"], "test.m");
  EXPECT_EQ(lines[2]["changes"][1]["content"], "hello");
  EXPECT_TRUE(WaitFor(
      [&] {
        return pg_->QueryValue(
                   "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tail_tmp'") == "0";
      },
      10s, "the temporary slot is gone after tail exits"));
}

TEST_F(TailCliTest, WithoutConfirmTheSlotPositionDoesNotMove) {
  auto first = StartTail({"--format", "json", "--limit", "1"}, "tail_keep");
  const std::string created_at = Confirmed("tail_keep");
  pg_->Exec("INSERT INTO t VALUES (1, 'a')");
  ASSERT_EQ(Finish(*first).size(), 1u);
  pg_->Exec("INSERT INTO t VALUES (2, 'b')");
  pg_->Exec("INSERT INTO t VALUES (3, 'c')");
  EXPECT_EQ(Confirmed("tail_keep"), created_at) << "tail without --confirm confirmed nothing";

  auto again = StartTail({"--format", "json", "--limit", "3"}, "tail_keep", false);
  auto lines = Finish(*again);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["changes"][0]["new"]["id"], "1")
      << "the unconfirmed first transaction is delivered again";
  EXPECT_EQ(Confirmed("tail_keep"), created_at) << "still nothing confirmed";
}

// Regression: with --limit, tail stopped at the last transaction before any
// standby status update went out, so --confirm confirmed nothing.
TEST_F(TailCliTest, ConfirmWithLimitConfirmsThePrintedTransactionsBeforeExit) {
  auto first = StartTail({"--format", "json", "--limit", "3", "--confirm"}, "tail_keep");
  for (int i = 1; i <= 4; ++i) pg_->Exec(fmt::format("INSERT INTO t VALUES ({}, 'x')", i));
  auto lines = Finish(*first);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Confirmed("tail_keep"), lines[2]["end_lsn"].get<std::string>())
      << "--confirm confirmed up to the end of the last printed transaction, and no further";
  auto after = StartTail({"--format", "json", "--limit", "1"}, "tail_keep", false);
  lines = Finish(*after);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["changes"][0]["new"]["id"], "4")
      << "the next tail starts after the confirmed transactions";
}

}  // namespace
}  // namespace geosync::testing
