// geosyncctl drill --switchover --site SITE: a planned move of the source
// role to SITE and back, under the live workload, measured the way an
// application meets it. A client writes one row every 20 ms through the
// DBA's multi-host DSN (target_session_attrs=read-write), reconnecting on
// every failure; the longest gap between its acknowledged writes across each
// switchover is the write unavailability. Every acknowledged write must be on
// the new source after each move (data at risk: zero for a switchover), and
// `verify` compares every table before, between and after. The report is
// the frozen-replica drill's document with kind "switchover"
// (schemas/drill_report.schema.json).
#include "agent/ctl/drill_switchover.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <mutex>
#include <thread>

#include "agent/admin/admin_auth.h"
#include "agent/admin/admin_client.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "agent/ctl/drill_client.h"
#include "agent/ctl/drill_report.h"
#include "agent/pg/pg_conn.h"
#include "agent/promote/promote_plan.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

// The promotion plan and the etcd claim are the promote layer's.
using namespace ::geosync::promote;  // NOLINT(google-build-using-namespace)
namespace {

using json = nlohmann::json;

const char* VerifyName(int rc) {
  switch (rc) {
    case kExitOk:
      return "equal";
    case kExitDifferent:
      return "different";
    case kExitBehind:
      return "behind";
    default:
      return "failed";
  }
}

// Samples every site's /status: the largest applied lag of any replica.
class LagSampler {
 public:
  LagSampler(const Topology& topology, Clock::time_point t0) : topology_(topology), t0_(t0) {}
  ~LagSampler() { Stop(); }
  void Start() {
    thread_ = std::thread([this] {
      while (!stop_) {
        Sample();
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  json timeline() const {
    std::lock_guard lock(mu_);
    return timeline_;
  }

 private:
  void Sample() {
    json worst = {{"t", Seconds(Clock::now() - t0_)},
                  {"applied_lag_seconds", nullptr},
                  {"applied_lag_bytes", nullptr},
                  {"durable_lag_bytes", nullptr}};
    for (const auto& site : topology_.sites) {
      admin::HttpCall call;
      call.base_url = site.admin;
      call.target = "/status";
      call.timeout = std::chrono::seconds(2);
      auto a = admin::Http(call);
      if (!a.ok() || a->status != 200) continue;
      json doc = json::parse(a->body, nullptr, false);
      if (!doc.is_object() || !doc.contains("replica")) continue;
      const json& lag = doc["replica"]["lag"];
      auto keep_max = [&](const char* key, const json& v) {
        if (!v.is_number()) return;
        if (worst[key].is_null() || v.get<double>() > worst[key].get<double>()) worst[key] = v;
      };
      keep_max("applied_lag_seconds", lag["applied"]["seconds"]);
      keep_max("applied_lag_bytes", lag["applied"]["bytes"]);
      keep_max("durable_lag_bytes", lag["durable"]["bytes"]);
    }
    std::lock_guard lock(mu_);
    timeline_.push_back(std::move(worst));
  }

  const Topology topology_;
  const Clock::time_point t0_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  json timeline_ = json::array();
};

}  // namespace

void RecordDrillPassed(const Topology& topology, const std::vector<std::string>& sites,
                       const std::string& kind, const std::string& token) {
  for (const auto& name : sites) {
    for (const auto& site : topology.sites) {
      if (site.name != name) continue;
      admin::HttpCall call;
      call.method = "POST";
      call.base_url = site.admin;
      call.target = "/admin/drill/passed?kind=" + admin::QueryEncode(kind);
      call.bearer = token;
      call.timeout = std::chrono::seconds(10);
      auto a = admin::Http(call);
      if (!a.ok() || a->status != 200) {
        std::cerr << fmt::format(
            "geosyncctl: warning: site {} did not record the passed drill: {}\n", name,
            a.ok() ? a->body : a.status().ToString());
      }
    }
  }
}

namespace {

// One switchover drill: to args.site and back, under a writing client.
class SwitchoverDrill {
 public:
  explicit SwitchoverDrill(const SwitchoverDrillArgs& args) : args_(args) {}
  int Run();

 private:
  int Load();
  double Since() const { return Seconds(Clock::now() - t0_); }
  Clock::time_point Deadline() const {
    return Clock::now() + std::chrono::seconds(args_.timeout_s);
  }
  void Event(const std::string& name);
  void FailWith(const std::string& why) {
    if (failure_.empty()) failure_ = why;
  }
  // verify across the sites; `when` names the event, `label` the failure.
  int Verify(const char* when, const std::string& label);
  bool Move(const char* leg, const std::string& to);
  void CheckAcknowledged(const std::string& to, json& out);
  void WaitBackInSync();
  json Report() const;
  void PrintSummary(const json& report, const std::string& path) const;

  const SwitchoverDrillArgs& args_;
  Topology topology_;
  std::string token_;
  std::string from_;  // the source the drill starts from and returns to
  uint64_t epoch_ = 0;
  Clock::time_point t0_ = Clock::now();
  json events_ = json::array();
  std::unique_ptr<WriteClient> client_;
  std::unique_ptr<LagSampler> sampler_;
  std::string failure_;
  json legs_ = json::object();
  int64_t missing_max_ = 0;
  int verify_before_ = -1, verify_between_ = -1, verify_after_ = -1;
  double restored_ = -1;
  Position final_pos_;
  std::string started_;
};

// The topology, the token, the source to start from and the target, which
// must be a streaming replica; -1 to go on, else the exit code.
int SwitchoverDrill::Load() {
  if (Status st = CheckClientDsn(args_.client_dsn); !st.ok()) return Fail(st);
  auto deployment = LoadDeployment(args_.topology, args_.token_file);
  if (!deployment.ok()) return Fail(deployment.status());
  topology_ = deployment->topology;
  token_ = deployment->token;
  std::vector<SiteReport> sites = Survey(topology_, token_);
  const SiteReport* target = nullptr;
  for (const auto& s : sites) {
    if (s.reachable && s.role == "source" && s.epoch >= epoch_) {
      from_ = s.name;
      epoch_ = s.epoch;
    }
    if (s.name == args_.site) target = &s;
  }
  if (from_.empty()) return Fail(Status::NotFound("no reachable source site in the topology"));
  if (!target || !target->reachable || target->role != "replica" || !target->connected) {
    std::cerr << fmt::format("geosyncctl: drill refused: {} is not a streaming replica{}\n",
                             args_.site,
                             target && !target->error.empty() ? ": " + target->error : "");
    return kExitRefused;
  }
  return -1;
}

void SwitchoverDrill::Event(const std::string& name) {
  events_.push_back({{"t", Since()}, {"name", name}});
  std::cout << fmt::format("[{:7.2f} s] {}\n", Since(), name);
}

int SwitchoverDrill::Verify(const char* when, const std::string& label) {
  Event(fmt::format("verify {}", when));
  const int rc = VerifyForDrill(args_.topology, args_.token_file, args_.timeout_s);
  if (rc != kExitOk) FailWith(fmt::format("{}: {}", label, VerifyName(rc)));
  return rc;
}

// Every acknowledged write of the client looked up on `to`.
void SwitchoverDrill::CheckAcknowledged(const std::string& to, json& out) {
  std::vector<int64_t> acked;
  for (const auto& w : client_->writes()) acked.push_back(w.id);
  auto missing = Missing(args_.client_dsn, args_.client_table, acked);
  if (!missing.ok()) {
    FailWith("counting the client's writes on " + to + ": " + missing.status().ToString());
    out["acknowledged_writes_missing"] = nullptr;
    return;
  }
  out["acknowledged_writes"] = acked.size();
  out["acknowledged_writes_missing"] = *missing;
  missing_max_ = std::max(missing_max_, *missing);
  if (*missing > 0) FailWith(fmt::format("{} acknowledged write(s) missing on {}", *missing, to));
}

// One move: switchover to `to`, then the first write the client gets
// through afterwards, and every acknowledged write checked on `to`.
bool SwitchoverDrill::Move(const char* leg, const std::string& to) {
  json out = {{"to", to}};
  const double start = Since();
  Event(fmt::format("switchover to {}", to));
  SwitchoverOutcome o = SwitchoverForDrill(args_.topology, args_.token_file, to, args_.timeout_s);
  const double done = Since();
  out["exit_code"] = o.exit_code;
  out["epoch"] = o.epoch;
  out["geosyncctl_unavailable_seconds"] = o.unavailable_s;
  if (o.exit_code != kExitOk) {
    FailWith(fmt::format("switchover to {} exited {}", to, o.exit_code));
    out["write_unavailable_seconds"] = nullptr;
    out["acknowledged_writes_missing"] = nullptr;
    legs_[leg] = out;
    return false;
  }
  if (!client_->WaitWriteAfter(done, Deadline())) {
    FailWith(fmt::format("no client write succeeded after the switchover to {}: {}", to,
                         client_->last_error()));
    out["write_unavailable_seconds"] = nullptr;
  } else {
    const auto writes = client_->writes();
    const double first_after =
        std::find_if(writes.begin(), writes.end(), [&](const auto& w) { return w.t > done; })->t;
    Event(fmt::format("client writes on {}", to));
    out["write_unavailable_seconds"] = LongestGap(writes, start, first_after);
  }
  CheckAcknowledged(to, out);
  legs_[leg] = out;
  return true;
}

// Back in sync: every replica applied what the source held once the move
// back was over.
void SwitchoverDrill::WaitBackInSync() {
  for (const auto& s : Survey(topology_, token_)) {
    if (s.name == from_) final_pos_ = s.durable;
  }
  const auto until = Deadline();
  while (Clock::now() < until) {
    bool all = true;
    for (const auto& s : Survey(topology_, token_)) {
      if (s.role == "replica") all &= s.connected && s.applied >= final_pos_;
    }
    if (all) {
      restored_ = Since();
      Event("back in sync");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FailWith("the replicas did not get back in sync within --timeout");
}

json SwitchoverDrill::Report() const {
  auto verify = [](int rc) { return rc < 0 ? json(nullptr) : json(VerifyName(rc)); };
  json report = {{"version", 2},       {"kind", "switchover"}, {"cluster_id", topology_.cluster_id},
                 {"site", args_.site}, {"source", from_},      {"epoch", epoch_},
                 {"started", started_}};
  report["finished"] = IsoNow();
  report["position"] = final_pos_.ToString();
  report["writable_seconds"] = nullptr;
  report["rpo"] = {{"transactions", missing_max_},
                   {"bytes", nullptr},
                   {"seconds", missing_max_ == 0 ? json(0.0) : json(nullptr)}};
  report["probes"] = json::array();
  report["restored_seconds"] = restored_ >= 0 ? json(restored_) : json(nullptr);
  report["switchover"] = {{"back_to", from_},
                          {"client_table", args_.client_table},
                          {"write_interval_ms", kWriteInterval.count()},
                          {"client_writes", client_->writes().size()},
                          {"client_failed_attempts", client_->failures()},
                          {"there", legs_.value("there", json(nullptr))},
                          {"back", legs_.value("back", json(nullptr))},
                          {"verify",
                           {{"before", verify(verify_before_)},
                            {"between", verify(verify_between_)},
                            {"after", verify(verify_after_)}}}};
  report["figures"] = DrillFigures(report);
  report["timeline"] = sampler_->timeline();
  report["events"] = events_;
  report["result"] = failure_.empty() ? "passed" : "failed";
  report["error"] = failure_;
  return report;
}

void SwitchoverDrill::PrintSummary(const json& report, const std::string& path) const {
  auto secs = [](const json& leg, const char* key) {
    return leg.is_object() && leg[key].is_number() ? fmt::format("{:.3f}", leg[key].get<double>())
                                                   : std::string("unknown");
  };
  const json& sw = report["switchover"];
  std::cout << fmt::format(
      "drill {}: write unavailability during switchover to {} {} s and back to {} {} s "
      "(a client writing every {} ms through --client-dsn; {} writes, {} failed attempts); "
      "data at risk (RPO) {} acknowledged write(s) missing; verify before {}, between {}, "
      "after {}; back in sync after {} s\nreport: {} (and .html)\n",
      report["result"].get<std::string>(), args_.site,
      secs(sw["there"], "write_unavailable_seconds"), from_,
      secs(sw["back"], "write_unavailable_seconds"), kWriteInterval.count(),
      sw["client_writes"].get<size_t>(), client_->failures(), missing_max_,
      sw["verify"]["before"].dump(), sw["verify"]["between"].dump(), sw["verify"]["after"].dump(),
      restored_ >= 0 ? fmt::format("{:.3f}", restored_) : std::string("unknown"), path);
}

int SwitchoverDrill::Run() {
  if (int rc = Load(); rc >= 0) return rc;
  t0_ = Clock::now();
  started_ = IsoNow();
  client_ = std::make_unique<WriteClient>(args_.client_dsn, args_.client_table, t0_);
  if (Status st = client_->CreateTable(); !st.ok()) return Fail(st);
  sampler_ = std::make_unique<LagSampler>(topology_, t0_);
  sampler_->Start();
  client_->Start();
  verify_before_ = Verify("before", "verify before");
  if (!client_->WaitWriteAfter(Since(), Deadline())) {
    FailWith("the client wrote nothing through --client-dsn: " + client_->last_error());
  }
  if (Move("there", args_.site)) {
    verify_between_ = Verify("between", "verify on " + args_.site);
    if (Move("back", from_)) {
      WaitBackInSync();
      verify_after_ = Verify("after", "verify after");
    }
  }
  client_->Stop();
  sampler_->Stop();
  const json report = Report();
  auto path = WriteDrillReport(args_.report_dir, report);
  if (!path.ok()) return Fail(path.status());
  PrintSummary(report, *path);
  if (failure_.empty()) {
    RecordDrillPassed(topology_, {args_.site, from_}, "switchover", token_);
    return kExitOk;
  }
  std::cerr << fmt::format("geosyncctl: switchover drill to {} failed: {}\n", args_.site, failure_);
  return kExitDrillFailed;
}

}  // namespace

int RunSwitchoverDrill(const SwitchoverDrillArgs& args) { return SwitchoverDrill(args).Run(); }

}  // namespace geosync::ctl
