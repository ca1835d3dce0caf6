// Stock: levels with low stock highlighted, search, stock-in with cost, removal with a reason,
// a count, and each product's movements. Updates live when another till sells.

import { get, post, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, alertBox, openDialog, debounce, showFormError, table } from "../lib/dom.js";
import { money, parseMoney, decimal, dateTime } from "../lib/format.js";

export const REASONS = {
  damaged: "Damaged",
  expired: "Expired",
  theft: "Theft or loss",
  own_use: "Own use",
  returned_to_supplier: "Returned to supplier",
  other: "Other",
};

const KIND = {
  stock_in: "Stock in",
  sale: "Sale",
  removal: "Removed",
  adjustment: "Count",
  return: "Return",
  void: "Void",
};

function keyOf(s) {
  return s.variant_id ? `${s.product_id}/${s.variant_id}` : s.product_id;
}

export async function render(main, app) {
  let levels = [];
  let products = [];
  let lowOnly = false;
  const flashKeys = new Set();

  const search = h("input", {
    type: "search",
    id: "stock-search",
    placeholder: "Search name or SKU",
    "aria-label": "Search stock",
  });
  const lowToggle = h("input", { type: "checkbox", id: "low-only" });
  const summary = h("div", { class: "kpis", id: "stock-summary" });
  const tbody = h("tbody", { id: "stock-rows" });
  const live = h("span", { class: "badge badge-ok", id: "stock-live", hidden: true }, "Updated just now");

  add(
    main,
    h(
      "div",
      { class: "screen-head" },
      h("h1", null, "Stock"),
      live,
      h("span", { class: "spacer" }),
      h("div", { class: "search" }, icon("search"), search),
      h("label", { class: "check", for: "low-only" }, lowToggle, "Low stock only"),
    ),
    summary,
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "stock-table", class: "cards" },
          [
            h("th", null, "Product"),
            h("th", { class: "num" }, "On hand"),
            h("th", { class: "num hide-narrow" }, "Reorder at"),
            h("th", { class: "num hide-narrow" }, "Value at cost"),
            h("th", null, h("span", { class: "sr-only" }, "Actions")),
          ],
          tbody,
        ),
      ),
    ),
  );

  async function load() {
    [levels, products] = await Promise.all([get("/stock"), get("/products?include_archived=true")]);
    draw();
  }

  function productOf(id) {
    return products.find((p) => p.id === id);
  }

  function draw() {
    const q = search.value.trim().toLowerCase();
    const visible = levels.filter((s) => {
      const p = productOf(s.product_id);
      if (p && p.archived && s.on_hand === 0) return false;
      if (lowOnly && !s.low) return false;
      return !q || s.name.toLowerCase().includes(q) || s.sku.toLowerCase().includes(q);
    });
    const value = levels.reduce((a, s) => a + s.value_at_cost, 0);
    const low = levels.filter((s) => s.low).length;
    summary.replaceChildren(
      kpi("Products in stock", String(levels.filter((s) => s.on_hand > 0).length)),
      kpi("Low or out", String(low), low ? "warn" : null),
      kpi("Stock value at cost", money(value)),
    );
    if (!visible.length) {
      tbody.replaceChildren(
        h(
          "tr",
          null,
          h(
            "td",
            { colspan: 5, class: "empty" },
            levels.length
              ? "Nothing matches."
              : "No products yet. Add some on the Products screen, then receive stock here.",
          ),
        ),
      );
      return;
    }
    tbody.replaceChildren(
      ...visible.map((s) => {
        const k = keyOf(s);
        const out = s.on_hand <= 0;
        const cls = [out ? "is-out" : s.low ? "is-low" : "", flashKeys.has(k) ? "flash" : ""].join(" ").trim();
        return h(
          "tr",
          { class: cls || null, dataset: { key: k, sku: s.sku } },
          h("td", null, h("div", { class: "cell-name" }, s.name), h("div", { class: "cell-sub" }, s.sku)),
          h(
            "td",
            { class: "num" },
            h("span", { class: "on-hand" }, String(s.on_hand)),
            " ",
            out
              ? h("span", { class: "badge badge-out" }, "Out")
              : s.low
                ? h("span", { class: "badge badge-low" }, "Low")
                : null,
          ),
          h("td", { class: "num hide-narrow" }, String(s.reorder_level)),
          h("td", { class: "num hide-narrow" }, money(s.value_at_cost)),
          h(
            "td",
            null,
            h(
              "div",
              { class: "row end" },
              h(
                "button",
                { type: "button", class: "btn btn-small", dataset: { action: "in" }, onclick: () => stockIn(s) },
                icon("box_in", 16),
                "In",
              ),
              app.can("manager")
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small",
                      dataset: { action: "remove" },
                      onclick: () => removeDialog(s),
                    },
                    icon("box_out", 16),
                    "Remove",
                  )
                : null,
              app.can("manager")
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small",
                      dataset: { action: "count" },
                      onclick: () => countDialog(s),
                    },
                    icon("count", 16),
                    "Count",
                  )
                : null,
              h(
                "button",
                {
                  type: "button",
                  class: "btn btn-small btn-ghost",
                  dataset: { action: "history" },
                  onclick: () => history(s),
                },
                icon("history", 16),
                "History",
              ),
            ),
          ),
        );
      }),
    );
    flashKeys.clear();
  }

  function target(s) {
    return { product_id: s.product_id, variant_id: s.variant_id || null };
  }

  function stockIn(s) {
    const p = productOf(s.product_id);
    const qty = h("input", { name: "qty", type: "number", min: 1, inputmode: "numeric", id: "in-qty" });
    const cost = h("input", {
      name: "unit_cost",
      inputmode: "decimal",
      id: "in-cost",
      value: p && p.cost ? decimal(p.cost) : "",
    });
    const note = h("input", { name: "note", placeholder: "Supplier, delivery note…" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "in-save" }, "Add to stock");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, `${s.name}: ${s.on_hand} on hand.`),
      h(
        "div",
        { class: "fields" },
        field("Quantity received", qty),
        field("Cost per unit", cost, "What you paid, per item."),
        field("Note", note, null, true),
      ),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Stock in", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const unitCost = cost.value.trim() ? parseMoney(cost.value) : null;
      if (cost.value.trim() && (unitCost === null || unitCost < 0)) {
        showFormError(form, { message: "Type the cost per unit like 2.40.", field: "unit_cost" });
        return;
      }
      busy(ok, form, async () => {
        await post("/stock/in", {
          ...target(s),
          qty: Math.floor(Number(qty.value)),
          unit_cost: unitCost,
          note: note.value.trim() || null,
        });
        toast(`${qty.value} × ${s.name} added to stock.`);
        d.close();
        await load();
      });
    });
  }

  function removeDialog(s) {
    const qty = h("input", { name: "qty", type: "number", min: 1, inputmode: "numeric" });
    const reason = h(
      "select",
      { name: "reason" },
      Object.entries(REASONS).map(([v, l]) => h("option", { value: v }, l)),
    );
    const note = h("input", { name: "note" });
    const ok = h("button", { type: "submit", class: "btn btn-primary" }, "Remove from stock");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, `${s.name}: ${s.on_hand} on hand.`),
      h("div", { class: "fields" }, field("Quantity", qty), field("Reason", reason), field("Note", note, null, true)),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Remove stock", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        await post("/stock/remove", {
          ...target(s),
          qty: Math.floor(Number(qty.value)),
          reason: reason.value,
          note: note.value.trim() || null,
        });
        toast(`${qty.value} × ${s.name} removed (${REASONS[reason.value].toLowerCase()}).`);
        d.close();
        await load();
      });
    });
  }

  function countDialog(s) {
    const counted = h("input", { name: "counted", type: "number", min: 0, inputmode: "numeric", value: s.on_hand });
    const diff = h("p", { class: "muted" });
    const note = h("input", { name: "note", placeholder: "e.g. monthly count" });
    const showDiff = () => {
      const n = Math.floor(Number(counted.value));
      const dlt = n - s.on_hand;
      diff.textContent =
        Number.isFinite(dlt) && dlt !== 0
          ? `That is ${dlt > 0 ? "+" : ""}${dlt} compared with the ${s.on_hand} on record.`
          : "Same as on record.";
    };
    counted.addEventListener("input", showDiff);
    const ok = h("button", { type: "submit", class: "btn btn-primary" }, "Save count");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, `Count how many ${s.name} are on the shelf and in the back.`),
      h("div", { class: "fields" }, field("Counted", counted), field("Note", note)),
      diff,
      h("div", { class: "row end" }, ok),
    );
    showDiff();
    const d = openDialog({ title: "Stock count", body: form });
    counted.select();
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        await post("/stock/adjust", {
          ...target(s),
          counted: Math.floor(Number(counted.value)),
          note: note.value.trim() || null,
        });
        toast(`Count saved: ${counted.value} × ${s.name}.`);
        d.close();
        await load();
      });
    });
  }

  async function history(s) {
    const body = h("div", { id: "movements" }, h("p", { class: "muted" }, "Loading…"));
    openDialog({ title: `History — ${s.name}`, body, wide: true });
    try {
      const moves = (await get(`/stock/${s.product_id}/movements`))
        .filter((m) => (m.variant_id || null) === (s.variant_id || null))
        .reverse();
      if (!moves.length) {
        body.replaceChildren(h("p", { class: "empty" }, "No movements yet."));
        return;
      }
      body.replaceChildren(
        h(
          "div",
          { class: "table-wrap" },
          table(
            null,
            [
              h("th", null, "When"),
              h("th", null, "What"),
              h("th", { class: "num" }, "Qty"),
              h("th", { class: "num" }, "Unit cost"),
              h("th", null, "Where / who"),
              h("th", null, "Note"),
            ],
            h(
              "tbody",
              null,
              moves.map((m) =>
                h(
                  "tr",
                  null,
                  h("td", { class: "nowrap" }, dateTime(m.time)),
                  h("td", null, KIND[m.kind] || m.kind, m.reason ? ` (${REASONS[m.reason].toLowerCase()})` : ""),
                  h("td", { class: "num" }, m.qty > 0 ? `+${m.qty}` : String(m.qty)),
                  h(
                    "td",
                    { class: "num" },
                    m.unit_cost !== null && m.unit_cost !== undefined ? money(m.unit_cost) : "",
                  ),
                  h("td", null, app.deviceName(m.device), m.person ? ` · ${app.personName(m.person)}` : ""),
                  h("td", null, m.note || ""),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (err) {
      body.replaceChildren(alertBox("error", humanError(err)));
    }
  }

  search.addEventListener("input", draw);
  lowToggle.addEventListener("change", () => {
    lowOnly = lowToggle.checked;
    draw();
  });

  let liveTimer = null;
  const reload = debounce(() => {
    load()
      .then(() => {
        live.hidden = false;
        clearTimeout(liveTimer);
        liveTimer = setTimeout(() => (live.hidden = true), 4000);
      })
      .catch((err) => toast(humanError(err), "error"));
  }, 150);
  app.onEvent((ev) => {
    if (ev.type === "stock_changed") {
      flashKeys.add(ev.variant_id ? `${ev.product_id}/${ev.variant_id}` : ev.product_id);
      reload();
    } else if (["product_changed", "lagged", "changes_dropped", "sale_recorded"].includes(ev.type)) {
      reload();
    }
  });

  await load();
  return () => clearTimeout(liveTimer);
}

function kpi(label, value, tone) {
  return h(
    "div",
    { class: "kpi" },
    h("div", { class: "k-label" }, label),
    h("div", { class: `k-value${tone === "warn" ? " warn-text" : ""}` }, value),
  );
}
