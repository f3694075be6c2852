// Study page (/studies/{id}): live trials table, overlaid curves, parallel coordinates with
// brushing into the next round, scatter per hyperparameter, importance, re-test and export.

import {
  FINISHED, el, flash, fmt, get, hasRoute, post, progressBar, stateBadge, stream, studyState,
} from "./api.js";
import {
  fillInput, formatHparam, plain, rangeText, trialName, untouched,
} from "./format.js";
import {
  EpochCurves, Parallel, drawImportance, drawScatter, rangedNames,
} from "./study_charts.js";
import { isExternal, loopStatus, snippet } from "./own_loop.js";
import { stoppedWhy, waitingNodes, waitingText } from "./why.js";

const root = document.getElementById("study-root");
const STUDY_ID = Number(root.dataset.studyId);
const BASE = `/api/studies/${STUDY_ID}`;
const PAGE_SIZE = 50;

const state = {
  study: null,
  trials: [],
  rounds: null, // [{id, number, space}] when the API lists them
  selected: new Set(),
  sort: { key: "number", desc: false },
  page: 0,
  brushed: {},
  stream: "", // the stream's status: "live", "reconnecting" or "closed"
};

const curves = new EpochCurves(document.getElementById("chart-curves"), STUDY_ID);
const parallel = new Parallel(document.getElementById("chart-parallel"), onBrush);

// The API gives each trial its round's number (1, 2, ...); a panda trial has none.
function roundOf(trial) {
  return trial.round ?? 1;
}

function space() {
  const search = (state.rounds || []).filter((r) => r.kind !== "retest");
  const last = search.at(-1);
  return (last && last.space) || state.study.space;
}

// -- header, rounds --------------------------------------------------------------------------

function drawHeader() {
  const s = state.study;
  document.getElementById("study-title").textContent = s.name;
  const counts = Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ") || "no trials";
  document.getElementById("study-meta").replaceChildren(stateBadge(studyState(s)),
    ` ${s.mode} · ${isExternal(s) ? "your own training loop" : `task ${s.task}`}`,
    ` · objective ${s.objective.metric} (${s.objective.direction}) · budget `,
    budgetText(s),
    `, ${s.parallelism} at once · ${s.progress.ended} / ${s.progress.planned} trials ended`,
    ` · sampler ${algo(s.sampler)}`,
    s.scheduler ? ` · early stopping ${algo(s.scheduler)}` : "", ` · ${counts}`);
  document.getElementById("export-csv").href = `${BASE}/export?format=csv`;
  document.getElementById("export-json").href = `${BASE}/export?format=json`;
  curves.chart.setOption({ yAxis: { name: s.objective.metric } });
}

// A study of the user's own loop: the snippet to paste (set again only when it changes, so a
// selection being copied is not lost) and what its trials wait for.
function drawLoop() {
  if (!isExternal(state.study)) return;
  const code = document.getElementById("loop-snippet");
  const text = snippet(state.study, window.location.origin);
  if (code.textContent !== text) code.textContent = text;
  document.getElementById("loop-status").textContent = loopStatus(state.study, state.trials);
}

async function copySnippet() {
  const code = document.getElementById("loop-snippet");
  const status = document.getElementById("copy-status");
  try {
    await navigator.clipboard.writeText(code.textContent);
    status.textContent = "Copied.";
  } catch {
    window.getSelection().selectAllChildren(code); // no clipboard here: copy it by hand
    status.textContent = "Selected: press Ctrl+C to copy.";
  }
}

// The first round's budget, named as such once later rounds add their own; in epochs, with
// the epochs its trials have trained so far.
function budgetText(s) {
  const first = (state.rounds || []).length > 1 ? " in round 1" : "";
  if (s.budget.trials) return `${s.budget.trials} trials${first}`;
  const trained = state.trials.filter((t) => roundOf(t) === 1)
    .reduce((sum, t) => sum + t.epoch, 0);
  return `${s.budget.epochs} epochs${first} (${fmt(trained, 3)} trained)`;
}

// One line on how many distinct values of each hyperparameter the search tries: the notes'
// argument for random over grid search, from the study's sampler_info.
function drawSamplerInfo() {
  const info = state.study.sampler_info;
  const box = document.getElementById("sampler-info");
  const names = info ? Object.keys(info.distinct_values) : [];
  if (!names.length) { box.textContent = ""; return; }
  const tried = names.map((n) => `${info.distinct_values[n]} distinct ${n}`).join(", ");
  if (info.grid_size !== null) {
    box.textContent = `Grid tries ${tried} values in ${info.grid_size} grid points; random ` +
      `search with ${info.grid_size} trials would try ${info.grid_size} of each.`;
    return;
  }
  const side = Math.floor(info.trials ** (1 / names.length) + 1e-9);
  box.textContent = `${info.sampler === "random" ? "Random" : info.sampler} tried ${tried} ` +
    `values in ${info.trials} trials; a grid of ${info.trials} points would try ` +
    `${side} of each.`;
}

function algo(a) {
  return typeof a === "object" && a !== null ? a.name || JSON.stringify(a) : String(a);
}

// A hyperparameter's value as every page writes it: on its scale in this study (format.js).
function hp(name, v) {
  return formatHparam(name, v, state.study.space);
}

// "Round 3 · re-test: top 3 × 2 seeds" or "Round 2"; a re-test has no ranges of its own.
function roundTitle(r) {
  if (r.kind !== "retest") return `Round ${r.number}`;
  const shape = r.retest ? `: top ${r.retest.top} × ${r.retest.seeds} ` +
    `seed${r.retest.seeds === 1 ? "" : "s"}` : "";
  return `Round ${r.number} · re-test${shape}`;
}

// A search round lists its ranges; a re-test re-runs chosen configurations with fresh seeds,
// so the space it copied from the round before it would mislead.
function roundBody(r) {
  if (r.kind === "retest") {
    return el("p", { class: "hint" }, "Re-runs the best configurations with fresh seeds; " +
      "their values are under Re-test results.");
  }
  return el("dl", { class: "kv" }, rangedNames(r.space).flatMap((n) =>
    [el("dt", {}, n), el("dd", {}, rangeText(n, r.space[n]))]));
}

function drawRounds() {
  const box = document.getElementById("rounds");
  const rounds = state.rounds || [{ number: 1, space: state.study.space }];
  box.className = "";
  box.replaceChildren(...rounds.map((r) => el("div", { "data-round": String(r.number) },
    el("h3", {}, roundTitle(r),
      r.counts ? ` · ${Object.entries(r.counts).map(([k, v]) => `${v} ${k}`).join(", ")}` : ""),
    roundBody(r))));
  if (!state.rounds) {
    box.append(el("p", { class: "hint" }, "Later rounds appear here once the server lists them."));
  }
  const select = document.getElementById("filter-round");
  const current = select.value;
  const numbers = [...new Set(state.trials.map(roundOf))].sort((a, b) => a - b);
  select.replaceChildren(el("option", { value: "" }, "all"),
    ...numbers.map((n) => el("option", { value: String(n) }, `round ${n}`)));
  select.value = numbers.map(String).includes(current) ? current : "";
}

// -- trials table ----------------------------------------------------------------------------

function columns() {
  const names = rangedNames(state.study.space);
  return [
    { key: "select", label: "Compare", sortable: false },
    { key: "number", label: "Trial" },
    { key: "round", label: "Round", value: roundOf },
    { key: "state", label: "State" },
    { key: "progress", label: "Progress (epochs)", value: (t) => t.epoch },
    { key: "best_value", label: `Best ${state.study.objective.metric}`, num: true },
    { key: "last_value", label: "Last", num: true },
    ...names.map((n) => ({ key: `hp:${n}`, label: n, num: true, value: (t) => t.hparams[n],
      format: (v) => hp(n, v) })),
  ];
}

function valueOf(col, t) {
  return col.value ? col.value(t) : t[col.key];
}

function visibleTrials() {
  const st = document.getElementById("filter-state").value;
  const rd = document.getElementById("filter-round").value;
  const col = columns().find((c) => c.key === state.sort.key) || columns()[1];
  const sign = state.sort.desc ? -1 : 1;
  return state.trials
    .filter((t) => (!st || t.state === st) && (!rd || String(roundOf(t)) === rd))
    .sort((a, b) => {
      const x = valueOf(col, a);
      const y = valueOf(col, b);
      if (x === y) return a.number - b.number;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sign;
    });
}

function headCell(col) {
  if (col.sortable === false) return el("th", { scope: "col" }, col.label);
  const active = state.sort.key === col.key;
  const sort = active ? (state.sort.desc ? "descending" : "ascending") : "none";
  return el("th", { scope: "col", "aria-sort": sort, class: col.num ? "num" : null },
    el("button", { type: "button", class: "sort", onclick: () => {
      state.sort = { key: col.key, desc: active ? !state.sort.desc : false };
      drawTable();
    } }, col.label + (active ? (state.sort.desc ? " ▼" : " ▲") : "")));
}

function row(t, cols) {
  const epochs = t.hparams.epochs || state.study.epochs;
  const cells = {
    select: el("input", { type: "checkbox", "aria-label": `compare ${trialName(t)}`,
      checked: state.selected.has(t.id), onchange: (e) => select(t.id, e.target.checked) }),
    number: el("a", { href: `/trials/${t.id}` }, trialName(t)),
    round: String(roundOf(t)),
    state: stateCell(t),
    progress: progressBar(t.epoch / epochs, `${fmt(t.epoch, 3)} / ${epochs}`, t.state),
    best_value: fmt(t.best_value),
    last_value: fmt(t.last_value),
  };
  return el("tr", { class: t.state === "pruned" ? "pruned" : null, "data-trial-id": String(t.id) },
    cols.map((c) => el("td", { class: c.num ? "num" : null, "data-col": c.key },
      c.key in cells ? cells[c.key] : (c.format || fmt)(valueOf(c, t)))));
}

// The state, and under it why the scheduler stopped or parked the trial (the full sentence as
// its tooltip) or what a queued trial waits for (the running trials holding it, as links).
function stateCell(t) {
  const badge = stateBadge(t.state, t.parked ? " · waiting at a rung" : "");
  const stopped = stoppedWhy(t, state.study);
  if (stopped) return [badge, el("div", { class: "why", title: stopped.text }, stopped.short)];
  const waiting = waitingNodes(t, { short: true, study: state.study });
  if (!waiting) return badge;
  return [badge, el("div", { class: "why", title: waitingText(t, state.study) }, ...waiting)];
}

function drawTable() {
  const cols = columns();
  document.getElementById("trials-head").replaceChildren(...cols.map(headCell));
  const list = visibleTrials();
  const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const shown = list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  document.querySelector("#trials tbody").replaceChildren(...(shown.length
    ? shown.map((t) => row(t, cols))
    : [el("tr", {}, el("td", { colspan: String(cols.length), class: "muted" },
      state.trials.length ? "No trial matches the filters." : "No trials yet."))]));
  document.getElementById("page-info").textContent =
    `page ${state.page + 1} of ${pages} · ${list.length} trials`;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
}

function select(id, on) {
  if (on) state.selected.add(id); else state.selected.delete(id);
  document.getElementById("compare").disabled = state.selected.size < 1;
  loadCurves();
}

// -- curves ----------------------------------------------------------------------------------

function curveTrials() {
  if (state.selected.size) return state.trials.filter((t) => state.selected.has(t.id));
  const dir = state.study.objective.direction === "maximize" ? -1 : 1;
  return state.trials.filter((t) => t.best_value !== null)
    .sort((a, b) => dir * (a.best_value - b.best_value)).slice(0, 10);
}

async function loadCurves() {
  await curves.load(curveTrials());
}

function onMetrics(frame) {
  curves.onMetrics(frame, state.study.objective.metric);
}

// -- analysis charts -------------------------------------------------------------------------

function drawAnalysis() {
  const sp = space();
  const metric = state.study.objective.metric;
  parallel.draw(sp, metric, state.trials, roundOf, state.study.space);
  drawRoundRanges();
  const box = document.getElementById("scatters");
  const names = rangedNames(sp);
  if (box.dataset.names !== names.join(",")) {
    box.dataset.names = names.join(",");
    box.replaceChildren(...names.map((n) => el("div", { class: "chart", id: `scatter-${n}`,
      role: "img", "aria-label": `${n} against ${metric}` })));
  }
  for (const n of names) {
    drawScatter(document.getElementById(`scatter-${n}`), n, sp[n], metric, state.trials, roundOf,
      state.study.space);
  }
}

// Editable ranges of the next round: brushing fills them, the keyboard can too.
function drawRoundRanges() {
  const sp = space();
  const names = rangedNames(sp).filter((n) => sp[n].dist !== "choice");
  const body = document.querySelector("#round-ranges tbody");
  // Filled again only when the latest round's ranges change, so typing is never overwritten.
  const key = JSON.stringify(names.map((n) => [n, sp[n]]));
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  body.replaceChildren(...names.map((n) => el("tr", { "data-range": n },
    el("th", { scope: "row" }, el("code", {}, n),
      el("div", { class: "hint" }, rangeText(n, sp[n]))),
    el("td", {}, el("span", { class: "range-inputs" },
      el("label", { for: `next-${n}-low` }, "low"),
      el("input", { type: "number", step: "any", id: `next-${n}-low` }),
      el("label", { for: `next-${n}-high` }, "high"),
      el("input", { type: "number", step: "any", id: `next-${n}-high` })),
    el("p", { class: "error", "data-error-for": `space.${n}`, "aria-live": "polite" })))));
  // The bounds on their scale; a bound left as shown is sent as it is, not as its rounding.
  for (const n of names) {
    fillInput(document.getElementById(`next-${n}-low`), n, sp[n].low, sp);
    fillInput(document.getElementById(`next-${n}-high`), n, sp[n].high, sp);
  }
  document.getElementById("next-round").disabled = names.length === 0;
}

function onBrush(brushed) {
  state.brushed = brushed;
  const names = Object.keys(brushed);
  const sp = space();
  // A brushed bound is written on its scale (integers rounded inwards) and sent as written.
  for (const [name, [low, high]] of Object.entries(brushed)) {
    const ints = ["int_uniform", "log_int"].includes(sp[name].dist);
    const round = (v, up) => (ints ? (up ? Math.ceil(v) : Math.floor(v)) : v);
    for (const [end, v] of [["low", round(low, true)], ["high", round(high, false)]]) {
      const input = document.getElementById(`next-${name}-${end}`);
      input.value = formatHparam(name, v, sp);
      delete input.dataset.shown;
    }
  }
  document.getElementById("brushed").textContent = names.length
    ? "Brushed: " + names.map((n) => `${n} in [${formatHparam(n, brushed[n][0], sp)}, ` +
      `${formatHparam(n, brushed[n][1], sp)}]`).join("; ")
    : "No range brushed.";
}

function narrowedSpace() {
  const out = structuredClone(space());
  for (const tr of document.querySelectorAll("#round-ranges tr[data-range]")) {
    const name = tr.dataset.range;
    const read = (end) => {
      const input = document.getElementById(`next-${name}-${end}`);
      return untouched(input) ? out[name][end] : Number(input.value);
    };
    const low = read("low");
    const high = read("high");
    if (!(Number.isFinite(low) && Number.isFinite(high) && low < high)) {
      throw Object.assign(new Error(`${name}: low must be a number smaller than high`),
        { field: `space.${name}` });
    }
    out[name] = { ...out[name], low, high };
  }
  return out;
}

// Starts a round (POST .../rounds with `body`: ranges or from_top, and a budget), says so in
// `status`, and refreshes the page; the brushed ranges' form and the result card share it.
async function postRound(body, status) {
  const round = await post(`${BASE}/rounds`, body);
  const budget = body.trials ? `${body.trials} trials` : `${body.epochs} epochs`;
  const around = body.from_top ? ` around the top ${body.from_top}` : "";
  status.textContent = `Round ${round.number} started with ${budget}${around}` +
    (round.outside_parent && round.outside_parent.length
      ? ` (outside the previous ranges: ${round.outside_parent.join(", ")}).` : ".");
  await refresh();
  return round;
}

async function startRound() {
  const status = document.getElementById("round-status");
  document.querySelectorAll("#round-ranges .error").forEach((p) => { p.textContent = ""; });
  try {
    await postRound({ space: narrowedSpace(),
      trials: Number(document.getElementById("round-trials").value) }, status);
  } catch (err) {
    status.textContent = "";
    const slot = err.field &&
      document.querySelector(`#round-ranges [data-error-for="${CSS.escape(err.field)}"]`);
    if (slot) slot.textContent = err.message;
    else flash(`Could not start the round: ${err.message}`);
  }
}

let importanceFor = -1; // completed trials the importance chart was computed for

async function loadImportance() {
  const method = document.getElementById("importance-method");
  const chart = document.getElementById("chart-importance");
  if (!(await hasRoute("GET", "/api/studies/{study_id}/importance"))) {
    method.textContent = "Importance is not available from this server yet.";
    chart.hidden = true;
    return;
  }
  const done = state.trials.filter((t) => t.state === "completed").length;
  if (done === importanceFor) return;
  if (done < 2) {
    method.textContent = "Importance needs at least two completed trials.";
    chart.hidden = true;
    return;
  }
  importanceFor = done;
  chart.hidden = false;
  try {
    const res = await get(`${BASE}/importance`);
    const scores = res.scores || res.importance || {};
    method.textContent = `${res.method || "method not named"}` +
      (res.n_trials !== undefined ? `, fitted on ${res.n_trials} trials` : "") +
      (res.warning ? `. Caution: ${res.warning}.` : "");
    drawImportance(document.getElementById("chart-importance"), scores);
  } catch (err) {
    method.textContent = err.status === 404 || err.status === 405
      ? "Importance is not available from this server yet." : `Importance: ${err.message}`;
  }
}

// Re-runs the `top` best configurations with `seeds` fresh seeds each (a re-test round); the
// header's form and the result card share it. Errors (a 409 naming the largest top that works
// now) go to the caller.
async function postRetest(top, seeds, status) {
  const round = await post(`${BASE}/retest`, { top, seeds });
  const text = `Re-test started (round ${round.number}): the best ${top} configuration` +
    `${top === 1 ? "" : "s"} again with ${seeds} fresh seed${seeds === 1 ? "" : "s"} each.`;
  if (status) status.textContent = text;
  else flash(text, "ok");
  await refresh();
  return round;
}

async function retest() {
  try {
    await postRetest(Number(document.getElementById("retest-top").value),
      Number(document.getElementById("retest-seeds").value));
  } catch (err) {
    flash(`Could not re-test: ${err.message}`);
  }
}

// -- result card -----------------------------------------------------------------------------

const RETEST_SEEDS = 3;
let bestFor = null; // the trials' states and values the result card was drawn for

// The trials the ranking places (app.tuning.ranking): originals, not running, with a value.
function rankedCount() {
  const retests = new Set((state.rounds || []).filter((r) => r.kind === "retest")
    .map((r) => r.id));
  return state.trials.filter((t) => !retests.has(t.round_id) && t.state !== "running" &&
    t.best_value !== null).length;
}

// The next steps' defaults: the top k (at most 3), and the first round's budget for a new
// round (in trials, or in epochs when the study is budgeted in epochs).
function nextDefaults() {
  const first = (state.rounds || []).find((r) => r.number === 1);
  const budget = (first && first.budget) || state.study.budget;
  const size = budget.trials ? { trials: budget.trials } : { epochs: budget.epochs };
  return { k: Math.min(3, rankedCount()), size };
}

function drawNextSteps() {
  const { k, size } = nextDefaults();
  const narrow = document.getElementById("narrow-top");
  const again = document.getElementById("retest-top-k");
  const busy = narrow.dataset.busy === "yes";
  narrow.textContent = `Narrow around the top ${Math.max(k, 1)}`;
  again.textContent = `Re-test the top ${Math.max(k, 1)}`;
  narrow.disabled = busy || k < 1;
  again.disabled = busy || k < 1;
  const budget = size.trials ? `${size.trials} trials` : `${size.epochs} epochs`;
  document.getElementById("next-hint").textContent = k < 1
    ? "The next steps open once a trial has a value (when it ends its first epoch)."
    : `Narrow: a new round of ${budget} sampled in a box around the top ${k} trials. ` +
      `Re-test: the top ${k} configuration${k === 1 ? "" : "s"} again with ${RETEST_SEEDS} ` +
      "fresh seeds each, so the best stands on a mean, not on one lucky seed.";
}

// "0.962 ± 0.004": the spread to one significant digit (two when that digit is 1), the mean
// to the same decimal place.
function meanStd(mean, std) {
  if (!(std > 0)) return `${plain(mean)} ± 0`;
  const first = Math.floor(Math.log10(std));
  const lead = Math.floor(std / 10 ** first + 1e-9);
  const decimals = Math.min(12, Math.max(0, -first + (lead === 1 ? 1 : 0)));
  return `${mean.toFixed(decimals)} ± ${std.toFixed(decimals)}`;
}

function bestLine(best) {
  const name = el("a", { href: `/trials/${best.trial.id}` }, trialName(best.trial));
  const metric = best.metric;
  if (best.retested && best.runs >= 2) {
    return ["Best: ", name, ` — ${metric} ${meanStd(best.value, best.std)} over ` +
      `${best.runs} seeds (re-tested)`];
  }
  const early = best.trial.state !== "completed"
    ? `, stopped early at epoch ${plain(best.trial.epoch)}` : "";
  const why = best.retested ? "one seed so far: its re-test runs"
    : "one seed: re-test it to trust it";
  return ["Best so far: ", name, ` — ${metric} ${plain(best.value)} (${why}${early})`];
}

async function loadBest() {
  drawNextSteps();
  const key = JSON.stringify(state.trials.map((t) => [t.id, t.state, t.last_value]));
  if (key === bestFor) return;
  bestFor = key;
  const line = document.getElementById("best-line");
  const hparams = document.getElementById("best-hparams");
  const none = () => {
    line.textContent = "No result yet: the first comes when a trial ends its first epoch.";
    line.dataset.state = "none";
    hparams.replaceChildren();
  };
  // Not asked before a trial has a value: the 409 it would answer says the same.
  if (rankedCount() === 0) { none(); return; }
  let best;
  try {
    best = await get(`${BASE}/best`);
  } catch (err) {
    if (err.status === 409) { none(); return; }
    line.textContent = `The best configuration could not be loaded: ${err.message}`;
    line.dataset.state = "error";
    hparams.replaceChildren();
    return;
  }
  line.replaceChildren(...bestLine(best));
  line.dataset.state = best.retested && best.runs >= 2 ? "retested" : "one-seed";
  // The searched values first, on their scale; the fixed ones folded under them.
  const ranged = rangedNames(state.study.space).filter((n) => n in best.hparams);
  const rest = Object.keys(best.hparams).filter((n) => !ranged.includes(n) &&
    !(n === "seed" && best.runs > 1));
  const pairs = (names) => names.flatMap((n) =>
    [el("dt", {}, n), el("dd", {}, hp(n, best.hparams[n]))]);
  hparams.replaceChildren(...pairs(ranged));
  if (best.runs > 1) {
    const seeds = best.seeds.map((x) => x ?? "?").join(", ");
    hparams.append(el("dt", {}, "seeds"), el("dd", {}, seeds));
  }
  if (rest.length) {
    hparams.append(el("dt", {}, "fixed"), el("dd", {}, el("details", {},
      el("summary", {}, `${rest.length} other values`), el("dl", { class: "kv" }, pairs(rest)))));
  }
}

// A next step from the result card: the button is held while its request runs, and a refusal
// (409: "the largest top that works now is N") is said next to it.
async function nextStep(what) {
  const status = document.getElementById("next-status");
  const narrow = document.getElementById("narrow-top");
  const { k, size } = nextDefaults();
  narrow.dataset.busy = "yes";
  drawNextSteps();
  status.className = "";
  status.textContent = what === "narrow" ? `Starting a round around the top ${k}…`
    : `Queueing a re-test of the top ${k}…`;
  try {
    if (what === "narrow") await postRound({ from_top: k, ...size }, status);
    else await postRetest(k, RETEST_SEEDS, status);
  } catch (err) {
    status.className = "error";
    status.textContent = `Could not ${what === "narrow" ? "narrow" : "re-test"}: ${err.message}`;
  } finally {
    narrow.dataset.busy = "";
    drawNextSteps();
  }
}

async function loadRetest() {
  const hasRetest = (state.rounds || []).some((r) => r.kind === "retest");
  if (!hasRetest || !(await hasRoute("GET", "/api/studies/{study_id}/retest"))) return;
  const res = await get(`${BASE}/retest`);
  const box = document.getElementById("retest-results");
  box.className = "";
  box.replaceChildren(el("table", { class: "data", id: "retest-table" },
    el("thead", {}, el("tr", {}, ["Trial", `Original ${res.metric}`, "Re-runs",
      "Mean ± std", "Pending"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, res.data.map((g) => el("tr", {},
      el("td", {}, el("a", { href: `/trials/${g.trial_id}` }, trialName(g))),
      el("td", { class: "num" }, fmt(g.value)),
      el("td", {}, g.values.map((v) => fmt(v)).join(", ") || "–"),
      el("td", { class: "num" }, g.mean === null ? "–"
        : `${fmt(g.mean)} ± ${g.std === null ? "?" : fmt(g.std)}`),
      el("td", { class: "num" }, String(g.pending)))))));
}

// -- loading ---------------------------------------------------------------------------------

async function loadRounds() {
  if (!(await hasRoute("GET", "/api/studies/{study_id}/rounds"))) return;
  try {
    const res = await get(`${BASE}/rounds`);
    state.rounds = (Array.isArray(res) ? res : res.data).sort((a, b) => a.number - b.number);
  } catch {
    state.rounds = null; // the listing is not served yet: round 1 is the study's space
  }
}

async function refresh() {
  const [study, page] = await Promise.all([get(BASE), get(`${BASE}/trials?limit=1000`)]);
  if (study.mode === "caviar") await loadRounds(); // the header and panels need them at once
  state.study = study;
  state.trials = page.data;
  document.getElementById("study-status").textContent = page.count > page.data.length
    ? `Showing the first ${page.data.length} of ${page.count} trials.` : "";
  drawHeader();
  drawLoop();
  drawLive();
  drawSamplerInfo();
  drawRounds();
  drawTable();
  drawAnalysis();
  await loadCurves();
  if (study.mode === "caviar") {
    await loadBest();
    await loadImportance();
    await loadRetest();
  }
}

// "· live" only while one of the study's trials runs: otherwise nothing new streams in.
function drawLive() {
  const running = state.trials.some((t) => t.state === "running");
  const s = state.stream;
  document.getElementById("live").textContent = !running || !s ? "" : `· ${s}`;
}

let timer = null;
function refreshSoon() {
  if (timer === null) {
    timer = setTimeout(() => { timer = null; refresh().catch((e) => flash(e.message)); }, 1000);
  }
}

async function setupActions() {
  const caviar = state.study.mode === "caviar";
  document.querySelectorAll(".caviar-section").forEach((n) => { n.hidden = !caviar; });
  document.getElementById("run-loop").hidden = !isExternal(state.study);
  const actions = [
    ["retest-box", "POST", "/api/studies/{study_id}/retest"],
    ["round-box", "POST", "/api/studies/{study_id}/rounds"],
    ["narrow-top", "POST", "/api/studies/{study_id}/rounds"],
    ["retest-top-k", "POST", "/api/studies/{study_id}/retest"],
    ["export-csv", "GET", "/api/studies/{study_id}/export"],
    ["export-json", "GET", "/api/studies/{study_id}/export"],
  ];
  for (const [id, method, path] of actions) {
    if (await hasRoute(method, path)) continue;
    const node = document.getElementById(id);
    node.hidden = true;
    node.dataset.missing = `${method} ${path}`;
  }
  const missing = actions.map(([id]) => document.getElementById(id)).filter((n) => n.hidden);
  if (caviar && missing.length) {
    document.getElementById("missing").textContent = "Not offered by this server yet: " +
      [...new Set(missing.map((n) => n.dataset.missing))].join(", ") + ".";
  }
}

async function main() {
  try {
    state.study = await get(BASE);
  } catch (err) {
    flash(err.status === 404 ? `Study ${STUDY_ID} does not exist.` : err.message);
    return;
  }
  await setupActions();
  await refresh();
  stream(`${BASE}/stream`, { state: refreshSoon, metrics: onMetrics, event: refreshSoon },
    (s) => { state.stream = s; drawLive(); });
  setInterval(() => {
    const busy = state.trials.some((t) => !FINISHED.has(t.state));
    if (busy && !document.hidden) refreshSoon();
  }, 3000);
}

for (const id of ["filter-state", "filter-round"]) {
  document.getElementById(id).addEventListener("change", () => { state.page = 0; drawTable(); });
}
document.getElementById("prev").addEventListener("click", () => { state.page -= 1; drawTable(); });
document.getElementById("next").addEventListener("click", () => { state.page += 1; drawTable(); });
document.getElementById("compare").addEventListener("click", () => {
  window.location.assign(`/compare?trials=${[...state.selected].join(",")}`);
});
document.getElementById("next-round").addEventListener("click", startRound);
document.getElementById("copy-snippet").addEventListener("click", copySnippet);
document.getElementById("retest").addEventListener("click", retest);
document.getElementById("narrow-top").addEventListener("click", () => nextStep("narrow"));
document.getElementById("retest-top-k").addEventListener("click", () => nextStep("retest"));
main();
