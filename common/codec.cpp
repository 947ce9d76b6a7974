// zstd streaming contexts behind RAII handles, and the frame encoder/decoder
// pair that uses them.
#include "common/codec.h"

#include <algorithm>

#include <fmt/format.h>
#include <zstd.h>

#include "common/encoding.h"

namespace geosync {
namespace {

// Levels 20-22 ("ultra") default to windows larger than kZstdMaxWindowLog.
constexpr int kMaxLevel = 19;

std::string ToString(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

bool IsCompressible(FrameType type) {
  const auto t = static_cast<uint8_t>(type);
  return type == FrameType::kData || (t >= static_cast<uint8_t>(FrameType::kSeedFirst) &&
                                      t <= static_cast<uint8_t>(FrameType::kSeedLast));
}

}  // namespace

void ZstdCCtxDeleter::operator()(ZSTD_CCtx_s* ctx) const { ZSTD_freeCCtx(ctx); }
void ZstdDCtxDeleter::operator()(ZSTD_DCtx_s* ctx) const { ZSTD_freeDCtx(ctx); }

StreamCompressor::StreamCompressor(int level) {
  if (level == 0) return;
  ctx_.reset(ZSTD_createCCtx());
  if (!ctx_) {
    error_ = Status::Io("zstd: cannot allocate a compression context");
    return;
  }
  level = std::clamp(level, ZSTD_minCLevel(), kMaxLevel);
  size_t rc = ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_compressionLevel, level);
  if (ZSTD_isError(rc)) {
    error_ = Status::Io(fmt::format("zstd: setting level {}: {}", level, ZSTD_getErrorName(rc)));
  }
}

Result<std::string> StreamCompressor::Compress(std::span<const uint8_t> raw) {
  if (!error_.ok()) return error_;
  if (!ctx_) return ToString(raw);
  std::string out(ZSTD_compressBound(raw.size()) + 64, '\0');
  ZSTD_inBuffer in{raw.data(), raw.size(), 0};
  size_t produced = 0;
  for (;;) {
    ZSTD_outBuffer ob{out.data(), out.size(), produced};
    // ZSTD_e_flush ends the current block so the peer can decode everything
    // up to here, but keeps the frame (and its window) open for the next call.
    const size_t remaining = ZSTD_compressStream2(ctx_.get(), &ob, &in, ZSTD_e_flush);
    produced = ob.pos;
    if (ZSTD_isError(remaining)) {
      error_ = Status::Io(fmt::format("zstd compress: {}", ZSTD_getErrorName(remaining)));
      return error_;
    }
    if (remaining == 0 && in.pos == in.size) break;
    out.resize(out.size() * 2);
  }
  out.resize(produced);
  return out;
}

StreamDecompressor::StreamDecompressor() : ctx_(ZSTD_createDCtx()) {
  if (!ctx_) {
    error_ = Status::Io("zstd: cannot allocate a decompression context");
    return;
  }
  size_t rc = ZSTD_DCtx_setParameter(ctx_.get(), ZSTD_d_windowLogMax, kZstdMaxWindowLog);
  if (ZSTD_isError(rc)) {
    error_ = Status::Io(fmt::format("zstd: setting window limit: {}", ZSTD_getErrorName(rc)));
  }
}

Result<std::string> StreamDecompressor::Decompress(std::span<const uint8_t> compressed,
                                                   size_t expected_raw_size) {
  if (!error_.ok()) return error_;
  if (expected_raw_size > kMaxFrameRawSize) {
    error_ = Status::Protocol(fmt::format("zstd: raw size {} exceeds the {} byte limit",
                                          expected_raw_size, kMaxFrameRawSize));
    return error_;
  }
  std::string out(expected_raw_size, '\0');
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  auto too_big = [&] {
    return Status::Corruption(
        fmt::format("zstd: input decompresses to more than {} bytes", expected_raw_size));
  };
  while (in.pos < in.size) {
    const size_t in_before = in.pos, out_before = ob.pos;
    const size_t rc = ZSTD_decompressStream(ctx_.get(), &ob, &in);
    if (ZSTD_isError(rc)) {
      error_ = Status::Corruption(fmt::format("zstd decompress: {}", ZSTD_getErrorName(rc)));
      return error_;
    }
    // No progress means the output is full and zstd has more for it.
    if (in.pos == in_before && ob.pos == out_before) return error_ = too_big();
  }
  if (ob.pos == ob.size) {
    // The output is full: anything zstd still holds would overflow it.
    uint8_t probe;
    ZSTD_outBuffer probe_out{&probe, 1, 0};
    ZSTD_inBuffer no_input{nullptr, 0, 0};
    const size_t rc = ZSTD_decompressStream(ctx_.get(), &probe_out, &no_input);
    if (ZSTD_isError(rc)) {
      error_ = Status::Corruption(fmt::format("zstd decompress: {}", ZSTD_getErrorName(rc)));
      return error_;
    }
    if (probe_out.pos != 0) return error_ = too_big();
  }
  if (ob.pos != expected_raw_size) {
    error_ = Status::Corruption(fmt::format("zstd: input decompresses to {} bytes, expected {}",
                                            ob.pos, expected_raw_size));
    return error_;
  }
  return out;
}

FrameEncoder::FrameEncoder(int compression_level) : compressor_(compression_level) {}

Status FrameEncoder::Encode(FrameType type, std::span<const uint8_t> raw, std::string* out) {
  if (raw.size() > kMaxFramePayload) {
    return Status::InvalidArgument(fmt::format("frame payload of {} bytes exceeds the {} limit",
                                               raw.size(), kMaxFramePayload));
  }
  // A payload whose worst-case compressed size could break the wire limit
  // goes plain: it never enters the shared stream, so the peer stays in step.
  if (!compressor_.enabled() || !IsCompressible(type) ||
      ZSTD_compressBound(raw.size()) + 64 > kMaxFramePayload) {
    AppendFrame(type, 0, static_cast<uint32_t>(raw.size()), raw, out);
    return Status::Ok();
  }
  GEOSYNC_ASSIGN_OR_RETURN(std::string compressed, compressor_.Compress(raw));
  if (compressed.size() > kMaxFramePayload) {
    return Status::Io(fmt::format("zstd: {} bytes compressed to {}, over the frame limit",
                                  raw.size(), compressed.size()));
  }
  AppendFrame(type, kFrameCompressed, static_cast<uint32_t>(raw.size()), AsBytes(compressed), out);
  return Status::Ok();
}

Result<std::optional<DecodedFrame>> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  const uint64_t offset = reader_.stream_offset();
  auto frame = reader_.Next();
  if (!frame.ok()) {
    error_ = frame.status();
    return error_;
  }
  if (!frame->has_value()) return std::optional<DecodedFrame>();
  Frame& f = **frame;
  if (!f.header.compressed()) {
    return std::optional<DecodedFrame>(DecodedFrame{f.header.type, std::move(f.payload)});
  }
  auto raw = Unpack(f.header, AsBytes(f.payload));
  if (!raw.ok()) {
    error_ = raw.status().WithContext(fmt::format("frame at stream offset {}", offset));
    return error_;
  }
  return std::optional<DecodedFrame>(DecodedFrame{f.header.type, std::move(raw).value()});
}

Result<std::string> FrameDecoder::Decode(const FrameHeader& header,
                                         std::span<const uint8_t> payload) {
  GEOSYNC_RETURN_IF_ERROR(VerifyFrame(header, payload));
  return Unpack(header, payload);
}

Result<std::string> FrameDecoder::Unpack(const FrameHeader& header,
                                         std::span<const uint8_t> payload) {
  if (!header.compressed()) return ToString(payload);
  return decompressor_.Decompress(payload, header.raw_size);
}

}  // namespace geosync
