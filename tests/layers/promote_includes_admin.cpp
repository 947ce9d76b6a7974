// Layer case (tests/layers/CMakeLists.txt): allowed: promote declares admin.
#include "agent/admin/status_model.h"

int geosync_layer_case_promote_includes_admin() { return 0; }
