// Traces: search (service, operation, duration, status, attributes, time range) with a
// duration scatter chart; the trace view (span waterfall with nesting, timing bars, errors
// highlighted, collapsible; span details; the trace's logs). Open a trace by pasting its id.

import uPlot from "uplot";
import * as api from "../api";
import { track } from "../chart";
import { clear, h, note } from "../dom";
import { cell, time } from "../format";
import { navigate, onNavigate, param, setParams, timeFilter } from "../state";

export function ms(ns: number): string {
  const v = ns / 1e6;
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : v >= 10 ? `${v.toFixed(0)} ms` : `${v.toFixed(2)} ms`;
}

/// `key=value` pairs separated by commas → SQL conditions on the attributes map.
export function attributeConditions(text: string, column = "attributes"): string[] {
  return text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf("=");
      if (i <= 0) throw new Error(`attribute filter ${JSON.stringify(p)}: write key=value`);
      return `${column}[${api.quote(p.slice(0, i).trim())}] = ${api.quote(p.slice(i + 1).trim())}`;
    });
}

export async function tracesPage(root: HTMLElement): Promise<void> {
  const service = param("service");
  // The filter lists and the search itself are asked for at once.
  const lists = Promise.all([
    api
      .rows(`SELECT DISTINCT service_name FROM spans WHERE ${timeFilter("start_time")} ORDER BY 1`)
      .then((r) => r.map((x) => String(x.service_name))),
    service
      ? api
          .rows(`SELECT DISTINCT name FROM spans WHERE service_name = ${api.quote(service)} AND ${timeFilter("start_time")} ORDER BY 1 LIMIT 500`)
          .then((r) => r.map((x) => String(x.name)))
      : Promise.resolve([] as string[]),
  ]);
  const search = searchTraces(service);
  search.catch(() => {}); // reported below, after the form is up
  const [services, operations] = await lists;
  const field = (name: string, el: HTMLInputElement | HTMLSelectElement) => {
    el.value = param(name);
    el.addEventListener("change", () => setParams({ [name]: el.value }));
    return el;
  };
  const idInput = h("input", { placeholder: "paste a trace id", size: 36, "aria-label": "Trace id" }) as HTMLInputElement;
  const openId = () => {
    const id = idInput.value.trim().toLowerCase();
    if (/^[0-9a-f]{32}$/.test(id)) navigate(`/traces/${id}`);
    else idInput.setCustomValidity("32 hexadecimal digits"), idInput.reportValidity();
  };
  idInput.addEventListener("keydown", (e) => e.key === "Enter" && openId());
  const form = h(
    "div.card",
    {},
    h(
      "div.row",
      {},
      field("service", h("select", { "aria-label": "Service" }, h("option", { value: "" }, "any service"), services.map((s) => h("option", { value: s }, s)))),
      field("operation", h("select", { "aria-label": "Operation" }, h("option", { value: "" }, "any operation"), operations.map((s) => h("option", { value: s }, s)))),
      field("min", h("input", { placeholder: "min ms", size: 7, "aria-label": "Minimum duration (ms)" }) as HTMLInputElement),
      field("max", h("input", { placeholder: "max ms", size: 7, "aria-label": "Maximum duration (ms)" }) as HTMLInputElement),
      field("status", h("select", { "aria-label": "Status" }, h("option", { value: "" }, "any status"), h("option", { value: "error" }, "with errors"))),
      field("attrs", h("input", { placeholder: "http.route=/api/checkout, …", size: 30, "aria-label": "Attributes" }) as HTMLInputElement),
      h("span", { style: "margin-left:auto" }),
      idInput,
      h("button", { onclick: openId }, "Open"),
    ),
  );
  const out = h("div", {}, note("loading", "Searching…"));
  clear(root, h("h1", {}, "Traces"), form, out);
  let traces: Record<string, unknown>[];
  try {
    traces = await search;
  } catch (e) {
    clear(out, note("error", (e as Error).message));
    return;
  }
  renderTraces(out, traces);
}

/// The traces matching the URL's filters, newest first.
async function searchTraces(service: string): Promise<Record<string, unknown>[]> {
  const conditions = [timeFilter("start_time")];
  if (service) conditions.push(`service_name = ${api.quote(service)}`);
  if (param("operation")) conditions.push(`name = ${api.quote(param("operation"))}`);
  if (param("status") === "error") conditions.push(`status_code = 'error'`);
  conditions.push(...attributeConditions(param("attrs")));
  const having: string[] = [];
  const min = Number(param("min")), max = Number(param("max"));
  if (param("min") && Number.isFinite(min)) having.push(`duration_ns >= ${Math.round(min * 1e6)}`);
  if (param("max") && Number.isFinite(max)) having.push(`duration_ns <= ${Math.round(max * 1e6)}`);
  const query =
    `SELECT * FROM (SELECT f.trace_id, min(f.start_time) AS start_time, ` +
    `CAST(max(f.end_time) AS BIGINT) - CAST(min(f.start_time) AS BIGINT) AS duration_ns, ` +
    `max(f.root_service_name) AS root_service, max(f.root_span_name) AS root_span, ` +
    `sum(f.span_count) AS spans, sum(f.error_count) AS errors FROM trace_fragments f ` +
    `WHERE ${timeFilter("f.start_time")} AND f.trace_id IN (SELECT DISTINCT trace_id FROM spans WHERE ${conditions.join(" AND ")}) ` +
    `GROUP BY 1) ${having.length ? `WHERE ${having.join(" AND ")}` : ""} ORDER BY start_time DESC LIMIT 300`;
  return api.rows(query);
}

function renderTraces(out: HTMLElement, traces: Record<string, unknown>[]): void {
  if (traces.length === 0) {
    clear(out, note("empty", "No traces match. Widen the time range or remove a filter."));
    return;
  }
  const chart = h("div.card", { "data-testid": "trace-scatter" });
  clear(
    out,
    chart,
    h(
      "div.card.scroll",
      {},
      h(
        "table.data",
        { "data-testid": "trace-results" },
        h("thead", {}, h("tr", {}, ["Start", "Root", "Duration", "Spans", "Errors", "Trace id"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          traces.map((t) =>
            h(
              "tr",
              {},
              h("td", {}, time(String(t.start_time))),
              h("td", {}, h("b", {}, String(t.root_service ?? "?")), " ", String(t.root_span ?? "(root not seen)")),
              h("td.num", {}, ms(Number(t.duration_ns))),
              h("td.num", {}, String(t.spans)),
              h("td.num", { class: Number(t.errors) > 0 ? "bad" : "" }, String(t.errors)),
              h("td", {}, h("a", { href: `/traces/${t.trace_id}`, onclick: onNavigate(`/traces/${t.trace_id}`) }, String(t.trace_id))),
            ),
          ),
        ),
      ),
    ),
  );
  const pts = traces.map((t) => ({ x: Date.parse(String(t.start_time)) / 1000, y: Number(t.duration_ns) / 1e6, err: Number(t.errors) > 0 })).sort((a, b) => a.x - b.x);
  const dots = (): uPlot.Series.Points => ({ show: true, size: 6 });
  const scatter = new uPlot(
    {
      width: Math.max(chart.clientWidth - 24, 320),
      height: 180,
      scales: { x: { time: true } },
      axes: [{}, { label: "ms", size: 60 }],
      series: [
        {},
        { label: "duration (ms)", stroke: "#3b82f6", paths: () => null, points: dots() },
        { label: "with errors", stroke: "#ef4444", paths: () => null, points: dots() },
      ],
    },
    [pts.map((p) => p.x), pts.map((p) => (p.err ? null : p.y)), pts.map((p) => (p.err ? p.y : null))] as uPlot.AlignedData,
    chart,
  );
  track(scatter);
}

interface SpanRow {
  span_id: string;
  parent_span_id: string | null;
  name: string;
  kind: string;
  service_name: string;
  start_time: string;
  end_time: string;
  duration_ns: number;
  status_code: string;
  status_message: string | null;
  attributes: Record<string, string> | null;
  resource_attributes: Record<string, string> | null;
  events: { time: string; name: string; attributes: Record<string, string> | null }[] | null;
  links: { trace_id: string; span_id: string }[] | null;
  scope_name: string | null;
}

interface TraceResponse {
  trace_id: string;
  spans: SpanRow[];
  logs: Record<string, unknown>[];
}

/// Nanoseconds since the epoch from an RFC 3339 time with up to 9 fractional digits.
export function nanos(s: string): number {
  const m = /\.(\d+)Z$/.exec(s);
  const base = Date.parse(s.replace(/\.\d+Z$/, "Z"));
  const frac = m ? Number(m[1].padEnd(9, "0").slice(0, 9)) : 0;
  return base * 1e6 + frac;
}

function kv(map: Record<string, unknown> | null | undefined): HTMLElement {
  const entries = Object.entries(map ?? {});
  if (!entries.length) return h("span.muted", {}, "none");
  return h("table.data", {}, h("tbody", {}, entries.sort().map(([k, v]) => h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, cell(v))))));
}

export function tracePage(id: string) {
  return async (root: HTMLElement): Promise<void> => {
    clear(root, h("h1", {}, `Trace ${id}`), note("loading", "Loading the trace…"));
    let t: TraceResponse;
    try {
      const r = await api.authedFetch(`/api/v1/traces/${encodeURIComponent(id)}`);
      const body = await r.json();
      if (!r.ok) throw new Error(body.error ?? r.statusText);
      t = body;
    } catch (e) {
      clear(root, h("h1", {}, "Trace"), note("error", (e as Error).message));
      return;
    }
    // A span sent twice (at-least-once delivery) is shown once.
    const seen = new Set<string>();
    const spans = t.spans.filter((s) => !seen.has(s.span_id) && seen.add(s.span_id) !== undefined);
    const ids = seen;
    const children = new Map<string, SpanRow[]>();
    const roots: SpanRow[] = [];
    for (const s of spans) {
      if (s.parent_span_id && s.parent_span_id !== s.span_id && ids.has(s.parent_span_id)) {
        if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
        children.get(s.parent_span_id)!.push(s);
      } else roots.push(s);
    }
    const start = spans.reduce((m, s) => Math.min(m, nanos(s.start_time)), Infinity);
    const end = spans.reduce((m, s) => Math.max(m, nanos(s.end_time)), -Infinity);
    const total = Math.max(end - start, 1);
    const collapsed = new Set<string>();
    const details = h("div.card", { "data-testid": "span-details" }, h("p.muted", {}, "Click a span to see its attributes, resource, events and links."));
    const rowsEl = h("div", { "data-testid": "waterfall" });

    const showDetails = (s: SpanRow) =>
      clear(
        details,
        h("h2", { style: "margin-top:0" }, `${s.service_name} · ${s.name}`),
        h("div.row.muted", {}, `${s.kind} · ${ms(s.duration_ns)} · status ${s.status_code}${s.status_message ? `: ${s.status_message}` : ""} · span ${s.span_id}`),
        h("h2", {}, "Attributes"), kv(s.attributes),
        h("h2", {}, "Resource"), kv(s.resource_attributes),
        h("h2", {}, `Events (${s.events?.length ?? 0})`),
        (s.events ?? []).length
          ? h("table.data", {}, h("tbody", {}, (s.events ?? []).map((e) => h("tr", {}, h("td", {}, time(e.time)), h("td", { class: e.name === "exception" ? "bad" : "" }, e.name), h("td", {}, kv(e.attributes))))))
          : h("span.muted", {}, "none"),
        h("h2", {}, `Links (${s.links?.length ?? 0})`),
        (s.links ?? []).map((l) => h("div", {}, h("a", { href: `/traces/${l.trace_id}`, onclick: onNavigate(`/traces/${l.trace_id}`) }, `${l.trace_id} / ${l.span_id}`))),
      );

    const draw = () => {
      const out: HTMLElement[] = [];
      const walk = (s: SpanRow, depth: number) => {
        const kids = (children.get(s.span_id) ?? []).sort((a, b) => nanos(a.start_time) - nanos(b.start_time));
        const left = ((nanos(s.start_time) - start) / total) * 100;
        const width = Math.max((s.duration_ns / total) * 100, 0.3);
        const error = s.status_code === "error";
        const toggle = kids.length
          ? h("button", { class: "toggle", "aria-label": collapsed.has(s.span_id) ? "expand" : "collapse", onclick: (e: Event) => {
              e.stopPropagation();
              if (collapsed.has(s.span_id)) collapsed.delete(s.span_id);
              else collapsed.add(s.span_id);
              draw();
            } }, collapsed.has(s.span_id) ? "▸" : "▾")
          : h("span", { class: "toggle" });
        out.push(
          h(
            "div.span-row",
            { class: error ? "error" : "", "data-span": s.span_id, "data-depth": String(depth), onclick: () => showDetails(s) },
            h("div.span-name", { style: `padding-left:${depth * 14}px` }, toggle, h("b", {}, s.service_name), " ", s.name),
            h("div.span-track", {}, h("div.span-bar", { style: `left:${left}%;width:${width}%` }), h("span.span-dur", { style: left + width > 80 ? `right:${100 - left}%;margin-right:6px` : `left:${left + width}%;margin-left:6px` }, ms(s.duration_ns))),
          ),
        );
        if (!collapsed.has(s.span_id)) for (const k of kids) walk(k, depth + 1);
      };
      for (const r of roots.sort((a, b) => nanos(a.start_time) - nanos(b.start_time))) walk(r, 0);
      clear(rowsEl, out);
    };
    draw();
    const errors = spans.filter((s) => s.status_code === "error").length;
    clear(
      root,
      h("h1", {}, `Trace ${t.trace_id}`),
      h("div.row.muted", {}, `${spans.length} spans · ${ms(total)} · ${errors} with errors · started ${time(spans.length ? new Date(start / 1e6).toISOString() : "")}`),
      h("div.card.waterfall", {}, rowsEl),
      details,
      h(
        "div.card",
        {},
        h("h2", { style: "margin-top:0" }, `Logs of this trace (${t.logs.length})`),
        t.logs.length
          ? h("table.data", { "data-testid": "trace-logs" }, h("tbody", {}, t.logs.map((l) =>
              h("tr", {}, h("td", {}, time(String(l.time))), h("td", { class: Number(l.severity_number) >= 17 ? "bad" : "" }, String(l.severity_text ?? "")),
                h("td", {}, String(l.body ?? "")), h("td.muted", {}, String(l.span_id ?? ""))))))
          : h("p.muted", {}, "No logs carry this trace's id."),
      ),
    );
  };
}
