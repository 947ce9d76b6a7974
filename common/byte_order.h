// Fixed-width unsigned integers in a byte order of the format's choosing,
// assembled with shifts: no alignment or host-order assumption. The spool
// and the record batches are little-endian; PostgreSQL's protocols and the
// stream spill files are big-endian (network order).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

namespace geosync {

template <std::unsigned_integral T>
void StoreLe(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <std::unsigned_integral T>
T LoadLe(const uint8_t* p) {
  T v = 0;
  for (size_t i = sizeof(T); i-- > 0;) v = static_cast<T>((v << 8) | p[i]);
  return v;
}

template <std::unsigned_integral T>
T LoadBe(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>((v << 8) | p[i]);
  return v;
}

// Appends `v` big-endian to a container of bytes (std::string or
// std::vector<uint8_t>).
template <std::unsigned_integral T, typename Bytes>
void AppendBe(Bytes* out, T v) {
  using Byte = typename Bytes::value_type;
  for (size_t i = sizeof(T); i-- > 0;) out->push_back(static_cast<Byte>(v >> (8 * i)));
}

// Appends `v` little-endian to a container of bytes.
template <std::unsigned_integral T, typename Bytes>
void AppendLe(Bytes* out, T v) {
  using Byte = typename Bytes::value_type;
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<Byte>(v >> (8 * i)));
}

}  // namespace geosync
