// A hand-driven site link for hostile tests: connects to a source (plain TCP
// or TLS with whatever certificate the test chooses), sends the Hello and
// frames the test writes, and reads what comes back. Blocking: each call
// drives its own io_context, with a deadline on every read.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agent/net/peer_stream.h"
#include "common/config.h"
#include "common/control.h"

namespace geosync::testing {

class RawPeer {
 public:
  // `tls` disabled: plain TCP. Connects to 127.0.0.1:port.
  RawPeer(uint16_t port, const TlsConfig& tls);
  ~RawPeer();

  // TCP connect and TLS handshake.
  Status Connect();
  // Sends `hello` and decodes the source's HelloReply (an Error frame
  // becomes its Status).
  Result<HelloReply> SayHello(const Hello& hello);
  Status Send(FrameType type, const std::string& payload);
  // Reads frames until an Error frame (returned as its Status), the end of
  // the connection (Status::Io) or `deadline`.
  Status ReadUntilError(std::chrono::milliseconds deadline);

 private:
  Status Run(asio::awaitable<Status> work);

  uint16_t port_;
  TlsConfig tls_config_;
  asio::io_context io_;
  std::unique_ptr<PeerStream> stream_;
};

}  // namespace geosync::testing
