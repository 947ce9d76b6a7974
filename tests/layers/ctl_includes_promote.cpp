// Layer case (tests/layers/CMakeLists.txt): allowed: ctl declares promote.
#include "agent/promote/promote_plan.h"

int geosync_layer_case_ctl_includes_promote() { return 0; }
