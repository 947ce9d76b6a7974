// Lsn parsing and formatting in PostgreSQL's "X/Y" notation.
#include "common/lsn.h"

#include <charconv>

#include <fmt/format.h>

namespace geosync {
namespace {

bool ParseHex32(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 8) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 16);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

Result<Lsn> Lsn::Parse(std::string_view text) {
  auto slash = text.find('/');
  uint32_t hi = 0, lo = 0;
  if (slash == std::string_view::npos || !ParseHex32(text.substr(0, slash), &hi) ||
      !ParseHex32(text.substr(slash + 1), &lo)) {
    return Status::InvalidArgument(
        fmt::format("invalid LSN \"{}\": expected two hex numbers like 16/B374D848", text));
  }
  return Lsn((uint64_t{hi} << 32) | lo);
}

std::string Lsn::ToString() const {
  return fmt::format("{:X}/{:X}", static_cast<uint32_t>(value_ >> 32),
                     static_cast<uint32_t>(value_));
}

std::string Position::ToString() const { return fmt::format("{}@{}", epoch, lsn.ToString()); }

Result<Position> Position::Parse(std::string_view text) {
  auto at = text.find('@');
  if (at == std::string_view::npos || at == 0) {
    return Status::InvalidArgument(
        fmt::format("invalid position \"{}\": expected EPOCH@LSN like 1@16/B374D848", text));
  }
  uint64_t epoch = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + at, epoch);
  if (ec != std::errc() || ptr != text.data() + at) {
    return Status::InvalidArgument(fmt::format("invalid epoch in position \"{}\"", text));
  }
  GEOSYNC_ASSIGN_OR_RETURN(Lsn lsn, Lsn::Parse(text.substr(at + 1)));
  return Position{epoch, lsn};
}

}  // namespace geosync
