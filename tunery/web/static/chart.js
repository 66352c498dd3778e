// Small SVG charts: line charts for training curves and bars for histograms. No library.
// Each chart is redrawn whole from its data; `data-points` on the <svg> counts the plotted
// points, which the browser tests use to see a live curve grow.

const NS = "http://www.w3.org/2000/svg";
const PAD = { left: 52, right: 14, top: 44, bottom: 34 }; // the top holds the title and the legend
export const COLORS = ["#2f5bd3", "#e0712b", "#2a9d5c", "#b03a8c", "#7a6f2a"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** About `count` round tick values (1, 2 or 5 × 10^k apart) covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

const HOUR = 3600;
const TIME_STEPS = [HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 2 * 24 * HOUR, 7 * 24 * HOUR, 14 * 24 * HOUR, 30 * 24 * HOUR];

/** Ticks for Unix seconds at round local hours or midnights, about `count` of them. */
export function timeTicks(min, max, count = 5) {
  const step = TIME_STEPS.find((s) => s >= (max - min) / count) || TIME_STEPS[TIME_STEPS.length - 1];
  const start = new Date(min * 1000);
  start.setHours(0, 0, 0, 0); // from the local midnight before: 00:00, 06:00, 12:00, not 01:00, 07:00
  const ticks = [];
  // Whole days are stepped by the calendar, so a daylight-saving change does not shift midnight.
  for (let t = new Date(start); t.getTime() / 1000 <= max; ) {
    if (t.getTime() / 1000 >= min) ticks.push(t.getTime() / 1000);
    if (step >= 24 * HOUR) t.setDate(t.getDate() + step / (24 * HOUR));
    else t.setTime(t.getTime() + step * 1000);
  }
  return ticks;
}

function label(value) {
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(1);
  return String(+value.toPrecision(4));
}

function frame(width, height, title, xLabel) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg", role: "img", "aria-label": title });
  root.append(svg("text", { x: PAD.left, y: 16, class: "chart-title" }, title));
  if (xLabel) root.append(svg("text", { x: width - PAD.right, y: height - 4, class: "axis-label", "text-anchor": "end" }, xLabel));
  return root;
}

/**
 * lineChart({title, xLabel, series: [{name, points: [[x, y], ...], color, dots}], height, xTime})
 * Points with a null or non-finite y are skipped; xTime: x is Unix seconds, ticked at round hours
 * or days; yZero: the y axis includes 0. Returns an <svg>.
 */
export function lineChart({ title, xLabel = "step", series, width = 560, height = 230, yFormat = label, xFormat = label, xTime = false, yZero = false }) {
  const root = frame(width, height, title, xLabel);
  const clean = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const all = clean.flatMap((s) => s.points);
  root.dataset.points = String(all.length);
  if (all.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" }, "no data yet"));
    return root;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (yZero) [y0, y1] = [Math.min(0, y0), Math.max(0, y1)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const padY = (y1 - y0) * 0.06;
  [y0, y1] = [y0 - padY, y1 + padY];
  const X = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (width - PAD.left - PAD.right);
  const Y = (y) => height - PAD.bottom - ((y - y0) / (y1 - y0)) * (height - PAD.top - PAD.bottom);

  for (const t of niceTicks(y0, y1, 4)) {
    root.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: Y(t), y2: Y(t), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end" }, yFormat(t)));
  }
  // Steps are whole numbers, so their ticks are too: no "step 1.5" on a four-step run.
  const wholeX = all.every(([x]) => Number.isInteger(x));
  const xTicks = xTime ? timeTicks(x0, x1, 5) : niceTicks(x0, x1, 6).filter((t) => !wholeX || Number.isInteger(t));
  for (const t of xTicks.filter((t) => t >= x0 && t <= x1)) {
    // A label at either end is anchored inside the chart, so it is not cut off.
    const anchor = X(t) > width - PAD.right - 40 ? "end" : X(t) < PAD.left + 40 ? "start" : "middle";
    root.append(svg("text", { x: X(t), y: height - PAD.bottom + 16, class: "tick", "text-anchor": anchor }, xFormat(t)));
  }
  root.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: height - PAD.bottom, y2: height - PAD.bottom, class: "axis" }));

  const colored = clean.map((s, i) => ({ ...s, color: s.color || COLORS[i % COLORS.length] }));
  // The legend sits under the title, in series order; series without points get none.
  let legendX = PAD.left;
  for (const s of colored.filter((s) => s.points.length)) {
    root.append(svg("text", { x: legendX, y: 33, class: "legend", fill: s.color }, `■ ${s.name}`));
    legendX += 16 + 6.5 * (s.name.length + 2);
  }
  colored.forEach((s) => {
    const color = s.color;
    if (s.points.length) {
      const d = s.points.map(([x, y], j) => `${j ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
      // data-values holds the plotted numbers as they came from the server, so a test can hold
      // the browser's curve against the CSV and metrics.jsonl it was drawn from.
      root.append(svg("path", { d, class: "line", stroke: color, "data-series": s.name, "data-values": JSON.stringify(s.points) }));
      if (s.dots || s.points.length === 1) {
        for (const [x, y] of s.points) {
          const dot = svg("circle", { cx: X(x), cy: Y(y), r: 3.2, fill: color, class: "dot" });
          dot.append(svg("title", {}, `${s.name} · ${xLabel} ${xFormat(x)}: ${yFormat(y)}`));
          root.append(dot);
        }
      }
    }
  });
  addReadout(root, clean, X, Y, yFormat, xFormat, xLabel, height);
  return root;
}

/** A vertical rule and the nearest values of every series under the pointer. */
function addReadout(root, series, X, Y, yFormat, xFormat, xLabel, height) {
  const rule = svg("line", { y1: PAD.top, y2: height - PAD.bottom, class: "rule", visibility: "hidden" });
  const text = svg("text", { y: PAD.top + 12, class: "readout", visibility: "hidden" });
  root.append(rule, text);
  root.addEventListener("mousemove", (event) => {
    const box = root.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * root.viewBox.baseVal.width;
    const parts = [];
    let at = null;
    for (const s of series) {
      if (!s.points.length) continue;
      const near = s.points.reduce((a, b) => (Math.abs(X(b[0]) - px) < Math.abs(X(a[0]) - px) ? b : a));
      at = at ?? near[0];
      parts.push(`${s.name} ${yFormat(near[1])}`);
    }
    if (at === null) return;
    rule.setAttribute("x1", X(at));
    rule.setAttribute("x2", X(at));
    text.setAttribute("x", Math.min(X(at) + 6, root.viewBox.baseVal.width - 200));
    text.textContent = `${xLabel} ${xFormat(at)}: ${parts.join(" · ")}`;
    rule.setAttribute("visibility", "visible");
    text.setAttribute("visibility", "visible");
  });
  root.addEventListener("mouseleave", () => {
    rule.setAttribute("visibility", "hidden");
    text.setAttribute("visibility", "hidden");
  });
}

/** barChart({title, xLabel, bins: [{low, high, count}], marker: {at, label}}) for histograms. */
export function barChart({ title, xLabel, bins, width = 560, height = 230, marker }) {
  const root = frame(width, height, title, xLabel);
  root.dataset.points = String(bins.length);
  if (!bins.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" }, "no examples"));
    return root;
  }
  const top = Math.max(...bins.map((b) => b.count));
  const [x0, x1] = [bins[0].low, Math.max(bins[bins.length - 1].high, marker ? marker.at : 0)];
  const X = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (width - PAD.left - PAD.right);
  const Y = (y) => height - PAD.bottom - (y / top) * (height - PAD.top - PAD.bottom);
  for (const t of niceTicks(0, top, 4).filter((t) => Number.isInteger(t))) {
    root.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: Y(t), y2: Y(t), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: Y(t) + 4, class: "tick", "text-anchor": "end" }, String(t)));
  }
  for (const b of bins) {
    const bar = svg("rect", { x: X(b.low) + 1, y: Y(b.count), width: Math.max(1, X(b.high) - X(b.low) - 2), height: Y(0) - Y(b.count), class: "bar" });
    bar.append(svg("title", {}, `${b.low}–${b.high - 1} tokens: ${b.count} example${b.count === 1 ? "" : "s"}`));
    root.append(bar);
  }
  for (const t of niceTicks(x0, x1, 6).filter((t) => t >= x0 && t <= x1 && Number.isInteger(t))) {
    root.append(svg("text", { x: X(t), y: height - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, label(t)));
  }
  if (marker) {
    root.append(svg("line", { x1: X(marker.at), x2: X(marker.at), y1: PAD.top, y2: height - PAD.bottom, class: "marker" }));
    root.append(svg("text", { x: X(marker.at) - 4, y: PAD.top + 10, class: "marker-label", "text-anchor": "end" }, marker.label));
  }
  root.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: Y(0), y2: Y(0), class: "axis" }));
  return root;
}

/** A horizontal interval bar on [0, 1]: the mean as a dot, the 95% interval as a line. */
export function intervalBar(mean, low, high, width = 120) {
  const root = svg("svg", { viewBox: `0 0 ${width} 14`, class: "interval", role: "img", "aria-label": `${mean} (${low}..${high})` });
  const X = (v) => 4 + Math.max(0, Math.min(1, v)) * (width - 8);
  root.append(svg("line", { x1: 4, x2: width - 4, y1: 7, y2: 7, class: "interval-track" }));
  root.append(svg("line", { x1: X(low), x2: X(high), y1: 7, y2: 7, class: "interval-ci" }));
  root.append(svg("circle", { cx: X(mean), cy: 7, r: 3.5, class: "interval-mean" }));
  return root;
}
