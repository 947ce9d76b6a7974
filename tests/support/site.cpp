// GeoSite: geosyncd under test; CompareTables: row-by-row table comparison.
#include "tests/support/site.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "tests/support/ports.h"
#include "tests/support/test_env.h"

namespace geosync::testing {

uint16_t FreeTcpPort() { return ClaimTcpPort(); }

void WriteTokenFile(const std::string& path, const std::string& token) {
  std::filesystem::remove(path);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create token file " + path);
  std::string line = token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write token file " + path);
}

std::string TestToken(const std::string& name) {
  std::string token = name + "-";
  while (token.size() < 64) token += "0123456789abcdef";
  return token.substr(0, 64);
}

GeoSite::GeoSite(SiteSpec spec) : spec_(std::move(spec)) {
  char tmpl[] = "/tmp/geosync-site-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  nlohmann::json c = {
      {"cluster_id", spec_.cluster_id},
      {"site", spec_.name},
      {"role", spec_.source ? "source" : "replica"},
      {"state_dir", dir_ + "/state"},
      {"postgres", {{"dsn", spec_.dsn}}},
      {"spool", {{"dir", dir_ + "/spool"}, {"segment_mb", 4}}},
      {"heartbeat_ms", 200},
      {"peer_timeout_ms", 3000},
      {"log", {{"level", "info"}}},
  };
  if (spec_.source) {
    c["listen"] = {{"host", "127.0.0.1"}, {"port", spec_.listen_port}};
    c["sites"] = spec_.sites;
  } else {
    c["upstream"] = {{"host", "127.0.0.1"}, {"port", spec_.upstream_port}};
  }
  c.merge_patch(spec_.extra);
  config_path_ = dir_ + "/" + spec_.name + ".json";
  std::ofstream(config_path_) << c.dump(2);
  ProcessSpec ps;
  ps.argv = {BinaryPath("geosyncd"), "--config", config_path_};
  ps.log_path = dir_ + "/geosyncd.log";
  ps.cpu = spec_.cpu;
  process_ = std::make_unique<ChildProcess>(ps);
}

GeoSite::~GeoSite() {
  if (process_ && process_->IsRunning()) (void)process_->Kill9();
  process_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Status GeoSite::Start() {
  if (spec_.init && !initialised_) {
    // Best effort: a test of an unreachable PostgreSQL expects geosyncd's
    // own error, which it still gets.
    ProcessSpec init;
    init.argv = {BinaryPath("geosyncctl"), "init", "--dsn", spec_.dsn};
    auto out = RunProgram(init, std::chrono::seconds(60));
    initialised_ = out.ok() && out->exit_status == 0;
  }
  return process_->Start();
}
Status GeoSite::Kill9() { return process_->Kill9(); }
bool GeoSite::IsRunning() { return process_->IsRunning(); }
pid_t GeoSite::Pid() const { return process_->Pid(); }
Result<ExitStatus> GeoSite::WaitExit(std::chrono::milliseconds deadline) {
  return process_->Wait(deadline);
}

Status GeoSite::Stop() {
  GEOSYNC_RETURN_IF_ERROR(process_->Kill(SIGTERM));
  auto r = process_->Wait(std::chrono::seconds(20));
  return r.status();
}

std::string GeoSite::ReadLog() const { return process_->ReadLog(); }

void GeoSite::DumpLog() const {
  std::cerr << "----- geosyncd " << spec_.name << " log -----\n"
            << ReadLog() << "----- end of " << spec_.name << " log -----\n";
}

Lsn AppliedLsn(PgCluster& replica) {
  std::string v = replica.QueryValue(
      "SELECT coalesce(max(remote_lsn), '0/0') FROM pg_replication_origin_status s "
      "JOIN pg_replication_origin o ON o.roident = s.local_id WHERE o.roname LIKE 'geosync%'");
  auto lsn = Lsn::Parse(v);
  return lsn.ok() ? *lsn : Lsn();
}

Lsn AppliedLsnAt(PgCluster& replica, uint64_t epoch) {
  std::string v = replica.QueryValue(fmt::format(
      "SELECT coalesce(max(remote_lsn), '0/0') FROM pg_replication_origin_status s "
      "JOIN pg_replication_origin o ON o.roident = s.local_id WHERE o.roname ~ '^geosync.*_e{}$'",
      epoch));
  auto lsn = Lsn::Parse(v);
  return lsn.ok() ? *lsn : Lsn();
}

std::vector<std::string> UserTables(PgCluster& cluster, const std::string& dbname) {
  PgResult r = cluster.Exec(
      "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON "
      "n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN "
      "('pg_catalog','information_schema','geosync','_geosync') AND n.nspname NOT LIKE 'pg_toast%' "
      "AND NOT c.relispartition AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
      "'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1",
      dbname);
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Get(i, 0));
  return out;
}

std::string ErrorOf(PgCluster& pg, const std::string& sql, const std::string& conninfo) {
  auto conn = PgConn::Connect(pg.ConnInfo() + " " + conninfo);
  if (!conn.ok()) return "connect: " + conn.status().ToString();
  auto r = conn->Exec(sql);
  return r.ok() ? "" : r.status().ToString();
}

namespace {

// User relations: not a system schema, not geosync's, not an extension's.
constexpr const char* kUserRelation =
    "n.nspname NOT IN ('pg_catalog','information_schema','geosync','_geosync') AND n.nspname NOT "
    "LIKE 'pg_toast%' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
    "'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

// The user sequences' rows of pg_sequences.
constexpr const char* kUserSequences =
    "SELECT q.* FROM pg_sequences q JOIN pg_namespace n ON n.nspname = q.schemaname JOIN "
    "pg_class c ON c.relnamespace = n.oid AND c.relname = q.sequencename WHERE "
    "n.nspname NOT IN ('pg_catalog','information_schema','geosync','_geosync') AND NOT EXISTS "
    "(SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND "
    "d.deptype = 'e')";

std::vector<std::string> Column0(PgCluster& cluster, const std::string& sql,
                                 const std::string& dbname) {
  PgResult r = cluster.Exec(sql, dbname);
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Get(i, 0));
  return out;
}

}  // namespace

std::vector<std::string> SchemaFingerprint(PgCluster& cluster, const std::string& dbname) {
  const std::string tables = fmt::format(
      "SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN "
      "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND {}",
      kUserRelation);
  std::vector<std::string> lines = Column0(
      cluster,
      fmt::format("WITH t AS ({}) SELECT format('table %s columns (%s)', t.name, "
                  "string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, "
                  "a.atttypmod), CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, "
                  "coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')), ', ' ORDER "
                  "BY a.attnum)) FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum "
                  "> 0 AND NOT a.attisdropped LEFT JOIN pg_attrdef ad ON ad.adrelid = t.oid AND "
                  "ad.adnum = a.attnum GROUP BY t.name "
                  "UNION ALL SELECT format('index %s', pg_get_indexdef(i.indexrelid)) FROM t "
                  "JOIN pg_index i ON i.indrelid = t.oid "
                  "UNION ALL SELECT format('constraint %s %I %s', t.name, k.conname, "
                  "pg_get_constraintdef(k.oid)) FROM t JOIN pg_constraint k ON k.conrelid = t.oid "
                  "UNION ALL SELECT format('sequence %I.%I %s start %s min %s max %s increment "
                  "%s cycle %s cache %s', schemaname, sequencename, data_type, start_value, "
                  "min_value, max_value, increment_by, cycle, cache_size) FROM ({}) s "
                  "ORDER BY 1",
                  tables, kUserSequences),
      dbname);
  std::sort(lines.begin(), lines.end());  // byte order, for std::set_difference
  return lines;
}

std::string CompareSequenceValues(PgCluster& a, PgCluster& b, const std::string& dbname) {
  const std::string sql = fmt::format(
      "SELECT format('%I.%I = %s', schemaname, sequencename, coalesce(last_value::text, "
      "'unset')) FROM ({}) s ORDER BY 1",
      kUserSequences);
  auto va = Column0(a, sql, dbname), vb = Column0(b, sql, dbname);
  if (va == vb) return "";
  return fmt::format("sequence values differ: {} has [{}], {} has [{}]", a.name(),
                     fmt::join(va, ", "), b.name(), fmt::join(vb, ", "));
}

std::string WaitSequencesEqual(PgCluster& a, PgCluster& b, std::chrono::milliseconds deadline,
                               const std::string& dbname) {
  std::string diff;
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    diff = CompareSequenceValues(a, b, dbname);
    if (diff.empty() || std::chrono::steady_clock::now() >= until) return diff;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a poll, with a deadline
  }
}

std::string CompareTables(PgCluster& a, PgCluster& b, const std::string& dbname) {
  auto fa = SchemaFingerprint(a, dbname), fb = SchemaFingerprint(b, dbname);
  if (fa != fb) {
    // The first line that only one side has, from each side.
    std::vector<std::string> only_a, only_b;
    std::set_difference(fa.begin(), fa.end(), fb.begin(), fb.end(), std::back_inserter(only_a));
    std::set_difference(fb.begin(), fb.end(), fa.begin(), fa.end(), std::back_inserter(only_b));
    return fmt::format("schemas differ: only {} has [{}]; only {} has [{}]", a.name(),
                       fmt::join(only_a, "; "), b.name(), fmt::join(only_b, "; "));
  }
  auto ta = UserTables(a, dbname), tb = UserTables(b, dbname);
  if (ta != tb) {
    return fmt::format("table lists differ: {} has [{}], {} has [{}]", a.name(),
                       fmt::join(ta, ", "), b.name(), fmt::join(tb, ", "));
  }
  for (const auto& table : ta) {
    std::string sql = fmt::format("SELECT t::text FROM {} t ORDER BY 1", table);
    PgResult ra = a.Exec(sql, dbname), rb = b.Exec(sql, dbname);
    int n = std::min(ra.rows(), rb.rows());
    for (int i = 0; i < n; ++i) {
      if (ra.Get(i, 0) != rb.Get(i, 0)) {
        return fmt::format("{}: row {} differs: {} has {}, {} has {}", table, i, a.name(),
                           ra.Get(i, 0), b.name(), rb.Get(i, 0));
      }
    }
    if (ra.rows() != rb.rows()) {
      return fmt::format("{}: {} has {} rows, {} has {}", table, a.name(), ra.rows(), b.name(),
                         rb.rows());
    }
  }
  return "";
}

}  // namespace geosync::testing
