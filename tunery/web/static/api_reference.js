// API reference: every path of the server's OpenAPI schema, grouped by tag, with its parameters.
// FastAPI's /docs loads Swagger UI from a CDN and is blank offline; this page needs nothing but
// /openapi.json, which this server writes itself.
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
      "; the interactive Swagger UI at ", el("a", { href: "/docs" }, "/docs"), " loads its scripts from the internet."),
    groups.map(([tag, ops]) => card(tag, el("div", { class: "scroll" }, table(["method", "path", "what it does", "parameters"],
      ops.map(({ path, method, op }) => [el("code", {}, method.toUpperCase()), el("code", {}, path), op.description?.split("\n")[0] || op.summary || "–", el("span", { class: "small" }, paramsOf(op))]),
      { class: "api-table" })))),
  );
}

start();
