// API reference: every path of the server's OpenAPI schema, grouped by tag, with its parameters and
// its request and response bodies (fields, types, descriptions). It needs nothing but /openapi.json,
// which this server writes itself; Swagger UI (FastAPI's /docs) would load from a CDN, so it is off.
import { authHeaders, card, el, failed, fill, loading, startPage, table } from "./app.js";

const root = startPage("API reference");
const METHODS = ["get", "post", "put", "patch", "delete"];

function operations(schema) {
  const byTag = new Map();
  for (const [path, item] of Object.entries(schema.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  return byTag;
}

// A schema as a list of its fields: "name: type, required — description", nested objects indented.
function resolve(schema, spec) {
  let node = schema;
  for (let i = 0; node?.$ref && i < 20; i++) node = node.$ref.split("/").slice(1).reduce((o, k) => o?.[k], spec);
  return node || {};
}

function typeOf(schema, spec) {
  const node = resolve(schema, spec);
  if (schema?.$ref) return schema.$ref.split("/").pop();
  if (node.enum) return node.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (node.const !== undefined) return JSON.stringify(node.const);
  const options = node.anyOf || node.oneOf;
  if (options) return options.map((o) => typeOf(o, spec)).join(" | ");
  if (node.type === "array") return `array of ${typeOf(node.items || {}, spec)}`;
  return node.type || "any";
}

function fields(schema, spec, depth = 0, seen = new Set()) {
  const node = resolve(schema, spec);
  const props = node.properties || {};
  const required = new Set(node.required || []);
  const rows = [];
  for (const [name, prop] of Object.entries(props)) {
    const about = resolve(prop, spec).description || prop.description || "";
    rows.push(el("li", { class: `depth-${depth}` }, el("code", {}, name), `: ${typeOf(prop, spec)}`,
      required.has(name) ? el("strong", {}, " required") : null, about ? el("span", { class: "muted" }, ` — ${about.split("\n")[0]}`) : null));
    const ref = prop.$ref || prop.anyOf?.find((o) => o.$ref)?.$ref;
    if (ref && depth < 2 && !seen.has(ref)) rows.push(...fields({ $ref: ref }, spec, depth + 1, new Set([...seen, ref])));
  }
  return rows;
}

function bodies(op, spec) {
  const request = op.requestBody?.content?.["application/json"]?.schema;
  const ok = Object.entries(op.responses || {}).find(([code]) => code.startsWith("2"));
  const response = ok?.[1]?.content?.["application/json"]?.schema;
  const part = (title, schema) => {
    if (!schema) return null;
    const rows = fields(schema, spec);
    return el("div", {}, el("div", { class: "small" }, `${title}: `, el("code", {}, typeOf(schema, spec))), rows.length ? el("ul", { class: "schema" }, rows) : null);
  };
  const parts = [part("request body", request), part("response", response)].filter(Boolean);
  return parts.length ? el("details", { class: "bodies" }, el("summary", {}, "request and response"), parts) : "–";
}

function paramsOf(op) {
  const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`);
  const body = op.requestBody?.content ? Object.keys(op.requestBody.content).map((type) => `body: ${type}`) : [];
  return [...params, ...body].join(", ") || "–";
}

async function start() {
  loading(root, "Loading the API schema…");
  let schema;
  try {
    const response = await fetch("/openapi.json", { headers: authHeaders() });
    if (!response.ok) throw new Error(`/openapi.json: ${response.status} ${response.statusText}`);
    schema = await response.json();
  } catch (error) {
    return failed(root, error, start);
  }
  const groups = [...operations(schema)].sort(([a], [b]) => a.localeCompare(b));
  fill(root,
    el("div", { class: "page-head" }, el("h1", {}, `${schema.info?.title || "API"} ${schema.info?.version || ""}`)),
    el("p", { class: "sub" }, "OpenAI-compatible under /v1: the official openai clients work with base_url set to this server's /v1. Send the API key as ",
      el("code", {}, "Authorization: Bearer sk-…"), ". The machine-readable schema is ", el("a", { href: "/openapi.json" }, "/openapi.json"),
      "; each operation's request and response bodies open below."),
    groups.map(([tag, ops]) => card(tag, el("div", { class: "scroll" }, table(["method", "path", "what it does", "parameters", "bodies"],
      ops.map(({ path, method, op }) => [el("code", {}, method.toUpperCase()), el("code", {}, path), op.description?.split("\n")[0] || op.summary || "–", el("span", { class: "small" }, paramsOf(op)), bodies(op, schema)]),
      { class: "api-table" })))),
  );
}

start();
