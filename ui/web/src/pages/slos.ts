// SLOs: the list (objective, SLI, budget remaining, alert state at a glance) and one SLO's
// page (budget burn-down and SLI over its window, burn rates against each tier's threshold,
// alert history, and the bad events that spent the budget).

import * as api from "../api";
import { lineChart } from "../chart";
import { clear, h, note } from "../dom";
import { ago, num, pct, time } from "../format";
import { onNavigate, timeRange } from "../state";

function budgetBar(remaining: number | null | undefined): HTMLElement {
  if (remaining === null || remaining === undefined) return h("span.muted", {}, "no events");
  const r = remaining;
  const width = Math.max(0, Math.min(1, r)) * 100;
  return h("div.bar", { title: pct(remaining) }, h("span", { class: r <= 0 ? "out" : r < 0.25 ? "low" : "", style: `width:${width}%` }));
}

function stateBadge(state: string): HTMLElement {
  return h("span.badge", { class: state }, state);
}

function link(path: string, text: string): HTMLElement {
  return h("a", { href: path, onclick: onNavigate(path) }, text);
}

export async function slosPage(root: HTMLElement): Promise<void> {
  clear(root, h("h1", {}, "SLOs"), note("loading", "Loading SLOs…"));
  const slos = await api.slos();
  if (slos.length === 0) {
    clear(
      root,
      h("h1", {}, "SLOs"),
      note("empty", "No SLOs yet. Write one in YAML (docs/slo.md) and start the server with --slo-dir DIR, or run `sightline demo`."),
    );
    return;
  }
  const order = { firing: 0, pending: 1, ok: 2 } as Record<string, number>;
  slos.sort((a, b) => order[a.alert_state] - order[b.alert_state] || a.name.localeCompare(b.name));
  clear(
    root,
    h("h1", {}, "SLOs"),
    h(
      "div.card",
      {},
      h(
        "table.data",
        { "data-testid": "slo-list" },
        h("thead", {}, h("tr", {}, ["SLO", "Service", "Objective", "Window", "SLI", "Budget remaining", "", "Alerts"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          slos.map((s) =>
            h(
              "tr",
              { "data-slo": s.name },
              h("td", {}, link(`/slos/${encodeURIComponent(s.name)}`, s.name), h("div.muted", {}, s.description)),
              h("td", {}, s.service),
              h("td.num", {}, pct(s.objective, 3)),
              h("td", {}, s.window),
              h("td.num", {}, pct(s.sli, 3)),
              h("td.num", { "data-testid": "budget-remaining" }, pct(s.budget?.remaining)),
              h("td", {}, budgetBar(s.budget?.remaining)),
              h("td", {}, stateBadge(s.alert_state)),
            ),
          ),
        ),
      ),
    ),
  );
}

/// SQL for the events that counted against the budget (spans and logs SLOs).
function badEventsSql(s: api.SloView): string | null {
  const ind = s.indicator as { kind: string; filter: string | null; good: string | null };
  if (ind.kind !== "spans" && ind.kind !== "logs") return null;
  const table = ind.kind;
  const t = table === "spans" ? "start_time" : "time";
  const cols = table === "spans" ? "trace_id, span_id, name, status_code, duration_ns, http_route" : "trace_id, severity_text, body";
  const where = [ind.filter ? `(${ind.filter})` : "true", `(${ind.good ?? "true"}) IS NOT TRUE`, `${t} >= '${s.window_start}'`];
  return `SELECT ${t}, ${cols} FROM ${table}\nWHERE ${where.join("\n  AND ")}\nORDER BY ${t} DESC LIMIT 100`;
}

export function sloPage(name: string) {
  return async (root: HTMLElement): Promise<void> => {
    clear(root, h("h1", {}, name), note("loading", "Loading…"));
    const s = await api.slo(name);
    // The page's own range when it has one, else the SLO's window from its first events.
    const ranged = new URLSearchParams(location.search).has("from");
    const [history, transitions] = await Promise.all([
      api.sloHistory(name, ranged ? timeRange() : undefined),
      api.rows(
        `SELECT time, rule, group_value, state, burn_rate_long, burn_rate_short, threshold FROM slo_alerts ` +
          `WHERE slo = ${api.quote(name)} AND state <> 'pending' ORDER BY time DESC LIMIT 50`,
      ),
    ]);
    const bad = badEventsSql(s);
    const budgetChart = h("div", { "data-testid": "budget-chart" });
    const sliChart = h("div", { "data-testid": "sli-chart" });
    const burnChart = h("div", { "data-testid": "burn-chart" });
    const tiers = s.alerts.filter((a) => a.values.threshold !== undefined);
    clear(
      root,
      h("div.row", {}, link("/slos", "← SLOs"), stateBadge(s.alert_state)),
      h("h1", {}, s.name),
      s.description ? h("p.muted", {}, s.description) : null,
      h(
        "div.card.stats",
        {},
        [
          ["Objective", pct(s.objective, 3)],
          ["Window", s.window],
          ["SLI", pct(s.sli, 3)],
          ["Budget remaining", pct(s.budget?.remaining)],
          ["Good / valid events", `${s.good.toLocaleString()} / ${s.total.toLocaleString()}`],
          s.exhausted_since
            ? ["Budget exhausted", `since ${time(s.exhausted_since)} (${ago(s.exhausted_since)})`]
            : ["Budget runs out", s.exhausted_at ? time(s.exhausted_at) : s.budget ? "not at this rate" : "–"],
        ].map(([label, value]) =>
          h("div.stat", {}, h("div.label", {}, label), h("div.value", { "data-testid": `stat-${label}` }, value)),
        ),
      ),
      h(
        "div.grid",
        {},
        h("div.card", {}, h("h2", { style: "margin-top:0" }, "Error budget remaining"), budgetChart),
        h("div.card", {}, h("h2", { style: "margin-top:0" }, "SLI"), sliChart),
        h("div.card", {}, h("h2", { style: "margin-top:0" }, "Burn rate over 1h"), burnChart),
      ),
      h(
        "div.grid",
        {},
        h(
          "div.card",
          {},
          h("h2", { style: "margin-top:0" }, "Burn rates"),
          h(
            "table.data",
            {},
            h("thead", {}, h("tr", {}, ["Window", "Burn rate"].map((t) => h("th", {}, t)))),
            h("tbody", {}, s.burn_rates.map((b) => h("tr", {}, h("td", {}, b.window), h("td.num", { class: (b.burn_rate ?? 0) > 1 ? "bad" : "" }, num(b.burn_rate))))),
          ),
          h("h2", {}, "Alert rules"),
          tiers.length || s.alerts.length
            ? h(
                "table.data",
                { "data-testid": "alert-rules" },
                h("thead", {}, h("tr", {}, ["Rule", "Group", "Long", "Short", "Threshold", "State"].map((t) => h("th", {}, t)))),
                h(
                  "tbody",
                  {},
                  s.alerts.map((a) =>
                    h(
                      "tr",
                      {},
                      h("td", {}, a.rule, h("div.muted", {}, a.severity)),
                      h("td", {}, a.group || "–"),
                      h("td.num", { class: (a.values.burn_rate_long ?? 0) >= (a.values.threshold ?? Infinity) ? "bad" : "" }, num(a.values.burn_rate_long)),
                      h("td.num", { class: (a.values.burn_rate_short ?? 0) >= (a.values.threshold ?? Infinity) ? "bad" : "" }, num(a.values.burn_rate_short)),
                      h("td.num", {}, num(a.values.threshold)),
                      h("td", {}, stateBadge(a.state), a.firing_since ? h("div.muted", {}, `since ${ago(a.firing_since)}`) : null),
                    ),
                  ),
                ),
              )
            : note("empty", "No alert rules."),
        ),
        h(
          "div.card",
          {},
          h("h2", { style: "margin-top:0" }, "Firing and resolved"),
          transitions.length
            ? h(
                "table.data",
                { "data-testid": "alert-history" },
                h("thead", {}, h("tr", {}, ["Time", "Rule", "Group", "State", "Burn (long/short)"].map((t) => h("th", {}, t)))),
                h(
                  "tbody",
                  {},
                  transitions.map((t) =>
                    h(
                      "tr",
                      {},
                      h("td", {}, time(String(t.time))),
                      h("td", {}, String(t.rule)),
                      h("td", {}, String(t.group_value) || "–"),
                      h("td", {}, stateBadge(String(t.state))),
                      h("td.num", {}, `${num(t.burn_rate_long as number)} / ${num(t.burn_rate_short as number)}`),
                    ),
                  ),
                ),
              )
            : note("empty", "This SLO has not alerted."),
          bad
            ? h("p", {}, link(`/sql?q=${encodeURIComponent(bad)}`, "The bad events that spent the budget →"))
            : h("p.muted", {}, `Bad events of a ${String((s.indicator as { kind: string }).kind)} SLO are counter increases; see the metrics table.`),
        ),
      ),
    );
    const points = history.points;
    const times = points.map((p) => Date.parse(p.at) / 1000);
    const withData = points.filter((p) => p.total > 0);
    for (const c of [budgetChart, sliChart, burnChart]) {
      c.dataset.points = String(withData.length);
      c.dataset.first = withData.length ? withData[0].at : "";
    }
    const tierRules = new Set(s.alerts.filter((a) => a.values.threshold !== undefined).map((a) => a.rule));
    const bands = firingPeriods(transitions, tierRules);
    if (withData.length > 1) {
      lineChart(
        budgetChart,
        times,
        [
          { label: "budget remaining", values: points.map((p) => p.budget_remaining) },
          { label: "exhausted", values: points.map(() => 0), dash: [6, 4], color: "#94a3b8" },
        ],
        { yRange: [null, 1], bands },
      );
      lineChart(
        sliChart,
        times,
        [
          { label: "SLI", values: points.map((p) => p.sli) },
          { label: "objective", values: points.map(() => s.objective), dash: [6, 4], color: "#94a3b8" },
        ],
        { bands },
      );
      // Tiers whose long window is the hour this line is over: their thresholds apply to it.
      const hourly = s.alerts.filter((a) => a.long_window === "1h" && a.values.threshold !== undefined);
      const seen = new Set<string>();
      lineChart(
        burnChart,
        times,
        [
          { label: "burn rate (1h)", values: points.map((p) => p.burn_rate_1h) },
          ...hourly
            .filter((a) => !seen.has(a.rule) && seen.add(a.rule))
            .map((a) => ({
              label: `${a.rule} threshold`,
              values: points.map(() => a.values.threshold),
              dash: [6, 4],
              color: "#ef4444",
            })),
        ],
        { bands },
      );
    } else {
      const why = "Not enough history yet: the first points come a minute after the first events.";
      clear(budgetChart, note("empty", why));
      clear(sliChart, note("empty", why));
      clear(burnChart, note("empty", why));
    }
  };
}

/// When each burn-rate tier fired (seconds), from its firing and resolved transitions; one
/// still firing lasts until now.
export function firingPeriods(transitions: Record<string, unknown>[], rules: Set<string>): [number, number][] {
  const open = new Map<string, number>();
  const out: [number, number][] = [];
  const ordered = [...transitions].sort((a, b) => Date.parse(String(a.time)) - Date.parse(String(b.time)));
  for (const t of ordered) {
    if (!rules.has(String(t.rule))) continue;
    const key = `${String(t.rule)}\u0000${String(t.group_value)}`;
    const at = Date.parse(String(t.time)) / 1000;
    if (t.state === "firing") open.set(key, at);
    else if (t.state === "resolved" && open.has(key)) {
      out.push([open.get(key)!, at]);
      open.delete(key);
    }
  }
  for (const from of open.values()) out.push([from, Date.now() / 1000]);
  return out;
}
