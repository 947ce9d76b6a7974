// Trust rules of a site link; see handshake.h and docs/security.md.
#include "common/handshake.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace geosync {
namespace {

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

HelloVerdict Refuse(HelloRefusal code, std::string message) {
  HelloVerdict v;
  v.code = code;
  v.message = std::move(message);
  return v;
}

}  // namespace

EpochClaim ClassifyEpoch(uint64_t claimed, uint64_t own) {
  if (claimed > kMaxEpoch) return EpochClaim::kImpossible;
  if (claimed <= own) return EpochClaim::kNotHigher;
  if (claimed - own > kMaxEpochJump) return EpochClaim::kImpossible;
  return EpochClaim::kHigher;
}

std::string ImpossibleEpochReason(uint64_t claimed, uint64_t own) {
  if (claimed > kMaxEpoch) {
    return fmt::format("epoch {} is above the largest epoch geosync issues ({})", claimed,
                       kMaxEpoch);
  }
  return fmt::format(
      "epoch {} is more than {} above this site's epoch {}: promotions raise the epoch one at a "
      "time, so it could not have been issued",
      claimed, kMaxEpochJump, own);
}

HelloVerdict CheckHello(const Hello& hello, const HelloPolicy& policy) {
  if (hello.cluster_id != policy.cluster_id) {
    return Refuse(HelloRefusal::kOtherCluster,
                  fmt::format("site {} belongs to cluster \"{}\", this source to \"{}\"",
                              hello.site_name, hello.cluster_id, policy.cluster_id));
  }
  if (hello.site_name == policy.self) {
    return Refuse(
        HelloRefusal::kUnknownSite,
        fmt::format("unknown site \"{}\": that is this source's own name", hello.site_name));
  }
  if (!Contains(policy.sites, hello.site_name)) {
    return Refuse(HelloRefusal::kUnknownSite,
                  fmt::format("unknown site \"{}\": add it to \"sites\" in the source's config",
                              hello.site_name));
  }
  if (policy.tls && policy.peer_cn != hello.site_name) {
    return Refuse(HelloRefusal::kCertificateMismatch,
                  fmt::format("site says it is \"{}\" but its certificate is for \"{}\"",
                              hello.site_name, policy.peer_cn));
  }
  // From here on the Hello comes from a known site of this cluster (that
  // proved its name, with TLS).
  const EpochClaim claim = ClassifyEpoch(hello.epoch, policy.epoch);
  if (claim == EpochClaim::kImpossible) {
    return Refuse(HelloRefusal::kImpossibleEpoch,
                  fmt::format("site {} claims {}", hello.site_name,
                              ImpossibleEpochReason(hello.epoch, policy.epoch)));
  }
  if (claim == EpochClaim::kHigher) {
    HelloVerdict v =
        Refuse(HelloRefusal::kStaleSource,
               fmt::format("site {} knows epoch {} but this source is at epoch {}: a newer primary "
                           "exists, this source is stale and stops shipping",
                           hello.site_name, hello.epoch, policy.epoch));
    v.may_report_epoch = true;
    return v;
  }
  if (hello.protocol_version < kMinProtocolVersion || hello.protocol_version > kProtocolVersion) {
    return Refuse(
        HelloRefusal::kProtocolVersion,
        fmt::format("site {} speaks protocol version {}, this source {} to {}", hello.site_name,
                    hello.protocol_version, kMinProtocolVersion, kProtocolVersion));
  }
  for (const Position& end : policy.epoch_ends) {
    if (hello.durable.epoch == end.epoch && hello.durable.lsn > end.lsn) {
      return Refuse(
          HelloRefusal::kDiverged,
          fmt::format(
              "site {} holds epoch {} up to {}, but epoch {} ended at {} on this source: it has "
              "transactions this source never received; run `geosyncctl rejoin --site {}`",
              hello.site_name, end.epoch, hello.durable.lsn.ToString(), end.epoch,
              end.lsn.ToString(), hello.site_name));
    }
  }
  return HelloVerdict{};
}

HelloVerdict CheckSourceReply(const HelloReply& reply, const SourcePolicy& policy) {
  // With TLS the certificate names the source; without it, only its claim does.
  const std::string& name = policy.tls ? policy.peer_cn : reply.source_site;
  const char* what = policy.tls ? "its certificate names" : "it says it is";
  if (!policy.expected_site.empty() && name != policy.expected_site) {
    return Refuse(
        HelloRefusal::kCertificateMismatch,
        fmt::format("expected source \"{}\" but {} \"{}\"", policy.expected_site, what, name));
  }
  if (name.empty() || name == policy.self) {
    return Refuse(
        HelloRefusal::kUnknownSite,
        fmt::format("the source cannot be this site itself or nameless: {} \"{}\"", what, name));
  }
  if (!policy.sites.empty() && !Contains(policy.sites, name)) {
    return Refuse(HelloRefusal::kUnknownSite,
                  fmt::format("the source is not a site of this deployment: {} \"{}\", the "
                              "deployment's sites are {}",
                              what, name, fmt::join(policy.sites, ", ")));
  }
  if (policy.tls && policy.peer_cn != reply.source_site) {
    return Refuse(HelloRefusal::kCertificateMismatch,
                  fmt::format("the source says it is \"{}\" but its certificate is for \"{}\"",
                              reply.source_site, policy.peer_cn));
  }
  switch (ClassifyEpoch(reply.source_epoch, policy.epoch)) {
    case EpochClaim::kImpossible:
      return Refuse(HelloRefusal::kImpossibleEpoch,
                    fmt::format("source {} claims {}", name,
                                ImpossibleEpochReason(reply.source_epoch, policy.epoch)));
    case EpochClaim::kNotHigher:
      if (reply.source_epoch < policy.epoch) {
        return Refuse(HelloRefusal::kStaleSource,
                      fmt::format("source {} is at epoch {} but this site knows epoch {}: "
                                  "refusing a stream from a stale primary",
                                  name, reply.source_epoch, policy.epoch));
      }
      break;
    case EpochClaim::kHigher:
      break;
  }
  return HelloVerdict{};
}

HelloVerdict AdmitHello(const Hello& hello, const HelloPolicy& policy, const SourceOffer& offer) {
  HelloVerdict verdict = CheckHello(hello, policy);
  if (!verdict.ok()) return verdict;
  if ((hello.flags & kHelloNeedsSeed) != 0) {
    if (!offer.serves_seeds) return {HelloRefusal::kNoSeeds, "this source serves no seeds", false};
    return verdict;
  }
  if (offer.dropped) {
    return {HelloRefusal::kDropped,
            fmt::format(
                "site {} was dropped from spool retention (the spool reached spool.max_mb while "
                "it lagged) and needs a re-seed: run `geosyncctl seed --site {}`",
                hello.site_name, hello.site_name),
            false};
  }
  return verdict;
}

Code RefusalCode(HelloRefusal refusal) {
  switch (refusal) {
    case HelloRefusal::kOtherCluster:
    case HelloRefusal::kUnknownSite:
    case HelloRefusal::kCertificateMismatch:
    case HelloRefusal::kImpossibleEpoch:
    case HelloRefusal::kStaleSource:
    case HelloRefusal::kDiverged:
      return Code::kFenced;
    case HelloRefusal::kProtocolVersion:
      return Code::kProtocol;
    case HelloRefusal::kUnspecified:
    case HelloRefusal::kDropped:
    case HelloRefusal::kNeedsSeed:
    case HelloRefusal::kNoSeeds:
      return Code::kNotFound;
  }
  return Code::kNotFound;
}

Status CheckAck(const Ack& ack, const AckBound& bound) {
  auto beyond = [&](const char* field, Position claimed) {
    return Status::Protocol(
        fmt::format("ack claims {} {} but this session sent only up to {}: a forged or broken ack",
                    field, claimed.ToString(), bound.sent.ToString()));
  };
  if (ack.received > bound.sent) return beyond("received", ack.received);
  if (ack.durable > bound.sent) return beyond("durable", ack.durable);
  if (ack.applied.epoch > bound.epoch) {
    return Status::Protocol(
        fmt::format("ack claims applied {} of an epoch above this source's epoch {}: a forged "
                    "or broken ack",
                    ack.applied.ToString(), bound.epoch));
  }
  if (ack.applied.epoch == bound.epoch && bound.wal_end.valid() &&
      ack.applied.lsn > bound.wal_end) {
    return Status::Protocol(
        fmt::format("ack claims applied {} past the primary's WAL end {}: a forged or broken ack",
                    ack.applied.ToString(), bound.wal_end.ToString()));
  }
  return Status::Ok();
}

bool IsLoopbackAddress(std::string_view host) {
  const std::string h(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) != 1) return false;
  static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6.s6_addr, kLoopback, 16) == 0) return true;
  return std::memcmp(v6.s6_addr, kMappedPrefix, 12) == 0 && v6.s6_addr[12] == 127;
}

Status CheckPlaintextListen(std::string_view host, bool allow_plaintext) {
  if (allow_plaintext || IsLoopbackAddress(host)) return Status::Ok();
  return Status::Config(fmt::format(
      "stream server: refusing to listen on {} without TLS: anyone who reaches that address "
      "could claim to be a site. Enable \"tls\", listen on loopback (127.0.0.1, ::1), or set "
      "\"allow_plaintext_links\": true if the network itself is trusted",
      host));
}

}  // namespace geosync
