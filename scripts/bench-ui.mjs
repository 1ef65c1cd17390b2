// How fast each web page is with a loaded server: opens every page in headless Chromium a few
// times and reports, per page, the time until its content shows and the slowest API call
// behind it (from the browser's resource timings).
//   node scripts/bench-ui.mjs http://127.0.0.1:8080 [runs]
// Needs ui/web's node_modules (playwright-core) and Debian's chromium.

import { chromium } from "../ui/web/node_modules/playwright-core/index.mjs";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const runs = Number(process.argv[3] ?? 5);

async function sql(q) {
  const r = await fetch(`${base}/api/v1/sql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: q, format: "json" }),
  });
  return (await r.json()).rows;
}

const [[traceId]] = await sql("SELECT trace_id FROM spans ORDER BY start_time DESC LIMIT 1");
const [[service]] = await sql("SELECT service_name FROM spans GROUP BY 1 ORDER BY count(*) DESC LIMIT 1");
const [[metric]] = await sql("SELECT metric_name FROM metrics WHERE metric_type = 'histogram' GROUP BY 1 LIMIT 1").catch(() => [[null]]);
const [[count]] = await sql("SELECT count(*) FROM spans");
console.log(`${count} spans stored; ${runs} loads per page`);

const slos = await (await fetch(`${base}/api/v1/slos`)).json();
const slo = slos.slos?.[0]?.name;

const pages = [
  ["services", "/services?from=now-1h", '[data-testid="services"]'],
  ["traces (search, one service)", `/traces?from=now-1h&service=${encodeURIComponent(service)}`, '[data-testid="trace-results"]'],
  ["trace view", `/traces/${traceId}`, '[data-testid="waterfall"] .span-row'],
  ["logs (errors)", "/logs?from=now-1h&severity=error", '[data-testid="log-lines"], .note'],
  ["metrics", `/metrics/explore?from=now-15m${metric ? `&metric=${encodeURIComponent(metric)}` : ""}`, '[data-testid="metric-chart"] canvas, .note'],
  ["SLOs", "/slos", '[data-testid="slo-list"], .note'],
  ...(slo ? [[`SLO page (${slo}, its window)`, `/slos/${encodeURIComponent(slo)}`, '[data-testid="burn-chart"] canvas, [data-testid="burn-chart"] .note']] : []),
  ["SQL console", `/sql?q=${encodeURIComponent("SELECT service_name, count(*) FROM spans GROUP BY 1")}`, '[data-testid="sql-results"]'],
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
for (const [name, path, ready] of pages) {
  const shown = [];
  const slowest = [];
  for (let i = 0; i < runs; i++) {
    const page = await browser.newPage();
    const t0 = Date.now();
    await page.goto(`${base}${path}`);
    await page.locator(ready).first().waitFor({ timeout: 120_000 });
    shown.push(Date.now() - t0);
    const api = await page.evaluate(() =>
      performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/")).map((e) => e.duration),
    );
    slowest.push(Math.max(0, ...api));
    await page.close();
  }
  console.log(
    `${name.padEnd(30)} shown p50 ${String(pct(shown, 0.5)).padStart(6)} ms, max ${String(Math.max(...shown)).padStart(6)} ms; ` +
      `slowest API call p50 ${pct(slowest, 0.5).toFixed(0).padStart(6)} ms`,
  );
}
await browser.close();
