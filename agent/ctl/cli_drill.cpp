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

std::string IsoNow() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
}

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

int RunDrill(const DrillArgs& args) {
  if (args.history) return RunHistory(args);
  if (args.switchover) {
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
  auto topology = LoadTopology(args.topology);
  if (!topology.ok()) return Fail(topology.status());
  auto token = admin::ReadTokenFile(args.token_file, "--token-file");
  if (!token.ok()) return Fail(token.status());
  std::vector<SiteReport> sites = Survey(*topology, *token);
  Site target, source;
  uint64_t epoch = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    if (sites[i].name == args.site) target = {sites[i].name, topology->sites[i].admin};
    if (sites[i].reachable && sites[i].role == "source" && sites[i].epoch >= epoch) {
      source = {sites[i].name, topology->sites[i].admin};
      epoch = sites[i].epoch;
    }
  }
  const SiteReport* t = nullptr;
  for (const auto& s : sites) {
    if (s.name == args.site) t = &s;
  }
  if (!t || !t->reachable || t->role != "replica" || !t->connected) {
    std::cerr << fmt::format("geosyncctl: drill refused: {} is not a streaming replica{}\n",
                             args.site, t && !t->error.empty() ? ": " + t->error : "");
    return kExitRefused;
  }
  if (source.name.empty()) return Fail(Status::NotFound("no reachable source site"));

  const auto t0 = Clock::now();
  json timeline = json::array(), events = json::array();
  auto since = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  SiteReport last;
  auto sample = [&] {
    auto a = Call(target, "GET", "/status", "");
    if (!a.ok()) return;
    json doc = json::parse(a->body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("replica")) return;
    last = ReportFromStatus(target.name, doc);
    const json& lag = doc["replica"]["lag"];
    timeline.push_back({{"t", since()},
                        {"applied_lag_seconds", lag["applied"]["seconds"]},
                        {"applied_lag_bytes", lag["applied"]["bytes"]},
                        {"durable_lag_bytes", lag["durable"]["bytes"]}});
  };
  auto event = [&](const char* name) { events.push_back({{"t", since()}, {"name", name}}); };
  json report = {{"version", 2},      {"cluster_id", topology->cluster_id},
                 {"site", args.site}, {"source", source.name},
                 {"epoch", epoch},    {"started", IsoNow()}};
  for (int i = 0; i < 10; ++i) {  // a second of lag before the drill
    sample();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string probes;
  for (const auto& p : args.probes) probes += (probes.empty() ? "" : ";;") + p;
  event("drill start");
  const std::string kind = args.copy ? "throwaway-copy" : "frozen-replica";
  std::cout << fmt::format(
      fmt::runtime(
          args.copy ? "drill on {}: copying it at a consistent position into a scratch database, "
                      "promoting the copy, {} probe(s)\n"
                    : "drill on {}: freezing apply, making it writable, {} probe(s)\n"),
      args.site, args.probes.size());
  if (auto a = Call(
          target, "POST",
          "/admin/drill/run?probes=" + admin::QueryEncode(probes) + (args.copy ? "&mode=copy" : ""),
          *token);
      !a.ok()) {
    return Fail(a.status());
  }
  json result;
  const auto until = Clock::now() + std::chrono::seconds(args.timeout_s);
  bool writable_seen = false;
  // RPO at the instant the site was writable: what the source holds beyond
  // what the site had durably received, asked at once so that the count,
  // the bytes and the seconds all describe that instant (issue #25: counted
  // after the drill, 1549 transactions came with a lag of 0.000 s).
  json rpo = {{"transactions", nullptr}, {"bytes", nullptr}, {"seconds", nullptr}};
  while (true) {
    sample();
    auto a = Call(target, "POST", "/admin/drill/result", *token);
    if (!a.ok()) return Fail(a.status());
    result = json::parse(a->body, nullptr, false);
    if (!writable_seen && result.contains("rto_seconds")) {
      writable_seen = true;
      event("writable");
      if (last.durable.lsn.valid()) rpo = Rpo(source, last.durable, *token);
    }
    if (result.value("state", "") != "running") break;
    if (Clock::now() > until) return Fail(Status::Timeout("the drill did not finish in time"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  event("rolled back");
  // Back in sync: everything received since the freeze applied.
  const Position received = last.durable;
  double restored = -1;
  while (Clock::now() < until) {
    sample();
    if (last.applied >= received && last.connected) {
      restored = since();
      event("back in sync");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (int i = 0; i < 5; ++i) {
    sample();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const bool passed = result.value("state", "") == "done" && restored >= 0;
  bool probes_ok = true;
  for (const auto& p : result.value("probes", json::array())) probes_ok &= p.value("ok", false);
  report["finished"] = IsoNow();
  report["position"] = result.value("position", "");
  report["kind"] = kind;
  if (args.copy) {
    report["copy"] = {{"apply_held_ms", result.value("apply_held_ms", json())},
                      {"copy_seconds", result.value("copy_seconds", json())},
                      {"scratch_database", result.value("scratch_database", "")},
                      {"origin_progress", result.value("origin_progress", "")}};
  }
  report["writable_seconds"] =
      result.contains("rto_seconds") ? result["rto_seconds"] : json(nullptr);
  report["rpo"] = rpo;
  report["probes"] = result.value("probes", json::array());
  report["restored_seconds"] = restored >= 0 ? json(restored) : json(nullptr);
  report["figures"] = DrillFigures(report);
  report["timeline"] = timeline;
  report["events"] = events;
  report["result"] = passed && probes_ok ? "passed" : "failed";
  report["error"] = result.value("error", "");
  auto path = WriteDrillReport(args.report_dir, report);
  if (!path.ok()) return Fail(path.status());
  auto secs = [](const json& v) {
    return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : std::string("unknown");
  };
  std::cout << fmt::format(
      "drill {}: time until writable on the {} {} s{}; data at risk (RPO) {} "
      "transaction(s), {} byte(s), {} s; back in sync after {} s\n"
      "report: {} (and .html)\n",
      report["result"].get<std::string>(), args.copy ? "throwaway copy" : "frozen replica",
      secs(report["writable_seconds"]),
      args.copy ? fmt::format(" (apply held {} ms)", secs(report["copy"]["apply_held_ms"])) : "",
      rpo["transactions"].dump(), rpo["bytes"].dump(), secs(rpo["seconds"]),
      secs(report["restored_seconds"]), *path);
  for (const auto& p : report["probes"]) {
    std::cout << fmt::format(
        "  probe {}: {}\n", p.value("sql", ""),
        p.value("ok", false) ? "ok, " + p.value("result", "") : "FAILED: " + p.value("error", ""));
  }
  if (report["result"] == "passed") {
    RecordDrillPassed(*topology, {args.site}, kind, *token);
    return kExitOk;
  }
  std::cerr << fmt::format("geosyncctl: drill on {} failed: {}; the site was rolled back\n",
                           args.site, DrillFailure(result, probes_ok, restored >= 0));
  return kExitDrillFailed;
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
