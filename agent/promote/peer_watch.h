// PeerWatch: a source's look-out for a higher epoch elsewhere. Given the
// deployment topology, it asks every other site's admin API for its epoch
// (at start, synchronously, then every few seconds on its own thread) and
// reports the first site that is ahead: this source is stale and must fence
// itself (an old primary that came back after a failover).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/admin/status_model.h"
#include "common/link_refusals.h"

namespace geosync {

struct HigherEpoch {
  std::string site;
  uint64_t epoch = 0;
};

// One round: every other site of `topology`, in parallel, 2 s deadline.
// A /status is unauthenticated: an epoch in it that could not have been
// issued (common/handshake.h ClassifyEpoch) is logged, counted in
// `refusals` when given, and ignored.
std::optional<HigherEpoch> FindHigherEpoch(const Topology& topology, const std::string& self,
                                           uint64_t epoch, LinkRefusals* refusals = nullptr);

class PeerWatch {
 public:
  PeerWatch(Topology topology, std::string self, uint64_t epoch,
            std::function<void(const HigherEpoch&)> on_higher,
            std::chrono::milliseconds period = std::chrono::seconds(3),
            LinkRefusals* refusals = nullptr);
  ~PeerWatch();  // Stop()
  void Start();
  void Stop();

 private:
  Topology topology_;
  std::string self_;
  uint64_t epoch_;
  std::function<void(const HigherEpoch&)> on_higher_;
  std::chrono::milliseconds period_;
  LinkRefusals* refusals_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace geosync
