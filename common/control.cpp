// Encoding of the control messages. Same notation as encoding.cpp: u8 is one
// byte, varint unsigned LEB128, zigzag a zigzag-mapped varint, str a varint
// length + bytes, and a position is { varint epoch; varint lsn }.
#include "common/control.h"

#include <cassert>

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync {
namespace {

constexpr uint8_t kHelloType = 'H';
constexpr uint8_t kHelloReplyType = 'h';
constexpr uint8_t kHeartbeatType = 'k';
constexpr uint8_t kAckType = 'A';
constexpr uint8_t kErrorType = 'E';

constexpr uint8_t kReplyAccepted = 0x01;
constexpr uint8_t kReplyHasCode = 0x02;

void PutPosition(const Position& p, std::string* out) {
  PutVarint(p.epoch, out);
  PutVarint(p.lsn.value(), out);
}

Result<Position> ReadPosition(WireReader& r, std::string_view field) {
  Position p;
  GEOSYNC_ASSIGN_OR_RETURN(p.epoch, r.Varint(fmt::format("{}.epoch", field)));
  GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint(fmt::format("{}.lsn", field)));
  p.lsn = Lsn(lsn);
  return p;
}

}  // namespace

void EncodeHello(const Hello& m, std::string* out) {
  PutRecordHeader(kHelloType, out);
  PutVarint(m.protocol_version, out);
  PutLengthPrefixed(m.cluster_id, out);
  PutLengthPrefixed(m.site_name, out);
  PutVarint(m.epoch, out);
  PutPosition(m.durable, out);
  PutVarint(m.flags, out);
}

// Hello ('H'):
//   u8      version           1
//   u8      type              'H'
//   varint  protocol_version  kProtocolVersion
//   str     cluster_id
//   str     site_name
//   varint  epoch
//   varint  durable.epoch
//   varint  durable.lsn
//   varint  flags             bit 0 accepts zstd, bit 1 needs seed; others 0
Result<Hello> DecodeHello(std::span<const uint8_t> bytes) {
  return DecodeRecord<Hello>(
      bytes, "hello decode", kHelloType, [](WireReader& r, Hello& m) -> Status {
        GEOSYNC_ASSIGN_OR_RETURN(m.protocol_version, r.Varint32("protocol_version"));
        GEOSYNC_ASSIGN_OR_RETURN(m.cluster_id, r.LengthPrefixed("cluster_id"));
        GEOSYNC_ASSIGN_OR_RETURN(m.site_name, r.LengthPrefixed("site_name"));
        GEOSYNC_ASSIGN_OR_RETURN(m.epoch, r.Varint("epoch"));
        GEOSYNC_ASSIGN_OR_RETURN(m.durable, ReadPosition(r, "durable"));
        const size_t flags_at = r.offset();
        GEOSYNC_ASSIGN_OR_RETURN(m.flags, r.Varint32("flags"));
        if ((m.flags & ~kHelloKnownFlags) != 0) {
          return r.Error(fmt::format("unknown flag bits 0x{:x}", m.flags & ~kHelloKnownFlags),
                         flags_at);
        }
        return Status::Ok();
      });
}

const char* HelloRefusalName(HelloRefusal code) {
  switch (code) {
    case HelloRefusal::kUnspecified:
      return "unspecified";
    case HelloRefusal::kProtocolVersion:
      return "protocol_version";
    case HelloRefusal::kOtherCluster:
      return "other_cluster";
    case HelloRefusal::kUnknownSite:
      return "unknown_site";
    case HelloRefusal::kCertificateMismatch:
      return "certificate_mismatch";
    case HelloRefusal::kImpossibleEpoch:
      return "impossible_epoch";
    case HelloRefusal::kStaleSource:
      return "stale_source";
    case HelloRefusal::kDiverged:
      return "diverged";
    case HelloRefusal::kDropped:
      return "dropped";
    case HelloRefusal::kNeedsSeed:
      return "needs_seed";
    case HelloRefusal::kNoSeeds:
      return "no_seeds";
  }
  return "unspecified";
}

void EncodeHelloReply(const HelloReply& m, std::string* out) {
  // A code only ever travels with a refusal: an accepted reply, or one
  // without a code, keeps the protocol 2 layout.
  const bool has_code = !m.accepted && m.code != HelloRefusal::kUnspecified;
  PutRecordHeader(kHelloReplyType, out);
  out->push_back(
      static_cast<char>((m.accepted ? kReplyAccepted : 0) | (has_code ? kReplyHasCode : 0)));
  PutLengthPrefixed(m.error, out);
  PutLengthPrefixed(m.source_site, out);
  PutVarint(m.source_epoch, out);
  PutPosition(m.start, out);
  if (has_code) PutVarint(static_cast<uint64_t>(m.code), out);
}

// HelloReply ('h'):
//   u8      version           1
//   u8      type              'h'
//   u8      flags             bit 0 accepted; bit 1 a refusal code follows
//                             (protocol >= 3, never with bit 0); others 0
//   str     error             empty when accepted
//   str     source_site
//   varint  source_epoch
//   varint  start.epoch
//   varint  start.lsn
//   varint  code              only with flags bit 1: HelloRefusal, 1 to 10
Result<HelloReply> DecodeHelloReply(std::span<const uint8_t> bytes) {
  return DecodeRecord<HelloReply>(
      bytes, "hello reply decode", kHelloReplyType, [](WireReader& r, HelloReply& m) -> Status {
        const size_t flags_at = r.offset();
        GEOSYNC_ASSIGN_OR_RETURN(uint8_t flags, r.U8("flags"));
        GEOSYNC_RETURN_IF_ERROR(r.CheckFlags(flags, kReplyAccepted | kReplyHasCode, flags_at));
        m.accepted = (flags & kReplyAccepted) != 0;
        const bool has_code = (flags & kReplyHasCode) != 0;
        if (m.accepted && has_code) {
          return r.Error("an accepted reply carries a refusal code", flags_at);
        }
        GEOSYNC_ASSIGN_OR_RETURN(m.error, r.LengthPrefixed("error"));
        GEOSYNC_ASSIGN_OR_RETURN(m.source_site, r.LengthPrefixed("source_site"));
        GEOSYNC_ASSIGN_OR_RETURN(m.source_epoch, r.Varint("source_epoch"));
        GEOSYNC_ASSIGN_OR_RETURN(m.start, ReadPosition(r, "start"));
        if (has_code) {
          const size_t code_at = r.offset();
          GEOSYNC_ASSIGN_OR_RETURN(uint64_t code, r.Varint("code"));
          if (code == 0 || code > kMaxHelloRefusal) {
            return r.Error(fmt::format("unknown refusal code {}", code), code_at);
          }
          m.code = static_cast<HelloRefusal>(code);
        }
        return Status::Ok();
      });
}

void EncodeHeartbeat(const Heartbeat& m, std::string* out) {
  PutRecordHeader(kHeartbeatType, out);
  PutZigzag(m.sender_time_us, out);
  PutVarint(m.primary_wal_lsn.value(), out);
  PutPosition(m.source_commit, out);
}

// Heartbeat ('k'):
//   u8      version           1
//   u8      type              'k'
//   zigzag  sender_time_us    sender's clock, µs since 1970-01-01 UTC
//   varint  primary_wal_lsn
//   varint  source_commit.epoch
//   varint  source_commit.lsn
Result<Heartbeat> DecodeHeartbeat(std::span<const uint8_t> bytes) {
  return DecodeRecord<Heartbeat>(
      bytes, "heartbeat decode", kHeartbeatType, [](WireReader& r, Heartbeat& m) -> Status {
        GEOSYNC_ASSIGN_OR_RETURN(m.sender_time_us, r.Zigzag("sender_time_us"));
        GEOSYNC_ASSIGN_OR_RETURN(uint64_t lsn, r.Varint("primary_wal_lsn"));
        m.primary_wal_lsn = Lsn(lsn);
        GEOSYNC_ASSIGN_OR_RETURN(m.source_commit, ReadPosition(r, "source_commit"));
        return Status::Ok();
      });
}

void EncodeAck(const Ack& m, std::string* out) {
  PutRecordHeader(kAckType, out);
  PutPosition(m.received, out);
  PutPosition(m.durable, out);
  PutPosition(m.applied, out);
  PutZigzag(m.applied_commit_time, out);
}

// Ack ('A'):
//   u8      version           1
//   u8      type              'A'
//   varint  received.epoch,  varint received.lsn
//   varint  durable.epoch,   varint durable.lsn
//   varint  applied.epoch,   varint applied.lsn
//   zigzag  applied_commit_time   µs since 2000-01-01 UTC
Result<Ack> DecodeAck(std::span<const uint8_t> bytes) {
  return DecodeRecord<Ack>(bytes, "ack decode", kAckType, [](WireReader& r, Ack& m) -> Status {
    GEOSYNC_ASSIGN_OR_RETURN(m.received, ReadPosition(r, "received"));
    GEOSYNC_ASSIGN_OR_RETURN(m.durable, ReadPosition(r, "durable"));
    GEOSYNC_ASSIGN_OR_RETURN(m.applied, ReadPosition(r, "applied"));
    GEOSYNC_ASSIGN_OR_RETURN(m.applied_commit_time, r.Zigzag("applied_commit_time"));
    return Status::Ok();
  });
}

ErrorMessage ErrorMessage::FromStatus(const Status& status) {
  assert(!status.ok());
  return ErrorMessage{status.code(), status.message()};
}

Status ErrorMessage::ToStatus() const {
  return Status(code, fmt::format("peer reported: {}", message));
}

void EncodeErrorMessage(const ErrorMessage& m, std::string* out) {
  PutRecordHeader(kErrorType, out);
  PutVarint(static_cast<uint64_t>(m.code), out);
  PutLengthPrefixed(m.message, out);
}

// Error ('E'):
//   u8      version           1
//   u8      type              'E'
//   varint  code              geosync::Code, 1 (kIo) to 10 (kFenced)
//   str     message
Result<ErrorMessage> DecodeErrorMessage(std::span<const uint8_t> bytes) {
  return DecodeRecord<ErrorMessage>(
      bytes, "error decode", kErrorType, [](WireReader& r, ErrorMessage& m) -> Status {
        const size_t code_at = r.offset();
        GEOSYNC_ASSIGN_OR_RETURN(uint64_t code, r.Varint("code"));
        if (code == 0 || code > static_cast<uint64_t>(Code::kFenced)) {
          return r.Error(fmt::format("unknown error code {}", code), code_at);
        }
        m.code = static_cast<Code>(code);
        GEOSYNC_ASSIGN_OR_RETURN(m.message, r.LengthPrefixed("message"));
        return Status::Ok();
      });
}

}  // namespace geosync
