// A throwaway single-member etcd (Debian's etcd-server) on loopback, for the
// promotion lock tests: a temp data dir, free ports, killed on destruction.
// A missing /usr/bin/etcd fails Start(), it never skips.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "tests/support/process.h"

namespace geosync::testing {

class EtcdServer {
 public:
  EtcdServer();
  ~EtcdServer();
  // Starts etcd and waits (30 s) until it answers a range request.
  Status Start();
  std::string url() const;  // "http://127.0.0.1:PORT"
  std::string ReadLog() const;

 private:
  std::string dir_;
  uint16_t client_port_ = 0, peer_port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace geosync::testing
