// The app shell: navigation, time range and auto-refresh, theme, and the page router.

import "./style.css";
import { destroyCharts } from "./chart";
import { clear, h, note } from "./dom";
import { PRESETS, REFRESH, navigate, param, parseDuration, setParams } from "./state";
import * as api from "./api";
import { currentUser, setMe } from "./session";
import { alertsPage } from "./pages/alerts";
import { logsPage } from "./pages/logs";
import { metricsPage } from "./pages/metrics";
import { servicesPage } from "./pages/services";
import { sloPage, slosPage } from "./pages/slos";
import { sqlPage } from "./pages/sql";
import { tracePage, tracesPage } from "./pages/traces";

/// A page renders into `root`; it may return a cleanup function.
export type Page = (root: HTMLElement, signal: AbortSignal) => Promise<void> | void;

interface Route {
  path: RegExp;
  title: string;
  nav?: string;
  page: (m: RegExpExecArray) => Page;
}

const routes: Route[] = [
  { path: /^\/(services)?\/?$/, title: "Services", nav: "/services", page: () => servicesPage },
  { path: /^\/traces\/?$/, title: "Traces", nav: "/traces", page: () => tracesPage },
  { path: /^\/traces\/([0-9a-fA-F]+)$/, title: "Trace", page: (m) => tracePage(m[1]) },
  { path: /^\/logs\/?$/, title: "Logs", nav: "/logs", page: () => logsPage },
  { path: /^\/metrics\/explore\/?$/, title: "Metrics", nav: "/metrics/explore", page: () => metricsPage },
  { path: /^\/slos\/?$/, title: "SLOs", nav: "/slos", page: () => slosPage },
  { path: /^\/slos\/([^/]+)$/, title: "SLO", page: (m) => sloPage(decodeURIComponent(m[1])) },
  { path: /^\/alerts\/?$/, title: "Alerts", nav: "/alerts", page: () => alertsPage },
  { path: /^\/sql\/?$/, title: "SQL", nav: "/sql", page: () => sqlPage },
];

function theme(): "light" | "dark" {
  const saved = localStorage.getItem("sightline-theme");
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

let current: AbortController | null = null;
let timer: number | undefined;

function header(): HTMLElement {
  const from = param("from", "now-1h");
  const refresh = param("refresh", "off");
  const rangeSelect = h(
    "select",
    { "aria-label": "Time range", onchange: (e: Event) => setParams({ from: (e.target as HTMLSelectElement).value, to: "" }) },
    PRESETS.map(([v, label]) => h("option", { value: v, selected: v === from }, label)),
    PRESETS.some(([v]) => v === from) ? null : h("option", { value: from, selected: true }, `From ${from}`),
  );
  const refreshSelect = h(
    "select",
    { "aria-label": "Auto-refresh", onchange: (e: Event) => setParams({ refresh: (e.target as HTMLSelectElement).value }, true) },
    REFRESH.map((v) => h("option", { value: v, selected: v === refresh }, v === "off" ? "Refresh: off" : `Every ${v}`)),
  );
  const links = routes
    .filter((r) => r.nav)
    .map((r) =>
      h(
        "a",
        {
          href: r.nav,
          class: location.pathname.startsWith(r.nav!) || (r.nav === "/services" && location.pathname === "/") ? "active" : "",
          onclick: (e: MouseEvent) => {
            if (e.metaKey || e.ctrlKey) return;
            e.preventDefault();
            const keep = new URLSearchParams();
            for (const k of ["from", "to", "refresh"]) if (param(k)) keep.set(k, param(k));
            navigate(`${r.nav}${keep.toString() ? `?${keep}` : ""}`);
          },
        },
        r.title,
      ),
    );
  const themeButton = h(
    "button",
    {
      title: "Switch theme",
      "aria-label": "Switch theme",
      onclick: () => {
        const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
        localStorage.setItem("sightline-theme", next);
        document.documentElement.dataset.theme = next;
        render();
      },
    },
    document.documentElement.dataset.theme === "dark" ? "☀" : "☾",
  );
  const me = currentUser();
  const account =
    me && me.keys_configured
      ? h(
          "span.account",
          { "data-testid": "account" },
          h("span.muted", {}, `tenant ${me.tenant} · ${me.roles.join(", ")}`),
          h("button", { "data-testid": "sign-out", onclick: () => signOut() }, "Sign out"),
        )
      : null;
  return h(
    "header.top",
    {},
    h("a.brand", { href: "/" }, "Sightline"),
    h("nav.pages", {}, links),
    h("div.controls", {}, rangeSelect, refreshSelect, themeButton, account),
  );
}

/// The sign-in screen: a key (kept for this tab's session only), checked with the API.
function signIn(message = ""): void {
  current?.abort();
  window.clearTimeout(timer);
  destroyCharts();
  setMe(null);
  const app = document.getElementById("app")!;
  const key = h("input", { type: "password", autocomplete: "off", placeholder: "sl_…", "aria-label": "API key", "data-testid": "api-key" });
  const status = h("div", {}, message ? h("span.bad", {}, message) : null);
  const submit = async (e: Event) => {
    e.preventDefault();
    api.setApiKey(key.value.trim());
    try {
      setMe(await api.whoami());
      render();
    } catch (err) {
      api.setApiKey(null);
      clear(status, h("span.bad", {}, (err as Error).message));
    }
  };
  document.title = "Sign in · Sightline";
  clear(
    app,
    h("header.top", {}, h("a.brand", { href: "/" }, "Sightline")),
    h(
      "main",
      {},
      h(
        "form.card.signin",
        { onsubmit: submit, "data-testid": "sign-in" },
        h("h1", { style: "margin-top:0" }, "Sign in"),
        h("p.muted", {}, "This Sightline needs an API key with the read role (admin to change silences). It is kept for this browser tab only."),
        key,
        h("button.primary", { type: "submit" }, "Sign in"),
        status,
      ),
    ),
  );
  key.focus();
}

function signOut(): void {
  api.setApiKey(null);
  signIn();
}

function render(): void {
  current?.abort();
  window.clearTimeout(timer);
  destroyCharts();
  const app = document.getElementById("app")!;
  const route = routes.find((r) => r.path.test(location.pathname));
  const main = h("main", {});
  clear(app, header(), main);
  if (!route) {
    document.title = "Not found · Sightline";
    clear(main, note("empty", `There is no page at ${location.pathname}.`));
    return;
  }
  let page: Page;
  try {
    page = route.page(route.path.exec(location.pathname)!);
  } catch (e) {
    clear(main, note("error", `Cannot open ${location.pathname}: ${(e as Error).message}`));
    return;
  }
  document.title = `${route.title} · Sightline`;
  const every = parseDuration(param("refresh", "off"));
  // Each run renders into its own box: a run that finishes after the next one started writes
  // into a box no longer on the page. The next refresh is planned when a run ends, so slow
  // answers never pile up.
  const run = (): void => {
    current = new AbortController();
    const signal = current.signal;
    destroyCharts();
    const box = h("div", {});
    clear(main, box);
    Promise.resolve(page(box, signal))
      .catch((e: unknown) => {
        if (!signal.aborted) clear(box, note("error", e instanceof Error ? e.message : String(e)));
      })
      .finally(() => {
        if (signal.aborted || !every) return;
        timer = window.setTimeout(function tick() {
          // Not while someone types into the page (a silence, a query, a filter).
          const focused = document.activeElement;
          if (focused && main.contains(focused) && /^(INPUT|TEXTAREA|SELECT)$/.test(focused.tagName)) {
            timer = window.setTimeout(tick, every);
            return;
          }
          current?.abort();
          run();
        }, every);
      });
  };
  run();
}

document.documentElement.dataset.theme = theme();
window.addEventListener("popstate", () => currentUser() && render());
window.addEventListener("sightline:navigate", () => currentUser() && render());
// A key refused (revoked, expired) while the app runs: sign in again.
// (Only once signed in: while signing in, the form says why a key is refused.)
window.addEventListener("sightline:signin", () => {
  if (currentUser()?.keys_configured) {
    api.setApiKey(null);
    signIn("The key was refused: sign in again.");
  }
});
api
  .whoami()
  .then((me) => {
    setMe(me);
    render();
  })
  .catch((e: unknown) => {
    if (e instanceof api.ApiError && e.status === 401) signIn(api.apiKey() ? "The key was refused." : "");
    else {
      setMe({ tenant: "default", key_id: null, roles: ["ingest", "read", "admin"], keys_configured: false });
      render();
    }
  });
