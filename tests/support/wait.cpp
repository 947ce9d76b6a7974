// Deadline-bounded polling on facts.
#include "tests/support/wait.h"

#include <gtest/gtest.h>

#include <exception>
#include <thread>

#include <fmt/format.h>

#include "tests/support/pg_cluster.h"

namespace geosync::testing {
namespace {

using Clock = std::chrono::steady_clock;

void Fail(const std::source_location& where, const std::string& message) {
  ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line())) << message;
}

// Reads an LSN with `lsn_query`; nullopt for NULL. Throws on a query error so
// that Poll() records the message.
std::optional<Lsn> QueryLsn(PgConn& conn, const std::string& lsn_query) {
  auto r = conn.Exec(lsn_query);
  if (!r.ok()) throw std::runtime_error(r.status().ToString());
  if (r->rows() < 1 || r->cols() < 1) {
    throw std::runtime_error(fmt::format("[{}] returned no row", lsn_query));
  }
  if (r->IsNull(0, 0)) return std::nullopt;
  auto lsn = Lsn::Parse(r->Get(0, 0));
  if (!lsn.ok()) throw std::runtime_error(lsn.status().ToString());
  return *lsn;
}

bool WaitForLsnWith(const std::function<PgConn&()>& conn, const std::string& lsn_query, Lsn target,
                    std::chrono::milliseconds deadline, const std::source_location& where) {
  std::string last = "nothing yet";
  Status st = Poll(
      [&] {
        std::optional<Lsn> lsn = QueryLsn(conn(), lsn_query);
        last = lsn ? lsn->ToString() : "NULL";
        return lsn && *lsn >= target;
      },
      deadline, fmt::format("[{}] to reach {}", lsn_query, target.ToString()));
  if (!st.ok()) Fail(where, fmt::format("{}; last value seen: {}", st.message(), last));
  return st.ok();
}

}  // namespace

Status Poll(const std::function<bool()>& condition, std::chrono::milliseconds deadline,
            const std::string& what) {
  const auto start = Clock::now();
  auto pause = std::chrono::milliseconds(5);
  std::string last_error;
  while (true) {
    try {
      if (condition()) return Status::Ok();
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    auto elapsed = Clock::now() - start;
    if (elapsed >= deadline) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
      std::string message = fmt::format("timed out after {} ms waiting for: {}", ms, what);
      if (!last_error.empty()) message += fmt::format(" (last error: {})", last_error);
      return Status::Timeout(message);
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(pause, deadline - elapsed + std::chrono::milliseconds(1)));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds deadline,
             const std::string& what, std::source_location where) {
  Status st = Poll(condition, deadline, what);
  if (!st.ok()) Fail(where, st.message());
  return st.ok();
}

bool WaitForLsn(PgConn& conn, const std::string& lsn_query, Lsn target,
                std::chrono::milliseconds deadline, std::source_location where) {
  return WaitForLsnWith([&]() -> PgConn& { return conn; }, lsn_query, target, deadline, where);
}

bool WaitForLsn(PgCluster& cluster, const std::string& lsn_query, Lsn target,
                std::chrono::milliseconds deadline, std::source_location where) {
  PgConn conn;
  auto connection = [&]() -> PgConn& {
    if (!conn.connected()) {
      auto c = PgConn::Connect(cluster.ConnInfo());
      if (!c.ok()) throw std::runtime_error(c.status().ToString());
      conn = std::move(*c);
    }
    return conn;
  };
  return WaitForLsnWith(connection, lsn_query, target, deadline, where);
}

}  // namespace geosync::testing
