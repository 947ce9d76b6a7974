// What switchover, failover and rejoin share (promote_run.h).
#include "agent/ctl/promote_run.h"

#include <fmt/format.h>

#include <iostream>
#include <thread>

#include "agent/admin/admin_auth.h"
#include "agent/admin/admin_client.h"
#include "agent/ctl/commands.h"

namespace geosync::ctl {

StepResult FromStatus(const Status& st) {
  if (st.ok()) return std::nullopt;
  return StepError{ExitCodeFor(st), st.ToString()};
}

StepResult Post(const Run& run, const std::string& site, const std::string& action,
                const std::string& query) {
  const TopologySite* t = run.Topo(site);
  if (!t) return StepError{kExitConfig, fmt::format("site {} is not in the topology", site)};
  admin::HttpCall call;
  call.method = "POST";
  call.base_url = t->admin;
  call.target = "/admin/" + action + (query.empty() ? "" : "?" + query);
  call.bearer = run.token;
  call.timeout = std::chrono::seconds(10);
  auto answer = admin::Http(call);
  if (!answer.ok()) return FromStatus(answer.status().WithContext("site " + site));
  std::string body = answer->body;
  while (!body.empty() && body.back() == '\n') body.pop_back();
  if (answer->status == 200 || answer->status == 202) {
    std::cout << fmt::format("    {}: {}\n", site, body);
    return std::nullopt;
  }
  int code = answer->status == 401 || answer->status == 409 ? kExitRefused : kExitPeer;
  return StepError{code, fmt::format("site {}: POST {} answered HTTP {}: {}", site, call.target,
                                     answer->status, body)};
}

StepResult WaitUntil(Run& run, const std::string& what,
                     const std::function<bool(const Run&)>& done) {
  const auto until = Clock::now() + std::chrono::seconds(run.args.timeout_s);
  while (true) {
    run.sites = promote::Survey(run.topology, run.token);
    if (done(run)) return std::nullopt;
    if (Clock::now() > until) {
      return StepError{
          kExitPeer, fmt::format("timed out after {} s waiting for {}", run.args.timeout_s, what)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string StreamQuery(const Run& run, const std::string& site, StepResult* error) {
  const TopologySite* t = run.Topo(site);
  if (!t || t->stream.empty()) {
    *error = StepError{kExitConfig,
                       fmt::format("topology {}: site {} has no \"stream\" (host:port where its "
                                   "stream server listens); add it",
                                   run.args.topology, site)};
    return "";
  }
  auto colon = t->stream.rfind(':');
  return fmt::format("site={}&host={}&port={}", site, t->stream.substr(0, colon),
                     t->stream.substr(colon + 1));
}

bool Confirm(const PromoteArgs& args, const std::string& question) {
  if (args.yes) return true;
  std::cout << question << " [y/N] " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "y" || answer == "Y" || answer == "yes";
}

int Prepare(Run& run, const PromoteArgs& args) {
  auto deployment = LoadDeployment(args.topology, args.token_file);
  if (!deployment.ok()) return Fail(deployment.status());
  run.topology = deployment->topology;
  run.token = deployment->token;
  if (!run.Topo(args.to)) {
    return Fail(
        Status::Config(fmt::format("topology {}: no site named \"{}\"", args.topology, args.to)));
  }
  // An authenticated survey: a wrong token is refused here, dry run or not.
  run.sites = promote::Survey(run.topology, run.token);
  for (const SiteReport& s : run.sites) {
    if (s.unauthorized) {
      std::cerr << fmt::format(
          "geosyncctl: refused: site {} does not accept the token in {} (GET /status answered "
          "HTTP 401); nothing changed\n",
          s.name, args.token_file);
      return kExitRefused;
    }
    if (!s.reachable) run.absent.push_back(s.name);
  }
  return -1;
}

}  // namespace geosync::ctl
