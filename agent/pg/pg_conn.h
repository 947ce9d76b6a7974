// RAII wrappers over libpq: PgConn owns a PGconn, PgResult a PGresult, and
// every libpq failure becomes a Status carrying the SQLSTATE. Blocking calls
// only: the event loop drives replication sockets itself (agent/source).
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace geosync {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r) {}
  PGresult* get() const { return r_.get(); }
  int rows() const { return PQntuples(r_.get()); }
  int cols() const { return PQnfields(r_.get()); }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col); }
  std::string Get(int row, int col) const { return PQgetvalue(r_.get(), row, col); }
  std::optional<std::string> GetOpt(int row, int col) const;

 private:
  std::unique_ptr<PGresult, PgResultDeleter> r_;
};

// Converts a failed PGresult (or a connection-level failure when `r` is null)
// into a Status with the SQLSTATE and the server's primary message.
Status StatusFromPg(PGconn* conn, const PGresult* r, std::string_view context);

// Removes password=... from a conninfo string so that it can be logged.
std::string RedactConninfo(std::string_view conninfo);

class PgConn {
 public:
  PgConn() = default;
  explicit PgConn(PGconn* c) : c_(c) {}

  // Connects with libpq's usual rules: the conninfo string plus PG*
  // environment variables and ~/.pgpass (or PGPASSFILE / passfile=).
  static Result<PgConn> Connect(const std::string& conninfo);

  PGconn* get() const { return c_.get(); }
  bool connected() const { return c_ && PQstatus(c_.get()) == CONNECTION_OK; }

  // Runs one or more SQL statements; the last result must be OK.
  Result<PgResult> Exec(const std::string& sql);
  // Runs one statement with text parameters ($1, $2...); nullopt is NULL.
  Result<PgResult> ExecParams(const std::string& sql,
                              const std::vector<std::optional<std::string>>& params);
  // First column of the first row, or NotFound.
  Result<std::string> QueryValue(const std::string& sql);

  std::string EscapeIdentifier(std::string_view ident) const;
  std::string EscapeLiteral(std::string_view value) const;

 private:
  std::unique_ptr<PGconn, PgConnDeleter> c_;
};

}  // namespace geosync
