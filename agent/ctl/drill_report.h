// Drill reports: the JSON document (schemas/drill_report.schema.json) and a
// self-contained HTML page with a timeline chart of the site's lag (inline
// SVG, no scripts, no external files) and the RTO/RPO figures.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace geosync::ctl {

// The HTML page for a report document.
std::string DrillReportHtml(const nlohmann::json& report);

// Writes <dir>/drill-<site>-<stamp>.json and .html; returns the JSON path.
Result<std::string> WriteDrillReport(const std::string& dir, const nlohmann::json& report);

// Every report in `dir`, oldest first.
Result<std::vector<nlohmann::json>> ReadDrillReports(const std::string& dir);

// The --history table: one line per drill, with the change of RTO and RPO
// against the previous drill of the same site.
std::string FormatDrillHistory(const std::vector<nlohmann::json>& reports);

}  // namespace geosync::ctl
