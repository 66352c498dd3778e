// Playground: chat with any base or fine-tuned model through POST /v1/chat/completions with
// `stream: true` (OpenAI's SSE), one model or two side by side answering the same prompt.
import { authHeaders, api, el, errorOf, failed, loading, query, startPage } from "./app.js";

const root = startPage("Playground");

/** Yield the JSON payloads of an OpenAI SSE stream until `data: [DONE]`. */
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

class Pane {
  constructor(name, models, selected) {
    this.messages = [];
    this.controller = null;
    this.select = el("select", { name: `model-${name}`, "aria-label": `model ${name}` }, models.map((m) => el("option", { value: m.id, selected: m.id === selected }, m.label)));
    this.transcript = el("div", { class: "transcript", "aria-live": "polite" }, el("p", { class: "muted small placeholder" }, "Send a message to start."));
    this.node = el("div", { class: "pane", "data-pane": name }, el("div", { class: "pane-head" }, el("strong", {}, name), this.select), this.transcript);
  }

  clear() {
    this.stop();
    this.messages = [];
    this.transcript.replaceChildren(el("p", { class: "muted small placeholder" }, "Send a message to start."));
  }

  stop() {
    this.controller?.abort();
  }

  bubble(role, text) {
    this.transcript.querySelector(".placeholder")?.remove();
    const body = el("div", { class: "text" }, text);
    const meta = el("div", { class: "meta" });
    this.transcript.append(el("div", { class: `msg ${role}` }, el("div", { class: "who" }, role), body, meta));
    return { body, meta };
  }

  async send(text, settings) {
    this.messages.push({ role: "user", content: text });
    this.bubble("user", text);
    const { body, meta } = this.bubble("assistant", "");
    body.classList.add("streaming");
    this.controller = new AbortController();
    const model = this.select.value;
    const started = performance.now();
    let answer = "";
    let finish = null;
    let usage = null;
    try {
      const messages = settings.system ? [{ role: "system", content: settings.system }, ...this.messages] : this.messages;
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true }, temperature: settings.temperature, max_tokens: settings.maxTokens }),
        signal: this.controller.signal,
      });
      if (!response.ok) throw await errorOf(response);
      for await (const chunk of sseEvents(response)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          if (choice.delta?.content) {
            answer += choice.delta.content;
            body.textContent = answer;
            this.transcript.scrollTop = this.transcript.scrollHeight;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
      this.messages.push({ role: "assistant", content: answer });
      const seconds = (performance.now() - started) / 1000;
      const tokens = usage?.completion_tokens;
      meta.textContent = [model, tokens !== undefined ? `${tokens} tokens` : null, tokens ? `${(tokens / seconds).toFixed(1)} tok/s` : null, finish === "length" ? "cut at max tokens" : finish].filter(Boolean).join(" · ");
      if (!answer) body.replaceChildren(el("span", { class: "muted" }, "(empty answer)"));
    } catch (error) {
      this.messages.pop(); // the question stays on screen, but not in the history sent next time
      body.parentElement.classList.add("error");
      body.textContent = error.name === "AbortError" ? `${answer}\n(stopped)` : error.message;
    } finally {
      body.classList.remove("streaming");
      this.controller = null;
    }
  }
}

async function start() {
  loading(root, "Loading models…");
  let models;
  try {
    models = (await api("/v1/models")).data;
  } catch (error) {
    return failed(root, error, start);
  }
  const entries = models.map((m) => ({ id: m.id, label: m.owned_by === "tunery" ? `${m.id} (base)` : m.id }));
  // ?model=ft:... opens that model against its base: `ft:{base}:{org}:...`.
  const wanted = query("model");
  const base = wanted?.startsWith("ft:") ? wanted.split(":")[1] : null;
  const first = base && entries.some((e) => e.id === base) ? base : wanted || entries[0]?.id;
  const second = base ? wanted : entries.find((e) => e.id !== first)?.id || first;
  const a = new Pane("A", entries, first);
  const b = new Pane("B", entries, second);
  const panes = el("div", { class: "panes", id: "panes" }, a.node);
  const compare = el("input", { type: "checkbox", name: "compare", checked: Boolean(base) || entries.length > 1 });
  const system = el("input", { name: "system", placeholder: "optional system message", size: "40" });
  const temperature = el("input", { name: "temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0.7", size: "4" });
  const maxTokens = el("input", { name: "max_tokens", type: "number", min: "1", max: "4096", value: "128", size: "5" });
  const prompt = el("textarea", { name: "prompt", placeholder: "Ask something… (Enter sends, Shift+Enter for a new line)", rows: "2" });
  const send = el("button", { type: "submit", id: "send" }, "Send");
  const stop = el("button", { type: "button", class: "secondary", onclick: () => [a, b].forEach((p) => p.stop()) }, "Stop");
  const clear = el("button", { type: "button", class: "secondary", onclick: () => [a, b].forEach((p) => p.clear()) }, "Clear");

  const layout = () => {
    panes.classList.toggle("two", compare.checked);
    panes.replaceChildren(...(compare.checked ? [a.node, b.node] : [a.node]));
  };
  compare.addEventListener("change", layout);
  layout();

  async function submit(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    send.disabled = true;
    const settings = { system: system.value.trim(), temperature: Number(temperature.value), maxTokens: Number(maxTokens.value) };
    // Both panes get the same prompt at the same moment; the server batches them where it can.
    await Promise.all((compare.checked ? [a, b] : [a]).map((pane) => pane.send(text, settings)));
    send.disabled = false;
    prompt.focus();
  }
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) submit(event);
  });

  if (!entries.length) {
    root.replaceChildren(el("div", { class: "state empty" }, el("h3", {}, "No model to chat with"), el("p", {}, "This server offers no models.")));
    return;
  }
  root.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Playground")),
    el("p", { class: "sub" }, "Chat with a base model, a fine-tuned model or a checkpoint. Tick “side by side” to send each message to two models at once, e.g. the base against its fine-tuned version."),
    el("div", { class: "play-controls" },
      el("label", { class: "inline" }, compare, "side by side"),
      el("label", {}, "system message", system),
      el("label", {}, "temperature", temperature),
      el("label", {}, "max tokens", maxTokens)),
    panes,
    el("form", { class: "composer", id: "composer", onsubmit: submit }, prompt, el("div", { class: "buttons" }, send, el("div", { class: "row" }, stop, clear))),
  );
}

start();
