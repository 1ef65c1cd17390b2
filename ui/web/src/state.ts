// Page state lives in the URL (so it can be shared): the path picks the page, the query
// string holds its parameters, including the time range (`from`, `to`: `now-1h` or RFC 3339)
// and auto-refresh (`refresh`: off, 10s, 30s, 1m).

export const PRESETS: [string, string][] = [
  ["now-5m", "Last 5 minutes"],
  ["now-15m", "Last 15 minutes"],
  ["now-1h", "Last hour"],
  ["now-6h", "Last 6 hours"],
  ["now-24h", "Last 24 hours"],
  ["now-7d", "Last 7 days"],
];
export const REFRESH = ["off", "10s", "30s", "1m"];

export function param(name: string, fallback = ""): string {
  return new URLSearchParams(location.search).get(name) ?? fallback;
}

/// Changes query parameters (empty string removes one) and tells the app.
export function setParams(changes: Record<string, string>, replace = false, rerender = true): void {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === "") q.delete(k);
    else q.set(k, v);
  }
  const url = `${location.pathname}${q.toString() ? `?${q}` : ""}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  if (rerender) window.dispatchEvent(new Event("sightline:navigate"));
}

export function navigate(path: string): void {
  history.pushState(null, "", path);
  window.dispatchEvent(new Event("sightline:navigate"));
}

/// A link's click handler that moves within the app (a modified click opens a new tab).
export function onNavigate(path: string): (e: MouseEvent) => void {
  return (e: MouseEvent) => {
    if (e.metaKey || e.ctrlKey) return;
    e.preventDefault();
    navigate(path);
  };
}

const UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

export function parseDuration(s: string): number | null {
  const m = /^(\d+)([smhd])$/.exec(s);
  return m ? Number(m[1]) * UNITS[m[2]] : null;
}

/// `now`, `now-1h` or an RFC 3339 time.
export function resolveTime(s: string, now = Date.now()): Date {
  if (s === "now") return new Date(now);
  const rel = /^now-(\d+[smhd])$/.exec(s);
  if (rel) return new Date(now - (parseDuration(rel[1]) ?? 0));
  const t = Date.parse(s);
  return Number.isNaN(t) ? new Date(now - 3600e3) : new Date(t);
}

export function timeRange(): { from: Date; to: Date; fromText: string; toText: string } {
  const fromText = param("from", "now-1h");
  const toText = param("to", "now");
  const now = Date.now();
  return { from: resolveTime(fromText, now), to: resolveTime(toText, now), fromText, toText };
}

/// The range as a SQL condition on a timestamp column.
export function timeFilter(column: string): string {
  const { from, to } = timeRange();
  return `${column} >= '${from.toISOString()}' AND ${column} < '${to.toISOString()}'`;
}
