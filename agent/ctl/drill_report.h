// Drill reports: the JSON document (schemas/drill_report.schema.json) and a
// self-contained HTML page with a timeline chart of the site's lag (inline
// SVG, no scripts, no external files) and the figures, each named for what
// it measures.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace geosync::ctl {

// The report's "figures": each measured figure with the name it is shown
// under, its unit and the exact method behind it, so that no reader takes
// the time until a frozen replica is writable for a failover's recovery time.
nlohmann::json DrillFigures(const nlohmann::json& report);

// Now, UTC, as the reports' "started" and "finished" ("2026-12-03T08:15:02Z").
std::string IsoNow();

// The HTML page for a report document: a one-page summary for an auditor
// (date, sites, what was tested, the outcome, the figures with their
// methods, and `history`, the earlier drills in the same directory, with
// their trend), then the lag chart and the probes.
std::string DrillReportHtml(const nlohmann::json& report,
                            const std::vector<nlohmann::json>& history = {});

// Writes <dir>/drill-<site>-<stamp>.json and .html; returns the JSON path.
Result<std::string> WriteDrillReport(const std::string& dir, const nlohmann::json& report);

// Every report in `dir`, oldest first.
Result<std::vector<nlohmann::json>> ReadDrillReports(const std::string& dir);

// The --history table: one line per drill, with the change of the time
// until writable against the previous drill of the same site.
std::string FormatDrillHistory(const std::vector<nlohmann::json>& reports);

}  // namespace geosync::ctl
