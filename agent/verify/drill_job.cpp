// DrillJob; see drill_job.h.
#include "agent/verify/drill_job.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/pg/pg_conn.h"
#include "agent/replica/applier.h"

namespace geosync {
namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

DrillJob::DrillJob(std::string conninfo, Applier* applier, std::vector<std::string> probes)
    : conninfo_(std::move(conninfo)), applier_(applier), probes_(std::move(probes)) {
  result_ = {{"state", "running"}, {"error", ""}, {"probes", nlohmann::json::array()}};
  thread_ = std::thread([this] {
    Status st = Run();
    applier_->ReleaseHold();
    std::lock_guard lock(mu_);
    result_["state"] = st.ok() ? "done" : "failed";
    if (!st.ok()) result_["error"] = st.ToString();
    spdlog::info("drill: {}{}", st.ok() ? "done" : "failed: ", st.ok() ? "" : st.ToString());
  });
}

DrillJob::~DrillJob() {
  if (thread_.joinable()) thread_.join();
}

nlohmann::json DrillJob::Result() const {
  std::lock_guard lock(mu_);
  return result_;
}

Status DrillJob::Run() {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t started = UnixMs();
  // Freeze apply at a consistent position: every unit up to it applied.
  const Position at = applier_->applied();
  applier_->HoldBefore(Position{at.epoch, Lsn(at.lsn.value() + 1)}, std::chrono::minutes(5));
  {
    std::lock_guard lock(mu_);
    result_["started_unix_ms"] = started;
    result_["position"] = at.ToString();
  }
  spdlog::warn(
      "drill: apply frozen at {}; this site is made writable in a transaction that "
      "is rolled back",
      at.ToString());
  GEOSYNC_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(conninfo_));
  auto begin = conn.Exec(
      "SET application_name = 'geosync_drill'; BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE");
  if (!begin.ok()) return begin.status().WithContext("opening the drill transaction");
  // As a promotion would, open the write guard (agent/pg/write_guard.h):
  // the probes then write as applications would on the promoted site.
  auto guarded = conn.QueryValue("SELECT pg_catalog.to_regproc('_geosync.set_guard') IS NOT NULL");
  if (guarded.ok() && *guarded == "t") {
    auto open = conn.Exec(
        "SELECT _geosync.set_guard(true, s ->> 'site', 'source', s ->> 'site', "
        "(s ->> 'epoch')::bigint, 'drill') FROM (SELECT _geosync.guard_state() AS s) x "
        "WHERE s IS NOT NULL");
    if (!open.ok()) {
      (void)conn.Exec("ROLLBACK");
      return open.status().WithContext("opening the write guard in the drill transaction");
    }
  }
  // Writable: a real write, rolled back with everything else.
  auto write = conn.Exec(
      "CREATE TEMP TABLE geosync_drill_probe (at timestamptz) ON COMMIT DROP; "
      "INSERT INTO geosync_drill_probe VALUES (now())");
  if (!write.ok()) {
    (void)conn.Exec("ROLLBACK");
    return write.status().WithContext("the drill's write probe");
  }
  const double rto = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard lock(mu_);
    result_["writable_unix_ms"] = UnixMs();
    result_["rto_seconds"] = rto;
  }
  for (const std::string& sql : probes_) {
    const auto p0 = std::chrono::steady_clock::now();
    auto sp = conn.Exec("SAVEPOINT geosync_probe");
    auto r = conn.Exec(sql);
    nlohmann::json probe = {{"sql", sql}, {"ok", r.ok()}};
    if (r.ok()) {
      probe["result"] = r->rows() > 0 && r->cols() > 0 ? r->Get(0, 0) : "";
      probe["rows"] = r->rows();
      probe["error"] = "";
    } else {
      probe["result"] = "";
      probe["rows"] = 0;
      probe["error"] = r.status().ToString();
      (void)conn.Exec("ROLLBACK TO SAVEPOINT geosync_probe");
    }
    probe["ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p0).count();
    std::lock_guard lock(mu_);
    result_["probes"].push_back(std::move(probe));
  }
  auto rollback = conn.Exec("ROLLBACK");
  if (!rollback.ok()) return rollback.status().WithContext("rolling the drill back");
  return Status::Ok();
}

void AddDrillActions(admin::AdminHandlers& handlers, std::shared_ptr<DrillJob>& job, std::mutex& mu,
                     std::string conninfo, Applier* applier) {
  auto text = [](unsigned code, std::string body) {
    return admin::HttpReply{code, "text/plain; charset=utf-8", std::move(body) + "\n"};
  };
  handlers.actions["drill/run"] = [&job, &mu, conninfo, applier,
                                   text](const admin::QueryParams& q) {
    std::vector<std::string> probes;
    if (auto it = q.find("probes"); it != q.end()) {
      const std::string& all = it->second;
      size_t start = 0;
      while (start < all.size()) {
        size_t sep = all.find(";;", start);
        if (sep == std::string::npos) sep = all.size();
        if (sep > start) probes.push_back(all.substr(start, sep - start));
        start = sep + 2;
      }
    }
    std::lock_guard lock(mu);
    if (job && job->Result()["state"] == "running") return text(409, "a drill is running");
    job.reset();
    job = std::make_shared<DrillJob>(conninfo, applier, std::move(probes));
    return text(202, "drill started");
  };
  handlers.actions["drill/result"] = [&job, &mu, text](const admin::QueryParams&) {
    std::lock_guard lock(mu);
    if (!job) return text(409, "no drill has run");
    return admin::HttpReply{200, "application/json", job->Result().dump() + "\n"};
  };
}

}  // namespace geosync
