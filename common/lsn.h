// Log sequence numbers and stream positions. An LSN is a byte position in
// PostgreSQL's WAL, written "16/B374D848". Every position geosync stores or
// sends is an (epoch, LSN) pair: the epoch is the promotion counter, so an LSN
// from an old primary can never be confused with one from the new primary.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace geosync {

class Lsn {
 public:
  constexpr Lsn() = default;
  constexpr explicit Lsn(uint64_t value) : value_(value) {}

  static constexpr Lsn Invalid() { return Lsn(0); }
  // Parses "X/Y" where X and Y are 1-8 hex digits, as PostgreSQL prints it.
  static Result<Lsn> Parse(std::string_view text);

  constexpr uint64_t value() const { return value_; }
  constexpr bool valid() const { return value_ != 0; }
  std::string ToString() const;  // "16/B374D848"

  constexpr auto operator<=>(const Lsn&) const = default;
  constexpr Lsn operator+(uint64_t bytes) const { return Lsn(value_ + bytes); }
  // Distance in bytes; zero when `other` is ahead, so lag never goes negative.
  constexpr uint64_t BytesAfter(Lsn other) const {
    return value_ > other.value_ ? value_ - other.value_ : 0;
  }

 private:
  uint64_t value_ = 0;
};

struct Position {
  uint64_t epoch = 0;
  Lsn lsn;

  constexpr auto operator<=>(const Position&) const = default;
  std::string ToString() const;  // "1@16/B374D848"
  static Result<Position> Parse(std::string_view text);
};

}  // namespace geosync
