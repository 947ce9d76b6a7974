// The replica role: receives the source's stream into the spool and applies
// it to the site's PostgreSQL exactly once (docs/architecture.md).
#pragma once

#include "agent/promote/site_control.h"
#include "common/status.h"

namespace geosync {

// Runs until a signal, a fatal error or a requested role change. A seed
// requested through POST /admin/seed reruns this role, which then seeds
// before streaming; a requested promotion first waits until everything
// received is applied.
Status RunReplica(SiteControl& control);

}  // namespace geosync
