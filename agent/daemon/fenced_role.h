// The fenced role: a site fenced because a higher epoch exists.
#pragma once

#include "agent/promote/site_control.h"
#include "common/status.h"

namespace geosync {

// Keeps the database read-only (retrying until PostgreSQL answers), ships
// and applies nothing, and serves the admin API so that status shows why and
// rejoin can run. Returns on a signal or a requested role change.
Status RunFenced(SiteControl& control);

}  // namespace geosync
