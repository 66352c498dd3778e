// One job: its settings, live curves from the run's metrics.jsonl (the file `tunery plot` and
// the results CSV are made from), events as they arrive, checkpoints, and cancel/pause/resume;
// and, once `tunery compare --checkpoints` has run on it, task score against forgetting per checkpoint.
import { api, authHeaders, badge, card, el, errorOf, failed, fill, fmt, loading, modelLink, progressBar, servedModels, startPage, table } from "./app.js";
import { lineChart } from "./chart.js";

const POLL_MS = 1500;
const LIVE = new Set(["validating_files", "queued", "running", "pausing"]);
const jobId = decodeURIComponent(location.pathname.split("/")[2] || "");
const root = startPage(jobId || "Job");

const state = {
  job: null,
  details: null,
  offset: 0,
  series: { train: [], valid: [], full_valid: [], early_stop: [] },
  events: [],
  seenEvents: new Set(),
  checkpoints: [],
  hideMetrics: false,
};

/** Add metrics records; a resumed run repeats the steps after its checkpoint, so newer wins. */
function addRecords(records) {
  for (const record of records) {
    const list = state.series[record.type];
    if (!list) continue;
    while (list.length && list[list.length - 1].step >= record.step) list.pop();
    list.push(record);
  }
}

const pts = (list, key) => list.filter((r) => r[key] !== undefined && r[key] !== null).map((r) => [r.step, r[key]]);

function charts() {
  const { train, valid, full_valid: full } = state.series;
  const dpo = state.job?.method?.type === "dpo";
  if (train.some((r) => r.reward_mean !== undefined) || valid.some((r) => r.valid_pass_rate !== undefined)) {
    return rewardCharts(train, valid);
  }
  const list = [
    lineChart({ title: "Loss", series: [
      { name: "train", points: pts(train, "train_loss") },
      { name: "validation", points: pts(valid, "valid_loss"), dots: true },
      { name: "full validation", points: pts(full, "full_valid_loss"), dots: true },
    ] }),
    lineChart({ title: dpo ? "Reward accuracy" : "Token accuracy (trained tokens)", series: [
      { name: "train", points: pts(train, "train_mean_token_accuracy") },
      { name: "validation", points: pts(valid, "valid_mean_token_accuracy"), dots: true },
      { name: "full validation", points: pts(full, "full_valid_mean_token_accuracy"), dots: true },
    ] }),
    lineChart({ title: "Learning rate", series: [{ name: "learning rate", points: pts(train, "learning_rate") }] }),
  ];
  if (train.some((r) => r.tokens_per_second !== undefined)) {
    list.push(lineChart({ title: "Throughput (tokens/s)", series: [{ name: "tokens/s", points: pts(train, "tokens_per_second") }] }));
  } else if (dpo) {
    list.push(lineChart({ title: "Reward margin (chosen − rejected)", series: [{ name: "margin", points: pts(train, "reward_margin") }] }));
  }
  return list.map((chart) => el("div", { class: "card chart" }, chart));
}

// Reinforcement fine-tuning: reward curves instead of losses against references.
function rewardCharts(train, valid) {
  return [
    lineChart({ title: "Reward of sampled answers", series: [
      { name: "mean reward", points: pts(train, "reward_mean") },
      { name: "pass rate", points: pts(train, "pass_rate") },
    ] }),
    lineChart({ title: "Held-out pass rate (greedy)", series: [
      { name: "pass rate", points: pts(valid, "valid_pass_rate"), dots: true },
      { name: "mean reward", points: pts(valid, "valid_mean_reward"), dots: true },
    ] }),
    lineChart({ title: "Groups with zero reward variance", series: [{ name: "fraction", points: pts(train, "zero_variance_fraction") }] }),
    lineChart({ title: "Completion length (tokens)", series: [{ name: "mean length", points: pts(train, "completion_length") }] }),
  ].map((chart) => el("div", { class: "card chart" }, chart));
}

function tiles() {
  const last = state.series.train[state.series.train.length - 1];
  const lastValid = state.series.valid[state.series.valid.length - 1];
  const stopped = state.series.early_stop[state.series.early_stop.length - 1]?.early_stopping;
  const tile = (k, v) => el("div", { class: "tile" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
  if (!last) return el("p", { class: "muted", id: "no-metrics" }, state.job && LIVE.has(state.job.status) ? "Waiting for the first training step…" : "This job logged no training steps.");
  return el(
    "div",
    { class: "metric-tiles", id: "latest" },
    // A run that stopped early ends before its planned steps: say so rather than show it unfinished.
    tile(stopped ? "step (stopped early)" : "step", `${last.step} / ${last.total_steps}`),
    tile("epoch", fmt.num(last.epoch, 3)),
    ...(last.reward_mean !== undefined
      ? [tile("mean reward", fmt.num(last.reward_mean, 3)),
         tile("held-out pass rate", lastValid ? fmt.num(lastValid.valid_pass_rate, 3) : "–"),
         tile("zero-variance groups", fmt.num(last.zero_variance_fraction, 3))]
      : [tile("train loss", fmt.num(last.train_loss)),
         tile("validation loss", lastValid ? fmt.num(lastValid.valid_loss) : "–"),
         tile("train token accuracy", fmt.num(last.train_mean_token_accuracy, 3))]),
    tile("learning rate", fmt.num(last.learning_rate, 3)),
    tile("tokens / s", last.tokens_per_second ? fmt.num(last.tokens_per_second, 4) : "–"),
    tile("grad norm", fmt.num(last.grad_norm, 3)),
  );
}

function flatten(obj, prefix = "") {
  const rows = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) rows.push(...flatten(v, `${prefix}${k}.`));
    else rows.push([`${prefix}${k}`, v]);
  }
  return rows;
}

const show = (v) => (v === undefined ? "auto" : v === null ? "–" : Array.isArray(v) ? v.join(", ") : String(v));

function configCard() {
  const d = state.details;
  const requested = Object.fromEntries(flatten(d.requested_config));
  // The token view of a file as this run cut it: its base model's tokenizer, its max_seq_len.
  const cut = d.run_config ? `?model=${encodeURIComponent(state.job.model)}&max_seq_len=${d.run_config.max_seq_len}` : "";
  const fileLink = (id) => (id ? el("a", { href: `/files/${id}${cut}`, class: "mono" }, id) : "–");
  const cell = (key, value) => (key === "data" || key === "validation" ? fileLink(value) : el("span", { class: "mono" }, show(value)));
  let body;
  // Settings of the method or adapter this run does not use are noise here.
  const unused = (key) => (d.run_config.method !== "dpo" && key.startsWith("dpo.")) || (d.run_config.adapter === "full" && key.startsWith("lora."));
  if (d.run_config) {
    body = table(["setting", "used", "requested"], flatten(d.run_config).filter(([k]) => !unused(k)).map(([k, v]) => [k, cell(k, v), k in requested ? cell(k, requested[k]) : el("span", { class: "muted" }, "auto / default")]), { id: "config" });
  } else {
    const note = LIVE.has(state.job.status)
      ? "The trainer has not started yet: these are the settings requested. The resolved values appear once it starts."
      : "The trainer never started: these are the settings requested.";
    body = [el("p", { class: "muted" }, note),
      table(["setting", "requested"], Object.entries(requested).map(([k, v]) => [k, cell(k, v)]), { id: "config" })];
  }
  return card("Configuration and hyperparameters", el("div", { class: "scroll" }, body));
}

function eventsList() {
  // A failed job's error is shown once, above; its event would only repeat it.
  const repeatsError = (e) => state.job?.error && e.level === "error" && e.message.includes(state.job.error.message);
  const shown = state.events.filter((e) => !(state.hideMetrics && e.type === "metrics") && !repeatsError(e));
  if (!shown.length) return el("p", { class: "muted" }, "No events yet.");
  return el("ul", { class: "events", id: "events" }, shown.map((e) => el("li", { class: e.fresh ? "fresh" : "" },
    el("time", { title: fmt.time(e.created_at) }, new Date(e.created_at * 1000).toLocaleTimeString()),
    el("span", { class: `lvl-${e.level}` }, e.message))));
}

function checkpointsTable() {
  if (!state.checkpoints.length) return el("p", { class: "muted" }, "No checkpoints yet. The trainer saves one every save_every steps and at the end; the newest three are kept and servable.");
  const rows = table(["step", "model", "train loss", "valid loss", "created"], state.checkpoints.map((c) => [
    String(c.step_number), modelLink(c.fine_tuned_model_checkpoint), fmt.num(c.metrics.train_loss), fmt.num(c.metrics.valid_loss), fmt.ago(c.created_at),
  ]), { id: "checkpoints" });
  if (state.details.checkpoint_tradeoff || state.job.status !== "succeeded") return rows;
  return [rows, el("p", { class: "muted small", id: "tradeoff-how" }, "Task score against forgetting for each: ",
    el("code", {}, `tunery compare --checkpoints HOME/jobs/${jobId}/run --data HELD_OUT.jsonl`))];
}

const ci = (s, digits = 4) => `${s.mean.toFixed(digits)} (${s.low.toFixed(digits)}..${s.high.toFixed(digits)})`;

// What `tunery compare --checkpoints` printed and drew for this run: the table and its PNG.
function tradeoffCard() {
  const report = state.details.checkpoint_tradeoff;
  if (!report) return null;
  const metric = report.checkpoints[0]?.metric;
  const model = (step) => state.checkpoints.find((c) => c.step_number === step)?.fine_tuned_model_checkpoint;
  const rows = report.checkpoints.map((r) => [
    // A kept checkpoint is served: its step opens it in the playground.
    model(r.step) ? el("a", { href: `/playground?model=${encodeURIComponent(model(r.step))}`, title: model(r.step) }, `step ${r.step}`) : `step ${r.step}`,
    r.loss.toFixed(4),
    ...(metric ? [r.score.toFixed(3)] : []),
    ci(r.kl),
    `${r.extra_nll.mean >= 0 ? "+" : ""}${r.extra_nll.mean.toFixed(4)}`,
  ]);
  const plot = el("div", { id: "tradeoff-plot" });
  if (report.plot) showPlot(plot);
  return card("Task score against forgetting",
    el("p", { class: "muted" }, `Every kept checkpoint on ${report.data}: the held-out score, and the KL from the base model on its own answers to general prompts (lower forgets less). From tunery compare --checkpoints.`),
    el("div", { class: "scroll" }, table(["checkpoint", "held-out loss", ...(metric ? [metric] : []), "KL from base (95% CI)", "extra NLL"], rows, { id: "tradeoff" })),
    plot);
}

async function showPlot(slot) {
  // The PNG needs the API key, which an <img src> cannot send: fetch it, show it as a data: URL.
  const response = await fetch(`/v1/tunery/jobs/${jobId}/checkpoints.png`, { headers: authHeaders() });
  if (!response.ok) return slot.replaceChildren(el("p", { class: "muted" }, (await errorOf(response)).message));
  const reader = new FileReader();
  reader.onload = () => slot.replaceChildren(el("img", { src: reader.result, class: "plot", alt: "task score against KL from the base, one point per checkpoint" }));
  reader.readAsDataURL(await response.blob());
}

async function act(verb) {
  if (verb === "cancel" && !confirm(`Cancel ${jobId}? Its checkpoints so far are kept.`)) return;
  try {
    state.job = await api(`/v1/fine_tuning/jobs/${jobId}/${verb}`, { method: "POST" });
  } catch (error) {
    alert(error.message);
  }
  poll();
}

function header() {
  const job = state.job;
  const allowed = new Set(state.details.actions[job.status] || []);
  const button = (verb, text, cls) => el("button", { type: "button", class: cls, id: `${verb}-button`, disabled: !allowed.has(verb), onclick: () => act(verb) }, text);
  const last = state.series.train[state.series.train.length - 1];
  const total = last?.total_steps || 0;
  const done = job.status === "succeeded" ? total : last?.step || 0;
  const hp = job.hyperparameters || {};
  const phase = state.details.run_status?.phase;
  const used = state.details.run_config;
  const type = job.method?.type || "supervised";
  const fileLink = (id) => el("a", { href: `/files/${id}`, class: "mono" }, id);
  const fact = (k, v) => el("div", {}, el("dt", {}, k), el("dd", {}, v));
  return [
    el("div", { class: "crumbs" }, el("a", { href: "/" }, "Jobs"), " › ", jobId),
    el("div", { class: "page-head" }, el("h1", { class: "mono" }, jobId), el("span", { id: "status" }, badge(job.status)),
      el("div", { class: "actions" }, button("pause", "Pause", "secondary"), button("resume", "Resume", "secondary"), button("cancel", "Cancel", "danger"))),
    card(null, el("dl", { class: "facts" },
      fact("Progress", progressBar(done, total)),
      // After the last step, a job with a validation file answers it (the final evaluation).
      phase && !job.finished_at
        ? fact("Final evaluation", el("span", { id: "phase" }, progressBar(phase.done, phase.total), ` answers · ${phase.eta_s == null ? "ETA –" : `ETA ${fmt.until(Date.now() / 1000 + phase.eta_s)}`}`))
        : fact(job.finished_at ? "Finished" : "ETA", job.finished_at ? fmt.time(job.finished_at) : job.status === "running" ? fmt.until(job.estimated_finish) : "–"),
      fact("Base model", job.model),
      fact("Method", `${type} · ${state.details.run_config?.adapter || job.method?.[type]?.tunery?.adapter || "lora"}`),
      // What the trainer used once it has started (auto resolved), what was requested before.
      used ? fact("Epochs / batch / learning rate", `${show(used.n_epochs)} / ${show(used.batch_size)} / ${show(used.learning_rate)}`)
        : fact("Epochs / batch / LR ×", `${show(hp.n_epochs)} / ${show(hp.batch_size)} / ${show(hp.learning_rate_multiplier)}`),
      fact("Seed", String(job.seed)),
      // OpenAI's trained_tokens: every token of the examples, once per epoch (what hosted services bill).
      fact("Trained tokens (billed)", fmt.num(job.trained_tokens)),
      fact("Loss tokens", state.series.train.length ? fmt.num(state.series.train.reduce((n, r) => n + (r.loss_tokens || 0), 0)) : "–"),
      fact("Training file", fileLink(job.training_file)),
      fact("Validation file", job.validation_file ? fileLink(job.validation_file) : "–"),
      fact("Fine-tuned model", job.fine_tuned_model ? modelLink(job.fine_tuned_model, state.served) : "–"),
      fact("Results CSV", job.result_files?.length ? fileLink(job.result_files[0]) : "–"),
      state.details.trackers?.length ? fact("Trackers", el("span", { id: "trackers" }, ...state.details.trackers.map((t) =>
        el("div", {}, t.url ? el("a", { href: t.url, target: "_blank", rel: "noopener" }, t.what) : t.what)))) : null,
      fact("Created", fmt.time(job.created_at)),
    )),
    // The error once, as the API gives it (the trainer's log, with the server's paths, is the operator's).
    job.error ? el("div", { class: "notice bad", id: "job-error" }, el("strong", {}, `${job.error.code}: `), job.error.message) : null,
  ];
}

function render() {
  const hide = el("label", { class: "inline small" }, el("input", { type: "checkbox", checked: state.hideMetrics, onchange: (e) => { state.hideMetrics = e.target.checked; render(); } }), "hide step metrics");
  fill(root,
    header(),
    tiles(),
    // A job that ended before its first step has nothing to plot.
    state.series.train.length || LIVE.has(state.job.status) ? el("div", { class: "charts", id: "charts" }, charts()) : null,
    el("div", { class: "grid2" },
      card("Events", el("div", { class: "row" }, hide), eventsList()),
      card("Checkpoints", checkpointsTable())),
    el("div", { class: "stack" }, tradeoffCard(), configCard()),
  );
}

async function fetchNew() {
  const [job, metrics, events, checkpoints, served] = await Promise.all([
    api(`/v1/fine_tuning/jobs/${jobId}`),
    api(`/v1/tunery/jobs/${jobId}/metrics?offset=${state.offset}`),
    api(`/v1/fine_tuning/jobs/${jobId}/events?limit=${state.events.length ? 100 : 1000}`),
    api(`/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=100`),
    servedModels(),
  ]);
  state.served = served;
  if (metrics.reset) state.series = { train: [], valid: [], full_valid: [], early_stop: [] };
  addRecords(metrics.records);
  state.offset = metrics.offset;
  const fresh = events.data.filter((e) => !state.seenEvents.has(e.id));
  for (const e of state.events) e.fresh = false;
  for (const e of fresh) {
    state.seenEvents.add(e.id);
    e.fresh = state.events.length > 0;
  }
  state.events = [...fresh, ...state.events];
  state.checkpoints = checkpoints.data;
  const statusChanged = state.job && state.job.status !== job.status;
  state.job = job;
  // The resolved run config appears once the trainer has started; the log tail when it fails.
  const waitingForConfig = state.details && !state.details.run_config && job.status === "running";
  // After the last step the trainer evaluates; its progress is in the run's status.
  const last = state.series.train[state.series.train.length - 1];
  const evaluating = job.status === "running" && last && last.step === last.total_steps;
  if (!state.details || statusChanged || waitingForConfig || evaluating) state.details = await api(`/v1/tunery/jobs/${jobId}/details`);
}

let timer = null;
let shown = "";
async function poll() {
  clearTimeout(timer);
  try {
    await fetchNew();
    // Redraw only when something changed, so a reader's hover and scroll survive idle polls.
    const version = [state.offset, state.events.length, state.checkpoints.length, state.job.status, state.job.estimated_finish, Boolean(state.details.run_config)].join();
    if (version !== shown) render();
    shown = version;
  } catch (error) {
    if (!state.job) return failed(root, error, start);
    // A hiccup while watching: keep what is shown and try again.
    console.error(error);
  }
  if (state.job && LIVE.has(state.job.status)) timer = setTimeout(poll, POLL_MS);
}

function start() {
  loading(root, "Loading the job…");
  poll();
}

start();
