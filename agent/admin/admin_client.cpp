// Admin API client: one request per connection, the whole exchange raced
// against a timer so that a silent or half-open site cannot hang geosyncctl.
#include "agent/admin/admin_client.h"

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

#include <charconv>
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

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("admin URL \"{}\": {}", url, why));
  };
  if (!url.starts_with(kScheme)) return bad("expected http://host:port");
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
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

asio::awaitable<Result<HttpAnswer>> Exchange(HttpUrl url, HttpCall call) {
  auto ex = co_await asio::this_coro::executor;
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
  if (rdec) co_return Status::Io(fmt::format("{}: reading: {}", call.base_url, rdec.message()));
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  HttpAnswer answer;
  answer.status = parser.get().result_int();
  answer.body = std::move(parser.get().body());
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

}  // namespace geosync::admin
