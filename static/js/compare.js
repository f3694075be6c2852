// Compare (/compare?trials=1,2,3): curves overlaid and the hyperparameters that differ.

import { el, flash, fmt, get, num, stateBadge } from "./api.js";
import { LineChart } from "./charts.js";
import { formatHparam, trialName } from "./format.js";

const root = document.getElementById("compare-root");
const IDS = root.dataset.trialIds.split(",").filter(Boolean).map(Number);
const METRICS = {
  dev_accuracy: "dev accuracy (fraction correct, 0-1)",
  dev_loss: "dev cross-entropy loss (nats)",
  train_accuracy: "train accuracy (fraction correct, 0-1)",
  train_loss: "train cross-entropy loss (nats)",
};
let trials = [];
const studies = new Map(); // study id -> study: its name and space

// "Trial N", with the study's name when the compared trials come from several studies.
function label(t) {
  const several = new Set(trials.map((x) => x.study_id)).size > 1;
  const study = studies.get(t.study_id);
  return trialName(t, several ? (study ? study.name : `study #${t.study_id}`) : null);
}

function drawTable() {
  const all = document.getElementById("show-all").checked;
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.hparams)))];
  const differs = (n) => new Set(trials.map((t) => JSON.stringify(t.hparams[n]))).size > 1;
  const shown = names.filter((n) => all || differs(n));
  const value = (t, n) => formatHparam(n, t.hparams[n], studies.get(t.study_id)?.space);
  const table = document.getElementById("cmp-table");
  table.tHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "hyperparameter"),
    trials.map((t) => el("th", { scope: "col", "data-trial-id": String(t.id) },
      el("a", { href: `/trials/${t.id}` }, label(t)), " ", stateBadge(t.state)))));
  const rows = [
    el("tr", {}, el("td", {}, "best value"), trials.map((t) => el("td", {}, fmt(t.best_value)))),
    ...shown.map((n) => el("tr", { class: differs(n) ? "differs" : null, "data-hparam": n },
      el("td", {}, n), trials.map((t) => el("td", {}, value(t, n))))),
  ];
  if (!shown.length) {
    rows.push(el("tr", {}, el("td", { colspan: String(trials.length + 1), class: "muted" },
      "These trials share every hyperparameter.")));
  }
  table.tBodies[0].replaceChildren(...rows);
}

async function main() {
  const status = document.getElementById("compare-status");
  if (IDS.length === 0) {
    status.textContent = "No trials given: pick some on a study page, or open " +
      "/compare?trials=1,2,3.";
    return;
  }
  const names = Object.keys(METRICS).join(",");
  try {
    trials = await Promise.all(IDS.map((id) => get(`/api/trials/${id}`)));
    const studyIds = [...new Set(trials.map((t) => t.study_id))];
    for (const s of await Promise.all(studyIds.map((id) => get(`/api/studies/${id}`)))) {
      studies.set(s.id, s);
    }
    const curves = await Promise.all(IDS.map((id) =>
      get(`/api/trials/${id}/metrics?names=${names}&max_points=500`)));
    for (const [metric, yName] of Object.entries(METRICS)) {
      const chart = new LineChart(document.getElementById(`cmp-${metric}`),
        { title: metric, yName });
      chart.setSeries(trials.map((t, i) => ({ name: label(t),
        points: (curves[i][metric] || []).map(([s, v]) => [s, num(v)]) })));
    }
  } catch (err) {
    status.textContent = "";
    flash(`Could not load the trials: ${err.message}`);
    return;
  }
  status.textContent = `${trials.length} trials.`;
  drawTable();
}

document.getElementById("show-all").addEventListener("change", drawTable);
main();
