// libpq wrappers: results and errors as values.
#include "agent/pg/pg_conn.h"

#include <regex>

#include <fmt/format.h>

namespace geosync {

std::optional<std::string> PgResult::GetOpt(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Get(row, col);
}

Status StatusFromPg(PGconn* conn, const PGresult* r, std::string_view context) {
  std::string sqlstate;
  std::string message;
  if (r != nullptr) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (s) sqlstate = s;
    const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char* d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    if (m) message = m;
    if (d) message += fmt::format(" ({})", d);
    if (message.empty()) message = PQresultErrorMessage(r);
  }
  if (message.empty() && conn) message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  if (sqlstate.empty() && conn && PQstatus(conn) != CONNECTION_OK) {
    sqlstate = "08006";  // connection failure
  }
  if (sqlstate.empty()) sqlstate = "XX000";
  return Status::Postgres(fmt::format("{}: {}", context, message), sqlstate);
}

std::string RedactConninfo(std::string_view conninfo) {
  static const std::regex kPassword(R"((password\s*=\s*)('([^'\\]|\\.)*'|\S+))", std::regex::icase);
  static const std::regex kUriPassword(R"((postgres(ql)?://[^:/@]*:)[^@]*@)", std::regex::icase);
  std::string s = std::regex_replace(std::string(conninfo), kPassword, "$1********");
  return std::regex_replace(s, kUriPassword, "$1********@");
}

Result<PgConn> PgConn::Connect(const std::string& conninfo) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  if (!conn.c_) return Status::Io("libpq could not allocate a connection");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn.get());
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::Postgres(
        fmt::format("cannot connect to PostgreSQL ({}): {}", RedactConninfo(conninfo), msg),
        "08001");
  }
  return conn;
}

Result<PgResult> PgConn::Exec(const std::string& sql) {
  PgResult r(PQexec(c_.get(), sql.c_str()));
  auto st = PQresultStatus(r.get());
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_BOTH ||
      st == PGRES_COPY_IN || st == PGRES_COPY_OUT) {
    return r;
  }
  return StatusFromPg(c_.get(), r.get(), fmt::format("query failed [{}]", sql.substr(0, 200)));
}

Result<PgResult> PgConn::ExecParams(const std::string& sql,
                                    const std::vector<std::optional<std::string>>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(c_.get(), sql.c_str(), static_cast<int>(params.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
  auto st = PQresultStatus(r.get());
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  return StatusFromPg(c_.get(), r.get(), fmt::format("query failed [{}]", sql.substr(0, 200)));
}

Result<std::string> PgConn::QueryValue(const std::string& sql) {
  GEOSYNC_ASSIGN_OR_RETURN(PgResult r, Exec(sql));
  if (r.rows() < 1 || r.cols() < 1) {
    return Status::NotFound(fmt::format("query returned no rows [{}]", sql.substr(0, 200)));
  }
  return r.Get(0, 0);
}

std::string PgConn::EscapeIdentifier(std::string_view ident) const {
  char* e = PQescapeIdentifier(c_.get(), ident.data(), ident.size());
  std::string out = e ? e : "";
  PQfreemem(e);
  return out;
}

std::string PgConn::EscapeLiteral(std::string_view value) const {
  char* e = PQescapeLiteral(c_.get(), value.data(), value.size());
  std::string out = e ? e : "";
  PQfreemem(e);
  return out;
}

}  // namespace geosync
