// Names of apply's replication origins (replication_origin.h).
#include "common/replication_origin.h"

#include <charconv>

#include <fmt/format.h>

namespace geosync {

std::string OriginPrefix(std::string_view cluster_id) {
  return fmt::format("geosync_{}", cluster_id);
}

std::string OriginName(std::string_view prefix, uint64_t epoch) {
  return fmt::format("{}_e{}", prefix, epoch);
}

std::string OriginNameStart(std::string_view prefix) { return fmt::format("{}_e", prefix); }

std::optional<uint64_t> OriginEpoch(std::string_view prefix, std::string_view name) {
  const std::string start = OriginNameStart(prefix);
  if (!name.starts_with(start) || name.size() == start.size()) return std::nullopt;
  const char* begin = name.data() + start.size();
  const char* end = name.data() + name.size();
  uint64_t epoch = 0;
  auto [p, ec] = std::from_chars(begin, end, epoch);
  if (ec != std::errc() || p != end) return std::nullopt;
  return epoch;
}

}  // namespace geosync
