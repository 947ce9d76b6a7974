// The deployment table of geosyncctl status: one row per site, from what
// each site's /status says about itself.
#include "agent/admin/status_model.h"

#include "agent/admin/json_fields.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace geosync::admin {

using nlohmann::json;

// ---- The deployment table ----------------------------------------------------

namespace {

std::string LsnOf(const nlohmann::json& pos) {
  if (!pos.is_object()) return "";
  return pos.value("lsn", "");
}

}  // namespace

StatusRow RowFromStatus(const TopologySite& site, const nlohmann::json& status) {
  StatusRow row;
  row.site = site.name;
  row.admin = site.admin;
  row.reachable = true;
  try {
    row.role = status.at("role").get<std::string>();
    row.epoch = status.at("epoch").get<uint64_t>();
    row.state = status.at("state").get<std::string>();
    if (status.at("site").get<std::string>() != site.name) {
      row.last_error = fmt::format("answers as site {}", status.at("site").get<std::string>());
    }
    const auto& spool = status.at("spool");
    row.spool_bytes = spool.at("bytes").get<uint64_t>();
    if (status.at("last_error").is_string()) {
      row.last_error = status.at("last_error").get<std::string>();
    }
    if (row.role == "replica") {
      const auto& r = status.at("replica");
      row.received_lsn = LsnOf(r.at("received"));
      row.durable_lsn = LsnOf(r.at("durable"));
      row.applied_lsn = LsnOf(r.at("applied"));
      const auto& lag = r.at("lag").at("applied");
      if (lag.at("bytes").is_number()) row.lag_bytes = lag.at("bytes").get<uint64_t>();
      if (lag.at("seconds").is_number()) row.lag_seconds = lag.at("seconds").get<double>();
    } else if (row.role == "source") {
      const auto& s = status.at("source");
      if (s.at("server_wal_end").is_string()) row.received_lsn = s.at("server_wal_end");
      row.durable_lsn = LsnOf(spool.at("durable"));
      if (s.at("capture_lag_bytes").is_number()) {
        row.lag_bytes = s.at("capture_lag_bytes").get<uint64_t>();
      }
    }
  } catch (const nlohmann::json::exception& e) {
    row.state = "invalid";
    row.last_error = fmt::format("/status does not follow status.schema.json: {}", e.what());
  }
  return row;
}

StatusRow UnreachableRow(const TopologySite& site, const std::string& error) {
  StatusRow row;
  row.site = site.name;
  row.admin = site.admin;
  row.reachable = false;
  row.state = "unreachable";
  row.last_error = error;
  return row;
}

nlohmann::json RowsJson(const std::vector<StatusRow>& rows) {
  json out = json::array();
  for (const auto& r : rows) {
    out.push_back({{"site", r.site},
                   {"admin", r.admin},
                   {"reachable", r.reachable},
                   {"role", Text(r.role)},
                   {"epoch", Opt(r.epoch)},
                   {"state", r.state},
                   {"received_lsn", Text(r.received_lsn)},
                   {"durable_lsn", Text(r.durable_lsn)},
                   {"applied_lsn", Text(r.applied_lsn)},
                   {"lag_bytes", Opt(r.lag_bytes)},
                   {"lag_seconds", Opt(r.lag_seconds)},
                   {"spool_bytes", Opt(r.spool_bytes)},
                   {"last_error", Text(r.last_error)}});
  }
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string FormatTable(const std::vector<StatusRow>& rows) {
  auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::vector<std::vector<std::string>> cells = {{"SITE", "ROLE", "EPOCH", "STATE", "RECEIVED",
                                                  "DURABLE", "APPLIED", "LAG", "LAG_S", "SPOOL",
                                                  "LAST_ERROR"}};
  for (const auto& r : rows) {
    cells.push_back({r.site, dash(r.role), r.epoch ? std::to_string(*r.epoch) : "-", r.state,
                     dash(r.received_lsn), dash(r.durable_lsn), dash(r.applied_lsn),
                     r.lag_bytes ? HumanBytes(*r.lag_bytes) : "-",
                     r.lag_seconds ? fmt::format("{:.1f}", *r.lag_seconds) : "-",
                     r.spool_bytes ? HumanBytes(*r.spool_bytes) : "-", dash(r.last_error)});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t i = 0; i + 1 < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  }
  std::string out;
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size()) text.append(width[i] - line[i].size() + 2, ' ');
    }
    out += text;
    out += '\n';
  }
  return out;
}

}  // namespace geosync::admin
