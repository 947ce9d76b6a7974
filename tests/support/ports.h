// TCP ports for servers under test on 127.0.0.1.
#pragma once

#include <cstdint>

namespace geosync::testing {

// A port on 127.0.0.1 that nothing listens on and that no other test
// process holds. Ports come from 20000-32767, below Linux's ephemeral range
// (32768-60999), so that a client's source port never lands on one between
// the pick and the server's bind. Each pick is claimed with an flock on
// /tmp/geosync-test-ports/<port>, held until this process exits, so that
// tests running in parallel never pick the same port. Throws
// std::runtime_error when no port can be claimed.
uint16_t ClaimTcpPort();

}  // namespace geosync::testing
