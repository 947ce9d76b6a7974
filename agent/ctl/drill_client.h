// The stand-in application of a switchover drill (drill --switchover): a
// client writing through a multi-host DSN, and what its writes show.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "agent/pg/pg_conn.h"
#include "common/status.h"

namespace geosync::ctl {

using Clock = std::chrono::steady_clock;
inline constexpr auto kWriteInterval = std::chrono::milliseconds(20);

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The DSN must make libpq find the writable site by itself.
Status CheckClientDsn(const std::string& dsn);

// The application stand-in: one write every 20 ms, through the multi-host
// DSN, recording when each was acknowledged and by which server.
class WriteClient {
 public:
  struct Write {
    double t;  // seconds since the drill started, when the commit returned
    int64_t id;
    std::string server;  // host:port that acknowledged it
  };

  WriteClient(std::string dsn, std::string table, Clock::time_point t0)
      : dsn_(std::move(dsn)), table_(std::move(table)), t0_(t0) {
    // Unique across drills: seconds since the Unix epoch, then a counter.
    next_id_ = static_cast<int64_t>(std::time(nullptr)) * 1'000'000;
  }
  ~WriteClient() { Stop(); }

  Status CreateTable() {
    auto conn = PgConn::Connect(dsn_);
    if (!conn.ok()) return conn.status().WithContext("--client-dsn");
    return conn
        ->Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, written_at "
                           "timestamptz NOT NULL DEFAULT now(), server text NOT NULL)",
                           conn->EscapeIdentifier(table_)))
        .status()
        .WithContext("creating the drill's client table " + table_);
  }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::vector<Write> writes() const {
    std::lock_guard lock(mu_);
    return writes_;
  }
  uint64_t failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }
  std::string last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
  }
  // Waits until a write is acknowledged after `t` (drill seconds).
  bool WaitWriteAfter(double t, Clock::time_point deadline) const {
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (!writes_.empty() && writes_.back().t > t) return true;
      }
      std::this_thread::sleep_for(kWriteInterval);
    }
    return false;
  }

 private:
  void Loop() {
    std::optional<PgConn> conn;
    std::string insert;
    while (!stop_) {
      const auto next = Clock::now() + kWriteInterval;
      if (!conn) {
        auto c = PgConn::Connect(dsn_);
        if (c.ok()) {
          conn = std::move(c).value();
          insert = fmt::format("INSERT INTO {} (id, server) VALUES ($1, $2)",
                               conn->EscapeIdentifier(table_));
        } else {
          Failed(c.status());
        }
      }
      if (conn) {
        const int64_t id = next_id_;
        const std::string server =
            fmt::format("{}:{}", PQhost(conn->get()) ? PQhost(conn->get()) : "?",
                        PQport(conn->get()) ? PQport(conn->get()) : "?");
        auto r = conn->ExecParams(insert, {std::to_string(id), server});
        if (r.ok()) {
          ++next_id_;
          std::lock_guard lock(mu_);
          writes_.push_back({Seconds(Clock::now() - t0_), id, server});
        } else {
          Failed(r.status());
          conn.reset();  // reconnect: libpq picks the writable host again
        }
      }
      std::this_thread::sleep_until(next);
    }
  }
  void Failed(const Status& st) {
    std::lock_guard lock(mu_);
    failures_++;
    last_error_ = st.ToString();
  }

  const std::string dsn_, table_;
  const Clock::time_point t0_;
  int64_t next_id_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Write> writes_;
  uint64_t failures_ = 0;
  std::string last_error_;
};

// The longest gap between consecutive acknowledged writes that overlaps
// [from, to] (drill seconds): how long a writing client saw no write
// succeed around a switchover.
double LongestGap(const std::vector<WriteClient::Write>& writes, double from, double to);

// How many of `ids` the table on the writable site lacks.
Result<int64_t> Missing(const std::string& dsn, const std::string& table,
                        const std::vector<int64_t>& ids);

}  // namespace geosync::ctl
