// A site-to-site connection: TCP, optionally wrapped in TLS with mutual
// certificate authentication, carrying geosync frames (common/frame.h) with
// one streaming zstd context per direction. Every read has a deadline.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/codec.h"
#include "common/config.h"
#include "common/frame.h"
#include "common/status.h"

namespace geosync {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Opens, binds and listens `acceptor` on `listen` (host must be an IP
// address). `what` names the listener in errors: "admin API", "stream server".
Status OpenAcceptor(tcp::acceptor& acceptor, const Endpoint& listen, std::string_view what);

// Builds the TLS context for a site: its certificate and key, the deployment
// CA, peer verification required both ways. Errors name the file at fault.
Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const TlsConfig& tls, bool server);

// A TLS context that speaks TLS 1.2 or later and nothing older: every TLS
// endpoint of geosync (site links, the admin API and its clients) starts here.
std::shared_ptr<asio::ssl::context> NewTlsContext(asio::ssl::context::method method);

struct TrafficCounters {
  uint64_t raw_out = 0, wire_out = 0, raw_in = 0, wire_in = 0;
};

class PeerStream {
 public:
  // `tls` null means plain TCP.
  PeerStream(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls, int compression_level);

  // TLS handshake (when TLS is on), bounded by `timeout`.
  asio::awaitable<Status> Handshake(bool server, std::chrono::milliseconds timeout);
  // The peer certificate's common name, empty without TLS.
  std::string PeerCommonName();

  asio::awaitable<Status> WriteFrame(FrameType type, std::string_view raw);
  // Reads the next frame, or Timeout after `timeout` with no complete frame.
  asio::awaitable<Result<DecodedFrame>> ReadFrame(std::chrono::milliseconds timeout);
  void Close();
  bool tls() const { return tls_ != nullptr; }
  std::string remote() const { return remote_; }
  const TrafficCounters& counters() const { return counters_; }
  tcp::socket& socket() { return stream_.next_layer(); }

 private:
  asio::awaitable<Status> WriteAll(std::string_view bytes);

  std::shared_ptr<asio::ssl::context> tls_;
  asio::ssl::stream<tcp::socket> stream_;
  FrameEncoder encoder_;
  FrameDecoder decoder_;
  std::string out_;
  std::vector<uint8_t> in_;
  std::string remote_;
  TrafficCounters counters_;
};

}  // namespace geosync
