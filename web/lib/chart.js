// Charts drawn as SVG (no library): vertical bars over days, horizontal bars for rankings.

import { s, h } from "./dom.js";

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `max`.
function niceMax(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/// Vertical bars: data = [{label, value, highlight}]; format(value) → text.
export function columnChart(data, { format = String, title = "", height = 260, width = 720 } = {}) {
  width = Math.max(280, Math.round(width));
  const left = 64;
  const bottom = 34;
  const top = 22;
  const plotH = height - top - bottom;
  const plotW = width - left - 12;
  const max = niceMax(Math.max(0, ...data.map((d) => d.value)));
  const slot = plotW / Math.max(1, data.length);
  const barW = Math.min(56, slot * 0.68);
  // Label every day when there is room, else every 2nd, 3rd … (always the last, today).
  const every = Math.max(1, Math.ceil(58 / slot));
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const y = top + plotH - f * plotH;
    return [
      s("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid-line" }),
      s("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, format(max * f)),
    ];
  });
  const bars = data.map((d, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const bh = max ? (d.value / max) * plotH : 0;
    const y = top + plotH - bh;
    return [
      s(
        "rect",
        { x, y, width: barW, height: Math.max(0, bh), rx: 3, class: d.highlight ? "bar today" : "bar" },
        s("title", null, `${d.label}: ${format(d.value)}`),
      ),
      (data.length - 1 - i) % every === 0
        ? s("text", { x: x + barW / 2, y: height - bottom + 18, "text-anchor": "middle" }, d.label)
        : null,
      d.value > 0 && slot >= 52
        ? s("text", { x: x + barW / 2, y: y - 6, "text-anchor": "middle", class: "val" }, format(d.value))
        : null,
    ];
  });
  return s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title),
    grid,
    bars,
  );
}

/// Horizontal bars: data = [{label, value, note}] sorted by the caller.
export function barList(data, { format = String, title = "", width = 720 } = {}) {
  if (!data.length) return h("p", { class: "empty" }, "Nothing yet.");
  width = Math.max(280, Math.round(width));
  const row = 34;
  const labelW = Math.min(220, width * 0.34);
  const valueW = Math.min(170, width * 0.3);
  const chars = Math.max(8, Math.floor(labelW / 7.5));
  const height = data.length * row + 8;
  const max = Math.max(1, ...data.map((d) => d.value));
  const plotW = width - labelW - valueW - 16;
  const rows = data.map((d, i) => {
    const y = 4 + i * row;
    const w = Math.max(2, (d.value / max) * plotW);
    const label = d.label.length > chars ? `${d.label.slice(0, chars - 1)}…` : d.label;
    return [
      s("text", { x: 0, y: y + row / 2 + 4 }, label),
      s(
        "rect",
        { x: labelW, y: y + 6, width: w, height: row - 12, rx: 3, class: "bar" },
        s("title", null, `${d.label}: ${format(d.value)}${d.note ? ` (${d.note})` : ""}`),
      ),
      s(
        "text",
        { x: labelW + w + 8, y: y + row / 2 + 4, class: "val" },
        format(d.value) + (d.note ? ` · ${d.note}` : ""),
      ),
    ];
  });
  return s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title),
    rows,
  );
}

/// Side-by-side bars per slot with a legend: data = [{label, values: [a, b, …]}], series =
/// [{name, cls}] (one per value; `cls` is the bar's class, e.g. "bar in").
export function groupedColumns(data, series, { format = String, title = "", height = 240, width = 720 } = {}) {
  width = Math.max(280, Math.round(width));
  const left = 56;
  const bottom = 34;
  const top = 30;
  const plotH = height - top - bottom;
  const plotW = width - left - 12;
  const max = niceMax(Math.max(0, ...data.flatMap((d) => d.values)));
  const slot = plotW / Math.max(1, data.length);
  const groupW = Math.min(72, slot * 0.72);
  const barW = groupW / Math.max(1, series.length);
  const every = Math.max(1, Math.ceil(58 / slot));
  const grid = [0, 0.5, 1].map((f) => {
    const y = top + plotH - f * plotH;
    return [
      s("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid-line" }),
      s("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, format(max * f)),
    ];
  });
  const legend = series.map((ser, i) => [
    s("rect", { x: left + i * 110, y: 4, width: 12, height: 12, rx: 2, class: ser.cls }),
    s("text", { x: left + i * 110 + 18, y: 15 }, ser.name),
  ]);
  const bars = data.map((d, i) => {
    const x0 = left + i * slot + (slot - groupW) / 2;
    return [
      d.values.map((v, j) => {
        const bh = max ? (v / max) * plotH : 0;
        return s(
          "rect",
          { x: x0 + j * barW, y: top + plotH - bh, width: Math.max(1, barW - 2), height: Math.max(0, bh), rx: 2, class: series[j].cls },
          s("title", null, `${d.label} · ${series[j].name}: ${format(v)}`),
        );
      }),
      (data.length - 1 - i) % every === 0
        ? s("text", { x: x0 + groupW / 2, y: height - bottom + 18, "text-anchor": "middle" }, d.label)
        : null,
    ];
  });
  return s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title),
    grid,
    legend,
    bars,
  );
}
