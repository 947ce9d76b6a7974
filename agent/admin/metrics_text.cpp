// The Prometheus text of /metrics for the source and replica roles.
#include "agent/admin/status_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace geosync::admin {

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
  w.One("geosync_apply_parallel_groups_total", "counter",
        "Groups sent while an earlier group was still being applied on another session "
        "(apply.workers).",
        Num(s.parallel_groups));
  w.One("geosync_apply_parallel_fallbacks_total", "counter",
        "Parallel groups that failed and were applied again from the origin one at a time.",
        Num(s.parallel_fallbacks));
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

}  // namespace geosync::admin
