// Metrics: pick a metric, filter and group by attributes, chart it over time — gauges as
// averages, monotonic sums as rates, histograms as p50/p95/p99 (or, grouped, p95 per group).
// Increases are computed per series in the browser (a series is a service and its attribute
// set; a value that goes down is a reset), so cumulative and delta points both chart right.

import * as api from "../api";
import { lineChart, type Series } from "../chart";
import { clear, h, note } from "../dom";
import { param, setParams, timeFilter, timeRange } from "../state";
import { bucket } from "./services";
import { attributeConditions } from "./traces";

interface Point {
  time: string;
  service_name: string;
  temporality: string | null;
  value: number | null;
  count: number | null;
  bucket_counts: number[] | null;
  explicit_bounds: number[] | null;
  attributes: Record<string, string> | null;
  resource_attributes: Record<string, string> | null;
  scope_name: string | null;
  start_time: string | null;
}

/// The quantile `q` of a histogram from its bucket counts and upper bounds.
export function quantile(counts: number[], bounds: number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  let seen = 0;
  const rank = q * total;
  for (let i = 0; i < counts.length; i++) {
    if (seen + counts[i] >= rank && counts[i] > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1] ?? lo;
      return lo + (hi - lo) * ((rank - seen) / counts[i]);
    }
    seen += counts[i];
  }
  return bounds[bounds.length - 1] ?? null;
}

export async function metricsPage(root: HTMLElement): Promise<void> {
  const names = await api.rows(
    `SELECT metric_name, metric_type, max(unit) AS unit, bool_or(is_monotonic) AS monotonic, count(*) AS points ` +
      `FROM metrics WHERE ${timeFilter("time")} GROUP BY 1, 2 ORDER BY 1`,
  );
  if (names.length === 0) {
    clear(root, h("h1", {}, "Metrics"), note("empty", "No metric points in this time range. Send OTLP metrics (or run `sightline demo`), or widen the range."));
    return;
  }
  const metric = param("metric", String(names[0].metric_name));
  const info = names.find((n) => n.metric_name === metric);
  if (!info) {
    clear(root, h("h1", {}, "Metrics"), note("empty", `No points of ${metric} in this time range: pick another metric or a longer range.`));
    return;
  }
  const keys = await api
    .rows(`SELECT DISTINCT unnest(map_keys(attributes)) AS k FROM metrics WHERE metric_name = ${api.quote(metric)} AND ${timeFilter("time")} ORDER BY 1`)
    .then((r) => r.map((x) => String(x.k)));
  const field = (name: string, el: HTMLInputElement | HTMLSelectElement, fallback = "") => {
    el.value = param(name, fallback);
    el.addEventListener("change", () => setParams({ [name]: el.value }));
    return el;
  };
  const chart = h("div.card", { "data-testid": "metric-chart" }, note("loading", "Loading points…"));
  clear(
    root,
    h("h1", {}, "Metrics"),
    h(
      "div.card.row",
      {},
      field("metric", h("select", { "aria-label": "Metric" }, names.map((n) => h("option", { value: String(n.metric_name) }, `${n.metric_name} (${n.metric_type})`))), metric),
      field("filter", h("input", { placeholder: "key=value, …", size: 28, "aria-label": "Filter" }) as HTMLInputElement),
      field("group", h("select", { "aria-label": "Group by" }, h("option", { value: "" }, "no grouping"), h("option", { value: "service_name" }, "service"), keys.map((k) => h("option", { value: k }, k)))),
      h("span.muted", {}, `${info.metric_type}${info.unit ? `, ${info.unit}` : ""}`),
    ),
    chart,
  );
  const where = [`metric_name = ${api.quote(metric)}`, `metric_type = ${api.quote(String(info.metric_type))}`, timeFilter("time")];
  try {
    where.push(...attributeConditions(param("filter")));
  } catch (e) {
    clear(chart, note("error", (e as Error).message));
    return;
  }
  const result = await api.sql(
    `SELECT time, service_name, temporality, value, count, bucket_counts, explicit_bounds, attributes, ` +
      `resource_attributes, scope_name, start_time ` +
      `FROM metrics WHERE ${where.join(" AND ")} ORDER BY time`,
  );
  const names2 = result.columns.map((c) => c.name);
  const points = result.rows.map((r) => Object.fromEntries(names2.map((n, i) => [n, r[i]])) as unknown as Point);
  const group = param("group");
  const groupOf = (p: Point) => (group === "" ? "all" : group === "service_name" ? p.service_name : p.attributes?.[group] ?? "(none)");
  const b = bucket();
  const { from, to } = timeRange();
  const t0 = Math.floor(from.getTime() / 1000 / b.seconds) * b.seconds;
  const times: number[] = [];
  for (let t = t0; t <= to.getTime() / 1000; t += b.seconds) times.push(t);
  const slot = (p: Point) => Math.floor((Date.parse(p.time) / 1000 - t0) / b.seconds);
  const groups = new Map<string, { sum: number[]; n: number[]; hist: number[][] }>();
  const prev = new Map<string, Point>();
  let bounds: number[] = [];
  for (const p of points) {
    const g = groupOf(p);
    if (!groups.has(g)) groups.set(g, { sum: times.map(() => 0), n: times.map(() => 0), hist: times.map(() => []) });
    const acc = groups.get(g)!;
    const i = slot(p);
    if (i < 0 || i >= times.length) continue;
    if (info.metric_type === "gauge" || (info.metric_type === "sum" && !info.monotonic)) {
      acc.sum[i] += p.value ?? 0;
      acc.n[i] += 1;
      continue;
    }
    // A series: the resource (every instance apart), the scope and the attributes.
    const key = JSON.stringify([p.resource_attributes ?? {}, p.scope_name, p.attributes ?? {}]);
    const before = prev.get(key);
    prev.set(key, p);
    const delta = p.temporality === "delta";
    if (info.metric_type === "sum") {
      const v = p.value ?? 0;
      const inc = delta ? v : !before || before.start_time !== p.start_time || v < (before.value ?? 0) ? (before ? v : 0) : v - (before.value ?? 0);
      acc.sum[i] += inc;
    } else if (info.metric_type === "histogram" && p.bucket_counts) {
      bounds = p.explicit_bounds ?? bounds;
      let inc = p.bucket_counts.map(Number);
      if (!delta) {
        const reset = !before?.bucket_counts || before.start_time !== p.start_time || Number(p.count) < Number(before.count);
        inc = !before ? inc.map(() => 0) : reset ? inc : inc.map((c, j) => c - Number(before.bucket_counts![j] ?? 0));
      }
      const h0 = acc.hist[i];
      inc.forEach((c, j) => (h0[j] = (h0[j] ?? 0) + c));
    }
  }
  const series: Series[] = [];
  let label = "";
  for (const [g, acc] of groups) {
    if (info.metric_type === "gauge" || (info.metric_type === "sum" && !info.monotonic)) {
      label = "average";
      series.push({ label: g, values: acc.sum.map((s, i) => (acc.n[i] ? s / acc.n[i] : null)) });
    } else if (info.metric_type === "sum") {
      label = "per second";
      series.push({ label: g, values: acc.sum.map((s) => s / b.seconds) });
    } else if (info.metric_type === "histogram") {
      label = String(info.unit ?? "");
      const qs: [string, number][] = group === "" ? [["p50", 0.5], ["p95", 0.95], ["p99", 0.99]] : [["p95", 0.95]];
      for (const [name, q] of qs) {
        series.push({ label: group === "" ? name : `${g} ${name}`, values: acc.hist.map((hc) => (hc.length ? quantile(hc, bounds, q) : null)) });
      }
    }
  }
  if (points.length === 0) {
    clear(chart, note("empty", "No points match this filter."));
    return;
  }
  if (!series.length) {
    clear(chart, note("empty", `${info.metric_type} metrics are not charted yet; query them in the SQL console.`));
    return;
  }
  clear(chart, result.truncated ? h("p.bad", {}, "More points than the row limit: the chart shows the first ones. Pick a shorter range.") : null);
  lineChart(chart, times, series.slice(0, 12), { height: 300, yLabel: label });
}
