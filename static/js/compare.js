// Compare (/compare?trials=1,2,3): curves overlaid and the hyperparameters that differ. Live:
// while a compared trial is queued, running or paused the page asks for it every 2 s, and for
// its curves only past the last step it holds (since_step), so a running trial's curves grow
// without a reload; once every trial has ended it stops asking. A study's objective of another
// name (a user's own loop reports val_loss, bleu...) gets a chart of its own, first.

import { FINISHED, el, flash, fmt, get, num, stateBadge } from "./api.js";
import { LineChart } from "./charts.js";
import { formatHparam, trialName } from "./format.js";
import { isExternal } from "./own_loop.js";

const root = document.getElementById("compare-root");
const IDS = [...new Set(root.dataset.trialIds.split(",").filter(Boolean).map(Number))];
const METRICS = {
  dev_accuracy: "dev accuracy (fraction correct, 0-1)",
  dev_loss: "dev cross-entropy loss (nats)",
  train_accuracy: "train accuracy (fraction correct, 0-1)",
  train_loss: "train cross-entropy loss (nats)",
};
const POLL_MS = 2000;

const state = {
  trials: [], // in the order the URL gives them
  studies: new Map(), // study id -> study: its name, space and objective
  objectives: [], // the studies' objective metrics that METRICS does not chart
  curves: new Map(), // trial id -> metric -> Map(step -> value)
  last: new Map(), // trial id -> the last step fetched (any metric)
};
let charts = null;

// "Trial N", with the study's name when the compared trials come from several studies.
function label(t) {
  const several = new Set(state.trials.map((x) => x.study_id)).size > 1;
  const study = state.studies.get(t.study_id);
  return trialName(t, several ? (study ? study.name : `study #${t.study_id}`) : null);
}

function merge(t, curves) {
  if (!state.curves.has(t.id)) state.curves.set(t.id, new Map());
  const mine = state.curves.get(t.id);
  for (const [name, points] of Object.entries(curves)) {
    if (!mine.has(name)) mine.set(name, new Map());
    const m = mine.get(name);
    for (const [step, value] of points) {
      m.set(step, num(value));
      state.last.set(t.id, Math.max(state.last.get(t.id) ?? 0, step));
    }
  }
}

function points(t, name) {
  const m = state.curves.get(t.id)?.get(name);
  return m ? [...m.entries()].sort((a, b) => a[0] - b[0]) : [];
}

// Every metric charted: the studies' objectives of other names, then METRICS.
function metricNames() {
  return [...state.objectives, ...Object.keys(METRICS)];
}

function objectiveChart(metric) {
  const node = el("div", { class: "chart", id: `cmp-${metric}`, "data-metric": metric,
    role: "img", "aria-label": `${metric} of the compared trials` });
  document.getElementById("cmp-objectives").append(node);
  return new LineChart(node, { title: `${metric} (objective)`, yName: metric });
}

function drawCharts() {
  if (charts === null) {
    charts = Object.fromEntries([
      ...state.objectives.map((metric) => [metric, objectiveChart(metric)]),
      ...Object.entries(METRICS).map(([metric, yName]) => [metric,
        new LineChart(document.getElementById(`cmp-${metric}`), { title: metric, yName })]),
    ]);
  }
  // Trials of users' own loops only: a chart of a metric none of them reports is hidden.
  const own = [...state.studies.values()].every(isExternal);
  for (const [metric, chart] of Object.entries(charts)) {
    chart.setSeries(state.trials.map((t) => ({ name: label(t), points: points(t, metric) })));
    const hide = own && state.trials.every((t) => !points(t, metric).length);
    if (chart.node.hidden && !hide) { chart.node.hidden = false; chart.chart.resize(); }
    chart.node.hidden = hide;
  }
}

function drawTable() {
  const trials = state.trials;
  const all = document.getElementById("show-all").checked;
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.hparams)))];
  const differs = (n) => new Set(trials.map((t) => JSON.stringify(t.hparams[n]))).size > 1;
  const shown = names.filter((n) => all || differs(n));
  const value = (t, n) => formatHparam(n, t.hparams[n], state.studies.get(t.study_id)?.space);
  const table = document.getElementById("cmp-table");
  table.tHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "hyperparameter"),
    trials.map((t) => el("th", { scope: "col", "data-trial-id": String(t.id) },
      el("a", { href: `/trials/${t.id}` }, label(t)), " ", stateBadge(t.state)))));
  const rows = [
    el("tr", {}, el("td", {}, bestLabel()), trials.map((t) => el("td", {}, fmt(t.best_value)))),
    ...shown.map((n) => el("tr", { class: differs(n) ? "differs" : null, "data-hparam": n },
      el("td", {}, n), trials.map((t) => el("td", {}, value(t, n))))),
  ];
  if (!shown.length) {
    rows.push(el("tr", {}, el("td", { colspan: String(trials.length + 1), class: "muted" },
      "These trials share every hyperparameter.")));
  }
  table.tBodies[0].replaceChildren(...rows);
}

// "best dev_accuracy", or "best value (its study's objective)" across studies of several.
function bestLabel() {
  const metrics = new Set([...state.studies.values()].map((s) => s.objective.metric));
  return metrics.size === 1 ? `best ${[...metrics][0]}` : "best value (its study's objective)";
}

function drawStatus() {
  const open = state.trials.filter((t) => !FINISHED.has(t.state));
  const running = open.filter((t) => t.state === "running").length;
  document.getElementById("compare-status").textContent = `${state.trials.length} trials` +
    (open.length ? ` · live: ${running} running, updated every ${POLL_MS / 1000} s.` : ".");
}

// One trial's state, then its points past the last step held: read in that order, a trial
// seen ended has every point it will ever have.
async function update(t) {
  const fresh = await get(`/api/trials/${t.id}`);
  const since = state.last.get(t.id);
  const query = since === undefined ? "max_points=500" : `since_step=${since}`;
  const names = metricNames().map(encodeURIComponent).join(",");
  merge(fresh, await get(`/api/trials/${t.id}/metrics?names=${names}&${query}`));
  return fresh;
}

async function poll() {
  const open = state.trials.filter((t) => !FINISHED.has(t.state));
  if (!open.length || document.hidden) return;
  const fresh = new Map((await Promise.all(open.map(update))).map((t) => [t.id, t]));
  state.trials = state.trials.map((t) => fresh.get(t.id) || t);
  drawCharts();
  drawTable();
  drawStatus();
}

async function main() {
  const status = document.getElementById("compare-status");
  if (IDS.length === 0) {
    status.textContent = "No trials given: pick some on a study page, or open " +
      "/compare?trials=1,2,3.";
    return;
  }
  try {
    state.trials = await Promise.all(IDS.map((id) => get(`/api/trials/${id}`)));
    const studyIds = [...new Set(state.trials.map((t) => t.study_id))];
    const studies = await Promise.all(studyIds.map((id) => get(`/api/studies/${id}`)));
    for (const s of studies) state.studies.set(s.id, s);
    state.objectives = [...new Set(studies.map((s) => s.objective.metric))]
      .filter((m) => !(m in METRICS));
    state.trials = await Promise.all(state.trials.map(update));
  } catch (err) {
    status.textContent = "";
    flash(`Could not load the trials: ${err.message}`);
    return;
  }
  drawCharts();
  drawTable();
  drawStatus();
  let busy = false;
  setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await poll();
      flash("");
    } catch (err) {
      flash(`Could not update the trials: ${err.message}`);
    } finally {
      busy = false;
    }
  }, POLL_MS);
}

document.getElementById("show-all").addEventListener("change", drawTable);
main();
