// Frames: the unit of the site-to-site TCP stream. A fixed 20-byte header
// (magic, version, type, flags, lengths, CRC-32C) then the payload: a batch of
// Event records (Data) or one control record. Pure: FrameReader parses bytes
// the caller has read from the socket. Layout in frame.cpp and
// docs/wire-format.md.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/status.h"

namespace geosync {

inline constexpr uint32_t kFrameMagic = 0x4E595347;  // bytes 'G','S','Y','N'
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 20;
// The on-wire payload. A header announcing more is rejected before anything
// is allocated for it.
inline constexpr uint32_t kMaxFramePayload = 16u << 20;
// The payload after decompression.
inline constexpr uint32_t kMaxFrameRawSize = 64u << 20;

// Header flag bits.
inline constexpr uint8_t kFrameCompressed = 0x01;  // payload is zstd (codec.h)
inline constexpr uint8_t kFrameKnownFlags = kFrameCompressed;

enum class FrameType : uint8_t {
  kData = 1,  // length-prefixed Event records (encoding.h)
  kHello = 2,
  kHelloReply = 3,
  kHeartbeat = 4,
  kAck = 5,
  kError = 6,
  // 16-31 are reserved for the seeding protocol (Seed*); accepted by the
  // frame layer, interpreted above it.
  kSeedFirst = 16,
  kSeedLast = 31,
};

bool IsKnownFrameType(uint8_t type);

struct FrameHeader {
  FrameType type = FrameType::kData;
  uint8_t flags = 0;
  uint32_t payload_size = 0;  // bytes on the wire after the header
  uint32_t raw_size = 0;      // bytes after decompression; == payload_size if not compressed
  uint32_t checksum = 0;      // CRC-32C of header bytes 0-15 + payload

  bool compressed() const { return (flags & kFrameCompressed) != 0; }
  bool operator==(const FrameHeader&) const = default;
};

struct Frame {
  FrameHeader header;
  std::string payload;  // as on the wire: still compressed if header.compressed()
};

// All 20 header bytes, storing header.checksum as given.
std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& header);
// The checksum a frame with this header (its first 16 bytes) and payload must carry.
uint32_t ComputeFrameChecksum(const FrameHeader& header, std::span<const uint8_t> payload);
// Appends a complete frame (header with its checksum, then payload) to `out`.
// Preconditions: payload.size() <= kMaxFramePayload; raw_size == payload.size()
// unless `flags` has kFrameCompressed.
void AppendFrame(FrameType type, uint8_t flags, uint32_t raw_size, std::span<const uint8_t> payload,
                 std::string* out);

// Parses and checks a header: magic, version, type, flags, reserved byte and
// both lengths. `stream_offset` (where the header starts) goes into errors:
// "frame: bad magic 0x4e595348 at stream offset 1234". Status::Protocol.
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes, uint64_t stream_offset = 0);
// Checks the payload's length and checksum against the header:
// "frame: checksum mismatch (stored 0x..., computed 0x...)". Status::Corruption.
Status VerifyFrame(const FrameHeader& header, std::span<const uint8_t> payload);

// Incremental parser over a byte stream: Feed() whatever the socket gave,
// then call Next() until it yields nullopt (needs more bytes). A frame comes
// out only once complete and verified. Errors are sticky: the stream cannot
// be resynchronised, so every later Next() returns the same error.
// Buffers at most one frame plus whatever was fed beyond it.
class FrameReader {
 public:
  void Feed(std::span<const uint8_t> bytes);
  Result<std::optional<Frame>> Next();

  // Bytes fed but not yet returned as frames.
  size_t buffered() const { return buffer_.size() - start_; }
  // Stream offset of the next frame's first byte.
  uint64_t stream_offset() const { return consumed_; }

 private:
  std::string buffer_;
  size_t start_ = 0;                   // first unconsumed byte of buffer_
  uint64_t consumed_ = 0;              // bytes consumed since the stream began
  std::optional<FrameHeader> header_;  // decoded header of the frame at start_
  Status error_;
};

}  // namespace geosync
