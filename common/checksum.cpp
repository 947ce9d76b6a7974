// CRC-32C: the SSE4.2 CRC32 instruction when the CPU has it, else Boost.CRC.
#include "common/checksum.h"

#include <boost/crc.hpp>

#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace geosync {
namespace {

// CRC-32C: polynomial 0x1EDC6F41, init and final xor all ones, reflected.
using Crc32cType = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

// Boost keeps a reflected CRC's interim remainder bit-reversed against the
// register the instruction works on.
uint32_t ReverseBits(uint32_t v) {
  uint32_t out = 0;
  for (int i = 0; i < 32; ++i, v >>= 1) out = (out << 1) | (v & 1u);
  return out;
}

uint32_t ExtendPortable(uint32_t state, const uint8_t* p, size_t n) {
  Crc32cType crc(ReverseBits(state));
  crc.process_bytes(p, n);
  return ReverseBits(crc.get_interim_remainder());
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t state, const uint8_t* p, size_t n) {
  uint64_t crc = state;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    crc = _mm_crc32_u64(crc, word);
  }
  auto crc32 = static_cast<uint32_t>(crc);
  for (; n > 0; ++p, --n) crc32 = _mm_crc32_u8(crc32, *p);
  return crc32;
}

const bool kSse42 = __builtin_cpu_supports("sse4.2");
#endif

uint32_t Extend(uint32_t state, const uint8_t* p, size_t n) {
#if defined(__x86_64__)
  if (kSse42) return ExtendSse42(state, p, n);
#endif
  return ExtendPortable(state, p, n);
}

const uint8_t* Bytes(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

}  // namespace

uint32_t Crc32c(std::span<const uint8_t> bytes) {
  return ~Extend(0xFFFFFFFFu, bytes.data(), bytes.size());
}

uint32_t Crc32c(std::string_view bytes) { return ~Extend(0xFFFFFFFFu, Bytes(bytes), bytes.size()); }

void Crc32cBuilder::Update(std::span<const uint8_t> bytes) {
  state_ = Extend(state_, bytes.data(), bytes.size());
}

void Crc32cBuilder::Update(std::string_view bytes) {
  state_ = Extend(state_, Bytes(bytes), bytes.size());
}

namespace crc32c_internal {

bool Hardware() {
#if defined(__x86_64__)
  return kSse42;
#else
  return false;
#endif
}

uint32_t Portable(std::span<const uint8_t> bytes) {
  return ~ExtendPortable(0xFFFFFFFFu, bytes.data(), bytes.size());
}

}  // namespace crc32c_internal
}  // namespace geosync
