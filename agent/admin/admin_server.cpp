// Admin HTTP server: Beast parses (with header and body limits), Route()
// decides, one coroutine per connection with a deadline on every request.
#include "agent/admin/admin_server.h"

#include "agent/net/peer_stream.h"

#include <openssl/crypto.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

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

bool TokenMatches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (token.empty() || authorization.substr(0, kBearer.size()) != kBearer) return false;
  std::string_view given = authorization.substr(kBearer.size());
  if (given.size() != token.size()) return false;
  return CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
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
  if (path == "/readyz") {
    Readiness r = handlers.ready ? handlers.ready() : Readiness{true, "ready"};
    return Text(r.ready ? 200 : 503, r.reason);
  }
  HttpReply reply;
  if (path == "/status") {
    reply.content_type = "application/json";
    reply.body = handlers.status ? handlers.status().dump(2) : "{}";
    reply.body += '\n';
  } else {
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply.body = handlers.metrics ? handlers.metrics() : "";
  }
  return reply;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::Config(
        fmt::format("admin.token_file {}: cannot open: {}", path, std::strerror(errno)));
  }
  std::string line;
  std::getline(in, line);
  size_t b = line.find_first_not_of(" \t\r");
  size_t e = line.find_last_not_of(" \t\r");
  std::string token = b == std::string::npos ? "" : line.substr(b, e - b + 1);
  if (token.empty()) {
    return Status::Config(fmt::format("admin.token_file {}: the first line is empty", path));
  }
  return token;
}

AdminServer::AdminServer(asio::io_context& io, AdminServerOptions options, AdminHandlers handlers)
    : io_(io), options_(std::move(options)), handlers_(std::move(handlers)), acceptor_(io) {}

AdminServer::~AdminServer() = default;

Status AdminServer::Listen() {
  GEOSYNC_RETURN_IF_ERROR(OpenAcceptor(acceptor_, options_.listen, "admin API (admin.listen)"));
  port_ = acceptor_.local_endpoint().port();
  spdlog::info("admin API on http://{}:{} (/healthz /readyz /status /metrics{})",
               options_.listen.host, port_,
               options_.token.empty() ? "; POST /admin/ disabled: no admin.token_file" : "");
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
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  const auto lifetime_end = std::chrono::steady_clock::now() + options_.connection_lifetime;
  while (!stopping_) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(options_.max_header_bytes);
    parser.body_limit(options_.max_body_bytes);
    stream.expires_at(
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
    if (reply.status == 401) res.set(http::field::www_authenticate, "Bearer");
    res.keep_alive(req.keep_alive());
    if (req.method() != http::verb::head) res.body() = std::move(reply.body);
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    if (wec || !res.keep_alive()) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  --connections_;
}

}  // namespace geosync::admin
