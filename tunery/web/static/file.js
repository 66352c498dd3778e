// One file: its validation report grouped by code with links to the lines, statistics with a
// histogram of tokens per example, and a token view where the trained tokens are highlighted
// exactly as the trainer masks them (the server renders them with render_chat).
import { api, authHeaders, badge, card, el, empty, errorOf, failed, fill, fmt, loading, query, startPage, table } from "./app.js";
import { barChart } from "./chart.js";

const fileId = decodeURIComponent(location.pathname.split("/")[2] || "");
const root = startPage(fileId || "File");
const CONTEXT_LINES = 2;

const lineSlot = el("div", { id: "line-view" });

async function showLine() {
  const match = /^#line-(\d+)$/.exec(location.hash);
  if (!match) return lineSlot.replaceChildren();
  const target = Number(match[1]);
  const start = Math.max(1, target - CONTEXT_LINES);
  loading(lineSlot, `Loading line ${target}…`);
  try {
    const { lines } = await api(`/v1/tunery/files/${fileId}/lines?start=${start}&count=${2 * CONTEXT_LINES + 1}`);
    fill(lineSlot, card(`Line ${target} in context`,
      el("div", { class: "lines" }, lines.map((l) => el("div", { class: l.line === target ? "target" : "", id: l.line === target ? "target-line" : null },
        el("span", { class: "n" }, String(l.line)), el("span", {}, l.text || " ", l.cut ? el("span", { class: "muted" }, " … (cut)") : null)))),
      lines.some((l) => l.line === target) ? null : el("p", { class: "muted" }, `The file has no line ${target}.`)));
    lineSlot.scrollIntoView({ behavior: "smooth", block: "center" });
  } catch (error) {
    failed(lineSlot, error);
  }
}
window.addEventListener("hashchange", showLine);

function issueGroups(report, fixes) {
  const byCode = new Map();
  for (const issue of report.issues) {
    if (!byCode.has(issue.code)) byCode.set(issue.code, []);
    byCode.get(issue.code).push(issue);
  }
  const codes = Object.keys(report.issue_counts).sort((a, b) => {
    const sev = (c) => (byCode.get(c)?.[0]?.severity === "error" ? 0 : 1);
    return sev(a) - sev(b) || report.issue_counts[b] - report.issue_counts[a];
  });
  return codes.map((code) => {
    const issues = byCode.get(code) || [];
    const severity = issues[0]?.severity || "error";
    const count = report.issue_counts[code];
    return el("details", { class: "issue-group", open: severity === "error", "data-code": code },
      el("summary", {}, el("span", { class: `badge ${severity}` }, severity), el("code", {}, code), el("span", { class: "count" }, `${count} ${count === 1 ? "issue" : "issues"}`)),
      fixes[code] ? el("p", { class: "fix" }, `How to fix: ${fixes[code]}`) : null,
      el("ul", {}, issues.map((i) => el("li", {},
        i.line ? el("a", { href: `#line-${i.line}` }, `line ${i.line}${i.column ? `, column ${i.column}` : ""}`) : el("span", { class: "muted" }, "whole file"),
        ": ", i.message.split("; fix: ")[0]))),
      count > issues.length ? el("p", { class: "fix" }, `… and ${count - issues.length} more of this kind; \`tunery validate\` lists them all.`) : null);
  });
}

function summaryRow(s) {
  return s ? [fmt.num(s.min), fmt.num(s.mean, 4), fmt.num(s.p95, 4), fmt.num(s.max)] : ["–", "–", "–", "–"];
}

function statsCard(data) {
  const s = data.report.stats;
  const fact = (k, v) => el("div", {}, el("dt", {}, k), el("dd", {}, v));
  const perRole = Object.entries(s.tokens_per_example || {});
  return card("Statistics",
    el("dl", { class: "facts", id: "stats" },
      fact("Format", s.format || "–"),
      fact("Lines", fmt.num(s.lines)),
      fact("Valid examples", fmt.num(s.examples)),
      fact("Trained tokens per epoch", fmt.num(s.trained_tokens)),
      fact("Epochs (auto)", fmt.num(s.estimated_epochs)),
      fact("Trained tokens (auto epochs)", fmt.num(s.estimated_trained_tokens)),
      fact("Examples over the context", `${fmt.num(s.truncated_examples)} (max ${fmt.num(s.max_seq_len)})`),
      fact("Messages per example", s.messages_per_example ? `${s.messages_per_example.min}–${s.messages_per_example.max}, mean ${fmt.num(s.messages_per_example.mean, 3)}` : "–")),
    perRole.length ? el("div", { class: "scroll" }, el("h3", {}, "Tokens per example"),
      table(["", "min", "mean", "p95", "max"], perRole.map(([role, summary]) => [role === "total" ? el("strong", {}, "whole conversation") : role, ...summaryRow(summary)]))) : null);
}

function histogramCard(data) {
  const s = data.report.stats;
  const chart = barChart({
    title: "Tokens per example (rendered with the chat template)", xLabel: "tokens", bins: data.histogram,
    marker: s.max_seq_len && data.histogram.length && s.max_seq_len <= data.histogram[data.histogram.length - 1].high * 1.5 ? { at: s.max_seq_len, label: `context ${s.max_seq_len}` } : null,
  });
  chart.id = "histogram";
  const covered = data.histogram_examples < s.examples ? `the first ${fmt.num(data.histogram_examples)} of ${fmt.num(s.examples)} examples` : `all ${fmt.num(data.histogram_examples)} valid examples`;
  return card("Length histogram", chart, el("p", { class: "muted small" }, `Covers ${covered}, tokenized by ${data.tokenizer.model}.`));
}

function tokenSpan([text, trained]) {
  const special = /^<\|.*\|>$|^<\/?s>$/.test(text);
  const parts = [];
  // Make whitespace visible: a newline shows as ↵ and then breaks the line.
  for (const piece of text.split(/(\n)/)) {
    if (piece === "\n") parts.push(el("span", { class: "ws" }, "↵"), "\n");
    else if (piece) parts.push(piece);
  }
  return el("span", { class: `tok${trained ? " trained" : ""}${special ? " special" : ""}`, title: trained ? "trained (has loss)" : "not trained" }, parts);
}

async function tokenView(slot, note, model, n) {
  loading(slot, "Rendering examples with the chat template…");
  try {
    const cut = query("max_seq_len");
    const view = await api(`/v1/tunery/files/${fileId}/tokens?model=${encodeURIComponent(model)}&n=${n}${cut ? `&max_seq_len=${encodeURIComponent(cut)}` : ""}`);
    note.textContent = cut
      ? `Cut at ${view.max_seq_len} tokens, the max_seq_len of the job that linked here.`
      : `Whole examples, up to ${model}'s context of ${view.max_seq_len} tokens: a job with max_seq_len auto (the default) cuts nothing, and one with a smaller max_seq_len cuts where it says (open the file from that job's page to see its cut).`;
    if (!view.examples.length) return empty(slot, "No valid example to show", el("p", {}, "Fix the errors above; the token view shows the first examples that pass validation."));
    slot.replaceChildren(...view.examples.map((x) => el("div", { class: "token-example", "data-trained": String(x.trained), "data-line": String(x.line) },
      el("h3", {}, el("a", { href: `#line-${x.line}` }, `line ${x.line}`), x.answer ? ` · ${x.answer} answer` : "",
        el("span", { class: "muted small" }, ` · ${x.total} tokens, ${x.trained} trained${x.truncated ? `, ${x.truncated} cut by the context` : ""}`)),
      el("div", { class: "tokens" }, x.tokens.map(tokenSpan)))));
  } catch (error) {
    failed(slot, error, () => tokenView(slot, note, model, n));
  }
}

function tokenCard(model) {
  const slot = el("div", { class: "stack", id: "token-view" });
  const note = el("p", { class: "muted small", id: "token-cut" });
  const count = el("select", { name: "n", onchange: () => tokenView(slot, note, model, count.value) }, [3, 5, 10].map((n) => el("option", { value: String(n) }, `${n} examples`)));
  tokenView(slot, note, model, 3);
  return card("Token view",
    el("div", { class: "legend-row" }, el("span", {}, el("span", { class: "swatch trained" }), "trained: the loss is computed on these tokens"),
      el("span", {}, el("span", { class: "swatch plain" }), "context only"), el("span", { class: "row" }, count)),
    note,
    slot);
}

async function reportSection(slot, model) {
  loading(slot, "Validating the file…");
  try {
    const data = await api(`/v1/tunery/files/${fileId}/report?model=${encodeURIComponent(model)}`);
    const r = data.report;
    const verdict = r.ok
      ? el("div", { class: "notice good", id: "report-verdict" }, `No errors${r.warning_count ? `, ${r.warning_count} warning(s)` : ""}: this file can be trained on.`)
      : el("div", { class: "notice bad", id: "report-verdict" }, `${r.error_count} error(s) and ${r.warning_count} warning(s): fix the errors before training.`);
    const groups = issueGroups(r, data.fixes);
    fill(slot,
      card("Validation report", verdict, groups.length ? el("div", { id: "issues" }, groups) : el("p", { class: "muted" }, "No issues found."),
        r.issues_omitted ? el("p", { class: "muted small" }, `${r.issues_omitted} further issues are counted but not listed.`) : null),
      lineSlot,
      el("div", { class: "grid2" }, statsCard(data), histogramCard(data)),
      el("div", { class: "stack" }, tokenCard(model)),
    );
    showLine();
  } catch (error) {
    failed(slot, error, () => reportSection(slot, model));
  }
}

async function preview(slot) {
  try {
    const { lines } = await api(`/v1/tunery/files/${fileId}/lines?start=1&count=20`);
    slot.replaceChildren(card("First lines", lines.length
      ? el("div", { class: "lines" }, lines.map((l) => el("div", {}, el("span", { class: "n" }, String(l.line)), el("span", {}, l.text || " "))))
      : el("p", { class: "muted" }, "The file is empty.")));
  } catch (error) {
    failed(slot, error);
  }
}

async function download(file) {
  const response = await fetch(`/v1/files/${fileId}/content`, { headers: authHeaders() });
  if (!response.ok) return alert((await errorOf(response)).message);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: file.filename });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

async function remove(file) {
  if (!confirm(`Delete ${file.filename} (${file.id})? This cannot be undone.`)) return;
  try {
    await api(`/v1/files/${fileId}`, { method: "DELETE" });
    location.href = "/files";
  } catch (error) {
    alert(error.message);
  }
}

async function start() {
  loading(root, "Loading the file…");
  try {
    const [file, session] = await Promise.all([api(`/v1/files/${fileId}`), api("/v1/tunery/session")]);
    const model = query("model") || session.base_models[0];
    const fact = (k, v) => el("div", {}, el("dt", {}, k), el("dd", {}, v));
    const picker = el("select", { name: "model", onchange: () => { const u = new URL(location.href); u.searchParams.set("model", picker.value); location.href = u.toString(); } },
      session.base_models.map((m) => el("option", { value: m, selected: m === model }, m)));
    const body = el("div", {});
    fill(root,
      el("div", { class: "crumbs" }, el("a", { href: "/files" }, "Files"), " › ", file.filename),
      el("div", { class: "page-head" }, el("h1", {}, file.filename), badge(file.status),
        el("div", { class: "actions" },
          file.purpose === "fine-tune" ? el("label", { class: "inline" }, "tokenizer", picker) : null,
          el("button", { type: "button", class: "secondary", onclick: () => download(file) }, "Download"),
          el("button", { type: "button", class: "danger", onclick: () => remove(file) }, "Delete"))),
      card(null, el("dl", { class: "facts" }, fact("File id", el("span", { class: "mono" }, file.id)), fact("Purpose", file.purpose),
        fact("Size", fmt.bytes(file.bytes)), fact("Uploaded", fmt.time(file.created_at)), fact("Status", file.status),
        file.status_details && file.purpose !== "fine-tune" ? fact("Details", file.status_details) : null)),
      body,
    );
    if (file.purpose === "fine-tune") reportSection(body, model);
    else {
      body.append(lineSlot);
      const slot = el("div", {});
      body.append(slot);
      preview(slot);
      showLine();
    }
  } catch (error) {
    failed(root, error, start);
  }
}

start();
