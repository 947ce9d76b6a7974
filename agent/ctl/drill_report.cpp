// Drill report files; see drill_report.h.
#include "agent/ctl/drill_report.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/chrono.h>
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

// The time until writable: version 1 reports called it rto_seconds.
const json& WritableSeconds(const json& r) {
  static const json kNull;
  if (r.contains("writable_seconds")) return r["writable_seconds"];
  if (r.contains("rto_seconds")) return r["rto_seconds"];
  return kNull;
}

// The summary's "what was tested", by kind.
std::string WhatWasTested(const json& r) {
  const std::string site = Escape(r.value("site", ""));
  if (r.value("kind", "") == "switchover") {
    const json& sw = r.value("switchover", json::object());
    const json& v = sw.value("verify", json::object());
    auto name = [&](const char* k) {
      return v.value(k, json()).is_string() ? v[k].get<std::string>() : "not run";
    };
    return fmt::format(
        "A planned switchover under the live workload: the source role moved from {0} to {1} "
        "and back to {0} with <code>geosyncctl switchover</code>, while a client wrote one row "
        "every {2} ms through a multi-host DSN ({3} acknowledged writes, {4} failed attempts). "
        "Every acknowledged write was looked up on the new source after each move. verify "
        "compared every replicated table of every site: before {5}, between {6}, after {7}.",
        Escape(sw.value("back_to", "")), site, sw.value("write_interval_ms", 0),
        sw.value("client_writes", 0), sw.value("client_failed_attempts", 0), Escape(name("before")),
        Escape(name("between")), Escape(name("after")));
  }
  if (r.value("kind", "") == "throwaway-copy") {
    const json& copy = r.value("copy", json::object());
    return fmt::format(
        "Taking over on a throwaway copy of replica {0}. Apply on {0} was held for {1} ms while "
        "a snapshot was exported at {2}; the database was copied from that snapshot into the "
        "scratch database {3} on the same cluster, promoted there (write guard opened), probed "
        "below, and dropped. The site's data, replication origins and spool were not touched.",
        site, Num(copy.value("apply_held_ms", json()), "{:.1f}"), Escape(r.value("position", "")),
        Escape(copy.value("scratch_database", "")));
  }
  return fmt::format(
      "Taking over on a replica. Apply on {} was frozen at {} (every source transaction up to it "
      "applied, none after: the state a promotion starts from); the site was made writable in a "
      "transaction, the probes below ran in it, and everything was rolled back. Neither the "
      "source nor the site's data was changed.",
      site, Escape(r.value("position", "")));
}

}  // namespace

namespace {

json Figure(const std::string& name, const json& value, const char* unit,
            const std::string& method) {
  return json{{"name", name}, {"value", value}, {"unit", unit}, {"method", method}};
}

json SwitchoverFigures(const json& r, const json& rpo) {
  const json& sw = r.value("switchover", json::object());
  auto leg = [&](const char* which, const char* key) {
    const json& l = sw.value(which, json());
    return l.is_object() && l.contains(key) ? l[key] : json();
  };
  const std::string site = r.value("site", ""), back = sw.value("back_to", "");
  const std::string unavailable =
      "The longest gap between two acknowledged writes of a client that writes one row "
      "every 20 ms through a libpq multi-host DSN with target_session_attrs=read-write "
      "(--client-dsn) and reconnects after every failure, among the gaps that overlap the "
      "window from the switchover's start to the client's first write after it ended. It is "
      "what an application that follows the primary with libpq alone sees.";
  return json::array({
      Figure("write unavailability during switchover to " + site,
             leg("there", "write_unavailable_seconds"), "s", unavailable),
      Figure("write unavailability during switchover back to " + back,
             leg("back", "write_unavailable_seconds"), "s", unavailable),
      Figure("data at risk (RPO), transactions", rpo.value("transactions", json()), "transactions",
             "Writes the client saw acknowledged that the new source lacked, counted by key "
             "on the new source right after each switchover (the larger of the two). verify "
             "also compared every replicated table of every site before, between and after: "
             "see the switchover section."),
      Figure("time back in sync", r.value("restored_seconds", json()), "s",
             "From the drill's start until, after the move back, every replica had applied "
             "what the source held when the move back ended."),
      Figure("fence to writable, as geosyncctl measured it, to " + site,
             leg("there", "geosyncctl_unavailable_seconds"), "s",
             "Timed by the switchover command itself, from sending the fence to the old source "
             "until the target's promotion returned. It counts the tool's own round trips and "
             "waits, so it can be longer or shorter than what a client saw; the client's gap "
             "above is the figure to quote."),
  });
}

json CopyFigures(const json& r, const json& rpo) {
  const json& copy = r.value("copy", json::object());
  return json::array({
      Figure("time until writable on a throwaway copy", WritableSeconds(r), "s",
             "From the drill's start until a READ WRITE transaction on a copy of the site's "
             "database (pg_dump of a snapshot at a known position, pg_restore into a scratch "
             "database, write guard opened as a promotion opens it) had written a row. It "
             "includes copying the database, so it grows with its size; it is not a "
             "failover's recovery time."),
      Figure("apply held on the site", copy.value("apply_held_ms", json()), "ms",
             "How long the site's apply was held so that the snapshot's position is known: "
             "only while the snapshot was exported, never while copying or probing."),
      Figure("data at risk (RPO), transactions", rpo.value("transactions", json()), "transactions",
             "Asked of the source the moment the copy became writable: its transactions with "
             "row changes after the site's durable position, i.e. what a failover to this "
             "site at that instant would have lost."),
      Figure("data at risk (RPO), bytes", rpo.value("bytes", json()), "bytes",
             "The source's spool bytes after the site's durable position, at the same "
             "instant."),
      Figure("data at risk (RPO), seconds", rpo.value("seconds", json()), "s",
             "How long before that instant the oldest of those transactions committed, on "
             "the source's clock; 0 exactly when there were none."),
  });
}

json FrozenReplicaFigures(const json& r, const json& rpo) {
  return json::array({
      Figure("time until writable on the frozen replica", WritableSeconds(r), "s",
             "From the drill's start (the CLI's request to the site) until a READ WRITE "
             "transaction on the site, with apply frozen at a consistent position, had written a "
             "row. It is how fast the database itself becomes writable; it is not a failover's "
             "recovery time, which adds detecting the loss, deciding, promoting and re-pointing "
             "clients."),
      Figure("data at risk (RPO), transactions", rpo.value("transactions", json()), "transactions",
             "Asked of the source the moment the site became writable: its transactions with "
             "row changes after the site's durable position, i.e. what a failover to this site "
             "at that instant would have lost."),
      Figure("data at risk (RPO), bytes", rpo.value("bytes", json()), "bytes",
             "The source's spool bytes after the site's durable position, at the same instant."),
      Figure("data at risk (RPO), seconds", rpo.value("seconds", json()), "s",
             "How long before that instant the oldest of those transactions committed, on the "
             "source's clock; 0 exactly when there were none."),
      Figure("time back in sync", r.value("restored_seconds", json()), "s",
             "From the drill's start until the site had applied everything it received during "
             "the drill, with apply resumed."),
  });
}

}  // namespace

std::string IsoNow() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
}

json DrillFigures(const json& r) {
  const json& rpo = r.value("rpo", json::object());
  if (r.value("kind", "") == "switchover") return SwitchoverFigures(r, rpo);
  if (r.value("kind", "") == "throwaway-copy") return CopyFigures(r, rpo);
  return FrozenReplicaFigures(r, rpo);
}

namespace {

// The rows of the earlier drills of the same site, with the change of the
// time until writable from one to the next.
std::string PastDrillRows(const json& r, const std::vector<json>& history) {
  std::string past;
  std::string previous;  // the time until writable of the previous drill of this site
  for (const auto& h : history) {
    if (h.value("site", "") != r.value("site", "")) continue;
    const json& w = WritableSeconds(h);
    std::string trend = "-";
    if (w.is_number() && !previous.empty()) {
      trend = fmt::format("{:+.3f} s", w.get<double>() - std::stod(previous));
    }
    if (w.is_number()) previous = fmt::format("{:.6f}", w.get<double>());
    const json& rpo = h.value("rpo", json::object());
    past += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td><td>{}</td></tr>\n",
        Escape(h.value("started", "")), Escape(h.value("kind", "frozen-replica")),
        Escape(h.value("result", "")), Num(w), Num(rpo.value("transactions", json())), trend);
  }
  return past;
}

}  // namespace

std::string DrillReportHtml(const json& r, const std::vector<json>& history) {
  std::string probes;
  for (const auto& p : r.value("probes", json::array())) {
    probes +=
        fmt::format("<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    Escape(p.value("sql", "")), p.value("ok", false) ? "ok" : "FAILED",
                    Escape(p.value("ok", false) ? p.value("result", "") : p.value("error", "")),
                    Num(p["ms"], "{:.1f} ms"));
  }
  std::string figures;
  const json all = r.contains("figures") ? r["figures"] : DrillFigures(r);
  for (const auto& f : all) {
    const json& v = f["value"];
    figures += fmt::format(
        "<tr><th>{}</th><td class=\"figure\">{}{}</td><td class=\"method\">{}</td></tr>\n",
        Escape(f.value("name", "")), Num(v), f.value("unit", "") == "s" ? " s" : "",
        Escape(f.value("method", "")));
  }
  std::string past = PastDrillRows(r, history);
  if (past.empty()) past = "<tr><td colspan=\"6\">no earlier drill of this site</td></tr>\n";
  return fmt::format(
      R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>geosync drill: {site} {started}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; vertical-align: top; }}
.figure {{ font-size: 1.4em; font-weight: bold; white-space: nowrap; }}
.method {{ font-size: 0.85em; color: #555; max-width: 40em; }}
.passed {{ color: #1e8449; }} .failed {{ color: #c0392b; }}
</style></head>
<body>
<section id="summary">
<h1>DR drill of site {site}: <span class="{result}">{result}</span></h1>
<table id="summary-table">
<tr><th>date</th><td>{started} to {finished} (UTC)</td></tr>
<tr><th>cluster</th><td>{cluster}</td></tr>
<tr><th>sites</th><td>drilled: {site}; source at the time: {source} (epoch {epoch})</td></tr>
<tr><th>what was tested</th><td>{tested}</td></tr>
<tr><th>outcome</th><td class="{result}">{result}{error}</td></tr>
</table>
<h2>Figures</h2>
<table id="figures">
<tr><th>figure</th><th>value</th><th>method</th></tr>
{figures}</table>
<h2>Earlier drills of {site}</h2>
<table id="history">
<tr><th>started</th><th>kind</th><th>result</th><th>time until writable</th><th>RPO transactions</th><th>trend</th></tr>
{past}</table>
</section>
<h2>Lag timeline</h2>
{chart}
<h2>Probes</h2>
<table><tr><th>SQL</th><th>status</th><th>result</th><th>time</th></tr>
{probes}</table>
</body></html>
)",
      fmt::arg("tested", WhatWasTested(r)), fmt::arg("site", Escape(r.value("site", ""))),
      fmt::arg("started", r.value("started", "")), fmt::arg("finished", r.value("finished", "")),
      fmt::arg("result", r.value("result", "")),
      fmt::arg("cluster", Escape(r.value("cluster_id", ""))),
      fmt::arg("source", Escape(r.value("source", ""))), fmt::arg("epoch", Num(r["epoch"])),
      fmt::arg("position", Escape(r.value("position", ""))), fmt::arg("figures", figures),
      fmt::arg("past", past), fmt::arg("chart", Chart(r)), fmt::arg("probes", probes),
      fmt::arg("error", r.value("error", "").empty() ? "" : ": " + Escape(r.value("error", ""))));
}

Result<std::string> WriteDrillReport(const std::string& dir, const json& report) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Io(fmt::format("creating {}: {}", dir, ec.message()));
  std::string stamp = report.value("started", "");
  std::erase_if(stamp, [](char c) { return c == ':' || c == '-'; });
  const std::string base = fmt::format("{}/drill-{}-{}", dir, report.value("site", ""), stamp);
  auto history = ReadDrillReports(dir);  // the earlier drills, for the summary's trend
  std::ofstream(base + ".json") << report.dump(2) << "\n";
  std::ofstream(base + ".html") << DrillReportHtml(report,
                                                   history.ok() ? *history : std::vector<json>{});
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
      fmt::format("{:<22} {:<10} {:<7} {:>10} {:>10} {:>10} {:>8}  {}\n", "STARTED", "SITE",
                  "RESULT", "WRITABLE_S", "RPO_TXNS", "RPO_BYTES", "RPO_S", "WRITABLE TREND");
  std::map<std::string, double> last;
  for (const auto& r : reports) {
    const json& rpo = r.value("rpo", json::object());
    const std::string site = r.value("site", "");
    const json& writable = WritableSeconds(r);
    std::string trend = "-";
    if (writable.is_number()) {
      double w = writable.get<double>();
      if (last.count(site)) trend = fmt::format("{:+.3f} s", w - last[site]);
      last[site] = w;
    }
    out += fmt::format("{:<22} {:<10} {:<7} {:>10} {:>10} {:>10} {:>8}  {}\n",
                       r.value("started", ""), site, r.value("result", ""), Num(writable),
                       Num(rpo.value("transactions", json())), Num(rpo.value("bytes", json())),
                       Num(rpo.value("seconds", json()), "{:.2f}"), trend);
  }
  return out;
}

}  // namespace geosync::ctl
