// Pure builders of the admin API's documents: lag tracking, /status JSON,
// Prometheus text, readiness, and the deployment table of geosyncctl status.
#include "agent/admin/status_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/json_reader.h"

namespace geosync::admin {

// ---- LagTracker / RateMeter -------------------------------------------------

LagTracker::LagTracker(size_t max_samples) : max_samples_(std::max<size_t>(max_samples, 4)) {}

void LagTracker::Observe(Position pos, int64_t time_us) {
  last_time_us_ = std::max(last_time_us_, time_us);
  if (!pos.lsn.valid()) return;
  if (!samples_.empty() && pos <= samples_.back().pos) return;
  samples_.push_back({pos, time_us});
  if (samples_.size() < max_samples_) return;
  // Thin the older half: resolution drops where it matters least.
  std::deque<Sample> thinned;
  size_t half = samples_.size() / 2;
  for (size_t i = 0; i < samples_.size(); ++i) {
    if (i >= half || i % 2 == 0) thinned.push_back(samples_[i]);
  }
  samples_.swap(thinned);
}

std::optional<double> LagTracker::LagSeconds(Position pos, int64_t now_us, int64_t grace_us) const {
  if (last_time_us_ == 0) return std::nullopt;
  int64_t behind_since;
  if (samples_.empty() || pos >= samples_.back().pos) {
    // Holds the newest observation: only an overdue observation counts.
    behind_since = last_time_us_ + grace_us;
  } else {
    auto it = std::upper_bound(samples_.begin(), samples_.end(), pos,
                               [](const Position& p, const Sample& s) { return p < s.pos; });
    behind_since = it->time_us;
  }
  return std::max<int64_t>(0, now_us - behind_since) / 1e6;
}

void RateMeter::Observe(uint64_t count, int64_t now_us) {
  samples_.emplace_back(now_us, count);
  while (samples_.size() > 2 && samples_.front().first < now_us - window_us_) {
    samples_.pop_front();
  }
}

double RateMeter::PerSecond() const {
  if (samples_.size() < 2) return 0;
  const auto& [t0, c0] = samples_.front();
  const auto& [t1, c1] = samples_.back();
  if (t1 <= t0 || c1 < c0) return 0;
  return static_cast<double>(c1 - c0) * 1e6 / static_cast<double>(t1 - t0);
}

void TxnDensity::Observe(Lsn lsn, uint64_t units, int64_t now_us) {
  if (!lsn.valid()) return;
  if (!samples_.empty() && (lsn < samples_.back().lsn || units < samples_.back().units)) {
    samples_.clear();  // a new stream (another epoch, a restart): start over
  }
  if (samples_.empty() || lsn != samples_.back().lsn) samples_.push_back({lsn, units, now_us});
  while (samples_.size() > 2 && samples_[1].time_us < now_us - window_us_) samples_.pop_front();
}

std::optional<double> TxnDensity::PerByte() const {
  if (samples_.size() < 2) return std::nullopt;
  const Sample& a = samples_.front();
  const Sample& b = samples_.back();
  const uint64_t span = b.lsn.BytesAfter(a.lsn);
  if (span == 0) return std::nullopt;
  return static_cast<double>(b.units - a.units) / static_cast<double>(span);
}

std::optional<uint64_t> TransactionsIn(std::optional<uint64_t> bytes,
                                       std::optional<double> per_byte) {
  if (!bytes || !per_byte) return std::nullopt;
  if (*bytes == 0 || *per_byte <= 0) return 0;
  const double n = std::round(static_cast<double>(*bytes) * *per_byte);
  return std::max<uint64_t>(1, static_cast<uint64_t>(n));
}

// ---- The slot watchdog --------------------------------------------------------

SlotHealth CheckSlotWal(const std::string& slot, std::optional<uint64_t> retained_bytes,
                        int64_t keep_size_bytes, const std::string& wal_status) {
  SlotHealth h;
  if (wal_status == "lost" || wal_status == "unreserved") {
    h.invalidated = true;
    h.message = fmt::format(
        "replication slot {} has wal_status '{}': PostgreSQL {} WAL it needs "
        "(max_slot_wal_keep_size exceeded); {}",
        slot, wal_status, wal_status == "lost" ? "removed" : "will remove at the next checkpoint",
        wal_status == "lost" ? "capture cannot continue: re-create the slot and re-seed every site"
                             : "capture must catch up now or every site needs a re-seed");
  }
  if (keep_size_bytes > 0 && retained_bytes &&
      static_cast<double>(*retained_bytes) >=
          kSlotWalWarnFraction * static_cast<double>(keep_size_bytes)) {
    h.near_limit = true;
    if (h.message.empty()) {
      h.message = fmt::format(
          "replication slot {} retains {} of WAL, {:.0f}% of max_slot_wal_keep_size = {}; at "
          "100% PostgreSQL invalidates the slot",
          slot, HumanBytes(*retained_bytes),
          100.0 * static_cast<double>(*retained_bytes) / static_cast<double>(keep_size_bytes),
          HumanBytes(static_cast<uint64_t>(keep_size_bytes)));
    }
  }
  return h;
}

namespace {

bool SlotInvalidated(const SourceSnapshot& s) {
  return s.slot_wal_status == "lost" || s.slot_wal_status == "unreserved";
}

}  // namespace

// ---- State and readiness ----------------------------------------------------

std::string ReplicaState(const ReplicaSnapshot& s) {
  if (s.seed.state == "in_progress") return "seeding";
  if (!s.apply_error.empty()) return "apply_error";
  if (!s.connected) return "connecting";
  return "streaming";
}

std::string SourceState(const SourceSnapshot& s) {
  if (s.fenced) return "fenced";
  if (s.slot_polled && s.slot_active) return "streaming";
  return "connecting";
}

Readiness ReplicaReadiness(const ReplicaSnapshot& s, double max_lag_s) {
  if (s.seed.state == "in_progress") {
    return {false, fmt::format("seed in progress ({}): a half-seeded site is never ready",
                               s.seed.phase.empty() ? "starting" : s.seed.phase)};
  }
  if (!s.apply_error.empty()) return {false, "apply stopped: " + s.apply_error};
  if (!s.apply_running) return {false, "apply is not running"};
  if (!s.applied_lag.seconds) {
    return {false, "no heartbeat from the source yet: apply lag is unknown"};
  }
  if (*s.applied_lag.seconds >= max_lag_s) {
    return {false, fmt::format("apply lag {:.1f} s is not under admin.ready_max_lag_s = {}",
                               *s.applied_lag.seconds, max_lag_s)};
  }
  return {true, "ready"};
}

Readiness SourceReadiness(const SourceSnapshot& s) {
  if (s.fenced) return {false, "fenced: a site with a higher epoch exists"};
  if (!s.slot_polled) return {false, "capture not streaming yet: slot not checked yet"};
  if (!s.slot_active) {
    std::string why = s.slot_error.empty()
                          ? fmt::format("replication slot {} is not active", s.slot_name)
                          : s.slot_error;
    return {false, "capture is not streaming: " + why};
  }
  return {true, "ready"};
}

// ---- /status ----------------------------------------------------------------

namespace {

using nlohmann::json;

json PositionJson(Position p) {
  if (!p.lsn.valid()) return nullptr;
  return {{"position", p.ToString()}, {"epoch", p.epoch}, {"lsn", p.lsn.ToString()}};
}

json LsnJson(Lsn l) { return l.valid() ? json(l.ToString()) : json(nullptr); }

template <typename T>
json Opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json Text(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json LagJson(const LagFigures& l) { return {{"bytes", Opt(l.bytes)}, {"seconds", Opt(l.seconds)}}; }

json IdentityJson(const SiteIdentity& id, const char* role, const std::string& state) {
  return {{"site", id.site},
          {"cluster_id", id.cluster_id},
          {"role", role},
          {"epoch", id.epoch},
          {"state", state},
          {"version", id.version},
          {"uptime_seconds", id.uptime_s}};
}

}  // namespace

nlohmann::json SeedJson(const SeedSnapshot& s) {
  json tables = json::array();
  for (const auto& t : s.tables) {
    tables.push_back({{"table", t.table},
                      {"bytes_total", t.bytes_total},
                      {"bytes_copied", t.bytes_copied},
                      {"rows_copied", t.rows_copied},
                      {"rows_estimate", t.rows_estimate},
                      {"chunks_total", t.chunks_total},
                      {"chunks_done", t.chunks_done},
                      {"eta_seconds", Opt(t.eta_s)}});
  }
  return {{"state", s.state},
          {"phase", Text(s.phase)},
          {"position", PositionJson(s.position)},
          {"elapsed_seconds", s.elapsed_s},
          {"bytes_total", s.bytes_total},
          {"bytes_copied", s.bytes_copied},
          {"rows_copied", s.rows_copied},
          {"eta_seconds", Opt(s.eta_s)},
          {"error", Text(s.error)},
          {"tables", std::move(tables)}};
}

nlohmann::json StatusJson(const ReplicaSnapshot& s) {
  json doc = IdentityJson(s.id, "replica", ReplicaState(s));
  json replica = {
      {"source_site", Text(s.source_site)},
      {"upstream", s.upstream},
      {"connected", s.connected},
      {"received", PositionJson(s.received)},
      {"durable", PositionJson(s.durable)},
      {"applied", PositionJson(s.applied)},
      {"primary_wal_lsn", LsnJson(s.primary_wal_lsn)},
      {"heartbeat_age_seconds", Opt(s.heartbeat_age_s)},
      {"lag",
       {{"received", LagJson(s.received_lag)},
        {"durable", LagJson(s.durable_lag)},
        {"applied", LagJson(s.applied_lag)}}},
      {"potential_loss",
       {{"bytes", Opt(s.potential_loss.bytes)},
        {"seconds", Opt(s.potential_loss.seconds)},
        {"transactions", Opt(s.potential_loss.transactions)},
        {"transactions_per_mb", Opt(s.potential_loss.transactions_per_mb)}}},
      {"received_transactions", s.received_txns},
      {"apply",
       {{"running", s.apply_running},
        {"transactions", s.txns},
        {"changes", s.changes},
        {"groups", s.groups},
        {"bytes", s.apply_bytes},
        {"skipped", s.skipped},
        {"ddl_refused", s.ddl_refused},
        {"failures", s.apply_failures},
        {"rate_per_second", s.apply_rate},
        {"error", Text(s.apply_error)},
        {"retrying", Text(s.apply_retrying)}}},
      {"network",
       {{"raw_bytes_in", s.raw_bytes_in},
        {"wire_bytes_in", s.wire_bytes_in},
        {"frames", s.frames},
        {"records", s.records},
        {"reconnects", s.receiver_reconnects},
        {"error", Text(s.connected ? "" : s.receiver_error)}}},
  };
  replica["seed"] = SeedJson(s.seed);
  doc["replica"] = std::move(replica);
  doc["spool"] = {{"bytes", s.spool_bytes}, {"oldest", PositionJson(s.spool_oldest)}};
  std::string last_error = s.spool_write_error;
  if (last_error.empty()) last_error = s.apply_error;
  if (last_error.empty() && !s.apply_retrying.empty()) {
    last_error = "apply retrying: " + s.apply_retrying;
  }
  if (last_error.empty() && !s.connected) last_error = s.receiver_error;
  doc["last_error"] = Text(last_error);
  return doc;
}

nlohmann::json StatusJson(const FencedSnapshot& s) {
  json doc = IdentityJson(s.id, "fenced", "fenced");
  doc["spool"] = {{"bytes", s.spool_bytes},
                  {"oldest", PositionJson(s.spool_oldest)},
                  {"durable", PositionJson(s.spool_durable)}};
  doc["last_error"] = Text(s.reason);
  return doc;
}

std::string MetricsText(const FencedSnapshot& s) {
  return fmt::format(
      "# HELP geosync_fenced 1 when this site is fenced: it ships and applies nothing.\n"
      "# TYPE geosync_fenced gauge\n"
      "geosync_fenced{{site=\"{}\"}} 1\n"
      "# HELP geosync_epoch The promotion epoch this site knows.\n"
      "# TYPE geosync_epoch gauge\n"
      "geosync_epoch{{site=\"{}\"}} {}\n",
      s.id.site, s.id.site, s.id.epoch);
}

nlohmann::json PromotionJson(const PromotionStatus& p) {
  return {{"in_progress", p.in_progress},
          {"target", Text(p.target)},
          {"epoch", p.epoch ? json(p.epoch) : json(nullptr)},
          {"step", Text(p.step)},
          {"final", Text(p.final_position)},
          {"error", Text(p.error)},
          {"db_fenced", p.db_fenced},
          {"history", p.history}};
}

nlohmann::json StatusJson(const SourceSnapshot& s) {
  json doc = IdentityJson(s.id, "source", SourceState(s));
  json sites = json::array();
  for (const auto& p : s.sites) {
    sites.push_back({
        {"site", p.site},
        {"connected", p.connected},
        {"remote", Text(p.remote)},
        {"received", PositionJson(p.received)},
        {"durable", PositionJson(p.durable)},
        {"applied", PositionJson(p.applied)},
        {"lag",
         {{"received", LagJson(p.received_lag)},
          {"durable", LagJson(p.durable_lag)},
          {"applied", LagJson(p.applied_lag)}}},
        {"dropped", p.dropped},
        {"last_seen_seconds_ago", Opt(p.last_seen_age_s)},
        {"raw_bytes_out", p.raw_bytes_out},
        {"wire_bytes_out", p.wire_bytes_out},
        {"last_error", Text(p.last_error)},
    });
  }
  Lsn wal = s.current_wal_lsn.valid() ? s.current_wal_lsn : s.server_wal_end;
  json capture_lag = nullptr;
  if (wal.valid() && s.spool_durable.lsn.valid()) capture_lag = wal.BytesAfter(s.spool_durable.lsn);
  doc["source"] = {
      {"slot",
       {{"name", s.slot_name},
        {"active", s.slot_active},
        {"confirmed_flush_lsn", LsnJson(s.slot_confirmed_flush)},
        {"restart_lsn", LsnJson(s.slot_restart_lsn)},
        {"retained_wal_bytes", Opt(s.slot_retained_wal_bytes)},
        {"wal_status", Text(s.slot_wal_status)},
        {"wal_keep_size_bytes", Opt(s.slot_wal_keep_size_bytes)},
        {"invalidated", SlotInvalidated(s)},
        {"error", Text(s.slot_error)}}},
      {"current_wal_lsn", LsnJson(s.current_wal_lsn)},
      {"server_wal_end", LsnJson(s.server_wal_end)},
      {"confirmed_flush_sent", LsnJson(s.confirmed_flush_sent)},
      {"capture_lag_bytes", capture_lag},
      {"capture",
       {{"transactions", s.captured_txns},
        {"bytes", s.captured_bytes},
        {"messages", s.messages},
        {"reconnects", s.capture_reconnects},
        {"stream_starts", s.stream_starts},
        {"streamed_transactions", s.streamed_txns},
        {"stream_aborts", s.stream_aborts},
        {"spilled_bytes", s.spilled_bytes}}},
      {"sites", std::move(sites)},
  };
  doc["spool"] = {{"bytes", s.spool_bytes},
                  {"oldest", PositionJson(s.spool_oldest)},
                  {"durable", PositionJson(s.spool_durable)},
                  {"retention_runs", s.retention_runs}};
  std::string last_error = s.fenced ? "fenced: a site with a higher epoch exists" : s.slot_error;
  if (!s.fenced && !s.spool_write_error.empty()) last_error = s.spool_write_error;
  doc["last_error"] = Text(last_error);
  return doc;
}

// ---- /metrics -----------------------------------------------------------------

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Num(uint64_t v) { return std::to_string(v); }
std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

// Writes metric families: # HELP and # TYPE once, then the samples.
class PromWriter {
 public:
  void Family(const std::string& name, const char* type, const char* help) {
    name_ = name;
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Sample(const Labels& labels, const std::string& value) {
    out_ += name_;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i) out_ += ',';
        out_ += labels[i].first;
        out_ += "=\"";
        out_ += EscapeLabel(labels[i].second);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  // One family with one sample.
  void One(const std::string& name, const char* type, const char* help, const std::string& value,
           const Labels& labels = {}) {
    Family(name, type, help);
    Sample(labels, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string name_;
  std::string out_;
};

void WriteIdentity(PromWriter& w, const SiteIdentity& id, bool source) {
  const char* role = source ? "source" : "replica";
  w.One(
      "geosync_info", "gauge", "Site identity; always 1.", "1",
      {{"site", id.site}, {"cluster_id", id.cluster_id}, {"role", role}, {"version", id.version}});
  w.Family("geosync_role", "gauge", "1 for the role this site runs, 0 for the other.");
  w.Sample({{"role", "source"}}, source ? "1" : "0");
  w.Sample({{"role", "replica"}}, source ? "0" : "1");
  w.One("geosync_epoch", "gauge", "Promotion epoch this site runs in.", Num(id.epoch));
  w.One("geosync_uptime_seconds", "gauge", "Seconds since geosyncd started.", Num(id.uptime_s));
}

struct LagSet {
  std::string site;
  const LagFigures* write;
  const LagFigures* flush;
  const LagFigures* replay;
};

// geosync_{write,flush,replay}_lag_{bytes,seconds}: PostgreSQL's words for
// the received, durable and applied clocks.
void WriteLags(PromWriter& w, const std::vector<LagSet>& sets) {
  struct Clock {
    const char* word;
    const char* what;
    const LagFigures* LagSet::*member;
  };
  const Clock clocks[] = {{"write", "received", &LagSet::write},
                          {"flush", "durable in the site's spool", &LagSet::flush},
                          {"replay", "applied to the site's PostgreSQL", &LagSet::replay}};
  for (const auto& c : clocks) {
    std::string help =
        fmt::format("Bytes of primary WAL after the position the site has {}.", c.what);
    w.Family(fmt::format("geosync_{}_lag_bytes", c.word), "gauge", help.c_str());
    for (const auto& s : sets) {
      const auto& b = (s.*(c.member))->bytes;
      if (b) w.Sample({{"site", s.site}}, Num(*b));
    }
  }
  for (const auto& c : clocks) {
    std::string help = fmt::format(
        "Seconds, on the source clock, since the source held data the site has not {}.", c.what);
    w.Family(fmt::format("geosync_{}_lag_seconds", c.word), "gauge", help.c_str());
    for (const auto& s : sets) {
      const auto& v = (s.*(c.member))->seconds;
      if (v) w.Sample({{"site", s.site}}, Num(*v));
    }
  }
}

}  // namespace

std::string MetricsText(const ReplicaSnapshot& s) {
  PromWriter w;
  WriteIdentity(w, s.id, false);
  w.One("geosync_connected", "gauge", "1 while the link to the source is up.",
        s.connected ? "1" : "0");
  WriteLags(w, {{s.id.site, &s.received_lag, &s.durable_lag, &s.applied_lag}});
  if (s.heartbeat_age_s) {
    w.One("geosync_heartbeat_age_seconds", "gauge",
          "Seconds since the last heartbeat from the source.", Num(*s.heartbeat_age_s));
  }
  w.Family("geosync_received_bytes_total", "counter",
           "Stream bytes received from the source, raw (decompressed) and compressed (on the "
           "wire).");
  w.Sample({{"encoding", "raw"}}, Num(s.raw_bytes_in));
  w.Sample({{"encoding", "compressed"}}, Num(s.wire_bytes_in));
  w.One("geosync_received_records_total", "counter", "Spool records received.", Num(s.records));
  w.One("geosync_applied_transactions_total", "counter",
        "Source transactions applied (skipped ones included).", Num(s.txns));
  w.One("geosync_applied_changes_total", "counter", "Row changes applied.", Num(s.changes));
  w.One("geosync_applied_bytes_total", "counter", "Spool payload bytes applied.",
        Num(s.apply_bytes));
  w.One("geosync_apply_groups_total", "counter", "Replica transactions committed.", Num(s.groups));
  w.One("geosync_apply_skipped_transactions_total", "counter",
        "Source transactions skipped on DBA request.", Num(s.skipped));
  w.One("geosync_apply_collapsed_changes_total", "counter",
        "Row changes not sent because a later change to the same row in the group carried "
        "their net effect.",
        Num(s.collapsed));
  w.One("geosync_apply_collapse_fallbacks_total", "counter",
        "Collapsed groups that failed with a constraint error and were applied in plain order.",
        Num(s.collapse_fallbacks));
  w.One("geosync_apply_ddl_refused_total", "counter",
        "DDL messages not run: they failed the allow-list or named no role (docs/security.md).",
        Num(s.ddl_refused));
  w.One("geosync_apply_rate_transactions", "gauge",
        "Source transactions applied per second over the last 10 s.", Num(s.apply_rate));
  w.One("geosync_apply_error", "gauge", "1 while apply is stopped on an error.",
        s.apply_error.empty() ? "0" : "1");
  w.Family("geosync_errors_total", "counter",
           "Failures: link = connections to the source lost or refused, apply = apply "
           "sessions that failed.");
  w.Sample({{"component", "link"}}, Num(s.receiver_reconnects));
  w.Sample({{"component", "apply"}}, Num(s.apply_reconnects + s.apply_failures));
  w.One("geosync_spool_size_bytes", "gauge", "Bytes in the site's spool.", Num(s.spool_bytes));
  w.One("geosync_spool_write_failed", "gauge",
        "1 while the spool cannot be written (a full disk): receiving is paused and retried.",
        s.spool_write_error.empty() ? "0" : "1");
  return w.Take();
}

std::string MetricsText(const SourceSnapshot& s) {
  PromWriter w;
  WriteIdentity(w, s.id, true);
  w.One("geosync_capture_streaming", "gauge", "1 while the replication slot is active.",
        s.slot_active ? "1" : "0");
  if (s.slot_retained_wal_bytes) {
    w.One("geosync_slot_retained_wal_bytes", "gauge",
          "pg_current_wal_lsn() minus the slot's restart_lsn: WAL the primary keeps for "
          "geosync.",
          Num(*s.slot_retained_wal_bytes), {{"slot", s.slot_name}});
  }
  if (s.slot_wal_keep_size_bytes) {
    w.One("geosync_slot_wal_keep_size_bytes", "gauge",
          "max_slot_wal_keep_size in bytes; -1 = unlimited.",
          std::to_string(*s.slot_wal_keep_size_bytes), {{"slot", s.slot_name}});
  }
  if (s.wal_disk_free_bytes) {
    w.One("geosync_wal_disk_free_bytes", "gauge",
          "Free bytes on the filesystem of the primary's pg_wal (when geosyncd runs on the "
          "database host).",
          Num(*s.wal_disk_free_bytes));
  }
  if (s.slot_polled) {
    w.One("geosync_slot_invalidated", "gauge",
          "1 while the slot's wal_status is lost or unreserved: WAL it needs is (to be) removed.",
          SlotInvalidated(s) ? "1" : "0", {{"slot", s.slot_name}});
  }
  w.One("geosync_captured_transactions_total", "counter", "Transactions decoded from the slot.",
        Num(s.captured_txns));
  w.One("geosync_captured_bytes_total", "counter", "pgoutput bytes read from the slot.",
        Num(s.captured_bytes));
  w.One("geosync_capture_stream_starts_total", "counter",
        "pgoutput Stream Start messages: chunks of large in-progress transactions "
        "(postgres.streaming).",
        Num(s.stream_starts));
  w.One("geosync_capture_streamed_transactions_total", "counter",
        "Streamed transactions committed and replayed from their spill file.",
        Num(s.streamed_txns));
  w.One("geosync_capture_stream_aborts_total", "counter",
        "Streamed transactions aborted on the primary (their spill file deleted).",
        Num(s.stream_aborts));
  w.One("geosync_capture_spilled_bytes_total", "counter",
        "Bytes of streamed changes written to spill files under spool.dir/stream-spill.",
        Num(s.spilled_bytes));
  w.One("geosync_spool_size_bytes", "gauge", "Bytes in the source's spool.", Num(s.spool_bytes));
  w.One("geosync_spool_write_failed", "gauge",
        "1 while the spool cannot be written (a full disk): capture is paused and retried.",
        s.spool_write_error.empty() ? "0" : "1");
  w.One("geosync_spool_retention_runs_total", "counter",
        "Spool retention passes (release what every site holds, drop a site at the cap).",
        Num(s.retention_runs));
  w.Family("geosync_errors_total", "counter",
           "Failures: capture = replication connections to the primary lost.");
  w.Sample({{"component", "capture"}}, Num(s.capture_reconnects));
  std::vector<LagSet> sets;
  for (const auto& p : s.sites)
    sets.push_back({p.site, &p.received_lag, &p.durable_lag, &p.applied_lag});
  WriteLags(w, sets);
  w.Family("geosync_site_connected", "gauge", "1 while the site's stream session is up.");
  for (const auto& p : s.sites) w.Sample({{"site", p.site}}, p.connected ? "1" : "0");
  w.Family("geosync_site_dropped", "gauge",
           "1 when the site was dropped from spool retention and needs a re-seed.");
  for (const auto& p : s.sites) w.Sample({{"site", p.site}}, p.dropped ? "1" : "0");
  w.Family("geosync_sent_bytes_total", "counter",
           "Stream bytes sent to each site, raw and compressed (on the wire).");
  for (const auto& p : s.sites) {
    w.Sample({{"site", p.site}, {"encoding", "raw"}}, Num(p.raw_bytes_out));
    w.Sample({{"site", p.site}, {"encoding", "compressed"}}, Num(p.wire_bytes_out));
  }
  return w.Take();
}

// ---- The deployment table ----------------------------------------------------

namespace {

std::string LsnOf(const nlohmann::json& pos) {
  if (!pos.is_object()) return "";
  return pos.value("lsn", "");
}

}  // namespace

StatusRow RowFromStatus(const TopologySite& site, const nlohmann::json& status) {
  StatusRow row;
  row.site = site.name;
  row.admin = site.admin;
  row.reachable = true;
  try {
    row.role = status.at("role").get<std::string>();
    row.epoch = status.at("epoch").get<uint64_t>();
    row.state = status.at("state").get<std::string>();
    if (status.at("site").get<std::string>() != site.name) {
      row.last_error = fmt::format("answers as site {}", status.at("site").get<std::string>());
    }
    const auto& spool = status.at("spool");
    row.spool_bytes = spool.at("bytes").get<uint64_t>();
    if (status.at("last_error").is_string()) {
      row.last_error = status.at("last_error").get<std::string>();
    }
    if (row.role == "replica") {
      const auto& r = status.at("replica");
      row.received_lsn = LsnOf(r.at("received"));
      row.durable_lsn = LsnOf(r.at("durable"));
      row.applied_lsn = LsnOf(r.at("applied"));
      const auto& lag = r.at("lag").at("applied");
      if (lag.at("bytes").is_number()) row.lag_bytes = lag.at("bytes").get<uint64_t>();
      if (lag.at("seconds").is_number()) row.lag_seconds = lag.at("seconds").get<double>();
    } else if (row.role == "source") {
      const auto& s = status.at("source");
      if (s.at("server_wal_end").is_string()) row.received_lsn = s.at("server_wal_end");
      row.durable_lsn = LsnOf(spool.at("durable"));
      if (s.at("capture_lag_bytes").is_number()) {
        row.lag_bytes = s.at("capture_lag_bytes").get<uint64_t>();
      }
    }
  } catch (const nlohmann::json::exception& e) {
    row.state = "invalid";
    row.last_error = fmt::format("/status does not follow status.schema.json: {}", e.what());
  }
  return row;
}

StatusRow UnreachableRow(const TopologySite& site, const std::string& error) {
  StatusRow row;
  row.site = site.name;
  row.admin = site.admin;
  row.reachable = false;
  row.state = "unreachable";
  row.last_error = error;
  return row;
}

nlohmann::json RowsJson(const std::vector<StatusRow>& rows) {
  json out = json::array();
  for (const auto& r : rows) {
    out.push_back({{"site", r.site},
                   {"admin", r.admin},
                   {"reachable", r.reachable},
                   {"role", Text(r.role)},
                   {"epoch", Opt(r.epoch)},
                   {"state", r.state},
                   {"received_lsn", Text(r.received_lsn)},
                   {"durable_lsn", Text(r.durable_lsn)},
                   {"applied_lsn", Text(r.applied_lsn)},
                   {"lag_bytes", Opt(r.lag_bytes)},
                   {"lag_seconds", Opt(r.lag_seconds)},
                   {"spool_bytes", Opt(r.spool_bytes)},
                   {"last_error", Text(r.last_error)}});
  }
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string FormatTable(const std::vector<StatusRow>& rows) {
  auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::vector<std::vector<std::string>> cells = {{"SITE", "ROLE", "EPOCH", "STATE", "RECEIVED",
                                                  "DURABLE", "APPLIED", "LAG", "LAG_S", "SPOOL",
                                                  "LAST_ERROR"}};
  for (const auto& r : rows) {
    cells.push_back({r.site, dash(r.role), r.epoch ? std::to_string(*r.epoch) : "-", r.state,
                     dash(r.received_lsn), dash(r.durable_lsn), dash(r.applied_lsn),
                     r.lag_bytes ? HumanBytes(*r.lag_bytes) : "-",
                     r.lag_seconds ? fmt::format("{:.1f}", *r.lag_seconds) : "-",
                     r.spool_bytes ? HumanBytes(*r.spool_bytes) : "-", dash(r.last_error)});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t i = 0; i + 1 < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  }
  std::string out;
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size()) text.append(width[i] - line[i].size() + 2, ' ');
    }
    out += text;
    out += '\n';
  }
  return out;
}

}  // namespace geosync::admin
