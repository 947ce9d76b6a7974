// The admin HTTP(S) API of geosyncd (Boost.Beast on the daemon's io_context):
// GET /healthz /readyz /status /metrics, and POST /admin/... guarded by a
// bearer token. Handlers run on the event loop and must not block: they read
// snapshots the daemon keeps current, never PostgreSQL. Requests come from
// anyone who reaches admin.listen; with admin.tls.require_client_cert only
// from holders of a certificate from the deployment CA.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_auth.h"
#include "agent/admin/status_model.h"
#include "common/config.h"
#include "common/status.h"

namespace geosync::admin {

namespace asio = boost::asio;

struct HttpRequestView {
  std::string method;  // "GET", "POST"...
  std::string target;  // "/admin/apply/skip?xid=7"
  std::string authorization;
};

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using QueryParams = std::map<std::string, std::string>;

// "a=1&b=two" -> {a: 1, b: two}; %XX and '+' are decoded.
QueryParams ParseQuery(std::string_view query);

struct AdminHandlers {
  std::function<Readiness()> ready;
  std::function<nlohmann::json()> status;
  std::function<std::string()> metrics;
  // POST /admin/<key>, e.g. "apply/skip". Only reached with a valid token.
  std::map<std::string, std::function<HttpReply(const QueryParams&)>> actions;
};

// Routes one request. `token` is the expected bearer token; empty refuses
// every POST. POST /admin/... without a valid token is 401 whatever the path
// (paths are not revealed); unknown paths are 404, wrong methods 405.
// /status and /readyz without a valid token are redacted (RedactStatus).
HttpReply Route(const HttpRequestView& request, const AdminHandlers& handlers,
                const std::string& token);

// The server side TLS context of admin.tls: its certificate and key; with
// require_client_cert, clients must present a certificate that chains to
// ca_file. Errors name the key and the file.
Result<std::shared_ptr<asio::ssl::context>> MakeAdminTlsContext(const AdminTlsConfig& tls);

struct AdminServerOptions {
  Endpoint listen;
  std::string token;  // empty: POST /admin/... always 401
  // HTTPS with this context; null: plain HTTP.
  std::shared_ptr<asio::ssl::context> tls;
  // Each request must arrive and be answered within this; an idle
  // keep-alive connection is closed after it.
  std::chrono::milliseconds request_timeout{5000};
  // A connection is closed after this, whatever it does.
  std::chrono::milliseconds connection_lifetime{60000};
  uint32_t max_header_bytes = 8 * 1024;
  uint64_t max_body_bytes = 64 * 1024;
  int max_connections = 64;
};

class AdminServer {
 public:
  AdminServer(asio::io_context& io, AdminServerOptions options, AdminHandlers handlers);
  ~AdminServer();

  Status Listen();
  uint16_t port() const { return port_; }
  asio::awaitable<void> AcceptLoop();
  // Closes the listener; open connections end at their deadline.
  void Stop();

 private:
  asio::awaitable<void> Serve(asio::ip::tcp::socket socket);
  template <class Stream>
  asio::awaitable<void> ServeRequests(Stream& stream);

  asio::io_context& io_;
  AdminServerOptions options_;
  AdminHandlers handlers_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  int connections_ = 0;  // event-loop only
  std::atomic<bool> stopping_{false};
};

}  // namespace geosync::admin
