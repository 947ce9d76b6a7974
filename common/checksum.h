// CRC-32C (Castagnoli), the checksum of wire frames and spool records.
// Built on Boost.CRC; the polynomial is the one iSCSI, ext4 and LevelDB use.
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
  Crc32cBuilder();

  void Update(std::span<const uint8_t> bytes);
  void Update(std::string_view bytes);
  // The checksum of everything fed so far; Update() may continue afterwards.
  uint32_t Value() const;
  void Reset();

 private:
  // Boost.CRC's interim remainder: kept as a plain integer so this header
  // does not pull Boost into every includer.
  uint32_t remainder_;
};

}  // namespace geosync
