// The JSON API from the browser: fetch wrappers, the SSE streams, and small formatting helpers.

export class ApiError extends Error {
  // errors: a 422's every bad field, [{field, message}] (the first is `field`).
  constructor(status, detail, field, errors) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
    this.field = field || fieldOf(this.message);
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

// "space.learning_rate: got -1 ..." names its field before the first colon.
function fieldOf(message) {
  const m = /^([A-Za-z_][\w.]*):/.exec(message || "");
  return m ? m[1] : null;
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the server did not answer (${err.message})`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!res.ok) {
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, detail, data && data.field, data && data.errors);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => api("PATCH", path, body);

// Subscribe to a stream; handlers maps SSE event names ("metrics", "state", "event") to callbacks.
export function stream(path, handlers, onStatus) {
  const source = new EventSource(path);
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  }
  source.onopen = () => onStatus && onStatus("live");
  source.onerror = () => onStatus && onStatus(source.readyState === 2 ? "closed" : "reconnecting");
  return source;
}

// The API sends non-finite floats as "nan", "inf", "-inf".
export function num(v) {
  if (typeof v === "number") return v;
  if (v === "inf") return Infinity;
  if (v === "-inf") return -Infinity;
  return NaN;
}

export function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export const FINISHED = new Set(["completed", "failed", "stopped", "pruned"]);

export const STATE_WORDS = {
  queued: "Queued",
  running: "Running",
  paused: "Paused",
  completed: "Completed",
  failed: "Failed",
  stopped: "Stopped",
  pruned: "Pruned (stopped early)",
  active: "Active",
  finished: "Finished",
};

// The state a study shows. The API says "completed" once no trial is open, however its trials
// ended; a study the user stopped, with no trial completed, did not complete: it is "stopped"
// (and "failed" when its trials all failed). The counts per state decide, as the API sends them.
export function studyState(study) {
  if (study.state !== "completed") return study.state;
  const c = study.counts || {};
  if (c.completed) return "completed";
  if (c.stopped) return "stopped";
  if (c.failed && !c.pruned) return "failed";
  return "completed";
}

export function stateBadge(state, extra = "") {
  const span = document.createElement("span");
  span.className = `badge state-${state}`;
  span.textContent = (STATE_WORDS[state] || state) + extra;
  return span;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = `flash flash-${kind}`;
  box.hidden = !message;
}

// `state`: a study's or trial's state; a stopped or failed one's bar is greyed, not "done".
export function progressBar(fraction, label, state) {
  const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const ended = state === "stopped" || state === "failed" ? ` progress-${state}` : "";
  const bar = el("span", { class: `progress${ended}`, role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": String(Math.round(f * 100)),
    "aria-label": label || "progress" });
  bar.append(el("span", { class: "progress-fill", style: `width:${(f * 100).toFixed(1)}%` }));
  bar.append(el("span", { class: "progress-text", text: label || `${Math.round(f * 100)} %` }));
  return bar;
}

export function timeText(iso) {
  if (!iso) return "–";
  const d = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z");
  return d.toLocaleString();
}

// Which optional endpoints this server offers, from its OpenAPI document (asked once), so a
// page never calls a route that is not there.
let openapi = null;
export async function hasRoute(method, path) {
  if (openapi === null) openapi = get("/openapi.json").catch(() => ({ paths: {} }));
  const doc = await openapi;
  const ops = (doc.paths || {})[path];
  return Boolean(ops && ops[method.toLowerCase()]);
}
