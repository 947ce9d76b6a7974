// VerifyJob; see verify_job.h.
#include "agent/verify/verify_job.h"

#include <unistd.h>

#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/replica/applier.h"

namespace geosync {

std::unique_ptr<VerifyJob> VerifyJob::ForSource(std::string conninfo, std::string publication,
                                                uint64_t epoch, VerifyRequest request) {
  std::unique_ptr<VerifyJob> job(new VerifyJob());
  job->conninfo_ = std::move(conninfo);
  job->publication_ = std::move(publication);
  job->epoch_ = epoch;
  job->request_ = std::move(request);
  job->Start();
  return job;
}

std::unique_ptr<VerifyJob> VerifyJob::ForReplica(std::string conninfo, Applier* applier,
                                                 VerifyRequest request) {
  std::unique_ptr<VerifyJob> job(new VerifyJob());
  job->conninfo_ = std::move(conninfo);
  job->applier_ = applier;
  job->request_ = std::move(request);
  job->applier_->HoldBefore(job->request_.position);
  job->Start();
  return job;
}

VerifyJob::~VerifyJob() {
  if (thread_.joinable()) thread_.join();
  if (applier_) applier_->ReleaseHold();
}

void VerifyJob::Start() {
  thread_ = std::thread([this] {
    Status st = Run();
    std::lock_guard lock(mu_);
    if (st.ok()) {
      state_ = "done";
    } else {
      state_ = "failed";
      error_ = st.ToString();
      spdlog::error("verify: {}", error_);
    }
  });
}

Status VerifyJob::PrepareSource() {
  GEOSYNC_ASSIGN_OR_RETURN(repl_, PgConn::Connect(conninfo_ + " replication=database"));
  auto slot = repl_.Exec(fmt::format(
      "CREATE_REPLICATION_SLOT geosync_verify_{} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
      ::getpid()));
  if (!slot.ok()) return slot.status().WithContext("exporting a snapshot for verify");
  GEOSYNC_ASSIGN_OR_RETURN(Lsn consistent, Lsn::Parse(slot->Get(0, 1)));
  const std::string snapshot = slot->Get(0, 2);
  GEOSYNC_ASSIGN_OR_RETURN(conn_, PgConn::Connect(conninfo_));
  GEOSYNC_RETURN_IF_ERROR(PrepareVerifySession(conn_));
  auto begin = conn_.Exec(
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION "
      "SNAPSHOT " +
      conn_.EscapeLiteral(snapshot));
  if (!begin.ok()) return begin.status().WithContext("importing the verify snapshot");
  if (request_.tables.empty()) {
    GEOSYNC_ASSIGN_OR_RETURN(request_.tables, PublishedTables(conn_, publication_));
  }
  // Transactions committing at or after the consistent point are not in the
  // snapshot: replicas hold apply before that position.
  std::lock_guard lock(mu_);
  position_ = Position{epoch_, consistent};
  return Status::Ok();
}

Status VerifyJob::PrepareReplica() {
  const auto until = std::chrono::steady_clock::now() + request_.reach_timeout;
  while (!applier_->Held()) {
    if (std::chrono::steady_clock::now() > until) {
      const Position reached = applier_->applied();
      {
        std::lock_guard lock(mu_);
        behind_ = true;
        reached_ = reached;
      }
      return Status::Timeout(fmt::format(
          "behind: apply did not reach {} within {} s (applied {}): not compared; is the site "
          "streaming?",
          request_.position.ToString(), request_.reach_timeout.count(), reached.ToString()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  GEOSYNC_ASSIGN_OR_RETURN(conn_, PgConn::Connect(conninfo_));
  GEOSYNC_RETURN_IF_ERROR(PrepareVerifySession(conn_));
  auto begin = conn_.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (!begin.ok()) return begin.status().WithContext("starting the verify transaction");
  std::lock_guard lock(mu_);
  position_ = request_.position;
  return Status::Ok();
}

Status VerifyJob::Run() {
  GEOSYNC_RETURN_IF_ERROR(applier_ ? PrepareReplica() : PrepareSource());
  for (const std::string& table : request_.tables) {
    GEOSYNC_ASSIGN_OR_RETURN(TableChecksum sum, ChecksumTable(conn_, table, request_.buckets));
    std::lock_guard lock(mu_);
    sums_.push_back(std::move(sum));
  }
  return Status::Ok();
}

nlohmann::json VerifyJob::Result() const {
  std::lock_guard lock(mu_);
  nlohmann::json tables = nlohmann::json::array();
  for (const auto& t : sums_) tables.push_back(ToJson(t));
  return {{"state", state_},
          {"error", error_},
          {"position", position_.lsn.valid() ? position_.ToString() : ""},
          {"buckets", request_.buckets},
          {"behind", behind_},
          {"reached", reached_.lsn.valid() ? reached_.ToString() : ""},
          {"tables", std::move(tables)}};
}

geosync::Result<nlohmann::json> VerifyJob::Rows(const std::string& table, int bucket) {
  {
    std::lock_guard lock(mu_);
    if (state_ != "done") return Status::InvalidArgument("verify is " + state_);
  }
  GEOSYNC_ASSIGN_OR_RETURN(auto rows, BucketRows(conn_, table, bucket, request_.buckets));
  nlohmann::json out = nlohmann::json::array();
  for (auto& [key, md5] : rows) out.push_back({key, md5});
  return out;
}

void AddVerifyActions(admin::AdminHandlers& handlers, std::shared_ptr<VerifyJob>& job,
                      std::mutex& mu, VerifyFactory make, std::function<void()> freeze,
                      std::function<void()> release) {
  auto text = [](unsigned code, std::string body) {
    return admin::HttpReply{code, "text/plain; charset=utf-8", std::move(body) + "\n"};
  };
  handlers.actions["verify/begin"] = [&job, &mu, make, text](const admin::QueryParams& q) {
    VerifyRequest request;
    if (auto it = q.find("buckets"); it != q.end()) {
      request.buckets = std::atoi(it->second.c_str());
      if (request.buckets < 1 || request.buckets > 1 << 16) {
        return text(400, "buckets must be 1-65536");
      }
    }
    if (auto it = q.find("tables"); it != q.end()) {
      size_t start = 0;
      const std::string& list = it->second;
      while (start < list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) request.tables.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    }
    if (auto it = q.find("reach_timeout_s"); it != q.end()) {
      const int s = std::atoi(it->second.c_str());
      if (s < 1 || s > 86400) return text(400, "reach_timeout_s must be 1-86400");
      request.reach_timeout = std::chrono::seconds(s);
    }
    if (auto it = q.find("position"); it != q.end()) {
      auto pos = Position::Parse(it->second);
      if (!pos.ok()) return text(400, "position: " + pos.status().message());
      request.position = *pos;
    }
    admin::HttpReply error;
    std::shared_ptr<VerifyJob> next = make(request, &error);
    if (!next) return error;
    std::lock_guard lock(mu);
    job = std::move(next);  // a previous job is released
    return text(202, "verify started");
  };
  handlers.actions["verify/result"] = [&job, &mu, text](const admin::QueryParams&) {
    std::lock_guard lock(mu);
    if (!job) return text(409, "no verify in progress");
    return admin::HttpReply{200, "application/json", job->Result().dump() + "\n"};
  };
  handlers.actions["verify/rows"] = [&job, &mu, text](const admin::QueryParams& q) {
    std::lock_guard lock(mu);
    if (!job) return text(409, "no verify in progress");
    auto t = q.find("table");
    auto b = q.find("bucket");
    if (t == q.end() || b == q.end()) return text(400, "expected ?table=T&bucket=N");
    auto rows = job->Rows(t->second, std::atoi(b->second.c_str()));
    if (!rows.ok()) return text(409, rows.status().ToString());
    return admin::HttpReply{200, "application/json", rows->dump() + "\n"};
  };
  if (freeze) {
    handlers.actions["verify/freeze"] = [freeze, text](const admin::QueryParams&) {
      freeze();
      return text(200, "apply holds where it is until verify/begin or verify/end");
    };
  }
  handlers.actions["verify/end"] = [&job, &mu, text, release](const admin::QueryParams&) {
    std::shared_ptr<VerifyJob> old;
    {
      std::lock_guard lock(mu);
      old = std::move(job);
    }
    if (release) release();
    return text(200, old ? "verify ended" : "no verify in progress");
  };
}

}  // namespace geosync
