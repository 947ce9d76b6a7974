// The source role's figures for /status and /metrics, and the drill's
// "what would a site lose" query, read on the event loop.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "agent/admin/admin_server.h"
#include "agent/admin/slot_poller.h"
#include "agent/admin/status_model.h"
#include "agent/source/capture.h"
#include "agent/source/site_registry.h"
#include "agent/spool/spool.h"
#include "agent/state/state_file.h"
#include "common/config.h"

namespace geosync {

struct SourceView {
  const Config& config;
  const SiteState& state;
  std::chrono::steady_clock::time_point started;
  const std::atomic<bool>& fenced;
  const std::unique_ptr<Capture>& capture;
  Spool& spool;
  SiteRegistry& registry;
  admin::SlotPoller& poller;
  admin::LagTracker& tracker;  // (spool durable, time) samples
  std::chrono::milliseconds sample_period;
  const std::atomic<uint64_t>& retention_runs;

  admin::SourceSnapshot Snapshot() const;

 private:
  admin::LagFigures Lag(Position pos, Lsn wal, int64_t now) const;
  void AddCapture(admin::SourceSnapshot& s) const;
  void AddSites(admin::SourceSnapshot& s, int64_t now) const;
};

// POST /admin/drill/behind?after=E@X/Y: the transactions (with row changes)
// and payload bytes the source holds after a site's durable position: what
// that site would lose if the primary were lost now (the drill's RPO).
admin::HttpReply BehindAction(Spool& spool, const admin::QueryParams& q);

}  // namespace geosync
