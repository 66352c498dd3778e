// Monitoring page: input drift scores and scheduled re-evaluation results over time, per
// deployed model, with alerts (a metric below its baseline, drift over its threshold) in red.
import { api, card, el, empty, failed, fill, loading, startPage } from "./app.js";
import { lineChart } from "./chart.js";

const root = startPage("Monitoring");

function seriesChart(title, series) {
  const chart = lineChart({
    title, xLabel: "time", yFormat: (v) => String(+v.toPrecision(3)),
    series: series.flatMap((s) => [
      { name: s.name, points: s.points.map((p) => [p.at, p.value]), dots: true },
      ...(s.threshold !== null && s.threshold !== undefined && s.points.length
        ? [{ name: `${s.name} threshold`, color: "#c53030", points: [[s.points[0].at, s.threshold], [s.points[s.points.length - 1].at, s.threshold]] }]
        : []),
    ]),
  });
  return el("div", { class: "card chart" }, chart);
}

function modelCard(m) {
  const alerts = m.alerts.length
    ? el("ul", { class: "alert-list" }, m.alerts.map((a) => el("li", {}, a)))
    : el("p", { class: "muted" }, "No alerts.");
  return card(m.model,
    alerts,
    el("div", { class: "charts" },
      m.drift.length ? m.drift.map((s) => seriesChart(`Drift: ${s.name}`, [s])) : el("p", { class: "muted" }, "No drift measured yet (prompt logging is off or no prompts arrived)."),
      m.evals.length ? m.evals.map((s) => seriesChart(`Re-evaluation: ${s.name}`, [s])) : el("p", { class: "muted" }, "No scheduled evaluation has run yet.")));
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
      ...view.models.map(modelCard));
  } catch (error) {
    failed(root, error, start);
  }
}

start();
