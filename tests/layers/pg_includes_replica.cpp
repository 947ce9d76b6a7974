// Layer case (tests/layers/CMakeLists.txt): the libpq layer sits below the replica.
#include "agent/replica/applier.h"

int geosync_layer_case_pg_includes_replica() { return 0; }
