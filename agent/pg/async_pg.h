// A libpq connection driven by the Asio event loop: connect, queries and
// COPY streaming run through PQconnectPoll / PQsendQuery / PQconsumeInput /
// PQgetCopyData in async mode, waiting on the socket instead of blocking.
// Used for the replication connection, which must never stall the loop.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "agent/pg/pg_conn.h"
#include "common/status.h"

namespace geosync {

namespace asio = boost::asio;

class AsyncPg {
 public:
  explicit AsyncPg(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  ~AsyncPg();
  AsyncPg(const AsyncPg&) = delete;
  AsyncPg& operator=(const AsyncPg&) = delete;

  // Connects without blocking; gives up after `timeout`. `conninfo` may be
  // a keyword string or a URI; with `replication`, replication=database is
  // added (a walsender connection that also accepts SQL).
  asio::awaitable<Status> Connect(std::string conninfo, std::chrono::milliseconds timeout,
                                  bool replication = false, std::string options = "",
                                  std::string application_name = "");
  // Runs one statement; returns its last result (or the error, with SQLSTATE).
  asio::awaitable<Result<PgResult>> Query(std::string sql);
  // Starts a command that enters COPY BOTH/OUT (START_REPLICATION).
  asio::awaitable<Status> StartCopy(std::string sql);
  // Next CopyData message. nullopt when the server ended the COPY; an error
  // when the connection broke.
  asio::awaitable<Result<std::optional<std::string>>> ReadCopyData();
  // Whether a CopyData message can be read right now without waiting.
  Result<std::optional<std::string>> TryReadCopyData();
  // Queues a CopyData message and flushes it without blocking.
  asio::awaitable<Status> WriteCopyData(std::string_view bytes);
  // Waits until the socket is readable (then consumes input) or `timeout`
  // passes; OK in both cases, an error only if the connection broke.
  asio::awaitable<Status> WaitInput(std::chrono::milliseconds timeout);
  void Close();
  PGconn* raw() const { return conn_.get(); }
  bool connected() const { return conn_.connected(); }

 private:
  asio::awaitable<Status> WaitReadable();
  asio::awaitable<Status> WaitWritable();
  asio::awaitable<Status> Flush();
  Status AttachSocket();

  asio::any_io_executor ex_;
  PgConn conn_;
  std::optional<asio::posix::stream_descriptor> socket_;
};

}  // namespace geosync
