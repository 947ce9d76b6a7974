// The trust rules of a site link (docs/security.md, "Site links") as pure
// functions: what a source accepts in a Hello, what a replica accepts in a
// HelloReply, which epochs could have been issued, how far an Ack may reach
// and where a link may listen without TLS. Every input here can come from
// anyone who reaches a geosync port; only a TLS certificate signed by the
// deployment CA (its common name, `peer_cn`) proves a site's name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/control.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Promotions raise the epoch one at a time, so no honest site is ever far
// ahead of another: a claim more than kMaxEpochJump above one's own epoch
// could not have been issued.
inline constexpr uint64_t kMaxEpochJump = 1000;
// No epoch beyond 2^53 - 1: epochs travel in JSON (state.json, /status) and
// as Prometheus samples, where larger integers lose precision.
inline constexpr uint64_t kMaxEpoch = (uint64_t{1} << 53) - 1;

enum class EpochClaim {
  kNotHigher,   // at or below one's own epoch
  kHigher,      // a promotion happened elsewhere: believe it if the claimant is authenticated
  kImpossible,  // above kMaxEpoch or more than kMaxEpochJump above one's own: refuse
};
// Who may claim anything: a Hello, a HelloReply, a peer's /status.
EpochClaim ClassifyEpoch(uint64_t claimed, uint64_t own);
// "epoch 4611686018427387904 is more than 1000 above this site's epoch 1 ..."
std::string ImpossibleEpochReason(uint64_t claimed, uint64_t own);

// What a source knows when a Hello arrives.
struct HelloPolicy {
  std::string cluster_id;
  std::string self;  // the source's own site name
  uint64_t epoch = 1;
  std::vector<std::string> sites;  // the replica sites this source serves
  bool tls = false;
  std::string peer_cn;  // the client certificate's common name, with TLS
  // Where each earlier epoch ended in this source's lineage.
  std::vector<Position> epoch_ends;
};

struct HelloVerdict {
  HelloRefusal code = HelloRefusal::kUnspecified;  // kUnspecified: accepted
  std::string message;                             // why, when refused
  // The Hello comes from a known site of this cluster that proved its name
  // (with TLS) and reports a plausible higher epoch: this source is stale
  // and must fence itself. Never true for any other refusal.
  bool may_report_epoch = false;

  bool ok() const { return code == HelloRefusal::kUnspecified; }
};

// Produced by anyone who can open a TCP connection to the source (a
// certificate, when TLS is on, is checked by the handshake first). Checks,
// in order: cluster, site, certificate, epoch bound, stale source, protocol
// version, divergence. Without TLS, a site's name is only what it says.
HelloVerdict CheckHello(const Hello& hello, const HelloPolicy& policy);

// What a source can serve, beyond the trust rules.
struct SourceOffer {
  bool serves_seeds = false;  // a seed server is attached
  bool dropped = false;       // the Hello's site was dropped from spool retention
};

// CheckHello, then what this source can serve: a seed Hello is refused
// (kNoSeeds) without a seed server; a streaming Hello of a dropped site is
// refused (kDropped, not a fence: the site stays reachable for a seed).
// Whether the spool still holds the Hello's position is the caller's to ask
// last (kNeedsSeed), since it opens files.
HelloVerdict AdmitHello(const Hello& hello, const HelloPolicy& policy, const SourceOffer& offer);

// What a replica (or a seeding replica) knows when a HelloReply arrives.
struct SourcePolicy {
  std::string self;  // the replica's own site name
  uint64_t epoch = 1;
  // The source it means to follow (state.json source_site after a retarget,
  // else config upstream.site); "" when unknown.
  std::string expected_site;
  // The deployment's sites (config "sites" and the topology's); empty when
  // the replica knows none.
  std::vector<std::string> sites;
  bool tls = false;
  std::string peer_cn;  // the server certificate's common name, with TLS
};

// The source's identity and epoch in an accepted HelloReply, produced by
// whoever answers at the upstream address. With TLS the certificate's name
// is checked; without it, the name the reply claims. Refusals: kUnknownSite
// (not a deployment site, or this site itself), kCertificateMismatch (not the
// expected source, or a certificate for another name than the reply
// claims), kImpossibleEpoch, kStaleSource (an epoch below the replica's).
HelloVerdict CheckSourceReply(const HelloReply& reply, const SourcePolicy& policy);

// The Status a replica acts on for a source's refusal: kFenced (stop) for
// refusals about identity and epochs, kProtocol for a protocol version,
// kNotFound (retry) for the rest and for a refusal without a code (a source
// older than protocol 3).
Code RefusalCode(HelloRefusal refusal);

// How far a replica's Ack may reach on one session. Produced by a site that
// passed CheckHello; a false ack could satisfy the sync quorum or release
// spool that a site still needs.
struct AckBound {
  Position sent;   // the last unit sent on this session, or its start position
  uint64_t epoch;  // the source's epoch
  Lsn wal_end;     // the primary's WAL end as last seen; invalid when unknown
};
// received and durable must not pass `sent`. applied is an end LSN (the end
// of the last applied commit record), a little past its unit's position,
// and a replica's database may hold more than its spool: it must not be of
// an epoch above the source's, nor in the source's epoch past the WAL end.
// Refusals are Status::Protocol naming the field, the claim and the bound.
Status CheckAck(const Ack& ack, const AckBound& bound);

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104; host must be an IP address.
bool IsLoopbackAddress(std::string_view host);
// A link without TLS listens on loopback only, unless the config says
// "allow_plaintext_links": true. Status::Config naming the address otherwise.
Status CheckPlaintextListen(std::string_view host, bool allow_plaintext);

}  // namespace geosync
