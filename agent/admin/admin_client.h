// A small HTTP client for the admin API (Boost.Beast): geosyncctl and the
// tests call /status, /metrics and POST /admin/... with one deadline covering
// resolve, connect, write and read.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace geosync::admin {

struct HttpUrl {
  std::string host;
  uint16_t port = 80;
  std::string path;  // "" or "/prefix"
};

// Percent-encodes a query parameter value (all but A-Z a-z 0-9 - . _ ~);
// the admin server's ParseQuery decodes it.
std::string QueryEncode(std::string_view value);

// "http://host:port[/prefix]"; InvalidArgument naming the URL otherwise.
Result<HttpUrl> ParseHttpUrl(std::string_view url);

struct HttpCall {
  std::string method = "GET";
  std::string base_url;  // "http://127.0.0.1:7451"
  std::string target;    // "/status"
  std::string bearer;    // sent as "Authorization: Bearer ..." when not empty
  std::string body;      // request body (POST), sent as content_type
  std::string content_type = "application/json";
  std::chrono::milliseconds timeout{2000};
};

struct HttpAnswer {
  unsigned status = 0;
  std::string body;
};

// Io / Timeout naming the URL when the site does not answer in time.
boost::asio::awaitable<Result<HttpAnswer>> AsyncHttp(HttpCall call);
// The same on a private io_context, for one-off calls.
Result<HttpAnswer> Http(HttpCall call);

}  // namespace geosync::admin
