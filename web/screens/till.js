// The till's drawer and parked carts, used by the Sell screen: the cash-drawer shift (open
// with a float, pay in, pay out, close with the counted cash and see the shift report), open
// tickets (park a cart, pick one up on any till), and refunds without a receipt (managers).

import { get, post, put, humanError } from "../lib/api.js";
import { h, icon, field, busy, toast, alertBox, openDialog, showFormError, table } from "../lib/dom.js";
import { money, parseMoney, dateTime } from "../lib/format.js";

/// The shift bar: what is open on this till and the buttons that go with it. Redraws itself.
export function shiftBar(app) {
  const bar = h("div", { class: "row shift-bar", id: "shift-bar" });
  let shift = null;

  async function refresh() {
    shift = await get("/shifts/current");
    draw();
  }

  function draw() {
    if (!shift) {
      bar.replaceChildren(
        h("span", { class: "muted", id: "shift-state" }, "No shift open on this till."),
        h(
          "button",
          { type: "button", class: "btn btn-small", id: "shift-open", onclick: openDialogFor },
          icon("lock", 16),
          "Open shift",
        ),
      );
      return;
    }
    bar.replaceChildren(
      h(
        "span",
        { id: "shift-state" },
        "Shift open since ",
        h("b", null, dateTime(shift.opened_at)),
        " · expected in drawer ",
        h("b", { id: "shift-expected", class: "num" }, money(shift.expected)),
      ),
      h(
        "button",
        { type: "button", class: "btn btn-small", id: "shift-pay-in", onclick: () => cashDialog("pay_in") },
        icon("box_in", 16),
        "Pay in",
      ),
      h(
        "button",
        { type: "button", class: "btn btn-small", id: "shift-pay-out", onclick: () => cashDialog("pay_out") },
        icon("box_out", 16),
        "Pay out",
      ),
      h(
        "button",
        { type: "button", class: "btn btn-small", id: "shift-close", onclick: closeDialog },
        icon("count", 16),
        "Close shift",
      ),
    );
  }

  function openDialogFor() {
    const float = h("input", { name: "float", inputmode: "decimal", id: "shift-float", placeholder: "100.00" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "shift-open-save" }, "Open shift");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, "Count the cash in the drawer before the first sale."),
      h("div", { class: "fields" }, field("Float (cash in the drawer)", float)),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Open a shift", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const amount = parseMoney(float.value);
      if (amount === null || amount < 0) {
        showFormError(form, { message: "Type the cash in the drawer, like 100.00.", field: "float" });
        return;
      }
      busy(ok, form, async () => {
        shift = await post("/shifts", { float: amount });
        toast("Shift opened.");
        d.close();
        draw();
      });
    });
  }

  function cashDialog(kind) {
    const amount = h("input", { name: "amount", inputmode: "decimal", id: "cash-amount" });
    const reason = h("input", {
      name: "reason",
      id: "cash-reason",
      placeholder: kind === "pay_in" ? "Change from the bank" : "Paid the window cleaner",
    });
    const ok = h(
      "button",
      { type: "submit", class: "btn btn-primary", id: "cash-save" },
      kind === "pay_in" ? "Put cash in" : "Take cash out",
    );
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("div", { class: "fields" }, field("Amount", amount), field("Reason", reason, null, true)),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: kind === "pay_in" ? "Pay in" : "Pay out", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = parseMoney(amount.value);
      if (value === null || value <= 0) {
        showFormError(form, { message: "Type an amount like 20.00.", field: "amount" });
        return;
      }
      busy(ok, form, async () => {
        shift = await post("/shifts/current/cash", { kind, amount: value, reason: reason.value });
        toast(kind === "pay_in" ? `${money(value)} put in the drawer.` : `${money(value)} taken out.`);
        d.close();
        draw();
      });
    });
  }

  function closeDialog() {
    const counted = h("input", { name: "counted", inputmode: "decimal", id: "shift-counted" });
    const note = h("input", { name: "note", id: "shift-note" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "shift-close-save" }, "Close shift");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, "Count the cash in the drawer, then type what you counted."),
      h("div", { class: "fields" }, field("Cash counted", counted), field("Note", note)),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Close the shift", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = parseMoney(counted.value);
      if (value === null || value < 0) {
        showFormError(form, { message: "Type the cash you counted, like 94.00.", field: "counted" });
        return;
      }
      busy(ok, form, async () => {
        const closed = await post("/shifts/current/close", { counted: value, note: note.value.trim() || null });
        d.close();
        shift = null;
        draw();
        showShiftReport(closed, app);
      });
    });
  }

  app.onEvent((ev) => {
    if (ev.type === "sale_recorded" || ev.type === "lagged") refresh().catch(() => {});
  });
  refresh().catch((err) => toast(humanError(err), "error"));
  return { element: bar, refresh };
}

/// The shift report: takings by method, cash in and out, expected against counted.
export function shiftReport(s, app) {
  const row = (label, value, id) =>
    h("tr", null, h("th", { scope: "row" }, label), h("td", { class: "num", id }, value));
  const diff = s.difference;
  return h(
    "div",
    { class: "stack", id: "shift-report" },
    h(
      "p",
      null,
      `${app.deviceName(s.device)} · opened ${s.opened_at ? dateTime(s.opened_at) : "—"} by ${app.personName(s.opened_by)}`,
      s.closed_at ? ` · closed ${dateTime(s.closed_at)} by ${app.personName(s.closed_by)}` : " · still open",
    ),
    table(
      { class: "kv" },
      [h("th", null, "Item"), h("th", { class: "num" }, "Amount")],
      h(
        "tbody",
        null,
        row("Float", money(s.float)),
        row(`Sales (${s.sales})`, ""),
        row("  Cash, net of change", money(s.cash_sales), "rep-cash"),
        row("  Card", money(s.card_sales), "rep-card"),
        row("  Other", money(s.other_sales)),
        row("Cash paid back (voids, returns, refunds)", `−${money(s.cash_refunds)}`),
        row("Paid in", money(s.pay_ins)),
        row("Paid out", `−${money(s.pay_outs)}`),
        row("Expected in the drawer", money(s.expected), "rep-expected"),
        row("Counted", s.counted === null || s.counted === undefined ? "—" : money(s.counted), "rep-counted"),
        row(
          "Difference",
          diff === null || diff === undefined ? "—" : `${diff > 0 ? "+" : ""}${money(diff)}`,
          "rep-difference",
        ),
      ),
    ),
    s.moves && s.moves.length
      ? table(
          null,
          [h("th", null, "Time"), h("th", null, "Reason"), h("th", { class: "num" }, "Amount")],
          h(
            "tbody",
            null,
            ...s.moves.map((m) =>
              h(
                "tr",
                null,
                h("td", null, dateTime(m.time)),
                h("td", null, m.reason),
                h("td", { class: "num" }, money(m.amount)),
              ),
            ),
          ),
        )
      : null,
    s.note ? h("p", null, `Note: ${s.note}`) : null,
    diff
      ? alertBox(
          diff < 0 ? "error" : "info",
          diff < 0 ? `Cash is short by ${money(-diff)}.` : `Cash is over by ${money(diff)}.`,
        )
      : null,
  );
}

export function showShiftReport(s, app) {
  openDialog({ title: "Shift report", body: shiftReport(s, app), wide: true });
}

/// Parks the cart: a new ticket asks for a name; a ticket picked up keeps its name.
export async function parkCart(lines, current) {
  if (current) {
    return put(`/tickets/${current.id}`, { name: current.name, lines });
  }
  return new Promise((resolve) => {
    const name = h("input", { name: "name", id: "ticket-name", placeholder: "Table 4, Mrs Smith…" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "ticket-save" }, "Park");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h("p", null, "Any till can pick this cart up and take payment."),
      h("div", { class: "fields" }, field("Name", name)),
      h("div", { class: "row end" }, ok),
    );
    let saved = null;
    const d = openDialog({ title: "Park this cart", body: form, onClose: () => resolve(saved) });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        saved = await post("/tickets", { name: name.value, lines });
        d.close();
      });
    });
  });
}

/// Lists open tickets; resolves with the one picked up (or null).
export function pickTicket(app) {
  return new Promise((resolve) => {
    let picked = null;
    const list = h("div", { class: "stack", id: "ticket-list" }, h("p", { class: "muted" }, "Loading…"));
    const d = openDialog({ title: "Open tickets", body: list, wide: true, onClose: () => resolve(picked) });
    get("/tickets?open=true")
      .then((tickets) => {
        if (!tickets.length) {
          list.replaceChildren(h("p", { class: "muted" }, "No parked carts."));
          return;
        }
        list.replaceChildren(
          ...tickets.map((t) => {
            const twice = t.double_closed_by && t.double_closed_by.length;
            return h(
              "div",
              { class: "ticket-row row", dataset: { ticket: t.id } },
              h(
                "div",
                { class: "grow" },
                h("div", { class: "cell-name" }, t.name),
                h(
                  "div",
                  { class: "cell-sub" },
                  `${t.lines.reduce((a, l) => a + l.qty, 0)} items · parked ${dateTime(t.updated_at)} on ${app.deviceName(t.updated_on)}`,
                ),
                twice
                  ? alertBox(
                      "error",
                      `Paid on two tills while they were cut off from each other. Void or refund the later sale (${t.double_closed_by.length}).`,
                    )
                  : null,
              ),
              twice
                ? null
                : h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-primary btn-small",
                      onclick: () => {
                        picked = t;
                        d.close();
                      },
                    },
                    "Pick up",
                  ),
              twice
                ? null
                : h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small btn-ghost",
                      onclick: async () => {
                        try {
                          await post(`/tickets/${t.id}/discard`);
                          toast(`Ticket “${t.name}” discarded.`);
                          d.close();
                        } catch (err) {
                          toast(humanError(err), "error");
                        }
                      },
                    },
                    "Discard",
                  ),
            );
          }),
        );
      })
      .catch((err) => list.replaceChildren(alertBox("error", humanError(err))));
  });
}

/// A refund without a receipt (managers): items, amount, method, reason, back on the shelf.
export function refundDialog(items, onDone) {
  const select = h(
    "select",
    { name: "product_id", id: "refund-item" },
    items.map((i) => h("option", { value: i.key }, `${i.name} (${i.sku}) · ${money(i.price)}`)),
  );
  const qty = h("input", { name: "qty", type: "number", min: 1, value: 1, id: "refund-qty" });
  const amount = h("input", { name: "amount", inputmode: "decimal", id: "refund-amount", placeholder: "price × qty" });
  const method = h(
    "select",
    { name: "refund_method", id: "refund-method" },
    h("option", { value: "cash" }, "Cash"),
    h("option", { value: "card" }, "Card"),
    h("option", { value: "other" }, "Other"),
  );
  const reason = h("input", { name: "reason", id: "refund-reason", placeholder: "No receipt, faulty…" });
  const restock = h("input", { type: "checkbox", id: "refund-restock", checked: true });
  const ok = h("button", { type: "submit", class: "btn btn-primary", id: "refund-save" }, "Refund");
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    h(
      "div",
      { class: "fields" },
      field("Item", select, null, true),
      field("Quantity", qty),
      field("Amount refunded", amount, "Empty: today's price."),
      field("Refund by", method),
      field("Reason", reason, null, true),
    ),
    h("label", { class: "check", for: "refund-restock" }, restock, "Back on the shelf"),
    h("div", { class: "row end" }, ok),
  );
  const d = openDialog({ title: "Refund without a receipt", body: form });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const it = items.find((i) => i.key === select.value);
    const typed = amount.value.trim() ? parseMoney(amount.value) : null;
    if (amount.value.trim() && (typed === null || typed < 0)) {
      showFormError(form, { message: "Type an amount like 12.50, or leave it empty.", field: "amount" });
      return;
    }
    busy(ok, form, async () => {
      const r = await post("/refunds", {
        lines: [
          {
            product_id: it.product.id,
            variant_id: it.variant ? it.variant.id : null,
            qty: Math.floor(Number(qty.value)),
            amount: typed,
          },
        ],
        refund_method: method.value,
        reason: reason.value,
        restock: restock.checked,
      });
      toast(`Refunded ${money(r.refund)} by ${r.refund_method}.`);
      d.close();
      if (onDone) onDone(r);
    });
  });
}
