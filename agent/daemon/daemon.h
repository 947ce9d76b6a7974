// The geosyncd process: checks, then runs the site's role until SIGTERM.
#pragma once

#include "common/config.h"
#include "common/status.h"

namespace geosync {

// Connects to the site's PostgreSQL (5 s timeout) and checks what the role
// needs: wal_level = logical on a source. Errors name the setting to change.
Status CheckPostgres(const Config& config);

// With admin.listen: the token file (0600, 32+ characters) and the admin
// TLS certificate and key load. Config errors name the key and the file.
Status CheckAdminSetup(const Config& config);

// Runs the configured role until SIGINT/SIGTERM or a fatal error.
Status RunDaemon(const Config& config);

}  // namespace geosync
