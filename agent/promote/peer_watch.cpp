// PeerWatch; see peer_watch.h.
#include "agent/promote/peer_watch.h"

#include <spdlog/spdlog.h>

#include "agent/promote/promote_plan.h"
#include "common/handshake.h"

namespace geosync {

std::optional<HigherEpoch> FindHigherEpoch(const Topology& topology, const std::string& self,
                                           uint64_t epoch, LinkRefusals* refusals) {
  Topology others = topology;
  std::erase_if(others.sites, [&](const TopologySite& s) { return s.name == self; });
  std::optional<HigherEpoch> higher;
  for (const promote::SiteReport& r : promote::Survey(others)) {
    if (!r.reachable) continue;
    switch (ClassifyEpoch(r.epoch, epoch)) {
      case EpochClaim::kImpossible:
        spdlog::error("peer watch: ignoring site {}'s /status: {}", r.name,
                      ImpossibleEpochReason(r.epoch, epoch));
        if (refusals) refusals->PeerEpoch(r.name);
        break;
      case EpochClaim::kHigher:
        if (!higher) higher = HigherEpoch{r.name, r.epoch};
        break;
      case EpochClaim::kNotHigher:
        break;
    }
  }
  return higher;
}

PeerWatch::PeerWatch(Topology topology, std::string self, uint64_t epoch,
                     std::function<void(const HigherEpoch&)> on_higher,
                     std::chrono::milliseconds period, LinkRefusals* refusals)
    : topology_(std::move(topology)),
      self_(std::move(self)),
      epoch_(epoch),
      on_higher_(std::move(on_higher)),
      period_(period),
      refusals_(refusals) {}

PeerWatch::~PeerWatch() { Stop(); }

void PeerWatch::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      auto higher = FindHigherEpoch(topology_, self_, epoch_, refusals_);
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
