// ControlEmitter: writes geosync's control messages into the primary's WAL
// with pg_logical_emit_message (transactional, prefixes under "geosync."):
//   geosync.heartbeat  every heartbeat interval: {"site","epoch","time_us","wal_lsn"}
//                      so an idle database still shows progress and lag;
//   geosync.sequences  every sequence_every heartbeats: [{"schema","name","last_value"}]
//                      so a promoted site can set its sequences.
// Runs on its own thread with a blocking libpq connection.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/status.h"

namespace geosync {

struct ControlEmitterOptions {
  std::string conninfo;
  std::string site;
  uint64_t epoch = 1;
  std::chrono::milliseconds heartbeat_interval{1000};
  int sequence_every = 5;  // heartbeats between sequence snapshots
  static ControlEmitterOptions FromConfig(const Config& config, uint64_t epoch);
};

class ControlEmitter {
 public:
  explicit ControlEmitter(ControlEmitterOptions options) : options_(std::move(options)) {}
  ~ControlEmitter() { Stop(); }
  void Start();
  void Stop();
  uint64_t heartbeats() const { return heartbeats_; }
  uint64_t sequence_snapshots() const { return snapshots_; }
  // Emits one heartbeat and one sequence snapshot now (used by tests and by
  // switchover to mark the final position); blocking.
  static Status EmitOnce(const ControlEmitterOptions& options, bool sequences);

 private:
  void Loop();

  ControlEmitterOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<uint64_t> heartbeats_{0};
  std::atomic<uint64_t> snapshots_{0};
};

}  // namespace geosync
