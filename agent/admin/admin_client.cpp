// Admin API client: one request per connection, the whole exchange raced
// against a timer so that a silent or half-open site cannot hang geosyncctl.
// https:// verifies the server's chain and its host name or IP (RFC 2818).
#include "agent/admin/admin_client.h"
#include "agent/net/peer_stream.h"

#include <cctype>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <charconv>
#include <cstdlib>
#include <mutex>
#include <optional>

#include <fmt/format.h>

namespace geosync::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::use_awaitable;

std::string QueryEncode(std::string_view value) {
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

namespace {

std::mutex default_tls_mu;
std::optional<ClientTls> default_tls;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

ClientTls DefaultClientTls() {
  std::lock_guard lock(default_tls_mu);
  if (default_tls) return *default_tls;
  return ClientTls{Env("GEOSYNC_CA_FILE"), Env("GEOSYNC_CERT_FILE"), Env("GEOSYNC_KEY_FILE")};
}

void SetDefaultClientTls(ClientTls tls) {
  std::lock_guard lock(default_tls_mu);
  default_tls = std::move(tls);
}

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("admin URL \"{}\": {}", url, why));
  };
  HttpUrl out;
  std::string_view rest;
  if (url.starts_with(kHttp)) {
    rest = url.substr(kHttp.size());
  } else if (url.starts_with(kHttps)) {
    rest = url.substr(kHttps.size());
    out.tls = true;
  } else {
    return bad("expected http://host:port or https://host:port");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.path = std::string(rest.substr(slash));
  while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  out.host = std::string(authority.substr(0, colon));
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  std::string_view port = authority.substr(colon + 1);
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
    return bad("the port is not a number from 1 to 65535");
  }
  if (out.host.empty()) return bad("no host");
  out.port = static_cast<uint16_t>(value);
  return out;
}

namespace {

Result<std::shared_ptr<asio::ssl::context>> ClientContext(const ClientTls& tls,
                                                          const std::string& base_url) {
  auto ctx = NewTlsContext(asio::ssl::context::tls_client);
  boost::system::error_code ec;
  auto fail = [&](const char* what, const std::string& file) {
    return Status::Config(fmt::format("{}: {} {}: {}", base_url, what, file, ec.message()));
  };
  if (tls.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return fail("cannot load the system's CAs", "");
  } else {
    ctx->load_verify_file(tls.ca_file, ec);
    if (ec) return fail("cannot load CA file (--ca-file, $GEOSYNC_CA_FILE)", tls.ca_file);
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Status::Config(
        fmt::format("{}: a client certificate needs both --cert and --key", base_url));
  }
  if (!tls.cert_file.empty()) {
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec) return fail("cannot load certificate file (--cert)", tls.cert_file);
    ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
    if (ec) return fail("cannot load private key file (--key)", tls.key_file);
  }
  ctx->set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

template <class Stream>
asio::awaitable<Result<HttpAnswer>> RequestResponse(Stream& stream, const HttpUrl& url,
                                                    const HttpCall& call) {
  http::request<http::string_body> req{http::string_to_verb(call.method), url.path + call.target,
                                       11};
  req.set(http::field::host, url.host);
  req.set(http::field::user_agent, "geosyncctl");
  if (!call.bearer.empty()) req.set(http::field::authorization, "Bearer " + call.bearer);
  if (!call.body.empty()) {
    req.set(http::field::content_type, call.content_type);
    req.body() = call.body;
  }
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, asio::as_tuple(use_awaitable));
  if (wec) co_return Status::Io(fmt::format("{}: sending: {}", call.base_url, wec.message()));
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16u << 20);
  auto [rdec, rn] =
      co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
  if (rdec) {
    co_return Status::Io(fmt::format("{}: reading: {}{}", call.base_url, rdec.message(),
                                     url.tls ? "" : " (is it an https:// admin API?)"));
  }
  HttpAnswer answer;
  answer.status = parser.get().result_int();
  answer.body = std::move(parser.get().body());
  co_return answer;
}

asio::awaitable<Result<HttpAnswer>> Exchange(HttpUrl url, HttpCall call) {
  auto ex = co_await asio::this_coro::executor;
  std::shared_ptr<asio::ssl::context> ctx;
  if (url.tls) {
    auto made = ClientContext(call.tls.empty() ? DefaultClientTls() : call.tls, call.base_url);
    if (!made.ok()) co_return made.status();
    ctx = *made;
  }
  tcp::resolver resolver(ex);
  auto [rec, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port),
                                                          asio::as_tuple(use_awaitable));
  if (rec) {
    co_return Status::Io(
        fmt::format("{}: cannot resolve {}: {}", call.base_url, url.host, rec.message()));
  }
  beast::tcp_stream stream(ex);
  auto [cec, ep] = co_await stream.async_connect(endpoints, asio::as_tuple(use_awaitable));
  if (cec) co_return Status::Io(fmt::format("{}: connect: {}", call.base_url, cec.message()));
  if (!url.tls) {
    auto answer = co_await RequestResponse(stream, url, call);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return answer;
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(stream), *ctx);
  // SNI, and the certificate must name the host (DNS name or IP address).
  if (!SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str())) {
    co_return Status::Io(fmt::format("{}: cannot set the TLS server name", call.base_url));
  }
  tls.set_verify_callback(asio::ssl::host_name_verification(url.host));
  auto [hec] =
      co_await tls.async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (hec) {
    co_return Status::Io(fmt::format(
        "{}: TLS handshake failed: {} (the server's certificate must chain to the CA file "
        "(--ca-file, $GEOSYNC_CA_FILE) and name the host {})",
        call.base_url, hec.message(), url.host));
  }
  auto answer = co_await RequestResponse(tls, url, call);
  boost::system::error_code ignored;
  beast::get_lowest_layer(tls).socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return answer;
}

asio::awaitable<void> Deadline(std::chrono::milliseconds timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
}

}  // namespace

asio::awaitable<Result<HttpAnswer>> AsyncHttp(HttpCall call) {
  using namespace asio::experimental::awaitable_operators;
  auto url = ParseHttpUrl(call.base_url);
  if (!url.ok()) co_return url.status();
  auto timeout = call.timeout;
  std::string base = call.base_url;
  auto result = co_await (Exchange(*url, std::move(call)) || Deadline(timeout));
  if (result.index() == 1) {
    co_return Status::Timeout(fmt::format("{}: no answer within {} ms", base, timeout.count()));
  }
  co_return std::get<0>(std::move(result));
}

Result<HttpAnswer> Http(HttpCall call) {
  asio::io_context io;
  std::optional<Result<HttpAnswer>> out;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { out.emplace(co_await AsyncHttp(std::move(call))); },
      asio::detached);
  io.run();
  if (!out) return Status::Io("admin HTTP call did not finish");
  return std::move(*out);
}

std::vector<Result<HttpAnswer>> FetchStatusOfAll(const Topology& topology,
                                                 std::chrono::milliseconds timeout,
                                                 const std::string& token) {
  boost::asio::io_context io;
  std::vector<Result<HttpAnswer>> answers(topology.sites.size(),
                                          Status::Timeout("GET /status was not sent"));
  for (size_t i = 0; i < topology.sites.size(); ++i) {
    boost::asio::co_spawn(
        io,
        [&, i]() -> boost::asio::awaitable<void> {
          HttpCall call;
          call.base_url = topology.sites[i].admin;
          call.target = "/status";
          call.bearer = token;
          call.timeout = timeout;
          answers[i] = co_await AsyncHttp(std::move(call));
        },
        boost::asio::detached);
  }
  io.run();
  return answers;
}

}  // namespace geosync::admin
