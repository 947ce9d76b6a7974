// geosyncctl drill --switchover: a switchover to a site and back under the
// live workload, measured by a client writing through a multi-host DSN.
// See drill_switchover.cpp and docs/drill.md.
#pragma once

#include <string>
#include <vector>

#include "agent/admin/status_model.h"

namespace geosync::ctl {

// POST /admin/drill/passed?kind=KIND on each named site, so that its
// /metrics says when a drill of that kind last passed there
// (agent/verify/drill_log.h). A site that does not answer gets a warning on
// stderr: the drill itself passed.
void RecordDrillPassed(const Topology& topology, const std::vector<std::string>& sites,
                       const std::string& kind, const std::string& token);

struct SwitchoverDrillArgs {
  std::string topology;
  std::string token_file;
  std::string site;        // the replica that becomes the source, then hands back
  std::string client_dsn;  // every site's PostgreSQL, target_session_attrs=read-write
  std::string client_table = "geosync_drill_writes";
  std::string report_dir = "geosync-drills";
  int timeout_s = 120;  // each step: a switchover, a verify, getting back in sync
};

// Runs the drill, writes its report, prints its figures; the exit code
// (kExitDrillFailed when it ran but a figure failed its check).
int RunSwitchoverDrill(const SwitchoverDrillArgs& args);

}  // namespace geosync::ctl
