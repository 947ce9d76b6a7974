// The wall clock as the wire and the status documents carry it.
#pragma once

#include <chrono>
#include <cstdint>

namespace geosync {

// Microseconds since the Unix epoch (system_clock): heartbeats, last-seen
// times and lag samples.
inline int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace geosync
