// geosyncctl drill: a DR rehearsal on one replica site without touching
// production traffic. The site freezes apply at a consistent position, opens
// a read-write transaction, proves a write, runs the DBA's SQL probes and
// rolls back (agent/verify/drill_job.h). The CLI samples the site's lag the
// whole time, asks the source what the site would lose at the moment it was
// writable (RPO), waits until the site is back in sync, and writes a JSON
// report and an HTML page with a lag timeline. --history shows the trend.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <thread>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "agent/ctl/drill_report.h"
#include "agent/ctl/drill_switchover.h"
#include "agent/promote/promote_plan.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

// The promotion plan and the etcd claim are the promote layer's.
using namespace ::geosync::promote;  // NOLINT(google-build-using-namespace)
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct DrillArgs {
  std::string topology;
  std::string token_file;
  std::string site;
  std::vector<std::string> probes;
  std::string report_dir = "geosync-drills";
  bool history = false;
  int timeout_s = 120;
  bool switchover = false;  // drill --switchover (drill_switchover.h)
  bool copy = false;        // drill --copy: on a throwaway copy, apply held for milliseconds
  std::string client_dsn;
  std::string client_table = "geosync_drill_writes";
};

struct Site {
  std::string name, admin;
};

Result<admin::HttpAnswer> Call(const Site& s, const std::string& method, const std::string& target,
                               const std::string& token) {
  admin::HttpCall call;
  call.method = method;
  call.base_url = s.admin;
  call.target = target;
  call.bearer = token;
  call.timeout = std::chrono::seconds(10);
  auto a = admin::Http(call);
  if (!a.ok()) return a.status().WithContext("site " + s.name);
  if (a->status >= 300) {
    return Status(a->status == 401 ? Code::kFenced : Code::kIo,
                  fmt::format("site {}: {} {} answered HTTP {}: {}", s.name, method, target,
                              a->status, a->body));
  }
  return a;
}

// The source's count of what it holds after `durable`: transactions with
// row changes, their bytes, and the age of the oldest (agent/daemon.cpp
// BehindAction). Unknown figures stay null.
json Rpo(const Site& source, const Position& durable, const std::string& token) {
  json rpo = {{"transactions", nullptr}, {"bytes", nullptr}, {"seconds", nullptr}};
  auto behind = Call(source, "POST",
                     "/admin/drill/behind?after=" + admin::QueryEncode(durable.ToString()), token);
  if (!behind.ok()) return rpo;
  json b = json::parse(behind->body, nullptr, false);
  if (!b.is_object()) return rpo;
  for (const char* key : {"transactions", "bytes", "seconds"}) {
    if (b.contains(key) && b[key].is_number()) rpo[key] = b[key];
  }
  return rpo;
}

// Why a drill that ran to its end failed, for the DBA.
std::string DrillFailure(const json& result, bool probes_ok, bool restored) {
  std::vector<std::string> why;
  if (result.value("state", "") != "done") {
    why.push_back("the site could not be made writable: " + result.value("error", ""));
  }
  if (!probes_ok) {
    int failed = 0;
    for (const auto& p : result.value("probes", json::array())) failed += !p.value("ok", false);
    why.push_back(fmt::format("{} probe(s) failed", failed));
  }
  if (!restored) why.push_back("it did not get back in sync within --timeout");
  std::string out;
  for (const auto& w : why) out += (out.empty() ? "" : "; ") + w;
  return out;
}

int RunHistory(const DrillArgs& args) {
  auto reports = ReadDrillReports(args.report_dir);
  if (!reports.ok()) return Fail(reports.status());
  if (reports->empty()) {
    std::cout << "no drill reports in " << args.report_dir << "\n";
    return kExitOk;
  }
  std::cout << FormatDrillHistory(*reports);
  return kExitOk;
}

// A frozen-replica or throwaway-copy drill on one replica, run by the site
// (POST /admin/drill/run) and watched from here.
class SiteDrill {
 public:
  explicit SiteDrill(const DrillArgs& args) : args_(args) {}
  int Run();

 private:
  int Load();
  double Since() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  void Sample();
  void SampleFor(int times);
  void Event(const char* name) { events_.push_back({{"t", Since()}, {"name", name}}); }
  int Start();
  int WatchUntilRolledBack();
  void WaitBackInSync();
  json Report(bool probes_ok) const;
  void PrintSummary(const json& report, const std::string& path) const;

  const DrillArgs& args_;
  Topology topology_;
  std::string token_;
  Site target_, source_;
  uint64_t epoch_ = 0;
  std::string kind_;
  Clock::time_point t0_ = Clock::now();
  Clock::time_point until_{};
  std::string started_;
  json timeline_ = json::array(), events_ = json::array();
  SiteReport last_;  // the target's last /status
  json result_;      // the site's last POST /admin/drill/result
  // RPO at the instant the site was writable: what the source holds beyond
  // what the site had durably received, asked at once so that the count,
  // the bytes and the seconds all describe that instant (issue #25: counted
  // after the drill, 1549 transactions came with a lag of 0.000 s).
  json rpo_ = {{"transactions", nullptr}, {"bytes", nullptr}, {"seconds", nullptr}};
  double restored_ = -1;
};

// The target must be a streaming replica and a source must answer; -1 to
// go on, else the exit code.
int SiteDrill::Load() {
  auto deployment = LoadDeployment(args_.topology, args_.token_file);
  if (!deployment.ok()) return Fail(deployment.status());
  topology_ = deployment->topology;
  token_ = deployment->token;
  std::vector<SiteReport> sites = Survey(topology_, token_);
  const SiteReport* t = nullptr;
  for (size_t i = 0; i < sites.size(); ++i) {
    if (sites[i].name == args_.site) {
      target_ = {sites[i].name, topology_.sites[i].admin};
      t = &sites[i];
    }
    if (sites[i].reachable && sites[i].role == "source" && sites[i].epoch >= epoch_) {
      source_ = {sites[i].name, topology_.sites[i].admin};
      epoch_ = sites[i].epoch;
    }
  }
  if (!t || !t->reachable || t->role != "replica" || !t->connected) {
    std::cerr << fmt::format("geosyncctl: drill refused: {} is not a streaming replica{}\n",
                             args_.site, t && !t->error.empty() ? ": " + t->error : "");
    return kExitRefused;
  }
  if (source_.name.empty()) return Fail(Status::NotFound("no reachable source site"));
  return -1;
}

void SiteDrill::Sample() {
  auto a = Call(target_, "GET", "/status", "");
  if (!a.ok()) return;
  json doc = json::parse(a->body, nullptr, false);
  if (doc.is_discarded() || !doc.contains("replica")) return;
  last_ = ReportFromStatus(target_.name, doc);
  const json& lag = doc["replica"]["lag"];
  timeline_.push_back({{"t", Since()},
                       {"applied_lag_seconds", lag["applied"]["seconds"]},
                       {"applied_lag_bytes", lag["applied"]["bytes"]},
                       {"durable_lag_bytes", lag["durable"]["bytes"]}});
}

void SiteDrill::SampleFor(int times) {
  for (int i = 0; i < times; ++i) {
    Sample();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Asks the site to run the drill; -1 when it started, else the exit code.
int SiteDrill::Start() {
  std::string probes;
  for (const auto& p : args_.probes) probes += (probes.empty() ? "" : ";;") + p;
  Event("drill start");
  std::cout << fmt::format(
      fmt::runtime(
          args_.copy ? "drill on {}: copying it at a consistent position into a scratch database, "
                       "promoting the copy, {} probe(s)\n"
                     : "drill on {}: freezing apply, making it writable, {} probe(s)\n"),
      args_.site, args_.probes.size());
  auto a = Call(
      target_, "POST",
      "/admin/drill/run?probes=" + admin::QueryEncode(probes) + (args_.copy ? "&mode=copy" : ""),
      token_);
  return a.ok() ? -1 : Fail(a.status());
}

// Polls the drill's result until it is no longer running; -1 then, else
// the exit code.
int SiteDrill::WatchUntilRolledBack() {
  bool writable_seen = false;
  while (true) {
    Sample();
    auto a = Call(target_, "POST", "/admin/drill/result", token_);
    if (!a.ok()) return Fail(a.status());
    result_ = json::parse(a->body, nullptr, false);
    if (!writable_seen && result_.contains("rto_seconds")) {
      writable_seen = true;
      Event("writable");
      if (last_.durable.lsn.valid()) rpo_ = Rpo(source_, last_.durable, token_);
    }
    if (result_.value("state", "") != "running") break;
    if (Clock::now() > until_) return Fail(Status::Timeout("the drill did not finish in time"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Event("rolled back");
  return -1;
}

// Back in sync: everything received since the freeze applied.
void SiteDrill::WaitBackInSync() {
  const Position received = last_.durable;
  while (Clock::now() < until_) {
    Sample();
    if (last_.applied >= received && last_.connected) {
      restored_ = Since();
      Event("back in sync");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

json SiteDrill::Report(bool probes_ok) const {
  const bool passed = result_.value("state", "") == "done" && restored_ >= 0;
  json report = {{"version", 2},       {"cluster_id", topology_.cluster_id},
                 {"site", args_.site}, {"source", source_.name},
                 {"epoch", epoch_},    {"started", started_}};
  report["finished"] = IsoNow();
  report["position"] = result_.value("position", "");
  report["kind"] = kind_;
  if (args_.copy) {
    report["copy"] = {{"apply_held_ms", result_.value("apply_held_ms", json())},
                      {"copy_seconds", result_.value("copy_seconds", json())},
                      {"scratch_database", result_.value("scratch_database", "")},
                      {"origin_progress", result_.value("origin_progress", "")}};
  }
  report["writable_seconds"] =
      result_.contains("rto_seconds") ? result_["rto_seconds"] : json(nullptr);
  report["rpo"] = rpo_;
  report["probes"] = result_.value("probes", json::array());
  report["restored_seconds"] = restored_ >= 0 ? json(restored_) : json(nullptr);
  report["figures"] = DrillFigures(report);
  report["timeline"] = timeline_;
  report["events"] = events_;
  report["result"] = passed && probes_ok ? "passed" : "failed";
  report["error"] = result_.value("error", "");
  return report;
}

void SiteDrill::PrintSummary(const json& report, const std::string& path) const {
  auto secs = [](const json& v) {
    return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : std::string("unknown");
  };
  std::cout << fmt::format(
      "drill {}: time until writable on the {} {} s{}; data at risk (RPO) {} "
      "transaction(s), {} byte(s), {} s; back in sync after {} s\n"
      "report: {} (and .html)\n",
      report["result"].get<std::string>(), args_.copy ? "throwaway copy" : "frozen replica",
      secs(report["writable_seconds"]),
      args_.copy ? fmt::format(" (apply held {} ms)", secs(report["copy"]["apply_held_ms"])) : "",
      rpo_["transactions"].dump(), rpo_["bytes"].dump(), secs(rpo_["seconds"]),
      secs(report["restored_seconds"]), path);
  for (const auto& p : report["probes"]) {
    std::cout << fmt::format(
        "  probe {}: {}\n", p.value("sql", ""),
        p.value("ok", false) ? "ok, " + p.value("result", "") : "FAILED: " + p.value("error", ""));
  }
}

int SiteDrill::Run() {
  if (int rc = Load(); rc >= 0) return rc;
  t0_ = Clock::now();
  started_ = IsoNow();
  kind_ = args_.copy ? "throwaway-copy" : "frozen-replica";
  SampleFor(10);  // a second of lag before the drill
  if (int rc = Start(); rc >= 0) return rc;
  until_ = Clock::now() + std::chrono::seconds(args_.timeout_s);
  if (int rc = WatchUntilRolledBack(); rc >= 0) return rc;
  WaitBackInSync();
  SampleFor(5);
  bool probes_ok = true;
  for (const auto& p : result_.value("probes", json::array())) probes_ok &= p.value("ok", false);
  const json report = Report(probes_ok);
  auto path = WriteDrillReport(args_.report_dir, report);
  if (!path.ok()) return Fail(path.status());
  PrintSummary(report, *path);
  if (report["result"] == "passed") {
    RecordDrillPassed(topology_, {args_.site}, kind_, token_);
    return kExitOk;
  }
  std::cerr << fmt::format("geosyncctl: drill on {} failed: {}; the site was rolled back\n",
                           args_.site, DrillFailure(result_, probes_ok, restored_ >= 0));
  return kExitDrillFailed;
}

int RunDrill(const DrillArgs& args) {
  if (args.history) return RunHistory(args);
  if (!args.switchover) return SiteDrill(args).Run();
  SwitchoverDrillArgs s;
  s.topology = args.topology;
  s.token_file = args.token_file;
  s.site = args.site;
  s.client_dsn = args.client_dsn;
  s.client_table = args.client_table;
  s.report_dir = args.report_dir;
  s.timeout_s = args.timeout_s;
  return RunSwitchoverDrill(s);
}

}  // namespace

void RegisterDrillCommands(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<DrillArgs>();
  auto* cmd = app.add_subcommand("drill",
                                 "DR rehearsal on a frozen replica: time until writable, "
                                 "data at risk (RPO) and probes, rolled back; --switchover: a "
                                 "real switchover to the site and back under load; --history "
                                 "shows past drills");
  cmd->add_option("--site", args->site, "the replica to rehearse on");
  cmd->add_flag("--copy", args->copy,
                "rehearse on a throwaway copy of the site's database (apply held only while a "
                "snapshot is taken), promoted, probed and dropped");
  cmd->add_flag("--switchover", args->switchover,
                "switch the source role over to --site and back, measuring write "
                "unavailability with a client writing through --client-dsn");
  cmd->add_option("--client-dsn", args->client_dsn,
                  "--switchover: libpq DSN listing every site's PostgreSQL with "
                  "target_session_attrs=read-write (passwords from ~/.pgpass or PGPASSFILE, never "
                  "here)");
  cmd->add_option("--client-table", args->client_table,
                  "--switchover: the table the client writes to, created if missing and "
                  "replicated (default geosync_drill_writes)");
  cmd->add_option("--topology", args->topology, "topology file");
  cmd->add_option("--token-file", args->token_file, "file holding the admin bearer token");
  cmd->add_option("--probe", args->probes, "SQL to run while the site is writable (repeat)");
  cmd->add_option("--report-dir", args->report_dir,
                  "where reports are kept (default ./geosync-drills)");
  cmd->add_flag("--history", args->history, "list past drills and the trend of their figures");
  cmd->add_option("--timeout", args->timeout_s, "seconds the drill may take (default 120)")
      ->check(CLI::Range(1, 86400));
  cmd->callback([args, exit_code] {
    if (!args->history &&
        (args->site.empty() || args->topology.empty() || args->token_file.empty())) {
      std::cerr << "geosyncctl: drill needs --site, --topology and --token-file (or --history)\n";
      *exit_code = kExitUsage;
      return;
    }
    if (args->switchover && args->client_dsn.empty()) {
      std::cerr << "geosyncctl: drill --switchover needs --client-dsn\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = RunDrill(*args);
  });
}

}  // namespace geosync::ctl
