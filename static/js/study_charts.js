// Study charts: objective by epoch; for caviar, parallel coordinates with brushing,
// per-hyperparameter scatter, importance bars.

import { FINISHED, flash, get, num } from "./api.js";
import { LineChart, formatNumber, makeChart, palette } from "./charts.js";
import { distWords, formatHparam, formatOnScale, trialName } from "./format.js";

// The trials' objective on one epoch axis. By step they would not compare: a batch of 32 takes
// 8 times the steps per epoch of a batch of 256. Epochs are what the study's budget, epochs and
// early stopping count in. One request fetches every trial it needs.
export class EpochCurves {
  constructor(node, studyId) {
    this.line = new LineChart(node, { title: "Objective by epoch", yName: "objective",
      xName: "epoch (passes over the training data)" });
    this.chart = this.line.chart;
    this.chart.setOption({ xAxis: { minInterval: 1 } });
    this.url = `/api/studies/${studyId}/curves`;
    this.loaded = new Map(); // trial id -> {state, points: [[epoch, value]]} as last fetched
    this.trials = [];
    this.seq = 0; // the latest request: an older answer arriving after it is dropped
    this.timer = null;
  }

  // Draw `trials` ({id, number, state}), fetching those not loaded yet or loaded while open.
  async load(trials) {
    this.trials = trials;
    const stale = trials.filter((t) => {
      const have = this.loaded.get(t.id);
      return !have || !FINISHED.has(have.state);
    });
    if (stale.length) {
      const seq = ++this.seq;
      const ids = stale.map((t) => t.id).join(",");
      const res = await get(`${this.url}?trials=${ids}&max_points=300`);
      if (seq !== this.seq) return;
      const states = new Map(stale.map((t) => [t.id, t.state]));
      for (const c of res.data) {
        this.loaded.set(c.trial_id, { state: states.get(c.trial_id),
          points: c.points.map(([x, v]) => [x, num(v)]) });
      }
    }
    this.line.setSeries(this.trials.map((t) => ({ name: trialName(t),
      points: (this.loaded.get(t.id) || { points: [] }).points })));
  }

  // A live `metrics` frame with the objective of a drawn trial: fetch again within a second.
  onMetrics(frame, metric) {
    if (!frame.points[metric] || !this.trials.some((t) => t.id === frame.trial_id)) return;
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.load(this.trials).catch((err) => flash(`Curves: ${err.message}`));
    }, 1000);
  }
}

// How a ranged hyperparameter is drawn: the value on its sampling scale, the axis type, and
// how a tick reads (1 - beta's ticks are values of 1 - beta: log-scale, in 2.11e-4's format).
export function scaleOf(name, dist) {
  const kind = dist && dist.dist;
  const words = distWords(kind);
  if (kind === "one_minus_log_uniform") {
    return { label: `1 − ${name} (${words})`, type: "log", to: (v) => 1 - v, from: (x) => 1 - x,
      tick: (x) => formatOnScale("log_uniform", x) };
  }
  if (kind === "log_uniform") {
    return { label: `${name} (${words})`, type: "log", to: (v) => v, from: (x) => x,
      tick: (x) => formatOnScale(kind, x) };
  }
  if (kind === "log_int") {
    return { label: `${name} (${words})`, type: "log", logBase: 2, to: (v) => v,
      from: (x) => x, tick: (x) => formatOnScale(kind, x) };
  }
  if (kind === "choice") {
    return { label: name, type: "category", data: (dist.values || []).map(String),
      to: (v) => String(v), from: (x) => x };
  }
  return { label: `${name} (${words})`, type: "value", to: (v) => v, from: (x) => x,
    tick: (x) => formatOnScale(kind, x) };
}

// ECharts reads an explicit `logBase: undefined` as a base, so only set what is defined.
function axisExtras(s) {
  const out = {};
  if (s.logBase) out.logBase = s.logBase;
  if (s.data) out.data = s.data;
  if (s.type !== "category") out.scale = true;
  return out;
}

export function rangedNames(space) {
  return Object.entries(space || {}).filter(([, v]) => v && typeof v === "object")
    .map(([k]) => k);
}

export class Parallel {
  constructor(node, onBrush) {
    this.chart = makeChart(node);
    this.names = [];
    this.chart.on("axisareaselected", () => onBrush(this.brushed()));
  }

  // studySpace: the study's own space, which every page formats its trials' values by.
  draw(space, objective, trials, roundOf, studySpace = space) {
    this.names = rangedNames(space);
    this.space = space;
    const axes = this.names.map((name, dim) => {
      const s = scaleOf(name, space[name]);
      return { dim, name: s.label, type: s.type, ...axisExtras(s), nameLocation: "end",
        axisLabel: { formatter: s.tick } };
    });
    axes.push({ dim: this.names.length, name: `${objective} (objective)`, type: "value",
      scale: true, axisLabel: { formatter: formatNumber } });
    const rounds = [...new Set(trials.map(roundOf))].sort((a, b) => a - b);
    const series = rounds.map((r, i) => ({
      name: `round ${r}`, type: "parallel", smooth: false, lineStyle: { width: 1.4, opacity: 0.6,
        color: palette(i) }, inactiveOpacity: 0.05, activeOpacity: 1,
      data: trials.filter((t) => roundOf(t) === r && t.best_value !== null).map((t) => ({
        name: trialName(t),
        value: [...this.names.map((n) => scaleOf(n, space[n]).to(t.hparams[n])), t.best_value],
        hparams: t.hparams,
      })),
    }));
    const tooltip = (p) => [p.name, ...this.names.map((n) =>
      `${n} = ${formatHparam(n, p.data.hparams[n], studySpace)}`),
    `${objective} = ${formatNumber(p.value.at(-1))}`].map(escapeHtml).join("<br>");
    this.chart.setOption({
      animation: false,
      legend: { top: 0 },
      parallel: { left: 90, right: 140, top: 60, bottom: 30 },
      parallelAxis: axes,
      tooltip: { trigger: "item", formatter: tooltip },
      series,
    }, { replaceMerge: ["series", "parallelAxis"] });
  }

  // name -> [low, high] in the hyperparameter's own units, for every brushed axis.
  brushed() {
    const out = {};
    this.names.forEach((name, i) => {
      const axis = this.chart.getModel().getComponent("parallelAxis", i);
      const intervals = (axis && axis.activeIntervals) || [];
      if (intervals.length === 0 || this.space[name].dist === "choice") return;
      const s = scaleOf(name, this.space[name]);
      const lows = intervals.map((iv) => Math.min(s.from(iv[0]), s.from(iv[1])));
      const highs = intervals.map((iv) => Math.max(s.from(iv[0]), s.from(iv[1])));
      out[name] = [Math.min(...lows), Math.max(...highs)];
    });
    return out;
  }
}

export function drawScatter(node, name, dist, objective, trials, roundOf, studySpace) {
  const chart = makeChart(node);
  const s = scaleOf(name, dist);
  const rounds = [...new Set(trials.map(roundOf))].sort((a, b) => a - b);
  chart.setOption({
    animation: false,
    title: { text: name, left: 8, top: 2, textStyle: { fontSize: 13 } },
    grid: { left: 64, right: 30, top: 40, bottom: 48 },
    legend: { top: 2, right: 8 },
    tooltip: { trigger: "item", formatter: (p) => [p.data[2],
      `${name} = ${formatHparam(name, s.from(p.data[0]), studySpace || { [name]: dist })}`,
      `${objective} = ${formatNumber(p.data[1])}`].map(escapeHtml).join("<br>") },
    xAxis: { type: s.type, ...axisExtras(s), name: s.label, nameLocation: "middle", nameGap: 28,
      axisLabel: { formatter: s.tick } },
    yAxis: { type: "value", name: objective, nameLocation: "middle", nameGap: 46, scale: true,
      axisLabel: { formatter: formatNumber } },
    series: rounds.map((r, i) => ({
      name: `round ${r}`, type: "scatter", symbolSize: 7, itemStyle: { color: palette(i) },
      data: trials.filter((t) => roundOf(t) === r && t.best_value !== null)
        .map((t) => [s.to(t.hparams[name]), t.best_value, trialName(t)]),
    })),
  });
  return chart;
}

// Tooltips are HTML: a study's or a choice's text is shown as text.
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// The importance bars, each with its bootstrap interval as a whisker (10th-90th percentile of
// its score over forests refitted on resampled trials), and next to the chart what backs them:
// the epoch the objective was read at, the trials, and, in plain sight, the warning when too
// few trials back the ranking. `answer`: GET /api/studies/{id}/importance as fetched; a caller
// that passes only the scores gets it fetched here (the study's id from [data-study-id]).
export function drawImportance(node, scores, answer = null) {
  const chart = makeChart(node);
  drawBars(chart, scores, (answer && answer.intervals) || {});
  if (answer) {
    showTrust(node, answer);
  } else {
    const root = node.closest("[data-study-id]");
    if (root) {
      get(`/api/studies/${root.dataset.studyId}/importance`).then((res) => {
        drawBars(chart, res.scores || scores, res.intervals || {});
        showTrust(node, res);
      }).catch(() => {});
    }
  }
  return chart;
}

function drawBars(chart, scores, intervals) {
  const entries = Object.entries(scores).sort((a, b) => a[1] - b[1]);
  const names = entries.map((e) => e[0]);
  // [low, high, category index, score]: a whisker from low to high, the score after it.
  const whiskers = entries.map(([name, score], i) => {
    const iv = intervals[name];
    return iv ? [iv[0], iv[1], i, score] : [score, score, i, score];
  });
  const tooltip = (items) => {
    const i = items[0].dataIndex;
    const [name, score] = entries[i];
    const iv = intervals[name];
    return escapeHtml(`${name}: ${formatNumber(score)}` +
      (iv ? ` (likely between ${formatNumber(iv[0])} and ${formatNumber(iv[1])})` : ""));
  };
  chart.setOption({
    animation: false,
    grid: { left: 130, right: 56, top: 16, bottom: 44 },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: tooltip },
    xAxis: { type: "value", name: "share of importance (0-1); whiskers: 10th-90th percentile",
      nameLocation: "middle", nameGap: 28, min: 0, max: 1 },
    yAxis: { type: "category", data: names },
    series: [
      { name: "importance", type: "bar", data: entries.map((e) => e[1]),
        itemStyle: { color: palette(0), opacity: 0.75 } },
      { name: "interval", type: "custom", data: whiskers, encode: { x: [0, 1], y: 2 },
        renderItem: whisker, z: 3, silent: true },
    ],
  }, { replaceMerge: ["series"] });
}

// One interval: a line from low to high across the bar, a cap at each end, the score after it.
function whisker(params, api) {
  const row = api.value(2);
  const low = api.coord([api.value(0), row]);
  const high = api.coord([api.value(1), row]);
  const cap = api.size([0, 1])[1] * 0.22;
  const style = { stroke: "#1d2329", lineWidth: 1.6 };
  const line = (x1, y1, x2, y2) => ({ type: "line", shape: { x1, y1, x2, y2 }, style });
  return { type: "group", children: [
    line(low[0], low[1], high[0], high[1]),
    line(low[0], low[1] - cap, low[0], low[1] + cap),
    line(high[0], high[1] - cap, high[0], high[1] + cap),
    { type: "text", x: high[0] + 6, y: high[1], style: { text: formatNumber(api.value(3)),
      fill: "#1d2329", font: "12px sans-serif", verticalAlign: "middle" } },
  ] };
}

// The line under the chart and the warning above it, made once and kept in step.
function trustNode(chartNode, id, where, attrs) {
  let n = document.getElementById(id);
  if (!n) {
    n = document.createElement("p");
    n.id = id;
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    chartNode.insertAdjacentElement(where, n);
  }
  return n;
}

function showTrust(chartNode, answer) {
  const warning = trustNode(chartNode, "importance-warning", "beforebegin", {
    class: "flash importance-warning", role: "note",
    style: "background:#fff4d6;color:#7a5200;border:1px solid #e3c46b;font-weight:600" });
  warning.textContent = answer.warning ? `Caution: ${answer.warning}.` : "";
  warning.hidden = !answer.warning;
  const basis = trustNode(chartNode, "importance-basis", "afterend", { class: "chart-caption" });
  const at = answer.resource === null || answer.resource === undefined
    ? "the final objective of completed trials"
    : `the objective at epoch ${answer.resource}, the furthest epoch enough trials reached ` +
      "(trials stopped early included)";
  const whiskers = Object.keys(answer.intervals || {}).length
    ? " Whiskers: where each score lies in 8 of 10 refits on resampled trials." : "";
  basis.textContent = answer.n_trials === undefined ? ""
    : `Fitted on ${answer.n_trials} trials, by ${at}.${whiskers}`;
}
