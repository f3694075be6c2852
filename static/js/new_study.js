// New study form: builds the POST /api/studies body, checks every field it can before sending,
// and shows each bad field's message next to it at once (its own checks or the API's 422).

import { el, flash, get, hasRoute, post } from "./api.js";

const form = document.getElementById("study-form");
const taskSelect = document.getElementById("task");
const formStatus = document.getElementById("form-status");
let tasks = {};

const mode = () => form.querySelector("input[name=mode]:checked").value;

// The task of a study whose trials run in the user's own processes (app/trials/external.py).
const EXTERNAL = "external";
const external = () => taskSelect.value === EXTERNAL;

// Each part of the form marked for an approach (caviar-only, panda-only) or a kind of task
// (external-only: the user's own loop; builtin-only: a data set the server's workers train
// on) shows when every mark it carries holds.
function showForm() {
  const holds = {
    "caviar-only": mode() === "caviar",
    "panda-only": mode() === "panda",
    "external-only": external(),
    "builtin-only": !external(),
  };
  const marks = Object.keys(holds);
  for (const node of form.querySelectorAll(marks.map((m) => `.${m}`).join(","))) {
    node.hidden = marks.some((m) => node.classList.contains(m) && !holds[m]);
  }
  form.querySelectorAll("tr[data-hparam], tr[data-own]").forEach(showRow);
}

// A row shows its fixed value or its range; in the user's own loop a built-in hyperparameter
// the loop does not use shows neither (and is not sent).
function showRow(tr) {
  const use = tr.querySelector(".hp-use");
  const used = !external() || !use || use.checked;
  const ranged = mode() === "caviar" && tr.querySelector(".hp-mode").value === "range";
  tr.classList.toggle("unused", !used);
  tr.querySelector(".hp-mode").disabled = !used;
  tr.querySelector(".hp-fixed").hidden = !used || ranged;
  tr.querySelector(".hp-range").hidden = !used || !ranged;
  const values = tr.querySelector(".own-values");
  if (values) {
    const choice = tr.querySelector(".hp-scale").value === "choice";
    values.hidden = !choice;
    tr.querySelector(".own-bounds").hidden = choice;
  }
}

// -- tasks -----------------------------------------------------------------------------------

async function loadTasks() {
  try {
    const page = await get("/api/tasks");
    tasks = Object.fromEntries(page.data.map((t) => [t.name, t]));
    const current = taskSelect.value;
    taskSelect.replaceChildren(...page.data.map((t) =>
      el("option", { value: t.name }, `${t.name} (${t.kind})`)),
    el("option", { value: EXTERNAL }, "Your own training loop"));
    taskSelect.value = current in tasks || current === EXTERNAL ? current : "digits";
    showTask();
  } catch (err) {
    flash(`Could not load the tasks: ${err.message}`);
  }
}

// The name follows the task while it is the one suggested: "digits study", "my training loop".
function suggestName() {
  const input = document.getElementById("name");
  const suggested = input.dataset.suggested ?? input.defaultValue;
  if (input.value !== suggested) return;
  input.value = external() ? "my training loop" : `${taskSelect.value} study`;
  input.dataset.suggested = input.value;
}

function showTask() {
  const task = tasks[taskSelect.value];
  suggestName();
  document.getElementById("task-description").textContent = external()
    ? "your code trains, through the pandacaviar client" : task ? task.description : "";
  showForm();
  const box = document.getElementById("task-options");
  box.replaceChildren();
  if (!task) return;
  for (const opt of Object.values(task.options)) {
    const id = `opt-${opt.name}`;
    const input = el("input", { id, "data-option": opt.name, "data-type": opt.type,
      type: opt.type === "int" || opt.type === "float" ? "number" : "text", step: "any",
      value: opt.default === null ? "" : Array.isArray(opt.default) ? opt.default.join(", ")
        : String(opt.default) });
    const hint = opt.type === "str" && opt.name === "path"
      ? `${opt.help}. The name of a file already uploaded to the server's data directory.`
      : opt.help;
    box.append(el("div", { class: "field" },
      el("label", { for: id }, opt.name),
      input,
      el("span", { class: "hint" }, hint),
      el("p", { class: "error", "data-error-for": `task_options.${opt.name}`, "aria-live": "polite" })));
  }
  if (task.kind === "file") addUpload(box);
}

// Uploading needs POST /api/uploads (multipart, answers {"path"}); offered when the server has it.
async function addUpload(box) {
  if (!(await hasRoute("POST", "/api/uploads"))) {
    box.append(el("p", { class: "hint" }, "This server does not take uploads from the browser " +
      "yet: put the file in its data directory's uploads folder and type its name above."));
    return;
  }
  const input = el("input", { type: "file", id: "upload", accept: ".csv,.npz" });
  const note = el("span", { class: "hint", role: "status" });
  input.addEventListener("change", async () => {
    if (!input.files.length) return;
    const form = new FormData();
    form.append("file", input.files[0]);
    note.textContent = "Uploading…";
    let res;
    try {
      res = await fetch("/api/uploads", { method: "POST", body: form });
    } catch (err) {
      note.textContent = `Upload failed: the server did not answer (${err.message})`;
      return;
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      note.textContent = `Upload refused: ${data.detail || res.status}`;
      return;
    }
    document.getElementById("opt-path").value = data.path;
    note.textContent = `Uploaded ${data.name} as ${data.path}: ${data.rows} rows, ` +
      `${data.features} features, ${data.classes} classes.`;
  });
  box.append(el("div", { class: "field" }, el("label", { for: "upload" }, "Upload a CSV or NPZ"),
    input, note));
}

// -- hyperparameters of the user's own names -------------------------------------------------

// The server's rule for a name (app/trials/external.py), in its words.
const OWN_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,99}$/;
const OWN_NAME_RULE = "a name of letters, digits, '_', '.' or '-' (at most 100, not starting " +
  "with a digit)";
const OWN_VALUE = "a number, a text or true/false";
let ownRows = 0;

const OWN_SCALES = {
  uniform: "linear (uniform)",
  log_uniform: "log (log-uniform)",
  one_minus_log_uniform: "log on 1-beta",
  int_uniform: "integer (uniform)",
  log_int: "powers of two (log-int)",
  choice: "choice",
};

// One row of the table: a name, fixed or range (caviar), then a value or a range; the inputs'
// ids start with the row's (own-1-name, own-1-low...).
function addOwnRow() {
  const id = `own-${++ownRows}`;
  const tr = el("tr", { "data-own": id },
    el("th", { scope: "row" },
      el("label", { for: `${id}-name` }, "Name"), " ",
      el("input", { id: `${id}-name`, class: "hp-name", placeholder: "dropout",
        spellcheck: "false", maxlength: "100" }), " ",
      el("button", { type: "button", class: "small", "aria-label": "remove this hyperparameter",
        onclick: () => { tr.remove(); planSoon(); } }, "Remove"),
      el("div", { class: "hint" }, "your own: your loop reads it from trial.hparams")),
    el("td", { class: "external-only" }),
    el("td", { class: "caviar-only" },
      el("label", { class: "visually-hidden", for: `${id}-mode` }, "fixed or range"),
      el("select", { id: `${id}-mode`, class: "hp-mode" },
        el("option", { value: "fixed" }, "fixed"),
        el("option", { value: "range", selected: true }, "range"))),
    el("td", {}, ownValueInputs(id), ownRangeInputs(id),
      el("p", { class: "error", id: `${id}-error`, "data-error-for": id,
        "aria-live": "polite" })));
  document.getElementById("own-hparams").append(tr);
  showForm();
  tr.querySelector(".hp-name").focus();
}

function ownValueInputs(id) {
  return el("div", { class: "hp-fixed" },
    el("label", { class: "visually-hidden", for: `${id}-value` }, "value"),
    el("input", { id: `${id}-value`, class: "hp-value", placeholder: "0.5, relu or true" }));
}

// A scale with its bounds, or, for a choice, its values separated by commas.
function ownRangeInputs(id) {
  return el("div", { class: "hp-range range-inputs" },
    el("label", { for: `${id}-scale` }, "scale"),
    el("select", { id: `${id}-scale`, class: "hp-scale" },
      Object.entries(OWN_SCALES).map(([value, words]) => el("option", { value }, words))),
    el("span", { class: "range-inputs own-bounds" },
      el("label", { for: `${id}-low` }, "low"),
      el("input", { type: "number", id: `${id}-low`, class: "hp-low", step: "any" }),
      el("label", { for: `${id}-high` }, "high"),
      el("input", { type: "number", id: `${id}-high`, class: "hp-high", step: "any" })),
    el("span", { class: "range-inputs own-values" },
      el("label", { for: `${id}-values` }, "values"),
      el("input", { id: `${id}-values`, class: "hp-values", placeholder: "relu, tanh" })));
}

// A value typed in a text field: true/false, a number, else the text itself.
function ownValue(raw) {
  if (raw === "true" || raw === "false") return raw === "true";
  return raw !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
}

function ownBound(tr, end, field, problems) {
  const raw = tr.querySelector(`.hp-${end}`).value.trim();
  if (raw !== "" && Number.isFinite(Number(raw))) return Number(raw);
  problems.add(field, `${end}: none given, allowed: a number`);
  return null;
}

function ownRange(tr, field, problems) {
  const dist = tr.querySelector(".hp-scale").value;
  if (dist === "choice") {
    const values = tr.querySelector(".hp-values").value.split(",").map((v) => v.trim())
      .filter((v) => v !== "").map(ownValue);
    if (!values.length) {
      problems.add(field, "values: none given, allowed: numbers, texts or true/false, " +
        "separated by commas");
    }
    return { dist, values };
  }
  const low = ownBound(tr, "low", field, problems);
  const high = ownBound(tr, "high", field, problems);
  if (low === null || high === null) return { dist, low, high };
  if (LOG_SCALES.has(dist) && !(low > 0)) {
    problems.add(field, `low: got ${low}, allowed: > 0 on a log scale`);
  } else if (!(low < high)) {
    problems.add(field, `low (${low}) must be smaller than high (${high})`);
  }
  return { dist, low, high };
}

// Why a name of the user's own cannot be sent, or "" when it can.
function ownNameProblem(name, space) {
  if (name === "") return "give the hyperparameter a name";
  if (!OWN_NAME.test(name)) return `got ${JSON.stringify(name)}, allowed: ${OWN_NAME_RULE}`;
  if (form.querySelector(`tr[data-hparam="${CSS.escape(name)}"]`)) {
    return `${name} has its row above (with its allowed range): tick "Used by your loop" there`;
  }
  return name in space ? `${name} is named twice: each hyperparameter has one row` : "";
}

// Adds each row of the user's own names to `space`. A row's error slot follows its name, so
// the API's 422 for space.<name> lands next to it; a bad name's problem goes to the row itself.
function ownHparams(space, problems, caviar) {
  for (const tr of document.querySelectorAll("tr[data-own]")) {
    const name = tr.querySelector(".hp-name").value.trim();
    const slot = tr.querySelector(".error");
    const problem = ownNameProblem(name, space);
    slot.dataset.errorFor = problem ? tr.dataset.own : `space.${name}`;
    if (problem) {
      problems.add(tr.dataset.own, problem);
      continue;
    }
    const field = `space.${name}`;
    const ranged = caviar && tr.querySelector(".hp-mode").value === "range";
    const raw = tr.querySelector(".hp-value").value.trim();
    if (!ranged && raw === "") problems.add(field, `none given, allowed: ${OWN_VALUE}`);
    space[name] = ranged ? ownRange(tr, field, problems) : ownValue(raw);
  }
}

// The objective: a built-in task's choice, or any metric name the user's loop reports.
function objective(problems) {
  if (!external()) return { metric: document.getElementById("objective").value };
  const metric = document.getElementById("objective-metric").value.trim();
  if (metric === "") {
    problems.add("objective.metric", "name the metric your loop reports, e.g. dev_accuracy");
  }
  return { metric, direction: document.getElementById("objective-direction").value };
}

// The metric's example follows its name; its direction too until the user picks one: a loss
// is minimised, anything else maximised (the API's default).
function showMetric() {
  const metric = document.getElementById("objective-metric").value.trim() || "dev_accuracy";
  document.getElementById("objective-example").textContent = `trial.report(${metric}=...)`;
  const select = document.getElementById("objective-direction");
  if (!select.dataset.picked) select.value = metric.endsWith("loss") ? "minimize" : "maximize";
}

// -- samplers and schedulers: GET /api/algorithms --------------------------------------------

// Per list, option value -> { algo, settings }. An algorithm's own entry has its name as value
// (the scheduler "none" has "": no scheduler); a preset's is "<name>-<key>" and fills its
// settings in.
const entries = { sampler: {}, scheduler: {} };

async function loadAlgorithms() {
  try {
    const catalogue = await get("/api/algorithms");
    fillAlgorithms("sampler", catalogue.samplers);
    fillAlgorithms("scheduler", catalogue.schedulers);
  } catch (err) {
    flash(`Could not load the samplers and schedulers: ${err.message}`);
  }
}

function fillAlgorithms(what, algorithms) {
  const select = document.getElementById(what);
  const current = select.value;
  const options = [];
  entries[what] = {};
  for (const algo of algorithms) {
    const own = what === "scheduler" && algo.name === "none" ? "" : algo.name;
    const choices = [{ value: own, label: algo.label, settings: {} },
      ...algo.presets.map((p) => ({ value: `${algo.name}-${p.key}`, label: p.label,
        settings: p.settings }))];
    for (const c of choices) {
      entries[what][c.value] = { algo, settings: c.settings };
      options.push(el("option", { value: c.value, title: algo.help }, c.label));
    }
  }
  select.replaceChildren(...options);
  select.value = current;
  showSettings(what);
}

// The chosen algorithm's settings as inputs, filled with the preset's values or the defaults.
function showSettings(what) {
  const entry = entries[what][document.getElementById(what).value];
  document.getElementById(`${what}-help`).textContent = entry ? entry.algo.help : "";
  const box = document.getElementById(`${what}-settings`);
  box.replaceChildren();
  if (!entry) return;
  for (const s of entry.algo.settings) {
    const id = `${what}-${s.name}`;
    const value = s.name in entry.settings ? entry.settings[s.name] : s.default;
    let input;
    if (s.type === "bool") {
      input = el("input", { id, type: "checkbox", checked: value === true });
    } else if (s.choices.length) {
      input = el("select", { id }, s.choices.map((c) =>
        el("option", { value: c, selected: c === value }, c)));
    } else {
      input = el("input", { id, type: s.type === "str" ? "text" : "number",
        step: s.type === "int" ? "1" : "any", value: value === null ? "" : String(value),
        placeholder: value === null ? "set by the study" : null });
    }
    box.append(el("div", { class: "field" },
      el("label", { for: id }, s.name),
      input,
      el("span", { class: "hint" }, s.help),
      el("span", { class: "hint" }, `allowed: ${s.range}`),
      el("p", { class: "error", "data-error-for": `${what}.${s.name}`, "aria-live": "polite" })));
  }
}

// -- the body, checked field by field ------------------------------------------------------

// Every field the page can check before sending, each bad one collected (never only the
// first): the same words and bounds as the API's 422, so a message reads the same from both.
class Problems {
  constructor() { this.list = []; }
  add(field, message) { this.list.push({ field, message }); }
}

// A whole number of a bounded field (epochs, seed, budget, parallelism): its words name the
// allowed range ("a whole number of trials from 1 to 100000").
function wholeNumber(input, field, problems) {
  const raw = input.value.trim();
  const v = Number(raw);
  const low = Number(input.min);
  const high = Number(input.max);
  if (raw === "" || !Number.isInteger(v) || (input.min !== "" && v < low) ||
      (input.max !== "" && v > high)) {
    problems.add(field, input.dataset.words || "a whole number");
    return null;
  }
  return v;
}

// A number, or null with a problem saying what is allowed.
function number(input, field, problems, allowed = "a number") {
  const raw = input.value.trim();
  if (raw === "" || !Number.isFinite(Number(raw))) {
    problems.add(field, raw === "" ? `none given, allowed: ${allowed}` :
      `got ${JSON.stringify(raw)}, allowed: ${allowed}`);
    return null;
  }
  return Number(raw);
}

// A hyperparameter's value against the trainer's range, as the row's data attributes give it.
function withinSpec(tr, v) {
  const d = tr.dataset;
  if (d.low === undefined) return true;
  if (d.kind === "int" && !Number.isInteger(v)) return false;
  const low = Number(d.low);
  const high = Number(d.high);
  const lowOk = "lowOpen" in d ? v > low : v >= low;
  const highOk = "highOpen" in d ? v < high : v <= high;
  return lowOk && highOk;
}

function hparamNumber(tr, input, problems, what = "") {
  const name = tr.dataset.hparam;
  const field = `space.${name}`;
  const v = number(input, field, problems, tr.dataset.allowed);
  if (v === null) return null;
  if (!withinSpec(tr, v)) {
    problems.add(field, `${what}got ${v}, allowed: ${tr.dataset.allowed}`);
    return null;
  }
  return v;
}

function fixedValue(tr, problems) {
  const name = tr.dataset.hparam;
  const input = document.getElementById(`hp-${name}-value`);
  const kind = tr.dataset.kind;
  if (kind === "bool") return input.checked;
  if (kind === "choice") return input.value;
  return hparamNumber(tr, input, problems);
}

const LOG_SCALES = new Set(["log_uniform", "log_int"]);

function rangeValue(tr, problems) {
  const name = tr.dataset.hparam;
  const field = `space.${name}`;
  const dist = tr.querySelector(".hp-scale").value;
  if (dist === "choice") {
    const picked = [...tr.querySelectorAll(".hp-choice:checked")].map((c) =>
      (tr.dataset.kind === "bool" ? c.value === "true" : c.value));
    if (picked.length === 0) problems.add(field, "pick at least one choice");
    return { dist, values: picked };
  }
  const before = problems.list.length;
  const low = hparamNumber(tr, tr.querySelector(".hp-low"), problems, "low: ");
  const high = hparamNumber(tr, tr.querySelector(".hp-high"), problems, "high: ");
  if (problems.list.length === before) {
    if (LOG_SCALES.has(dist) && !(low > 0)) {
      problems.add(field, `low: got ${low}, allowed: > 0 on a log scale`);
    } else if (!(low < high)) {
      problems.add(field, `low (${low}) must be smaller than high (${high})`);
    }
  }
  return { dist, low, high };
}

// The sampler's or scheduler's settings that differ from their defaults, checked as numbers.
function algorithm(what, problems) {
  const value = document.getElementById(what).value;
  if (value === "") return null;
  const entry = entries[what][value];
  if (!entry) return value; // the catalogue did not load: the default as the page has it
  const settings = {};
  for (const s of entry.algo.settings) {
    const input = document.getElementById(`${what}-${s.name}`);
    let v;
    if (s.type === "bool") v = input.checked;
    else if (s.type === "str") v = input.value;
    else if (input.value.trim() === "" && s.default === null) continue;
    else {
      v = number(input, `${what}.${s.name}`, problems, s.range);
      if (v !== null && s.type === "int" && !Number.isInteger(v)) {
        problems.add(`${what}.${s.name}`, `got ${v}, allowed: ${s.range}`);
      }
    }
    if (v !== s.default) settings[s.name] = v;
  }
  return Object.keys(settings).length ? { name: entry.algo.name, ...settings } : entry.algo.name;
}

function taskOptions(problems) {
  const out = {};
  // [data-option]: the file picker next to "path" is not an option of its own.
  for (const input of document.querySelectorAll("#task-options input[data-option]")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    const type = input.dataset.type;
    const field = `task_options.${input.dataset.option}`;
    if (type === "int" || type === "float") {
      out[input.dataset.option] = number(input, field, problems);
    } else if (type === "float_list") {
      const values = raw.split(",").map((x) => Number(x.trim()));
      if (values.some((x) => !Number.isFinite(x))) {
        problems.add(field, `got ${JSON.stringify(raw)}, allowed: numbers separated by commas`);
      }
      out[input.dataset.option] = values;
    } else out[input.dataset.option] = raw;
  }
  return out;
}

// The server's rule, checked before sending: an optimizer's hyperparameter (momentum, beta1,
// beta2, epsilon) ranged while no optimizer the space tries reads it is refused.
const READS = JSON.parse(form.dataset.optimizerHparams || "{}");

function checkOptimizers(space, problems) {
  const opt = space.optimizer;
  const ranged = opt !== null && typeof opt === "object";
  const tried = ranged ? opt.values : [opt === undefined ? form.dataset.optimizerDefault : opt];
  const said = ranged ? `one of ${tried.map((o) => `'${o}'`).join(", ")}` : `'${tried[0]}'`;
  for (const [name, value] of Object.entries(space)) {
    if (value === null || typeof value !== "object") continue;
    const users = Object.keys(READS).filter((o) => READS[o].includes(name));
    if (!users.length || users.some((o) => tried.includes(o))) continue;
    problems.add(`space.${name}`, `ranged, but no optimizer of this space uses it ` +
      `(optimizer: ${said}; ${name} is used by ${users.map((o) => `'${o}'`).join(" and ")}): ` +
      `fix ${name}, or let optimizer be one that uses it`);
  }
}

// The POST /api/studies body and every problem the page found in it.
function collect() {
  const problems = new Problems();
  const caviar = mode() === "caviar";
  const own = external();
  const space = {};
  for (const tr of document.querySelectorAll("tr[data-hparam]")) {
    if (own && !tr.querySelector(".hp-use").checked) continue;
    const ranged = caviar && tr.querySelector(".hp-mode").value === "range";
    space[tr.dataset.hparam] = ranged ? rangeValue(tr, problems) : fixedValue(tr, problems);
  }
  if (own) ownHparams(space, problems, caviar);
  else if (caviar) checkOptimizers(space, problems); // the built-in trainer's rule
  const nameInput = document.getElementById("name");
  const name = nameInput.value.trim();
  if (name === "") problems.add("name", nameInput.dataset.words);
  const out = {
    name,
    mode: mode(),
    task: taskSelect.value,
    task_options: own ? {} : taskOptions(problems),
    space,
    objective: objective(problems),
    epochs: wholeNumber(document.getElementById("epochs"), "epochs", problems),
    seed: wholeNumber(document.getElementById("seed"), "seed", problems),
  };
  if (caviar) {
    out.budget = { trials: wholeNumber(document.getElementById("budget"), "budget.trials",
      problems) };
    out.parallelism = wholeNumber(document.getElementById("parallelism"), "parallelism",
      problems);
    out.sampler = algorithm("sampler", problems);
    const scheduler = algorithm("scheduler", problems);
    if (scheduler !== null) out.scheduler = scheduler;
  }
  return { body: out, problems: problems.list };
}

// -- errors next to their field --------------------------------------------------------------

function clearErrors() {
  form.querySelectorAll(".error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  flash("");
}

function errorSlot(field) {
  let name = field || "";
  while (name) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) return slot;
    name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
  }
  return null;
}

// What a slot shows: a hyperparameter's row names it ("learning_rate: got -1, allowed: ...");
// a labelled field shows the message alone ("give the study a name").
function said(field, message) {
  return field && field.startsWith("space.") ? `${field.slice(6)}: ${message}` : message;
}

// Every error next to its field at once; one the form has no place for goes to the banner.
function showErrors(errors) {
  const bySlot = new Map();
  const unplaced = [];
  for (const { field, message } of errors) {
    const slot = errorSlot(field);
    if (!slot) {
      unplaced.push(field ? `${field}: ${message}` : message);
      continue;
    }
    if (!bySlot.has(slot)) bySlot.set(slot, []);
    bySlot.get(slot).push(said(field, message));
  }
  let first = null;
  for (const [slot, messages] of bySlot) {
    slot.textContent = [...new Set(messages)].join("; ");
    const scope = slot.closest("tr, .field") || slot.parentElement;
    scope.querySelectorAll("input, select").forEach((n) => {
      if (!n.closest("[hidden]")) n.setAttribute("aria-invalid", "true");
    });
    first = first || scope.querySelector("input:not([type=hidden]):not([hidden]), select") || slot;
  }
  if (first) first.scrollIntoView({ block: "center" });
  const n = bySlot.size;
  const marked = n === 0 ? "" : n === 1 ? " fix the field marked below" :
    ` fix the ${n} fields marked below`;
  flash(`The study was not created:${marked}${marked && unplaced.length ? ";" : ""}` +
    (unplaced.length ? ` ${unplaced.join("; ")}` : "") + ".");
}

// The API's 422: every bad field in `errors`; an older server names one (`field`, `detail`).
function apiErrors(err) {
  if (Array.isArray(err.errors) && err.errors.length) return err.errors;
  const field = err.field || null;
  const message = field ? err.message.replace(`${field}: `, "") : err.message;
  return [{ field, message }];
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const button = document.getElementById("create");
  const { body: payload, problems } = collect();
  if (problems.length) {
    showErrors(problems);
    return;
  }
  button.disabled = true;
  formStatus.textContent = "Creating…";
  try {
    const study = await post("/api/studies", payload);
    if (study.mode === "panda") {
      const trial = await post(`/api/studies/${study.id}/trials`, { hparams: {} });
      // The user's own loop: the study page says how to run it.
      window.location.assign(study.task === EXTERNAL ? `/studies/${study.id}`
        : `/trials/${trial.id}`);
    } else {
      window.location.assign(`/studies/${study.id}`);
    }
  } catch (err) {
    formStatus.textContent = "";
    button.disabled = false;
    showErrors(apiErrors(err));
  }
}

// -- the plan: what early stopping will do with this budget ---------------------------------

const planLine = document.getElementById("scheduler-plan");
let planTimer = null;
let planAsked = 0;

// Asked again (debounced) whenever the form changes: the server fits the scheduler's defaults
// to the budget and says in words where it decides and how many trials train in full.
async function showPlan() {
  const asked = ++planAsked;
  const { body: payload, problems } = collect();
  if (problems.length) {
    planLine.textContent = "";
    return;
  }
  if (payload.mode !== "caviar" || !payload.scheduler) {
    planLine.textContent = "";
    return;
  }
  try {
    const answer = await post("/api/studies/plan", payload);
    if (asked === planAsked) planLine.textContent = answer.plan ? `Plan: ${answer.plan}.` : "";
  } catch (err) {
    if (asked === planAsked) planLine.textContent = "";
  }
}

function planSoon() {
  clearTimeout(planTimer);
  planTimer = setTimeout(showPlan, 250);
}

form.addEventListener("input", planSoon);
form.addEventListener("change", planSoon);
form.addEventListener("submit", submit);
form.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", showForm));
form.addEventListener("change", (e) => {
  if (e.target.matches(".hp-mode, .hp-use, .hp-scale")) showRow(e.target.closest("tr"));
});
taskSelect.addEventListener("change", showTask);
document.getElementById("add-hparam").addEventListener("click", addOwnRow);
document.getElementById("objective-metric").addEventListener("input", showMetric);
document.getElementById("objective-direction").addEventListener("change", (e) => {
  e.target.dataset.picked = "yes";
});
for (const what of ["sampler", "scheduler"]) {
  document.getElementById(what).addEventListener("change", () => showSettings(what));
}
showForm();
loadTasks();
loadAlgorithms();
