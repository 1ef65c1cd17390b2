// Time-series charts with uPlot.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: (number | null)[];
  color?: string;
  dash?: number[];
}

/// Charts of the current render; destroyed (with their observers) before the next one.
const live = new Set<() => void>();

export function destroyCharts(): void {
  for (const d of live) d();
  live.clear();
}

/// Registers a plot for [`destroyCharts`].
export function track(plot: uPlot, ro?: ResizeObserver): void {
  live.add(() => {
    ro?.disconnect();
    plot.destroy();
  });
}

const PALETTE = ["#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"];

/// Shades `bands` (seconds) behind the lines.
function shade(u: uPlot, bands: [number, number][]): void {
  const ctx = u.ctx;
  const { top, height } = u.bbox;
  ctx.save();
  ctx.fillStyle = "rgba(239, 68, 68, 0.14)";
  for (const [from, to] of bands) {
    const x0 = Math.max(u.valToPos(from, "x", true), u.bbox.left);
    const x1 = Math.min(u.valToPos(to, "x", true), u.bbox.left + u.bbox.width);
    if (x1 > x0) ctx.fillRect(x0, top, Math.max(x1 - x0, 2), height);
  }
  ctx.restore();
}

/// A line chart of `series` over `times` (seconds since the epoch) in `el`, resized with it.
export function lineChart(
  el: HTMLElement,
  times: number[],
  series: Series[],
  opts: {
    height?: number;
    yLabel?: string;
    yRange?: [number | null, number | null];
    spark?: boolean;
    /// Periods to shade (seconds since the epoch), e.g. while an alert fired.
    bands?: [number, number][];
  } = {},
): uPlot {
  const min = opts.spark ? 120 : 320;
  // The content width (clientWidth includes the padding): a plot as wide as the padding box
  // would widen a grid cell, which would widen the plot again.
  const inner = () => {
    const cs = getComputedStyle(el);
    return Math.floor(el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight));
  };
  const width = Math.max(inner(), min);
  const dark = document.documentElement.dataset.theme === "dark";
  const axis = { stroke: dark ? "#cbd5e1" : "#334155", grid: { stroke: dark ? "#334155" : "#e2e8f0" } };
  const plot = new uPlot(
    {
      width,
      height: opts.height ?? 220,
      scales: {
        x: { time: true },
        y: opts.yRange ? { range: (_u, min, max) => [opts.yRange![0] ?? min, opts.yRange![1] ?? max] } : {},
      },
      axes: opts.spark ? [{ show: false }, { show: false }] : [axis, { ...axis, label: opts.yLabel, size: 60 }],
      legend: { show: !opts.spark },
      hooks: opts.bands?.length ? { drawClear: [(u: uPlot) => shade(u, opts.bands!)] } : {},
      cursor: opts.spark ? { show: false } : {},
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color ?? PALETTE[i % PALETTE.length],
          width: 2,
          dash: s.dash,
          spanGaps: false,
        })),
      ],
    },
    [times, ...series.map((s) => s.values)] as uPlot.AlignedData,
    el,
  );
  let last = width;
  const ro = new ResizeObserver(() => {
    const w = Math.max(inner(), min);
    if (Math.abs(w - last) < 2) return;
    last = w;
    plot.setSize({ width: w, height: opts.height ?? 220 });
  });
  ro.observe(el);
  track(plot, ro);
  return plot;
}
