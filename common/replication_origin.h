// The replication origins a replica's apply records its progress under: one
// per epoch, "<prefix>_e<epoch>", where the prefix is "geosync_<cluster id>".
// PostgreSQL keeps each origin's progress crash-safe with the commit that
// advanced it; apply resumes from the newest epoch's (docs/apply.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace geosync {

// "geosync_<cluster_id>".
std::string OriginPrefix(std::string_view cluster_id);

// "<prefix>_e<epoch>".
std::string OriginName(std::string_view prefix, uint64_t epoch);

// "<prefix>_e": every origin of the prefix starts with it (for starts_with()).
std::string OriginNameStart(std::string_view prefix);

// The epoch of an origin named by OriginName(prefix, epoch); nullopt for any
// other name (another prefix, or "<prefix>_e" followed by a non-number).
std::optional<uint64_t> OriginEpoch(std::string_view prefix, std::string_view name);

}  // namespace geosync
