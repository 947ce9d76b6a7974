// A small HTTP(S) client for the admin API (Boost.Beast): geosyncctl and the
// tests call /status, /metrics and POST /admin/... with one deadline covering
// resolve, connect, TLS handshake, write and read. https:// servers must
// present a certificate from the CA that names the URL's host.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/topology.h"

namespace geosync::admin {

struct HttpUrl {
  bool tls = false;  // https://
  std::string host;
  uint16_t port = 80;
  std::string path;  // "" or "/prefix"
};

// What an https:// call trusts and presents. An empty ca_file trusts the
// system's CAs; cert_file and key_file (both or neither) are the client
// certificate for servers with admin.tls.require_client_cert.
struct ClientTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;

  bool empty() const { return ca_file.empty() && cert_file.empty() && key_file.empty(); }
};

// The ClientTls of calls that set none: the last SetDefaultClientTls, else
// $GEOSYNC_CA_FILE, $GEOSYNC_CERT_FILE and $GEOSYNC_KEY_FILE.
ClientTls DefaultClientTls();
void SetDefaultClientTls(ClientTls tls);

// Percent-encodes a query parameter value (all but A-Z a-z 0-9 - . _ ~);
// the admin server's ParseQuery decodes it.
std::string QueryEncode(std::string_view value);

// "http[s]://host:port[/prefix]"; InvalidArgument naming the URL otherwise.
Result<HttpUrl> ParseHttpUrl(std::string_view url);

struct HttpCall {
  std::string method = "GET";
  std::string base_url;  // "http://127.0.0.1:7451", "https://10.0.0.5:7451"
  std::string target;    // "/status"
  std::string bearer;    // sent as "Authorization: Bearer ..." when not empty
  std::string body;      // request body (POST), sent as content_type
  std::string content_type = "application/json";
  std::chrono::milliseconds timeout{2000};
  ClientTls tls;  // for https://; empty: DefaultClientTls()
};

struct HttpAnswer {
  unsigned status = 0;
  std::string body;
};

// Io / Timeout naming the URL when the site does not answer in time.
boost::asio::awaitable<Result<HttpAnswer>> AsyncHttp(HttpCall call);

// GET /status from every site of the topology at once, each with its own
// deadline: element i is sites[i]'s answer or why there is none.
std::vector<Result<HttpAnswer>> FetchStatusOfAll(const Topology& topology,
                                                 std::chrono::milliseconds timeout,
                                                 const std::string& token);
// The same on a private io_context, for one-off calls.
Result<HttpAnswer> Http(HttpCall call);

}  // namespace geosync::admin
