// When each kind of drill last passed on this site, kept in
// <state_dir>/drills.json and exported on /metrics as
// geosync_drill_last_passed_timestamp_seconds{kind="..."}: the evidence
// that drills run routinely, and what the GeosyncDrillOverdue alert reads.
// `geosyncctl drill` records a passed drill on the sites it exercised
// through POST /admin/drill/passed?kind=KIND.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "common/status.h"

namespace geosync {

class DrillLog {
 public:
  // Kinds of drill report (schemas/drill_report.schema.json).
  static bool KnownKind(const std::string& kind);

  // Reads <state_dir>/drills.json when it exists; a damaged file is an
  // error naming it (the site keeps running: the caller logs it).
  static Result<std::map<std::string, int64_t>> Read(const std::string& state_dir);

  explicit DrillLog(std::string state_dir, std::map<std::string, int64_t> passed = {})
      : dir_(std::move(state_dir)), passed_(std::move(passed)) {}

  // Records that a drill of `kind` passed at `unix_seconds`, durably.
  Status Record(const std::string& kind, int64_t unix_seconds);
  // The metric family; empty when no drill has passed here.
  std::string MetricsText() const;

 private:
  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, int64_t> passed_;
};

}  // namespace geosync
