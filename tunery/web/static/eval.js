// Evaluation page: the reports `tunery compare` / `tunery eval` wrote for the organisation's
// jobs. A compare report shows zero-shot, few-shot and tuned side by side with 95% intervals
// and the verdict, the forgetting probe, and every answer, filterable to the failures.
import { api, card, el, empty, failed, fill, fmt, loading, modelLink, query, startPage, table } from "./app.js";
import { intervalBar } from "./chart.js";

const root = startPage("Evaluation");
const SYSTEM_NAMES = { zero_shot: "zero-shot (base)", few_shot: "few-shot (base)", tuned: "tuned" };

/** An uploaded file is named by its id on the server: link it (and a line of it) to its page. */
function fileRef(name, line) {
  const text = line ? `${name}:${line}` : name;
  if (!/^file-[A-Za-z0-9]+$/.test(name)) return el("span", { class: "mono small" }, text);
  return el("a", { href: `/files/${name}${line ? `#line-${line}` : ""}`, class: "mono small" }, text);
}

function whereCell(where) {
  const [, name, line] = /^(.*):(\d+)$/.exec(where.split("/").pop()) || [null, where.split("/").pop(), null];
  return fileRef(name, line);
}

const reportHref = (s) => `/eval?job=${encodeURIComponent(s.job_id)}&report=${encodeURIComponent(s.name)}`;

function scoreCell(value) {
  if (value === undefined || value === null) return el("span", { class: "muted" }, "–");
  const cls = value >= 1 ? "pass" : value <= 0 ? "fail" : "part";
  return el("span", { class: `score ${cls}` }, fmt.num(value, 2));
}

function metricCell(score) {
  if (!score) return "–";
  return el("span", { class: "row" }, intervalBar(score.mean, score.low, score.high), el("span", { class: "mono" }, `${score.mean.toFixed(3)} (${score.low.toFixed(2)}..${score.high.toFixed(2)})`));
}

function verdictClass(report) {
  if (report.difference.low > 0) return "good";
  if (report.difference.high < 0) return "bad";
  return "neutral";
}

function systemsTable(systems) {
  const names = Object.keys(systems);
  const metrics = Object.keys(systems[names[0]].metrics);
  return el("div", { class: "scroll" }, table(
    ["system", ...metrics.map((m) => `${m} (95% CI)`), "loss", "perplexity", "prompt tokens", "answer tokens", "hit length limit"],
    names.map((name) => {
      const s = systems[name];
      return [el("strong", {}, SYSTEM_NAMES[name] || name), ...metrics.map((m) => metricCell(s.metrics[m])),
        s.loss ? fmt.num(s.loss.loss) : "–", s.loss ? fmt.num(s.loss.perplexity) : "–",
        fmt.num(s.prompt_tokens_per_request, 4), fmt.num(s.output_tokens_per_request, 3), `${s.hit_length_limit} / ${s.n}`];
    }),
    { id: "compare-table" },
  ));
}

function forgettingCard(probe, shift) {
  if (!probe) return card("Forgetting", el("p", { class: "muted", id: "forgetting" }, "Forgetting was not measured for this report (tunery compare --no-forgetting). Without the flag, base and tuned answer 240 general-skill questions and the tuned model reads the base's answers to 310 general prompts."));
  const drop = probe.drop;
  const moved = (skill) => (shift && shift.by_skill[skill]) || null;
  const skills = [...new Set([...Object.keys(probe.by_skill), ...Object.keys(shift ? shift.by_skill : {})])];
  const headers = ["skill", "base", "tuned", "drop (95% CI)", ...(shift ? ["KL nats/token", "extra NLL"] : [])];
  const rows = skills.map((skill) => {
    const v = probe.by_skill[skill];
    const m = moved(skill);
    const cells = v
      ? [scoreCell(v.base), scoreCell(v.tuned), el("span", { class: v.low > 0 ? "bad" : "" }, `${fmt.num(v.base - v.tuned, 2)} (${fmt.num(v.low, 2)}..${fmt.num(v.high, 2)})`)]
      : ["", "", ""];
    return [skill, ...cells, ...(shift ? (m ? [m.kl.toFixed(4), m.extra_nll.toFixed(4)] : ["", ""]) : [])];
  });
  const total = [el("strong", {}, `all (${probe.n} items${shift ? `, ${shift.n} prompts` : ""})`), metricCell(probe.base), metricCell(probe.tuned),
    `${fmt.num(drop.mean, 2)} (${fmt.num(drop.low, 2)}..${fmt.num(drop.high, 2)})`,
    ...(shift ? [`${shift.kl.mean.toFixed(4)} (${shift.kl.low.toFixed(4)}..${shift.kl.high.toFixed(4)})`, `${shift.extra_nll.mean.toFixed(4)} (${shift.extra_nll.low.toFixed(4)}..${shift.extra_nll.high.toFixed(4)})`] : [])];
  return card("Forgetting",
    el("div", { class: `verdict ${drop.low > 0 || Object.values(probe.by_skill).some((v) => v.low > 0) ? "bad" : "neutral"}`, id: "forgetting" }, probe.verdict),
    shift ? el("div", { class: "verdict neutral", id: "distribution" }, shift.verdict) : null,
    table(headers, [...rows, total], { id: "forgetting-table" }));
}

/** Join the per-system rows on the held-out item, so each row reads across the systems. */
function joinRows(rows) {
  const items = new Map();
  for (const row of rows) {
    if (row.system === "forgetting_probe") continue;
    if (!items.has(row.where)) items.set(row.where, { where: row.where, prompt: row.prompt, reference: row.reference, by: {} });
    items.get(row.where).by[row.system || "model"] = row;
  }
  return [...items.values()];
}

function lastUser(prompt) {
  const users = (prompt || []).filter((m) => m.role === "user");
  return users.length ? users[users.length - 1].content : "";
}

function examplesCard(rows, systems, primary, failureSystem) {
  const items = joinRows(rows);
  const onlyFailures = el("input", { type: "checkbox", name: "failures" });
  const search = el("input", { type: "search", name: "search", placeholder: "search prompts and answers" });
  const body = el("div", { class: "scroll" });
  const counter = el("span", { class: "muted small", id: "example-count" });
  const failedItem = (item) => (item.by[failureSystem]?.scores?.[primary] ?? 1) < 1;
  function draw() {
    const text = search.value.trim().toLowerCase();
    const shown = items.filter((item) => (!onlyFailures.checked || failedItem(item))
      && (!text || JSON.stringify([lastUser(item.prompt), item.reference, ...systems.map((s) => item.by[s]?.output)]).toLowerCase().includes(text)));
    counter.textContent = `${shown.length} of ${items.length} examples`;
    if (!shown.length) {
      body.replaceChildren(el("p", { class: "muted" }, onlyFailures.checked ? `No failures: every answer of the ${failureSystem} model scores 1 on ${primary}.` : "No example matches."));
      return;
    }
    body.replaceChildren(table(["example", "prompt", "reference", ...systems.map((s) => SYSTEM_NAMES[s] || s)],
      shown.map((item) => [
        whereCell(item.where),
        el("div", { class: "output" }, lastUser(item.prompt)),
        el("div", { class: "output" }, item.reference),
        ...systems.map((s) => (item.by[s] ? el("div", {}, scoreCell(item.by[s].scores[primary]), el("div", { class: "output" }, item.by[s].output || "(empty)")) : "–")),
      ]), { id: "examples" }));
    body.querySelectorAll("#examples tbody tr").forEach((tr, i) => failedItem(shown[i]) && tr.classList.add("failure"));
  }
  onlyFailures.addEventListener("change", draw);
  search.addEventListener("input", draw);
  draw();
  return card("Answers, example by example",
    el("div", { class: "row" }, el("label", { class: "inline" }, onlyFailures, `only failures (${failureSystem} scores below 1 on ${primary})`), search, counter),
    body);
}

function probeCard(rows) {
  const probe = rows.filter((r) => r.system === "forgetting_probe");
  if (!probe.length) return null;
  const lost = probe.filter((r) => r.tuned_score < r.base_score).length;
  return card(null, el("details", { id: "probe-answers" },
    el("summary", {}, el("strong", {}, `Forgetting probe answers (${probe.length})`), el("span", { class: "muted" }, ` · ${lost} question(s) the base got right and the tuned model got wrong`)),
    el("div", { class: "scroll" }, table(["skill", "question", "base", "tuned"], probe.map((r) => [
      r.skill, el("div", { class: "output" }, r.question),
      el("div", {}, scoreCell(r.base_score), el("div", { class: "output" }, r.base_output || "(empty)")),
      el("div", {}, scoreCell(r.tuned_score), el("div", { class: "output" }, r.tuned_output || "(empty)")),
    ])))));
}

function compareView(view) {
  const r = view.report;
  const fact = (k, v) => el("div", {}, el("dt", {}, k), el("dd", {}, v));
  const systems = Object.keys(r.systems);
  return [
    card(null, el("dl", { class: "facts" },
      fact("Job", el("a", { href: `/jobs/${view.summary.job_id}`, class: "mono" }, view.summary.job_id)),
      fact("Fine-tuned model", view.summary.fine_tuned_model ? modelLink(view.summary.fine_tuned_model) : "–"),
      fact("Held-out data", `${r.data.split("/").pop()} · ${view.summary.n} examples`),
      fact("Few-shot", `${r.shots} shots from ${r.train.split("/").pop()} (seed ${r.seed})`),
      fact("Primary metric", r.primary), fact("Compared against", SYSTEM_NAMES[r.baseline] || r.baseline), fact("Took", `${fmt.num(r.seconds, 3)} s`))),
    card("Was fine-tuning worth it?",
      el("div", { class: `verdict ${verdictClass(r)}`, id: "verdict" }, r.verdict),
      systemsTable(r.systems),
      el("p", { class: "muted small" }, r.token_note)),
    forgettingCard(r.forgetting, r.distribution),
    examplesCard(view.examples, systems, r.primary, "tuned"),
    probeCard(view.examples),
    view.examples_cut ? el("p", { class: "muted small" }, "Only the first 5000 answers are shown.") : null,
  ];
}

function evalView(view) {
  const r = view.report;
  const metrics = Object.entries(r.metrics);
  const fact = (k, v) => el("div", {}, el("dt", {}, k), el("dd", {}, v));
  return [
    card(null, el("dl", { class: "facts" },
      fact("Job", el("a", { href: `/jobs/${view.summary.job_id}`, class: "mono" }, view.summary.job_id)),
      fact("Fine-tuned model", view.summary.fine_tuned_model ? modelLink(view.summary.fine_tuned_model) : "–"),
      fact("Evaluated", r.system), fact("Held-out data", [fileRef(r.data.split("/").pop()), ` · ${r.n} examples`]),
      fact("Graders", r.graders.join(", ")))),
    card(`${r.system} on ${r.data.split("/").pop()} (${r.n} examples)`,
      table(["metric", "mean (95% CI)"], [...metrics.map(([m, s]) => [m, metricCell(s)]),
        ...(r.loss ? [["loss (nats/token)", fmt.num(r.loss.loss)], ["perplexity", fmt.num(r.loss.perplexity)]] : [])], { id: "compare-table" })),
    examplesCard(view.examples.map((row) => ({ ...row, system: "model" })), ["model"], metrics[0]?.[0], "model"),
  ];
}

async function showReport(slot, job, name) {
  loading(slot, "Loading the report…");
  try {
    const view = await api(`/v1/tunery/evals/${encodeURIComponent(job)}/${encodeURIComponent(name)}`);
    fill(slot, view.summary.kind === "compare" ? compareView(view) : evalView(view));
  } catch (error) {
    failed(slot, error, () => showReport(slot, job, name));
  }
}

async function start() {
  loading(root, "Loading evaluation reports…");
  let list;
  try {
    list = await api("/v1/tunery/evals");
  } catch (error) {
    return failed(root, error, start);
  }
  const head = el("div", { class: "page-head" }, el("h1", {}, "Evaluation"));
  if (!list.data.length) {
    root.replaceChildren(head);
    const slot = el("div", {});
    root.append(slot);
    empty(slot, "No evaluation reports yet",
      el("p", {}, "Compare a finished job's model with zero-shot and few-shot prompting of its base on held-out data, and keep the report with the job:"),
      el("pre", {}, list.how_to),
      el("p", {}, "HOME is the server's --home directory. The report then appears here with its verdict, the forgetting probe and every answer."));
    return;
  }
  const wantedJob = query("job");
  const wantedName = query("report");
  const selected = list.data.find((s) => s.job_id === wantedJob && s.name === wantedName) || list.data[0];
  const reports = card("Reports", el("div", { class: "scroll" }, table(["report", "job", "data", "verdict or score", "written"], list.data.map((s) => [
    s === selected ? el("strong", {}, s.name) : el("a", { href: reportHref(s) }, s.name),
    el("a", { href: `/jobs/${s.job_id}`, class: "mono" }, s.job_id),
    [s.data ? fileRef(s.data) : "–", ` · ${s.n ?? "?"}`],
    s.headline,
    fmt.ago(s.created_at),
  ]), { id: "reports" })));
  const slot = el("div", { class: "stack" });
  root.replaceChildren(head, reports, slot);
  showReport(slot, selected.job_id, selected.name);
}

start();
