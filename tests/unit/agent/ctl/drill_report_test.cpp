// Drill reports (issue #18): every figure is named for what it measures and
// carries its method, the page opens with an auditor's summary with the
// site's earlier drills, and --history reads reports of both versions.
#include "agent/ctl/drill_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace geosync::ctl {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json Report(const std::string& started, double writable, int64_t lost, int version = 2) {
  json r = {{"version", version},
            {"cluster_id", "bets"},
            {"site", "dublin"},
            {"source", "frankfurt"},
            {"epoch", 3},
            {"started", started},
            {"finished", started},
            {"position", "3@0/1000"},
            {"rpo", {{"transactions", lost}, {"bytes", lost * 100}, {"seconds", lost ? 0.5 : 0.0}}},
            {"probes", json::array()},
            {"restored_seconds", 1.25},
            {"timeline", json::array()},
            {"events", json::array()},
            {"result", "passed"},
            {"error", ""}};
  if (version == 1) {
    r["rto_seconds"] = writable;
  } else {
    r["kind"] = "frozen-replica";
    r["writable_seconds"] = writable;
    r["figures"] = DrillFigures(r);
  }
  return r;
}

TEST(DrillReportTest, EveryFigureIsNamedForWhatItMeasuresWithItsMethod) {
  json figures = DrillFigures(Report("2026-12-01T10:00:00Z", 0.042, 3));
  ASSERT_EQ(figures.size(), 5u);
  EXPECT_EQ(figures[0]["name"], "time until writable on the frozen replica");
  EXPECT_DOUBLE_EQ(figures[0]["value"].get<double>(), 0.042);
  EXPECT_THAT(figures[0]["method"].get<std::string>(), HasSubstr("not a failover's recovery"));
  EXPECT_EQ(figures[1]["name"], "data at risk (RPO), transactions");
  EXPECT_EQ(figures[1]["value"], 3);
  EXPECT_EQ(figures[4]["name"], "time back in sync");
  for (const auto& f : figures) {
    EXPECT_THAT(f["name"].get<std::string>(), Not(HasSubstr("RTO")));
    EXPECT_GT(f["method"].get<std::string>().size(), 40u) << f.dump();
  }
}

TEST(DrillReportTest, PageOpensWithAnAuditorsSummaryAndTheSitesEarlierDrills) {
  std::vector<json> history = {Report("2026-11-01T10:00:00Z", 0.5, 0, /*version=*/1),
                               Report("2026-11-15T10:00:00Z", 0.25, 1)};
  json other = Report("2026-11-20T10:00:00Z", 9.0, 0);
  other["site"] = "virginia";
  history.push_back(other);
  const std::string html = DrillReportHtml(Report("2026-12-01T10:00:00Z", 0.125, 0), history);
  const size_t summary = html.find("id=\"summary\"");
  const size_t chart = html.find("id=\"lag-chart\"");
  ASSERT_NE(summary, std::string::npos);
  ASSERT_NE(chart, std::string::npos);
  EXPECT_LT(summary, chart) << "the summary comes first";
  EXPECT_THAT(html, HasSubstr("2026-12-01T10:00:00Z to 2026-12-01T10:00:00Z (UTC)"));
  EXPECT_THAT(html, HasSubstr("drilled: dublin; source at the time: frankfurt (epoch 3)"));
  EXPECT_THAT(html, HasSubstr("what was tested"));
  EXPECT_THAT(html, HasSubstr("time until writable on the frozen replica"));
  // Both earlier drills of dublin (one a version 1 report), with the trend;
  // virginia's is not dublin's history.
  EXPECT_THAT(html, HasSubstr("2026-11-01T10:00:00Z"));
  EXPECT_THAT(html, HasSubstr("-0.250 s"));
  EXPECT_THAT(html, Not(HasSubstr("2026-11-20T10:00:00Z")));
  EXPECT_THAT(html, Not(HasSubstr("RTO")));
}

TEST(DrillReportTest, HistoryReadsBothReportVersions) {
  const std::string table = FormatDrillHistory(
      {Report("2026-11-01T10:00:00Z", 0.5, 0, 1), Report("2026-11-15T10:00:00Z", 0.25, 2)});
  EXPECT_THAT(table, HasSubstr("WRITABLE_S"));
  EXPECT_THAT(table, HasSubstr("0.500"));
  EXPECT_THAT(table, HasSubstr("0.250"));
  EXPECT_THAT(table, HasSubstr("-0.250 s")) << table;
}

}  // namespace
}  // namespace geosync::ctl
