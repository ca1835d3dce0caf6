// Reports: today at a glance, sales per day, top sellers and stock value, as SVG charts.
// Redrawn live when any till sells.

import { get, getAll, humanError } from "../lib/api.js";
import { h, add, icon, toast, debounce } from "../lib/dom.js";
import { money, shopDay, daysBefore, dayLabel } from "../lib/format.js";
import { columnChart, barList } from "../lib/chart.js";

const RANGES = [
  [7, "7 days"],
  [14, "14 days"],
  [30, "30 days"],
];

export async function render(main, app) {
  let days = 14;
  const kpis = h("div", { class: "kpis", id: "report-kpis" });
  const perDay = h("div", { id: "chart-days" });
  const top = h("div", { id: "chart-top" });
  const value = h("div", { id: "chart-value" });
  const rangeSeg = h("div", { class: "seg", role: "group", "aria-label": "Period" });
  const exportLinks = h("div", { class: "row" });
  const dayTitle = h("h2", null);
  const topTitle = h("h2", null);

  for (const [n, label] of RANGES) {
    rangeSeg.appendChild(
      h(
        "button",
        {
          type: "button",
          "aria-pressed": String(n === days),
          dataset: { days: n },
          onclick: () => {
            days = n;
            for (const b of rangeSeg.children) b.setAttribute("aria-pressed", String(Number(b.dataset.days) === n));
            load().catch((err) => toast(humanError(err), "error"));
          },
        },
        label,
      ),
    );
  }

  add(
    main,
    h("div", { class: "screen-head" }, h("h1", null, "Reports"), h("span", { class: "spacer" }), rangeSeg),
    h("h2", null, "Today at a glance"),
    kpis,
    h(
      "div",
      { class: "grid-2" },
      h("section", { class: "panel" }, dayTitle, perDay),
      h("section", { class: "panel" }, topTitle, top),
    ),
    h("section", { class: "panel" }, h("h2", null, "Stock value at cost"), value),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Export for the accountant"),
      h("p", { class: "muted" }, "Spreadsheet files (CSV) for the period shown."),
      exportLinks,
    ),
  );

  // Charts are drawn at the width they get, so their text stays readable; again on resize.
  const charts = {};
  const drawCharts = () => Object.values(charts).forEach((draw) => draw());
  const onResize = debounce(drawCharts, 150);
  window.addEventListener("resize", onResize);

  async function load() {
    const today = shopDay();
    const from = daysBefore(today, days - 1);
    const [daily, sales, stock] = await Promise.all([
      get(`/reports/daily?from=${from}&to=${today}`),
      getAll(`/sales?from=${from}&to=${today}`),
      get("/stock"),
    ]);

    const byDay = new Map(daily.map((d) => [d.day, d]));
    const t = byDay.get(today) || { count: 0, total: 0, refunds: 0 };
    kpis.replaceChildren(
      kpi("Sales today", money(t.total), "kpi-total"),
      kpi("Number of sales", String(t.count), "kpi-count"),
      kpi("Average basket", t.count ? money(Math.round(t.total / t.count)) : "—", "kpi-average"),
      kpi("Refunds today", money(t.refunds || 0), "kpi-refunds"),
    );

    const series = [];
    for (let i = days - 1; i >= 0; i--) {
      const day = daysBefore(today, i);
      const d = byDay.get(day);
      series.push({ label: dayLabel(day), value: d ? d.total : 0, highlight: day === today });
    }
    dayTitle.textContent = `Sales per day — last ${days} days`;
    charts.perDay = () =>
      perDay.replaceChildren(
        columnChart(series, { format: (v) => compactMoney(v), title: "Sales per day", width: perDay.clientWidth }),
      );

    const sellers = new Map();
    for (const s of sales) {
      if (s.voided_by) continue;
      s.lines.forEach((l, i) => {
        const qty = l.qty - ((s.returned && s.returned[i]) || 0);
        if (qty <= 0) return;
        const k = `${l.product_id}/${l.variant_id || ""}`;
        const e = sellers.get(k) || { label: l.name, qty: 0, revenue: 0 };
        e.qty += qty;
        e.revenue += Math.round((l.total * qty) / l.qty);
        sellers.set(k, e);
      });
    }
    const ranked = [...sellers.values()].sort((a, b) => b.revenue - a.revenue).slice(0, 8);
    topTitle.textContent = `Top sellers — last ${days} days`;
    charts.top = () =>
      top.replaceChildren(
        barList(
          ranked.map((e) => ({ label: e.label, value: e.revenue, note: `${e.qty} sold` })),
          { format: money, title: "Top sellers", width: top.clientWidth },
        ),
      );

    const total = stock.reduce((a, s) => a + s.value_at_cost, 0);
    const byValue = stock.filter((s) => s.value_at_cost > 0).sort((a, b) => b.value_at_cost - a.value_at_cost);
    const shown = byValue
      .slice(0, 8)
      .map((s) => ({ label: s.name, value: s.value_at_cost, note: `${s.on_hand} on hand` }));
    const rest = byValue.slice(8).reduce((a, s) => a + s.value_at_cost, 0);
    if (rest) shown.push({ label: `${byValue.length - 8} other products`, value: rest });
    charts.value = () =>
      value.replaceChildren(
        h(
          "p",
          null,
          "Total ",
          h("strong", { id: "stock-value-total" }, money(total)),
          " (what the stock on hand cost, first in, first out).",
        ),
        barList(shown, { format: money, title: "Stock value", width: value.clientWidth }),
      );
    drawCharts();

    exportLinks.replaceChildren(
      ...[
        ["sales", "Sales"],
        ["movements", "Stock movements"],
        ["stock", "Stock on hand"],
        ["sale-lines", "Sale lines"],
      ].map(([file, label]) =>
        h(
          "a",
          {
            class: "btn",
            href: `/api/v1/export/${file}.csv${file === "stock" ? "" : `?from=${from}&to=${today}`}`,
            download: `${file}-${today}.csv`,
          },
          icon("download", 18),
          label,
        ),
      ),
    );
  }

  function compactMoney(v) {
    const major = v / 10 ** app.settings.currency_exponent;
    if (major >= 10000) return `${Math.round(major / 1000)}k`;
    if (major >= 1000) return `${(major / 1000).toFixed(1)}k`;
    return money(v);
  }

  const reload = debounce(() => load().catch((err) => toast(humanError(err), "error")), 300);
  app.onEvent((ev) => {
    if (["sale_recorded", "stock_changed", "lagged", "changes_dropped", "product_changed"].includes(ev.type)) reload();
    else if (ev.type === "change_applied" && /^ledger\//.test(ev.doc || "")) reload();
  });
  await load();
  return () => window.removeEventListener("resize", onResize);
}

function kpi(label, value, id) {
  return h("div", { class: "kpi", id }, h("div", { class: "k-label" }, label), h("div", { class: "k-value" }, value));
}
