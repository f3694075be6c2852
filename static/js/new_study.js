// New study form: builds the POST /api/studies body, checks every field it can before sending,
// and shows each bad field's message next to it at once (its own checks or the API's 422).

import { el, flash, get, hasRoute, post } from "./api.js";

const form = document.getElementById("study-form");
const taskSelect = document.getElementById("task");
const formStatus = document.getElementById("form-status");
let tasks = {};

const mode = () => form.querySelector("input[name=mode]:checked").value;

function showMode() {
  const caviar = mode() === "caviar";
  document.querySelectorAll(".caviar-only").forEach((n) => { n.hidden = !caviar; });
  document.querySelectorAll(".panda-only").forEach((n) => { n.hidden = caviar; });
  document.querySelectorAll("tr[data-hparam]").forEach(showRow);
}

function showRow(tr) {
  const ranged = mode() === "caviar" && tr.querySelector(".hp-mode").value === "range";
  tr.querySelector(".hp-fixed").hidden = ranged;
  tr.querySelector(".hp-range").hidden = !ranged;
}

// -- tasks -----------------------------------------------------------------------------------

async function loadTasks() {
  try {
    const page = await get("/api/tasks");
    tasks = Object.fromEntries(page.data.map((t) => [t.name, t]));
    taskSelect.replaceChildren(...page.data.map((t) =>
      el("option", { value: t.name, selected: t.name === "digits" }, `${t.name} (${t.kind})`)));
    showTask();
  } catch (err) {
    flash(`Could not load the tasks: ${err.message}`);
  }
}

function showTask() {
  const task = tasks[taskSelect.value];
  document.getElementById("task-description").textContent = task ? task.description : "";
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
  const space = {};
  for (const tr of document.querySelectorAll("tr[data-hparam]")) {
    const ranged = caviar && tr.querySelector(".hp-mode").value === "range";
    space[tr.dataset.hparam] = ranged ? rangeValue(tr, problems) : fixedValue(tr, problems);
  }
  if (caviar) checkOptimizers(space, problems);
  const nameInput = document.getElementById("name");
  const name = nameInput.value.trim();
  if (name === "") problems.add("name", nameInput.dataset.words);
  const out = {
    name,
    mode: mode(),
    task: taskSelect.value,
    task_options: taskOptions(problems),
    space,
    objective: { metric: document.getElementById("objective").value },
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
      window.location.assign(`/trials/${trial.id}`);
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
form.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", showMode));
form.querySelectorAll(".hp-mode").forEach((s) =>
  s.addEventListener("change", () => showRow(s.closest("tr"))));
taskSelect.addEventListener("change", showTask);
for (const what of ["sampler", "scheduler"]) {
  document.getElementById(what).addEventListener("change", () => showSettings(what));
}
showMode();
loadTasks();
loadAlgorithms();
