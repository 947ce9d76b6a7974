// The replica's apply thread: Applier::Run() again after a fatal error, with
// a backoff that POST /admin/apply/resume cuts short, and the DBA's skip and
// resume actions.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "agent/admin/admin_server.h"
#include "agent/replica/applier.h"
#include "agent/spool/spool.h"
#include "common/lsn.h"
#include "common/status.h"

namespace geosync {

// Records the error while apply makes no progress past it.
struct ApplyControl {
  std::mutex mu;
  std::condition_variable cv;
  bool wake = false;
  bool waiting = false;  // in the backoff after an error
  std::string error;
  Position error_at;  // applied() when the error happened
  uint64_t failures = 0;

  void Stop(std::atomic<bool>& stopping);
};

// Runs the applier until `stopping`, backing off 1 s doubling to 60 s after
// each error.
void RunApplyLoop(Applier& applier, ApplyControl& control, std::atomic<bool>& stopping);

// POST /admin/apply/skip?xid=N.
admin::HttpReply SkipAction(Applier& applier, const admin::QueryParams& q);

// POST /admin/apply/resume: ends the backoff now.
admin::HttpReply ResumeAction(ApplyControl& control);

// Waits until the applier has applied everything the spool holds durably;
// an apply error or the deadline ends the wait with that error.
Status WaitAllApplied(Applier& applier, Spool& spool, ApplyControl& apply,
                      std::chrono::seconds deadline);

}  // namespace geosync
