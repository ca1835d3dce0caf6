// Orders: suppliers, purchase orders (draft → sent → confirmed → received, or cancelled) and
// receiving deliveries in parts, with the price variance against the order. Staff receive;
// managers and owners write orders. Updates live when another device changes an order.

import { get, post, put, patch, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, alertBox, openDialog, showFormError, table, debounce } from "../lib/dom.js";
import { money, parseMoney, decimal, dateTime } from "../lib/format.js";

const STATUS = {
  draft: "Draft",
  sent: "Sent",
  confirmed: "Confirmed",
  received: "Received",
  cancelled: "Cancelled",
};

function badge(status) {
  const cls = { received: "badge-ok", cancelled: "badge-out", draft: "badge-low" }[status] || "";
  return h("span", { class: `badge ${cls}`, dataset: { status } }, STATUS[status] || status);
}

function items(products) {
  const out = [];
  for (const p of products) {
    if (p.archived) continue;
    if (!p.variants.length)
      out.push({ key: p.id, product_id: p.id, variant_id: null, name: p.name, sku: p.sku, cost: p.cost });
    else
      for (const v of p.variants)
        out.push({
          key: `${p.id}/${v.id}`,
          product_id: p.id,
          variant_id: v.id,
          name: `${p.name} — ${v.name}`,
          sku: v.sku,
          cost: p.cost,
        });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export async function render(main, app) {
  let orders = [];
  let suppliers = [];
  let catalog = [];
  let openOnly = true;
  const manager = app.can("manager");

  const seg = h("div", { class: "seg", role: "group", "aria-label": "Which orders" });
  for (const [v, label] of [
    [true, "Open"],
    [false, "All"],
  ]) {
    seg.appendChild(
      h(
        "button",
        {
          type: "button",
          "aria-pressed": String(v === openOnly),
          onclick: () => {
            openOnly = v;
            for (const b of seg.children) b.setAttribute("aria-pressed", String(b.textContent === label));
            load().catch((err) => toast(humanError(err), "error"));
          },
        },
        label,
      ),
    );
  }
  const tbody = h("tbody", { id: "po-rows" });
  add(
    main,
    h(
      "div",
      { class: "screen-head" },
      h("h1", null, "Orders"),
      h("span", { class: "spacer" }),
      seg,
      manager
        ? h("button", { type: "button", class: "btn", id: "suppliers-open", onclick: suppliersDialog }, "Suppliers")
        : null,
      manager
        ? h(
            "button",
            { type: "button", class: "btn btn-primary", id: "po-new", onclick: newOrderDialog },
            icon("plus"),
            "New order",
          )
        : null,
    ),
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "po-table", class: "cards" },
          [
            h("th", null, "Order"),
            h("th", null, "Supplier"),
            h("th", null, "Status"),
            h("th", { class: "num hide-narrow" }, "Ordered"),
            h("th", { class: "num hide-narrow" }, "Received"),
            h("th", null, h("span", { class: "sr-only" }, "Actions")),
          ],
          tbody,
        ),
      ),
    ),
  );

  async function load() {
    [orders, suppliers, catalog] = await Promise.all([
      get(`/purchase-orders${openOnly ? "?open=true" : ""}`),
      get("/suppliers"),
      get("/products"),
    ]);
    draw();
  }

  function draw() {
    if (!orders.length) {
      tbody.replaceChildren(
        h(
          "tr",
          null,
          h(
            "td",
            { colspan: 6, class: "empty" },
            openOnly
              ? "No order is waiting for goods."
              : manager
                ? "No purchase orders yet. Add a supplier, then a new order."
                : "No purchase orders yet.",
          ),
        ),
      );
      return;
    }
    tbody.replaceChildren(
      ...orders.map((po) => {
        const ordered = po.lines.reduce((a, l) => a + l.qty, 0);
        const got = po.lines.reduce((a, l) => a + Math.min(l.received, l.qty), 0);
        return h(
          "tr",
          { dataset: { po: po.id, number: po.number } },
          h(
            "td",
            null,
            h("div", { class: "cell-name" }, po.number),
            h("div", { class: "cell-sub" }, po.expected_on ? `expected ${po.expected_on}` : dateTime(po.created_at)),
          ),
          h("td", null, po.supplier_name),
          h("td", null, badge(po.status)),
          h("td", { class: "num hide-narrow" }, money(po.ordered_value)),
          h("td", { class: "num hide-narrow" }, `${got} / ${ordered}`),
          h(
            "td",
            null,
            h(
              "div",
              { class: "row end" },
              h("button", { type: "button", class: "btn btn-small", onclick: () => detail(po.id) }, "Open"),
            ),
          ),
        );
      }),
    );
  }

  function supplierForm(s, done) {
    const name = h("input", { name: "name", id: "sup-name", value: s ? s.name : "" });
    const contact = h("input", { name: "contact", value: s && s.contact ? s.contact : "" });
    const phone = h("input", { name: "phone", value: s && s.phone ? s.phone : "" });
    const email = h("input", { name: "email", type: "email", value: s && s.email ? s.email : "" });
    const note = h("input", { name: "note", value: s && s.note ? s.note : "" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "sup-save" }, s ? "Save" : "Add supplier");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h(
        "div",
        { class: "fields" },
        field("Name", name),
        field("Contact", contact),
        field("Phone", phone),
        field("E-mail", email),
        field("Note", note, null, true),
      ),
      h("div", { class: "row end" }, ok),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = {
        name: name.value,
        contact: contact.value || null,
        phone: phone.value || null,
        email: email.value || null,
        note: note.value || null,
      };
      busy(ok, form, async () => {
        const saved = s ? await put(`/suppliers/${s.id}`, body) : await post("/suppliers", body);
        toast(`${saved.name} saved.`);
        await load();
        done(saved);
      });
    });
    return form;
  }

  function suppliersDialog() {
    const list = h("div", { class: "stack", id: "sup-list" });
    const drawList = () =>
      list.replaceChildren(
        suppliers.length
          ? table(
              null,
              [h("th", null, "Supplier"), h("th", null, "Contact"), h("th", null, "")],
              h(
                "tbody",
                null,
                ...suppliers.map((s) =>
                  h(
                    "tr",
                    null,
                    h("td", null, s.name),
                    h("td", null, [s.contact, s.phone, s.email].filter(Boolean).join(" · ") || "—"),
                    h(
                      "td",
                      null,
                      h(
                        "button",
                        {
                          type: "button",
                          class: "btn btn-small btn-ghost",
                          onclick: () => {
                            const f = supplierForm(s, () => {
                              drawList();
                              f.remove();
                            });
                            list.appendChild(f);
                          },
                        },
                        icon("edit", 16),
                        "Edit",
                      ),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No suppliers yet."),
      );
    drawList();
    const form = supplierForm(null, () => {
      drawList();
      form.reset();
    });
    openDialog({
      title: "Suppliers",
      wide: true,
      body: h("div", { class: "stack" }, list, h("h3", null, "Add a supplier"), form),
    });
  }

  function newOrderDialog() {
    if (!suppliers.length) {
      toast("Add a supplier first.", "error");
      suppliersDialog();
      return;
    }
    const all = items(catalog);
    const supplier = h(
      "select",
      { name: "supplier_id", id: "po-supplier" },
      suppliers.map((s) => h("option", { value: s.id }, s.name)),
    );
    const expected = h("input", { name: "expected_on", type: "date", id: "po-expected" });
    const note = h("input", { name: "note" });
    const lines = h("div", { class: "stack", id: "po-lines" });
    const addLine = () => {
      const sel = h(
        "select",
        { name: "item", class: "po-item" },
        all.map((i) => h("option", { value: i.key }, `${i.name} (${i.sku})`)),
      );
      const qty = h("input", { name: "qty", type: "number", min: 1, value: 1, class: "po-qty" });
      const cost = h("input", { name: "unit_cost", inputmode: "decimal", class: "po-cost" });
      const setCost = () => {
        const it = all.find((i) => i.key === sel.value);
        cost.value = it ? decimal(it.cost) : "";
      };
      sel.addEventListener("change", setCost);
      setCost();
      const row = h(
        "div",
        { class: "fields po-line" },
        field("Item", sel),
        field("Quantity", qty),
        field("Cost per unit", cost),
        h(
          "button",
          { type: "button", class: "btn btn-ghost icon-btn", "aria-label": "Remove line", onclick: () => row.remove() },
          icon("trash"),
        ),
      );
      lines.appendChild(row);
    };
    addLine();
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "po-save" }, "Save draft");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("div", { class: "fields" }, field("Supplier", supplier), field("Expected on", expected), field("Note", note)),
      lines,
      h(
        "div",
        { class: "row" },
        h(
          "button",
          { type: "button", class: "btn btn-small", id: "po-add-line", onclick: addLine },
          icon("plus", 16),
          "Add line",
        ),
        h("span", { class: "spacer" }),
        ok,
      ),
    );
    const d = openDialog({ title: "New purchase order", body: form, wide: true });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = {
        supplier_id: supplier.value,
        expected_on: expected.value || null,
        note: note.value || null,
        lines: [...lines.querySelectorAll(".po-line")].map((row) => {
          const it = all.find((i) => i.key === row.querySelector(".po-item").value);
          const c = row.querySelector(".po-cost").value.trim();
          return {
            product_id: it.product_id,
            variant_id: it.variant_id,
            qty: Math.floor(Number(row.querySelector(".po-qty").value)),
            unit_cost: c ? parseMoney(c) : null,
          };
        }),
      };
      busy(ok, form, async () => {
        const po = await post("/purchase-orders", body);
        toast(`${po.number} saved as a draft.`);
        d.close();
        await load();
        detail(po.id);
      });
    });
  }

  async function detail(id) {
    let po;
    try {
      po = await get(`/purchase-orders/${id}`);
    } catch (err) {
      toast(humanError(err), "error");
      return;
    }
    const body = h("div", { class: "stack", id: "po-detail", dataset: { status: po.status } });
    const d = openDialog({ title: `${po.number} · ${po.supplier_name}`, body, wide: true });
    const setStatus = (status, label) =>
      h(
        "button",
        {
          type: "button",
          class: status === "cancelled" ? "btn btn-danger" : "btn",
          id: `po-${status}`,
          onclick: async (e) => {
            try {
              e.target.disabled = true;
              await patch(`/purchase-orders/${po.id}`, { status });
              toast(`${po.number}: ${STATUS[status].toLowerCase()}.`);
              d.close();
              await load();
              detail(po.id);
            } catch (err) {
              e.target.disabled = false;
              toast(humanError(err), "error");
            }
          },
        },
        label,
      );
    const actions = [];
    if (manager && po.status === "draft") actions.push(setStatus("sent", "Mark sent"));
    if (manager && po.status === "sent") actions.push(setStatus("confirmed", "Mark confirmed"));
    if (manager && (po.status === "sent" || po.status === "confirmed") && po.deliveries.length)
      actions.push(setStatus("received", "Close short (received)"));
    if (manager && ["draft", "sent", "confirmed"].includes(po.status) && !po.deliveries.length)
      actions.push(setStatus("cancelled", "Cancel order"));
    if (po.status === "sent" || po.status === "confirmed")
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "btn btn-primary",
            id: "po-receive",
            onclick: () => {
              d.close();
              receiveDialog(po);
            },
          },
          icon("box_in", 16),
          "Receive delivery",
        ),
      );
    add(
      body,
      h(
        "div",
        { class: "row" },
        badge(po.status),
        po.expected_on ? h("span", null, `Expected ${po.expected_on}`) : null,
      ),
      po.note ? h("p", null, po.note) : null,
      table(
        { id: "po-detail-lines" },
        [
          h("th", null, "Item"),
          h("th", { class: "num" }, "Ordered"),
          h("th", { class: "num" }, "Received"),
          h("th", { class: "num" }, "To come"),
          h("th", { class: "num" }, "Cost"),
        ],
        h(
          "tbody",
          null,
          ...po.lines.map((l) =>
            h(
              "tr",
              { dataset: { sku: l.sku } },
              h("td", null, h("div", { class: "cell-name" }, l.name), h("div", { class: "cell-sub" }, l.sku)),
              h("td", { class: "num" }, String(l.qty)),
              h("td", { class: "num received" }, String(l.received)),
              h("td", { class: "num outstanding" }, String(l.outstanding)),
              h("td", { class: "num" }, money(l.unit_cost)),
            ),
          ),
        ),
      ),
      h("h3", null, "Deliveries"),
      po.deliveries.length
        ? table(
            { id: "po-deliveries" },
            [
              h("th", null, "Note"),
              h("th", null, "Received"),
              h("th", { class: "num" }, "Value"),
              h("th", { class: "num" }, "Variance"),
            ],
            h(
              "tbody",
              null,
              ...po.deliveries.map((dl) =>
                h(
                  "tr",
                  null,
                  h(
                    "td",
                    null,
                    dl.note_number,
                    dl.duplicates.length
                      ? h(
                          "div",
                          { class: "cell-sub" },
                          `also recorded on ${dl.duplicates.length} other device(s): counted once`,
                        )
                      : null,
                  ),
                  h("td", null, `${dateTime(dl.time)} · ${app.deviceName(dl.device)}`),
                  h("td", { class: "num" }, money(dl.total_cost)),
                  h(
                    "td",
                    { class: `num ${dl.variance > 0 ? "neg" : ""}` },
                    `${dl.variance > 0 ? "+" : ""}${money(dl.variance)}`,
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "Nothing received yet."),
      h("p", null, `Ordered ${money(po.ordered_value)} · received ${money(po.received_value)} at actual cost.`),
      actions.length ? h("div", { class: "row end" }, ...actions) : null,
    );
  }

  function receiveDialog(po) {
    const note = h("input", { name: "note_number", id: "dn-number", placeholder: "On the supplier's delivery note" });
    const rows = po.lines
      .filter((l) => l.outstanding > 0)
      .map((l) => {
        const qty = h("input", {
          type: "number",
          min: 0,
          value: l.outstanding,
          class: "dn-qty",
          dataset: { sku: l.sku },
        });
        const cost = h("input", {
          inputmode: "decimal",
          value: decimal(l.unit_cost),
          class: "dn-cost",
          dataset: { sku: l.sku },
        });
        const variance = h("span", { class: "muted num" });
        const show = () => {
          const c = parseMoney(cost.value);
          const n = Math.floor(Number(qty.value));
          variance.textContent =
            c === null || !Number.isFinite(n) || c === l.unit_cost
              ? ""
              : `${c > l.unit_cost ? "+" : ""}${money((c - l.unit_cost) * n)}`;
        };
        qty.addEventListener("input", show);
        cost.addEventListener("input", show);
        return {
          l,
          qty,
          cost,
          row: h("tr", null, h("td", null, l.name), h("td", null, qty), h("td", null, cost), h("td", null, variance)),
        };
      });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "dn-save" }, "Receive");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("div", { class: "fields" }, field("Delivery note number", note)),
      table(
        null,
        [h("th", null, "Item"), h("th", null, "Arrived"), h("th", null, "Cost per unit"), h("th", null, "Variance")],
        h("tbody", null, ...rows.map((r) => r.row)),
      ),
      alertBox("info", "Count what arrived; leave 0 for items still to come."),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: `Receive on ${po.number}`, body: form, wide: true });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const lines = [];
      for (const r of rows) {
        const n = Math.floor(Number(r.qty.value));
        if (!n) continue;
        const c = parseMoney(r.cost.value);
        if (c === null || c < 0) {
          showFormError(form, { message: `Type the cost of ${r.l.name} like 2.40.` });
          return;
        }
        lines.push({ product_id: r.l.product_id, variant_id: r.l.variant_id, qty: n, unit_cost: c });
      }
      busy(ok, form, async () => {
        const dl = await post(`/purchase-orders/${po.id}/deliveries`, { note_number: note.value, lines });
        toast(
          `Delivery ${dl.note_number} received: ${money(dl.total_cost)}${dl.variance ? `, variance ${dl.variance > 0 ? "+" : ""}${money(dl.variance)}` : ""}.`,
        );
        d.close();
        await load();
        detail(po.id);
      });
    });
  }

  const reload = debounce(() => load().catch((err) => toast(humanError(err), "error")), 300);
  app.onEvent((ev) => {
    if ((ev.type === "shop_changed" && ev.doc === "orders") || ev.type === "stock_changed" || ev.type === "lagged")
      reload();
  });
  await load();
}
