// The source role's status figures (source_view.h).
#include "agent/daemon/source_view.h"

#include <algorithm>
#include <variant>

#include <nlohmann/json.hpp>

#include "agent/daemon/role_support.h"
#include "common/clock.h"
#include "common/encoding.h"

namespace geosync {

admin::LagFigures SourceView::Lag(Position pos, Lsn wal, int64_t now) const {
  admin::LagFigures f;
  if (wal.valid() && pos.lsn.valid()) f.bytes = wal.BytesAfter(pos.lsn);
  if (pos.lsn.valid()) f.seconds = tracker.LagSeconds(pos, now, sample_period.count() * 1000);
  return f;
}

void SourceView::AddCapture(admin::SourceSnapshot& s) const {
  if (!capture) return;
  const CaptureStats& cs = capture->stats();
  s.server_wal_end = Lsn(cs.server_wal_end.load());
  s.confirmed_flush_sent = Lsn(cs.confirmed_flush.load());
  s.captured_txns = cs.transactions.load();
  s.captured_bytes = cs.bytes.load();
  s.messages = cs.messages.load();
  s.capture_reconnects = cs.reconnects.load();
  s.stream_starts = cs.stream_starts.load();
  s.streamed_txns = cs.streamed_transactions.load();
  s.stream_aborts = cs.stream_aborts.load();
  s.spilled_bytes = cs.spilled_bytes.load();
}

void SourceView::AddSites(admin::SourceSnapshot& s, int64_t now) const {
  const Lsn wal = std::max(s.current_wal_lsn, s.server_wal_end);
  for (const SiteProgress& p : registry.Snapshot()) {
    admin::SourceSiteSnapshot x;
    x.site = p.site;
    x.connected = p.connected;
    x.remote = p.remote;
    x.received = p.received;
    x.durable = p.durable;
    x.applied = p.applied;
    x.received_lag = Lag(p.received, wal, now);
    x.durable_lag = Lag(p.durable, wal, now);
    x.applied_lag = Lag(p.applied, wal, now);
    x.dropped = p.dropped;
    x.last_error = p.last_error;
    if (p.last_seen_unix_us > 0) x.last_seen_age_s = (now - p.last_seen_unix_us) / 1e6;
    x.raw_bytes_out = p.raw_bytes_out;
    x.wire_bytes_out = p.wire_bytes_out;
    s.sites.push_back(std::move(x));
  }
}

admin::SourceSnapshot SourceView::Snapshot() const {
  admin::SourceSnapshot s;
  s.id = IdentityOf(config, state.epoch, started);
  s.fenced = fenced;
  s.slot_name = config.postgres.slot;
  admin::SlotSample slot = poller.sample();
  s.slot_polled = slot.polled;
  s.slot_active = slot.active;
  s.slot_confirmed_flush = slot.confirmed_flush;
  s.slot_restart_lsn = slot.restart_lsn;
  s.current_wal_lsn = slot.current_wal_lsn;
  s.slot_retained_wal_bytes = slot.retained_wal_bytes;
  s.slot_wal_status = slot.wal_status;
  s.slot_wal_keep_size_bytes = slot.wal_keep_size_bytes;
  s.wal_disk_free_bytes = slot.wal_disk_free_bytes;
  s.slot_error = slot.error;
  AddCapture(s);
  s.spool_bytes = spool.size_bytes();
  s.spool_durable = spool.durable();
  s.spool_oldest = spool.oldest();
  s.retention_runs = retention_runs.load();
  s.spool_write_error = spool.write_error();
  AddSites(s, NowUs());
  return s;
}

namespace {

// What the spool holds after a position: transactions with row changes,
// payload bytes, and the commit time of the oldest of those transactions.
struct Behind {
  uint64_t txns = 0;
  uint64_t bytes = 0;
  PgTimestamp oldest_commit = 0;
};

Result<Behind> CountBehind(SpoolReader& reader) {
  Behind b;
  bool changes = false;
  PgTimestamp unit_commit = 0;
  while (true) {
    GEOSYNC_ASSIGN_OR_RETURN(auto rec, reader.Next());
    if (!rec.has_value()) return b;
    const SpoolRecord& r = *rec;
    b.bytes += r.payload.size();
    auto event = DecodeEvent(r.payload);
    if (event.ok() && (std::holds_alternative<RowChange>(*event) ||
                       std::holds_alternative<TruncateEvent>(*event))) {
      changes = true;
    }
    if (event.ok()) {
      if (const auto* begin = std::get_if<BeginEvent>(&*event)) unit_commit = begin->commit_time;
    }
    if (r.last_in_unit()) {
      if (changes && b.txns++ == 0) b.oldest_commit = unit_commit;
      changes = false;
    }
  }
}

}  // namespace

admin::HttpReply BehindAction(Spool& spool, const admin::QueryParams& q) {
  auto it = q.find("after");
  auto after = Position::Parse(it == q.end() ? "" : it->second);
  if (!after.ok()) {
    return {400, "text/plain; charset=utf-8", "expected ?after=EPOCH@X/Y\n"};
  }
  auto reader = spool.ReadFrom(*after);
  if (!reader.ok()) return {409, "text/plain; charset=utf-8", reader.status().ToString() + "\n"};
  auto behind = CountBehind(**reader);
  if (!behind.ok()) return {500, "text/plain; charset=utf-8", behind.status().ToString() + "\n"};
  // Seconds agree with the count: how long ago (on this host's clock, where
  // the primary runs) the oldest of those transactions committed; 0 only
  // when there is none.
  nlohmann::json seconds = 0.0;
  if (behind->txns > 0 && behind->oldest_commit == 0) seconds = nullptr;  // no commit time
  if (behind->txns > 0 && behind->oldest_commit != 0) {
    const int64_t committed_us = behind->oldest_commit + kPgEpochOffsetSeconds * 1'000'000;
    seconds = std::max<int64_t>(1, NowUs() - committed_us) / 1e6;
  }
  nlohmann::json doc = {{"after", after->ToString()},
                        {"transactions", behind->txns},
                        {"bytes", behind->bytes},
                        {"seconds", seconds}};
  return {200, "application/json", doc.dump() + "\n"};
}

}  // namespace geosync
