// PeerWatch; see peer_watch.h.
#include "agent/promote/peer_watch.h"

#include <spdlog/spdlog.h>

#include "agent/ctl/promote_plan.h"

namespace geosync {

std::optional<HigherEpoch> FindHigherEpoch(const admin::Topology& topology, const std::string& self,
                                           uint64_t epoch) {
  admin::Topology others = topology;
  std::erase_if(others.sites, [&](const admin::TopologySite& s) { return s.name == self; });
  for (const ctl::SiteReport& r : ctl::Survey(others)) {
    if (r.reachable && r.epoch > epoch) return HigherEpoch{r.name, r.epoch};
  }
  return std::nullopt;
}

PeerWatch::PeerWatch(admin::Topology topology, std::string self, uint64_t epoch,
                     std::function<void(const HigherEpoch&)> on_higher,
                     std::chrono::milliseconds period)
    : topology_(std::move(topology)),
      self_(std::move(self)),
      epoch_(epoch),
      on_higher_(std::move(on_higher)),
      period_(period) {}

PeerWatch::~PeerWatch() { Stop(); }

void PeerWatch::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      auto higher = FindHigherEpoch(topology_, self_, epoch_);
      lock.lock();
      if (higher && !stopping_) {
        lock.unlock();
        on_higher_(*higher);
        return;
      }
      cv_.wait_for(lock, period_, [this] { return stopping_; });
    }
  });
}

void PeerWatch::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace geosync
