// Thin helpers over the vendored Apache ECharts (global `echarts`, loaded by base.html).

import { fmt } from "./api.js";

const PALETTE = ["#1f6fb2", "#d9622b", "#2e8b57", "#8e44ad", "#b8860b", "#c0392b", "#16a085",
  "#7f8c8d", "#2c3e50", "#e67e22"];

export function palette(i) {
  return PALETTE[i % PALETTE.length];
}

const charts = new Set();
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

export function makeChart(node) {
  const existing = echarts.getInstanceByDom(node);
  if (existing) return existing;
  const chart = echarts.init(node, null, { renderer: "canvas" });
  charts.add(chart);
  return chart;
}

// Exponential moving average like TensorBoard's smoothing (0 = raw, 0.99 = very smooth),
// debiased so the start of the curve is not pulled towards 0.
export function smooth(points, weight) {
  if (!weight) return points;
  let avg = 0;
  let n = 0;
  return points.map(([x, y]) => {
    if (!Number.isFinite(y)) return [x, y];
    n += 1;
    avg = avg * weight + (1 - weight) * y;
    return [x, avg / (1 - weight ** n)];
  });
}

// A series with this few finite points draws a symbol on each: a line needs two points, so a
// lone value (a trial pruned after its first epoch) would otherwise not show at all.
export const FEW_POINTS = 5;

// A line chart of [[step, value], ...] series with vertical markers at given steps.
export class LineChart {
  // format: how the y values read on the axis and in the tooltip (a metric's by default).
  constructor(node, { title, yName, yLog = false, xName = "step (optimizer updates)",
    format = formatNumber }) {
    this.node = node;
    this.chart = makeChart(node);
    this.markers = [];
    this.series = [];
    this.chart.setOption({
      animation: false,
      title: { text: title, left: 8, top: 4, textStyle: { fontSize: 14 } },
      grid: { left: 70, right: 24, top: 48, bottom: 52 },
      legend: { top: 4, right: 8, type: "scroll", width: "60%" },
      tooltip: { trigger: "axis", valueFormatter: (v) => format(v) },
      // Markers ahead of the last point (an adjustment just applied) stay in view.
      xAxis: { type: "value", name: xName, nameLocation: "middle", nameGap: 30,
        min: "dataMin", max: (v) => this.xMax(v) },
      yAxis: { type: yLog ? "log" : "value", name: yName, nameLocation: "middle", nameGap: 52,
        scale: true, axisLabel: { formatter: (v) => format(v) } },
      series: [],
    });
  }

  xMax(extent) {
    const max = Math.max(extent.max, ...this.markers.map((m) => m.step));
    return Number.isFinite(max) ? max : null;
  }

  // series: [{name, points, color?, dashed?}]
  setSeries(series) {
    this.series = series;
    this.render();
  }

  // markers: [{step, label, detail}]
  setMarkers(markers) {
    this.markers = markers;
    this.node.dataset.markers = markers.map((m) => m.step).join(",");
    this.render();
  }

  render() {
    const series = this.series.map((s, i) => ({
      name: s.name,
      type: "line",
      showSymbol: s.points.filter(([, y]) => Number.isFinite(y)).length <= FEW_POINTS,
      symbolSize: 7,
      connectNulls: false,
      data: s.points.map(([x, y]) => [x, Number.isFinite(y) ? y : null]),
      lineStyle: { width: 1.6, type: s.dashed ? "dashed" : "solid" },
      itemStyle: { color: s.color || palette(i) },
      markLine: i === 0 ? this.markLine() : undefined,
    }));
    this.chart.setOption({ series }, { replaceMerge: ["series"] });
  }

  markLine() {
    return {
      symbol: "none",
      silent: false,
      animation: false,
      lineStyle: { color: "#555", type: "dashed", width: 1.2 },
      label: { formatter: (p) => p.data.short || "", position: "insideEndTop", fontSize: 10 },
      tooltip: { trigger: "item", formatter: (p) => p.data.detail || p.name },
      data: this.markers.map((m) => ({ xAxis: m.step, name: m.detail, short: m.label,
        detail: m.detail })),
    };
  }
}

// A metric's value on an axis or in a tooltip, as the tables write it (api.js fmt).
export function formatNumber(v) {
  if (v === null || v === undefined || typeof v !== "number" || !Number.isFinite(v)) return "–";
  return fmt(v);
}
