// The status model of the admin API and of `geosyncctl status`: plain
// snapshots of a site in, the /status JSON, the Prometheus text, readiness and
// the deployment table out. No I/O and no clocks read here: every function is
// a pure function of its arguments, so each is unit-tested from literals.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/lsn.h"
#include "common/status.h"
#include "common/topology.h"

namespace geosync::admin {

// Lag in seconds on the source's clock, PostgreSQL's LagTracker turned
// around: the source says "at time T I held everything up to P" (a heartbeat
// on a replica, a spool sample on the source). A position trails by
// now - T of the first observation beyond it, so an idle site that holds the
// newest observed position shows 0, not the time since the last write.
// Bounded: past max_samples every other old sample is dropped (coarser, not
// longer, history).
class LagTracker {
 public:
  explicit LagTracker(size_t max_samples = 4096);

  // At `time_us` (source clock) the source held everything up to `pos`.
  // Positions that do not advance only refresh the last-heard time.
  void Observe(Position pos, int64_t time_us);
  bool empty() const { return samples_.empty(); }
  // Last time an observation arrived, source clock.
  int64_t last_time_us() const { return last_time_us_; }

  // How far `pos` trails the source at `now_us` (source clock). When `pos`
  // holds the newest observation, only silence longer than `grace_us` (the
  // expected gap between observations) counts. nullopt before any
  // observation.
  std::optional<double> LagSeconds(Position pos, int64_t now_us, int64_t grace_us) const;
  size_t size() const { return samples_.size(); }

 private:
  struct Sample {
    Position pos;
    int64_t time_us;
  };
  size_t max_samples_;
  std::deque<Sample> samples_;  // strictly increasing pos
  int64_t last_time_us_ = 0;
};

// Events per second over a sliding window, from a monotonic counter.
class RateMeter {
 public:
  explicit RateMeter(int64_t window_us = 10'000'000) : window_us_(window_us) {}
  void Observe(uint64_t count, int64_t now_us);
  double PerSecond() const;

 private:
  int64_t window_us_;
  std::deque<std::pair<int64_t, uint64_t>> samples_;
};

// Transactions per byte of WAL in the stream a replica received over a
// short sliding window (the load of the last seconds, which is what produced
// the WAL a site lacks): turns those WAL bytes into a transaction count.
// Counted in units (every transaction the stream carries, geosync's control
// messages included, as rejoin exports them) over the WAL span they cover.
class TxnDensity {
 public:
  explicit TxnDensity(int64_t window_us = 2'000'000) : window_us_(window_us) {}
  // At `now_us` the site had received `units` units, the last ending at `lsn`.
  void Observe(Lsn lsn, uint64_t units, int64_t now_us);
  // Transactions per WAL byte over the window; nullopt before the stream
  // moved in it.
  std::optional<double> PerByte() const;

 private:
  struct Sample {
    Lsn lsn;
    uint64_t units;
    int64_t time_us;
  };
  int64_t window_us_;
  std::deque<Sample> samples_;
};

// What a replica would lose if it were promoted now, as of the last word
// from its source (a heartbeat): frozen when the source goes silent, so the
// figures never grow with the time since.
struct PotentialLoss {
  std::optional<uint64_t> bytes;              // primary WAL at that heartbeat minus durable
  std::optional<double> seconds;              // source clock: how long the primary had WAL
                                              // beyond durable at that heartbeat
  std::optional<uint64_t> transactions;       // bytes x transactions_per_mb
  std::optional<double> transactions_per_mb;  // TxnDensity of the received stream
};

// Transactions in `bytes` of WAL at `per_byte` (TxnDensity), rounded; at
// least one for any non-zero WAL that carries transactions.
std::optional<uint64_t> TransactionsIn(std::optional<uint64_t> bytes,
                                       std::optional<double> per_byte);

struct LagFigures {
  std::optional<uint64_t> bytes;  // primary WAL position minus this position
  std::optional<double> seconds;  // LagTracker on the source clock
};

// What every site reports.
struct SiteIdentity {
  std::string site;
  std::string cluster_id;
  uint64_t epoch = 0;
  std::string version;
  double uptime_s = 0;
};

// A replica's seed (docs/seed.md): where it stands and how far it got.
struct SeedTableSnapshot {
  std::string table;          // schema.name, quoted as needed
  uint64_t bytes_total = 0;   // pg_relation_size on the source at the snapshot
  uint64_t bytes_copied = 0;  // COPY text bytes loaded so far
  uint64_t rows_copied = 0;
  uint64_t rows_estimate = 0;  // pg_class.reltuples on the source
  int chunks_total = 0, chunks_done = 0;
  std::optional<double> eta_s;
};

struct SeedSnapshot {
  std::string state = "none";  // none, in_progress, done (state.json's seed_state)
  std::string phase;           // connecting, schema, copying, indexes, finishing, retrying
  Position position;           // the consistent point; the stream continues from there
  double elapsed_s = 0;
  uint64_t bytes_total = 0, bytes_copied = 0, rows_copied = 0;
  std::optional<double> eta_s;
  std::string error;  // the last attempt's error, while retrying
  std::vector<SeedTableSnapshot> tables;
};

struct ReplicaSnapshot {
  SiteIdentity id;
  bool connected = false;
  std::string source_site;
  std::string upstream;  // "host:port"
  Position received, durable, applied;
  Lsn primary_wal_lsn;                    // from heartbeats, invalid before the first
  std::optional<double> heartbeat_age_s;  // since the last heartbeat, local clock
  LagFigures received_lag, durable_lag, applied_lag;
  PotentialLoss potential_loss;
  uint64_t received_txns = 0;  // units received since the role started
  uint64_t spool_bytes = 0;
  Position spool_oldest;
  std::string spool_write_error;  // "" while the spool can be written
  std::string receiver_error;     // why the link is down (while !connected)
  std::string apply_error;        // apply stopped with this error and has not progressed since
  std::string apply_retrying;     // a retryable error apply reconnects after (Applier::Stats)
  bool apply_running = true;
  // Counters.
  uint64_t raw_bytes_in = 0, wire_bytes_in = 0, frames = 0, records = 0;
  uint64_t receiver_reconnects = 0;
  uint64_t txns = 0, changes = 0, groups = 0, apply_bytes = 0, skipped = 0;
  uint64_t apply_reconnects = 0, batch_retries = 0, apply_failures = 0;
  uint64_t collapsed = 0, collapse_fallbacks = 0;        // apply.collapse (docs/apply.md)
  uint64_t parallel_groups = 0, parallel_fallbacks = 0;  // apply.workers (docs/apply.md)
  uint64_t ddl_refused = 0;                              // DDL messages not run (docs/security.md)
  double apply_rate = 0;                                 // source transactions per second
  SeedSnapshot seed;
};

struct SourceSiteSnapshot {
  std::string site;
  bool connected = false;
  std::string remote;
  Position received, durable, applied;
  LagFigures received_lag, durable_lag, applied_lag;
  bool dropped = false;
  std::string last_error;
  std::optional<double> last_seen_age_s;
  uint64_t raw_bytes_out = 0, wire_bytes_out = 0;
};

struct SourceSnapshot {
  SiteIdentity id;
  bool fenced = false;
  // From the slot poller (its own connection, once a second).
  std::string slot_name;
  bool slot_polled = false;
  bool slot_active = false;
  Lsn slot_confirmed_flush, slot_restart_lsn, current_wal_lsn;
  std::optional<uint64_t> slot_retained_wal_bytes;
  std::string slot_wal_status;                      // pg_replication_slots.wal_status
  std::optional<int64_t> slot_wal_keep_size_bytes;  // max_slot_wal_keep_size, -1 = unlimited
  std::optional<uint64_t> wal_disk_free_bytes;      // free space of the primary's pg_wal
  std::string slot_error;  // why the last poll failed or what is wrong with the slot
  // From Capture.
  Lsn server_wal_end, confirmed_flush_sent;
  uint64_t captured_txns = 0, captured_bytes = 0, messages = 0, capture_reconnects = 0;
  // pgoutput v2 streaming of in-progress transactions (postgres.streaming).
  uint64_t stream_starts = 0, streamed_txns = 0, stream_aborts = 0, spilled_bytes = 0;
  // From the spool.
  uint64_t spool_bytes = 0;
  Position spool_durable, spool_oldest;
  std::string spool_write_error;  // "" while the spool can be written
  uint64_t retention_runs = 0;    // spool retention passes since start (one a second)
  std::vector<SourceSiteSnapshot> sites;
};

// ---- The slot watchdog ---------------------------------------------------------

// Retained WAL at this fraction of max_slot_wal_keep_size is worth a warning.
inline constexpr double kSlotWalWarnFraction = 0.8;

// The watchdog's verdict on one poll of the source's slot.
struct SlotHealth {
  bool invalidated = false;  // wal_status lost, or unreserved (lost at the next checkpoint)
  bool near_limit = false;   // retained WAL >= kSlotWalWarnFraction of the limit
  std::string message;       // what is wrong, "" when healthy
};

// `keep_size_bytes` is max_slot_wal_keep_size in bytes, -1 for unlimited.
SlotHealth CheckSlotWal(const std::string& slot, std::optional<uint64_t> retained_bytes,
                        int64_t keep_size_bytes, const std::string& wal_status);

// "streaming", "connecting", "apply_error" (replica); "streaming",
// "connecting", "fenced" (source).
std::string ReplicaState(const ReplicaSnapshot& s);
std::string SourceState(const SourceSnapshot& s);
// The slot's WAL is gone ("lost") or about to go ("unreserved").
bool SlotInvalidated(const SourceSnapshot& s);

struct Readiness {
  bool ready = false;
  std::string reason;  // why not, or "ready"
};
Readiness ReplicaReadiness(const ReplicaSnapshot& s, double max_lag_s);
Readiness SourceReadiness(const SourceSnapshot& s);

// The /status document (schemas/status.schema.json).
nlohmann::json StatusJson(const ReplicaSnapshot& s);
nlohmann::json StatusJson(const SourceSnapshot& s);

// A fenced site (a higher epoch exists elsewhere): identity, spool and why.
struct FencedSnapshot {
  SiteIdentity id;
  std::string reason;
  uint64_t spool_bytes = 0;
  Position spool_oldest;
  Position spool_durable;
};
nlohmann::json StatusJson(const FencedSnapshot& s);
std::string MetricsText(const FencedSnapshot& s);

// The "promotion" object every /status carries: a promotion this site takes
// part in, its fence, and where earlier epochs ended in its lineage.
struct PromotionStatus {
  bool in_progress = false;
  std::string target;
  uint64_t epoch = 0;
  std::string step;
  std::string final_position;
  std::string error;
  bool db_fenced = false;
  std::vector<std::string> history;
};
nlohmann::json PromotionJson(const PromotionStatus& p);

// The /metrics page, Prometheus text exposition format 0.0.4.
std::string MetricsText(const ReplicaSnapshot& s);
std::string MetricsText(const SourceSnapshot& s);

// ---- The deployment view of `geosyncctl status` ----------------------------

// One line of the table: what one site says about itself.
struct StatusRow {
  std::string site;
  std::string admin;
  bool reachable = false;
  std::string role;  // "source", "replica", "" when unreachable
  std::optional<uint64_t> epoch;
  std::string state;                                   // a site's own state, or "unreachable"
  std::string received_lsn, durable_lsn, applied_lsn;  // "" when not applicable
  std::optional<uint64_t> lag_bytes;
  std::optional<double> lag_seconds;
  std::optional<uint64_t> spool_bytes;
  std::string last_error;
};

// Builds a row from a site's /status document; a document that breaks the
// schema gives a row with state "invalid" naming the problem.
StatusRow RowFromStatus(const TopologySite& site, const nlohmann::json& status);
StatusRow UnreachableRow(const TopologySite& site, const std::string& error);
// The --format json array (schemas/status.schema.json, array form).
nlohmann::json RowsJson(const std::vector<StatusRow>& rows);
// The table a DBA reads: one line per site, aligned columns, "-" for n/a.
std::string FormatTable(const std::vector<StatusRow>& rows);

// "1.5 MB", "812 kB", "0 B".
std::string HumanBytes(uint64_t bytes);

}  // namespace geosync::admin
