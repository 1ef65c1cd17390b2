// The service map, drawn: services as boxes in columns (each a step further down the calls
// from the services nothing calls), the calls between them as arrows labelled with their rate
// and error rate. Failing calls are red and thicker.

import type { Edge } from "../api";
import { num, pct } from "../format";

const NS = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>, ...children: (Node | string)[]): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return el;
}

/// Each service's column: 0 for services nothing calls (or that only call), else one more
/// than its furthest caller's. A cycle stops growing after as many rounds as there are nodes.
export function columns(nodes: string[], edges: Edge[]): Map<string, number> {
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const e of edges) {
      if (e.caller === e.callee) continue;
      const d = (depth.get(e.caller) ?? 0) + 1;
      if (d > (depth.get(e.callee) ?? 0) && d < nodes.length) {
        depth.set(e.callee, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

const BOX_W = 150;
const BOX_H = 40;
const COL_GAP = 190;
const ROW_GAP = 56;
const PAD = 16;
const ARC = 46;

/// Orders each column by where its callers sit in the columns before it (their mean row),
/// which keeps arrows from crossing where it can; ties by name.
function orderColumns(byColumn: Map<number, string[]>, edges: Edge[]): void {
  const row = new Map<string, number>();
  for (const d of [...byColumn.keys()].sort((a, b) => a - b)) {
    const col = byColumn.get(d)!;
    const weight = (n: string) => {
      const callers = edges.filter((e) => e.callee === n && row.has(e.caller)).map((e) => row.get(e.caller)!);
      return callers.length ? callers.reduce((a, b) => a + b, 0) / callers.length : 0;
    };
    col.sort((a, b) => weight(a) - weight(b) || a.localeCompare(b));
    col.forEach((n, i) => row.set(n, (i + 0.5) / col.length));
  }
}

export function serviceGraph(services: string[], edges: Edge[], failing: (e: Edge) => boolean): SVGElement {
  const nodes = [...new Set([...services, ...edges.flatMap((e) => [e.caller, e.callee])])].sort();
  const depth = columns(nodes, edges);
  const byColumn = new Map<number, string[]>();
  for (const n of nodes) {
    const d = depth.get(n) ?? 0;
    byColumn.set(d, [...(byColumn.get(d) ?? []), n]);
  }
  orderColumns(byColumn, edges);
  const tallest = Math.max(1, ...[...byColumn.values()].map((c) => c.length));
  // Calls that skip a column arc over or under the boxes between: room for them.
  const skips = edges.some((e) => Math.abs((depth.get(e.callee) ?? 0) - (depth.get(e.caller) ?? 0)) > 1);
  const arc = skips ? ARC : 0;
  const inner = tallest * BOX_H + (tallest - 1) * ROW_GAP;
  const height = PAD * 2 + inner + arc * 2;
  const width = PAD * 2 + (Math.max(0, ...byColumn.keys()) + 1) * (BOX_W + COL_GAP) - COL_GAP;
  const at = new Map<string, { x: number; y: number }>();
  for (const [d, col] of byColumn) {
    // Each column centred vertically.
    const colHeight = col.length * BOX_H + (col.length - 1) * ROW_GAP;
    col.forEach((n, i) =>
      at.set(n, { x: PAD + d * (BOX_W + COL_GAP), y: (height - colHeight) / 2 + i * (BOX_H + ROW_GAP) }),
    );
  }
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    class: "service-graph",
    role: "img",
    "aria-label": "Calls between services",
    "data-testid": "service-graph",
  });
  root.appendChild(
    svg(
      "defs",
      {},
      ...["ok", "failing"].map((k) =>
        svg("marker", { id: `arrow-${k}`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: `arrowhead ${k}` })),
      ),
    ),
  );
  // Failing edges drawn last, over the others.
  const ordered = [...edges].sort((a, b) => Number(failing(a)) - Number(failing(b)));
  for (const e of ordered) {
    const a = at.get(e.caller);
    const b = at.get(e.callee);
    if (!a || !b) continue;
    const bad = failing(e);
    const [x1, y1] = [a.x + BOX_W, a.y + BOX_H / 2];
    const [x2, y2] = [b.x, b.y + BOX_H / 2];
    // A call to the next column bends gently; one that skips columns (or goes back, in a
    // cycle) arcs over the boxes when it runs in the upper half, under them otherwise.
    const span = (depth.get(e.callee) ?? 0) - (depth.get(e.caller) ?? 0);
    let c: [number, number, number, number];
    if (span === 1) {
      c = [(x1 + x2) / 2, y1, (x1 + x2) / 2, y2];
    } else {
      const over = (y1 + y2) / 2 < height / 2;
      const apex = over ? PAD / 2 + 10 : height - PAD / 2 - 10;
      // The curve's middle is at (y1 + y2) / 8 + 3/4 of the control points' height.
      const cy = (apex - (y1 + y2) / 8) / 0.75;
      c = [x1 + 80, cy, x2 - 80, cy];
    }
    const d = `M ${x1} ${y1} C ${c[0]} ${c[1]}, ${c[2]} ${c[3]}, ${x2} ${y2}`;
    const label = `${num(e.rate_per_s)}/s · ${pct(e.error_rate ?? 0)}`;
    const g = svg("g", { class: bad ? "edge failing" : "edge", "data-edge": `${e.caller} -> ${e.callee}` },
      svg("path", { d, "marker-end": `url(#arrow-${bad ? "failing" : "ok"})` }),
      svg("title", {}, `${e.caller} → ${e.callee}: ${label}, p95 ${num(e.p95_ms)} ms`),
    );
    // The label at the curve's middle.
    const [lx, ly] = [(x1 + 3 * c[0] + 3 * c[2] + x2) / 8, (y1 + 3 * c[1] + 3 * c[3] + y2) / 8 - 5];
    g.appendChild(svg("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, label));
    root.appendChild(g);
  }
  for (const n of nodes) {
    const p = at.get(n)!;
    const bad = edges.some((e) => e.callee === n && failing(e));
    root.appendChild(
      svg("g", { class: bad ? "node failing" : "node", "data-node": n },
        svg("rect", { x: p.x, y: p.y, width: BOX_W, height: BOX_H, rx: 6 }),
        svg("text", { x: p.x + BOX_W / 2, y: p.y + BOX_H / 2 + 5, "text-anchor": "middle" }, n),
      ),
    );
  }
  return root;
}
