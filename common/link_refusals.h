// Counts of refused site-link inputs (forged or malformed Hellos, replies,
// acks and epoch claims) for /metrics: every refusal is logged where it
// happens and counted here. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace geosync {

class LinkRefusals {
 public:
  struct Counts {
    std::map<std::string, uint64_t> hellos;       // by reason (HelloRefusalName, "malformed", ...)
    uint64_t acks = 0;                            // acks beyond what a session sent
    std::map<std::string, uint64_t> sources;      // replica: source replies refused, by reason
    std::map<std::string, uint64_t> peer_epochs;  // impossible epochs in a peer's /status, by site
  };

  void Hello(std::string_view reason);
  void Ack();
  void Source(std::string_view reason);
  void PeerEpoch(std::string_view site);
  Counts counts() const;

 private:
  mutable std::mutex mu_;
  Counts counts_;
};

// The Prometheus text of the counts: the source's families (refused hellos,
// acks, peer epochs) or the replica's (refused sources). Families always
// appear, so that a dashboard sees 0 rather than nothing.
std::string LinkRefusalMetricsText(const LinkRefusals::Counts& counts, bool source);

}  // namespace geosync
