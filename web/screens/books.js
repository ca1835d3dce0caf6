// Books (managers, owners): profit by FIFO cost per day and per product, low stock counting
// what is on order, cash-drawer shifts of every till, closing a period (owners), and the CSV
// files for the accountant. Redrawn live when any till sells.

import { get, post, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, alertBox, openDialog, debounce, table } from "../lib/dom.js";
import { money, shopDay, daysBefore, dayLabel, dateTime } from "../lib/format.js";
import { columnChart, barList } from "../lib/chart.js";
import { showShiftReport } from "./till.js";

const RANGES = [
  [7, "7 days"],
  [30, "30 days"],
  [90, "90 days"],
];

export async function render(main, app) {
  let days = 30;
  const kpis = h("div", { class: "kpis", id: "books-kpis" });
  const chart = h("div", { id: "chart-profit" });
  const products = h("div", { id: "profit-products" });
  const dayRows = h("tbody", { id: "profit-rows" });
  const lowRows = h("tbody", { id: "low-rows" });
  const shiftRows = h("tbody", { id: "shift-rows" });
  const periods = h("div", { id: "periods" });
  const exportLinks = h("div", { class: "row" });
  const rangeSeg = h("div", { class: "seg", role: "group", "aria-label": "Period" });
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
            reload();
          },
        },
        label,
      ),
    );
  }

  add(
    main,
    h("div", { class: "screen-head" }, h("h1", null, "Books"), h("span", { class: "spacer" }), rangeSeg),
    kpis,
    h(
      "div",
      { class: "grid-2" },
      h("section", { class: "panel" }, h("h2", null, "Profit per day"), chart),
      h("section", { class: "panel" }, h("h2", null, "Most profitable products"), products),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Day by day"),
      h(
        "p",
        { class: "muted" },
        "Revenue without tax; cost is what the goods sold cost, first in, first out. Closed days keep their figures; " +
          "later changes to them show as an adjustment on the first open day.",
      ),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "profit-table" },
          [
            h("th", null, "Day"),
            h("th", { class: "num" }, "Revenue"),
            h("th", { class: "num" }, "Cost"),
            h("th", { class: "num" }, "Profit"),
            h("th", { class: "num hide-narrow" }, "Written off"),
          ],
          dayRows,
        ),
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Low stock"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "low-table" },
          [
            h("th", null, "Product"),
            h("th", { class: "num" }, "On hand"),
            h("th", { class: "num" }, "On order"),
            h("th", { class: "num" }, "Reorder at"),
            h("th", null, ""),
          ],
          lowRows,
        ),
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Shifts"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "shifts-table" },
          [
            h("th", null, "Till"),
            h("th", null, "Opened"),
            h("th", { class: "num" }, "Expected"),
            h("th", { class: "num" }, "Counted"),
            h("th", { class: "num" }, "Difference"),
            h("th", null, ""),
          ],
          shiftRows,
        ),
      ),
    ),
    h("section", { class: "panel" }, h("h2", null, "Closed periods"), periods),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Export for the accountant"),
      h("p", { class: "muted" }, "Spreadsheet files (CSV) for the period shown."),
      exportLinks,
    ),
  );

  const charts = {};
  const drawCharts = () => Object.values(charts).forEach((draw) => draw());
  const onResize = debounce(drawCharts, 150);
  window.addEventListener("resize", onResize);

  async function load() {
    const today = shopDay();
    const from = daysBefore(today, days - 1);
    const [profit, byProduct, low, shifts, closes] = await Promise.all([
      get(`/reports/profit?from=${from}&to=${today}`),
      get(`/reports/profit/products?from=${from}&to=${today}`),
      get("/reports/low-stock"),
      get(`/shifts?from=${from}&to=${today}`),
      get("/periods"),
    ]);
    const sum = (k) => profit.reduce((a, d) => a + d[k], 0);
    const revenue = sum("revenue");
    const cost = sum("cost");
    kpis.replaceChildren(
      kpi("Revenue (without tax)", money(revenue), "kpi-revenue"),
      kpi("Cost of goods sold", money(cost), "kpi-cost"),
      kpi("Profit", money(revenue - cost), "kpi-profit"),
      kpi("Margin", revenue ? `${Math.round(((revenue - cost) * 1000) / revenue) / 10} %` : "—", "kpi-margin"),
    );
    const byDay = new Map(profit.map((d) => [d.day, d]));
    const series = [];
    for (let i = days - 1; i >= 0; i--) {
      const day = daysBefore(today, i);
      const d = byDay.get(day);
      series.push({ label: dayLabel(day), value: d ? Math.max(0, d.profit) : 0, highlight: day === today });
    }
    charts.profit = () =>
      chart.replaceChildren(columnChart(series, { format: money, title: "Profit per day", width: chart.clientWidth }));
    charts.products = () =>
      products.replaceChildren(
        barList(
          byProduct.slice(0, 8).map((p) => ({
            label: p.name,
            value: Math.max(0, p.profit),
            note: `${p.qty} sold, cost ${money(p.cost)}`,
          })),
          { format: money, title: "Profit by product", width: products.clientWidth },
        ),
      );
    drawCharts();

    dayRows.replaceChildren(
      ...(profit.length
        ? [...profit]
            .reverse()
            .map((d) =>
              h(
                "tr",
                { dataset: { day: d.day }, class: d.closed ? "is-closed" : null },
                h(
                  "td",
                  null,
                  d.day,
                  d.closed ? h("span", { class: "badge" }, "Closed") : null,
                  d.adjustment_revenue || d.adjustment_cost
                    ? h(
                        "div",
                        { class: "cell-sub" },
                        `incl. adjustment for closed days: revenue ${money(d.adjustment_revenue)}, cost ${money(d.adjustment_cost)}`,
                      )
                    : null,
                ),
                h("td", { class: "num" }, money(d.revenue)),
                h("td", { class: "num" }, money(d.cost)),
                h("td", { class: "num profit" }, money(d.profit)),
                h("td", { class: "num hide-narrow" }, money(d.shrinkage)),
              ),
            )
        : [h("tr", null, h("td", { colspan: 5, class: "empty" }, "No sales in this period."))]),
    );

    lowRows.replaceChildren(
      ...(low.length
        ? low.map((l) =>
            h(
              "tr",
              { dataset: { sku: l.sku }, class: l.covered ? null : "is-low" },
              h("td", null, h("div", { class: "cell-name" }, l.name), h("div", { class: "cell-sub" }, l.sku)),
              h("td", { class: "num" }, String(l.on_hand)),
              h("td", { class: "num" }, String(l.on_order)),
              h("td", { class: "num" }, String(l.reorder_level)),
              h(
                "td",
                null,
                l.covered
                  ? h("span", { class: "badge badge-ok" }, "Covered by orders")
                  : h("span", { class: "badge badge-low" }, "Order more"),
              ),
            ),
          )
        : [h("tr", null, h("td", { colspan: 5, class: "empty" }, "Nothing is low."))]),
    );

    shiftRows.replaceChildren(
      ...(shifts.length
        ? [...shifts]
            .reverse()
            .map((s) =>
              h(
                "tr",
                { dataset: { shift: s.id } },
                h("td", null, app.deviceName(s.device)),
                h(
                  "td",
                  null,
                  s.opened_at ? dateTime(s.opened_at) : "—",
                  s.closed_at ? "" : h("span", { class: "badge" }, "Open"),
                ),
                h("td", { class: "num" }, money(s.expected)),
                h("td", { class: "num" }, s.counted === null ? "—" : money(s.counted)),
                h(
                  "td",
                  { class: `num ${s.difference < 0 ? "neg" : ""}` },
                  s.difference === null ? "—" : money(s.difference),
                ),
                h(
                  "td",
                  null,
                  h(
                    "button",
                    { type: "button", class: "btn btn-small", onclick: () => showShiftReport(s, app) },
                    "Report",
                  ),
                ),
              ),
            )
        : [h("tr", null, h("td", { colspan: 6, class: "empty" }, "No shifts in this period."))]),
    );

    const last = closes.length ? closes[closes.length - 1] : null;
    periods.replaceChildren(
      h(
        "p",
        { id: "closed-through" },
        last
          ? `The books are closed through ${last.through} (by ${app.personName(last.closed_by)}, ${dateTime(last.closed_at)}).`
          : "No period is closed yet.",
      ),
      app.can("owner")
        ? h(
            "button",
            { type: "button", class: "btn", id: "period-close", onclick: closeDialog },
            icon("lock", 16),
            "Close a period",
          )
        : h("p", { class: "muted" }, "Owners close periods."),
    );

    exportLinks.replaceChildren(
      ...[
        ["profit", "Profit per day", `?from=${from}&to=${today}`],
        ["shifts", "Shifts", `?from=${from}&to=${today}`],
        ["sales", "Sales lines", `?from=${from}&to=${today}`],
        ["movements", "Stock movements", `?from=${from}&to=${today}`],
        ["stock", "Stock on hand", ""],
      ].map(([file, label, q]) =>
        h(
          "a",
          {
            class: "btn",
            href: `/api/v1/export/${file}.csv${q}`,
            download: `${file}-${today}.csv`,
            id: `export-${file}`,
          },
          icon("download", 18),
          label,
        ),
      ),
    );
  }

  function closeDialog() {
    const through = h("input", {
      type: "date",
      name: "through",
      id: "period-through",
      value: daysBefore(shopDay(), 1),
    });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "period-save" }, "Close the books");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      alertBox(
        "info",
        "The figures of every day up to this one freeze on every device. Sales that arrive later for those days " +
          "(an offline till) show as an adjustment on the first open day.",
      ),
      h("div", { class: "fields" }, field("Last day of the period", through)),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Close a period", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        const c = await post("/periods", { through: through.value });
        toast(`The books are closed through ${c.through}.`);
        d.close();
        await load();
      });
    });
  }

  const reload = debounce(() => load().catch((err) => toast(humanError(err), "error")), 300);
  app.onEvent((ev) => {
    if (["sale_recorded", "stock_changed", "lagged", "changes_dropped", "shop_changed"].includes(ev.type)) reload();
  });
  await load();
  return () => window.removeEventListener("resize", onResize);
}

function kpi(label, value, id) {
  return h("div", { class: "kpi", id }, h("div", { class: "k-label" }, label), h("div", { class: "k-value" }, value));
}
