// DrillJob; see drill_job.h.
#include "agent/verify/drill_job.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>
#include <thread>

#include "agent/pg/pg_conn.h"
#include "agent/replica/applier.h"
#include "agent/seed/pg_dump.h"

namespace geosync {
namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

DrillJob::DrillJob(std::string conninfo, Applier* applier, std::vector<std::string> probes,
                   Mode mode, std::string scratch_dir)
    : conninfo_(std::move(conninfo)),
      applier_(applier),
      probes_(std::move(probes)),
      mode_(mode),
      scratch_dir_(std::move(scratch_dir)) {
  result_ = {{"state", "running"}, {"error", ""}, {"probes", nlohmann::json::array()}};
  if (mode_ == Mode::kCopy) result_["mode"] = "copy";
  thread_ = std::thread([this] {
    Status st = mode_ == Mode::kCopy ? RunCopy() : Run();
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
  Status probed = WriteAndProbe(conn, t0);
  if (!probed.ok()) {
    (void)conn.Exec("ROLLBACK");
    return probed;
  }
  auto rollback = conn.Exec("ROLLBACK");
  if (!rollback.ok()) return rollback.status().WithContext("rolling the drill back");
  return Status::Ok();
}

Status DrillJob::WriteAndProbe(PgConn& conn, std::chrono::steady_clock::time_point t0) {
  // As a promotion would, open the write guard (agent/pg/write_guard.h):
  // the probes then write as applications would on the promoted site.
  auto guarded = conn.QueryValue("SELECT pg_catalog.to_regproc('_geosync.set_guard') IS NOT NULL");
  if (guarded.ok() && *guarded == "t") {
    auto open = conn.Exec(
        "SELECT _geosync.set_guard(true, s ->> 'site', 'source', s ->> 'site', "
        "(s ->> 'epoch')::bigint, 'drill') FROM (SELECT _geosync.guard_state() AS s) x "
        "WHERE s IS NOT NULL");
    if (!open.ok()) return open.status().WithContext("opening the write guard in the drill");
  }
  // Writable: a real write, rolled back with everything else.
  auto write = conn.Exec(
      "CREATE TEMP TABLE geosync_drill_probe (at timestamptz) ON COMMIT DROP; "
      "INSERT INTO geosync_drill_probe VALUES (now())");
  if (!write.ok()) return write.status().WithContext("the drill's write probe");
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
  return Status::Ok();
}

namespace {

// The origins' progress as one string: equal before and after the snapshot
// export means no apply transaction committed in between (every one moves
// its origin), so the snapshot holds exactly that progress.
Result<std::string> OriginProgress(PgConn& conn) {
  return conn.QueryValue(
      "SELECT coalesce(string_agg(external_id || '=' || remote_lsn::text, ',' ORDER BY "
      "external_id), '') FROM pg_catalog.pg_replication_origin_status");
}

struct ExportedSnapshot {
  std::string name;      // for pg_dump --snapshot
  std::string progress;  // the origins' progress it holds
  double held_ms = 0;    // how long apply was held
};

// One attempt: the snapshot when no apply transaction committed around it.
Result<std::optional<ExportedSnapshot>> TryExport(PgConn& conn) {
  GEOSYNC_ASSIGN_OR_RETURN(std::string before, OriginProgress(conn));
  auto begin = conn.Exec(
      "SET application_name = 'geosync_drill_copy'; BEGIN ISOLATION LEVEL REPEATABLE READ "
      "READ ONLY");
  auto exported = begin.ok() ? conn.QueryValue("SELECT pg_catalog.pg_export_snapshot()")
                             : geosync::Result<std::string>(begin.status());
  auto after =
      exported.ok() ? OriginProgress(conn) : geosync::Result<std::string>(exported.status());
  if (!after.ok()) return after.status().WithContext("exporting the drill's snapshot");
  if (*after == before)
    return std::optional<ExportedSnapshot>(ExportedSnapshot{*exported, *after, 0});
  (void)conn.Exec("ROLLBACK");
  return std::optional<ExportedSnapshot>();
}

// Holds apply only while the snapshot is taken; a group in flight still
// commits, so it retries until the progress is the same on both sides. The
// exporting transaction stays open on `conn`.
Result<ExportedSnapshot> ExportAtStillPosition(PgConn& conn, Applier& applier) {
  const Position at = applier.applied();
  applier.HoldBefore(Position{at.epoch, Lsn(at.lsn.value() + 1)}, std::chrono::minutes(1));
  const auto hold0 = std::chrono::steady_clock::now();
  geosync::Result<ExportedSnapshot> taken =
      Status::Timeout("apply kept committing while the drill's snapshot was taken");
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto tried = TryExport(conn);
    if (!tried.ok()) {
      taken = tried.status();
      break;
    }
    if (tried->has_value()) {
      taken = std::move(**tried);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  applier.ReleaseHold();
  if (taken.ok()) {
    taken->held_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - hold0).count();
  }
  return taken;
}

// pg_dump of `snapshot` (directory format) from the site into `dump_dir`.
Status DumpSnapshot(const std::string& conninfo, const std::string& snapshot,
                    const std::string& dump_dir) {
  GEOSYNC_ASSIGN_OR_RETURN(seed::ChildCommand source, seed::SplitConninfoForChild(conninfo));
  std::vector<std::string> dump = {seed::PgBinDir() + "/pg_dump", "--format=directory",
                                   "--file=" + dump_dir,          "--snapshot=" + snapshot,
                                   "--no-publications",           "--no-subscriptions"};
  dump.insert(dump.end(), source.argv.begin(), source.argv.end());
  return seed::RunAndCapture(dump, source.env)
      .status()
      .WithContext("pg_dump of the drill's snapshot");
}

// pg_restore of `dump_dir` into the scratch database.
Status RestoreDump(const std::string& scratch_conninfo, const std::string& dump_dir) {
  GEOSYNC_ASSIGN_OR_RETURN(seed::ChildCommand target,
                           seed::SplitConninfoForChild(scratch_conninfo));
  std::vector<std::string> restore = {seed::PgBinDir() + "/pg_restore", "--exit-on-error",
                                      "--no-owner"};
  restore.insert(restore.end(), target.argv.begin(), target.argv.end());
  restore.push_back(dump_dir);
  return seed::RunAndCapture(restore, target.env)
      .status()
      .WithContext("pg_restore into the drill's scratch database");
}

}  // namespace

// Promoted there: the copy's write guard opens as a promotion opens it,
// then a write and the probes. Nothing of it reaches the site.
Status DrillJob::ProbeCopy(const std::string& scratch_conninfo,
                           std::chrono::steady_clock::time_point t0) {
  GEOSYNC_ASSIGN_OR_RETURN(PgConn copy, PgConn::Connect(scratch_conninfo));
  auto begin = copy.Exec(
      "SET application_name = 'geosync_drill_copy'; BEGIN ISOLATION LEVEL REPEATABLE READ "
      "READ WRITE");
  if (!begin.ok()) return begin.status().WithContext("opening the copy's drill transaction");
  Status st = WriteAndProbe(copy, t0);
  (void)copy.Exec(st.ok() ? "COMMIT" : "ROLLBACK");
  return st;
}

Status DrillJob::RunCopy() {
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    result_["started_unix_ms"] = UnixMs();
  }
  GEOSYNC_ASSIGN_OR_RETURN(PgConn snap_conn, PgConn::Connect(conninfo_));
  GEOSYNC_ASSIGN_OR_RETURN(std::string dbname, snap_conn.QueryValue("SELECT current_database()"));
  GEOSYNC_ASSIGN_OR_RETURN(ExportedSnapshot snapshot, ExportAtStillPosition(snap_conn, *applier_));
  const Position position = applier_->applied();
  const std::string scratch = fmt::format("geosync_drill_copy_{}", UnixMs());
  {
    std::lock_guard lock(mu_);
    result_["apply_held_ms"] = snapshot.held_ms;
    result_["position"] = position.ToString();
    result_["origin_progress"] = snapshot.progress;
    result_["scratch_database"] = scratch;
  }
  spdlog::info("drill: throwaway copy of {} at {} (apply held {:.1f} ms) into database {}", dbname,
               position.ToString(), snapshot.held_ms, scratch);
  // The copy: pg_dump in the snapshot (the exporting transaction stays open
  // until it is done), then pg_restore into the scratch database.
  const std::string dump_dir = scratch_dir_ + "/" + scratch + ".dump";
  auto cleanup = [&](PgConn* admin_conn) {
    std::error_code ec;
    std::filesystem::remove_all(dump_dir, ec);
    if (!admin_conn) return;
    auto dropped = admin_conn->Exec("DROP DATABASE IF EXISTS " +
                                    admin_conn->EscapeIdentifier(scratch) + " WITH (FORCE)");
    if (!dropped.ok()) {
      spdlog::error("drill: could not drop the scratch database {}: {}", scratch,
                    dropped.status().ToString());
    }
  };
  Status dumped = DumpSnapshot(conninfo_, snapshot.name, dump_dir);
  (void)snap_conn.Exec("COMMIT");
  if (!dumped.ok()) {
    cleanup(nullptr);
    return dumped;
  }
  GEOSYNC_ASSIGN_OR_RETURN(PgConn admin_conn, PgConn::Connect(conninfo_));
  auto created = admin_conn.Exec("CREATE DATABASE " + admin_conn.EscapeIdentifier(scratch) +
                                 " TEMPLATE template0");
  if (!created.ok()) {
    cleanup(nullptr);
    return created.status().WithContext("creating the drill's scratch database");
  }
  GEOSYNC_ASSIGN_OR_RETURN(std::string scratch_conninfo,
                           seed::ConninfoWithDbname(conninfo_, scratch));
  if (Status restored = RestoreDump(scratch_conninfo, dump_dir); !restored.ok()) {
    cleanup(&admin_conn);
    return restored;
  }
  {
    std::lock_guard lock(mu_);
    result_["copy_seconds"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  Status probed = ProbeCopy(scratch_conninfo, t0);
  cleanup(&admin_conn);
  return probed;
}

void AddDrillActions(admin::AdminHandlers& handlers, std::shared_ptr<DrillJob>& job, std::mutex& mu,
                     std::string conninfo, Applier* applier, std::string scratch_dir) {
  auto text = [](unsigned code, std::string body) {
    return admin::HttpReply{code, "text/plain; charset=utf-8", std::move(body) + "\n"};
  };
  handlers.actions["drill/run"] = [&job, &mu, conninfo, applier, scratch_dir,
                                   text](const admin::QueryParams& q) {
    DrillJob::Mode mode = DrillJob::Mode::kFrozen;
    if (auto it = q.find("mode"); it != q.end()) {
      if (it->second == "copy") {
        mode = DrillJob::Mode::kCopy;
      } else if (it->second != "frozen") {
        return text(400, "mode must be frozen or copy");
      }
    }
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
    job = std::make_shared<DrillJob>(conninfo, applier, std::move(probes), mode, scratch_dir);
    return text(202, "drill started");
  };
  handlers.actions["drill/result"] = [&job, &mu, text](const admin::QueryParams&) {
    std::lock_guard lock(mu);
    if (!job) return text(409, "no drill has run");
    return admin::HttpReply{200, "application/json", job->Result().dump() + "\n"};
  };
}

}  // namespace geosync
