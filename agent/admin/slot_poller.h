// SlotPoller: the source's view of its replication slot for the admin API,
// read every `interval` on its own thread and connection (the event loop never
// waits on PostgreSQL): active, confirmed_flush_lsn, restart_lsn, and the WAL
// the slot makes the primary keep (pg_current_wal_lsn() - restart_lsn), and
// the WAL watchdog: retained WAL against max_slot_wal_keep_size, wal_status.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/pg/pg_conn.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync::admin {

struct SlotSample {
  bool polled = false;  // at least one poll succeeded
  bool active = false;
  Lsn confirmed_flush, restart_lsn, current_wal_lsn;
  std::optional<uint64_t> retained_wal_bytes;
  std::string wal_status;  // reserved, extended, unreserved, lost; "" when unknown
  std::optional<int64_t> wal_keep_size_bytes;  // max_slot_wal_keep_size, -1 = unlimited
  // Free bytes on the filesystem of the primary's pg_wal, when geosyncd runs
  // on the database host and can see the data directory; unknown otherwise.
  std::optional<uint64_t> wal_disk_free_bytes;
  std::string error;  // the last poll's failure, or what is wrong with the slot
};

class SlotPoller {
 public:
  SlotPoller(std::string conninfo, std::string slot,
             std::chrono::milliseconds interval = std::chrono::seconds(1));
  ~SlotPoller();  // Stop()
  SlotPoller(const SlotPoller&) = delete;
  SlotPoller& operator=(const SlotPoller&) = delete;

  void Start();
  void Stop();
  SlotSample sample() const;

 private:
  void Loop();
  bool disk_warned_ = false;
  Status PollOnce(SlotSample* out);

  std::string conninfo_;
  std::string slot_;
  std::chrono::milliseconds interval_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  SlotSample sample_;
  PgConn conn_;  // the poller thread's own
};

}  // namespace geosync::admin
