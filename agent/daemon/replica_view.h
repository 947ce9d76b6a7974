// The replica role's figures for /status and /metrics, read on the event
// loop.
#pragma once

#include <chrono>

#include "agent/admin/status_model.h"
#include "agent/daemon/apply_supervisor.h"
#include "agent/replica/applier.h"
#include "agent/replica/receiver.h"
#include "agent/seed/replica_seed.h"
#include "agent/spool/spool.h"
#include "common/config.h"

namespace geosync {

struct ReplicaView {
  const Config& config;
  const Endpoint& upstream;
  Receiver& receiver;
  Applier& applier;
  Spool& spool;
  ApplyControl& control;
  admin::LagTracker& tracker;
  admin::LagTracker& primary_tracker;  // (primary WAL, source time) from heartbeats
  admin::TxnDensity& density;
  admin::RateMeter& rate;
  std::chrono::steady_clock::time_point started;
  seed::ReplicaSeed& seed;

  admin::ReplicaSnapshot Snapshot() const;

 private:
  admin::PotentialLoss Loss(const ReceiverStatus& rs, Position durable) const;
  void AddLag(admin::ReplicaSnapshot& s, const ReceiverStatus& rs, int64_t now) const;
  void AddApply(admin::ReplicaSnapshot& s) const;
};

}  // namespace geosync
