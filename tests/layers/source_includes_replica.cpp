// Layer case (tests/layers/CMakeLists.txt): source and replica are siblings: neither sees the
// other.
#include "agent/replica/receiver.h"

int geosync_layer_case_source_includes_replica() { return 0; }
