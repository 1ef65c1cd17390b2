// Sightline's public HTTP API (docs/sql.md, docs/slo.md, docs/alerting.md).

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/// The API key this browser session signed in with (kept for the tab's session only).
const KEY = "sightline-api-key";

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/// `init` with the session's key as `Authorization: Bearer`.
export function withKey(init: RequestInit = {}): RequestInit {
  const key = apiKey();
  if (!key) return init;
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  return { ...init, headers };
}

/// Every API call: with the key, and a 401 asks the app to sign in.
export async function authedFetch(path: string, init?: RequestInit): Promise<Response> {
  const r = await fetch(path, withKey(init));
  if (r.status === 401) window.dispatchEvent(new CustomEvent("sightline:signin"));
  return r;
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const r = await authedFetch(path, init);
  const text = await r.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!r.ok) {
    const msg =
      body && typeof body === "object" && "error" in body ? String((body as { error: unknown }).error) : text || r.statusText;
    throw new ApiError(r.status, msg);
  }
  return body as T;
}

export interface SqlResult {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  row_count: number;
  truncated?: boolean;
  elapsed_ms?: number;
}

export function sql(query: string): Promise<SqlResult> {
  return call("/api/v1/sql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: query, format: "json" }),
  });
}

/// Rows as objects keyed by column name.
export async function rows(query: string): Promise<Record<string, unknown>[]> {
  const r = await sql(query);
  const names = r.columns.map((c) => c.name);
  return r.rows.map((row) => Object.fromEntries(names.map((n, i) => [n, row[i]])));
}

export async function sqlCsv(query: string): Promise<string> {
  const r = await authedFetch("/api/v1/sql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: query, format: "csv" }),
  });
  const text = await r.text();
  if (!r.ok) throw new ApiError(r.status, text);
  return text;
}

export interface BurnRate {
  window: string;
  burn_rate: number | null;
}

export interface AlertView {
  rule: string;
  group: string;
  state: "inactive" | "pending" | "firing";
  severity: string;
  fingerprint: string;
  labels: Record<string, string>;
  since: string | null;
  firing_since: string | null;
  values: Record<string, number>;
  long_window: string | null;
  short_window: string | null;
}

export interface SloView {
  name: string;
  service: string;
  description: string;
  objective: number;
  window: string;
  indicator: Record<string, unknown>;
  group_by: string | null;
  labels: Record<string, string>;
  alert_state: "firing" | "pending" | "ok";
  at: string;
  window_start: string;
  window_end: string;
  good: number;
  total: number;
  sli: number | null;
  budget: { allowed_bad: number; bad: number; consumed: number; remaining: number } | null;
  burn_rates: BurnRate[];
  /// While budget remains: when it runs out at the last hour's burn rate (within the window).
  exhausted_at: string | null;
  /// While the budget is spent: since when.
  exhausted_since: string | null;
  alerts: AlertView[];
}

export interface HistoryPoint {
  at: string;
  good: number;
  total: number;
  sli: number | null;
  budget_remaining: number | null;
  burn_rate_1h: number | null;
}

export const slos = () => call<{ slos: SloView[] }>("/api/v1/slos").then((r) => r.slos);
export const slo = (name: string) => call<SloView>(`/api/v1/slos/${encodeURIComponent(name)}`);
export interface History {
  slo: string;
  /// The start of the SLO's oldest counted minute (or 15 minutes).
  first_event: string | null;
  points: HistoryPoint[];
}

/// Without a range: the SLO's window, from its first events if they are younger, in about 500
/// points (at least a minute apart).
export const sloHistory = (name: string, range?: { from: Date; to: Date }) =>
  call<History>(
    `/api/v1/slos/${encodeURIComponent(name)}/history` +
      (range ? `?from=${range.from.toISOString()}&to=${range.to.toISOString()}` : ""),
  );

export interface Edge {
  caller: string;
  callee: string;
  calls: number;
  rate_per_s: number;
  errors: number;
  error_rate: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

/// The calls between services in a range of at most a day.
export const serviceMap = (from: Date, to: Date) =>
  call<{ from: string; to: string; edges: Edge[] }>(
    `/api/v1/services/map?from=${from.toISOString()}&to=${to.toISOString()}`,
  ).then((r) => r.edges);

export interface Matcher {
  name: string;
  value: string;
  isRegex: boolean;
  isEqual: boolean;
}

export interface Silence {
  id: string;
  matchers: Matcher[];
  startsAt: string | null;
  endsAt: string;
  createdBy: string;
  comment: string;
  status: { state: "pending" | "active" | "expired" };
  fromConfig: boolean;
}

export const silences = () => call<Silence[]>("/api/v1/silences");
export const createSilence = (s: { matchers: Matcher[]; endsAt: string; createdBy: string; comment: string }) =>
  call<{ silenceID: string }>("/api/v1/silences", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(s),
  });
export const expireSilence = (id: string) =>
  call<unknown>(`/api/v1/silences/${encodeURIComponent(id)}`, { method: "DELETE" });

export interface Pending {
  id: string;
  receiver: string;
  group_key: string;
  status: string;
  alerts: number;
  queued_at: string;
  attempts: number;
  next_attempt: string;
  last_error: string | null;
}

export const pending = () => call<{ pending: Pending[] }>("/api/v1/notifications/pending").then((r) => r.pending);

/// A SQL string literal.
export function quote(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/// Who this session is: its tenant and roles (all of them when no key is configured).
export interface Whoami {
  tenant: string;
  key_id: string | null;
  roles: string[];
  keys_configured: boolean;
}

export function whoami(): Promise<Whoami> {
  return call("/api/v1/whoami");
}
