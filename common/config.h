// Site configuration: one JSON file per geosyncd, documented by
// schemas/config.schema.json. Loading checks every key and names the file,
// the key, what was expected and what was found.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"

namespace geosync {

enum class Role { kSource, kReplica };
enum class CommitPolicy { kAsync, kSync };

struct PostgresConfig {
  std::string dsn;  // libpq conninfo; passwords come from passfile or PGPASSWORD
  std::string slot = "geosync";
  std::string publication = "geosync";
  std::vector<std::string> tables;  // empty: FOR ALL TABLES
  bool streaming = false;           // pgoutput v2 streaming of large transactions
  bool binary = false;              // pgoutput binary column values
};

struct SpoolConfig {
  std::string dir;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t max_bytes = 0;  // 0: no cap
  // Replica role: applied units are kept up to this size (at most half of
  // max_bytes when capped), so that once promoted this site can serve peers
  // that are behind it; older applied segments are deleted.
  uint64_t keep_applied_bytes = 1024ull << 20;
};

struct Endpoint {
  std::string host;
  uint16_t port = 0;

  bool operator==(const Endpoint&) const = default;
};

struct TlsConfig {
  bool enabled = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct SyncConfig {
  CommitPolicy policy = CommitPolicy::kAsync;
  std::vector<std::string> sites;  // sites whose durability counts under sync
  int quorum = 1;                  // K of them
};

struct ApplyConfig {
  int batch_max_txns = 500;
  uint64_t batch_max_bytes = 8ull << 20;
  int batch_max_ms = 100;
  bool synchronous_commit = false;  // off: the spool and origin cover durability
  // Fold changes to the same row within a group into their net effect
  // (docs/apply.md); a constraint error retries the group in plain order.
  bool collapse = true;
  // Inserts into one table, and updates by key, are sent as multi-row
  // statements of up to this many rows (docs/apply.md); 1: one row each.
  int rows_per_statement = 128;
  // Replica sessions applying independent groups at once, committed in
  // source order (docs/apply.md, "Parallel apply"); 1: one session; 0:
  // the CPUs geosyncd may run on, at most 2 (ApplyWorkers()).
  int workers = 0;
};

struct SeedConfig {
  int workers = 4;                     // parallel COPY connections
  bool auto_seed = false;              // seed on first start when no published table exists
  uint64_t chunk_bytes = 32ull << 20;  // tables bigger than this are copied in page ranges
};

// HTTPS on the admin API: the site's (or an admin) certificate from the
// deployment CA; with require_client_cert, clients must present a certificate
// that chains to ca_file.
struct AdminTlsConfig {
  bool enabled = false;
  std::string cert_file;
  std::string key_file;
  std::string ca_file;  // needed with require_client_cert
  bool require_client_cert = false;
};

struct AdminConfig {
  std::optional<Endpoint> listen;  // HTTP(S) /metrics /status /healthz /readyz
  std::string token_file;          // bearer token for state-changing calls
  int ready_max_lag_s = 60;        // replica /readyz: apply lag must be under this
  AdminTlsConfig tls;
  // Without TLS the API listens only on loopback addresses unless this is set.
  bool allow_plaintext = false;
};

struct Config {
  std::string path;  // the file it was loaded from
  std::string cluster_id;
  std::string site;
  Role role = Role::kReplica;
  std::string state_dir;
  PostgresConfig postgres;
  SpoolConfig spool;
  std::optional<Endpoint> listen;    // source: where replicas connect
  std::optional<Endpoint> upstream;  // replica: the source to connect to
  // Replica: the site name the source's certificate must carry (upstream
  // "site"); "" when the config does not name it (docs/security.md).
  std::string upstream_site;
  std::vector<std::string> sites;  // source: replica site names allowed to connect
  // The deployment's topology file (every site's admin URL): a source asks
  // the others for their epoch and fences itself when one is higher.
  std::string topology;
  TlsConfig tls;
  // Without TLS the stream server listens on loopback only, unless this is
  // set ("allow_plaintext_links": true, for networks trusted as a whole).
  bool allow_plaintext_links = false;
  int compression_level = 3;             // zstd level; 0 = uncompressed
  uint64_t bandwidth_bytes_per_sec = 0;  // per-site cap, 0 = none
  int heartbeat_ms = 1000;
  int peer_timeout_ms = 10000;
  SyncConfig commit;
  ApplyConfig apply;
  AdminConfig admin;
  SeedConfig seed;
  LogOptions log;
};

// 127.0.0.0/8, ::1, ::ffff:127.x.y.z or "localhost".
bool IsLoopbackHost(std::string_view host);

// Parses and validates a config document; `path` is used in messages only.
Result<Config> ParseConfig(std::string_view json_text, const std::string& path);
// Reads and parses a file.
Result<Config> LoadConfig(const std::string& path);

}  // namespace geosync
