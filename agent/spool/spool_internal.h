// Private to agent/spool: the state a Spool shares with its readers.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/lsn.h"
#include "common/status.h"

namespace geosync {
namespace spool_internal {

struct SegmentInfo {
  uint64_t id = 0;  // creation order within this process; consecutive
  std::string name;
  Position first;            // position of its first record (its name)
  Position last;             // last complete durable unit; Position{} if none
  uint64_t bytes = 0;        // bytes in the file, buffered ones included
  uint64_t durable_end = 0;  // readers may read up to here: complete fsynced units
  bool sealed = false;       // rotated away from: never written again
};

struct Shared {
  std::string dir;
  mutable std::mutex mu;
  // Everything below is guarded by mu.
  std::vector<SegmentInfo> segments;  // in spool order; the last one is active
  uint64_t next_id = 0;
  Position durable;
  Position released;
  Position last_appended;
  uint64_t total_bytes = 0;

  std::string Path(std::string_view name) const { return fmt::format("{}/{}", dir, name); }
  SegmentInfo* Find(uint64_t id) {
    for (auto& s : segments) {
      if (s.id == id) return &s;
    }
    return nullptr;
  }
};

// Io status "<what> <path>: <strerror(errno)>".
Status Errno(std::string_view what, const std::string& path);

// fsync of a directory: a rename or unlink in it is durable after this.
Status FsyncDir(const std::string& dir);

// Scans every segment of shared.dir into shared.segments, cutting the last
// one's torn tail (spool_recovery.cpp). Corruption anywhere else is an error.
Status Recover(Shared& shared);

}  // namespace spool_internal

}  // namespace geosync
