// What every role of geosyncd uses: TLS contexts from the config, the admin
// API's start, the event loop's run until a signal, periodic ticks and the
// identity every status document carries.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/promote/site_control.h"
#include "common/config.h"
#include "common/status.h"

namespace geosync {

namespace asio = boost::asio;

// The link TLS context (tls.*) as a server or a client; null when tls is off.
Result<std::shared_ptr<asio::ssl::context>> TlsFor(const Config& config, bool server);

// Runs `io` on this thread until SIGINT/SIGTERM, calling `stop` once.
void RunUntilSignal(asio::io_context& io, std::function<void()> stop);

// Calls `tick` now and then every `period` on the timer's executor until the
// timer is destroyed or cancelled.
void Every(asio::steady_timer& timer, std::chrono::milliseconds period, std::function<void()> tick);

// The identity block of /status.
admin::SiteIdentity IdentityOf(const Config& config, uint64_t epoch,
                               std::chrono::steady_clock::time_point started);

// The status document with the site's promotion state added.
nlohmann::json WithPromotion(nlohmann::json doc, const SiteControl& control);

// The admin API's listener, token (admin.token_file: 0600, 32+ characters)
// and TLS context. Config errors name the key and the file.
Result<admin::AdminServerOptions> AdminOptionsFor(const Config& config);

// geosyncd asks its peers' admin APIs for their epoch (PeerWatch): https://
// peers are verified against the deployment CA, with the site's certificate
// as the client certificate.
void SetPeerClientTls(const Config& config);

// Serves the admin API when `admin.listen` is configured (nullptr
// otherwise), with the drill log's action and metrics added to `handlers`.
Result<std::unique_ptr<admin::AdminServer>> StartAdmin(asio::io_context& io, const Config& config,
                                                       admin::AdminHandlers handlers);

}  // namespace geosync
