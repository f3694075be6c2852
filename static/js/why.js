// Why a trial is where it is, in words, on the trial page and in the study page's table: what
// its study's scheduler compared it with when it pruned or parked it (the trial's
// `stopped_because`, its prune or pause event's payload), and what a queued trial waits for
// (its `waiting`: the study's parallelism or a free worker, with the trials holding them; in a
// study of the user's own loop, the user's processes).

import { el } from "./api.js";
import { plain, trialName } from "./format.js";
import { OWN_WAIT_TEXT, isExternal, ownWaitNodes } from "./own_loop.js";

// An objective value as every page writes a metric: plain, 4 significant digits.
function v(x) {
  return typeof x === "number" ? plain(x) : String(x);
}

// `study` may still be loading (null): the metric is then called "the objective".
function metricOf(study) {
  return (study && study.objective && study.objective.metric) || "the objective";
}

// Worse than the bar on the objective's direction: below for a maximised one, else above.
function worse(study) {
  return study && study.objective && study.objective.direction === "minimize" ? "above" : "below";
}

// ASHA keeps the best floor(n / eta) records of a rung: none before eta arrive.
function eta(study) {
  const s = (study && study.scheduler_settings) || {};
  return s.reduction_factor ?? 3;
}

// {text, short} on why the scheduler stopped or parked `trial`, or null when it did not:
// `text` is the sentence the trial page shows (and the table's tooltip), `short` the table's.
export function stoppedWhy(trial, study) {
  const why = trial.stopped_because;
  if (!why) return null;
  const metric = metricOf(study);
  const ended = why.kind === "prune" && why.reason !== undefined;
  if (why.resource === undefined) {
    const text = `Stopped by ${why.scheduler}` + (why.reason ? `: ${why.reason}` : "");
    return { text, short: why.reason || `stopped by ${why.scheduler}` };
  }
  const at = `epoch ${why.resource}`;
  if (why.median !== undefined) {
    // Median stopping: the trial's best so far against the median of the others there.
    const others = `${why.of} other trial${why.of === 1 ? "" : "s"}`;
    return {
      text: `Stopped at ${at}: its best ${metric} ${v(why.best)} is ${worse(study)} the median ` +
        `${v(why.median)} of ${others} at that epoch`,
      short: `at ${at}: ${worse(study)} the median ${v(why.median)} of ${others}`,
    };
  }
  if (why.rung !== undefined) {
    const rung = `rung ${why.rung}`;
    const lead = ended ? `Waited at ${rung} (${at}) until the study ended, not promoted`
      : why.kind === "pause" ? `Waits at ${rung} (${at})` : `Pruned at ${at} (${rung})`;
    if (why.cut === undefined) {
      // No cut yet: fewer records at the rung than the reduction factor.
      const records = `${why.of} record${why.of === 1 ? "" : "s"}`;
      const goes = ended ? "went on before" : "goes on before";
      const arrive = ended ? "arrived" : "arrive";
      return {
        text: `${lead}: none of its ${records} ${goes} ${eta(study)} ${arrive}`,
        short: `${ended ? "waited" : "waits"} at ${rung}: ${records} of ${eta(study)} needed`,
      };
    }
    const went = `the best ${why.keep} of ${why.of} went on`;
    const then = why.kind === "pause" && !ended
      ? "; it goes on if later records leave it among the best" : "";
    return {
      text: `${lead}: ${metric} ${v(why.value)} ${worse(study)} the cut ${v(why.cut)} — ` +
        `${went}${then}`,
      short: `at ${rung}: ${v(why.value)} ${worse(study)} the cut ${v(why.cut)}`,
    };
  }
  // A scheduler of a plugin: what it stopped at, and any reason it gave.
  const text = `Stopped by ${why.scheduler} at ${at}: ${metric} ${v(why.value)}` +
    (why.reason ? ` (${why.reason})` : "");
  return { text, short: `by ${why.scheduler} at ${at}` };
}

// A running trial another waits behind, as a link named "Trial N · study" (or "Trial N" when
// `studyId` is its own study).
function runningLink(r, studyId) {
  return el("a", { href: `/trials/${r.id}` }, trialName(r, r.study_id === studyId ? "" : r.study));
}

function joined(nodes) {
  return nodes.flatMap((n, i) => (i ? [", ", n] : [n]));
}

// Whether a queued trial waits for the user's processes: the server's workers never claim a
// trial of the user's own loop, whatever the API's `waiting` says of them.
function ownLoop(trial, study) {
  return trial.waiting.reason === "your_process" ||
    (isExternal(study) && trial.waiting.reason === "worker");
}

// What a queued trial waits for, in one sentence (the study table's tooltip).
export function waitingText(trial, study) {
  const w = trial.waiting;
  if (ownLoop(trial, study)) return OWN_WAIT_TEXT;
  return (w.reason === "worker" ? "Waiting for " : "Waiting: ") + w.text;
}

// What a queued trial waits for, as nodes: the API's sentence, then the running trials
// holding the slots or workers, as links. `short`: the table's line (the sentence goes to its
// tooltip), trials of `trial`'s own study named without the study. `study`: the trial's.
export function waitingNodes(trial, { short = false, study = null } = {}) {
  const w = trial.waiting;
  if (!w) return null;
  if (ownLoop(trial, study)) return ownWaitNodes(study, { short });
  const lead = w.reason === "worker" ? "Waiting for " : "Waiting: ";
  if (short) {
    const links = joined(w.running.map((r) => runningLink(r, trial.study_id)));
    if (w.reason === "parallelism") return ["waits for a slot, held by ", ...links];
    if (!w.running.length) return ["waits for a worker"];
    return ["waits for a worker, busy with ", ...links];
  }
  const out = [lead + w.text];
  if (w.running.length) {
    out.push(" · running now: ", ...joined(w.running.map((r) => runningLink(r, null))));
  }
  return out;
}
