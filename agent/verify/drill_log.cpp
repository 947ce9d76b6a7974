#include "agent/verify/drill_log.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/state/state_file.h"

namespace geosync {

bool DrillLog::KnownKind(const std::string& kind) {
  return kind == "frozen-replica" || kind == "throwaway-copy" || kind == "switchover";
}

Result<std::map<std::string, int64_t>> DrillLog::Read(const std::string& state_dir) {
  const std::string path = state_dir + "/drills.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::map<std::string, int64_t>{};  // no drill has passed here yet
  std::stringstream text;
  text << in.rdbuf();
  auto doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::Corruption(fmt::format("drill log {} is not a JSON object", path));
  }
  std::map<std::string, int64_t> out;
  for (const auto& [kind, at] : doc.items()) {
    if (!KnownKind(kind) || !at.is_number_integer()) {
      return Status::Corruption(
          fmt::format("drill log {}: key \"{}\" is not a drill kind with a Unix time", path, kind));
    }
    out[kind] = at.get<int64_t>();
  }
  return out;
}

Status DrillLog::Record(const std::string& kind, int64_t unix_seconds) {
  if (!KnownKind(kind)) {
    return Status::InvalidArgument(fmt::format(
        "unknown drill kind \"{}\" (frozen-replica, throwaway-copy or switchover)", kind));
  }
  std::lock_guard lock(mu_);
  auto next = passed_;
  next[kind] = unix_seconds;
  nlohmann::json doc = nlohmann::json::object();
  for (const auto& [k, at] : next) doc[k] = at;
  GEOSYNC_RETURN_IF_ERROR(WriteFileAtomically(dir_, "drills.json", doc.dump(2) + "\n"));
  passed_ = std::move(next);
  return Status::Ok();
}

std::string DrillLog::MetricsText() const {
  std::lock_guard lock(mu_);
  if (passed_.empty()) return "";
  std::string out =
      "# HELP geosync_drill_last_passed_timestamp_seconds When a drill of this kind last passed "
      "on this site (geosyncctl drill), Unix time.\n"
      "# TYPE geosync_drill_last_passed_timestamp_seconds gauge\n";
  for (const auto& [kind, at] : passed_) {
    out += fmt::format("geosync_drill_last_passed_timestamp_seconds{{kind=\"{}\"}} {}\n", kind, at);
  }
  return out;
}

}  // namespace geosync
