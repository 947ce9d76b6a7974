// The replica's apply thread and the DBA's actions on it (apply_supervisor.h).
#include "agent/daemon/apply_supervisor.h"

#include <algorithm>
#include <charconv>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace geosync {

void ApplyControl::Stop(std::atomic<bool>& stopping) {
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
}

void RunApplyLoop(Applier& applier, ApplyControl& control, std::atomic<bool>& stopping) {
  auto backoff = std::chrono::seconds(1);
  while (!stopping) {
    Status st = applier.Run();
    if (stopping) break;
    spdlog::error(
        "apply stopped: {}; receiving into the spool continues; retrying in {} s (or on POST "
        "/admin/apply/resume)",
        st.ToString(), backoff.count());
    std::unique_lock lock(control.mu);
    control.error = st.ToString();
    control.error_at = applier.applied();
    control.failures++;
    control.waiting = true;
    control.cv.wait_for(lock, backoff, [&] { return stopping || control.wake; });
    control.waiting = false;
    const bool woken = control.wake;
    control.wake = false;
    backoff = woken ? std::chrono::seconds(1) : std::min(backoff * 2, std::chrono::seconds(60));
  }
}

admin::HttpReply SkipAction(Applier& applier, const admin::QueryParams& q) {
  auto it = q.find("xid");
  uint32_t xid = 0;
  const char* end = nullptr;
  if (it != q.end()) {
    end = it->second.data() + it->second.size();
    auto [p, ec] = std::from_chars(it->second.data(), end, xid);
    if (ec != std::errc() || p != end || xid == 0) end = nullptr;
  }
  if (!end) return {400, "text/plain; charset=utf-8", "expected ?xid=N, a transaction id > 0\n"};
  applier.SkipXid(xid);
  return {200, "text/plain; charset=utf-8",
          fmt::format("xid {} will be skipped once when it is next to apply; POST "
                      "/admin/apply/resume to retry now\n",
                      xid)};
}

admin::HttpReply ResumeAction(ApplyControl& control) {
  {
    std::lock_guard lock(control.mu);
    if (!control.waiting) {
      return {409, "text/plain; charset=utf-8", "apply is running: nothing to resume\n"};
    }
    control.wake = true;
  }
  control.cv.notify_all();
  spdlog::info("apply: resumed on DBA request");
  return {200, "text/plain; charset=utf-8", "apply resumes now\n"};
}

Status WaitAllApplied(Applier& applier, Spool& spool, ApplyControl& apply,
                      std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    const Position durable = spool.durable(), applied = applier.applied();
    if (applied >= durable) return Status::Ok();
    {
      std::lock_guard lock(apply.mu);
      if (apply.waiting) {
        return Status::InvalidArgument(fmt::format("apply stopped at {} of {} received: {}",
                                                   applied.ToString(), durable.ToString(),
                                                   apply.error));
      }
    }
    if (std::chrono::steady_clock::now() > until) {
      return Status::Timeout(fmt::format("apply reached {} of {} received in {} s",
                                         applied.ToString(), durable.ToString(), deadline.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace geosync
