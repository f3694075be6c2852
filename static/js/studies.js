// Studies list (/): polls the API, and offers one-click digits examples: open on a first
// visit, folded into one line once studies exist.

import {
  el, fmt, get, post, progressBar, stateBadge, studyState, timeText, flash,
} from "./api.js";
import { plain, trialName } from "./format.js";

const tbody = document.querySelector("#studies-table tbody");
const status = document.getElementById("studies-status");

// The first-visit panda example: learning rate 0.01 for the tour to lower to 0.001, and a run
// long enough to pause, adjust and fork while it trains: 1000 epochs of 315 steps (batches of 4)
// last minutes, with a checkpoint every 5 epochs (a larger batch would need many more epochs,
// hence checkpoints, for the same time).
const PANDA_EXAMPLE = { epochs: 1000, space: { learning_rate: 0.01, batch_size: 4 } };

// The notes' caviar recipe: alpha log-uniform 1e-4..1, batch size powers of two, units 50..100.
const CAVIAR_SPACE = {
  learning_rate: { dist: "log_uniform", low: 1e-4, high: 1.0 },
  batch_size: { dist: "log_int", low: 16, high: 256 },
  hidden_units: { dist: "int_uniform", low: 50, high: 100 },
};

// The study's best trial (its only one for a panda run), or null.
async function bestOf(study) {
  const page = await get(`/api/studies/${study.id}/trials?sort=best&limit=1`);
  return page.data[0] || null;
}

function row(study, top) {
  const best = top && top.best_value !== null ? top.best_value : null;
  // A panda run also links straight to the cockpit of its (best) trial.
  const cockpit = study.mode === "panda" && top
    ? [" · ", el("a", { href: `/trials/${top.id}` }, `cockpit of ${trialName(top)}`)] : [];
  // Ended out of every trial the study plans: round 1's budget, later rounds and re-tests,
  // trials added by hand (the server counts them; round 1's budget alone went past 100 %).
  const { ended, planned } = study.progress;
  const running = study.counts.running || 0;
  const objective = `${study.objective.metric} (${study.objective.direction})`;
  const state = studyState(study);
  return el("tr", { "data-study-id": String(study.id), "data-state": state },
    el("td", {}, el("a", { href: `/studies/${study.id}` }, study.name), ...cockpit),
    el("td", {}, study.mode),
    el("td", {}, study.task),
    el("td", {}, stateBadge(state, running ? `, ${running} running` : "")),
    el("td", { title: study.budget.epochs ? `budget: ${study.budget.epochs} epochs` : null },
      progressBar(planned ? Math.min(1, ended / planned) : 0, `${ended} / ${planned}`, state)),
    el("td", { title: objective }, best === null ? "–" : `${fmt(best)} ${study.objective.metric}`),
    el("td", {}, timeText(study.created_at)));
}

// "Workers: 2 (local) · worker vm-123 on Trial 3 of digits search, epoch 4.2 · 1 idle": the
// launcher's workers, and what every busy worker (the launcher's or a remote one) trains.
function workersLine(fleet) {
  const l = fleet.launcher;
  const parts = [];
  if (l) {
    const alive = l.alive === l.workers ? "" : `, ${l.alive} alive`;
    const restarts = l.restarts ? `, ${l.restarts} restarted` : "";
    parts.push(`Workers: ${l.workers} (${l.launcher}${alive}${restarts})`);
  } else {
    parts.push(fleet.busy.length ? "Workers" : "Workers: none launched by this server");
  }
  for (const b of fleet.busy) {
    parts.push(el("span", { "data-trial-id": String(b.trial_id) },
      `worker ${b.worker || "?"} on `, el("a", { href: `/trials/${b.trial_id}` }, trialName(b)),
      " of ", el("a", { href: `/studies/${b.study_id}` }, b.study),
      `, epoch ${plain(Number(b.epoch.toFixed(1)))}`));
  }
  const idle = l ? Math.max(0, l.alive - fleet.busy.length) : 0;
  if (idle) parts.push(fleet.busy.length ? `${idle} idle` : "all idle");
  return parts.flatMap((p, i) => (i ? [" · ", p] : [p]));
}

async function refreshWorkers() {
  const line = document.getElementById("workers-line");
  try {
    line.replaceChildren(...workersLine(await get("/api/workers")));
  } catch {
    line.textContent = ""; // a server without the route: say nothing rather than fail
  }
}

async function refresh() {
  refreshWorkers();
  let page;
  try {
    page = await get("/api/studies?limit=200");
  } catch (err) {
    status.textContent = `Could not load the studies: ${err.message}`;
    return;
  }
  // Open while there is no study; folded at the first load once there is one, and then left
  // as the user sets it (the list refreshes every few seconds).
  const teach = document.getElementById("teach");
  if (page.count === 0) teach.open = true;
  else if (!teach.dataset.folded) teach.open = false;
  teach.dataset.folded = page.count === 0 ? "" : "yes";
  document.getElementById("studies-table").hidden = page.count === 0;
  status.textContent = page.count === 0
    ? "No studies yet. Start with an example above or create a new study."
    : `${page.count} ${page.count === 1 ? "study" : "studies"}`;
  const bests = await Promise.all(page.data.map((s) => bestOf(s).catch(() => null)));
  tbody.replaceChildren(...page.data.map((s, i) => row(s, bests[i])));
}

async function example(mode) {
  const note = document.getElementById("example-status");
  note.textContent = `Creating a ${mode} example…`;
  try {
    if (mode === "panda") {
      const study = await post("/api/studies", { name: "digits panda example", mode: "panda",
        task: "digits", epochs: PANDA_EXAMPLE.epochs, space: PANDA_EXAMPLE.space });
      const trial = await post(`/api/studies/${study.id}/trials`, { hparams: {} });
      window.location.assign(`/trials/${trial.id}`);
    } else {
      const study = await post("/api/studies", { name: "digits caviar example", mode: "caviar",
        task: "digits", epochs: 5, space: CAVIAR_SPACE, budget: { trials: 8 }, parallelism: 2 });
      window.location.assign(`/studies/${study.id}`);
    }
  } catch (err) {
    note.textContent = "";
    flash(`Could not create the example: ${err.message}`);
  }
}

document.getElementById("example-panda").addEventListener("click", () => example("panda"));
document.getElementById("example-caviar").addEventListener("click", () => example("caviar"));
refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 3000);
