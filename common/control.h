// Control messages of the site-to-site protocol: the handshake (Hello,
// HelloReply), liveness and lag (Heartbeat), progress (Ack) and refusal
// (ErrorMessage). Each travels as the payload of its own frame type
// (common/frame.h) and is encoded like an Event record: version byte, type
// byte, then varint fields. Layouts are above each decoder in control.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/change.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Version of the site-to-site conversation, negotiated in Hello. Distinct
// from kEncodingVersion, which versions the byte layout of each record.
// 2: Data frames carry record batch format 2 (common/record_batch.h).
// 3: a refused HelloReply carries a HelloRefusal code (flags bit 1).
// A source serves every version from kMinProtocolVersion on, and gives a
// refusal code only to replicas that speak 3 or later.
inline constexpr uint32_t kProtocolVersion = 3;
inline constexpr uint32_t kMinProtocolVersion = 2;

// Hello.flags bits.
// The sender can decompress zstd frames (frame flag bit 0).
inline constexpr uint32_t kHelloAcceptsZstd = 1u << 0;
// The replica has no usable copy and asks for a seed (Seed* frames).
inline constexpr uint32_t kHelloNeedsSeed = 1u << 1;
inline constexpr uint32_t kHelloKnownFlags = kHelloAcceptsZstd | kHelloNeedsSeed;

// Replica -> source, first frame on a connection.
struct Hello {
  uint32_t protocol_version = kProtocolVersion;
  std::string cluster_id;  // both sites must belong to the same deployment
  std::string site_name;   // the replica's name
  uint64_t epoch = 0;      // the newest promotion epoch the replica knows
  Position durable;        // last position durable in the replica's spool; resume after it
  uint32_t flags = 0;      // kHello* bits; others are rejected

  bool operator==(const Hello&) const = default;
};

// Why a source refused a Hello, so that the replica decides on the code and
// not on the text (docs/wire-format.md). Values are on the wire: never reuse
// one. kUnspecified: accepted, or refused by a source older than protocol 3.
enum class HelloRefusal : uint8_t {
  kUnspecified = 0,
  kProtocolVersion = 1,      // a protocol version the source does not serve
  kOtherCluster = 2,         // the replica belongs to another deployment
  kUnknownSite = 3,          // not a site this source serves (or the source itself)
  kCertificateMismatch = 4,  // the TLS certificate names another site
  kImpossibleEpoch = 5,      // an epoch that could not have been issued
  kStaleSource = 6,          // the replica knows a higher epoch: this source is stale
  kDiverged = 7,             // the replica holds an old epoch past its end here
  kDropped = 8,              // dropped from spool retention: needs a re-seed
  kNeedsSeed = 9,            // its position is gone from the spool: needs a re-seed
  kNoSeeds = 10,             // asked for a seed that this source does not serve
};
inline constexpr uint8_t kMaxHelloRefusal = 10;
// "unknown_site", ...: the reason label of geosync_refused_hellos_total.
const char* HelloRefusalName(HelloRefusal code);

// Source -> replica, answer to Hello.
struct HelloReply {
  bool accepted = false;
  std::string error;  // why not, when !accepted
  std::string source_site;
  uint64_t source_epoch = 0;
  Position start;  // the stream resumes after this position
  // When !accepted, for replicas of protocol >= 3; kUnspecified otherwise.
  HelloRefusal code = HelloRefusal::kUnspecified;

  bool operator==(const HelloReply&) const = default;
};

// Source -> replica, periodically and when idle.
struct Heartbeat {
  int64_t sender_time_us = 0;  // sender's clock, µs since the Unix epoch
  Lsn primary_wal_lsn;         // pg_current_wal_lsn() on the primary
  Position source_commit;      // last commit position the source has sent

  bool operator==(const Heartbeat&) const = default;
};

// Replica -> source: how far the replica has got (PostgreSQL's write/flush/
// replay triple).
struct Ack {
  Position received;
  Position durable;
  Position applied;
  PgTimestamp applied_commit_time = 0;  // commit_time of the last applied transaction

  bool operator==(const Ack&) const = default;
};

// Either direction, just before closing the connection.
struct ErrorMessage {
  Code code = Code::kProtocol;  // never kOk
  std::string message;

  bool operator==(const ErrorMessage&) const = default;
  static ErrorMessage FromStatus(const Status& status);
  Status ToStatus() const;  // "peer reported: <message>" with the same code
};

// Each Encode* appends one record; each Decode* takes exactly one record and
// reports problems as Status::Protocol naming the byte offset.
void EncodeHello(const Hello& m, std::string* out);
Result<Hello> DecodeHello(std::span<const uint8_t> bytes);
void EncodeHelloReply(const HelloReply& m, std::string* out);
Result<HelloReply> DecodeHelloReply(std::span<const uint8_t> bytes);
void EncodeHeartbeat(const Heartbeat& m, std::string* out);
Result<Heartbeat> DecodeHeartbeat(std::span<const uint8_t> bytes);
void EncodeAck(const Ack& m, std::string* out);
Result<Ack> DecodeAck(std::span<const uint8_t> bytes);
void EncodeErrorMessage(const ErrorMessage& m, std::string* out);
Result<ErrorMessage> DecodeErrorMessage(std::span<const uint8_t> bytes);

}  // namespace geosync
