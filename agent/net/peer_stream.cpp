// PeerStream: framed, compressed, optionally TLS-wrapped site connections.
#include "agent/net/peer_stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/x509.h>

#include <fmt/format.h>

namespace geosync {

using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

Status OpenAcceptor(tcp::acceptor& acceptor, const Endpoint& listen, std::string_view what) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(listen.host, ec);
  if (ec) {
    return Status::Config(fmt::format("{}: listen host \"{}\" is not an IP address: {}", what,
                                      listen.host, ec.message()));
  }
  tcp::endpoint ep(addr, listen.port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Io(
        fmt::format("{} cannot listen on {}:{}: {}", what, listen.host, listen.port, ec.message()));
  }
  return Status::Ok();
}

std::shared_ptr<asio::ssl::context> NewTlsContext(asio::ssl::context::method method) {
  auto ctx = std::make_shared<asio::ssl::context>(method);
  boost::system::error_code ignored;  // options only set bits
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1,
                   ignored);
  return ctx;
}

Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const TlsConfig& tls, bool server) {
  auto ctx =
      NewTlsContext(server ? asio::ssl::context::tls_server : asio::ssl::context::tls_client);
  boost::system::error_code ec;
  auto fail = [&](const char* what, const std::string& file) {
    return Status::Config(fmt::format("TLS {} {}: {}", what, file, ec.message()));
  };
  ctx->load_verify_file(tls.ca_file, ec);
  if (ec) return fail("cannot load CA file", tls.ca_file);
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) return fail("cannot load certificate file", tls.cert_file);
  ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
  if (ec) return fail("cannot load private key file", tls.key_file);
  // Mutual authentication: both sides present a certificate from the CA.
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

namespace {
asio::ssl::context& PlainContext() {
  static asio::ssl::context ctx(asio::ssl::context::tls);
  return ctx;
}
}  // namespace

PeerStream::PeerStream(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                       int compression_level)
    : tls_(std::move(tls)),
      stream_(std::move(socket), tls_ ? *tls_ : PlainContext()),
      encoder_(compression_level) {
  boost::system::error_code ec;
  auto ep = stream_.next_layer().remote_endpoint(ec);
  remote_ = ec ? "?" : fmt::format("{}:{}", ep.address().to_string(), ep.port());
  stream_.next_layer().set_option(tcp::no_delay(true), ec);
}

asio::awaitable<Status> PeerStream::Handshake(bool server, std::chrono::milliseconds timeout) {
  if (!tls_) co_return Status::Ok();
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto r = co_await (stream_.async_handshake(
                         server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                         asio::as_tuple(use_awaitable)) ||
                     timer.async_wait(asio::as_tuple(use_awaitable)));
  if (r.index() == 1)
    co_return Status::Timeout(fmt::format("TLS handshake with {} timed out", remote_));
  auto [ec] = std::get<0>(r);
  if (ec && (ec.category() != asio::error::get_ssl_category() ||
             ec == asio::ssl::error::stream_truncated)) {
    // The link broke during the handshake: a network fault, retried.
    co_return Status::Io(
        fmt::format("TLS handshake with {} interrupted: {}", remote_, ec.message()));
  }
  if (ec) {
    co_return Status::Fenced(
        fmt::format("TLS handshake with {} failed: {} (is the peer's certificate signed by "
                    "this deployment's CA?)",
                    remote_, ec.message()));
  }
  co_return Status::Ok();
}

std::string PeerStream::PeerCommonName() {
  if (!tls_) return "";
  X509* cert = SSL_get1_peer_certificate(stream_.native_handle());
  if (!cert) return "";
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf - 1);
  X509_free(cert);
  return buf;
}

asio::awaitable<Status> PeerStream::WriteAll(std::string_view bytes) {
  boost::system::error_code ec;
  if (tls_) {
    std::tie(ec, std::ignore) =
        co_await asio::async_write(stream_, asio::buffer(bytes), asio::as_tuple(use_awaitable));
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(
        stream_.next_layer(), asio::buffer(bytes), asio::as_tuple(use_awaitable));
  }
  if (ec) co_return Status::Io(fmt::format("sending to {}: {}", remote_, ec.message()));
  counters_.wire_out += bytes.size();
  co_return Status::Ok();
}

asio::awaitable<Status> PeerStream::WriteFrame(FrameType type, std::string_view raw) {
  out_.clear();
  GEOSYNC_RETURN_IF_ERROR_CO(encoder_.Encode(
      type, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()),
      &out_));
  counters_.raw_out += raw.size();
  co_return co_await WriteAll(out_);
}

asio::awaitable<Result<DecodedFrame>> PeerStream::ReadFrame(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  in_.resize(64 * 1024);
  for (;;) {
    auto next = decoder_.Next();
    if (!next.ok()) co_return next.status().WithContext(fmt::format("frame from {}", remote_));
    if (next->has_value()) {
      counters_.raw_in += (*next)->payload.size();
      co_return std::move(**next);
    }
    asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
    auto read = [&]() -> asio::awaitable<std::tuple<boost::system::error_code, size_t>> {
      if (tls_)
        co_return co_await stream_.async_read_some(asio::buffer(in_),
                                                   asio::as_tuple(use_awaitable));
      co_return co_await stream_.next_layer().async_read_some(asio::buffer(in_),
                                                              asio::as_tuple(use_awaitable));
    };
    auto r = co_await (read() || timer.async_wait(asio::as_tuple(use_awaitable)));
    if (r.index() == 1) {
      co_return Status::Timeout(
          fmt::format("no frame from {} for {} ms", remote_, timeout.count()));
    }
    auto [ec, n] = std::get<0>(r);
    if (ec == asio::error::eof)
      co_return Status::Io(fmt::format("{} closed the connection", remote_));
    if (ec) co_return Status::Io(fmt::format("reading from {}: {}", remote_, ec.message()));
    counters_.wire_in += n;
    decoder_.Feed(std::span<const uint8_t>(in_.data(), n));
  }
}

void PeerStream::Close() {
  boost::system::error_code ec;
  stream_.next_layer().shutdown(tcp::socket::shutdown_both, ec);
  stream_.next_layer().close(ec);
}

}  // namespace geosync
