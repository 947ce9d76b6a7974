// CRC-32C (Castagnoli), the checksum of wire frames and spool records. The
// polynomial is the one iSCSI, ext4, LevelDB and PostgreSQL's WAL use.
//
// On x86-64 CPUs with SSE4.2 the CRC32 instruction computes it, 8 bytes at a
// time, as PostgreSQL's pg_crc32c_sse42.c does; elsewhere Boost.CRC's
// table-driven crc_optimal does. Both give the same values.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace geosync {

// CRC-32C of `bytes`. Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(std::span<const uint8_t> bytes);
uint32_t Crc32c(std::string_view bytes);

// Incremental CRC-32C: Update() any number of times, then Value(). Feeding
// "1234" then "56789" gives the same value as Crc32c("123456789").
class Crc32cBuilder {
 public:
  Crc32cBuilder() = default;

  void Update(std::span<const uint8_t> bytes);
  void Update(std::string_view bytes);
  // The checksum of everything fed so far; Update() may continue afterwards.
  uint32_t Value() const { return ~state_; }
  void Reset() { state_ = 0xFFFFFFFFu; }

 private:
  // The CRC register, reflected, before the final inversion (the form the
  // CRC32 instruction works on).
  uint32_t state_ = 0xFFFFFFFFu;
};

namespace crc32c_internal {
// Whether this CPU computes it with the CRC32 instruction.
bool Hardware();
// Boost.CRC's table, whatever the CPU: the reference the hardware path is
// tested against.
uint32_t Portable(std::span<const uint8_t> bytes);
}  // namespace crc32c_internal

}  // namespace geosync
