// Admin HTTP(S) server: Beast parses (with header and body limits), Route()
// decides, one coroutine per connection with a deadline on the TLS handshake
// and on every request.
#include "agent/admin/admin_server.h"

#include "agent/net/peer_stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace geosync::admin {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

template <class Stream>
std::string RemoteOf(Stream& stream) {
  boost::system::error_code ec;
  auto ep = beast::get_lowest_layer(stream).socket().remote_endpoint(ec);
  return ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

HttpReply Text(unsigned status, std::string body) {
  HttpReply r;
  r.status = status;
  r.body = std::move(body);
  r.body += '\n';
  return r;
}

}  // namespace

QueryParams ParseQuery(std::string_view query) {
  QueryParams out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      out[Decode(part)] = "";
    } else {
      out[Decode(part.substr(0, eq))] = Decode(part.substr(eq + 1));
    }
  }
  return out;
}

HttpReply Route(const HttpRequestView& request, const AdminHandlers& handlers,
                const std::string& token) {
  std::string_view target = request.target;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  const bool get = request.method == "GET" || request.method == "HEAD";

  if (path.starts_with("/admin/")) {
    if (request.method != "POST") return Text(405, "use POST for /admin/ calls");
    if (!TokenMatches(request.authorization, token)) {
      return Text(401, token.empty() ? "admin calls are disabled: no admin.token_file configured"
                                     : "missing or wrong bearer token");
    }
    auto it = handlers.actions.find(std::string(path.substr(7)));
    if (it == handlers.actions.end()) return Text(404, fmt::format("no such call: {}", path));
    return it->second(ParseQuery(query));
  }
  const bool known =
      path == "/healthz" || path == "/readyz" || path == "/status" || path == "/metrics";
  if (!known) return Text(404, fmt::format("not found: {}", path));
  if (!get) return Text(405, fmt::format("{} takes GET", path));
  if (path == "/healthz") return Text(200, "ok");
  // Without the token, no text that can quote row values (admin_auth.h).
  const bool operator_call = TokenMatches(request.authorization, token);
  // A caller that presents a token this site does not hold is told so (HTTP
  // 401), not served the anonymous view: geosyncctl's dry runs rely on it.
  if (!operator_call && !request.authorization.empty()) {
    return Text(401, token.empty() ? "this site has no admin.token_file: it holds no token"
                                   : "wrong bearer token");
  }
  if (path == "/readyz") {
    Readiness r = handlers.ready ? handlers.ready() : Readiness{true, "ready"};
    return Text(r.ready ? 200 : 503, operator_call ? r.reason : RedactReadinessReason(r.reason));
  }
  HttpReply reply;
  if (path == "/status") {
    reply.content_type = "application/json";
    nlohmann::json status = handlers.status ? handlers.status() : nlohmann::json::object();
    reply.body = (operator_call ? status : RedactStatus(std::move(status))).dump(2);
    reply.body += '\n';
  } else {
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply.body = handlers.metrics ? handlers.metrics() : "";
  }
  return reply;
}

Result<std::shared_ptr<asio::ssl::context>> MakeAdminTlsContext(const AdminTlsConfig& tls) {
  auto ctx = NewTlsContext(asio::ssl::context::tls_server);
  boost::system::error_code ec;
  auto fail = [&](const char* key, const std::string& file) {
    return Status::Config(fmt::format("{} {}: {}", key, file, ec.message()));
  };
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) return fail("admin.tls.cert_file", tls.cert_file);
  ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
  if (ec) return fail("admin.tls.key_file", tls.key_file);
  if (!tls.ca_file.empty()) {
    ctx->load_verify_file(tls.ca_file, ec);
    if (ec) return fail("admin.tls.ca_file", tls.ca_file);
  }
  if (tls.require_client_cert) {
    ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none);
  }
  return ctx;
}

AdminServer::AdminServer(asio::io_context& io, AdminServerOptions options, AdminHandlers handlers)
    : io_(io), options_(std::move(options)), handlers_(std::move(handlers)), acceptor_(io) {}

AdminServer::~AdminServer() = default;

Status AdminServer::Listen() {
  GEOSYNC_RETURN_IF_ERROR(OpenAcceptor(acceptor_, options_.listen, "admin API (admin.listen)"));
  port_ = acceptor_.local_endpoint().port();
  spdlog::info("admin API on {}://{}:{} (/healthz /readyz /status /metrics{})",
               options_.tls ? "https" : "http", options_.listen.host, port_,
               options_.token.empty() ? "; POST /admin/ disabled: no admin.token_file" : "");
  if (!options_.tls && !IsLoopbackHost(options_.listen.host)) {
    spdlog::warn(
        "SECURITY WARNING: the admin API listens on {}:{} with plain HTTP "
        "(admin.allow_plaintext): bearer tokens and /status cross the network in clear text. "
        "Enable admin.tls (docs/security.md)",
        options_.listen.host, port_);
  }
  return Status::Ok();
}

void AdminServer::Stop() {
  stopping_ = true;
  asio::post(io_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
}

asio::awaitable<void> AdminServer::AcceptLoop() {
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted) co_return;
      spdlog::warn("admin API: accept failed: {}", ec.message());
      continue;
    }
    if (connections_ >= options_.max_connections) {
      spdlog::warn("admin API: {} connections open, refusing one more", connections_);
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(io_, Serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> AdminServer::Serve(tcp::socket socket) {
  ++connections_;
  beast::tcp_stream tcp_stream(std::move(socket));
  if (!options_.tls) {
    co_await ServeRequests(tcp_stream);
    boost::system::error_code ignored;
    tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  } else {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *options_.tls);
    beast::get_lowest_layer(stream).expires_after(options_.request_timeout);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server,
                                                 asio::as_tuple(asio::use_awaitable));
    if (hec) {
      // Plain HTTP sent to the HTTPS port, or a client without a certificate
      // from the CA under require_client_cert.
      spdlog::info("admin API: TLS handshake with {} failed: {}", RemoteOf(stream), hec.message());
    } else {
      co_await ServeRequests(stream);
      beast::get_lowest_layer(stream).expires_after(options_.request_timeout);
      co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
    }
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().close(ignored);
  }
  --connections_;
}

template <class Stream>
asio::awaitable<void> AdminServer::ServeRequests(Stream& stream) {
  beast::flat_buffer buffer;
  const auto lifetime_end = std::chrono::steady_clock::now() + options_.connection_lifetime;
  while (!stopping_) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(options_.max_header_bytes);
    parser.body_limit(options_.max_body_bytes);
    beast::get_lowest_layer(stream).expires_at(
        std::min(lifetime_end, std::chrono::steady_clock::now() + options_.request_timeout));
    auto [rec, rn] =
        co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    if (rec) {
      if (rec == http::error::header_limit || rec == http::error::body_limit) {
        http::response<http::string_body> too_big{http::status::payload_too_large, 11};
        too_big.set(http::field::connection, "close");
        too_big.body() = "request too large\n";
        too_big.prepare_payload();
        co_await http::async_write(stream, too_big, asio::as_tuple(asio::use_awaitable));
      }
      break;
    }
    const auto& req = parser.get();
    HttpRequestView view{std::string(req.method_string()), std::string(req.target()),
                         std::string(req[http::field::authorization])};
    HttpReply reply = Route(view, handlers_, options_.token);
    http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
    res.set(http::field::server, "geosyncd");
    res.set(http::field::content_type, reply.content_type);
    res.set(http::field::cache_control, "no-store");
    if (reply.status == 401) res.set(http::field::www_authenticate, "Bearer");
    res.keep_alive(req.keep_alive());
    if (req.method() != http::verb::head) res.body() = std::move(reply.body);
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    if (wec || !res.keep_alive()) break;
  }
}

}  // namespace geosync::admin
