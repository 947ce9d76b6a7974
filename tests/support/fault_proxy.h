// A TCP proxy on 127.0.0.1 that emulates WAN faults between two local peers:
// cuts, hangs, one-way latency, a bandwidth cap, and bit flips. The kernel
// has no netem, so every network-fault test routes its traffic through this.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace geosync::testing {

enum class Direction {
  kClientToServer,  // from whoever connected to the proxy, towards the target
  kServerToClient,
};

enum class CutMode {
  // Close every connection now; accept and close new ones at once. Peers see
  // a reset/EOF, as when a router or the far host restarts.
  kClose,
  // Keep connections open but move no bytes either way; new connections are
  // accepted and left waiting. Peers only notice through their own timeouts,
  // as in a partition. After Restore() the held bytes flow again.
  kHang,
};

// All controls may be called from any thread at any time. The proxy runs one
// io_context on its own thread; per connection and direction a reader queues
// chunks (bounded: kMaxQueuedChunks x kChunkSize) and a writer forwards them
// when their delay and the bandwidth allow, so order is always preserved.
class FaultProxy {
 public:
  static constexpr size_t kChunkSize = 16 * 1024;
  static constexpr size_t kMaxQueuedChunks = 64;

  // Forwards to 127.0.0.1:target_port; listens once Start() succeeds.
  explicit FaultProxy(uint16_t target_port);
  ~FaultProxy();  // Stop()
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  Status Start();
  // Closes the listener and every connection and joins the thread. Idempotent.
  void Stop();

  // The proxy's own port on 127.0.0.1 (valid after Start()).
  uint16_t port() const { return port_; }
  uint16_t target_port() const { return target_port_; }
  // "host=127.0.0.1 port=<proxy port>" plus `rest`, for libpq.
  std::string ConnInfo(const std::string& rest = "user=postgres dbname=postgres") const;

  // Returns once the current connections are closed (kClose) or frozen (kHang).
  void Cut(CutMode mode = CutMode::kClose);
  void Restore();
  bool IsCut() const;
  // Added latency per chunk, in each direction (a round trip gains 2x).
  void SetDelay(std::chrono::milliseconds one_way);
  // Cap per direction, shared by all connections; 0 removes the cap.
  void SetBandwidth(uint64_t bytes_per_second);
  // Flips the high bit (0x80) of each of the next `n` bytes forwarded in
  // `direction`.
  void CorruptNextBytes(Direction direction, uint64_t n);

  uint64_t BytesForwarded(Direction direction) const;
  uint64_t ConnectionsAccepted() const { return accepted_.load(); }
  uint64_t ActiveConnections() const { return active_.load(); }

 private:
  class Impl;
  friend class Impl;

  uint16_t target_port_;
  uint16_t port_ = 0;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<int> cut_mode_{-1};  // -1 = not cut, else CutMode
  std::atomic<int64_t> delay_ms_{0};
  std::atomic<uint64_t> bandwidth_{0};
  std::atomic<uint64_t> corrupt_[2] = {0, 0};
  std::atomic<uint64_t> forwarded_[2] = {0, 0};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> active_{0};
};

}  // namespace geosync::testing
