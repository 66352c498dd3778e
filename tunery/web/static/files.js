// Files page: upload from the browser with a progress bar (XHR, the only browser API that
// reports upload progress), and every file of the organisation with its validation status.
import { authHeaders, badge, card, el, empty, failed, fmt, listAll, loading, startPage, table } from "./app.js";

const PURPOSES = ["fine-tune", "assistants", "batch", "user_data", "vision", "evals"];
const root = startPage("Files");

function upload(file, purpose, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/files");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded, event.total);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // keep null
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body?.error?.message || `upload failed: ${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new Error("The upload was interrupted: the server cannot be reached."));
    xhr.send(form);
  });
}

function uploadCard(onUploaded) {
  const input = el("input", { type: "file", name: "file", accept: ".jsonl,.json,.csv,.txt", required: true });
  const purpose = el("select", { name: "purpose" }, PURPOSES.map((p) => el("option", { value: p }, p)));
  const bar = el("progress", { max: "100", value: "0", id: "upload-progress", hidden: true });
  const status = el("span", { class: "muted small", id: "upload-status" });
  const message = el("div", { class: "form-msg", id: "upload-message" });
  const button = el("button", { type: "submit" }, "Upload");
  async function submit(event) {
    event.preventDefault();
    const file = input.files[0];
    if (!file) return;
    button.disabled = true;
    bar.hidden = false;
    message.replaceChildren();
    try {
      const created = await upload(file, purpose.value, (loaded, total) => {
        bar.value = String(Math.round((loaded / total) * 100));
        status.textContent = `${fmt.bytes(loaded)} of ${fmt.bytes(total)}${loaded === total ? " · validating…" : ""}`;
      });
      const ok = created.status !== "error";
      message.replaceChildren(el("div", { class: `notice ${ok ? "good" : "bad"}` },
        `${created.filename} uploaded as `, el("a", { href: `/files/${created.id}` }, created.id), ok ? ` · ${created.status}` : ` · validation failed: ${created.status_details}`));
      input.value = "";
      onUploaded();
    } catch (error) {
      message.replaceChildren(el("div", { class: "notice bad" }, error.message));
    } finally {
      button.disabled = false;
      bar.hidden = true;
      status.textContent = "";
    }
  }
  return card(
    "Upload a file",
    el("p", { class: "muted small" }, "Training data is JSONL: one chat example (messages) or preference pair per line. Files for fine-tuning are validated on upload; open a file for its full report."),
    el("form", { id: "upload-form", onsubmit: submit, class: "row" }, input, el("label", { class: "inline" }, "purpose", purpose), button, bar, status),
    message,
  );
}

function filesTable(files) {
  return el("div", { class: "scroll" }, table(
    ["File", "Name", "Purpose", "Size", "Status", "Uploaded"],
    files.map((f) => [
      el("a", { href: `/files/${f.id}`, class: "mono" }, f.id),
      f.filename,
      f.purpose,
      fmt.bytes(f.bytes),
      el("span", { title: f.status_details || "" }, badge(f.status)),
      el("span", { title: fmt.time(f.created_at) }, fmt.ago(f.created_at)),
    ]),
    { id: "files-table" },
  ));
}

const list = el("div", {});
async function refresh() {
  loading(list, "Loading files…");
  try {
    const files = await listAll("/v1/files", 10000);
    if (!files.length) empty(list, "No files yet", el("p", {}, "Upload a JSONL training file above. Its validation report, statistics and token view appear on its page."));
    else list.replaceChildren(card(null, filesTable(files)));
  } catch (error) {
    failed(list, error, refresh);
  }
}

root.replaceChildren(el("div", { class: "page-head" }, el("h1", {}, "Files and datasets")), uploadCard(refresh), list);
refresh();
