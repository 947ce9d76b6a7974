// Site config loading: parse with nlohmann_json, then read every key through
// JsonReader so that unknown keys, wrong types and missing keys are reported
// with the file and the dotted key path.
#include "common/config.h"
#include "common/handshake.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/json_reader.h"

namespace geosync {
namespace {

// `site`, when given, also reads an optional "site" key (upstream: the
// name the source's certificate must carry).
void ReadEndpoint(JsonReader& parent, const std::string& key, std::optional<Endpoint>* out,
                  bool required = false, std::string* site = nullptr) {
  const auto* obj = parent.Object(key, required);
  if (!obj) return;
  JsonReader r = parent.Child(*obj, key);
  Endpoint ep;
  int64_t port = 0;
  r.String("host", &ep.host, true);
  r.Int("port", 0, 65535, &port, true);
  if (site) {
    r.String("site", site);
    if (r.Has("site") && site->empty())
      r.AddError(fmt::format("key '{}' must not be empty", r.Path("site")));
  }
  ep.port = static_cast<uint16_t>(port);
  r.CheckNoUnknownKeys();
  *out = ep;
}

void ReadPostgres(JsonReader& root, PostgresConfig* pg) {
  const auto* obj = root.Object("postgres", true);
  if (!obj) return;
  JsonReader r = root.Child(*obj, "postgres");
  r.String("dsn", &pg->dsn, true);
  r.String("slot", &pg->slot);
  r.String("publication", &pg->publication);
  r.StringList("tables", &pg->tables);
  r.Bool("streaming", &pg->streaming);
  r.Bool("binary", &pg->binary);
  r.CheckNoUnknownKeys();
}

void ReadSpool(JsonReader& root, SpoolConfig* spool) {
  const auto* obj = root.Object("spool", true);
  if (!obj) return;
  JsonReader r = root.Child(*obj, "spool");
  int64_t seg_mb = static_cast<int64_t>(spool->segment_bytes >> 20), max_mb = 0;
  int64_t keep_mb = static_cast<int64_t>(spool->keep_applied_bytes >> 20);
  r.String("dir", &spool->dir, true);
  r.Int("segment_mb", 1, 4096, &seg_mb);
  r.Int("max_mb", 0, int64_t{1} << 40, &max_mb);
  r.Int("keep_applied_mb", 1, int64_t{1} << 40, &keep_mb);
  spool->segment_bytes = static_cast<uint64_t>(seg_mb) << 20;
  spool->max_bytes = static_cast<uint64_t>(max_mb) << 20;
  spool->keep_applied_bytes = static_cast<uint64_t>(keep_mb) << 20;
  r.CheckNoUnknownKeys();
}

void ReadTls(JsonReader& root, TlsConfig* tls) {
  const auto* obj = root.Object("tls");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "tls");
  r.Bool("enabled", &tls->enabled, true);
  bool need = tls->enabled;
  r.String("ca_file", &tls->ca_file, need);
  r.String("cert_file", &tls->cert_file, need);
  r.String("key_file", &tls->key_file, need);
  r.CheckNoUnknownKeys();
}

void ReadCommit(JsonReader& root, SyncConfig* commit) {
  const auto* obj = root.Object("commit");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "commit");
  std::string policy = "async";
  int64_t quorum = commit->quorum;
  r.Enum("policy", {"async", "sync"}, &policy);
  r.StringList("sync_sites", &commit->sites);
  r.Int("quorum", 1, 64, &quorum);
  commit->policy = policy == "sync" ? CommitPolicy::kSync : CommitPolicy::kAsync;
  commit->quorum = static_cast<int>(quorum);
  if (commit->policy == CommitPolicy::kSync &&
      static_cast<size_t>(commit->quorum) > commit->sites.size()) {
    r.AddError(fmt::format("key 'commit.quorum' is {} but 'commit.sync_sites' names only {}",
                           commit->quorum, commit->sites.size()));
  }
  r.CheckNoUnknownKeys();
}

void ReadApply(JsonReader& root, ApplyConfig* apply) {
  const auto* obj = root.Object("apply");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "apply");
  int64_t txns = apply->batch_max_txns, ms = apply->batch_max_ms;
  int64_t mb = static_cast<int64_t>(apply->batch_max_bytes >> 20);
  r.Int("batch_max_txns", 1, 1000000, &txns);
  r.Int("batch_max_mb", 1, 1024, &mb);
  r.Int("batch_max_ms", 0, 60000, &ms);
  r.Bool("synchronous_commit", &apply->synchronous_commit);
  r.Bool("collapse", &apply->collapse);
  int64_t rows = apply->rows_per_statement;
  r.Int("rows_per_statement", 1, 4096, &rows);
  apply->rows_per_statement = static_cast<int>(rows);
  int64_t workers = apply->workers;
  r.Int("workers", 0, 64, &workers);
  apply->workers = static_cast<int>(workers);
  apply->batch_max_txns = static_cast<int>(txns);
  apply->batch_max_ms = static_cast<int>(ms);
  apply->batch_max_bytes = static_cast<uint64_t>(mb) << 20;
  r.CheckNoUnknownKeys();
}

void ReadAdminTls(JsonReader& admin, AdminTlsConfig* tls) {
  const auto* obj = admin.Object("tls");
  if (!obj) return;
  JsonReader r = admin.Child(*obj, "tls");
  r.Bool("enabled", &tls->enabled, true);
  r.Bool("require_client_cert", &tls->require_client_cert);
  r.String("cert_file", &tls->cert_file, tls->enabled);
  r.String("key_file", &tls->key_file, tls->enabled);
  r.String("ca_file", &tls->ca_file, tls->enabled && tls->require_client_cert);
  r.CheckNoUnknownKeys();
}

void ReadAdmin(JsonReader& root, AdminConfig* admin) {
  const auto* obj = root.Object("admin");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "admin");
  ReadEndpoint(r, "listen", &admin->listen);
  r.String("token_file", &admin->token_file);
  int64_t max_lag = admin->ready_max_lag_s;
  r.Int("ready_max_lag_s", 1, 86400, &max_lag);
  admin->ready_max_lag_s = static_cast<int>(max_lag);
  ReadAdminTls(r, &admin->tls);
  r.Bool("allow_plaintext", &admin->allow_plaintext);
  r.CheckNoUnknownKeys();
}

void ReadSeed(JsonReader& root, SeedConfig* seed) {
  const auto* obj = root.Object("seed");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "seed");
  int64_t workers = seed->workers;
  int64_t chunk_mb = static_cast<int64_t>(seed->chunk_bytes >> 20);
  r.Int("workers", 1, 64, &workers);
  r.Bool("auto", &seed->auto_seed);
  r.Int("chunk_mb", 1, 4096, &chunk_mb);
  seed->workers = static_cast<int>(workers);
  seed->chunk_bytes = static_cast<uint64_t>(chunk_mb) << 20;
  r.CheckNoUnknownKeys();
}

void ReadLog(JsonReader& root, LogOptions* log) {
  const auto* obj = root.Object("log");
  if (!obj) return;
  JsonReader r = root.Child(*obj, "log");
  r.Enum("level", {"trace", "debug", "info", "warn", "error", "critical", "off"}, &log->level);
  r.Bool("json", &log->json);
  r.CheckNoUnknownKeys();
}

// Plain HTTP carries the bearer token and /status in clear text: off
// loopback it needs admin.tls, or an explicit admin.allow_plaintext.
void CheckAdminTransport(JsonReader& r, const Config& c) {
  const AdminConfig& a = c.admin;
  if (!a.listen || a.tls.enabled || a.allow_plaintext || IsLoopbackHost(a.listen->host)) return;
  r.AddError(fmt::format(
      "key 'admin.listen' is {}, not a loopback address, and admin.tls is not enabled: the "
      "admin API would send its bearer token and /status in clear text. Enable 'admin.tls' "
      "(docs/security.md), listen on 127.0.0.1, or set 'admin.allow_plaintext': true",
      a.listen->host));
}

void CheckRoleEndpoints(JsonReader& r, Config& c) {
  if (c.role == Role::kSource && !c.listen) {
    r.AddError("role \"source\" needs key 'listen' (where replica sites connect)");
  }
  if (c.role == Role::kReplica && !c.upstream) {
    r.AddError("role \"replica\" needs key 'upstream' (the source site to connect to)");
  }
  if (c.site.empty() && r.Has("site")) r.AddError("key 'site' must not be empty");
  if (c.cluster_id.empty() && r.Has("cluster_id")) {
    r.AddError("key 'cluster_id' must not be empty");
  }
}

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  return host == "localhost" || IsLoopbackAddress(host);
}

Result<Config> ParseConfig(std::string_view json_text, const std::string& path) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double (found by
    // tests/fuzz/config_fuzz: it escaped and terminated the process).
    return Status::Config(fmt::format("config {}: not valid JSON: {}", path, e.what()));
  }
  if (!doc.is_object()) {
    return Status::Config(fmt::format("config {}: expected a JSON object at the top, found {}",
                                      path, DescribeJson(doc)));
  }
  Config c;
  c.path = path;
  JsonReader r(doc, path);
  std::string role;
  int64_t level = c.compression_level, hb = c.heartbeat_ms, timeout = c.peer_timeout_ms;
  int64_t bw = 0;
  r.String("$schema", &role);  // allowed, ignored
  role.clear();
  r.String("cluster_id", &c.cluster_id, true);
  r.String("site", &c.site, true);
  r.Enum("role", {"source", "replica"}, &role, true);
  c.role = role == "source" ? Role::kSource : Role::kReplica;
  r.String("state_dir", &c.state_dir, true);
  ReadPostgres(r, &c.postgres);
  ReadSpool(r, &c.spool);
  ReadEndpoint(r, "listen", &c.listen);
  ReadEndpoint(r, "upstream", &c.upstream, false, &c.upstream_site);
  r.StringList("sites", &c.sites);
  r.String("topology", &c.topology);
  ReadTls(r, &c.tls);
  r.Bool("allow_plaintext_links", &c.allow_plaintext_links);
  r.Int("compression_level", 0, 19, &level);
  r.Int("bandwidth_bytes_per_sec", 0, int64_t{1} << 40, &bw);
  r.Int("heartbeat_ms", 10, 60000, &hb);
  r.Int("peer_timeout_ms", 100, 600000, &timeout);
  ReadCommit(r, &c.commit);
  ReadApply(r, &c.apply);
  ReadAdmin(r, &c.admin);
  ReadSeed(r, &c.seed);
  ReadLog(r, &c.log);
  r.CheckNoUnknownKeys();
  c.compression_level = static_cast<int>(level);
  c.heartbeat_ms = static_cast<int>(hb);
  c.peer_timeout_ms = static_cast<int>(timeout);
  c.bandwidth_bytes_per_sec = static_cast<uint64_t>(bw);
  if (r.errors().empty()) CheckRoleEndpoints(r, c);
  if (r.errors().empty()) CheckAdminTransport(r, c);
  GEOSYNC_RETURN_IF_ERROR(r.status());
  return c;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::Config(
        fmt::format("config {}: cannot open file: {}", path, std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace geosync
