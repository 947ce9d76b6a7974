// SiteControl; see site_control.h.
#include "agent/promote/site_control.h"

#include <fmt/format.h>

namespace geosync {

SiteControl::SiteControl(const Config& config, SiteState state)
    : config_(config), state_(std::move(state)) {}

SiteState SiteControl::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

Status SiteControl::Update(const std::function<void(SiteState&)>& change) {
  std::lock_guard lock(mu_);
  SiteState copy = state_;
  change(copy);
  GEOSYNC_RETURN_IF_ERROR(WriteSiteState(config_.state_dir, copy));
  state_ = std::move(copy);
  return Status::Ok();
}

Status SiteControl::Request(NextRole next) {
  std::lock_guard lock(mu_);
  if (next_.kind != NextRole::kExit) {
    return Status::InvalidArgument("another role change is already under way on this site");
  }
  next_ = std::move(next);
  return Status::Ok();
}

NextRole SiteControl::next() const {
  std::lock_guard lock(mu_);
  return next_;
}

void SiteControl::ClearNext() {
  std::lock_guard lock(mu_);
  next_ = NextRole{};
}

void SiteControl::SetStep(std::string step) {
  std::lock_guard lock(mu_);
  step_ = std::move(step);
}

std::string SiteControl::step() const {
  std::lock_guard lock(mu_);
  return step_;
}

admin::PromotionStatus PromotionOf(const SiteControl& control) {
  SiteState s = control.state();
  admin::PromotionStatus v;
  v.in_progress = !s.promotion_target.empty();
  v.target = s.promotion_target;
  v.epoch = s.promotion_epoch;
  v.step = control.step();
  if (s.promotion_final.lsn.valid()) v.final_position = s.promotion_final.ToString();
  v.error = s.promotion_error;
  v.db_fenced = s.db_fenced;
  for (const Position& p : s.history) v.history.push_back(p.ToString());
  return v;
}

}  // namespace geosync
