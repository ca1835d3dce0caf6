// Reports (managers and owners): today at a glance, then, for a range of days, sales per day,
// week or month, top sellers, sales per person and till, tax per rate, payment methods, the
// value of the stock and the stock movements of the last 7 days. Every number comes from
// /api/v1/reports/* (integer minor units, computed on the node); charts are SVG. Redrawn live
// when any till sells or stock moves.
//
// Each panel is one entry of `panels` below (an id, a title, what to fetch, how to draw), so a
// new report (profit, low stock …) is one more entry.

import { get, humanError } from "../lib/api.js";
import { h, add, icon, toast, debounce, table } from "../lib/dom.js";
import { money, shopDay, daysBefore, dayLabel, percent } from "../lib/format.js";
import { columnChart, barList, groupedColumns } from "../lib/chart.js";

const PRESETS = [
  [7, "7 days"],
  [30, "30 days"],
  [90, "90 days"],
  [365, "Year"],
];
const GROUPS = [
  ["day", "Day"],
  ["week", "Week"],
  ["month", "Month"],
];
const KIND_NAMES = {
  stock_in: "Stock in",
  sale: "Sales",
  removal: "Removals",
  adjustment: "Counts",
  return: "Returns",
  void: "Voids",
};
const METHOD_NAMES = { cash: "Cash", card: "Card", other: "Other" };

export async function render(main, app) {
  const today = shopDay();
  const state = { from: daysBefore(today, 29), to: today, group: "day", rank: "revenue" };

  const kpis = h("div", { class: "kpis", id: "report-kpis" });
  const fromInput = h("input", { type: "date", id: "report-from", value: state.from, max: today });
  const toInput = h("input", { type: "date", id: "report-to", value: state.to, max: today });
  const presetSeg = seg("Range", PRESETS, 30, (n) => {
    state.to = shopDay();
    state.from = daysBefore(state.to, n - 1);
    fromInput.value = state.from;
    toInput.value = state.to;
    reload();
  });
  const groupSeg = seg("Group sales by", GROUPS, state.group, (g) => {
    state.group = g;
    reload();
  });
  const onDates = () => {
    if (!fromInput.value || !toInput.value) return;
    state.from = fromInput.value;
    state.to = toInput.value;
    presetSeg.select(null);
    reload();
  };
  fromInput.addEventListener("change", onDates);
  toInput.addEventListener("change", onDates);
  const rankSeg = seg(
    "Rank top sellers by",
    [
      ["revenue", "Revenue"],
      ["qty", "Quantity"],
    ],
    state.rank,
    (r) => {
      state.rank = r;
      drawAll();
    },
  );

  rankSeg.el.id = "top-rank";
  groupSeg.el.id = "sales-group";

  /// The panels below the controls. `url(q)` is what to fetch for the current range (null: not
  /// range-bound); `draw(el, data, width)` fills the panel's body.
  const panels = [
    {
      id: "chart-days",
      title: (q) => `Sales per ${q.group} — ${rangeText(q)}`,
      url: (q) => `/reports/sales?from=${q.from}&to=${q.to}&group=${q.group}`,
      draw: drawSales,
    },
    {
      id: "chart-top",
      title: (q, d) => `Top sellers — ${d ? rangeText(d) : ""}`,
      url: (q) => `/reports/top-sellers?to=${q.to}&days=${Math.min(366, spanDays(q))}&limit=10`,
      head: rankSeg.el,
      draw: drawTop,
    },
    { id: "report-staff", title: (q) => `Sales per person and till — ${rangeText(q)}`, url: (q) => `/reports/staff?from=${q.from}&to=${q.to}`, draw: drawStaff },
    { id: "report-tax", title: (q) => `Tax per rate — ${rangeText(q)}`, url: (q) => `/reports/tax?from=${q.from}&to=${q.to}`, draw: drawTax },
    {
      id: "report-payments",
      title: (q) => `Payment methods — ${rangeText(q)}`,
      url: (q) => `/reports/payments?from=${q.from}&to=${q.to}`,
      draw: drawPayments,
    },
    { id: "chart-value", title: () => "Stock value", url: () => "/reports/inventory", draw: drawInventory },
    { id: "chart-moves", title: () => "Stock movements — last 7 days", url: () => "/reports/movements?days=7", draw: drawMoves },
  ];
  for (const p of panels) {
    p.heading = h("h2", null, "");
    p.body = h("div", { id: p.id });
    p.el = h(
      "section",
      { class: "panel" },
      h("div", { class: "panel-head" }, p.heading, p.head ? h("span", { class: "spacer" }) : null, p.head || null),
      p.body,
    );
  }
  const byId = Object.fromEntries(panels.map((p) => [p.id, p.el]));
  const exportLinks = h("div", { class: "row" });

  add(
    main,
    h("div", { class: "screen-head" }, h("h1", null, "Reports")),
    h("h2", null, "Today at a glance"),
    kpis,
    h(
      "section",
      { class: "panel report-controls" },
      h("label", { class: "field" }, h("span", null, "From"), fromInput),
      h("label", { class: "field" }, h("span", null, "To"), toInput),
      presetSeg.el,
      h("span", { class: "spacer" }),
      h("div", { class: "field" }, h("span", null, "Group sales by"), groupSeg.el),
    ),
    byId["chart-days"],
    h("div", { class: "grid-2" }, byId["chart-top"], byId["report-payments"]),
    h("div", { class: "grid-2" }, byId["report-staff"], byId["report-tax"]),
    h("div", { class: "grid-2" }, byId["chart-value"], byId["chart-moves"]),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Export for the accountant"),
      h("p", { class: "muted" }, "Spreadsheet files (CSV) for the range shown."),
      exportLinks,
    ),
  );

  // Charts are drawn at the width they get, so their text stays readable; again on resize.
  const drawAll = () => {
    for (const p of panels) if (p.data) p.draw(p.body, p.data, p.body.clientWidth);
  };
  const onResize = debounce(drawAll, 150);
  window.addEventListener("resize", onResize);

  async function load() {
    const q = { ...state };
    const now = shopDay();
    const [todays, ...data] = await Promise.all([
      get(`/reports/sales?from=${now}&to=${now}`),
      ...panels.map((p) => get(p.url(q))),
    ]);
    const t = todays.totals;
    const taken = t.gross - t.refunds;
    kpis.replaceChildren(
      kpi("Sales today", money(taken), "kpi-total"),
      kpi("Number of sales", String(t.count), "kpi-count"),
      kpi("Average basket", t.count ? money(Math.round(t.gross / t.count)) : "—", "kpi-average"),
      kpi("Refunds today", money(t.refunds), "kpi-refunds"),
    );
    panels.forEach((p, i) => {
      p.data = data[i];
      p.heading.textContent = p.title(q, p.data);
    });
    drawAll();
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
            href: `/api/v1/export/${file}.csv${file === "stock" ? "" : `?from=${q.from}&to=${q.to}`}`,
            download: `${file}-${q.to}.csv`,
          },
          icon("download", 18),
          label,
        ),
      ),
    );
  }

  function drawSales(el, r, width) {
    const series = r.periods.map((p) => ({
      label: periodLabel(r.group, p),
      value: p.gross - p.refunds,
      highlight: p.from <= today && today <= p.to,
    }));
    const t = r.totals;
    el.replaceChildren(
      columnChart(series, { format: compactMoney, title: "Sales after refunds", width }),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { class: "report-table", id: "sales-totals" },
          ["Sales", "Gross", "Discounts", "Refunds", "Tax", "Net"].map((x) => h("th", { class: "num" }, x)),
          h(
            "tbody",
            null,
            h(
              "tr",
              null,
              [String(t.count), money(t.gross), money(t.discounts), money(t.refunds), money(t.tax), money(t.net)].map((x) =>
                h("td", { class: "num" }, x),
              ),
            ),
          ),
        ),
      ),
      h(
        "p",
        { class: "muted small" },
        "Gross: charged for goods, tax included, after discounts. Net: gross less refunds and tax.",
      ),
    );
  }

  function drawTop(el, r, width) {
    const rows = state.rank === "qty" ? r.by_qty : r.by_revenue;
    el.replaceChildren(
      barList(
        rows.map((x) => ({
          label: x.name || x.sku,
          value: state.rank === "qty" ? x.qty : x.revenue,
          note: state.rank === "qty" ? money(x.revenue) : `${x.qty} sold`,
        })),
        { format: state.rank === "qty" ? String : money, title: "Top sellers", width },
      ),
    );
  }

  function drawStaff(el, r) {
    const cells = (name, x) => [
      h("td", null, name),
      h("td", { class: "num" }, String(x.count)),
      h("td", { class: "num" }, money(x.total)),
      h("td", { class: "num" }, money(x.refunds)),
    ];
    const heads = (first) => [h("th", null, first), ...["Sales", "Total", "Refunds"].map((x) => h("th", { class: "num" }, x))];
    el.replaceChildren(
      r.people.length
        ? h(
            "div",
            { class: "table-wrap" },
            table(
              { class: "report-table", id: "staff-rows" },
              heads("Person"),
              h("tbody", null, r.people.map((p) => h("tr", null, cells(p.name || "Unknown person", p)))),
            ),
            table(
              { class: "report-table", id: "till-rows" },
              heads("Till"),
              h("tbody", null, r.tills.map((t) => h("tr", null, cells(t.name || t.device, t)))),
            ),
          )
        : h("p", { class: "empty" }, "No sales in this range."),
    );
  }

  function drawTax(el, r) {
    const cells = (label, x) => [
      h("td", null, label),
      h("td", { class: "num" }, money(x.net)),
      h("td", { class: "num" }, money(x.tax)),
      h("td", { class: "num" }, money(x.gross)),
    ];
    el.replaceChildren(
      r.rates.length
        ? h(
            "div",
            { class: "table-wrap" },
            table(
              { class: "report-table", id: "tax-rows" },
              [h("th", null, "Rate"), ...["Net", "Tax", "Gross"].map((x) => h("th", { class: "num" }, x))],
              h("tbody", null, r.rates.map((x) => h("tr", null, cells(percent(x.tax_rate), x)))),
              h("tfoot", null, h("tr", null, cells("Total", r.totals))),
            ),
          )
        : h("p", { class: "empty" }, "No sales in this range."),
    );
  }

  function drawPayments(el, r, width) {
    const cells = (label, x) => [
      h("td", null, label),
      h("td", { class: "num" }, money(x.received)),
      h("td", { class: "num" }, money(x.refunded)),
      h("td", { class: "num" }, money(x.net)),
    ];
    el.replaceChildren(
      barList(
        r.methods.filter((m) => m.received || m.refunded).map((m) => ({ label: METHOD_NAMES[m.method] || m.method, value: m.net })),
        { format: money, title: "Money in per payment method", width },
      ),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { class: "report-table", id: "payment-rows" },
          [h("th", null, "Method"), ...["Received", "Refunded", "Net"].map((x) => h("th", { class: "num" }, x))],
          h("tbody", null, r.methods.map((m) => h("tr", null, cells(METHOD_NAMES[m.method] || m.method, m)))),
          h("tfoot", null, h("tr", null, cells("Total", r))),
        ),
      ),
      h("p", { class: "muted small" }, "Cash is counted net of change, with cash rounding."),
    );
  }

  function drawInventory(el, r, width) {
    el.replaceChildren(
      h(
        "p",
        null,
        "At cost ",
        h("strong", { id: "stock-value-total" }, money(r.at_cost)),
        " · at shelf price ",
        h("strong", { id: "stock-value-retail" }, money(r.at_retail)),
        ` · ${r.on_hand} units of ${r.items} products`,
        r.negative ? ` · ${r.negative} below zero` : "",
      ),
      barList(
        [
          { label: "At cost", value: r.at_cost },
          { label: "At shelf price", value: r.at_retail },
        ],
        { format: money, title: "Stock value", width },
      ),
      r.categories.length
        ? h(
            "div",
            { class: "table-wrap" },
            table(
              { class: "report-table", id: "value-rows" },
              [h("th", null, "Category"), ...["Units", "At cost", "At shelf price"].map((x) => h("th", { class: "num" }, x))],
              h(
                "tbody",
                null,
                r.categories.map((c) =>
                  h(
                    "tr",
                    null,
                    h("td", null, c.category || "No category"),
                    h("td", { class: "num" }, String(c.on_hand)),
                    h("td", { class: "num" }, money(c.at_cost)),
                    h("td", { class: "num" }, money(c.at_retail)),
                  ),
                ),
              ),
            ),
          )
        : null,
    );
  }

  function drawMoves(el, r, width) {
    const data = r.days.map((d) => ({ label: dayLabel(d.day), values: [d.qty_in, d.qty_out] }));
    el.replaceChildren(
      groupedColumns(
        data,
        [
          { name: "Units in", cls: "bar in" },
          { name: "Units out", cls: "bar out" },
        ],
        { title: "Units in and out per day", width },
      ),
      r.kinds.length
        ? h(
            "div",
            { class: "table-wrap" },
            table(
              { class: "report-table", id: "move-rows" },
              [h("th", null, "Kind"), h("th", { class: "num" }, "In"), h("th", { class: "num" }, "Out")],
              h(
                "tbody",
                null,
                r.kinds.map((k, i) =>
                  h(
                    "tr",
                    null,
                    h("td", null, KIND_NAMES[k] || k),
                    h("td", { class: "num" }, String(r.days.reduce((a, d) => a + d.kinds[i].qty_in, 0))),
                    h("td", { class: "num" }, String(r.days.reduce((a, d) => a + d.kinds[i].qty_out, 0))),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No stock moved this week."),
    );
  }

  function compactMoney(v) {
    const major = v / 10 ** app.settings.currency_exponent;
    if (Math.abs(major) >= 10000) return `${Math.round(major / 1000)}k`;
    if (Math.abs(major) >= 1000) return `${(major / 1000).toFixed(1)}k`;
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

/// A row of toggle buttons; `onPick(value)` when one is pressed. `select(v)` marks one (or none).
function seg(label, options, current, onPick) {
  const el = h("div", { class: "seg", role: "group", "aria-label": label });
  const select = (v) => {
    for (const b of el.children) b.setAttribute("aria-pressed", String(b.dataset.value === String(v)));
  };
  for (const [value, text] of options) {
    el.appendChild(
      h(
        "button",
        {
          type: "button",
          dataset: { value: String(value) },
          onclick: () => {
            select(value);
            onPick(value);
          },
        },
        text,
      ),
    );
  }
  select(current);
  return { el, select };
}

function spanDays(q) {
  return Math.round((Date.parse(`${q.to}T12:00:00Z`) - Date.parse(`${q.from}T12:00:00Z`)) / 86400000) + 1;
}

function rangeText(q) {
  return q.from === q.to ? q.from : `${q.from} to ${q.to}`;
}

function periodLabel(group, p) {
  if (group === "day") return dayLabel(p.period);
  if (group === "week") return p.period.slice(5);
  const d = new Date(`${p.period}-15T12:00:00Z`);
  return new Intl.DateTimeFormat(undefined, { timeZone: "UTC", month: "short" }).format(d);
}

function kpi(label, value, id) {
  return h("div", { class: "kpi", id }, h("div", { class: "k-label" }, label), h("div", { class: "k-value" }, value));
}
