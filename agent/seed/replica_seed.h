// The replica daemon's entry point to seeding: whether this start must seed
// before streaming (an interrupted or requested seed, or seed.auto on a site
// that never received anything), the seed itself with retries from scratch,
// its progress for /status, and POST /admin/seed. State transitions are
// persisted in state.json (seed_state) before the database is touched.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "agent/admin/admin_server.h"
#include "agent/seed/seed_progress.h"
#include "agent/seed/seeder.h"
#include "agent/state/state_file.h"

namespace geosync::seed {

class ReplicaSeed {
 public:
  // Writes a change to state.json and returns it (the daemon's SiteControl).
  using StateUpdate = std::function<Status(const std::function<void(SiteState&)>&)>;
  // `state` is the daemon's copy of state.json; it outlives this object.
  // `update`, when given, persists every change (else WriteSiteState).
  ReplicaSeed(const Config& config, SiteState* state, Spool* spool,
              std::shared_ptr<boost::asio::ssl::context> tls, StateUpdate update = {});

  // Whether a seed must run before the receiver and applier start.
  bool Needed();
  // Blocking: seeds, starting again from scratch after a failed attempt
  // (backoff up to 30 s), until done, declined (seed.auto), a fatal error
  // (InvalidArgument, Config, Fenced) or Stop().
  Status Run();
  // Any thread.
  void Stop();
  admin::SeedSnapshot Snapshot() const;
  // POST /admin/seed: persists "in progress" so that the replica role,
  // restarted by the caller, seeds. 409 while a seed runs.
  admin::HttpReply Request();
  // Who may answer as the source (SeederOptions); set before Run().
  void SetSourceIdentity(std::string expected, std::vector<std::string> sites,
                         LinkRefusals* refusals) {
    expected_source_ = std::move(expected);
    deployment_sites_ = std::move(sites);
    refusals_ = refusals;
  }

 private:
  Status Persist(const std::function<void(SiteState&)>& change);
  Result<SeederOptions> AttemptOptions();

  const Config& config_;
  SiteState* state_;
  StateUpdate update_;
  Spool* spool_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::string expected_source_;
  std::vector<std::string> deployment_sites_;
  LinkRefusals* refusals_ = nullptr;
  bool auto_ = false;
  SeedProgress progress_;
  mutable std::mutex mu_;  // state_, current_
  std::condition_variable cv_;
  Seeder* current_ = nullptr;
  std::atomic<bool> stop_{false};
};

}  // namespace geosync::seed
