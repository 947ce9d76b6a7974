// The source role: captures the primary's committed transactions into the
// spool and serves them to the replica sites (docs/architecture.md).
#pragma once

#include "agent/promote/site_control.h"
#include "common/status.h"

namespace geosync {

// Runs until a signal, a fatal error or a requested role change (the
// request is left in `control` for the daemon's role loop). A source that
// finds another site at a higher epoch requests its own fence and returns.
Status RunSource(SiteControl& control);

}  // namespace geosync
