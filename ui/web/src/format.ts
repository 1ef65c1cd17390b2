// Numbers and times for people.

export function pct(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  return `${(x * 100).toFixed(digits).replace(/\.?0+$/, "")}%`;
}

export function num(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  return x.toFixed(digits);
}

export function time(s: string | number | null | undefined): string {
  if (s === null || s === undefined || s === "") return "–";
  const d = new Date(typeof s === "number" ? s : s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString();
}

export function ago(s: string | null): string {
  if (!s) return "–";
  const secs = Math.round((Date.now() - Date.parse(s)) / 1000);
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)}h ago`;
  return `${Math.round(secs / 86400)}d ago`;
}

export function cell(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
