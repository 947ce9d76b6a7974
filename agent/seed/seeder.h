// One attempt at seeding a replica (docs/seed.md), blocking: ask the source
// for a manifest on one connection (kept alive with heartbeats, so that the
// source keeps the snapshot), prepare the tables, copy every chunk with
// `workers` parallel connections, load indexes, sequences and the origin at
// the consistent point C, then reset the spool so that the stream resumes
// after C - 1.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "agent/seed/seed_progress.h"
#include "agent/spool/spool.h"
#include "common/config.h"
#include "common/link_refusals.h"

namespace geosync::seed {

struct SeederOptions {
  std::string cluster_id, site;
  Endpoint upstream;
  // Who may answer at `upstream` (common/handshake.h CheckSourceReply).
  std::string expected_source;
  std::vector<std::string> deployment_sites;
  LinkRefusals* refusals = nullptr;
  std::shared_ptr<boost::asio::ssl::context> tls;  // null: plain TCP
  std::string conninfo;                            // the replica database
  std::string origin_prefix;                       // geosync_<cluster_id>
  uint64_t epoch = 1;
  int workers = 4;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds peer_timeout{10000};
  // seed.auto: decline (kDeclined) when any published table already exists.
  bool only_if_empty = false;
  // The interrupted seed before this one created the tables: drop them first.
  bool drop_partial = false;
};

enum class SeedOutcome { kSeeded, kDeclined };

class Seeder {
 public:
  // `on_commit(created_schema)` runs once the attempt is about to change the
  // database (the state file must say "in progress" from then on).
  Seeder(SeederOptions options, Spool* spool, SeedProgress* progress,
         std::function<Status(bool created_schema)> on_commit);

  Result<SeedOutcome> Run();
  // Any thread: makes Run() return Cancelled soon.
  void Stop() { stop_ = true; }
  // The consistent point of the last successful Run().
  Position position() const { return position_; }

 private:
  Status Load(const SeedManifest& m);
  Status CopyAll(const SeedManifest& m);

  SeederOptions options_;
  Spool* spool_;
  SeedProgress* progress_;
  std::function<Status(bool)> on_commit_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> link_lost_{false};
  bool declined_ = false;
  Position position_;
};

}  // namespace geosync::seed
