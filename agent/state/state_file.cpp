// Atomic, versioned state file (temp file, fsync, rename, fsync directory).
#include "agent/state/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/json_reader.h"

namespace geosync {
namespace {

std::string StatePath(const std::string& dir) { return dir + "/state.json"; }

Status FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return Status::Io(fmt::format("open {}: {}", path, std::strerror(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Io(fmt::format("fsync {}: {}", path, std::strerror(err)));
  return Status::Ok();
}

}  // namespace

const char* SeedStateName(SeedState s) {
  switch (s) {
    case SeedState::kNone:
      return "none";
    case SeedState::kInProgress:
      return "in_progress";
    case SeedState::kDone:
      return "done";
  }
  return "none";
}

Result<SiteState> ReadSiteState(const std::string& dir) {
  std::string path = StatePath(dir);
  std::ifstream in(path);
  if (!in) return Status::NotFound(fmt::format("state file {} does not exist", path));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(fmt::format("state file {} is not valid JSON: {}", path, e.what()));
  }
  if (!doc.is_object())
    return Status::Corruption(fmt::format("state file {} is not an object", path));
  JsonReader r(doc, path);
  SiteState s;
  int64_t version = 0, epoch = 0;
  std::string role;
  r.Int("version", 1, SiteState::kVersion, &version, true);
  r.String("cluster_id", &s.cluster_id, true);
  r.String("site", &s.site, true);
  r.Int("epoch", 1, INT64_MAX, &epoch, true);
  r.Enum("role", {"source", "replica"}, &role, true);
  r.String("source_site", &s.source_site);
  r.Bool("fenced", &s.fenced);
  r.String("fence_reason", &s.fence_reason);
  std::string upstream, final_pos;
  std::vector<std::string> history;
  int64_t promotion_epoch = 0;
  r.String("upstream", &upstream);
  r.StringList("peers", &s.peers);
  r.StringList("history", &history);
  r.Bool("db_fenced", &s.db_fenced);
  r.String("promotion_target", &s.promotion_target);
  r.Int("promotion_epoch", 0, INT64_MAX, &promotion_epoch);
  r.String("promotion_final", &final_pos);
  r.String("promotion_error", &s.promotion_error);
  std::string seed_state = "none";
  r.Enum("seed_state", {"none", "in_progress", "done"}, &seed_state);
  r.String("seed_position", &s.seed_position);
  r.Bool("seed_created_schema", &s.seed_created_schema);
  r.CheckNoUnknownKeys();
  s.seed_state = seed_state == "in_progress" ? SeedState::kInProgress
                 : seed_state == "done"      ? SeedState::kDone
                                             : SeedState::kNone;
  if (!r.status().ok()) return Status::Corruption(r.status().message());
  s.promotion_epoch = static_cast<uint64_t>(promotion_epoch);
  if (!upstream.empty()) {
    auto colon = upstream.rfind(':');
    int port = colon == std::string::npos ? 0 : std::atoi(upstream.c_str() + colon + 1);
    if (port <= 0 || port > 65535) {
      return Status::Corruption(
          fmt::format("state file {}: upstream \"{}\" is not host:port", path, upstream));
    }
    s.upstream = Endpoint{upstream.substr(0, colon), static_cast<uint16_t>(port)};
  }
  for (const std::string& h : history) {
    auto pos = Position::Parse(h);
    if (!pos.ok()) {
      return Status::Corruption(
          fmt::format("state file {}: history: {}", path, pos.status().message()));
    }
    s.history.push_back(*pos);
  }
  if (!final_pos.empty()) {
    auto pos = Position::Parse(final_pos);
    if (!pos.ok()) {
      return Status::Corruption(
          fmt::format("state file {}: promotion_final: {}", path, pos.status().message()));
    }
    s.promotion_final = *pos;
  }
  s.epoch = static_cast<uint64_t>(epoch);
  s.role = role == "source" ? Role::kSource : Role::kReplica;
  return s;
}

Status WriteSiteState(const std::string& dir, const SiteState& s) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io(fmt::format("creating state dir {}: {}", dir, ec.message()));
  nlohmann::json doc = {{"version", SiteState::kVersion},
                        {"cluster_id", s.cluster_id},
                        {"site", s.site},
                        {"epoch", s.epoch},
                        {"role", s.role == Role::kSource ? "source" : "replica"},
                        {"source_site", s.source_site},
                        {"fenced", s.fenced},
                        {"fence_reason", s.fence_reason},
                        {"peers", s.peers},
                        {"db_fenced", s.db_fenced},
                        {"promotion_target", s.promotion_target},
                        {"promotion_epoch", s.promotion_epoch},
                        {"promotion_error", s.promotion_error},
                        {"seed_state", SeedStateName(s.seed_state)},
                        {"seed_position", s.seed_position},
                        {"seed_created_schema", s.seed_created_schema}};
  if (s.upstream) doc["upstream"] = fmt::format("{}:{}", s.upstream->host, s.upstream->port);
  nlohmann::json history = nlohmann::json::array();
  for (const Position& p : s.history) history.push_back(p.ToString());
  doc["history"] = std::move(history);
  if (s.promotion_final.lsn.valid()) doc["promotion_final"] = s.promotion_final.ToString();
  return WriteFileAtomically(dir, "state.json", doc.dump(2) + "\n");
}

Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           const std::string& text) {
  std::string path = dir + "/" + name;
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return Status::Io(fmt::format("create {}: {}", tmp, std::strerror(errno)));
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  if (n != static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0) {
    ::close(fd);
    return Status::Io(fmt::format("write {}: {}", tmp, std::strerror(n < 0 ? err : errno)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Io(fmt::format("rename {} to {}: {}", tmp, path, std::strerror(errno)));
  }
  return FsyncPath(dir, true);
}

std::optional<Lsn> SiteState::EpochEnd(uint64_t e) const {
  for (const Position& p : history) {
    if (p.epoch == e) return p.lsn;
  }
  return std::nullopt;
}

Result<SiteState> LoadOrInitSiteState(const Config& config) {
  auto existing = ReadSiteState(config.state_dir);
  if (existing.ok()) {
    if (existing->cluster_id != config.cluster_id || existing->site != config.site) {
      return Status::Config(fmt::format(
          "state file {}/state.json belongs to cluster {} site {}, but config {} says cluster {} "
          "site {}",
          config.state_dir, existing->cluster_id, existing->site, config.path, config.cluster_id,
          config.site));
    }
    return existing;
  }
  if (existing.status().code() != Code::kNotFound) return existing.status();
  SiteState s;
  s.cluster_id = config.cluster_id;
  s.site = config.site;
  s.epoch = 1;
  s.role = config.role;
  s.source_site = config.role == Role::kSource ? config.site : "";
  GEOSYNC_RETURN_IF_ERROR(WriteSiteState(config.state_dir, s));
  return s;
}

}  // namespace geosync
