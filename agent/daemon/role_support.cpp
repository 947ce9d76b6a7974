// What every role of geosyncd uses (role_support.h).
#include "agent/daemon/role_support.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>

#include <ctime>
#include <map>

#include <spdlog/spdlog.h>

#include "agent/admin/admin_auth.h"
#include "agent/admin/admin_client.h"
#include "agent/net/peer_stream.h"
#include "agent/verify/drill_log.h"

namespace geosync {
namespace {

// POST /admin/drill/passed?kind=K and the drill metrics: every role keeps
// when each kind of drill last passed here.
void AddDrillLog(admin::AdminHandlers& handlers, const Config& config) {
  auto passed = DrillLog::Read(config.state_dir);
  if (!passed.ok()) {
    spdlog::warn("{}; starting with an empty drill log", passed.status().ToString());
  }
  auto drills = std::make_shared<DrillLog>(
      config.state_dir, passed.ok() ? *passed : std::map<std::string, int64_t>{});
  handlers.actions["drill/passed"] = [drills](const admin::QueryParams& q) {
    auto it = q.find("kind");
    Status st = drills->Record(it == q.end() ? "" : it->second, std::time(nullptr));
    if (!st.ok()) {
      return admin::HttpReply{st.code() == Code::kInvalidArgument ? 400u : 500u,
                              "text/plain; charset=utf-8", st.ToString() + "\n"};
    }
    return admin::HttpReply{200, "text/plain; charset=utf-8", "recorded\n"};
  };
  if (handlers.metrics) {
    handlers.metrics = [inner = std::move(handlers.metrics), drills] {
      return inner() + drills->MetricsText();
    };
  }
}

}  // namespace

Result<std::shared_ptr<asio::ssl::context>> TlsFor(const Config& config, bool server) {
  if (!config.tls.enabled) return std::shared_ptr<asio::ssl::context>();
  return MakeTlsContext(config.tls, server);
}

void RunUntilSignal(asio::io_context& io, std::function<void()> stop) {
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, stopping", sig);
    stop();
  });
  io.run();
}

void Every(asio::steady_timer& timer, std::chrono::milliseconds period,
           std::function<void()> tick) {
  tick();
  timer.expires_after(period);
  timer.async_wait([&timer, period, tick = std::move(tick)](auto ec) {
    if (!ec) Every(timer, period, tick);
  });
}

admin::SiteIdentity IdentityOf(const Config& config, uint64_t epoch,
                               std::chrono::steady_clock::time_point started) {
  admin::SiteIdentity id;
  id.site = config.site;
  id.cluster_id = config.cluster_id;
  id.epoch = epoch;
  id.version = GEOSYNC_VERSION;
  id.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return id;
}

nlohmann::json WithPromotion(nlohmann::json doc, const SiteControl& control) {
  doc["promotion"] = admin::PromotionJson(PromotionOf(control));
  return doc;
}

Result<admin::AdminServerOptions> AdminOptionsFor(const Config& config) {
  admin::AdminServerOptions o;
  if (config.admin.listen) o.listen = *config.admin.listen;
  if (!config.admin.token_file.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(o.token, admin::ReadTokenFile(config.admin.token_file));
  }
  if (config.admin.tls.enabled) {
    GEOSYNC_ASSIGN_OR_RETURN(o.tls, admin::MakeAdminTlsContext(config.admin.tls));
  }
  return o;
}

void SetPeerClientTls(const Config& config) {
  admin::ClientTls t;
  t.ca_file = !config.admin.tls.ca_file.empty() ? config.admin.tls.ca_file : config.tls.ca_file;
  if (config.tls.enabled) {
    t.cert_file = config.tls.cert_file;
    t.key_file = config.tls.key_file;
  } else if (config.admin.tls.enabled) {
    t.cert_file = config.admin.tls.cert_file;
    t.key_file = config.admin.tls.key_file;
  }
  admin::SetDefaultClientTls(t);
}

Result<std::unique_ptr<admin::AdminServer>> StartAdmin(asio::io_context& io, const Config& config,
                                                       admin::AdminHandlers handlers) {
  if (!config.admin.listen) return std::unique_ptr<admin::AdminServer>();
  GEOSYNC_ASSIGN_OR_RETURN(admin::AdminServerOptions o, AdminOptionsFor(config));
  AddDrillLog(handlers, config);
  auto server = std::make_unique<admin::AdminServer>(io, o, std::move(handlers));
  GEOSYNC_RETURN_IF_ERROR(server->Listen());
  asio::co_spawn(io, server->AcceptLoop(), asio::detached);
  return server;
}

}  // namespace geosync
