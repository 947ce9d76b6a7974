// Progress of a replica's seed, shared between the seed threads (writers)
// and the admin API (reader). Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "agent/admin/status_model.h"
#include "common/seed_protocol.h"

namespace geosync::seed {

class SeedProgress {
 public:
  void SetState(std::string state);  // none, in_progress, done
  void SetPhase(std::string phase);
  void SetError(std::string error);
  // A new attempt with this manifest: per-table totals, counters at zero.
  void Begin(const SeedManifest& manifest);
  // `rows` rows, `bytes` COPY bytes of table `index` loaded.
  void Add(size_t index, uint64_t rows, uint64_t bytes);
  void ChunkDone(size_t index);
  admin::SeedSnapshot Snapshot() const;

 private:
  mutable std::mutex mu_;
  admin::SeedSnapshot s_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point copy_started_ = started_;
};

}  // namespace geosync::seed
