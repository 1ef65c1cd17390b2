// Signing in, in a real headless Chromium against `sightline serve` with API keys made by
// `sightline keys create`: the app asks for a key, refuses a wrong one, shows the tenant and
// the key's roles, keeps the key for the tab's session only, hides silence changes from a read
// key, lets an admin key make one, and forgets the key on sign-out.
//
//   SIGHTLINE_BIN=$CARGO_TARGET_DIR/debug/sightline npm test

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.SIGHTLINE_BIN;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.SIGHTLINE_ARTIFACTS ?? new URL("../test-results", import.meta.url).pathname;

let server, browser, base, work, log = "";
const keys = {};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  assert.ok(BIN, "set SIGHTLINE_BIN to the sightline binary");
  mkdirSync(ARTIFACTS, { recursive: true });
  work = mkdtempSync(join(tmpdir(), "sightline-signin-"));
  const data = join(work, "data");
  for (const role of ["read", "admin"]) {
    keys[role] = execFileSync(BIN, ["keys", "--data-dir", data, "create", "--role", role], { encoding: "utf8" }).trim();
  }
  const ready = join(work, "ready.json");
  server = spawn(BIN, [
    "serve", "--data-dir", data, "--http-listen", "127.0.0.1:0", "--otlp-grpc-listen", "127.0.0.1:0",
    "--otlp-http-listen", "127.0.0.1:0", "--ready-file", ready,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  server.stdout.on("data", (d) => (log += d));
  server.stderr.on("data", (d) => (log += d));
  for (let i = 0; !existsSync(ready); i++) {
    if (i > 600) throw new Error(`the server did not start\n${log}`);
    await sleep(100);
  }
  await sleep(100);
  base = `http://${JSON.parse(readFileSync(ready, "utf8")).http}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

async function signIn(page, key) {
  const form = page.locator('[data-testid="sign-in"]');
  await form.waitFor();
  await page.locator('[data-testid="api-key"]').fill(key);
  await form.getByRole("button", { name: "Sign in" }).click();
}

test("the app signs in with a key, shows who it is, and forgets the key on sign-out", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/services`);
  // A wrong key is refused and the form says so.
  await signIn(page, "sl_0000000000000000_not-a-key");
  await page.locator('[data-testid="sign-in"] .bad').waitFor();
  assert.match(await page.locator('[data-testid="sign-in"] .bad').innerText(), /not valid/);
  // A read key opens the pages and shows the tenant and its role.
  await signIn(page, keys.read);
  await page.locator('[data-testid="account"]').waitFor();
  assert.match(await page.locator('[data-testid="account"]').innerText(), /tenant default · read/);
  await page.getByText("No spans in this time range").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("sightline-api-key")), keys.read);
  assert.equal(await page.evaluate(() => localStorage.getItem("sightline-api-key")), null, "not kept beyond the session");
  // Every page works with it; a read key sees silences but cannot change them.
  for (const [nav, ready] of [["Traces", '[data-testid="trace-results"], .note'], ["SLOs", ".note, table"], ["SQL", "textarea"]]) {
    await page.locator("nav.pages").getByText(nav, { exact: true }).click();
    await page.locator(ready).first().waitFor();
  }
  await page.locator("nav.pages").getByText("Alerts", { exact: true }).click();
  await page.locator('[data-testid="read-only"]').waitFor();
  assert.equal(await page.locator('[data-testid="silence-form"]').count(), 0);
  await page.screenshot({ path: join(ARTIFACTS, "signed-in-read.png"), fullPage: true });
  // Signing out forgets the key: the next load asks again.
  await page.locator('[data-testid="sign-out"]').click();
  await page.locator('[data-testid="sign-in"]').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("sightline-api-key")), null);
  await page.reload();
  await page.locator('[data-testid="sign-in"]').waitFor();
  // An admin key may make a silence.
  await signIn(page, keys.admin);
  await page.locator('[data-testid="account"]').waitFor();
  await page.locator("nav.pages").getByText("Alerts", { exact: true }).click();
  await page.locator('[data-testid="silence-form"]').waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});
