// SiteRegistry: what the source knows about each replica site: connection,
// the received/durable/applied positions from its acks, and whether it was
// dropped from spool retention. Drives retention and the sync commit policy.
// Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/change.h"
#include "common/control.h"
#include "common/lsn.h"

namespace geosync {

struct SiteProgress {
  std::string site;
  bool connected = false;
  std::string remote;
  Position received, durable, applied;
  PgTimestamp applied_commit_time = 0;
  int64_t last_seen_unix_us = 0;
  bool dropped = false;  // dropped from retention: needs a re-seed
  std::string last_error;
  uint64_t raw_bytes_out = 0, wire_bytes_out = 0;
};

class SiteRegistry {
 public:
  explicit SiteRegistry(std::vector<std::string> sites);

  bool Known(const std::string& site) const;
  // The names of every site this registry serves.
  std::vector<std::string> Sites() const;
  void Connected(const std::string& site, const std::string& remote);
  void Disconnected(const std::string& site, const std::string& error);
  void Update(const std::string& site, const Ack& ack);
  void AddTraffic(const std::string& site, uint64_t raw, uint64_t wire);
  void Drop(const std::string& site, const std::string& why);
  // Whether `site` was dropped from retention and not yet re-seeded; such a
  // site is refused a stream (its Hello position may be gone from the spool,
  // and nothing retains the spool for it any more).
  bool Dropped(const std::string& site) const;
  void Readmit(const std::string& site);
  // A seed of `site` continues the stream after `floor`: retain the spool from
  // there (replacing what the site acknowledged before) and readmit it.
  void Seeding(const std::string& site, Position floor);
  std::vector<SiteProgress> Snapshot() const;

  // The position every retained site holds durably: segments at or before
  // it may be deleted. Position{} while any retained site has not reported.
  Position RetentionFloor() const;
  // The retained site with the lowest durable position (the one to drop when
  // the spool is full), or "" when none.
  std::string Slowest() const;
  // The k-th highest durable position among `sites` (the sync policy's
  // quorum), or Position{} if fewer than k have reported.
  Position Quorum(const std::vector<std::string>& sites, int k) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, SiteProgress> sites_;
};

}  // namespace geosync
