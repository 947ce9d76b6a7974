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
#include "agent/ctl/drill_report.h"
#include "agent/pg/pg_conn.h"
#include "agent/promote/promote_plan.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

// The promotion plan and the etcd claim are the promote layer's.
using namespace ::geosync::promote;  // NOLINT(google-build-using-namespace)
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr auto kWriteInterval = std::chrono::milliseconds(20);

std::string IsoNow() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The DSN must make libpq find the writable site by itself.
Status CheckClientDsn(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    Status st =
        Status::Config(fmt::format("--client-dsn does not parse: {}", err ? err : "out of memory"));
    PQfreemem(err);
    return st;
  }
  std::string attrs, host;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string_view(o->keyword) == "target_session_attrs") attrs = o->val;
    if (std::string_view(o->keyword) == "host" || std::string_view(o->keyword) == "hostaddr") {
      host = o->val;
    }
  }
  PQconninfoFree(opts);
  if (attrs != "read-write" && attrs != "primary") {
    return Status::Config(
        "--client-dsn must set target_session_attrs=read-write (or primary) and list every "
        "site's PostgreSQL, as an application that survives a switchover does: "
        "\"host=a,b port=5432,5432 dbname=app target_session_attrs=read-write\"");
  }
  if (host.find(',') == std::string::npos) {
    return Status::Config("--client-dsn names one host: list every site's PostgreSQL");
  }
  return Status::Ok();
}

// The application stand-in: one write every 20 ms, through the multi-host
// DSN, recording when each was acknowledged and by which server.
class WriteClient {
 public:
  struct Write {
    double t;  // seconds since the drill started, when the commit returned
    int64_t id;
    std::string server;  // host:port that acknowledged it
  };

  WriteClient(std::string dsn, std::string table, Clock::time_point t0)
      : dsn_(std::move(dsn)), table_(std::move(table)), t0_(t0) {
    // Unique across drills: seconds since the Unix epoch, then a counter.
    next_id_ = static_cast<int64_t>(std::time(nullptr)) * 1'000'000;
  }
  ~WriteClient() { Stop(); }

  Status CreateTable() {
    auto conn = PgConn::Connect(dsn_);
    if (!conn.ok()) return conn.status().WithContext("--client-dsn");
    return conn
        ->Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, written_at "
                           "timestamptz NOT NULL DEFAULT now(), server text NOT NULL)",
                           conn->EscapeIdentifier(table_)))
        .status()
        .WithContext("creating the drill's client table " + table_);
  }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::vector<Write> writes() const {
    std::lock_guard lock(mu_);
    return writes_;
  }
  uint64_t failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }
  std::string last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
  }
  // Waits until a write is acknowledged after `t` (drill seconds).
  bool WaitWriteAfter(double t, Clock::time_point deadline) const {
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (!writes_.empty() && writes_.back().t > t) return true;
      }
      std::this_thread::sleep_for(kWriteInterval);
    }
    return false;
  }

 private:
  void Loop() {
    std::optional<PgConn> conn;
    std::string insert;
    while (!stop_) {
      const auto next = Clock::now() + kWriteInterval;
      if (!conn) {
        auto c = PgConn::Connect(dsn_);
        if (c.ok()) {
          conn = std::move(c).value();
          insert = fmt::format("INSERT INTO {} (id, server) VALUES ($1, $2)",
                               conn->EscapeIdentifier(table_));
        } else {
          Failed(c.status());
        }
      }
      if (conn) {
        const int64_t id = next_id_;
        const std::string server =
            fmt::format("{}:{}", PQhost(conn->get()) ? PQhost(conn->get()) : "?",
                        PQport(conn->get()) ? PQport(conn->get()) : "?");
        auto r = conn->ExecParams(insert, {std::to_string(id), server});
        if (r.ok()) {
          ++next_id_;
          std::lock_guard lock(mu_);
          writes_.push_back({Seconds(Clock::now() - t0_), id, server});
        } else {
          Failed(r.status());
          conn.reset();  // reconnect: libpq picks the writable host again
        }
      }
      std::this_thread::sleep_until(next);
    }
  }
  void Failed(const Status& st) {
    std::lock_guard lock(mu_);
    failures_++;
    last_error_ = st.ToString();
  }

  const std::string dsn_, table_;
  const Clock::time_point t0_;
  int64_t next_id_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Write> writes_;
  uint64_t failures_ = 0;
  std::string last_error_;
};

// The longest gap between consecutive acknowledged writes that overlaps
// [from, to] (drill seconds): how long a writing client saw no write
// succeed around a switchover.
double LongestGap(const std::vector<WriteClient::Write>& writes, double from, double to) {
  double longest = 0;
  for (size_t i = 1; i < writes.size(); ++i) {
    const double a = writes[i - 1].t, b = writes[i].t;
    if (b < from || a > to) continue;
    longest = std::max(longest, b - a);
  }
  return longest;
}

// How many of `ids` the table on the writable site lacks.
Result<int64_t> Missing(const std::string& dsn, const std::string& table,
                        const std::vector<int64_t>& ids) {
  auto conn = PgConn::Connect(dsn);
  if (!conn.ok()) return conn.status().WithContext("--client-dsn");
  std::string array = "{";
  for (size_t i = 0; i < ids.size(); ++i) array += (i ? "," : "") + std::to_string(ids[i]);
  array += "}";
  auto found = conn->ExecParams(fmt::format("SELECT count(*) FROM {} WHERE id = ANY($1::bigint[])",
                                            conn->EscapeIdentifier(table)),
                                {array});
  if (!found.ok()) return found.status();
  return static_cast<int64_t>(ids.size()) - std::stoll(found->Get(0, 0));
}

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

int RunSwitchoverDrill(const SwitchoverDrillArgs& args) {
  if (Status st = CheckClientDsn(args.client_dsn); !st.ok()) return Fail(st);
  auto topology = LoadTopology(args.topology);
  if (!topology.ok()) return Fail(topology.status());
  auto token = admin::ReadTokenFile(args.token_file, "--token-file");
  if (!token.ok()) return Fail(token.status());
  std::vector<SiteReport> sites = Survey(*topology, *token);
  std::string from;
  uint64_t epoch = 0;
  const SiteReport* target = nullptr;
  for (const auto& s : sites) {
    if (s.reachable && s.role == "source" && s.epoch >= epoch) {
      from = s.name;
      epoch = s.epoch;
    }
    if (s.name == args.site) target = &s;
  }
  if (from.empty()) return Fail(Status::NotFound("no reachable source site in the topology"));
  if (!target || !target->reachable || target->role != "replica" || !target->connected) {
    std::cerr << fmt::format("geosyncctl: drill refused: {} is not a streaming replica{}\n",
                             args.site,
                             target && !target->error.empty() ? ": " + target->error : "");
    return kExitRefused;
  }

  const auto t0 = Clock::now();
  auto since = [&] { return Seconds(Clock::now() - t0); };
  json events = json::array();
  auto event = [&](const std::string& name) {
    events.push_back({{"t", since()}, {"name", name}});
    std::cout << fmt::format("[{:7.2f} s] {}\n", since(), name);
  };
  json report = {{"version", 2},       {"kind", "switchover"}, {"cluster_id", topology->cluster_id},
                 {"site", args.site},  {"source", from},       {"epoch", epoch},
                 {"started", IsoNow()}};
  WriteClient client(args.client_dsn, args.client_table, t0);
  if (Status st = client.CreateTable(); !st.ok()) return Fail(st);
  LagSampler sampler(*topology, t0);
  sampler.Start();
  client.Start();
  const auto deadline = [&] { return Clock::now() + std::chrono::seconds(args.timeout_s); };
  std::string failure;
  auto fail_with = [&](const std::string& why) {
    if (failure.empty()) failure = why;
  };

  event("verify before");
  const int verify_before = VerifyForDrill(args.topology, args.token_file, args.timeout_s);
  if (verify_before != kExitOk)
    fail_with(fmt::format("verify before: {}", VerifyName(verify_before)));
  if (!client.WaitWriteAfter(since(), deadline())) {
    fail_with("the client wrote nothing through --client-dsn: " + client.last_error());
  }

  // One move: switchover to `to`, then the first write the client gets
  // through afterwards, and every acknowledged write checked on `to`.
  json legs = json::object();
  int64_t missing_max = 0;
  auto move = [&](const char* leg, const std::string& to) {
    json out = {{"to", to}};
    const double start = since();
    event(fmt::format("switchover to {}", to));
    SwitchoverOutcome o = SwitchoverForDrill(args.topology, args.token_file, to, args.timeout_s);
    const double done = since();
    out["exit_code"] = o.exit_code;
    out["epoch"] = o.epoch;
    out["geosyncctl_unavailable_seconds"] = o.unavailable_s;
    if (o.exit_code != kExitOk) {
      fail_with(fmt::format("switchover to {} exited {}", to, o.exit_code));
      out["write_unavailable_seconds"] = nullptr;
      out["acknowledged_writes_missing"] = nullptr;
      legs[leg] = out;
      return false;
    }
    if (!client.WaitWriteAfter(done, deadline())) {
      fail_with(fmt::format("no client write succeeded after the switchover to {}: {}", to,
                            client.last_error()));
      out["write_unavailable_seconds"] = nullptr;
    } else {
      const auto writes = client.writes();
      const double first_after =
          std::find_if(writes.begin(), writes.end(), [&](const auto& w) { return w.t > done; })->t;
      event(fmt::format("client writes on {}", to));
      out["write_unavailable_seconds"] = LongestGap(writes, start, first_after);
    }
    std::vector<int64_t> acked;
    for (const auto& w : client.writes()) acked.push_back(w.id);
    auto missing = Missing(args.client_dsn, args.client_table, acked);
    if (!missing.ok()) {
      fail_with("counting the client's writes on " + to + ": " + missing.status().ToString());
      out["acknowledged_writes_missing"] = nullptr;
    } else {
      out["acknowledged_writes"] = acked.size();
      out["acknowledged_writes_missing"] = *missing;
      missing_max = std::max(missing_max, *missing);
      if (*missing > 0) {
        fail_with(fmt::format("{} acknowledged write(s) missing on {}", *missing, to));
      }
    }
    legs[leg] = out;
    return true;
  };

  int verify_between = -1, verify_after = -1;
  double restored = -1;
  Position final_pos;
  if (move("there", args.site)) {
    event("verify between");
    verify_between = VerifyForDrill(args.topology, args.token_file, args.timeout_s);
    if (verify_between != kExitOk) {
      fail_with(fmt::format("verify on {}: {}", args.site, VerifyName(verify_between)));
    }
    if (move("back", from)) {
      // Back in sync: every replica applied what the source held once the
      // move back was over.
      std::vector<SiteReport> now = Survey(*topology, *token);
      for (const auto& s : now) {
        if (s.name == from) final_pos = s.durable;
      }
      const auto until = deadline();
      while (Clock::now() < until) {
        now = Survey(*topology, *token);
        bool all = true;
        for (const auto& s : now) {
          if (s.role == "replica") all &= s.connected && s.applied >= final_pos;
        }
        if (all) {
          restored = since();
          event("back in sync");
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (restored < 0) fail_with("the replicas did not get back in sync within --timeout");
      event("verify after");
      verify_after = VerifyForDrill(args.topology, args.token_file, args.timeout_s);
      if (verify_after != kExitOk)
        fail_with(fmt::format("verify after: {}", VerifyName(verify_after)));
    }
  }
  client.Stop();
  sampler.Stop();
  const auto writes = client.writes();
  report["finished"] = IsoNow();
  report["position"] = final_pos.ToString();
  report["writable_seconds"] = nullptr;
  report["rpo"] = {{"transactions", missing_max},
                   {"bytes", nullptr},
                   {"seconds", missing_max == 0 ? json(0.0) : json(nullptr)}};
  report["probes"] = json::array();
  report["restored_seconds"] = restored >= 0 ? json(restored) : json(nullptr);
  report["switchover"] = {
      {"back_to", from},
      {"client_table", args.client_table},
      {"write_interval_ms", kWriteInterval.count()},
      {"client_writes", writes.size()},
      {"client_failed_attempts", client.failures()},
      {"there", legs.value("there", json(nullptr))},
      {"back", legs.value("back", json(nullptr))},
      {"verify",
       {{"before", VerifyName(verify_before)},
        {"between", verify_between < 0 ? json(nullptr) : json(VerifyName(verify_between))},
        {"after", verify_after < 0 ? json(nullptr) : json(VerifyName(verify_after))}}}};
  report["figures"] = DrillFigures(report);
  report["timeline"] = sampler.timeline();
  report["events"] = events;
  report["result"] = failure.empty() ? "passed" : "failed";
  report["error"] = failure;
  auto path = WriteDrillReport(args.report_dir, report);
  if (!path.ok()) return Fail(path.status());
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
      report["result"].get<std::string>(), args.site,
      secs(sw["there"], "write_unavailable_seconds"), from,
      secs(sw["back"], "write_unavailable_seconds"), kWriteInterval.count(), writes.size(),
      client.failures(), missing_max, sw["verify"]["before"].dump(), sw["verify"]["between"].dump(),
      sw["verify"]["after"].dump(),
      restored >= 0 ? fmt::format("{:.3f}", restored) : std::string("unknown"), *path);
  if (failure.empty()) {
    RecordDrillPassed(*topology, {args.site, from}, "switchover", *token);
    return kExitOk;
  }
  std::cerr << fmt::format("geosyncctl: switchover drill to {} failed: {}\n", args.site, failure);
  return kExitDrillFailed;
}

}  // namespace geosync::ctl
