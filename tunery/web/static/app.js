// Shared by every page: the API key, API calls, building DOM nodes, formatting, and the
// loading / empty / error states. Text always goes in as text nodes, never as HTML.

const KEY_STORAGE = "tunery.apiKey";

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Turn a fetch Response that is not ok into an ApiError with the server's own message. */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: keep the status line
  }
  const message = body?.error?.message || `${response.status} ${response.statusText}`;
  const error = new ApiError(response.status, message, body?.error?.code);
  if (response.status === 401) keyNeeded();
  return error;
}

/** Call the API as the stored key; JSON in and out. Throws ApiError (status 0 when unreachable). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server cannot be reached. Is `tunery serve` still running?");
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

/** Every page of a cursor-paginated OpenAI list, oldest page last. */
export async function listAll(path, limit = 100) {
  const items = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    items.push(...page.data);
    if (!page.has_more || page.data.length === 0) return items;
    after = page.data[page.data.length - 1].id;
  }
}

// ---------------------------------------------------------------------------------------------
// DOM

/** el("a", {href: "/", class: "x", onclick: fn}, "text", child, ...): children are text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const main = () => document.getElementById("main");

/** Replace a node's children, skipping null / false (optional parts of a page). */
export function fill(target, ...children) {
  target.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return target;
}

export function loading(target, what = "Loading…") {
  target.replaceChildren(el("div", { class: "state loading", role: "status" }, el("span", { class: "spinner" }), what));
}

export function empty(target, title, ...body) {
  target.replaceChildren(el("div", { class: "state empty" }, el("h3", {}, title), ...body));
}

/** An error state: what failed, the server's message, and a retry button when given one. */
export function failed(target, error, retry) {
  const status = error instanceof ApiError ? error.status : null;
  const key = getKey();
  let title = "Something went wrong";
  let text = error.message;
  if (status === 401 && key) {
    title = "This API key was not accepted";
    text = `The server refused the key stored in this browser (${key.slice(0, 6)}…). Enter a valid key at the top right.`;
  } else if (status === 401) {
    title = "An API key is needed";
    text = "This server requires an API key. Enter yours in the box at the top right.";
  } else if (status === 404) {
    title = "Not found";
  } else if (status === 0) {
    title = "The server cannot be reached";
  } else if (status >= 500) {
    title = "The server failed";
  } else if (status >= 400) {
    title = "The server refused this request";
  }
  const [href, text404] = location.pathname.startsWith("/files") ? ["/files", "Back to the files"] : ["/", "Back to the jobs"];
  const home = status === 404 ? el("a", { href }, text404) : null;
  target.replaceChildren(
    el(
      "div",
      { class: "state error", role: "alert" },
      el("h3", {}, title),
      el("p", {}, text),
      retry && status !== 401 && status !== 404 ? el("button", { type: "button", onclick: retry }, "Try again") : home,
    ),
  );
}

export function badge(status) {
  return el("span", { class: `badge status-${status}` }, status.replaceAll("_", " "));
}

export function card(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", {}, title) : null, ...children);
}

/** A table from column names and rows of cells (text or nodes). */
export function table(columns, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  );
}

export function progressBar(done, total) {
  const share = total ? Math.min(1, done / total) : 0;
  const fill = el("div", { class: "progress-fill" });
  fill.style.width = `${(share * 100).toFixed(1)}%`; // CSSOM, not a style attribute: the CSP forbids those
  return el(
    "div",
    { class: "progress", role: "progressbar", "aria-valuenow": String(done), "aria-valuemax": String(total || 0) },
    fill,
    el("span", { class: "progress-text" }, total ? `${done}/${total}` : "–"),
  );
}

/** A model name linking to the playground; with `served` (the ids of /v1/models), a deleted model
 * keeps its name, as OpenAI's job object does, but says it is deleted and links nowhere. */
export function modelLink(model, served = null) {
  if (served && !served.has(model)) return el("span", { class: "mono muted", title: "deleted: it can no longer be used" }, `${model} (deleted)`);
  return el("a", { href: `/playground?model=${encodeURIComponent(model)}`, class: "mono" }, model);
}

/** The ids of the models this key can use now (/v1/models). */
export async function servedModels() {
  const page = await api("/v1/models");
  return new Set(page.data.map((m) => m.id));
}

// ---------------------------------------------------------------------------------------------
// Formatting

export const fmt = {
  time: (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–"),
  ago(ts) {
    if (!ts) return "–";
    const s = Math.round(Date.now() / 1000 - ts);
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },
  until(ts) {
    if (!ts) return "–";
    const s = Math.round(ts - Date.now() / 1000);
    if (s <= 0) return "any moment";
    if (s < 60) return `in ${s} s`;
    if (s < 3600) return `in ${Math.round(s / 60)} min`;
    return `in ${(s / 3600).toFixed(1)} h`;
  },
  bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  },
  num(x, digits = 4) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (Number.isInteger(x)) return x.toLocaleString();
    return Math.abs(x) >= 1000 ? Math.round(x).toLocaleString() : x.toPrecision(digits).replace(/\.?0+$/, "");
  },
};

export function query(name) {
  return new URLSearchParams(location.search).get(name);
}

// ---------------------------------------------------------------------------------------------
// The header: which page is open, and the API key box.

function markNav() {
  const path = location.pathname;
  const current = path === "/" || path.startsWith("/jobs") ? "jobs" : path.split("/")[1];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === current) link.setAttribute("aria-current", "page");
  }
}

function keyNeeded() {
  const input = document.querySelector("#keybar input");
  if (input) {
    input.classList.add("attention");
    input.focus();
  } else {
    renderKeybar(true, getKey() ? "key not accepted" : "");
  }
}

/** Show, in `target`, the organisation the stored key acts for (or that it is not accepted). */
async function showIdentity(target) {
  try {
    const who = await api("/v1/tunery/session");
    target.textContent = who.local_mode ? "local mode" : who.organization;
    if (who.local_mode) target.title = "no API keys are configured on this server";
  } catch (error) {
    target.textContent = error.status === 401 ? (getKey() ? "key not accepted" : "no key") : "offline";
    target.classList.add("bad");
  }
}

function renderKeybar(editing = false, problem = "") {
  const bar = document.getElementById("keybar");
  const key = getKey();
  if (key && !editing) {
    const who = el("span", { class: "who" }, "…");
    bar.replaceChildren(
      who,
      el("span", { class: "key mono", title: "API key stored in this browser" }, `${key.slice(0, 6)}…`),
      el("button", { type: "button", class: "link", onclick: () => renderKeybar(true) }, "change key"),
      el("button", { type: "button", class: "link", onclick: () => { setKey(""); location.reload(); } }, "forget"),
    );
    showIdentity(who);
    return;
  }
  const input = el("input", { type: "password", name: "api-key", placeholder: "API key (sk-…)", autocomplete: "off", "aria-label": "API key" });
  const form = el(
    "form",
    { class: "keyform", onsubmit: (event) => { event.preventDefault(); setKey(input.value.trim()); location.reload(); } },
    input,
    el("button", { type: "submit" }, "Use key"),
  );
  const who = el("span", { class: problem ? "who bad" : "who" }, problem);
  bar.replaceChildren(form, who);
  if (!key) showIdentity(who);
  if (problem) input.focus();
}

/** Every page calls this first. */
export function startPage(title) {
  document.title = `${title} · tunery`;
  markNav();
  renderKeybar();
  return main();
}
