// SQL console: an editor with the tables and columns listed, results as a table, a chart when
// the result has a time column, CSV export. The query lives in the URL (`?q=`).

import * as api from "../api";
import { lineChart } from "../chart";
import { clear, h, note } from "../dom";
import { cell } from "../format";
import { onNavigate, param, setParams } from "../state";

const EXAMPLE =
  "SELECT date_trunc('minute', start_time) AS minute, count(*) AS spans,\n" +
  "       sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors\n" +
  "FROM spans\nWHERE start_time > now() - INTERVAL '1 hour'\nGROUP BY 1 ORDER BY 1";

async function schema(list: HTMLElement, insert: (text: string) => void): Promise<void> {
  try {
    const cols = await api.rows(
      "SELECT table_name, column_name, data_type FROM information_schema.columns " +
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    );
    const tables = new Map<string, { column_name: string; data_type: string }[]>();
    for (const c of cols) {
      const t = String(c.table_name);
      if (!tables.has(t)) tables.set(t, []);
      tables.get(t)!.push({ column_name: String(c.column_name), data_type: String(c.data_type) });
    }
    clear(
      list,
      [...tables].map(([t, columns]) =>
        h(
          "details",
          {},
          h("summary", { title: "Click a name to insert it" }, t),
          h(
            "ul",
            {},
            h("li", { onclick: () => insert(t) }, h("b", {}, t)),
            columns.map((c) => h("li", { title: c.data_type, onclick: () => insert(c.column_name) }, c.column_name)),
          ),
        ),
      ),
    );
  } catch (e) {
    clear(list, note("error", `cannot list the tables: ${(e as Error).message}`));
  }
}

function download(name: string, text: string): void {
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function results(out: HTMLElement, r: api.SqlResult, elapsed: number): void {
  const timeCol = r.columns.findIndex((c) => /timestamp|date/i.test(c.type));
  const numeric = r.columns
    .map((c, i) => ({ c, i }))
    .filter(({ c, i }) => i !== timeCol && /int|float|decimal|double/i.test(c.type));
  const summary = h(
    "div.row.muted",
    {},
    `${r.row_count} row${r.row_count === 1 ? "" : "s"} in ${elapsed} ms`,
    r.truncated ? h("span.bad", {}, " (cut at the row limit)") : null,
  );
  let chart: HTMLElement | null = null;
  if (timeCol >= 0 && numeric.length > 0 && r.rows.length > 1) {
    chart = h("div.card", { "data-testid": "sql-chart" });
    const order = r.rows
      .map((row) => ({ t: Date.parse(String(row[timeCol])) / 1000, row }))
      .filter((x) => Number.isFinite(x.t))
      .sort((a, b) => a.t - b.t);
    queueMicrotask(() =>
      lineChart(
        chart!,
        order.map((x) => x.t),
        numeric.slice(0, 6).map(({ c, i }) => ({
          label: c.name,
          values: order.map((x) => (x.row[i] === null ? null : Number(x.row[i]))),
        })),
      ),
    );
  }
  const table = h(
    "table.data",
    { "data-testid": "sql-results" },
    h("thead", {}, h("tr", {}, r.columns.map((c) => h("th", { title: c.type }, c.name)))),
    h(
      "tbody",
      {},
      r.rows.map((row) =>
        h(
          "tr",
          {},
          row.map((v, i) =>
            h(
              "td",
              { class: /int|float|decimal|double/i.test(r.columns[i].type) ? "num" : "" },
              r.columns[i].name === "trace_id" && typeof v === "string" && /^[0-9a-f]{32}$/.test(v)
                ? h("a", { href: `/traces/${v}`, onclick: onNavigate(`/traces/${v}`) }, v)
                : cell(v),
            ),
          ),
        ),
      ),
    ),
  );
  clear(out, summary, chart, r.rows.length ? h("div.card.scroll", {}, table) : note("empty", "The query returned no rows."));
}

export async function sqlPage(root: HTMLElement): Promise<void> {
  const editor = h("textarea.sql", { spellcheck: false, "aria-label": "SQL query" }) as HTMLTextAreaElement;
  editor.value = param("q", EXAMPLE);
  const out = h("div", {});
  const list = h("div.schema", {}, note("loading", "Loading tables…"));
  const insert = (text: string) => {
    const { selectionStart: s, selectionEnd: e, value } = editor;
    editor.value = value.slice(0, s) + text + value.slice(e);
    editor.focus();
    editor.selectionStart = editor.selectionEnd = s + text.length;
  };
  const run = async () => {
    const q = editor.value.trim();
    if (!q) return;
    if (q !== param("q")) setParams({ q }, true, false);
    clear(out, note("loading", "Running…"));
    const started = performance.now();
    try {
      const r = await api.sql(q);
      results(out, r, Math.round(performance.now() - started));
    } catch (e) {
      clear(out, note("error", (e as Error).message));
    }
  };
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void run();
    }
  });
  const csv = async () => {
    try {
      download("sightline-query.csv", await api.sqlCsv(editor.value));
    } catch (e) {
      clear(out, note("error", (e as Error).message));
    }
  };
  clear(
    root,
    h("h1", {}, "SQL"),
    h(
      "div.sidebar-layout",
      {},
      h("div.card", {}, h("h2", { style: "margin-top:0" }, "Tables"), list),
      h(
        "div",
        {},
        h("div.card", {}, editor, h("div.row", { style: "margin-top:8px" },
          h("button.primary", { onclick: run }, "Run (Ctrl+Enter)"),
          h("button", { onclick: csv }, "Export CSV"),
          h("span.muted", {}, "Read-only: SELECT, SHOW, DESCRIBE, EXPLAIN. Tables and columns: docs/sql.md."))),
        out,
      ),
    ),
  );
  void schema(list, insert);
  if (param("q")) await run();
}
