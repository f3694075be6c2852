// New study form: builds the POST /api/studies body; shows the API's 422 next to its field.

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

// The body's sampler or scheduler: its name, or {name, ...settings} with the settings that
// differ from their defaults; null for no scheduler.
function algorithm(what) {
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
    else v = number(input, `${what}.${s.name}`);
    if (v !== s.default) settings[s.name] = v;
  }
  return Object.keys(settings).length ? { name: entry.algo.name, ...settings } : entry.algo.name;
}

function taskOptions() {
  const out = {};
  // [data-option]: the file picker next to "path" is not an option of its own.
  for (const input of document.querySelectorAll("#task-options input[data-option]")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    const type = input.dataset.type;
    if (type === "int" || type === "float") out[input.dataset.option] = Number(raw);
    else if (type === "float_list") out[input.dataset.option] = raw.split(",").map(Number);
    else out[input.dataset.option] = raw;
  }
  return out;
}

// -- the body --------------------------------------------------------------------------------

class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function number(input, field) {
  const raw = input.value.trim();
  if (raw === "" || !Number.isFinite(Number(raw))) {
    throw new FieldError(field, `${field.replace("space.", "")}: enter a number`);
  }
  return Number(raw);
}

function fixedValue(tr) {
  const name = tr.dataset.hparam;
  const input = document.getElementById(`hp-${name}-value`);
  const kind = tr.dataset.kind;
  if (kind === "bool") return input.checked;
  if (kind === "choice") return input.value;
  return number(input, `space.${name}`);
}

function rangeValue(tr) {
  const name = tr.dataset.hparam;
  const field = `space.${name}`;
  const dist = tr.querySelector(".hp-scale").value;
  if (dist === "choice") {
    const picked = [...tr.querySelectorAll(".hp-choice:checked")].map((c) =>
      (tr.dataset.kind === "bool" ? c.value === "true" : c.value));
    if (picked.length === 0) throw new FieldError(field, `${name}: pick at least one choice`);
    return { dist, values: picked };
  }
  const low = number(tr.querySelector(".hp-low"), field);
  const high = number(tr.querySelector(".hp-high"), field);
  if (!(low < high)) {
    throw new FieldError(field, `${name}: low (${low}) must be smaller than high (${high})`);
  }
  return { dist, low, high };
}

function body() {
  const caviar = mode() === "caviar";
  const space = {};
  for (const tr of document.querySelectorAll("tr[data-hparam]")) {
    const ranged = caviar && tr.querySelector(".hp-mode").value === "range";
    space[tr.dataset.hparam] = ranged ? rangeValue(tr) : fixedValue(tr);
  }
  const out = {
    name: document.getElementById("name").value.trim(),
    mode: mode(),
    task: taskSelect.value,
    task_options: taskOptions(),
    space,
    objective: { metric: document.getElementById("objective").value },
    epochs: number(document.getElementById("epochs"), "epochs"),
    seed: number(document.getElementById("seed"), "seed"),
  };
  if (caviar) {
    out.budget = { trials: number(document.getElementById("budget"), "budget.trials") };
    out.parallelism = number(document.getElementById("parallelism"), "parallelism");
    out.sampler = algorithm("sampler");
    const scheduler = algorithm("scheduler");
    if (scheduler !== null) out.scheduler = scheduler;
  }
  return out;
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

function showError(field, message) {
  const slot = errorSlot(field);
  if (!slot) {
    flash(message);
    return;
  }
  slot.textContent = message;
  const scope = slot.closest("tr, .field") || slot.parentElement;
  const input = scope.querySelector("input:not([type=hidden]):not([hidden]), select");
  scope.querySelectorAll("input, select").forEach((n) => {
    if (!n.closest("[hidden]")) n.setAttribute("aria-invalid", "true");
  });
  (input || slot).scrollIntoView({ block: "center" });
  flash("The study was not created: fix the field marked below.");
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const button = document.getElementById("create");
  let payload;
  try {
    payload = body();
  } catch (err) {
    if (err instanceof FieldError) return showError(err.field, err.message);
    throw err;
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
    showError(err.field, err.message);
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
  let payload;
  try {
    payload = body();
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
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
