// The promotion and rejoin actions of the admin API. Each checks its query,
// records the next role in SiteControl and stops the running role through
// `stop`; RunDaemon then carries out the transition (transitions.h).
//
//   source:   POST /admin/promotion/fence?target=SITE&epoch=N
//             POST /admin/promotion/unfence
//             POST /admin/promotion/demote?site=SITE&host=H&port=P
//   replica:  POST /admin/promotion/promote?epoch=N&peers=A,B&sequence_gap=G&reason=R
//             POST /admin/promotion/follow?site=SITE&host=H&port=P
//   fenced:   POST /admin/rejoin/export?after=E@X/Y
//             POST /admin/rejoin/follow?site=SITE&host=H&port=P&after=E@X/Y
#pragma once

#include <functional>
#include <thread>

#include "agent/admin/admin_server.h"
#include "agent/promote/site_control.h"
#include "agent/source/control_emitter.h"
#include "agent/spool/spool.h"

namespace geosync {

// `fence_thread` runs the switchover fence while the source keeps serving;
// the caller joins it before the role ends.
void AddSourceActions(admin::AdminHandlers& handlers, SiteControl& control, Spool& spool,
                      ControlEmitter& emitter, std::thread& fence_thread,
                      std::function<void()> stop);
void AddReplicaActions(admin::AdminHandlers& handlers, SiteControl& control,
                       std::function<void()> stop_receiver);
void AddRejoinActions(admin::AdminHandlers& handlers, SiteControl& control, Spool& spool,
                      std::function<void()> stop);

}  // namespace geosync
