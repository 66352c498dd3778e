// Jobs page: every fine-tuning job of the organisation with status, progress and ETA, and a
// form that starts a new one (POST /v1/fine_tuning/jobs, exactly what the openai client sends).
import { api, badge, card, el, empty, failed, fmt, loading, modelLink, progressBar, servedModels, startPage, table } from "./app.js";

const ACTIVE = new Set(["validating_files", "queued", "running", "pausing"]);
const POLL_MS = 2000;
const root = startPage("Jobs");

function methodOf(job) {
  const type = job.method?.type || "supervised";
  const adapter = job.method?.[type]?.tunery?.adapter || "lora";
  return `${type === "supervised" ? "SFT" : type.toUpperCase()} · ${adapter}`;
}

function whenCell(job) {
  if (job.finished_at) return el("span", { title: fmt.time(job.finished_at) }, `finished ${fmt.ago(job.finished_at)}`);
  if (job.status === "running" && job.estimated_finish) return el("span", { title: fmt.time(job.estimated_finish) }, `ETA ${fmt.until(job.estimated_finish)}`);
  return el("span", { class: "muted" }, job.status === "queued" ? "waiting for a slot" : "–");
}

function jobsTable(jobs, progress, served) {
  return el(
    "div",
    { class: "scroll" },
    table(
      ["Job", "Status", "Base model", "Method", "Progress", "Finish", "Fine-tuned model", "Created"],
      jobs.map((job) => {
        const p = progress[job.id];
        const done = job.status === "succeeded" && p ? p.total_steps : p?.step || 0;
        return [
          el("a", { href: `/jobs/${job.id}`, class: "mono" }, job.id),
          badge(job.status),
          job.model,
          methodOf(job),
          progressBar(done, p?.total_steps || 0),
          whenCell(job),
          job.fine_tuned_model ? modelLink(job.fine_tuned_model, served) : el("span", { class: "muted" }, "–"),
          el("span", { title: fmt.time(job.created_at) }, fmt.ago(job.created_at)),
        ];
      }),
      { id: "jobs-table" },
    ),
  );
}

function numberOrAuto(value, integer) {
  const text = value.trim();
  if (!text || text === "auto") return "auto";
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`"${text}" is not ${integer ? "a positive whole number" : "a positive number"} or auto`);
  return n;
}

async function newJobForm(onCreated) {
  const [session, usable] = await Promise.all([api("/v1/tunery/session"), api("/v1/tunery/files")]);
  if (!usable.length) {
    return card("Start a fine-tuning job", el("p", { class: "muted" }, "No validated training file yet. ", el("a", { href: "/files" }, "Upload one on the Files page"), " first."));
  }
  const count = (f) => (f.examples == null ? "" : ` · ${f.examples.toLocaleString("en")} ${f.format === "preference" ? "pairs" : "examples"}`);
  const option = (f) => el("option", { value: f.id }, `${f.filename}${count(f)} · ${fmt.ago(f.created_at)} · ${f.id}`);
  // No file is picked for the user: the newest upload is as likely the validation file.
  const placeholder = (text) => el("option", { value: "", disabled: true, selected: true }, text);
  const field = (name, text, input) => el("label", {}, text, Object.assign(input, { name }));
  const model = el("select", {}, session.base_models.map((m) => el("option", { value: m }, m)));
  const method = el("select", {}, el("option", { value: "supervised" }, "supervised (SFT)"), el("option", { value: "dpo" }, "preference (DPO)"));
  const train = el("select", {}, placeholder("choose the training file…"), usable.map(option));
  const valid = el("select", {}, el("option", { value: "" }, "none"), usable.map(option));
  const epochs = el("input", { value: "auto", size: "6" });
  const batch = el("input", { value: "auto", size: "6" });
  const lr = el("input", { value: "auto", size: "6" });
  const suffix = el("input", { placeholder: "optional, e.g. tickets", maxlength: "64" });
  const extension = el("textarea", { rows: "3", placeholder: '{"max_steps": 50, "adapter": "lora", "lora": {"r": 8}}' });
  const message = el("div", { class: "form-msg" });
  const submit = el("button", { type: "submit" }, "Start job");

  async function create(event) {
    event.preventDefault();
    message.replaceChildren();
    let body;
    try {
      if (!train.value) throw new Error("choose the training file");
      if (valid.value && valid.value === train.value) throw new Error("the validation file must not be the training file: validation would measure examples the model trains on");
      const tunery = extension.value.trim() ? JSON.parse(extension.value) : {};
      const hyperparameters = { n_epochs: numberOrAuto(epochs.value, true), batch_size: numberOrAuto(batch.value, true), learning_rate_multiplier: numberOrAuto(lr.value, false) };
      body = { model: model.value, training_file: train.value, method: { type: method.value, [method.value]: { hyperparameters, tunery } } };
      if (valid.value) body.validation_file = valid.value;
      if (suffix.value.trim()) body.suffix = suffix.value.trim();
    } catch (error) {
      message.replaceChildren(el("div", { class: "notice bad" }, `Check the form: ${error.message}`));
      return;
    }
    submit.disabled = true;
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", body });
      onCreated(job);
    } catch (error) {
      message.replaceChildren(el("div", { class: "notice bad" }, error.message));
      submit.disabled = false;
    }
  }

  return card(
    "Start a fine-tuning job",
    el(
      "form",
      { id: "new-job", onsubmit: create },
      el(
        "div",
        { class: "form-grid" },
        field("model", "Base model", model),
        field("method", "Method", method),
        field("training_file", "Training file", train),
        field("validation_file", "Validation file", valid),
        field("n_epochs", "Epochs", epochs),
        field("batch_size", "Batch size", batch),
        field("learning_rate_multiplier", "Learning-rate multiplier", lr),
        field("suffix", "Suffix", suffix),
        el("label", { class: "wide" }, "tunery settings (JSON, optional): any `tunery train` config key such as max_steps, adapter, lora, max_seq_len", Object.assign(extension, { name: "tunery" })),
      ),
      el("div", { class: "row" }, submit, el("span", { class: "muted small" }, "Hyperparameters left at auto are chosen from the data, as OpenAI does.")),
      message,
    ),
  );
}

async function render() {
  const list = el("div", {});
  const formSlot = el("div", {});
  const toggle = el("button", { type: "button", id: "new-job-button" }, "New job");
  root.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Fine-tuning jobs"), el("div", { class: "actions" }, toggle)),
    formSlot,
    list,
  );
  toggle.addEventListener("click", async () => {
    if (formSlot.firstChild) return formSlot.replaceChildren();
    loading(formSlot, "Loading models and files…");
    try {
      formSlot.replaceChildren(await newJobForm((job) => { location.href = `/jobs/${job.id}`; }));
    } catch (error) {
      failed(formSlot, error);
    }
  });

  let timer = null;
  async function refresh(first) {
    if (first) loading(list, "Loading jobs…");
    try {
      const [jobs, progress, served] = await Promise.all([api("/v1/fine_tuning/jobs?limit=100"), api("/v1/tunery/jobs/progress"), servedModels()]);
      if (!jobs.data.length) {
        empty(list, "No fine-tuning jobs yet", el("p", {}, "Upload a training file on the ", el("a", { href: "/files" }, "Files"), " page, then press New job."));
      } else {
        list.replaceChildren(card(null, jobsTable(jobs.data, progress.data, served), jobs.has_more ? el("p", { class: "muted small" }, "Showing the newest 100 jobs.") : null));
      }
      if (jobs.data.some((job) => ACTIVE.has(job.status))) timer = setTimeout(refresh, POLL_MS);
    } catch (error) {
      failed(list, error, () => refresh(true));
    }
  }
  if (new URLSearchParams(location.search).has("new")) toggle.click();
  await refresh(true);
  return () => clearTimeout(timer);
}

render();
