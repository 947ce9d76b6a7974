// Shared by the libFuzzer harnesses of tests/fuzz (see README.md there).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/checksum.h"
#include "common/encoding.h"  // AsBytes
#include "common/status.h"

namespace geosync::fuzz {

using Bytes = std::span<const uint8_t>;

// An invariant of the decoder under test broke: abort, so that libFuzzer
// keeps the input as a crash artifact.
[[noreturn]] inline void Fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
  std::abort();
}
#define GEOSYNC_FUZZ_CHECK(cond) \
  ((cond) ? (void)0 : ::geosync::fuzz::Fail(#cond, __FILE__, __LINE__))

// Splits an input into pieces: each is a little-endian u16 length and then
// that many bytes (the last one cut short by the end of the input).
class Pieces {
 public:
  explicit Pieces(Bytes in) : in_(in) {}
  bool Next(Bytes* piece) {
    if (in_.size() < 2) return false;
    size_t n = in_[0] | (size_t{in_[1]} << 8);
    in_ = in_.subspan(2);
    n = std::min(n, in_.size());
    *piece = in_.first(n);
    in_ = in_.subspan(n);
    return true;
  }

 private:
  Bytes in_;
};

inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline void StoreLe32(uint32_t v, uint8_t* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Walks back-to-back length-prefixed records (a header of `header_size`
// bytes whose u32 at `length_at` is the payload length) and rewrites each
// record's CRC-32C at `crc_at`, computed over header bytes [from, to) and
// the payload. Without this, a mutated input almost never gets past the
// checksum and the decoders behind it are never reached; harnesses repair
// only when the input's first byte asks, so the mismatch path stays covered.
inline void RepairChecksums(std::vector<uint8_t>* bytes, size_t header_size, size_t length_at,
                            size_t crc_at, size_t from, size_t to) {
  size_t at = 0;
  while (at + header_size <= bytes->size()) {
    uint8_t* h = bytes->data() + at;
    const uint64_t n = LoadLe32(h + length_at);
    const size_t avail = std::min<uint64_t>(n, bytes->size() - at - header_size);
    Crc32cBuilder crc;
    crc.Update(std::span<const uint8_t>(h + from, to - from));
    crc.Update(std::span<const uint8_t>(h + header_size, avail));
    StoreLe32(crc.Value(), h + crc_at);
    at += header_size + n;
  }
}

// Decodes `in`; a record that decodes must encode back to bytes that decode
// to the same value. A refusal must be Status::Protocol.
template <typename T, typename Decode, typename Encode>
void RoundTrip(Bytes in, Decode decode, Encode encode) {
  Result<T> first = decode(in);
  if (!first.ok()) {
    GEOSYNC_FUZZ_CHECK(first.status().code() == Code::kProtocol);
    return;
  }
  std::string out;
  encode(*first, &out);
  Result<T> second = decode(AsBytes(out));
  GEOSYNC_FUZZ_CHECK(second.ok());
  GEOSYNC_FUZZ_CHECK(*second == *first);
}

}  // namespace geosync::fuzz
