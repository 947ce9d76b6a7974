// SlotPoller: a few small queries every interval on a private connection.
#include "agent/admin/slot_poller.h"

#include <sys/statvfs.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/admin/status_model.h"
#include "agent/pg/pg_conn.h"

namespace geosync::admin {

SlotPoller::SlotPoller(std::string conninfo, std::string slot, std::chrono::milliseconds interval)
    : conninfo_(std::move(conninfo)), slot_(std::move(slot)), interval_(interval) {}

SlotPoller::~SlotPoller() { Stop(); }

void SlotPoller::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void SlotPoller::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SlotSample SlotPoller::sample() const {
  std::lock_guard lock(mu_);
  return sample_;
}

namespace {

// Logs each change of the watchdog's verdict once: an invalidated slot is
// critical (every site needs a re-seed), retained WAL near the limit a warning.
void LogSlotHealth(const SlotHealth& now, SlotHealth* last) {
  if (now.invalidated != last->invalidated) {
    if (now.invalidated) {
      spdlog::critical("slot watchdog: {}", now.message);
    } else {
      spdlog::info("slot watchdog: the replication slot retains its WAL again");
    }
  }
  if (now.near_limit != last->near_limit && !now.invalidated) {
    if (now.near_limit) {
      spdlog::warn("slot watchdog: {}", now.message);
    } else {
      spdlog::info("slot watchdog: retained WAL is back under {:.0f}% of max_slot_wal_keep_size",
                   kSlotWalWarnFraction * 100);
    }
  }
  *last = now;
}

}  // namespace

void SlotPoller::Loop() {
  std::string last_logged;
  SlotHealth last_health;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    SlotSample s;
    Status st = PollOnce(&s);
    lock.lock();
    if (st.ok()) {
      sample_ = s;
      SlotHealth health = CheckSlotWal(slot_, s.retained_wal_bytes,
                                       s.wal_keep_size_bytes.value_or(-1), s.wal_status);
      LogSlotHealth(health, &last_health);
      // The disk can fill before max_slot_wal_keep_size is reached.
      bool disk_low = s.wal_disk_free_bytes && s.retained_wal_bytes &&
                      *s.wal_disk_free_bytes < *s.retained_wal_bytes;
      if (disk_low && !disk_warned_) {
        spdlog::warn(
            "slot {} retains {} bytes of WAL but only {} bytes are free on the primary's WAL "
            "disk: a lagging site may fill it",
            slot_, *s.retained_wal_bytes, *s.wal_disk_free_bytes);
      }
      disk_warned_ = disk_low;
      if (health.invalidated) sample_.error = health.message;
    } else {
      // Keep the last good figures; say why they are stale.
      sample_.active = false;
      sample_.error = "cannot read the slot: " + st.ToString();
    }
    if (!sample_.error.empty() && sample_.error != last_logged) {
      // A slot not (yet) active is capture's business and capture logs it.
      if (st.ok()) {
        spdlog::debug("slot poller: {}", sample_.error);
      } else {
        spdlog::warn("slot poller: {}", sample_.error);
      }
    }
    last_logged = sample_.error;
    cv_.wait_for(lock, interval_, [&] { return stop_; });
  }
}

Status SlotPoller::PollOnce(SlotSample* out) {
  if (!conn_.connected()) {
    GEOSYNC_ASSIGN_OR_RETURN(conn_, PgConn::Connect(conninfo_));
  }
  auto r = conn_.ExecParams(
      "SELECT active, confirmed_flush_lsn, restart_lsn, pg_current_wal_lsn(), "
      "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status, "
      "(SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size') "
      "FROM pg_replication_slots WHERE slot_name = $1",
      {slot_});
  if (!r.ok()) {
    conn_ = PgConn();
    return r.status();
  }
  out->polled = true;
  if (r->rows() == 0) {
    out->error = fmt::format("replication slot {} does not exist yet", slot_);
    auto wal = conn_.QueryValue("SELECT pg_current_wal_lsn()");
    if (wal.ok()) {
      auto lsn = Lsn::Parse(*wal);
      if (lsn.ok()) out->current_wal_lsn = *lsn;
    }
    return Status::Ok();
  }
  auto lsn = [&](int col) {
    if (r->IsNull(0, col)) return Lsn();
    auto v = Lsn::Parse(r->Get(0, col));
    return v.ok() ? *v : Lsn();
  };
  out->active = r->Get(0, 0) == "t";
  out->confirmed_flush = lsn(1);
  out->restart_lsn = lsn(2);
  out->current_wal_lsn = lsn(3);
  if (!r->IsNull(0, 4)) out->retained_wal_bytes = std::stoull(r->Get(0, 4));
  if (!r->IsNull(0, 5)) out->wal_status = r->Get(0, 5);
  if (!r->IsNull(0, 6)) {
    // pg_settings gives max_slot_wal_keep_size in MB.
    int64_t mb = std::stoll(r->Get(0, 6));
    out->wal_keep_size_bytes = mb < 0 ? -1 : mb * 1024 * 1024;
  }
  if (!out->active) out->error = fmt::format("replication slot {} is not active", slot_);
  auto dir = conn_.QueryValue("SELECT current_setting('data_directory')");
  struct statvfs fs {};
  if (dir.ok() && ::statvfs((*dir + "/pg_wal").c_str(), &fs) == 0) {
    out->wal_disk_free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  }
  return Status::Ok();
}

}  // namespace geosync::admin
