// Source spool retention, run by the source daemon once a second.
#pragma once

#include <cstdint>

#include "agent/source/site_registry.h"
#include "agent/spool/spool.h"

namespace geosync {

// Deletes the spool segments every retained site holds durably. If the spool
// is still at or over `max_bytes` (0: no cap), drops the slowest site from
// retention (it then needs a re-seed, and says so loudly) and releases again,
// until the spool is under the cap, no site is left, or dropping the slowest
// site would free nothing.
void EnforceRetention(uint64_t max_bytes, Spool& spool, SiteRegistry& registry);

}  // namespace geosync
