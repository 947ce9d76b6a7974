// Drill report files; see drill_report.h.
#include "agent/ctl/drill_report.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

namespace geosync::ctl {
namespace {

using json = nlohmann::json;

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Num(const json& v, const char* fmt_spec = "{:.3f}") {
  if (v.is_number_float()) return fmt::format(fmt::runtime(fmt_spec), v.get<double>());
  if (v.is_number()) return std::to_string(v.get<int64_t>());
  return "-";
}

// The lag timeline as an inline SVG line chart with the drill's events.
std::string Chart(const json& report) {
  const double w = 900, h = 300, left = 60, bottom = 40, top = 20, right = 20;
  const json& timeline = report.value("timeline", json::array());
  double tmax = 1, ymax = 0.1;
  for (const auto& p : timeline) {
    tmax = std::max(tmax, p.value("t", 0.0));
    if (p["applied_lag_seconds"].is_number()) {
      ymax = std::max(ymax, p["applied_lag_seconds"].get<double>());
    }
  }
  for (const auto& e : report.value("events", json::array())) {
    tmax = std::max(tmax, e.value("t", 0.0));
  }
  ymax *= 1.15;
  auto x = [&](double t) { return left + (w - left - right) * t / tmax; };
  auto y = [&](double v) { return top + (h - top - bottom) * (1 - v / ymax); };
  std::string points;
  for (const auto& p : timeline) {
    if (!p["applied_lag_seconds"].is_number()) continue;
    points += fmt::format("{:.1f},{:.1f} ", x(p.value("t", 0.0)),
                          y(p["applied_lag_seconds"].get<double>()));
  }
  std::string svg = fmt::format(
      "<svg id=\"lag-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"applied lag during the drill\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n",
      w, h, w, h, w, h, left, h - bottom, w - right, h - bottom, left, top, left, h - bottom);
  for (int i = 0; i <= 4; ++i) {
    double v = ymax * i / 4;
    svg += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{:.2f} s</text>\n",
        left - 6, y(v) + 4, v);
  }
  for (int i = 0; i <= 5; ++i) {
    double t = tmax * i / 5;
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{:.1f} s</text>\n",
        x(t), h - bottom + 16, t);
  }
  for (const auto& e : report.value("events", json::array())) {
    double t = e.value("t", 0.0);
    svg += fmt::format(
        "<line class=\"event\" x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" "
        "stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\n<text x=\"{3:.1f}\" y=\"{4}\" "
        "font-size=\"11\" fill=\"#c0392b\">{5}</text>\n",
        x(t), top, h - bottom, x(t) + 3, top + 10, Escape(e.value("name", "")));
  }
  svg += fmt::format(
      "<polyline id=\"lag-line\" fill=\"none\" stroke=\"#2471a3\" stroke-width=\"2\" "
      "points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" font-size=\"12\">applied lag (seconds) over "
      "the drill (seconds)</text>\n</svg>\n",
      points, left, h - 4);
  return svg;
}

}  // namespace

std::string DrillReportHtml(const json& r) {
  const json& rpo = r.value("rpo", json::object());
  std::string probes;
  for (const auto& p : r.value("probes", json::array())) {
    probes +=
        fmt::format("<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    Escape(p.value("sql", "")), p.value("ok", false) ? "ok" : "FAILED",
                    Escape(p.value("ok", false) ? p.value("result", "") : p.value("error", "")),
                    Num(p["ms"], "{:.1f} ms"));
  }
  return fmt::format(
      R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>geosync drill: {site} {started}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
.figure {{ font-size: 1.6em; font-weight: bold; }}
.passed {{ color: #1e8449; }} .failed {{ color: #c0392b; }}
</style></head>
<body>
<h1>DR drill of site {site} <span class="{result}">{result}</span></h1>
<p>Cluster {cluster}, source {source}, epoch {epoch}. Started {started}, finished {finished}.
Apply was frozen at {position}; the site was made writable in a transaction that was rolled back.</p>
<table id="figures">
<tr><th>RTO (start to writable)</th><td class="figure">{rto} s</td></tr>
<tr><th>RPO transactions</th><td class="figure">{rpo_txns}</td></tr>
<tr><th>RPO bytes</th><td class="figure">{rpo_bytes}</td></tr>
<tr><th>RPO seconds</th><td class="figure">{rpo_s}</td></tr>
<tr><th>back in sync after</th><td>{restored} s</td></tr>
</table>
<h2>Lag timeline</h2>
{chart}
<h2>Probes</h2>
<table><tr><th>SQL</th><th>status</th><th>result</th><th>time</th></tr>
{probes}</table>
<p>{error}</p>
</body></html>
)",
      fmt::arg("site", Escape(r.value("site", ""))), fmt::arg("started", r.value("started", "")),
      fmt::arg("finished", r.value("finished", "")), fmt::arg("result", r.value("result", "")),
      fmt::arg("cluster", Escape(r.value("cluster_id", ""))),
      fmt::arg("source", Escape(r.value("source", ""))), fmt::arg("epoch", Num(r["epoch"])),
      fmt::arg("position", Escape(r.value("position", ""))), fmt::arg("rto", Num(r["rto_seconds"])),
      fmt::arg("rpo_txns", Num(rpo["transactions"])), fmt::arg("rpo_bytes", Num(rpo["bytes"])),
      fmt::arg("rpo_s", Num(rpo["seconds"])), fmt::arg("restored", Num(r["restored_seconds"])),
      fmt::arg("chart", Chart(r)), fmt::arg("probes", probes),
      fmt::arg("error", Escape(r.value("error", ""))));
}

Result<std::string> WriteDrillReport(const std::string& dir, const json& report) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io(fmt::format("creating {}: {}", dir, ec.message()));
  std::string stamp = report.value("started", "");
  std::erase_if(stamp, [](char c) { return c == ':' || c == '-'; });
  const std::string base = fmt::format("{}/drill-{}-{}", dir, report.value("site", ""), stamp);
  std::ofstream(base + ".json") << report.dump(2) << "\n";
  std::ofstream(base + ".html") << DrillReportHtml(report);
  if (!std::ifstream(base + ".html")) return Status::Io("cannot write " + base + ".html");
  return base + ".json";
}

Result<std::vector<json>> ReadDrillReports(const std::string& dir) {
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string p = e.path().string();
    if (e.path().filename().string().rfind("drill-", 0) == 0 && p.ends_with(".json")) {
      paths.push_back(p);
    }
  }
  if (ec) return Status::NotFound(fmt::format("drill reports {}: {}", dir, ec.message()));
  std::vector<json> out;
  for (const auto& p : paths) {
    json doc = json::parse(std::ifstream(p), nullptr, false);
    if (doc.is_discarded()) return Status::Corruption("drill report " + p + " is not JSON");
    out.push_back(std::move(doc));
  }
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
    return a.value("started", "") < b.value("started", "");
  });
  return out;
}

std::string FormatDrillHistory(const std::vector<json>& reports) {
  std::string out =
      fmt::format("{:<22} {:<10} {:<7} {:>9} {:>10} {:>10} {:>8}  {}\n", "STARTED", "SITE",
                  "RESULT", "RTO_S", "RPO_TXNS", "RPO_BYTES", "RPO_S", "RTO TREND");
  std::map<std::string, double> last_rto;
  for (const auto& r : reports) {
    const json& rpo = r.value("rpo", json::object());
    const std::string site = r.value("site", "");
    std::string trend = "-";
    if (r["rto_seconds"].is_number()) {
      double rto = r["rto_seconds"].get<double>();
      if (last_rto.count(site)) trend = fmt::format("{:+.3f} s", rto - last_rto[site]);
      last_rto[site] = rto;
    }
    out +=
        fmt::format("{:<22} {:<10} {:<7} {:>9} {:>10} {:>10} {:>8}  {}\n", r.value("started", ""),
                    site, r.value("result", ""), Num(r["rto_seconds"]), Num(rpo["transactions"]),
                    Num(rpo["bytes"]), Num(rpo["seconds"], "{:.2f}"), trend);
  }
  return out;
}

}  // namespace geosync::ctl
