// Layer case (tests/layers/CMakeLists.txt): promote may not see the CLI: the daemon would depend on
// geosyncctl.
#include "agent/ctl/commands.h"

int geosync_layer_case_promote_includes_ctl() { return 0; }
