// CRC-32C on Boost.CRC's table-driven crc_optimal.
#include "common/checksum.h"

#include <boost/crc.hpp>

namespace geosync {
namespace {

// CRC-32C: polynomial 0x1EDC6F41, init and final xor all ones, reflected.
using Crc32cType = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

}  // namespace

uint32_t Crc32c(std::span<const uint8_t> bytes) {
  Crc32cType crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

uint32_t Crc32c(std::string_view bytes) {
  Crc32cType crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

Crc32cBuilder::Crc32cBuilder() : remainder_(Crc32cType().get_interim_remainder()) {}

void Crc32cBuilder::Update(std::span<const uint8_t> bytes) {
  Crc32cType crc(remainder_);
  crc.process_bytes(bytes.data(), bytes.size());
  remainder_ = crc.get_interim_remainder();
}

void Crc32cBuilder::Update(std::string_view bytes) {
  Crc32cType crc(remainder_);
  crc.process_bytes(bytes.data(), bytes.size());
  remainder_ = crc.get_interim_remainder();
}

uint32_t Crc32cBuilder::Value() const { return Crc32cType(remainder_).checksum(); }

void Crc32cBuilder::Reset() { remainder_ = Crc32cType().get_interim_remainder(); }

}  // namespace geosync
