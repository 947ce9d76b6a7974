// The fenced role (fenced_role.h).
#include "agent/daemon/fenced_role.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/daemon/role_support.h"
#include "agent/pg/write_guard.h"
#include "agent/promote/admin_actions.h"
#include "agent/promote/site_ops.h"
#include "agent/spool/spool.h"

namespace geosync {
namespace {

// Fences the database every 2 s until it is fenced (state.json says so) or
// Stop() is called.
class DatabaseFencer {
 public:
  explicit DatabaseFencer(SiteControl& control) : control_(control), thread_([this] { Loop(); }) {}
  ~DatabaseFencer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stopping_ && !control_.state().db_fenced) {
      lock.unlock();
      Status st = FenceOnce();
      if (!st.ok()) spdlog::warn("fenced site: cannot fence the database yet: {}", st.ToString());
      lock.lock();
      cv_.wait_for(lock, std::chrono::seconds(2), [&] { return stopping_; });
    }
  }

  Status FenceOnce() {
    const Config& config = control_.config();
    GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, promote::ConnectAdmin(config.postgres.dsn));
    const SiteState now = control_.state();
    GuardRequest guard{false, config.site, "fenced", "", now.epoch, now.fence_reason};
    GEOSYNC_RETURN_IF_ERROR(promote::FenceDatabase(conn, guard).status());
    return control_.Update([](SiteState& s) { s.db_fenced = true; });
  }

  SiteControl& control_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;  // last: it uses the members above
};

}  // namespace

Status RunFenced(SiteControl& control) {
  const Config& config = control.config();
  const auto started = std::chrono::steady_clock::now();
  GEOSYNC_ASSIGN_OR_RETURN(auto spool, Spool::Open(SpoolOptions::FromConfig(config)));
  asio::io_context io;
  DatabaseFencer fencer(control);
  auto snapshot = [&] {
    const SiteState s = control.state();
    admin::FencedSnapshot f;
    f.id = IdentityOf(config, s.epoch, started);
    f.reason = s.fence_reason;
    f.spool_bytes = spool->size_bytes();
    f.spool_oldest = spool->oldest();
    f.spool_durable = spool->durable();
    return f;
  };
  admin::AdminHandlers handlers;
  handlers.ready = [&] {
    return admin::Readiness{false, "fenced: " + control.state().fence_reason};
  };
  handlers.status = [&] { return WithPromotion(admin::StatusJson(snapshot()), control); };
  handlers.metrics = [&] { return admin::MetricsText(snapshot()); };
  AddRejoinActions(handlers, control, *spool, [&] { asio::post(io, [&] { io.stop(); }); });
  auto admin_server = StartAdmin(io, config, std::move(handlers));
  if (!admin_server.ok()) return admin_server.status();
  RunUntilSignal(io, [&] { io.stop(); });
  return Status::Ok();
}

}  // namespace geosync
