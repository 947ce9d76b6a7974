// Frame header encoding, checks and the incremental stream parser.
//
// Frame header, 20 bytes, integers little-endian:
//   offset size  field
//   0      4     magic        0x4E595347: the bytes 'G' 'S' 'Y' 'N'
//   4      1     version      1
//   5      1     type         FrameType: 1 Data .. 6 Error, 16-31 Seed*
//   6      1     flags        bit 0: payload is zstd-compressed; others 0
//   7      1     reserved     0
//   8      4     payload_len  bytes after the header, <= 16 MiB
//   12     4     raw_len      payload size after decompression, <= 64 MiB;
//                             equal to payload_len when bit 0 is clear
//   16     4     crc32c       CRC-32C of bytes 0-15, then the payload
// followed by payload_len bytes of payload.
#include "common/frame.h"

#include <cassert>
#include <cstring>

#include <fmt/format.h>

#include "common/checksum.h"
#include "common/encoding.h"

namespace geosync {
namespace {

constexpr size_t kChecksummedHeaderBytes = 16;

Status HeaderError(std::string_view message, uint64_t stream_offset) {
  return Status::Protocol(fmt::format("frame: {} at stream offset {}", message, stream_offset));
}

}  // namespace

bool IsKnownFrameType(uint8_t type) {
  return (type >= static_cast<uint8_t>(FrameType::kData) &&
          type <= static_cast<uint8_t>(FrameType::kError)) ||
         (type >= static_cast<uint8_t>(FrameType::kSeedFirst) &&
          type <= static_cast<uint8_t>(FrameType::kSeedLast));
}

std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& header) {
  std::string bytes;
  bytes.reserve(kFrameHeaderSize);
  PutFixed32(kFrameMagic, &bytes);
  bytes.push_back(static_cast<char>(kFrameVersion));
  bytes.push_back(static_cast<char>(header.type));
  bytes.push_back(static_cast<char>(header.flags));
  bytes.push_back(0);  // reserved
  PutFixed32(header.payload_size, &bytes);
  PutFixed32(header.raw_size, &bytes);
  PutFixed32(header.checksum, &bytes);
  std::array<uint8_t, kFrameHeaderSize> out;
  std::memcpy(out.data(), bytes.data(), kFrameHeaderSize);
  return out;
}

uint32_t ComputeFrameChecksum(const FrameHeader& header, std::span<const uint8_t> payload) {
  const auto bytes = EncodeFrameHeader(header);
  Crc32cBuilder crc;
  crc.Update(std::span(bytes).first(kChecksummedHeaderBytes));
  crc.Update(payload);
  return crc.Value();
}

void AppendFrame(FrameType type, uint8_t flags, uint32_t raw_size, std::span<const uint8_t> payload,
                 std::string* out) {
  assert(payload.size() <= kMaxFramePayload);
  assert((flags & kFrameCompressed) != 0 || raw_size == payload.size());
  FrameHeader header{type, flags, static_cast<uint32_t>(payload.size()), raw_size, 0};
  header.checksum = ComputeFrameChecksum(header, payload);
  const auto bytes = EncodeFrameHeader(header);
  out->append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  out->append(reinterpret_cast<const char*>(payload.data()), payload.size());
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes, uint64_t stream_offset) {
  if (bytes.size() < kFrameHeaderSize) {
    return HeaderError(
        fmt::format("truncated header ({} of {} bytes)", bytes.size(), kFrameHeaderSize),
        stream_offset);
  }
  const uint32_t magic = DecodeFixed32(&bytes[0]);
  if (magic != kFrameMagic) {
    return HeaderError(fmt::format("bad magic 0x{:08x}", magic), stream_offset);
  }
  if (bytes[4] != kFrameVersion) {
    return HeaderError(
        fmt::format("unknown version {} (this build reads {})", bytes[4], kFrameVersion),
        stream_offset);
  }
  if (!IsKnownFrameType(bytes[5])) {
    return HeaderError(fmt::format("unknown type {}", bytes[5]), stream_offset);
  }
  if ((bytes[6] & ~kFrameKnownFlags) != 0) {
    return HeaderError(fmt::format("unknown flag bits 0x{:02x}", bytes[6] & ~kFrameKnownFlags),
                       stream_offset);
  }
  if (bytes[7] != 0) {
    return HeaderError(fmt::format("reserved byte is 0x{:02x}, not 0", bytes[7]), stream_offset);
  }
  FrameHeader h;
  h.type = static_cast<FrameType>(bytes[5]);
  h.flags = bytes[6];
  h.payload_size = DecodeFixed32(&bytes[8]);
  h.raw_size = DecodeFixed32(&bytes[12]);
  h.checksum = DecodeFixed32(&bytes[16]);
  if (h.payload_size > kMaxFramePayload) {
    return HeaderError(fmt::format("payload length {} exceeds the {} byte limit", h.payload_size,
                                   kMaxFramePayload),
                       stream_offset);
  }
  if (h.compressed() && h.raw_size > kMaxFrameRawSize) {
    return HeaderError(
        fmt::format("raw length {} exceeds the {} byte limit", h.raw_size, kMaxFrameRawSize),
        stream_offset);
  }
  if (!h.compressed() && h.raw_size != h.payload_size) {
    return HeaderError(fmt::format("raw length {} differs from payload length {} in an "
                                   "uncompressed frame",
                                   h.raw_size, h.payload_size),
                       stream_offset);
  }
  return h;
}

Status VerifyFrame(const FrameHeader& header, std::span<const uint8_t> payload) {
  if (payload.size() != header.payload_size) {
    return Status::Protocol(fmt::format("frame: payload is {} bytes, header says {}",
                                        payload.size(), header.payload_size));
  }
  const uint32_t computed = ComputeFrameChecksum(header, payload);
  if (computed != header.checksum) {
    return Status::Corruption(
        fmt::format("frame: checksum mismatch (stored 0x{:08x}, computed "
                    "0x{:08x})",
                    header.checksum, computed));
  }
  return Status::Ok();
}

void FrameReader::Feed(std::span<const uint8_t> bytes) {
  // Drop consumed bytes once they dominate, so the buffer stays about one
  // frame long without moving memory on every call.
  if (start_ > 0 && start_ >= buffer_.size() / 2) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Result<std::optional<Frame>> FrameReader::Next() {
  if (!error_.ok()) return error_;
  const auto available =
      std::span(reinterpret_cast<const uint8_t*>(buffer_.data()) + start_, buffer_.size() - start_);
  if (!header_) {
    if (available.size() < kFrameHeaderSize) return std::optional<Frame>();
    // The header is checked here, before waiting for (and buffering) a
    // payload whose length it announces.
    auto header = DecodeFrameHeader(available.first(kFrameHeaderSize), consumed_);
    if (!header.ok()) {
      error_ = header.status();
      return error_;
    }
    header_ = *header;
  }
  const size_t frame_size = kFrameHeaderSize + header_->payload_size;
  if (available.size() < frame_size) return std::optional<Frame>();
  const auto payload = available.subspan(kFrameHeaderSize, header_->payload_size);
  if (Status st = VerifyFrame(*header_, payload); !st.ok()) {
    error_ =
        Status(st.code(), fmt::format("{} in frame at stream offset {}", st.message(), consumed_));
    return error_;
  }
  Frame frame{*header_, std::string(reinterpret_cast<const char*>(payload.data()), payload.size())};
  header_.reset();
  start_ += frame_size;
  consumed_ += frame_size;
  return std::optional<Frame>(std::move(frame));
}

}  // namespace geosync
