// Monitoring page: input drift scores and scheduled re-evaluation results over time, per
// deployed model, with alerts (a metric below its baseline, drift over its threshold) in red.
import { api, card, el, empty, failed, fill, loading, startPage } from "./app.js";
import { lineChart } from "./chart.js";

const root = startPage("Monitoring");

const when = (t) => new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** A metric over time: every result, the alerts again in red, and the alert threshold. */
function seriesChart(title, s) {
  const at = (p) => [p.at, p.value];
  const alerts = s.points.filter((p) => p.alert);
  const series = [{ name: s.name, points: s.points.map(at), dots: true }];
  if (alerts.length) series.push({ name: "alert", color: "#c53030", points: alerts.map(at), dots: true });
  if (s.threshold !== null && s.threshold !== undefined && s.points.length) {
    const ends = [s.points[0].at, s.points[s.points.length - 1].at];
    series.push({ name: "alert below", color: "#e09a9a", points: ends.map((t) => [t, s.threshold]) });
  }
  return el("div", { class: "card chart" }, lineChart({ title, xLabel: "time", series, xFormat: when, yFormat: (v) => String(+v.toPrecision(3)) }));
}

function modelCard(m, message) {
  const alerts = m.alerts.length ? el("ul", { class: "alert-list" }, m.alerts.map((a) => el("li", {}, a))) : el("p", { class: "muted" }, "No alerts.");
  return card(
    m.model,
    alerts,
    el("div", { class: "charts" }, m.evals.length ? m.evals.map((s) => seriesChart(`Re-evaluation: ${s.name}`, s)) : el("p", { class: "muted" }, "No scheduled evaluation has run yet: tunery monitor run runs the suites that are due.")),
    m.drift.length ? el("div", { class: "charts" }, m.drift.map((s) => seriesChart(`Drift: ${s.name}`, s))) : el("p", { class: "muted small" }, message),
  );
}

async function start() {
  loading(root, "Loading monitoring data…");
  try {
    const view = await api("/v1/tunery/monitoring");
    const head = el("div", { class: "page-head" }, el("h1", {}, "Monitoring"));
    if (!view.available || !view.models.length) {
      const slot = el("div", { id: "monitoring-empty" });
      root.replaceChildren(head, slot);
      empty(slot, "Nothing is monitored yet", el("p", {}, view.message),
        el("p", {}, "Monitoring watches deployed models over time: drift of incoming prompts away from the training data, and scheduled re-evaluation on a held-out set, with alerts when a metric falls below its baseline. Turn it on per model:"),
        el("pre", {}, view.how_to.join("\n")));
      return;
    }
    const alerts = view.models.flatMap((m) => m.alerts.map((a) => `${m.model}: ${a}`));
    fill(root, head,
      alerts.length ? el("div", { class: "notice bad", id: "alerts" }, `${alerts.length} alert(s): ${alerts[0]}${alerts.length > 1 ? " …" : ""}`) : el("div", { class: "notice good" }, "No alerts."),
      view.models.map((m) => modelCard(m, view.message)));
  } catch (error) {
    failed(root, error, start);
  }
}

start();
