// Logs: search by text, severity, service, attributes and time range; a volume histogram by
// severity; each line links to its trace.

import * as api from "../api";
import { lineChart } from "../chart";
import { clear, h, note } from "../dom";
import { time } from "../format";
import { onNavigate, param, setParams, timeFilter, timeRange } from "../state";
import { bucket } from "./services";
import { attributeConditions } from "./traces";

const LEVELS: [string, string, number][] = [
  ["", "any severity", 0],
  ["debug", "debug and up", 5],
  ["info", "info and up", 9],
  ["warn", "warn and up", 13],
  ["error", "error and up", 17],
];

export async function logsPage(root: HTMLElement): Promise<void> {
  const services = await api
    .rows(`SELECT DISTINCT service_name FROM logs WHERE ${timeFilter("time")} ORDER BY 1`)
    .then((r) => r.map((x) => String(x.service_name)));
  const field = (name: string, el: HTMLInputElement | HTMLSelectElement) => {
    el.value = param(name);
    el.addEventListener("change", () => setParams({ [name]: el.value }));
    return el;
  };
  const out = h("div", {}, note("loading", "Searching…"));
  clear(
    root,
    h("h1", {}, "Logs"),
    h(
      "div.card.row",
      {},
      field("text", h("input", { placeholder: "text in the body", size: 30, "aria-label": "Text" }) as HTMLInputElement),
      field("severity", h("select", { "aria-label": "Severity" }, LEVELS.map(([v, label]) => h("option", { value: v }, label)))),
      field("service", h("select", { "aria-label": "Service" }, h("option", { value: "" }, "any service"), services.map((s) => h("option", { value: s }, s)))),
      field("attrs", h("input", { placeholder: "key=value, …", size: 26, "aria-label": "Attributes" }) as HTMLInputElement),
    ),
    out,
  );
  const where = [timeFilter("time")];
  if (param("text")) {
    const literal = param("text").replace(/[\\%_]/g, (c) => `\\${c}`);
    where.push(`body ILIKE ${api.quote(`%${literal}%`)} ESCAPE '\\'`);
  }
  const level = LEVELS.find(([v]) => v === param("severity"));
  if (level && level[2] > 0) where.push(`severity_number >= ${level[2]}`);
  if (param("service")) where.push(`service_name = ${api.quote(param("service"))}`);
  try {
    where.push(...attributeConditions(param("attrs")));
  } catch (e) {
    clear(out, note("error", (e as Error).message));
    return;
  }
  const b = bucket();
  const [volume, lines] = await Promise.all([
    api.rows(
      `SELECT CAST(date_bin(${b.sql}, time) AS BIGINT) / 1000000000 AS t, ` +
        `sum(CASE WHEN severity_number >= 17 THEN 1 ELSE 0 END) AS error, ` +
        `sum(CASE WHEN severity_number BETWEEN 13 AND 16 THEN 1 ELSE 0 END) AS warn, ` +
        `sum(CASE WHEN severity_number BETWEEN 9 AND 12 THEN 1 ELSE 0 END) AS info, ` +
        `sum(CASE WHEN severity_number < 9 THEN 1 ELSE 0 END) AS other ` +
        `FROM logs WHERE ${where.join(" AND ")} GROUP BY 1 ORDER BY 1`,
    ),
    api.rows(
      `SELECT time, service_name, severity_text, severity_number, body, trace_id, span_id, attributes ` +
        `FROM logs WHERE ${where.join(" AND ")} ORDER BY time DESC LIMIT 300`,
    ),
  ]);
  if (lines.length === 0) {
    clear(out, note("empty", "No log records match. Widen the time range or remove a filter."));
    return;
  }
  const chart = h("div.card", { "data-testid": "log-volume" });
  clear(
    out,
    chart,
    h(
      "div.card.scroll",
      {},
      h(
        "table.data",
        { "data-testid": "log-lines" },
        h("thead", {}, h("tr", {}, ["Time", "Service", "Severity", "Body", "Trace"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          lines.map((l) =>
            h(
              "tr",
              {},
              h("td", { style: "white-space:nowrap" }, time(String(l.time))),
              h("td", {}, String(l.service_name)),
              h("td", { class: Number(l.severity_number) >= 17 ? "bad" : "" }, String(l.severity_text ?? "")),
              h("td", {}, String(l.body ?? ""), h("div.muted", {}, Object.entries((l.attributes as Record<string, string>) ?? {}).map(([k, v]) => `${k}=${v}`).join("  "))),
              h(
                "td",
                {},
                l.trace_id
                  ? h("a", { href: `/traces/${l.trace_id}`, onclick: onNavigate(`/traces/${l.trace_id}`) }, "trace →")
                  : h("span.muted", {}, "–"),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  // Every interval of the range, empty ones as 0, so the histogram spans the whole range.
  const { from, to } = timeRange();
  const byTime = new Map(volume.map((v) => [Number(v.t), v]));
  const times: number[] = [];
  for (let t = Math.floor(from.getTime() / 1000 / b.seconds) * b.seconds; t <= to.getTime() / 1000; t += b.seconds) times.push(t);
  const count = (t: number, k: string) => Number(byTime.get(t)?.[k] ?? 0);
  lineChart(chart, times, [
    { label: "error", values: times.map((t) => count(t, "error")), color: "#ef4444" },
    { label: "warn", values: times.map((t) => count(t, "warn")), color: "#f59e0b" },
    { label: "info", values: times.map((t) => count(t, "info")), color: "#3b82f6" },
    { label: "debug/other", values: times.map((t) => count(t, "other")), color: "#94a3b8" },
  ], { height: 160 });
}
