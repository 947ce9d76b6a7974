// RawPeer: a scripted site-link client.
#include "tests/support/raw_peer.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include "common/encoding.h"

namespace geosync::testing {

RawPeer::RawPeer(uint16_t port, const TlsConfig& tls) : port_(port), tls_config_(tls) {}

RawPeer::~RawPeer() {
  if (stream_) stream_->Close();
}

Status RawPeer::Run(asio::awaitable<Status> work) {
  Status out = Status::Cancelled("raw peer: did not complete");
  asio::co_spawn(io_, std::move(work), [&](std::exception_ptr e, Status st) {
    out = e ? Status::Io("raw peer: exception") : std::move(st);
  });
  io_.restart();
  io_.run();
  return out;
}

Status RawPeer::Connect() {
  std::shared_ptr<asio::ssl::context> tls;
  if (tls_config_.enabled) {
    GEOSYNC_ASSIGN_OR_RETURN(tls, MakeTlsContext(tls_config_, false));
  }
  tcp::socket socket(io_);
  boost::system::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  if (ec) return Status::Io(fmt::format("raw peer: connect to {}: {}", port_, ec.message()));
  stream_ = std::make_unique<PeerStream>(std::move(socket), tls, 0);
  return Run(stream_->Handshake(false, std::chrono::seconds(10)));
}

Result<HelloReply> RawPeer::SayHello(const Hello& hello) {
  HelloReply reply;
  Status st = Run([&]() -> asio::awaitable<Status> {
    std::string bytes;
    EncodeHello(hello, &bytes);
    GEOSYNC_RETURN_IF_ERROR_CO(co_await stream_->WriteFrame(FrameType::kHello, bytes));
    GEOSYNC_ASSIGN_OR_RETURN_CO(DecodedFrame frame,
                                co_await stream_->ReadFrame(std::chrono::seconds(10)));
    if (frame.type == FrameType::kError) {
      GEOSYNC_ASSIGN_OR_RETURN_CO(ErrorMessage err, DecodeErrorMessage(AsBytes(frame.payload)));
      co_return err.ToStatus();
    }
    if (frame.type != FrameType::kHelloReply) {
      co_return Status::Protocol(
          fmt::format("raw peer: Hello answered by frame type {}", static_cast<int>(frame.type)));
    }
    GEOSYNC_ASSIGN_OR_RETURN_CO(reply, DecodeHelloReply(AsBytes(frame.payload)));
    co_return Status::Ok();
  }());
  if (!st.ok()) return st;
  return reply;
}

Status RawPeer::Send(FrameType type, const std::string& payload) {
  return Run(stream_->WriteFrame(type, payload));
}

Status RawPeer::ReadUntilError(std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  return Run([&]() -> asio::awaitable<Status> {
    while (std::chrono::steady_clock::now() < until) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      auto frame = co_await stream_->ReadFrame(std::max(left, std::chrono::milliseconds(1)));
      if (!frame.ok()) co_return frame.status();
      if (frame->type == FrameType::kError) {
        GEOSYNC_ASSIGN_OR_RETURN_CO(ErrorMessage err, DecodeErrorMessage(AsBytes(frame->payload)));
        co_return err.ToStatus();
      }
    }
    co_return Status::Timeout("raw peer: no Error frame before the deadline");
  }());
}

}  // namespace geosync::testing
