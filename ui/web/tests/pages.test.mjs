// The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against `sightline demo`: real OpenTelemetry SDK data from the sample shop,
// SLOs, an outage whose page alert fires and resolves, notifications to a real webhook
// receiver. Each page must load without console errors and show what the API says.
// Screenshots go to test-results/ (or $SIGHTLINE_ARTIFACTS).
//
//   SIGHTLINE_BIN=$CARGO_TARGET_DIR/debug/sightline npm test

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.SIGHTLINE_BIN;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.SIGHTLINE_ARTIFACTS ?? new URL("../test-results", import.meta.url).pathname;

let demo, browser, base, output = "", work;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${output.slice(-3000)}`);
    await sleep(500);
  }
}

async function api(path, init) {
  const r = await fetch(`${base}${path}`, init);
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

before(async () => {
  assert.ok(BIN, "set SIGHTLINE_BIN to the sightline binary");
  mkdirSync(ARTIFACTS, { recursive: true });
  work = mkdtempSync(join(tmpdir(), "sightline-ui-"));
  const ready = join(work, "ready.json");
  demo = spawn(BIN, [
    "demo", "--data-dir", join(work, "data"), "--warmup", "10s",
    "--http-listen", "127.0.0.1:0", "--otlp-grpc-listen", "127.0.0.1:0", "--otlp-http-listen", "127.0.0.1:0",
    "--shop-listen", "127.0.0.1:0", "--receiver-listen", "127.0.0.1:0", "--ready-file", ready,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  demo.stdout.on("data", (d) => (output += d));
  demo.stderr.on("data", (d) => (output += d));
  const addrs = await until("the demo's ready file", () => existsSync(ready) && JSON.parse(readFileSync(ready, "utf8")), 180_000); // the past is sent first
  base = `http://${addrs.http}`;
  await until("the scenario to finish", () => output.includes("5/5 resolved"), 600_000);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    demo.kill("SIGINT");
    await new Promise((r) => demo.once("exit", r));
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

/// The budget the page shows (e.g. "-2995.24%") lies between the API's answers fetched just
/// before and just after it loaded: traffic goes on, so the budget moves while we look.
function assertBudgetBetween(shown, before, after) {
  const value = Number(shown.replace("%", "")) / 100;
  const lo = Math.min(before, after) - 1e-4;
  const hi = Math.max(before, after) + 1e-4;
  assert.ok(value >= lo && value <= hi, `page shows ${shown}; the API said ${before} then ${after}`);
}

const budget = async () => (await api("/api/v1/slos/checkout-availability")).budget.remaining;

/// Opens a page, failing on console errors and page errors.
async function open(path, { theme = "light" } = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, acceptDownloads: true });
  await context.addInitScript((t) => localStorage.setItem("sightline-theme", t), theme);
  // The content security policy the server sends must never stop the app itself.
  await context.addInitScript(() =>
    document.addEventListener("securitypolicyviolation", (e) =>
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`)));
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}${path}`);
  return { page, errors, context };
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

test("pages come with a content security policy, anti-framing and nosniff", async () => {
  for (const path of ["/", "/slos", "/api/v1/slos"]) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/, path);
    assert.match(r.headers.get("content-security-policy") ?? "", /script-src 'self'/, path);
    assert.equal(r.headers.get("x-frame-options"), "DENY", path);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff", path);
  }
  // A page of another site cannot make this server run queries or flush.
  const foreign = { "content-type": "text/plain", origin: "https://elsewhere.example" };
  const sql = await fetch(`${base}/api/v1/sql`, { method: "POST", headers: foreign, body: '{"sql":"SELECT 1"}' });
  assert.equal(sql.status, 403);
  const flush = await fetch(`${base}/api/v1/flush`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=1" });
  assert.equal(flush.status, 415);
});

test("the SLO list shows each SLO with the API's budget", async () => {
  const before = await budget();
  const { page, errors, context } = await open("/slos");
  const row = page.locator('tr[data-slo="checkout-availability"]');
  await row.waitFor();
  const after = await budget();
  assertBudgetBetween(await row.locator('[data-testid="budget-remaining"]').innerText(), before, after);
  assert.equal(await page.locator('[data-testid="slo-list"] tbody tr').count(), 3);
  await shot(page, "slos");
  assert.deepEqual(errors, []);
  await context.close();
});

test("an SLO page shows its budget, charts and the alert that fired and resolved", async () => {
  const before = await budget();
  const { page, errors, context } = await open("/slos/checkout-availability?from=now-1h");
  await page.locator('[data-testid="alert-history"]').waitFor();
  const after = await budget();
  assertBudgetBetween(await page.locator('[data-testid="stat-Budget remaining"]').innerText(), before, after);
  const history = await page.locator('[data-testid="alert-history"] tbody').innerText();
  assert.match(history, /page\s+–\s+firing/);
  assert.match(history, /page\s+–\s+resolved/);
  assert.ok(await page.locator('[data-testid="alert-rules"] tbody tr').count() >= 2);
  await shot(page, "slo");
  // The charts: a point a minute over the last hour, with lines on canvas…
  for (const chart of ["budget-chart", "sli-chart", "burn-chart"]) {
    const el = page.locator(`[data-testid="${chart}"]`);
    await el.locator("canvas").waitFor();
    assert.ok(Number(await el.getAttribute("data-points")) >= 30, chart);
  }
  const hour = new Date(Date.now() - 3600e3).toISOString();
  const recent = await (await fetch(`${base}/api/v1/slos/checkout-availability/history?from=${hour}`)).json();
  const pts = recent.points.filter((p) => p.total > 0);
  const gaps = pts.slice(1).map((p, i) => Date.parse(p.at) - Date.parse(pts[i].at));
  assert.ok(gaps.length >= 30 && gaps.slice(0, -1).every((g) => g === 60e3), JSON.stringify(gaps));
  assert.ok(Date.now() - Date.parse(pts.at(-1).at) < 30e3, "the last point is now");
  // …and by default from the SLO's first events: the demo's week of past traffic.
  const own = await (await fetch(`${base}/api/v1/slos/checkout-availability/history`)).json();
  const firstEvent = Date.parse(own.first_event);
  assert.ok(Date.now() - firstEvent > 6.9 * 86400e3, own.first_event);
  const whole = await open("/slos/checkout-availability");
  const sli = whole.page.locator('[data-testid="sli-chart"]');
  await sli.locator("canvas").waitFor();
  const first = Date.parse(await sli.getAttribute("data-first"));
  // Within a step of the week's ~500 points (20 min) and a 15-minute slice of old counts.
  assert.ok(first >= firstEvent && first - firstEvent <= 60 * 60e3, `${first} vs ${own.first_event}`);
  assert.ok(Number(await sli.getAttribute("data-points")) >= 300, await sli.getAttribute("data-points"));
  await shot(whole.page, "slo-week");
  assert.deepEqual(whole.errors, []);
  await whole.context.close();
  // The bad events link opens the SQL console with a query that finds them.
  await page.getByText("The bad events that spent the budget").click();
  await page.locator('[data-testid="sql-results"]').waitFor();
  assert.ok(await page.locator('[data-testid="sql-results"] tbody tr').count() > 0);
  await shot(page, "slo-bad-events");
  // …and each bad event opens its trace, where the failing hop is red.
  await page.locator('[data-testid="sql-results"] tbody tr a').first().click();
  await page.locator('[data-testid="waterfall"] .span-row.error').first().waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test("the alerts page lists notifications, and silences can be made and expired", async () => {
  const { page, errors, context } = await open("/alerts?from=now-1h", { theme: "dark" });
  await page.locator('[data-testid="notifications"]').waitFor();
  const rows = await page.locator('[data-testid="notifications"] tbody').innerText();
  assert.match(rows, /delivered/);
  assert.match(rows, /demo-webhook \(webhook\)/);
  await page.getByLabel("Matchers").fill('slo="checkout-latency", severity="page"');
  await page.getByLabel("Comment").fill("browser test");
  await page.getByRole("button", { name: "Silence" }).click();
  await page.locator('[data-testid="silences"]').waitFor();
  assert.match(await page.locator('[data-testid="silences"]').innerText(), /active/);
  const listed = await api("/api/v1/silences");
  assert.equal(listed.length, 1);
  assert.equal(listed[0].comment, "browser test");
  await shot(page, "alerts-dark");
  await page.getByRole("button", { name: "Expire" }).click();
  await until("the silence to expire", async () => /expired/.test(await page.locator('[data-testid="silences"]').innerText()), 10_000);
  assert.equal((await api("/api/v1/silences"))[0].status.state, "expired");
  assert.deepEqual(errors, []);
  await context.close();
});

test("the SQL console runs a query, charts a time column and exports CSV", async () => {
  const { page, errors, context } = await open("/sql");
  await page.locator("details summary", { hasText: "spans" }).first().waitFor();
  await page.getByLabel("SQL query").fill(
    "SELECT date_trunc('minute', start_time) AS minute, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 1",
  );
  await page.getByRole("button", { name: "Run (Ctrl+Enter)" }).click();
  await page.locator('[data-testid="sql-results"]').waitFor();
  const n = await page.locator('[data-testid="sql-results"] tbody tr').count();
  assert.ok(n >= 2, `${n} rows`);
  await page.locator('[data-testid="sql-chart"] canvas').waitFor();
  assert.match(page.url(), /q=SELECT/);
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export CSV" }).click()]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv.split("\n")[0], /minute,spans/);
  await shot(page, "sql");
  // A bad query gets the server's message, and the page keeps working.
  await page.getByLabel("SQL query").fill("SELECT nope FROM spans");
  await page.getByRole("button", { name: "Run (Ctrl+Enter)" }).click();
  await page.locator(".note.error").waitFor();
  assert.match(await page.locator(".note.error").innerText(), /nope/);
  assert.deepEqual(errors.filter((e) => !e.includes("400")), []);
  await context.close();
});

/// The time a line of the demo's story gives as "(at …)".
function storyTime(marker) {
  const line = output.split("\n").find((l) => l.includes(marker));
  assert.ok(line, `no "${marker}" line in the demo's output`);
  return /\(at (\S+)\)/.exec(line)[1];
}

const SERVICES = ["catalog", "orders", "payment", "recommendations", "shop"];
const EDGES = ["orders -> payment", "recommendations -> catalog", "shop -> catalog", "shop -> orders", "shop -> payment", "shop -> recommendations"];

test("services list every service of the shop with rates and percentiles, linking to its traces", async () => {
  const { page, errors, context } = await open("/services?from=now-5m");
  const row = page.locator('tr[data-service="shop"]');
  await row.waitFor();
  const listed = await page.locator("tr[data-service]").evaluateAll((rows) => rows.map((r) => r.dataset.service).sort());
  assert.deepEqual(listed, SERVICES);
  const cells = await row.locator("td").allInnerTexts();
  assert.ok(Number(cells[1]) > 1, `requests/s ${cells[1]}`);
  assert.match(cells[2], /%$/);
  assert.ok(Number(cells[5]) >= Number(cells[3]), "p99 >= p50");
  await page.locator('tr[data-service="shop"] canvas').first().waitFor();
  // The map, drawn: a box per service, an arrow per call between them, none failing now.
  const graph = page.locator('[data-testid="service-graph"]');
  await graph.waitFor();
  const nodes = await graph.locator("[data-node]").evaluateAll((g) => g.map((n) => n.dataset.node).sort());
  assert.deepEqual(nodes, SERVICES);
  const edges = await graph.locator("[data-edge]").evaluateAll((g) => g.map((e) => e.dataset.edge).sort());
  assert.deepEqual(edges, EDGES);
  await shot(page, "services");
  await row.getByText("traces").click();
  await page.locator('[data-testid="trace-results"]').waitFor();
  assert.match(page.url(), /\/traces\?.*service=shop/);
  assert.deepEqual(errors, []);
  await context.close();
});

test("the service map of the outage shows the failing call from the shop to payment in red", async () => {
  const from = storyTime("2/5 outage");
  const to = storyTime("4/5 recovery");
  const { page, errors, context } = await open(`/services?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  const graph = page.locator('[data-testid="service-graph"]');
  await graph.waitFor();
  const map = await api(`/api/v1/services/map?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  const failingInApi = map.edges.filter((e) => e.error_rate >= 0.05).map((e) => `${e.caller} -> ${e.callee}`).sort();
  assert.ok(failingInApi.includes("shop -> payment"), JSON.stringify(map.edges));
  const failingDrawn = await graph.locator("g.edge.failing").evaluateAll((g) => g.map((e) => e.dataset.edge).sort());
  assert.deepEqual(failingDrawn, failingInApi);
  assert.ok(await graph.locator('g.node.failing[data-node="payment"]').count() === 1, "payment's box is marked");
  assert.ok(await graph.locator('g.edge[data-edge="shop -> catalog"]:not(.failing)').count() === 1, "catalog calls are fine");
  const label = await graph.locator('g.edge[data-edge="shop -> payment"] text').textContent();
  assert.match(label, /\/s · \d+(\.\d+)?%/);
  assert.ok(await page.locator('tr.failing[data-edge="shop -> payment"]').count() === 1, "the table agrees");
  await shot(page, "service-map-outage");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a checkout trace shows its spans nested across the shop's services", async () => {
  const { page, errors, context } = await open("/traces?from=now-1h&service=shop&operation=POST%20%2Fapi%2Fcheckout");
  await page.locator('[data-testid="trace-results"] tbody tr').first().waitFor();
  await page.locator('[data-testid="trace-scatter"] canvas').first().waitFor();
  await shot(page, "traces");
  // A successful checkout: catalog lookups, payment and recommendations.
  const [t] = await (await fetch(`${base}/api/v1/sql`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: "SELECT trace_id FROM spans WHERE http_route = '/recommendations/{user}' AND status_code <> 'error' LIMIT 1", format: "json" }),
  }).then((r) => r.json())).rows;
  await page.goto(`${base}/traces/${t[0]}`);
  await page.locator('[data-testid="waterfall"] .span-row').first().waitFor();
  const depth = async (text) => Number(await page.locator(".span-row", { hasText: text }).first().getAttribute("data-depth"));
  assert.equal(await depth("POST /api/checkout"), 0);
  assert.equal(await depth("POST /charges"), 2);
  assert.equal(await depth("payment.authorize"), 3);
  const trace = await api(`/api/v1/traces/${t[0]}`);
  assert.equal(await page.locator(".span-row").count(), trace.spans.length);
  await shot(page, "trace");
  // Collapsing the root hides everything under it; details show attributes.
  await page.locator(".span-row", { hasText: "POST /api/checkout" }).locator("button.toggle").click();
  assert.equal(await page.locator(".span-row").count(), 1);
  await page.locator(".span-row").first().click();
  assert.match(await page.locator('[data-testid="span-details"]').innerText(), /http\.route/);
  assert.match(await page.locator('[data-testid="trace-logs"]').innerText(), /checkout completed/);
  assert.deepEqual(errors, []);
  await context.close();
});

test("logs search by text and severity, and a log line opens its trace", async () => {
  const { page, errors, context } = await open("/logs?from=now-1h&text=checkout%20failed&severity=error");
  await page.locator('[data-testid="log-lines"] tbody tr').first().waitFor();
  const text = await page.locator('[data-testid="log-lines"] tbody').innerText();
  assert.match(text, /checkout failed/);
  assert.doesNotMatch(text, /\bINFO\b/);
  await page.locator('[data-testid="log-volume"] canvas').first().waitFor();
  await shot(page, "logs");
  await page.locator('[data-testid="log-lines"] tbody tr').first().getByText("trace →").click();
  await page.locator('[data-testid="waterfall"] .span-row').first().waitFor();
  assert.match(page.url(), /\/traces\/[0-9a-f]{32}$/);
  assert.deepEqual(errors, []);
  await context.close();
});

test("metrics chart a histogram's percentiles, grouped by an attribute", async () => {
  const { page, errors, context } = await open("/metrics/explore?from=now-1h&metric=http.server.request.duration&group=http.route");
  await page.locator('[data-testid="metric-chart"] canvas').first().waitFor();
  const legend = await page.locator('[data-testid="metric-chart"] .u-legend').innerText();
  assert.match(legend, /\/api\/checkout p95/);
  await shot(page, "metrics");
  assert.deepEqual(errors, []);
  await context.close();
});
