// The drill's writing client (drill_client.h).
#include "agent/ctl/drill_client.h"

#include <algorithm>

namespace geosync::ctl {

Status CheckClientDsn(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    Status st =
        Status::Config(fmt::format("--client-dsn does not parse: {}", err ? err : "out of memory"));
    PQfreemem(err);
    return st;
  }
  std::string attrs, host;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string_view(o->keyword) == "target_session_attrs") attrs = o->val;
    if (std::string_view(o->keyword) == "host" || std::string_view(o->keyword) == "hostaddr") {
      host = o->val;
    }
  }
  PQconninfoFree(opts);
  if (attrs != "read-write" && attrs != "primary") {
    return Status::Config(
        "--client-dsn must set target_session_attrs=read-write (or primary) and list every "
        "site's PostgreSQL, as an application that survives a switchover does: "
        "\"host=a,b port=5432,5432 dbname=app target_session_attrs=read-write\"");
  }
  if (host.find(',') == std::string::npos) {
    return Status::Config("--client-dsn names one host: list every site's PostgreSQL");
  }
  return Status::Ok();
}

// The longest gap between consecutive acknowledged writes that overlaps
// [from, to] (drill seconds): how long a writing client saw no write
// succeed around a switchover.
double LongestGap(const std::vector<WriteClient::Write>& writes, double from, double to) {
  double longest = 0;
  for (size_t i = 1; i < writes.size(); ++i) {
    const double a = writes[i - 1].t, b = writes[i].t;
    if (b < from || a > to) continue;
    longest = std::max(longest, b - a);
  }
  return longest;
}

// How many of `ids` the table on the writable site lacks.
Result<int64_t> Missing(const std::string& dsn, const std::string& table,
                        const std::vector<int64_t>& ids) {
  auto conn = PgConn::Connect(dsn);
  if (!conn.ok()) return conn.status().WithContext("--client-dsn");
  std::string array = "{";
  for (size_t i = 0; i < ids.size(); ++i) array += (i ? "," : "") + std::to_string(ids[i]);
  array += "}";
  auto found = conn->ExecParams(fmt::format("SELECT count(*) FROM {} WHERE id = ANY($1::bigint[])",
                                            conn->EscapeIdentifier(table)),
                                {array});
  if (!found.ok()) return found.status();
  return static_cast<int64_t>(ids.size()) - std::stoll(found->Get(0, 0));
}

}  // namespace geosync::ctl
