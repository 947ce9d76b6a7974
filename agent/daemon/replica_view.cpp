// The replica role's status figures (replica_view.h).
#include "agent/daemon/replica_view.h"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

#include "agent/daemon/role_support.h"
#include "common/clock.h"

namespace geosync {

// What promoting this site would lose, as of the last heartbeat: the
// primary's WAL beyond what it holds, and since when (source clock), so the
// figures stop at the source's last word instead of growing with the time
// since (issue #25: the age was added twice and kept growing).
admin::PotentialLoss ReplicaView::Loss(const ReceiverStatus& rs, Position durable) const {
  admin::PotentialLoss loss;
  if (rs.local_time_us == 0) return loss;  // no heartbeat since the role started
  const Position primary{receiver.epoch(), rs.primary_wal_lsn};
  if (rs.primary_wal_lsn.valid() && durable.lsn.valid() && durable.epoch == primary.epoch) {
    loss.bytes = rs.primary_wal_lsn.BytesAfter(durable.lsn);
  }
  loss.seconds = primary_tracker.LagSeconds(durable, rs.source_time_us, 0);
  if (auto per_byte = density.PerByte()) loss.transactions_per_mb = *per_byte * 1e6;
  loss.transactions = admin::TransactionsIn(loss.bytes, density.PerByte());
  return loss;
}

void ReplicaView::AddLag(admin::ReplicaSnapshot& s, const ReceiverStatus& rs, int64_t now) const {
  if (rs.local_time_us > 0) s.heartbeat_age_s = (now - rs.local_time_us) / 1e6;
  // The source's clock now, as carried by its last heartbeat: no clock skew.
  const int64_t source_now = rs.source_time_us + (now - rs.local_time_us);
  const int64_t grace = int64_t{config.heartbeat_ms} * 1000;
  auto lag = [&](Position pos) {
    admin::LagFigures f;
    if (rs.primary_wal_lsn.valid() && pos.lsn.valid()) {
      f.bytes = rs.primary_wal_lsn.BytesAfter(pos.lsn);
    }
    f.seconds = tracker.LagSeconds(pos, source_now, grace);
    return f;
  };
  s.received_lag = lag(s.received);
  s.durable_lag = lag(s.durable);
  s.applied_lag = lag(s.applied);
  s.potential_loss = Loss(rs, s.durable);
}

void ReplicaView::AddApply(admin::ReplicaSnapshot& s) const {
  {
    std::lock_guard lock(control.mu);
    // An error stays current until apply gets past the point where it stopped.
    if (!control.error.empty() && s.applied == control.error_at) s.apply_error = control.error;
    s.apply_running = !control.waiting;
    s.apply_failures = control.failures;
  }
  Applier::Stats as = applier.stats();
  s.txns = as.txns;
  s.changes = as.changes;
  s.groups = as.groups;
  s.apply_bytes = as.bytes;
  s.skipped = as.skipped;
  s.apply_reconnects = as.reconnects;
  s.batch_retries = as.batch_retries;
  s.collapsed = as.collapsed;
  s.collapse_fallbacks = as.collapse_fallbacks;
  s.parallel_groups = as.parallel_groups;
  s.parallel_fallbacks = as.parallel_fallbacks;
  s.ddl_refused = as.ddl_refused;
  s.apply_retrying = as.retrying;
  s.apply_rate = rate.PerSecond();
}

admin::ReplicaSnapshot ReplicaView::Snapshot() const {
  admin::ReplicaSnapshot s;
  s.id = IdentityOf(config, receiver.epoch(), started);
  ReceiverStatus rs = receiver.status();
  s.connected = rs.connected;
  s.source_site = rs.source_site;
  s.upstream = fmt::format("{}:{}", upstream.host, upstream.port);
  s.durable = std::max(rs.durable, spool.durable());
  s.received = std::max(rs.received, s.durable);
  s.applied = applier.applied();
  s.primary_wal_lsn = rs.primary_wal_lsn;
  AddLag(s, rs, NowUs());
  s.received_txns = rs.units;
  s.spool_bytes = spool.size_bytes();
  s.spool_oldest = spool.oldest();
  s.spool_write_error = spool.write_error();
  s.receiver_error = rs.last_error;
  s.raw_bytes_in = rs.raw_bytes_in;
  s.wire_bytes_in = rs.wire_bytes_in;
  s.frames = rs.frames;
  s.records = rs.records;
  s.receiver_reconnects = rs.reconnects;
  AddApply(s);
  s.seed = seed.Snapshot();
  return s;
}

}  // namespace geosync
