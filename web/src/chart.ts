// One uPlot line chart per metric name. Points are appended to the series' columns as they
// arrive and drawn at most once per animation frame, so 100k streamed points stay smooth
// (uPlot decimates a line to the pixels it covers).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";
import { metric } from "./format";
import type { Series } from "./series";

const HEIGHT = 180;

function cssVar(name: string, fallback: string): string {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

export class MetricChart {
  readonly element: HTMLElement;
  private readonly plot: uPlot;
  private readonly latest: HTMLElement;
  private readonly resize: ResizeObserver;
  private frame = 0;

  constructor(
    readonly name: string,
    private readonly series: Series,
  ) {
    this.latest = h("span", { class: "chart-latest" });
    const body = h("div", { class: "chart-body" });
    this.element = h(
      "figure",
      { class: "chart card", "data-metric": name },
      h("figcaption", null, h("span", { class: "chart-name" }, name), this.latest),
      body,
    );
    const axis = {
      stroke: cssVar("--muted", "#6b7280"),
      grid: { stroke: cssVar("--grid", "#e5e7eb"), width: 1 },
      ticks: { stroke: cssVar("--grid", "#e5e7eb"), width: 1 },
    };
    this.plot = new uPlot(
      {
        width: 400,
        height: HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: false } },
        axes: [axis, { ...axis, size: 56, values: (_u, values) => values.map(metric) }],
        series: [
          { label: "step" },
          { label: name, stroke: cssVar("--accent", "#4f46e5"), width: 2, points: { show: false } },
        ],
      },
      [series.x, series.y],
      body,
    );
    this.resize = new ResizeObserver(() => {
      const width = Math.max(200, Math.floor(body.clientWidth));
      this.plot.setSize({ width, height: HEIGHT });
    });
    this.resize.observe(body);
    this.refreshLatest();
  }

  /** New points were appended to the series: redraw on the next frame (once per frame). */
  changed(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.plot.setData([this.series.x, this.series.y]);
      this.refreshLatest();
    });
  }

  private refreshLatest(): void {
    const count = this.series.y.length;
    const last = this.series.y[count - 1];
    this.latest.textContent =
      last === undefined ? "no points yet" : `${metric(last)} · ${count.toLocaleString()} points`;
    this.element.dataset.points = String(count);
  }

  destroy(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    this.plot.destroy();
  }
}
