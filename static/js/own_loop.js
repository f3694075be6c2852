// A study whose trials run in the user's own processes (task "external"): the study page's
// "Run your loop" card, with a snippet to paste (this study's id, this server's URL, its
// hyperparameters and its objective filled in) and what its trials wait for.

import { el } from "./api.js";

export const EXTERNAL = "external";

export function isExternal(study) {
  return Boolean(study) && study.task === EXTERNAL;
}

// Hyperparameters read into variables of their own; the others are named in a comment.
const SHOWN = 4;

// Python's keywords: neither a variable nor a keyword argument.
const KEYWORDS = new Set(["False", "None", "True", "and", "as", "assert", "async", "await",
  "break", "class", "continue", "def", "del", "elif", "else", "except", "finally", "for",
  "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass",
  "raise", "return", "try", "while", "with", "yield"]);
// The snippet's own variables, and trial.report's own arguments.
const SNIPPET_NAMES = new Set(["pandacaviar", "train", "trial", "epoch", "model", "train_loss"]);
const REPORT_ARGS = new Set(["step", "epoch"]);

// A Python variable for a name: "dropout" stays, "drop-out" is drop_out, "lambda" is lambda_.
function variable(name) {
  const v = name.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "_");
  return KEYWORDS.has(v) || SNIPPET_NAMES.has(v) ? `${v}_` : v;
}

// `name=value` as a keyword argument of trial.report, or **{"name": value} when it cannot be.
function keyword(name, value) {
  const plain = /^[A-Za-z_]\w*$/.test(name) && !KEYWORDS.has(name) && !REPORT_ARGS.has(name);
  return plain ? `${name}=${value}` : `**{${JSON.stringify(name)}: ${value}}`;
}

// The Python a user pastes into their training script: pandacaviar.run calls train(trial) for
// each trial this process claims, until the study has none left.
export function snippet(study, server) {
  const names = Object.keys(study.space).filter((n) => n !== "epochs");
  const { metric, direction } = study.objective;
  const value = metric === "train_loss" ? "train_loss" : variable(metric);
  const reads = names.slice(0, SHOWN).map((n) =>
    `    ${variable(n)} = trial.hparams[${JSON.stringify(n)}]`);
  if (names.length > SHOWN) {
    reads.push(`    # also in trial.hparams: ${names.slice(SHOWN).join(", ")}`);
  }
  const metrics = metric === "train_loss" ? [keyword(metric, value)]
    : ["train_loss=train_loss", keyword(metric, value)];
  return [
    "import pandacaviar",
    "",
    "",
    "def train(trial):",
    ...reads,
    "    model = ...  # your model, built with these values",
    "    for epoch in range(int(trial.epoch), trial.epochs):  # resumed: from its epoch",
    "        train_loss = ...  # train one epoch (trial.hparams holds any adjustment)",
    ...(metric === "train_loss" ? [] : [`        ${value} = ...  # the objective, ${direction}d`]),
    `        trial.report(epoch=epoch + 1, ${metrics.join(", ")})`,
    "        if trial.should_stop:  # paused, stopped or pruned from the dashboard",
    "            return",
    "",
    "",
    `pandacaviar.run(train, study=${study.id}, server=${JSON.stringify(server)})`,
  ].join("\n");
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// What the study's trials wait for, in a sentence: the user's processes, never a worker.
export function loopStatus(study, trials) {
  const queued = trials.filter((t) => t.state === "queued").length;
  const running = trials.filter((t) => t.state === "running");
  const processes = [...new Set(running.map((t) => t.worker).filter(Boolean))];
  if (running.length) {
    return `${plural(running.length, "trial runs", "trials run")} in your processes ` +
      `(${processes.join(", ") || "starting"})` +
      (queued ? `; ${plural(queued, "queued trial waits", "queued trials wait")} for one ` +
        "of them to be free or for another process." : ".");
  }
  if (queued) {
    return `${plural(queued, "queued trial waits", "queued trials wait")} for your ` +
      "processes: none is running. Start the snippet below in one or more processes; the " +
      "server's workers do not run this study's trials.";
  }
  return study.state === "completed"
    ? "Nothing is queued: a new round or a re-test queues trials for your processes again."
    : "Nothing is queued or running now: a trial resumed, forked or added goes to your " +
      "processes.";
}

// The trial page and the study table: a queued trial of such a study waits for one of the
// user's processes (the API's `waiting` speaks of the server's workers, which never claim it).
export function ownWaitNodes(study, { short = false } = {}) {
  if (short) return ["waits for your processes"];
  return ["Waiting for one of your processes to claim it: ",
    el("a", { href: `/studies/${study.id}#run-loop` }, "run your loop"),
    " (pandacaviar.run); the server's workers do not run this study's trials."];
}

export const OWN_WAIT_TEXT = "Waiting for one of your processes to claim it (the study page's " +
  "snippet, pandacaviar.run); the server's workers do not run this study's trials.";
