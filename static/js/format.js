// How every page names a trial and writes a hyperparameter's value: one rule each, shared by
// the studies list, the study page, the compare page and the trial page (tables, legends,
// tooltips, forms), so the same trial and the same value read the same wherever they appear.

// -- trial names -----------------------------------------------------------------------------

// A trial is "Trial N", N its `number` in its study as the API, the exports and the trials
// table's order give it (0, 1, 2, ... in creation order, forks and re-tests included; Optuna
// counts the same way). Not its database id: ids run across every study, so a study's first
// trial could be "trial 37" on one page and "#0" on another, and a user would not know they
// are the same. Links still go by id (/trials/{id}); where trials of several studies share a
// page (compare), the study's name follows the number: "Trial 0 · digits search".
export function trialName(trial, studyName) {
  const name = `Trial ${trial.number}`;
  return studyName ? `${name} · ${studyName}` : name;
}

// -- distributions in words ------------------------------------------------------------------

export const DIST_WORDS = {
  uniform: "uniform",
  log_uniform: "log-uniform",
  one_minus_log_uniform: "log on 1 − β",
  int_uniform: "integer",
  log_int: "log-integer (powers of 2)",
  choice: "choice",
};

export function distWords(dist) {
  return DIST_WORDS[dist] || String(dist).replaceAll("_", " ");
}

// -- hyperparameter values -------------------------------------------------------------------

// Each hyperparameter's natural scale, the one the new-study form pre-fills (the server writes
// it into every page: app/web/pages.py HPARAM_SCALES). A study's own space overrides it for
// what the study ranges; a fixed value is shown on its natural scale.
const NATURAL = (() => {
  const node = typeof document === "undefined" ? null : document.getElementById("hparam-scales");
  try {
    return node ? JSON.parse(node.textContent) : {};
  } catch {
    return {};
  }
})();

// The distribution `name` is drawn on in a study with this `space` (its own range, else the
// natural scale), or null for a name the catalogue does not know.
export function distOf(name, space) {
  const d = space && space[name];
  if (d && typeof d === "object" && d.dist) return d.dist;
  return NATURAL[name] || null;
}

// Log-scale values (learning rate, l2, epsilon, lr decay): 3 significant digits in scientific
// notation, "2.11e-4", so a column of them lines up and compares by exponent.
export function sci(v) {
  return v === 0 ? "0" : v.toExponential(2);
}

// Linear values: plain and short (4 significant digits, no exponent): "0.85", "12.5".
export function plain(v) {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-6 || a >= 1e21)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

// Momentum and the betas are drawn log-uniformly on 1 − β: what matters is 1 − β to 3
// significant digits (0.9876 has 1 − β = 1.24e-2), so β is written with exactly the decimals
// that carry them, trailing zeros dropped: 0.9, 0.99, 0.9876, 0.99912.
export function oneMinus(v) {
  const rest = 1 - v;
  if (!(rest > 0 && rest < 1)) return plain(v);
  const r = Number(rest.toPrecision(3));
  const decimals = Math.max(0, 2 - Math.floor(Math.log10(r)));
  return String(Number((1 - r).toFixed(decimals)));
}

// A value of hyperparameter `name` in a study with this `space`, on its scale.
export function formatHparam(name, v, space) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  return formatOnScale(distOf(name, space), v);
}

// A number on the scale of distribution `dist` (an axis tick, a range's bound).
export function formatOnScale(dist, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  if (dist === "log_uniform") return sci(v);
  if (dist === "one_minus_log_uniform") return oneMinus(v);
  return plain(v);
}

// Writes a value into a form's input on its scale, and remembers the text shown: a learning
// rate of 0.000123456 shows as 1.23e-4, and leaving the field alone must not send 0.000123.
export function fillInput(input, name, v, space) {
  input.value = v === null || v === undefined ? "" : inputText(name, v, space);
  input.dataset.shown = input.value;
}

function inputText(name, v, space) {
  return typeof v === "number" && Number.isFinite(v) ? formatHparam(name, v, space) : String(v);
}

// Whether the user left the input as fillInput wrote it (its value is then the one filled in).
export function untouched(input) {
  return input.dataset.shown !== undefined && input.value === input.dataset.shown;
}

// A ranged hyperparameter in words: "log-uniform [1.00e-4, 1.00e+0]", "choice of relu, tanh".
export function rangeText(name, dist) {
  if (!dist || typeof dist !== "object") return formatHparam(name, dist);
  if (dist.dist === "choice") return `choice of ${(dist.values || []).join(", ")}`;
  const f = (v) => formatOnScale(dist.dist, v);
  return `${distWords(dist.dist)} [${f(dist.low)}, ${f(dist.high)}]`;
}
