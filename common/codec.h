// A connection's zstd codec. One compression stream lives as long as the
// connection and is flushed at every frame boundary: each frame decodes on
// arrival, yet small frames share the window of everything sent before, which
// is most of the win on a stream of similar small transactions.
// FrameEncoder/FrameDecoder put the codec and frame.h together.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/frame.h"
#include "common/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace geosync {

struct ZstdCCtxDeleter {
  void operator()(ZSTD_CCtx_s* ctx) const;
};
struct ZstdDCtxDeleter {
  void operator()(ZSTD_DCtx_s* ctx) const;
};

// Back-references reach at most 2^23 bytes (8 MiB) back, which bounds the
// memory a peer can make the decompressor allocate.
inline constexpr int kZstdMaxWindowLog = 23;

class StreamCompressor {
 public:
  // `level` 0 disables compression: Compress() returns its input. Other
  // values are zstd levels, clamped to [ZSTD_minCLevel(), 19] (the ultra
  // levels need windows beyond kZstdMaxWindowLog).
  explicit StreamCompressor(int level);

  bool enabled() const { return ctx_ != nullptr; }
  // Compresses `raw` and flushes, so the output decodes fully once the peer's
  // StreamDecompressor has seen every earlier output of this compressor, in
  // order. After an error the stream is unusable: so is every later call.
  Result<std::string> Compress(std::span<const uint8_t> raw);

 private:
  std::unique_ptr<ZSTD_CCtx_s, ZstdCCtxDeleter> ctx_;
  Status error_;
};

class StreamDecompressor {
 public:
  StreamDecompressor();

  // Decompresses one flushed chunk, which must produce exactly
  // `expected_raw_size` bytes (<= kMaxFrameRawSize). Output is never allowed
  // to grow past that, so a hostile frame cannot blow memory. Corrupt input is
  // Status::Corruption; a size above the cap is Status::Protocol. After an
  // error the stream is unusable: so is every later call.
  Result<std::string> Decompress(std::span<const uint8_t> compressed, size_t expected_raw_size);

 private:
  std::unique_ptr<ZSTD_DCtx_s, ZstdDCtxDeleter> ctx_;
  Status error_;
};

// The sending half of a connection.
class FrameEncoder {
 public:
  // `compression_level` as for StreamCompressor; 0 sends everything plain.
  explicit FrameEncoder(int compression_level);

  // Appends one frame carrying `raw` to `out`. Data and Seed frames go through
  // the shared compressor; control frames are sent plain (they are tiny, and
  // Hello must be readable before compression is agreed). A raw payload over
  // kMaxFramePayload is Status::InvalidArgument: the caller batches smaller.
  Status Encode(FrameType type, std::span<const uint8_t> raw, std::string* out);

 private:
  StreamCompressor compressor_;
};

struct DecodedFrame {
  FrameType type = FrameType::kData;
  std::string payload;  // decompressed
};

// The receiving half of a connection: verify, then decompress.
class FrameDecoder {
 public:
  // Over a byte stream: Feed() what the socket gave, Next() until nullopt.
  // Errors are sticky, a failed decompression too: once the zstd stream is
  // broken, no later frame (plain or not) can be trusted.
  void Feed(std::span<const uint8_t> bytes) { reader_.Feed(bytes); }
  Result<std::optional<DecodedFrame>> Next();

  // For a caller that reads the header and payload itself: checks the
  // checksum and returns the raw payload. Frames must still come in stream
  // order, since compressed ones depend on all earlier ones.
  Result<std::string> Decode(const FrameHeader& header, std::span<const uint8_t> payload);

 private:
  Result<std::string> Unpack(const FrameHeader& header, std::span<const uint8_t> payload);

  FrameReader reader_;
  StreamDecompressor decompressor_;
  Status error_;
};

}  // namespace geosync
