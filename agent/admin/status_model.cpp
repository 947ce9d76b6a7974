// Pure builders of the admin API's documents: lag tracking, readiness and
// /status JSON. Prometheus text is in metrics_text.cpp, the deployment table
// of geosyncctl status in status_table.cpp.
#include "agent/admin/status_model.h"

#include "agent/admin/json_fields.h"

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

bool SlotInvalidated(const SourceSnapshot& s) {
  return s.slot_wal_status == "lost" || s.slot_wal_status == "unreserved";
}

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

}  // namespace geosync::admin
