// Services: every service seen in the time range, with request rate, error rate and latency
// percentiles from its server spans, a sparkline of its traffic, and links to its traces and
// logs.

import * as api from "../api";
import { lineChart } from "../chart";
import { clear, h, note } from "../dom";
import { num, pct } from "../format";
import { onNavigate, timeFilter, timeRange } from "../state";
import { serviceGraph } from "./servicemap";

/// A `date_bin` width giving about 60 points over the range.
export function bucket(): { sql: string; seconds: number } {
  const { from, to } = timeRange();
  const seconds = Math.max(10, Math.ceil((to.getTime() - from.getTime()) / 1000 / 60));
  return { sql: `INTERVAL '${seconds} seconds'`, seconds };
}

export async function servicesPage(root: HTMLElement): Promise<void> {
  clear(root, h("h1", {}, "Services"), note("loading", "Loading services…"));
  const { from, to } = timeRange();
  const seconds = (to.getTime() - from.getTime()) / 1000;
  const b = bucket();
  const range = timeFilter("start_time");
  // The map covers at most a day: longer ranges show its last day.
  const mapFrom = new Date(Math.max(from.getTime(), to.getTime() - 86400e3));
  const [stats, all, series, edges] = await Promise.all([
    api.rows(
      `SELECT service_name, count(*) AS requests, ` +
        `sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors, ` +
        `approx_percentile_cont(duration_ns, 0.5) / 1e6 AS p50, ` +
        `approx_percentile_cont(duration_ns, 0.95) / 1e6 AS p95, ` +
        `approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99 ` +
        `FROM spans WHERE kind IN ('server', 'consumer') AND ${range} GROUP BY 1`,
    ),
    api.rows(`SELECT service_name, count(*) AS spans FROM spans WHERE ${range} GROUP BY 1 ORDER BY 1`),
    api.rows(
      `SELECT service_name, CAST(date_bin(${b.sql}, start_time) AS BIGINT) / 1000000000 AS t, count(*) AS n, ` +
        `sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors ` +
        `FROM spans WHERE kind IN ('server', 'consumer') AND ${range} GROUP BY 1, 2 ORDER BY 2`,
    ),
    api.serviceMap(mapFrom, to),
  ]);
  if (all.length === 0) {
    clear(
      root,
      h("h1", {}, "Services"),
      note("empty", "No spans in this time range. Point an OpenTelemetry SDK at OTLP :4317/:4318 (or run `sightline demo`), or pick a longer range."),
    );
    return;
  }
  const byService = new Map(stats.map((s) => [String(s.service_name), s]));
  const rows = all
    .map((a) => ({ name: String(a.service_name), spans: Number(a.spans), s: byService.get(String(a.service_name)) }))
    .sort((x, y) => Number(y.s?.requests ?? 0) - Number(x.s?.requests ?? 0) || x.name.localeCompare(y.name));
  const sparks: [HTMLElement, string][] = [];
  clear(
    root,
    h("h1", {}, "Services"),
    h(
      "div.card",
      {},
      h(
        "table.data",
        { "data-testid": "services" },
        h("thead", {}, h("tr", {}, ["Service", "Requests/s", "Error rate", "p50 ms", "p95 ms", "p99 ms", "Traffic", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          rows.map(({ name, spans, s }) => {
            const spark = h("div", { style: "width:220px" });
            sparks.push([spark, name]);
            const requests = Number(s?.requests ?? 0);
            const errors = Number(s?.errors ?? 0);
            const q = new URLSearchParams(location.search);
            q.set("service", name);
            return h(
              "tr",
              { "data-service": name },
              h("td", {}, h("b", {}, name), h("div.muted", {}, `${spans.toLocaleString()} spans`)),
              h("td.num", {}, num(requests / seconds)),
              h("td.num", { class: errors > 0 ? "bad" : "" }, s ? pct(requests ? errors / requests : 0) : "–"),
              h("td.num", {}, num(s?.p50 as number)),
              h("td.num", {}, num(s?.p95 as number)),
              h("td.num", {}, num(s?.p99 as number)),
              h("td", {}, spark),
              h(
                "td",
                {},
                h("a", { href: `/traces?${q}`, onclick: onNavigate(`/traces?${q}`) }, "traces"),
                " · ",
                h("a", { href: `/logs?${q}`, onclick: onNavigate(`/logs?${q}`) }, "logs"),
              ),
            );
          }),
        ),
      ),
    ),
    callsCard(edges, rows.map((r) => r.name), mapFrom.getTime() !== from.getTime()),
  );
  const times = [...new Set(series.map((r) => Number(r.t)))].sort((a, b) => a - b);
  for (const [el, name] of sparks) {
    const points = new Map(series.filter((r) => r.service_name === name).map((r) => [Number(r.t), r]));
    if (times.length < 2) continue;
    lineChart(
      el,
      times,
      [
        { label: "req/s", values: times.map((t) => Number(points.get(t)?.n ?? 0) / b.seconds) },
        { label: "errors/s", values: times.map((t) => Number(points.get(t)?.errors ?? 0) / b.seconds), color: "#ef4444" },
      ],
      { height: 70, spark: true },
    );
  }
}

/// An edge fails when this share of its calls or more are errors.
const FAILING = 0.05;

const failing = (e: api.Edge) => (e.error_rate ?? 0) >= FAILING;

/// The calls between services: drawn as a map, then one row per caller → callee; failing
/// edges in red.
function callsCard(edges: api.Edge[], services: string[], lastDay: boolean): HTMLElement {
  return h(
    "div.card",
    {},
    h("h2", { style: "margin-top:0" }, "Calls between services"),
    lastDay ? h("p.muted", {}, "The last day of the range.") : null,
    edges.length ? h("div.graph-scroll", {}, serviceGraph(services, edges, failing)) : null,
    edges.length
      ? h(
          "table.data",
          { "data-testid": "service-map" },
          h("thead", {}, h("tr", {}, ["Caller", "", "Callee", "Calls/s", "Error rate", "p50 ms", "p95 ms", "p99 ms"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            edges.map((e) => {
              const bad = failing(e);
              return h(
                "tr",
                { "data-edge": `${e.caller} -> ${e.callee}`, class: bad ? "failing" : "" },
                h("td", {}, h("b", {}, e.caller)),
                h("td", {}, "→"),
                h("td", {}, h("b", {}, e.callee)),
                h("td.num", {}, num(e.rate_per_s)),
                h("td.num", { class: bad ? "bad" : "" }, pct(e.error_rate ?? 0)),
                h("td.num", {}, num(e.p50_ms)),
                h("td.num", {}, num(e.p95_ms)),
                h("td.num", {}, num(e.p99_ms)),
              );
            }),
          ),
        )
      : note("empty", "No calls between services in this range (spans whose parent is in another service)."),
  );
}
