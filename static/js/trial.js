// Panda cockpit (/trials/{id}): live curves over SSE, controls, adjust form, checkpoints, forks.
// Every metric the trial reports is drawn: the built-in trainer's in their charts, any other
// name (a user's own loop reports what it likes: val_loss, bleu...) in a chart of its own.

import {
  FINISHED, el, flash, fmt, get, num, patch, post, stateBadge, stream, timeText,
} from "./api.js";
import { LineChart, smooth } from "./charts.js";
import { fillInput, formatHparam, trialName, untouched } from "./format.js";
import { isExternal } from "./own_loop.js";
import { stoppedWhy, waitingNodes } from "./why.js";

const root = document.getElementById("trial-root");
const TRIAL_ID = Number(root.dataset.trialId);
const BASE = `/api/trials/${TRIAL_ID}`;

const state = {
  trial: null,
  study: null,
  defaults: {},
  series: new Map(), // name -> Map(step -> value)
  events: new Map(), // id -> event
  checkpoints: [],
  smoothing: 0,
  dirty: new Set(), // adjust inputs the user is editing
  parent: {}, // a fork's parent curves up to the fork step, drawn grey for context
  fork: null, // {step, base}: the checkpoint the fork form is open for, and its values
  stream: "", // the stream's status: "live", "reconnecting" or "closed"
  others: new Map(), // id -> the parent and forks of this trial, for their names
};

// A hyperparameter's value as every page writes it: on its scale in this trial's study.
function hp(name, v) {
  return formatHparam(name, v, state.study && state.study.space);
}

// "Trial N" of a related trial (parent, fork) in the same study; fetched once by ensureNames.
function nameOf(id) {
  const t = state.others.get(id);
  return t ? trialName(t) : "another trial";
}

async function ensureNames(ids) {
  const missing = [...new Set(ids)].filter((id) => id !== undefined && id !== null &&
    id !== TRIAL_ID && !state.others.has(id));
  const got = await Promise.all(missing.map((id) => get(`/api/trials/${id}`).catch(() => null)));
  for (const t of got) if (t) state.others.set(t.id, t);
}

function relatedIds() {
  const ids = [...state.events.values()].filter((e) => e.kind === "fork")
    .map((e) => e.payload.trial_id ?? e.payload.parent_id);
  if (state.trial && state.trial.parent_id !== null) ids.push(state.trial.parent_id);
  return ids;
}

const charts = {
  loss: new LineChart(document.getElementById("chart-loss"),
    { title: "Loss", yName: "cross-entropy loss (nats)" }),
  accuracy: new LineChart(document.getElementById("chart-accuracy"),
    { title: "Accuracy", yName: "accuracy (fraction correct, 0-1)" }),
  lr: new LineChart(document.getElementById("chart-lr"),
    { title: "Learning rate", yName: "effective learning rate (log scale)", yLog: true,
      format: (v) => hp("learning_rate", v) }),
  zmean: new LineChart(document.getElementById("chart-zmean"),
    { title: "Mean of Z", yName: "mean of z (pre-BN)" }),
  zstd: new LineChart(document.getElementById("chart-zstd"),
    { title: "Std of Z", yName: "std of z (pre-BN)" }),
};

// The built-in charts and the metrics each draws; the per-layer statistics of Z have theirs.
const BUILTIN = {
  loss: ["train_loss", "dev_loss"],
  accuracy: ["train_accuracy", "dev_accuracy"],
  lr: ["learning_rate"],
};
const CHARTED = new Set(Object.values(BUILTIN).flat());
const LAYER_STAT = /\/z_(mean|std)$/;
const extraCharts = new Map(); // metric name -> its LineChart, in the order they appeared

// -- metrics ---------------------------------------------------------------------------------

function merge(curves) {
  for (const [name, points] of Object.entries(curves)) {
    if (!state.series.has(name)) state.series.set(name, new Map());
    const m = state.series.get(name);
    for (const [step, value] of points) m.set(step, num(value));
  }
}

function points(name) {
  const m = state.series.get(name);
  if (!m) return [];
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

function lastStep() {
  let max = 0;
  for (const m of state.series.values()) for (const s of m.keys()) max = Math.max(max, s);
  return max;
}

let drawTimer = null;
function scheduleDraw() {
  if (drawTimer === null) drawTimer = setTimeout(() => { drawTimer = null; draw(); }, 200);
}

function line(name, dashed = false) {
  return { name, points: smooth(points(name), state.smoothing), dashed };
}

function layerSeries(stat) {
  const names = [...state.series.keys()].filter((n) => n.endsWith(`/z_${stat}`)).sort();
  return names.map((n) => line(n));
}

// The metrics no built-in chart draws, the study's objective first.
function extraNames() {
  const objective = state.study && state.study.objective.metric;
  return [...state.series.keys()].filter((n) => !CHARTED.has(n) && !LAYER_STAT.test(n))
    .sort((a, b) => (b === objective) - (a === objective) || a.localeCompare(b));
}

function extraChart(name) {
  if (!extraCharts.has(name)) {
    const objective = state.study && state.study.objective.metric === name;
    const node = el("div", { class: "chart", id: `chart-metric-${name}`, "data-metric": name,
      role: "img", "aria-label": `${name} by step` });
    document.getElementById("metric-charts").append(el("div", {}, node));
    extraCharts.set(name, new LineChart(node, {
      title: objective ? `${name} (the objective)` : name, yName: name }));
  }
  return extraCharts.get(name);
}

// A user's loop reports what it likes: a built-in chart none of its metrics fill is hidden
// (and sized again when a metric of it arrives), and so are the per-layer statistics.
function showBuiltinCharts() {
  const own = isExternal(state.study);
  for (const [key, names] of Object.entries(BUILTIN)) {
    const box = charts[key].node.parentElement;
    const hide = own && !names.some((n) => points(n).length);
    if (box.hidden && !hide) { box.hidden = false; charts[key].chart.resize(); }
    box.hidden = hide;
  }
  const layers = [...state.series.keys()].some((n) => LAYER_STAT.test(n));
  document.getElementById("bn-section").hidden = own && !layers;
}

function parentLines(...names) {
  const t = state.trial;
  return names.filter((n) => state.parent[n]).map((n) => ({
    name: `${n} · ${nameOf(t.parent_id)} (parent)`, color: "#9aa5b1", dashed: n.startsWith("dev"),
    points: smooth(state.parent[n], state.smoothing) }));
}

function draw() {
  if (state.study === null) return; // main() draws once the study is loaded
  charts.loss.setSeries([line("train_loss"), line("dev_loss", true),
    ...parentLines("train_loss", "dev_loss")]);
  charts.accuracy.setSeries([line("train_accuracy"), line("dev_accuracy", true),
    ...parentLines("train_accuracy", "dev_accuracy")]);
  charts.lr.setSeries([{ name: "learning_rate", points: points("learning_rate") },
    ...parentLines("learning_rate")]);
  charts.zmean.setSeries(layerSeries("mean"));
  charts.zstd.setSeries(layerSeries("std"));
  for (const name of extraNames()) extraChart(name).setSeries([line(name), ...parentLines(name)]);
  showBuiltinCharts();
  drawLatest();
}

// The latest value of every metric charted (of a user's loop: only those it reports).
function drawLatest() {
  const box = document.getElementById("latest");
  const builtin = ["train_loss", "dev_loss", "train_accuracy", "dev_accuracy", "learning_rate"]
    .filter((n) => !isExternal(state.study) || points(n).length);
  const names = [...builtin, ...extraNames()];
  if (!names.length) {
    box.replaceChildren(el("dt", {}, "metrics"), el("dd", {}, "none reported yet"));
    return;
  }
  box.replaceChildren(...names.flatMap((name) => {
    const p = points(name).at(-1);
    // The effective learning rate reads like the learning rate it comes from.
    const value = p && (name === "learning_rate" ? hp(name, p[1]) : fmt(p[1]));
    return [el("dt", {}, name),
      el("dd", { id: `latest-${name}`, "data-step": p ? String(p[0]) : "",
        "data-count": String(points(name).length) },
      p ? `${value} at step ${p[0]}` : "no value yet")];
  }));
}

// -- adjustment markers ----------------------------------------------------------------------

function applied(kind) {
  return [...state.events.values()]
    .filter((e) => e.kind === kind && e.applied_step !== null)
    .sort((a, b) => a.applied_step - b.applied_step || a.id - b.id);
}

// The value before the first adjustment: the study's fixed value or the default, when known.
function originalValue(name) {
  const t = state.trial;
  const fork = applied("fork").find((e) => e.payload.parent_id !== undefined);
  if (fork && name in (fork.payload.hparams || {})) return fork.payload.hparams[name];
  if (t.parent_id !== null || !state.study) return undefined;
  const fixed = state.study.space[name];
  if (fixed !== undefined) return typeof fixed === "object" ? undefined : fixed;
  return state.defaults[name];
}

function markers() {
  const known = {};
  const out = [];
  for (const e of applied("adjust")) {
    const changes = Object.entries(e.payload.hparams || {}).map(([name, value]) => {
      const old = e.payload.old && name in e.payload.old ? e.payload.old[name]
        : name in known ? known[name] : originalValue(name);
      known[name] = value;
      return `${name} ${old === undefined ? "?" : hp(name, old)} → ${hp(name, value)}`;
    });
    out.push({ step: e.applied_step, label: changes.join(", "),
      detail: `${changes.join(", ")} at step ${e.applied_step}` });
  }
  for (const e of applied("fork").filter((f) => f.payload.parent_id !== undefined)) {
    const parent = nameOf(e.payload.parent_id);
    out.push({ step: e.applied_step, label: `forked from ${parent}`,
      detail: `forked from ${parent} at step ${e.applied_step}` });
  }
  return out;
}

function drawMarkers() {
  const list = markers();
  for (const c of [charts.loss, charts.accuracy, charts.lr, ...extraCharts.values()]) {
    c.setMarkers(list);
  }
  document.getElementById("markers-caption").textContent = list.length
    ? "Markers (dashed vertical lines): " + list.map((m) => m.detail).join("; ")
    : "Markers appear where hyperparameters changed.";
}

// -- trial, controls, adjust form ------------------------------------------------------------

function drawTrial() {
  const t = state.trial;
  const study = state.study;
  document.getElementById("trial-title").textContent = trialName(t);
  const meta = document.getElementById("trial-meta");
  meta.replaceChildren("in study ",
    el("a", { href: `/studies/${t.study_id}` }, study ? study.name : `#${t.study_id}`),
    !study ? "" : isExternal(study) ? ` · your own training loop · ${study.mode}`
      : ` · task ${study.task} · ${study.mode}`);
  const extra = t.stop_requested ? " (stop requested: at the next safe point)"
    : t.pause_requested ? " (pause requested: at the next safe point)" : "";
  document.getElementById("state").replaceChildren(stateBadge(t.state, extra));
  root.dataset.state = t.state;
  drawLive();
  const finished = FINISHED.has(t.state);
  const pausable = (t.state === "running" || t.state === "queued") && !t.pause_requested;
  document.getElementById("pause").disabled = !pausable || t.stop_requested;
  document.getElementById("resume").disabled = t.state !== "paused";
  document.getElementById("stop").disabled = finished || t.stop_requested;
  const epochs = t.hparams.epochs;
  document.getElementById("progress-line").textContent =
    `step ${t.step} · epoch ${fmt(t.epoch, 3)} of ${epochs} · attempt ${t.attempt} · ` +
    `${t.failures} ${t.failures === 1 ? "failure" : "failures"}` +
    (t.worker ? ` · worker ${t.worker}` : "") + (t.error ? ` · error: ${t.error}` : "");
  drawWhy();
  drawAdjust();
  drawConfig();
}

// Next to its state: why the scheduler pruned or parked the trial, or what a queued one
// waits for (the running trials holding its study's slots or the workers, as links).
function drawWhy() {
  const t = state.trial;
  const box = document.getElementById("trial-why");
  const stopped = stoppedWhy(t, state.study);
  const nodes = stopped ? [stopped.text + "."] : waitingNodes(t, { study: state.study });
  box.hidden = !nodes;
  box.dataset.kind = stopped ? "stopped" : nodes ? "waiting" : "";
  box.replaceChildren(...(nodes || []));
}

// "· live" only while the trial runs: a finished or paused trial has nothing new to stream.
function drawLive() {
  const running = state.trial !== null && state.trial.state === "running";
  const s = state.stream;
  document.getElementById("live").textContent = !running || !s ? "" : `· ${s}`;
}

function drawAdjust() {
  const t = state.trial;
  const finished = FINISHED.has(t.state);
  for (const input of document.querySelectorAll("#adjust-form [name]")) {
    const name = input.name;
    const pending = t.pending_hparams[name];
    if (!state.dirty.has(name)) {
      fillInput(input, name, pending !== undefined ? pending : t.hparams[name],
        state.study && state.study.space);
    }
    input.disabled = finished;
    document.getElementById(`adj-${name}-pending`).textContent =
      pending !== undefined ? `pending: ${hp(name, pending)} (now ${hp(name, t.hparams[name])})`
        : "";
  }
  document.getElementById("apply").disabled = finished;
  document.getElementById("adjust-hint").textContent = finished
    ? `This trial is ${t.state}: fork it from a checkpoint to train on with other values.`
    : "Changes apply at the next safe point (a checkpoint is taken just before), or at resume " +
      "when paused. Architecture changes need a new trial or a fork.";
}

function drawConfig() {
  const t = state.trial;
  const box = document.getElementById("config-hparams");
  box.replaceChildren(...Object.entries(t.hparams).flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, hp(k, v))]));
  const s = state.study;
  const run = {
    trial: `${trialName(t)} (id ${t.id} in the API)`,
    study: s ? `${s.name} (#${s.id})` : t.study_id, mode: s && s.mode, task: s && s.task,
    task_options: s && JSON.stringify(s.task_options), objective: s &&
      `${s.objective.metric} (${s.objective.direction})`,
    round: t.round, attempt: t.attempt, worker: t.worker, created: timeText(t.created_at),
    started: timeText(t.started_at), ended: timeText(t.ended_at), error: t.error,
  };
  document.getElementById("config-run").replaceChildren(...Object.entries(run).flatMap(
    ([k, v]) => [el("dt", {}, k), el("dd", {}, v === null || v === undefined ? "–" : v)]));
}

// A user's own loop: each of its trial's values can be adjusted (the server checks that it
// keeps its kind). The built-in rows it does not have are hidden; its other numbers and texts
// get rows of their own, in the Adjust and the Fork form alike.
function ownAdjustRows() {
  if (!isExternal(state.study)) return;
  const hparams = state.trial.hparams;
  for (const tr of document.querySelectorAll("tr[data-adjust], tr[data-fork]")) {
    tr.hidden = !((tr.dataset.adjust ?? tr.dataset.fork) in hparams);
  }
  const builtin = new Set([...document.querySelectorAll("tr[data-adjust]")]
    .map((tr) => tr.dataset.adjust));
  const own = Object.entries(hparams).filter(([name, v]) => name !== "epochs" &&
    !builtin.has(name) && typeof v !== "boolean");
  for (const [prefix, form] of [["adj", "adjust-form"], ["fork", "fork-form"]]) {
    document.querySelector(`#${form} tbody`).append(...own.map(([name, v]) =>
      ownAdjustRow(prefix, name, typeof v === "string")));
  }
}

// One row like _adjust_fields.html's, for a value of the user's own name.
function ownAdjustRow(prefix, name, text) {
  const id = `${prefix}-${name}`;
  return el("tr", { [prefix === "adj" ? "data-adjust" : "data-fork"]: name },
    el("th", { scope: "row" }, el("label", { for: id }, el("code", {}, name)),
      el("div", { class: "hint" }, "your loop's own value")),
    el("td", {},
      el("input", { id, name, type: text ? "text" : "number", step: text ? null : "any",
        "data-kind": text ? "text" : "float" }),
      prefix === "adj" ? el("span", { class: "pending", id: `${id}-pending` }) : null,
      el("p", { class: "error", "data-error-for": name, "aria-live": "polite" }),
      el("span", { class: "hint" }, `allowed: ${text ? "a text" : "a number"}`)));
}

async function control(action) {
  flash("");
  try {
    state.trial = await post(`${BASE}/${action}`);
    drawTrial();
  } catch (err) {
    flash(`Could not ${action}: ${err.message}`);
  }
}

// The values of a form's fields that differ from `base` (name -> value), or an error naming
// the first field that is not a number. A field left as filled in holds its base value (the
// text shown may be its rounding: 1.23e-4 for 0.000123456).
function changedValues(form, base) {
  const out = {};
  for (const input of form.querySelectorAll("[name]")) {
    const name = input.name;
    if (untouched(input)) continue;
    const text = input.dataset.kind === "choice" || input.dataset.kind === "text";
    const value = text ? input.value : Number(input.value);
    if (!text && (input.value.trim() === "" || !Number.isFinite(value))) {
      throw Object.assign(new Error(`${name}: enter a number`), { field: name });
    }
    if (value !== base[name]) out[name] = value;
  }
  return out;
}

function clearErrors(form) {
  form.querySelectorAll(".error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}

// The server's message next to the field it names ("hparams.learning_rate: ..."), or in the
// form's general slot.
function showError(form, err) {
  const name = (err.field || "").replace(/^hparams\./, "");
  const slot = (name && form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)) ||
    form.querySelector('[data-error-for="hparams"]');
  slot.textContent = err.message;
  const input = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
}

// The values the adjust form starts from: pending adjustments first, then those in force.
function currentValues() {
  const t = state.trial;
  return { ...t.hparams, ...t.pending_hparams };
}

async function submitAdjust(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const status = document.getElementById("adjust-status");
  try {
    const values = changedValues(form, currentValues());
    if (Object.keys(values).length === 0) {
      status.textContent = "Nothing changed.";
      return;
    }
    state.trial = await patch(`${BASE}/hparams`, values);
    state.dirty.clear();
    status.textContent = `Requested: ${Object.entries(values).map(([k, v]) => `${k} = ${hp(k, v)}`)
      .join(", ")}; applies at the next safe point.`;
    drawTrial();
    refreshEvents();
  } catch (err) {
    status.textContent = "";
    showError(form, err);
  }
}

// -- checkpoints, lineage, events ------------------------------------------------------------

function drawCheckpoints() {
  const list = document.getElementById("checkpoints");
  // Redrawn only when something changed, so a focused button is not replaced every poll.
  const key = JSON.stringify([state.checkpoints.map((c) => [c.step, c.bytes]),
    state.fork && state.fork.step]);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  if (state.checkpoints.length === 0) {
    list.replaceChildren(el("li", { class: "muted" }, "No checkpoint yet (one every few epochs, " +
      "at every pause and before every adjustment)."));
    return;
  }
  list.replaceChildren(...state.checkpoints.map((c) => {
    const chosen = state.fork !== null && state.fork.step === c.step;
    return el("li", { "data-step": String(c.step), class: chosen ? "selected" : null },
      el("span", { class: "step" }, `step ${c.step}`), ` · epoch ${fmt(c.epoch, 3)} · `,
      `${(c.bytes / 1024).toFixed(0)} KiB `,
      el("button", { type: "button", class: "small fork", "data-step": String(c.step),
        "aria-controls": "fork-form", "aria-expanded": chosen ? "true" : "false",
        onclick: () => openFork(c) }, "Fork from here"));
  }));
}

// "Fork from here" opens the fork form under the timeline, filled in with the values in force
// at that checkpoint; only the fields the user changes are sent as overrides.
function openFork(ckpt) {
  const form = document.getElementById("fork-form");
  const base = { ...state.trial.hparams, ...(ckpt.hparams || {}) };
  state.fork = { step: ckpt.step, base };
  clearErrors(form);
  document.getElementById("fork-status").textContent = "";
  document.getElementById("fork-title").textContent =
    `Fork from step ${ckpt.step} (epoch ${fmt(ckpt.epoch, 3)})`;
  for (const input of form.querySelectorAll("[name]")) {
    fillInput(input, input.name, base[input.name], state.study && state.study.space);
  }
  form.hidden = false;
  drawCheckpoints();
  const first = form.querySelector("[name]");
  if (first) first.focus();
  form.scrollIntoView({ block: "nearest" });
}

function closeFork() {
  const step = state.fork && state.fork.step;
  state.fork = null;
  document.getElementById("fork-form").hidden = true;
  drawCheckpoints();
  const button = document.querySelector(`#checkpoints button.fork[data-step="${step}"]`);
  if (button) button.focus();
}

async function submitFork(event) {
  event.preventDefault();
  const form = event.target;
  if (state.fork === null) return;
  const { step, base } = state.fork;
  clearErrors(form);
  const status = document.getElementById("fork-status");
  const submit = document.getElementById("fork-submit");
  try {
    const hparams = changedValues(form, base);
    status.textContent = `Forking from step ${step}…`;
    submit.disabled = true;
    const child = await post(`${BASE}/fork`, { step, hparams });
    window.location.assign(`/trials/${child.id}`);
  } catch (err) {
    status.textContent = "";
    submit.disabled = false;
    showError(form, err);
  }
}

function drawLineage() {
  const t = state.trial;
  const parts = [];
  if (t.parent_id !== null) {
    parts.push(el("p", {}, "Forked from ",
      el("a", { href: `/trials/${t.parent_id}`, id: "parent-link" }, nameOf(t.parent_id)),
      ` at step ${t.parent_step}.`));
  }
  const children = applied("fork").filter((e) => e.payload.trial_id !== undefined);
  if (children.length) {
    parts.push(el("p", {}, "Forks of this trial:"));
    parts.push(el("ul", { id: "children" }, children.map((e) => el("li", {},
      el("a", { href: `/trials/${e.payload.trial_id}` }, nameOf(e.payload.trial_id)),
      ` from step ${e.payload.step}`))));
  }
  const box = document.getElementById("lineage");
  box.className = parts.length ? "" : "muted";
  box.replaceChildren(...(parts.length ? parts : ["No parent, no forks yet."]));
}

function eventDetails(e) {
  const p = e.payload || {};
  if (e.kind === "adjust") {
    const was = p.old || {};
    return Object.entries(p.hparams || {}).map(([k, v]) =>
      (k in was ? `${k} ${hp(k, was[k])} → ${hp(k, v)}` : `${k} = ${hp(k, v)}`)).join(", ");
  }
  if (e.kind === "fork") {
    return p.trial_id !== undefined ? `child ${nameOf(p.trial_id)} from step ${p.step}`
      : `from ${nameOf(p.parent_id)} at step ${p.step}`;
  }
  return Object.entries(p).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function drawEvents() {
  const rows = [...state.events.values()].sort((a, b) => b.id - a.id).map((e) =>
    el("tr", { "data-kind": e.kind },
      el("td", {}, e.kind), el("td", {}, eventDetails(e)), el("td", {}, timeText(e.requested_at)),
      el("td", {}, e.applied_step !== null ? String(e.applied_step)
        : e.applied_at ? "moot" : el("span", { class: "pending" }, "pending"))));
  document.querySelector("#events tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "No events yet."))]));
  drawMarkers();
  drawLineage();
}

// -- loading and live updates ----------------------------------------------------------------

async function refreshTrial() {
  const [trial, checkpoints] = await Promise.all([get(BASE), get(`${BASE}/checkpoints`)]);
  state.trial = trial;
  state.checkpoints = checkpoints;
  drawTrial();
  drawCheckpoints();
}

async function refreshEvents() {
  for (const e of await get(`${BASE}/events`)) state.events.set(e.id, e);
  await ensureNames(relatedIds());
  drawEvents();
}

function safely(fn) {
  return (...args) => Promise.resolve(fn(...args)).catch((err) => flash(err.message));
}

let caughtUp = false;
function onMetrics(frame) {
  merge(frame.points);
  scheduleDraw();
  if (!caughtUp) {
    // Points written between the first fetch and the stream's start: fetch them once.
    caughtUp = true;
    get(`${BASE}/metrics?since_step=${Math.max(0, lastStep() - 1000)}`)
      .then((m) => { merge(m); scheduleDraw(); }).catch(() => {});
  }
}

async function main() {
  let trial;
  try {
    trial = await get(BASE);
  } catch (err) {
    flash(err.status === 404 ? `Trial ${TRIAL_ID} does not exist.` : err.message);
    return;
  }
  stream(`${BASE}/stream`, {
    metrics: onMetrics,
    state: safely(async () => { await refreshTrial(); await refreshEvents(); }),
    event: safely(async (e) => {
      state.events.set(e.id, e);
      await ensureNames(relatedIds());
      drawEvents();
      await refreshTrial();
    }),
  }, (s) => { state.stream = s; drawLive(); });
  const [study, metrics, specs] = await Promise.all([get(`/api/studies/${trial.study_id}`),
    get(`${BASE}/metrics?max_points=1000`), get("/api/hparams")]);
  state.study = study;
  state.defaults = Object.fromEntries(specs.map((s) => [s.name, s.default]));
  merge(metrics);
  if (trial.parent_id !== null) {
    const curves = await get(`/api/trials/${trial.parent_id}/metrics?max_points=500`);
    for (const [name, pts] of Object.entries(curves)) {
      state.parent[name] = pts.filter(([s]) => s <= trial.parent_step).map(([s, v]) => [s, num(v)]);
    }
  }
  state.trial = trial;
  ownAdjustRows();
  await ensureNames(relatedIds());
  draw();
  await refreshTrial();
  await refreshEvents();
  // Progress (step, epoch, checkpoints) between state changes, while the trial trains.
  setInterval(safely(async () => {
    if (!FINISHED.has(state.trial.state) && !document.hidden) await refreshTrial();
  }), 2000);
}

document.getElementById("pause").addEventListener("click", () => control("pause"));
document.getElementById("resume").addEventListener("click", () => control("resume"));
document.getElementById("stop").addEventListener("click", () => control("stop"));
document.getElementById("adjust-form").addEventListener("submit", submitAdjust);
document.getElementById("fork-form").addEventListener("submit", submitFork);
document.getElementById("fork-cancel").addEventListener("click", closeFork);
document.getElementById("adjust-form").addEventListener("input", (e) => state.dirty.add(e.target.name));
document.getElementById("revert").addEventListener("click", () => { state.dirty.clear(); drawAdjust(); });
document.getElementById("smoothing").addEventListener("input", (e) => {
  state.smoothing = Number(e.target.value);
  document.getElementById("smoothing-value").textContent = state.smoothing.toFixed(2);
  draw();
});
main();
