// Monitoring page: scheduled re-evaluation results and input drift scores over time, per
// fine-tuned model, with alerts (a metric below its baseline, a day's drift at alert level) in
// red. Drift is measured from the prompt log when the page asks, so it loads after the rest.
import { api, card, el, empty, failed, fill, fmt, loading, modelLink, startPage, table } from "./app.js";
import { lineChart } from "./chart.js";

const root = startPage("Monitoring");

const when = (t) => new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
/** Tick labels: a date at midnight, otherwise date and time. */
const tick = (t) => {
  const d = new Date(t * 1000);
  return d.getHours() || d.getMinutes() ? when(t) : d.toLocaleDateString([], { month: "short", day: "numeric" });
};

/** A value over time: every point, the alerts again in red, and the alert threshold. */
function seriesChart(title, s, thresholdName, yZero = false) {
  const at = (p) => [p.at, p.value];
  const alerts = s.points.filter((p) => p.alert);
  const series = [{ name: s.name, points: s.points.map(at), dots: true }];
  if (alerts.length) series.push({ name: "alert", color: "#c53030", points: alerts.map(at), dots: true });
  if (s.threshold !== null && s.threshold !== undefined && s.points.length) {
    const ends = [s.points[0].at, s.points[s.points.length - 1].at];
    series.push({ name: thresholdName, color: "#e09a9a", points: ends.map((t) => [t, s.threshold]) });
  }
  return el("div", { class: "card chart" }, lineChart({ title, xLabel: "time", series, xTime: true, yZero, xFormat: tick, yFormat: (v) => String(+v.toPrecision(3)) }));
}

const alertText = (a) => `${when(a.at)} · ${a.level} (${a.source}): ${a.message}`;

function alertList(alerts) {
  return alerts.length ? el("ul", { class: "alert-list" }, alerts.map((a) => el("li", {}, alertText(a)))) : el("p", { class: "muted" }, "No alerts.");
}

function evalCard(m) {
  return card(
    el("span", {}, "Re-evaluation of ", modelLink(m.model)),
    alertList(m.alerts),
    el("div", { class: "charts" }, m.evals.length ? m.evals.map((s) => seriesChart(s.name, s, "alert below")) : el("p", { class: "muted" }, "No scheduled evaluation has run yet: tunery monitor run runs the suites that are due.")),
  );
}

function driftCard(m) {
  const [s] = m.drift;
  const days = table(["24 h to", "prompts", "drift score", "level"], [...s.points].reverse().map((p) => {
    const [prompts, level] = p.note.split(", ");
    return [when(p.at), prompts.replace(" prompts", ""), fmt.num(p.value, 3), el("span", { class: `badge level-${level}` }, level)];
  }), { class: "drift-days" });
  days.querySelectorAll("tbody tr").forEach((tr, i) => [...s.points].reverse()[i].alert && tr.classList.add("failure"));
  return card(
    el("span", {}, "Input drift of ", modelLink(m.model)),
    alertList(m.alerts),
    el("div", { class: "grid2" }, seriesChart("Drift score per day (1 = alert)", s, "alert at", true), el("div", { class: "scroll" }, days)),
    el("p", { class: "muted small" }, "Each day's logged prompts against the training prompts: length, vocabulary and meaning (MiniLM), beyond what chance gives. ok below 0.5, warn below 1, alert from 1. Fewer than 20 prompts in a day make its score a hint."),
  );
}

/** The red banner: every alert of the page, newest first. */
function banner(slot, alerts) {
  alerts.sort((a, b) => b.at - a.at);
  fill(slot, alerts.length
    ? el("div", { class: "notice bad", id: "alerts" }, `${alerts.length} alert(s). Newest: ${alerts[0].model}: ${alertText(alerts[0])}`)
    : el("div", { class: "notice good", id: "alerts" }, "No alerts."));
}

async function showDrift(slot, bannerSlot, alerts) {
  loading(slot, "Measuring drift of the logged prompts…");
  try {
    const view = await api("/v1/tunery/monitoring/drift");
    alerts.push(...view.models.flatMap((m) => m.alerts.map((a) => ({ ...a, model: m.model }))));
    banner(bannerSlot, alerts);
    if (!view.models.length) {
      empty(slot, "No drift to show", el("p", {}, view.message),
        el("p", {}, "With prompt logging on, each day's prompts to a fine-tuned model are compared with its training prompts here. `tunery monitor drift MODEL` measures any period on demand."));
      return;
    }
    fill(slot, view.models.map(driftCard));
  } catch (error) {
    failed(slot, error, () => showDrift(slot, bannerSlot, alerts));
  }
}

async function start() {
  loading(root, "Loading monitoring data…");
  let view;
  try {
    view = await api("/v1/tunery/monitoring");
  } catch (error) {
    return failed(root, error, start);
  }
  const alerts = view.models.flatMap((m) => m.alerts.map((a) => ({ ...a, model: m.model })));
  const bannerSlot = el("div", {});
  const evals = el("div", { id: "evals" });
  const drift = el("div", { id: "drift" });
  fill(root,
    el("div", { class: "page-head" }, el("h1", {}, "Monitoring")),
    el("p", { class: "sub" }, "Deployed fine-tuned models over time: scheduled re-evaluation on a held-out set, and drift of incoming prompts away from the training data."),
    bannerSlot,
    el("h2", {}, "Scheduled re-evaluation"),
    evals,
    el("h2", {}, "Input drift"),
    drift);
  banner(bannerSlot, alerts);
  if (view.models.length) fill(evals, view.models.map(evalCard));
  else empty(evals, "No scheduled evaluation yet", el("p", {}, view.message), el("p", {}, "Register a held-out set for a model; each run is compared with its baseline and alerts when a metric falls below it:"), el("pre", {}, view.how_to.join("\n")));
  showDrift(drift, bannerSlot, alerts);
}

start();
