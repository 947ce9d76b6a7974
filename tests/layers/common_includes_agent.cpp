// Layer case (tests/layers/CMakeLists.txt): common/ is the I/O-free core: it sees nothing of
// agent/.
#include "agent/spool/spool.h"

int geosync_layer_case_common_includes_agent() { return 0; }
