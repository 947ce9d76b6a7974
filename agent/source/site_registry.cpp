// SiteRegistry: per-site progress for retention and the sync policy.
#include "agent/source/site_registry.h"
#include "common/clock.h"

#include <algorithm>
#include <chrono>

namespace geosync {
namespace {}  // namespace

SiteRegistry::SiteRegistry(std::vector<std::string> sites) {
  for (auto& s : sites) sites_[s].site = s;
}

bool SiteRegistry::Known(const std::string& site) const {
  std::lock_guard lock(mu_);
  return sites_.count(site) > 0;
}

std::vector<std::string> SiteRegistry::Sites() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, s] : sites_) out.push_back(name);
  return out;
}

void SiteRegistry::Connected(const std::string& site, const std::string& remote) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.connected = true;
  s.remote = remote;
  s.last_error.clear();
  s.last_seen_unix_us = NowUs();
}

void SiteRegistry::Disconnected(const std::string& site, const std::string& error) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.connected = false;
  s.last_error = error;
}

void SiteRegistry::Update(const std::string& site, const Ack& ack) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.received = std::max(s.received, ack.received);
  s.durable = std::max(s.durable, ack.durable);
  s.applied = std::max(s.applied, ack.applied);
  s.applied_commit_time = std::max(s.applied_commit_time, ack.applied_commit_time);
  s.last_seen_unix_us = NowUs();
}

void SiteRegistry::AddTraffic(const std::string& site, uint64_t raw, uint64_t wire) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.raw_bytes_out += raw;
  s.wire_bytes_out += wire;
}

void SiteRegistry::Drop(const std::string& site, const std::string& why) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.dropped = true;
  s.last_error = why;
}

bool SiteRegistry::Dropped(const std::string& site) const {
  std::lock_guard lock(mu_);
  auto it = sites_.find(site);
  return it != sites_.end() && it->second.dropped;
}

void SiteRegistry::Readmit(const std::string& site) {
  std::lock_guard lock(mu_);
  sites_[site].dropped = false;
}

void SiteRegistry::Seeding(const std::string& site, Position floor) {
  std::lock_guard lock(mu_);
  auto& s = sites_[site];
  s.dropped = false;
  s.received = s.durable = s.applied = floor;
  s.last_seen_unix_us = NowUs();
}

std::vector<SiteProgress> SiteRegistry::Snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<SiteProgress> out;
  for (const auto& [name, s] : sites_) out.push_back(s);
  return out;
}

Position SiteRegistry::RetentionFloor() const {
  std::lock_guard lock(mu_);
  bool any = false;
  Position floor;
  for (const auto& [name, s] : sites_) {
    if (s.dropped) continue;
    if (!s.durable.lsn.valid()) return Position{};
    floor = any ? std::min(floor, s.durable) : s.durable;
    any = true;
  }
  return floor;
}

std::string SiteRegistry::Slowest() const {
  std::lock_guard lock(mu_);
  std::string slowest;
  Position lowest;
  for (const auto& [name, s] : sites_) {
    if (s.dropped) continue;
    if (slowest.empty() || s.durable < lowest) {
      slowest = name;
      lowest = s.durable;
    }
  }
  return slowest;
}

Position SiteRegistry::Quorum(const std::vector<std::string>& sites, int k) const {
  std::lock_guard lock(mu_);
  std::vector<Position> durable;
  for (const auto& name : sites) {
    auto it = sites_.find(name);
    if (it != sites_.end() && it->second.durable.lsn.valid()) durable.push_back(it->second.durable);
  }
  if (k <= 0 || durable.size() < static_cast<size_t>(k)) return Position{};
  std::sort(durable.begin(), durable.end(), std::greater<>());
  return durable[static_cast<size_t>(k - 1)];
}

}  // namespace geosync
