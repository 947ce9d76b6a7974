// SeedProgress: counters behind a mutex; ETAs from the copy rate so far.
#include "agent/seed/seed_progress.h"

#include <algorithm>

#include <fmt/format.h>

namespace geosync::seed {

void SeedProgress::SetState(std::string state) {
  std::lock_guard lock(mu_);
  s_.state = std::move(state);
}

void SeedProgress::SetPhase(std::string phase) {
  std::lock_guard lock(mu_);
  if (phase == "copying") copy_started_ = std::chrono::steady_clock::now();
  s_.phase = std::move(phase);
}

void SeedProgress::SetError(std::string error) {
  std::lock_guard lock(mu_);
  s_.error = std::move(error);
}

void SeedProgress::Begin(const SeedManifest& m) {
  std::lock_guard lock(mu_);
  s_.position = m.consistent;
  s_.tables.clear();
  s_.bytes_total = s_.bytes_copied = s_.rows_copied = 0;
  for (const auto& t : m.tables) {
    admin::SeedTableSnapshot x;
    x.table = fmt::format("{}.{}", t.schema, t.name);
    x.bytes_total = t.bytes;
    x.rows_estimate = t.rows_estimate;
    x.chunks_total = static_cast<int>(t.chunks.size());
    s_.bytes_total += t.bytes;
    s_.tables.push_back(std::move(x));
  }
}

void SeedProgress::Add(size_t index, uint64_t rows, uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (index >= s_.tables.size()) return;
  s_.tables[index].rows_copied += rows;
  s_.tables[index].bytes_copied += bytes;
  s_.rows_copied += rows;
  s_.bytes_copied += bytes;
}

void SeedProgress::ChunkDone(size_t index) {
  std::lock_guard lock(mu_);
  if (index < s_.tables.size()) s_.tables[index].chunks_done++;
}

admin::SeedSnapshot SeedProgress::Snapshot() const {
  std::lock_guard lock(mu_);
  admin::SeedSnapshot out = s_;
  const auto now = std::chrono::steady_clock::now();
  out.elapsed_s = std::chrono::duration<double>(now - started_).count();
  if (out.state != "in_progress" || out.phase != "copying") return out;
  // COPY text and heap pages differ in size; the rate in heap bytes is
  // estimated from the fraction of each table done.
  const double copying = std::chrono::duration<double>(now - copy_started_).count();
  double heap_done = 0;
  for (const auto& t : out.tables) {
    if (t.chunks_done == t.chunks_total) {
      heap_done += static_cast<double>(t.bytes_total);
    } else if (t.rows_estimate > 0) {
      heap_done += static_cast<double>(t.bytes_total) *
                   std::min(0.99, static_cast<double>(t.rows_copied) / t.rows_estimate);
    }
  }
  if (heap_done <= 0 || copying <= 0) return out;
  const double rate = heap_done / copying;  // heap bytes per second, all workers
  out.eta_s = std::max(0.0, (static_cast<double>(out.bytes_total) - heap_done) / rate);
  for (auto& t : out.tables) {
    if (t.chunks_done == t.chunks_total) {
      t.eta_s = 0.0;
      continue;
    }
    double frac = t.rows_estimate > 0
                      ? std::min(0.99, static_cast<double>(t.rows_copied) / t.rows_estimate)
                      : 0.0;
    t.eta_s = static_cast<double>(t.bytes_total) * (1 - frac) / rate;
  }
  return out;
}

}  // namespace geosync::seed
