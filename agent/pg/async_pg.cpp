// AsyncPg: libpq's non-blocking API on top of Asio socket readiness waits.
#include "agent/pg/async_pg.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

namespace geosync {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

AsyncPg::~AsyncPg() { Close(); }

void AsyncPg::Close() {
  if (socket_) {
    // libpq owns the descriptor: release it so Asio does not close it.
    boost::system::error_code ec;
    socket_->cancel(ec);
    socket_->release();
    socket_.reset();
  }
  conn_ = PgConn();
}

Status AsyncPg::AttachSocket() {
  if (socket_) {
    socket_->release();
    socket_.reset();
  }
  int fd = PQsocket(conn_.get());
  if (fd < 0) return Status::Postgres("libpq has no socket", "08006");
  socket_.emplace(ex_, fd);
  return Status::Ok();
}

asio::awaitable<Status> AsyncPg::WaitReadable() {
  auto [ec] = co_await socket_->async_wait(asio::posix::stream_descriptor::wait_read,
                                           asio::as_tuple(use_awaitable));
  if (ec == asio::error::operation_aborted) co_return Status::Cancelled("wait cancelled");
  if (ec) co_return Status::Io(fmt::format("waiting on PostgreSQL socket: {}", ec.message()));
  co_return Status::Ok();
}

asio::awaitable<Status> AsyncPg::WaitWritable() {
  auto [ec] = co_await socket_->async_wait(asio::posix::stream_descriptor::wait_write,
                                           asio::as_tuple(use_awaitable));
  if (ec == asio::error::operation_aborted) co_return Status::Cancelled("wait cancelled");
  if (ec) co_return Status::Io(fmt::format("waiting on PostgreSQL socket: {}", ec.message()));
  co_return Status::Ok();
}

asio::awaitable<Status> AsyncPg::Connect(std::string conninfo, std::chrono::milliseconds timeout,
                                         bool replication, std::string options,
                                         std::string application_name) {
  Close();
  // Later keywords override what the expanded conninfo says.
  std::vector<const char*> keys = {"dbname"}, values = {conninfo.c_str()};
  if (replication) {
    keys.push_back("replication");
    values.push_back("database");
  }
  if (!options.empty()) {
    keys.push_back("options");
    values.push_back(options.c_str());
  }
  if (!application_name.empty()) {
    keys.push_back("application_name");
    values.push_back(application_name.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PgConn(PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1));
  if (!conn_.get()) co_return Status::Io("libpq could not allocate a connection");
  if (PQstatus(conn_.get()) == CONNECTION_BAD) {
    co_return StatusFromPg(
        conn_.get(), nullptr,
        fmt::format("cannot connect to PostgreSQL ({})", RedactConninfo(conninfo)));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) {
      co_return StatusFromPg(
          conn_.get(), nullptr,
          fmt::format("cannot connect to PostgreSQL ({})", RedactConninfo(conninfo)));
    }
    // The socket can change during connection (e.g. trying several hosts).
    GEOSYNC_RETURN_IF_ERROR_CO(AttachSocket());
    asio::steady_timer timer(ex_, deadline);
    // No conditional operator over awaitables here: GCC 12 miscompiles
    // coroutine temporaries in ?: (it destroyed a frame twice).
    std::variant<Status, std::tuple<boost::system::error_code>> waited;
    if (poll == PGRES_POLLING_READING) {
      waited = co_await (WaitReadable() || timer.async_wait(asio::as_tuple(use_awaitable)));
    } else {
      waited = co_await (WaitWritable() || timer.async_wait(asio::as_tuple(use_awaitable)));
    }
    if (waited.index() == 1) {
      Close();
      co_return Status::Timeout(fmt::format("connecting to PostgreSQL ({}) took over {} ms",
                                            RedactConninfo(conninfo), timeout.count()));
    }
    GEOSYNC_RETURN_IF_ERROR_CO(std::get<0>(waited));
    poll = PQconnectPoll(conn_.get());
  }
  if (PQsetnonblocking(conn_.get(), 1) != 0) {
    co_return StatusFromPg(conn_.get(), nullptr, "cannot make the connection non-blocking");
  }
  co_return AttachSocket();
}

asio::awaitable<Status> AsyncPg::Flush() {
  for (;;) {
    int r = PQflush(conn_.get());
    if (r == 0) co_return Status::Ok();
    if (r < 0) co_return StatusFromPg(conn_.get(), nullptr, "sending to PostgreSQL");
    GEOSYNC_RETURN_IF_ERROR_CO(co_await WaitWritable());
  }
}

asio::awaitable<Result<PgResult>> AsyncPg::Query(std::string sql) {
  if (!PQsendQuery(conn_.get(), sql.c_str())) {
    co_return StatusFromPg(conn_.get(), nullptr, fmt::format("sending [{}]", sql));
  }
  GEOSYNC_RETURN_IF_ERROR_CO(co_await Flush());
  PgResult last;
  Status error;
  for (;;) {
    while (PQisBusy(conn_.get())) {
      GEOSYNC_RETURN_IF_ERROR_CO(co_await WaitReadable());
      if (!PQconsumeInput(conn_.get())) {
        co_return StatusFromPg(conn_.get(), nullptr, fmt::format("running [{}]", sql));
      }
    }
    PGresult* r = PQgetResult(conn_.get());
    if (r == nullptr) break;
    PgResult res(r);
    auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && error.ok()) {
      error = StatusFromPg(conn_.get(), r, fmt::format("query failed [{}]", sql));
    }
    last = std::move(res);
  }
  if (!error.ok()) co_return error;
  co_return last;
}

asio::awaitable<Status> AsyncPg::StartCopy(std::string sql) {
  if (!PQsendQuery(conn_.get(), sql.c_str())) {
    co_return StatusFromPg(conn_.get(), nullptr, fmt::format("sending [{}]", sql));
  }
  GEOSYNC_RETURN_IF_ERROR_CO(co_await Flush());
  while (PQisBusy(conn_.get())) {
    GEOSYNC_RETURN_IF_ERROR_CO(co_await WaitReadable());
    if (!PQconsumeInput(conn_.get())) {
      co_return StatusFromPg(conn_.get(), nullptr, fmt::format("running [{}]", sql));
    }
  }
  PgResult res(PQgetResult(conn_.get()));
  auto st = PQresultStatus(res.get());
  if (st != PGRES_COPY_BOTH && st != PGRES_COPY_OUT) {
    co_return StatusFromPg(conn_.get(), res.get(), fmt::format("starting [{}]", sql));
  }
  co_return Status::Ok();
}

Result<std::optional<std::string>> AsyncPg::TryReadCopyData() {
  char* buf = nullptr;
  int n = PQgetCopyData(conn_.get(), &buf, 1);
  if (n > 0) {
    std::string out(buf, static_cast<size_t>(n));
    PQfreemem(buf);
    return std::optional<std::string>(std::move(out));
  }
  if (n == 0) return Status::NotFound("no data buffered");
  if (n == -1) {
    // COPY ended: collect the final result, which may carry an error.
    PgResult res(PQgetResult(conn_.get()));
    if (res.get() && PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      return StatusFromPg(conn_.get(), res.get(), "replication stream ended");
    }
    return std::optional<std::string>();
  }
  return StatusFromPg(conn_.get(), nullptr, "reading replication stream");
}

asio::awaitable<Result<std::optional<std::string>>> AsyncPg::ReadCopyData() {
  for (;;) {
    auto r = TryReadCopyData();
    if (r.ok() || r.status().code() != Code::kNotFound) co_return r;
    GEOSYNC_RETURN_IF_ERROR_CO(co_await WaitReadable());
    if (!PQconsumeInput(conn_.get())) {
      co_return StatusFromPg(conn_.get(), nullptr, "reading replication stream");
    }
  }
}

asio::awaitable<Status> AsyncPg::WriteCopyData(std::string_view bytes) {
  for (;;) {
    int r = PQputCopyData(conn_.get(), bytes.data(), static_cast<int>(bytes.size()));
    if (r == 1) break;
    if (r < 0) co_return StatusFromPg(conn_.get(), nullptr, "sending to PostgreSQL");
    GEOSYNC_RETURN_IF_ERROR_CO(co_await WaitWritable());
  }
  co_return co_await Flush();
}

}  // namespace geosync

namespace geosync {

asio::awaitable<Status> AsyncPg::WaitInput(std::chrono::milliseconds timeout) {
  asio::steady_timer timer(ex_, timeout);
  auto waited = co_await (WaitReadable() || timer.async_wait(asio::as_tuple(use_awaitable)));
  if (waited.index() == 0) {
    GEOSYNC_RETURN_IF_ERROR_CO(std::get<0>(waited));
    if (!PQconsumeInput(conn_.get())) {
      co_return StatusFromPg(conn_.get(), nullptr, "reading from PostgreSQL");
    }
  }
  co_return Status::Ok();
}

}  // namespace geosync
