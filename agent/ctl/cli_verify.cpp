// geosyncctl verify: compares every replicated table between the source and
// each replica at the same stream position, while writes go on. The source
// exports a snapshot (consistent point C) and checksums its published tables
// in key-hash buckets; each replica, frozen before the snapshot is taken,
// applies exactly up to C, holds there and checksums
// the same buckets; differing buckets are listed row by row on both sides to
// name the keys that differ. Exit 0 when equal, 9 when different, 10 when a
// replica did not reach the position in time (behind, not compared).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <iostream>
#include <map>
#include <thread>

#include "agent/admin/admin_client.h"
#include "agent/admin/admin_server.h"
#include "agent/admin/status_model.h"
#include "agent/ctl/commands.h"
#include "agent/promote/promote_plan.h"
#include "agent/verify/checksum.h"
#include "common/exit_codes.h"

namespace geosync::ctl {

// The promotion plan and the etcd claim are the promote layer's.
using namespace ::geosync::promote;  // NOLINT(google-build-using-namespace)
namespace {

using json = nlohmann::json;

struct VerifyArgs {
  std::string topology;
  std::string token_file;
  std::vector<std::string> sites;  // empty: every reachable replica
  int buckets = 256;
  int timeout_s = 600;
  int max_keys = 20;  // differing keys listed per table
};

class Caller {
 public:
  Caller(const Topology& t, std::string token) : topology_(t), token_(std::move(token)) {}

  Result<admin::HttpAnswer> Post(const std::string& site, const std::string& target) const {
    admin::HttpCall call;
    call.method = "POST";
    for (const auto& s : topology_.sites) {
      if (s.name == site) call.base_url = s.admin;
    }
    call.target = target;
    call.bearer = token_;
    call.timeout = std::chrono::seconds(30);
    auto a = admin::Http(call);
    if (!a.ok()) return a.status().WithContext("site " + site);
    if (a->status >= 300) {
      return Status(
          a->status == 401 ? Code::kFenced : Code::kIo,
          fmt::format("site {}: POST {} answered HTTP {}: {}", site, target, a->status, a->body));
    }
    return a;
  }

  // Polls verify/result until done; the document.
  Result<json> Wait(const std::string& site, int timeout_s) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (true) {
      GEOSYNC_ASSIGN_OR_RETURN(admin::HttpAnswer a, Post(site, "/admin/verify/result"));
      json doc = json::parse(a.body, nullptr, false);
      if (doc.is_discarded()) return Status::Protocol("site " + site + ": verify/result not JSON");
      const std::string state = doc.value("state", "");
      if (state == "done") return doc;
      if (state == "failed") {
        if (doc.value("behind", false)) return doc;  // the caller reports it
        return Status::Io(fmt::format("site {}: {}", site, doc.value("error", "")));
      }
      if (std::chrono::steady_clock::now() > until) {
        return Status::Timeout(
            fmt::format("site {}: verify still running after {} s", site, timeout_s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  Result<std::map<std::string, std::string>> Rows(const std::string& site, const std::string& table,
                                                  int bucket) const {
    GEOSYNC_ASSIGN_OR_RETURN(admin::HttpAnswer a,
                             Post(site, fmt::format("/admin/verify/rows?table={}&bucket={}",
                                                    admin::QueryEncode(table), bucket)));
    json doc = json::parse(a.body, nullptr, false);
    std::map<std::string, std::string> rows;
    if (!doc.is_array()) return Status::Protocol("site " + site + ": verify/rows not a list");
    for (const auto& r : doc) rows[r.at(0).get<std::string>()] = r.at(1).get<std::string>();
    return rows;
  }

  void End(const std::string& site) const { (void)Post(site, "/admin/verify/end"); }

 private:
  const Topology& topology_;
  std::string token_;
};

// Compares one table of one replica with the source; prints what differs.
// Returns the number of differing rows found (0 when equal).
Result<uint64_t> CompareTable(const Caller& caller, const VerifyArgs& args,
                              const std::string& source, const TableChecksum& want,
                              const std::string& replica, const TableChecksum& got) {
  if (got.missing) {
    std::cout << fmt::format("  {:<32} MISSING on {}\n", want.table, replica);
    return std::max<uint64_t>(want.rows, 1);
  }
  std::vector<int> differing;
  for (int b = 0; b < args.buckets; ++b) {
    auto w = want.buckets.find(b);
    auto g = got.buckets.find(b);
    BucketSum ws = w == want.buckets.end() ? BucketSum{} : w->second;
    BucketSum gs = g == got.buckets.end() ? BucketSum{} : g->second;
    if (!(ws == gs)) differing.push_back(b);
  }
  if (differing.empty()) {
    std::cout << fmt::format("  {:<32} equal ({} rows)\n", want.table, want.rows);
    return 0;
  }
  uint64_t diffs = 0;
  int listed = 0;
  std::string lines;
  for (int b : differing) {
    GEOSYNC_ASSIGN_OR_RETURN(auto src, caller.Rows(source, want.table, b));
    GEOSYNC_ASSIGN_OR_RETURN(auto rep, caller.Rows(replica, want.table, b));
    for (const auto& [key, md5] : src) {
      auto it = rep.find(key);
      const char* what =
          it == rep.end() ? "missing on the replica" : (it->second != md5 ? "differs" : nullptr);
      if (!what) continue;
      diffs++;
      if (listed++ < args.max_keys) lines += fmt::format("      key {}: {}\n", key, what);
    }
    for (const auto& [key, md5] : rep) {
      if (src.count(key)) continue;
      diffs++;
      if (listed++ < args.max_keys)
        lines += fmt::format("      key {}: extra on the replica\n", key);
    }
  }
  std::cout << fmt::format(
      "  {:<32} DIFFERENT: {} row(s) in {} bucket(s) ({} rows here, {} on "
      "the source)\n{}",
      want.table, diffs, differing.size(), got.rows, want.rows, lines);
  if (listed > args.max_keys) {
    std::cout << fmt::format("      ... {} more\n", listed - args.max_keys);
  }
  return std::max<uint64_t>(diffs, 1);
}

// Which sites a verify compares: the source at the highest epoch and the
// replicas asked for (every reachable one by default).
struct VerifySites {
  std::string source;
  std::vector<std::string> replicas;
};

Result<VerifySites> ChooseSites(const VerifyArgs& args, const Topology& topology) {
  std::vector<SiteReport> sites = Survey(topology);
  VerifySites v;
  uint64_t epoch = 0;
  for (const auto& s : sites) {
    if (s.reachable && s.role == "source" && s.epoch >= epoch) {
      v.source = s.name;
      epoch = s.epoch;
    }
  }
  if (v.source.empty()) return Status::NotFound("no reachable source site in the topology");
  v.replicas = args.sites;
  if (v.replicas.empty()) {
    for (const auto& s : sites) {
      if (s.reachable && s.role == "replica") v.replicas.push_back(s.name);
    }
  }
  if (v.replicas.empty()) return Status::NotFound("no replica site to verify");
  return v;
}

// The source's checksums at its snapshot, and the position it was taken at.
struct SourceSums {
  std::vector<TableChecksum> tables;
  std::string names;  // "a,b,c" for the replicas' request
  std::string position;
};

Result<SourceSums> SumSource(Caller& caller, const VerifyArgs& args, const std::string& source) {
  GEOSYNC_RETURN_IF_ERROR(
      caller.Post(source, fmt::format("/admin/verify/begin?buckets={}", args.buckets)).status());
  GEOSYNC_ASSIGN_OR_RETURN(json src, caller.Wait(source, args.timeout_s));
  SourceSums sums;
  for (const auto& t : src["tables"]) {
    GEOSYNC_ASSIGN_OR_RETURN(TableChecksum sum, TableChecksumFromJson(t));
    sums.names += (sums.names.empty() ? "" : ",") + sum.table;
    sums.tables.push_back(sum);
  }
  sums.position = src["position"].get<std::string>();
  return sums;
}

// One replica against the source's sums: the rows that differ, or nullopt
// when it did not reach the position (behind: not compared).
Result<std::optional<uint64_t>> CompareReplica(Caller& caller, const VerifyArgs& args,
                                               const std::string& source, const SourceSums& want,
                                               const std::string& replica) {
  GEOSYNC_RETURN_IF_ERROR(
      caller
          .Post(replica, fmt::format("/admin/verify/begin?buckets={}&position={}&tables={}&"
                                     "reach_timeout_s={}",
                                     args.buckets, admin::QueryEncode(want.position),
                                     admin::QueryEncode(want.names), args.timeout_s))
          .status());
  GEOSYNC_ASSIGN_OR_RETURN(json rep, caller.Wait(replica, args.timeout_s + 30));
  if (rep.value("behind", false)) {
    // Not compared: a site that is only behind is not different.
    std::cout << fmt::format("{} vs {}: BEHIND: reached {} of {} within {} s, not compared\n",
                             replica, source, rep.value("reached", "?"), want.position,
                             args.timeout_s);
    return std::optional<uint64_t>();
  }
  std::map<std::string, TableChecksum> got;
  for (const auto& t : rep["tables"]) {
    GEOSYNC_ASSIGN_OR_RETURN(TableChecksum sum, TableChecksumFromJson(t));
    got[sum.table] = sum;
  }
  std::cout << fmt::format("{} vs {}:\n", replica, source);
  uint64_t diffs = 0;
  for (const TableChecksum& w : want.tables) {
    GEOSYNC_ASSIGN_OR_RETURN(uint64_t d,
                             CompareTable(caller, args, source, w, replica, got[w.table]));
    diffs += d;
  }
  return std::optional<uint64_t>(diffs);
}

int Verdict(uint64_t total_diffs, const std::vector<std::string>& behind, size_t compared,
            const std::string& position, double seconds) {
  if (total_diffs > 0) {
    std::cout << fmt::format(
        "verify: DIFFERENT ({} row(s)) in {:.1f} s{}\n", total_diffs, seconds,
        behind.empty() ? "" : fmt::format("; {} site(s) BEHIND", behind.size()));
    return kExitDifferent;
  }
  if (!behind.empty()) {
    std::cout << fmt::format(
        "verify: BEHIND: {} site(s) did not reach {} and were not compared ({}); the others are "
        "equal; {:.1f} s\n",
        behind.size(), position, fmt::join(behind, ", "), seconds);
    return kExitBehind;
  }
  std::cout << fmt::format("verify: every table equal on {} site(s) in {:.1f} s\n", compared,
                           seconds);
  return kExitOk;
}

int RunVerify(const VerifyArgs& args) {
  auto deployment = LoadDeployment(args.topology, args.token_file);
  if (!deployment.ok()) return Fail(deployment.status());
  auto chosen = ChooseSites(args, deployment->topology);
  if (!chosen.ok()) return Fail(chosen.status());
  const VerifySites& v = *chosen;
  Caller caller(deployment->topology, deployment->token);
  auto cleanup = [&] {
    caller.End(v.source);
    for (const auto& r : v.replicas) caller.End(r);
  };
  auto fail = [&](const Status& st) {
    cleanup();
    return Fail(st);
  };
  const auto t0 = std::chrono::steady_clock::now();
  // Replicas stop applying first: they must not pass the position the
  // source's snapshot is about to take, and then apply exactly up to it.
  for (const std::string& replica : v.replicas) {
    if (auto a = caller.Post(replica, "/admin/verify/freeze"); !a.ok()) return fail(a.status());
  }
  auto want = SumSource(caller, args, v.source);
  if (!want.ok()) return fail(want.status());
  std::cout << fmt::format("verify at {} (snapshot of {}): {} table(s), {} buckets each\n",
                           want->position, v.source, want->tables.size(), args.buckets);
  uint64_t total_diffs = 0;
  std::vector<std::string> behind;
  for (const std::string& replica : v.replicas) {
    auto diffs = CompareReplica(caller, args, v.source, *want, replica);
    if (!diffs.ok()) return fail(diffs.status());
    if (!diffs->has_value()) behind.push_back(replica);
    total_diffs += diffs->value_or(0);
    caller.End(replica);  // apply resumes
  }
  cleanup();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Verdict(total_diffs, behind, v.replicas.size(), want->position, seconds);
}

}  // namespace

int VerifyForDrill(const std::string& topology, const std::string& token_file, int timeout_s) {
  VerifyArgs args;
  args.topology = topology;
  args.token_file = token_file;
  args.timeout_s = timeout_s;
  return RunVerify(args);
}

void RegisterVerifyCommands(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<VerifyArgs>();
  auto* cmd = app.add_subcommand(
      "verify", "compare every replicated table between the source and replicas at one position");
  cmd->add_option("--topology", args->topology, "topology file")->required();
  cmd->add_option("--token-file", args->token_file, "file holding the admin bearer token")
      ->required();
  cmd->add_option("--site", args->sites, "replica to verify (repeat; default: every replica)");
  cmd->add_option("--buckets", args->buckets, "key-hash buckets per table (default 256)")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--timeout", args->timeout_s, "seconds each site may take (default 600)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--max-keys", args->max_keys, "differing keys listed per table (default 20)")
      ->check(CLI::Range(0, 1000000));
  cmd->callback([args, exit_code] { *exit_code = RunVerify(*args); });
}

}  // namespace geosync::ctl
