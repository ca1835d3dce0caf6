// Sell: search or scan into the box (a USB scanner types the code and presses Enter, which adds
// the item), a cart with quantities and line discounts, payment (cash with change, card, other,
// split), the receipt, and today's sales with void and return.

import { shiftBar, parkCart, pickTicket, refundDialog } from "./till.js";
import { get, getAll, post, humanError } from "../lib/api.js";
import {
  h,
  add,
  icon,
  field,
  busy,
  toast,
  alertBox,
  openDialog,
  confirmDialog,
  showFormError,
  fill,
  table,
} from "../lib/dom.js";
import { money, parseMoney, dateTime, time, lineAmounts, cashRound, shopDay, decimal, percent } from "../lib/format.js";

const CART_KEY = "tillmesh.cart";
const METHOD = { cash: "Cash", card: "Card", other: "Other" };

/// Everything that can be sold: a product without variants, or each variant of one.
function sellables(products) {
  const out = [];
  for (const p of products) {
    if (p.archived) continue;
    if (!p.variants.length) {
      out.push({ key: p.id, product: p, variant: null, name: p.name, sku: p.sku, barcode: p.barcode, price: p.price });
    } else {
      for (const v of p.variants) {
        out.push({
          key: `${p.id}/${v.id}`,
          product: p,
          variant: v,
          name: `${p.name} — ${v.name}`,
          sku: v.sku,
          barcode: v.barcode,
          price: v.price ?? p.price,
        });
      }
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export async function render(main, app) {
  const state = {
    items: [],
    stock: new Map(),
    cart: loadCart(),
    // The parked ticket this cart came from: paying closes it, parking updates it.
    ticket: loadTicket(),
  };
  const shift = shiftBar(app);
  const ticketsBtn = h(
    "button",
    { type: "button", class: "btn", id: "tickets-open", title: "Parked carts" },
    icon("history"),
    h("span", { class: "label-narrow-hide" }, "Tickets"),
  );
  const parkBtn = h("button", { type: "button", class: "btn btn-ghost btn-small", id: "cart-park" }, "Park");
  const refundBtn = app.can("manager")
    ? h("button", { type: "button", class: "btn", id: "refund-open", title: "Refund without a receipt" }, "Refund")
    : null;
  const ticketNote = h("div", { class: "muted", id: "cart-ticket" });

  const search = h("input", {
    type: "search",
    id: "sell-search",
    class: "grow",
    placeholder: "Scan a barcode or search",
    title: "Scan or type, then Enter to add. Enter on an empty box opens Pay.",
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Scan or search products",
  });
  const searchMsg = h("div", { id: "sell-message", "aria-live": "polite" });
  const tiles = h("div", { class: "tiles", id: "sell-tiles" });
  const cartLines = h("div", { class: "cart-lines", id: "cart-lines" });
  const totals = h("div", { class: "totals", id: "cart-totals" });
  const payBtn = h("button", { type: "button", class: "btn btn-primary btn-big btn-block", id: "pay" }, "Pay");
  const clearBtn = h("button", { type: "button", class: "btn btn-ghost btn-small", id: "cart-clear" }, "Clear");
  const historyBtn = h(
    "button",
    {
      type: "button",
      class: "btn",
      id: "sales-today",
      "aria-label": "Today's sales",
      title: "Sales of today or another day",
    },
    icon("history"),
    h("span", { class: "label-narrow-hide" }, "Today's sales"),
  );

  main.appendChild(
    h(
      "div",
      { class: "sell" },
      h(
        "div",
        { class: "sell-top" },
        h(
          "div",
          { class: "row nowrap-row" },
          h("div", { class: "search sell-search grow" }, icon("search"), search),
          ticketsBtn,
          historyBtn,
          refundBtn,
        ),
        shift.element,
        searchMsg,
      ),
      h("section", { class: "sell-tiles", "aria-label": "Products" }, tiles),
      h(
        "aside",
        { class: "panel cart", "aria-label": "Cart" },
        h("div", { class: "cart-head" }, h("h2", null, "Cart"), parkBtn, clearBtn),
        ticketNote,
        cartLines,
        h("div", { class: "cart-foot" }, totals, payBtn),
      ),
    ),
  );

  async function load() {
    const [products, stock] = await Promise.all([get("/products"), get("/stock")]);
    state.items = sellables(products);
    state.stock = new Map(
      stock.map((s) => [s.variant_id ? `${s.product_id}/${s.variant_id}` : s.product_id, s.on_hand]),
    );
    // Keep cart lines up to date with the catalog (price edits, archived products).
    state.cart = state.cart.filter((l) => state.items.some((i) => i.key === l.key));
    drawTiles();
    drawCart();
  }

  function onHand(key) {
    return state.stock.has(key) ? state.stock.get(key) : 0;
  }

  function message(kind, text) {
    searchMsg.replaceChildren(text ? alertBox(kind, text) : "");
  }

  function matches(q) {
    const n = q.trim().toLowerCase();
    if (!n) return state.items;
    return state.items.filter(
      (i) =>
        i.name.toLowerCase().includes(n) ||
        i.sku.toLowerCase().includes(n) ||
        (i.barcode || "").toLowerCase().includes(n),
    );
  }

  function drawTiles() {
    const list = matches(search.value).slice(0, 60);
    if (!state.items.length) {
      tiles.replaceChildren(
        h(
          "div",
          { class: "panel empty" },
          "No products yet. ",
          app.can("manager") ? h("a", { href: "#/products" }, "Add products") : "Ask a manager to add products.",
          ".",
        ),
      );
      return;
    }
    if (!list.length) {
      tiles.replaceChildren(h("p", { class: "empty" }, `Nothing matches “${search.value.trim()}”.`));
      return;
    }
    tiles.replaceChildren(
      ...list.map((i) => {
        const n = onHand(i.key);
        const low = n <= (i.product.reorder_level ?? 0);
        return h(
          "button",
          { type: "button", class: "tile", dataset: { key: i.key }, onclick: () => addToCart(i) },
          h("span", { class: "t-name" }, i.name),
          h("span", { class: "cell-sub" }, i.sku),
          h(
            "span",
            { class: "t-foot" },
            h("span", { class: "t-price" }, money(i.price)),
            h(
              "span",
              { class: `badge ${n <= 0 ? "badge-out" : low ? "badge-low" : ""}` },
              n <= 0 ? "Out" : `${n} left`,
            ),
          ),
        );
      }),
    );
  }

  function addToCart(item, qty = 1) {
    const line = state.cart.find((l) => l.key === item.key);
    if (line) line.qty += qty;
    else state.cart.push({ key: item.key, qty, discount: 0 });
    saveCart(state.cart);
    drawCart(item.key);
    message(null, "");
  }

  function item(key) {
    return state.items.find((i) => i.key === key);
  }

  function computeTotals() {
    let total = 0;
    let tax = 0;
    let discount = 0;
    for (const l of state.cart) {
      const it = item(l.key);
      if (!it) continue;
      const [t, x] = lineAmounts(it.price, l.qty, l.discount, it.product.tax_rate);
      total += t;
      tax += x;
      discount += l.discount;
    }
    return { total, tax, discount };
  }

  function drawCart(highlightKey) {
    if (!state.cart.length) {
      cartLines.replaceChildren(
        h("div", { class: "cart-empty" }, icon("sell", 32), h("p", null, "Scan or tap a product to start a sale.")),
      );
    } else {
      cartLines.replaceChildren(...state.cart.map((l) => cartLine(l, l.key === highlightKey)));
    }
    const t = computeTotals();
    fill(
      totals,
      t.discount ? [h("span", null, "Discounts"), h("span", { class: "num" }, `−${money(t.discount)}`)] : null,
      h("span", { class: "muted" }, app.settings.tax_mode === "inclusive" ? "Tax included" : "Tax"),
      h("span", { class: "num muted" }, money(t.tax)),
      h("span", { class: "grand" }, "Total"),
      h("span", { class: "grand num", id: "cart-total" }, money(t.total)),
    );
    payBtn.disabled = !state.cart.length;
    parkBtn.hidden = !state.cart.length;
    ticketNote.textContent = state.ticket ? `Ticket: ${state.ticket.name}` : "";
    payBtn.textContent = state.cart.length ? `Pay ${money(t.total)}` : "Pay";
    clearBtn.hidden = !state.cart.length;
  }

  function cartLine(l, flash) {
    const it = item(l.key);
    const n = onHand(l.key);
    const qty = h("input", {
      type: "number",
      min: 1,
      inputmode: "numeric",
      value: l.qty,
      "aria-label": `Quantity of ${it.name}`,
      class: "line-qty",
    });
    qty.addEventListener("change", () => {
      const v = Math.floor(Number(qty.value));
      if (v >= 1) l.qty = v;
      saveCart(state.cart);
      drawCart();
    });
    const [lineTotal] = lineAmounts(it.price, l.qty, l.discount, it.product.tax_rate);
    return h(
      "div",
      { class: `cart-line${flash ? " flash" : ""}`, dataset: { key: l.key } },
      h(
        "div",
        { class: "cl-top" },
        h("span", { class: "cl-name" }, it.name),
        h("span", { class: "num" }, money(lineTotal)),
      ),
      h("div", { class: "cell-sub" }, `${money(it.price)} each`),
      l.discount ? h("div", { class: "disc" }, `Discount −${money(l.discount)}`) : null,
      n < l.qty
        ? h("div", { class: "warn-text" }, icon("warn", 16), n <= 0 ? "Out of stock" : `Only ${n} in stock`)
        : null,
      h(
        "div",
        { class: "cl-ctrl" },
        h(
          "div",
          { class: "qty" },
          h(
            "button",
            {
              type: "button",
              "aria-label": "One less",
              onclick: () => {
                if (l.qty > 1) l.qty -= 1;
                saveCart(state.cart);
                drawCart();
              },
            },
            "−",
          ),
          qty,
          h(
            "button",
            {
              type: "button",
              "aria-label": "One more",
              onclick: () => {
                l.qty += 1;
                saveCart(state.cart);
                drawCart();
              },
            },
            "+",
          ),
        ),
        h(
          "button",
          { type: "button", class: "btn btn-small", onclick: () => discountDialog(l, it) },
          icon("tag", 16),
          "Discount",
        ),
        h(
          "button",
          {
            type: "button",
            class: "btn btn-small btn-ghost icon-btn",
            "aria-label": `Remove ${it.name}`,
            onclick: () => {
              state.cart = state.cart.filter((x) => x !== l);
              saveCart(state.cart);
              drawCart();
            },
          },
          icon("trash", 18),
        ),
      ),
    );
  }

  function discountDialog(l, it) {
    const gross = it.price * l.qty;
    let mode = "amount";
    const input = h("input", { name: "discount", inputmode: "decimal", value: l.discount ? decimal(l.discount) : "" });
    const seg = h("div", { class: "seg", role: "group", "aria-label": "Discount as" });
    const setMode = (m) => {
      mode = m;
      for (const b of seg.children) b.setAttribute("aria-pressed", String(b.dataset.mode === m));
      input.value = "";
      input.focus();
    };
    add(
      seg,
      h(
        "button",
        { type: "button", dataset: { mode: "amount" }, "aria-pressed": "true", onclick: () => setMode("amount") },
        "Amount",
      ),
      h(
        "button",
        { type: "button", dataset: { mode: "percent" }, "aria-pressed": "false", onclick: () => setMode("percent") },
        "Percent",
      ),
    );
    const form = h(
      "form",
      { class: "stack" },
      h("p", null, `${l.qty} × ${it.name} = ${money(gross)}`),
      seg,
      field("Discount", input, "Leave empty for no discount."),
    );
    const apply = h("button", { type: "submit", class: "btn btn-primary" }, "Apply");
    add(form, h("div", { class: "row end" }, apply));
    const d = openDialog({ title: "Line discount", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      let minor = 0;
      if (input.value.trim()) {
        if (mode === "percent") {
          const pct = Number(input.value.replace(",", "."));
          if (!(pct >= 0 && pct <= 100)) {
            showFormError(form, { message: "A percentage between 0 and 100.", field: "discount" });
            return;
          }
          minor = Math.round((gross * pct) / 100);
        } else {
          minor = parseMoney(input.value);
          if (minor === null || minor < 0 || minor > gross) {
            showFormError(form, { message: `An amount between 0 and ${money(gross)}.`, field: "discount" });
            return;
          }
        }
      }
      l.discount = minor;
      saveCart(state.cart);
      drawCart();
      d.close();
    });
  }

  function payDialog() {
    const t = computeTotals();
    const tenders = [];
    let method = "cash";
    const amount = h("input", { name: "amount", id: "pay-amount", inputmode: "decimal", autocomplete: "off" });
    const list = h("div", { class: "tenders", id: "tenders" });
    const statusLine = h("div", { id: "pay-status" });
    const quick = h("div", { class: "quick" });
    const seg = h("div", { class: "seg", role: "group", "aria-label": "Payment method" });
    const amountLabel = h("label", { for: "pay-amount" });
    for (const m of ["cash", "card", "other"]) {
      seg.appendChild(
        h(
          "button",
          {
            type: "button",
            id: `method-${m}`,
            dataset: { method: m },
            "aria-pressed": String(m === method),
            onclick: () => setMethod(m),
          },
          METHOD[m],
        ),
      );
    }
    const splitBtn = h(
      "button",
      { type: "button", class: "btn", id: "split-add" },
      icon("plus", 18),
      "Add as part payment",
    );
    const done = h(
      "button",
      { type: "submit", class: "btn btn-primary btn-big", id: "complete-sale" },
      "Complete sale",
    );
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h(
        "div",
        { class: "pay-total" },
        h("div", { class: "muted" }, "Total"),
        h("div", { class: "big", id: "pay-total" }, money(t.total)),
      ),
      list,
      seg,
      h("div", { class: "field" }, amountLabel, amount),
      quick,
      statusLine,
      h("div", { class: "row between" }, splitBtn, done),
    );

    const nonCashPaid = () => tenders.filter((x) => x.method !== "cash").reduce((a, x) => a + x.amount, 0);
    const cashPaid = () => tenders.filter((x) => x.method === "cash").reduce((a, x) => a + x.amount, 0);
    const remaining = () => {
      const usesCash = method === "cash" || tenders.some((x) => x.method === "cash");
      const due = t.total - nonCashPaid();
      return (usesCash && method === "cash" ? cashRound(due) : due) - cashPaid();
    };

    function setMethod(m) {
      method = m;
      for (const b of seg.children) b.setAttribute("aria-pressed", String(b.dataset.method === m));
      draw();
      amount.focus();
    }

    function draw() {
      list.replaceChildren(
        ...tenders.map((x, i) =>
          h(
            "div",
            { class: "tender" },
            h("span", { class: "t-method" }, METHOD[x.method]),
            h("span", { class: "grow num" }, money(x.amount)),
            h(
              "button",
              {
                type: "button",
                class: "btn btn-small btn-ghost icon-btn",
                "aria-label": "Remove this payment",
                onclick: () => {
                  tenders.splice(i, 1);
                  draw();
                },
              },
              icon("x", 16),
            ),
          ),
        ),
      );
      const rest = remaining();
      amountLabel.textContent = method === "cash" ? "Cash received" : `${METHOD[method]} amount`;
      amount.placeholder = rest > 0 ? `${decimal(rest)} (exact)` : "";
      quick.replaceChildren();
      if (method === "cash" && rest > 0) {
        const notes = [500, 1000, 2000, 5000, 10000].map(
          (n) => n * 10 ** Math.max(0, app.settings.currency_exponent - 2),
        );
        const options = [rest, ...notes.filter((n) => n > rest).slice(0, 3)];
        for (const v of options) {
          quick.appendChild(
            h(
              "button",
              {
                type: "button",
                class: "btn",
                onclick: () => {
                  amount.value = decimal(v);
                  draw();
                  done.focus();
                },
              },
              v === rest ? `Exact ${money(v)}` : money(v),
            ),
          );
        }
      }
      const typed = parseMoney(amount.value);
      const given = typed === null ? Math.max(rest, 0) : typed;
      const after = rest - given;
      if (rest <= 0) {
        statusLine.replaceChildren(h("div", { class: "change" }, `Change due ${money(-rest)}`));
      } else if (after < 0 && method === "cash") {
        statusLine.replaceChildren(h("div", { class: "change", id: "change-due" }, `Change due ${money(-after)}`));
      } else if (after > 0) {
        statusLine.replaceChildren(h("div", { class: "due" }, `Still to pay ${money(after)}`));
      } else {
        statusLine.replaceChildren();
      }
      splitBtn.disabled = typed === null || typed <= 0 || typed >= rest;
    }

    amount.addEventListener("input", draw);
    splitBtn.addEventListener("click", () => {
      const v = parseMoney(amount.value);
      if (v === null || v <= 0) return;
      tenders.push({ method, amount: v });
      amount.value = "";
      setMethod(method === "cash" ? "card" : "cash");
    });

    const d = openDialog({ title: "Payment", body: form });
    draw();
    amount.focus();

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const typed = parseMoney(amount.value);
      if (amount.value.trim() && (typed === null || typed <= 0)) {
        showFormError(form, {
          message: "Type an amount like 12.50, or leave it empty for the exact amount.",
          field: "amount",
        });
        return;
      }
      const payments = tenders.map((x) => ({ method: x.method, amount: x.amount }));
      if (typed === null) payments.push({ method });
      else payments.push({ method, amount: typed });
      const body = {
        lines: state.cart.map((l) => {
          const it = item(l.key);
          return {
            product_id: it.product.id,
            variant_id: it.variant ? it.variant.id : null,
            qty: l.qty,
            discount: l.discount || null,
          };
        }),
        payments,
        ticket_id: state.ticket ? state.ticket.id : null,
      };
      busy(done, form, async () => {
        const sale = await post("/sales", body);
        state.cart = [];
        saveCart(state.cart);
        setTicket(null);
        drawCart();
        message(null, "");
        d.close();
        for (const w of sale.warnings || []) toast(w);
        showReceipt(sale, app, { fresh: true, onClose: () => search.focus() });
      });
    });
  }

  search.addEventListener("input", () => {
    message(null, "");
    drawTiles();
  });
  search.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const code = search.value.trim();
    if (!code) {
      // Enter on an empty box (a person, not the scanner, which always sends a code) pays.
      if (state.cart.length) payDialog();
      return;
    }
    const lc = code.toLowerCase();
    const exact = state.items.filter(
      (i) => (i.barcode && i.barcode.toLowerCase() === lc) || i.sku.toLowerCase() === lc,
    );
    const found =
      exact.length === 1 ? exact[0] : exact.length === 0 && matches(code).length === 1 ? matches(code)[0] : null;
    if (found) {
      addToCart(found);
      search.value = "";
      drawTiles();
    } else if (exact.length > 1 || matches(code).length > 1) {
      message("info", `Several products match “${code}”. Tap the one you mean.`);
    } else {
      message("error", `No product has the code or name “${code}”.`);
      search.select();
    }
  });
  payBtn.addEventListener("click", payDialog);
  clearBtn.addEventListener("click", async () => {
    if (await confirmDialog("Clear the cart?", "Every line of this sale will be removed.", "Clear cart")) {
      state.cart = [];
      saveCart(state.cart);
      setTicket(null);
      drawCart();
      search.focus();
    }
  });
  historyBtn.addEventListener("click", () => salesToday(app));
  function setTicket(t) {
    state.ticket = t ? { id: t.id, name: t.name } : null;
    saveTicket(state.ticket);
  }
  function cartAsLines() {
    return state.cart.map((l) => {
      const it = item(l.key);
      return {
        product_id: it.product.id,
        variant_id: it.variant ? it.variant.id : null,
        qty: l.qty,
        discount: l.discount || null,
      };
    });
  }
  parkBtn.addEventListener("click", async () => {
    try {
      const t = await parkCart(cartAsLines(), state.ticket);
      if (!t) return;
      toast(`Cart parked as “${t.name}”.`);
      state.cart = [];
      saveCart(state.cart);
      setTicket(null);
      drawCart();
    } catch (err) {
      toast(humanError(err), "error");
    }
  });
  ticketsBtn.addEventListener("click", async () => {
    if (state.cart.length && !state.ticket) {
      toast("Park or clear this cart first.", "error");
      return;
    }
    const t = await pickTicket(app);
    if (!t) return;
    state.cart = t.lines
      .map((l) => ({
        key: l.variant_id ? `${l.product_id}/${l.variant_id}` : l.product_id,
        qty: l.qty,
        discount: l.discount || 0,
      }))
      .filter((l) => state.items.some((i) => i.key === l.key));
    saveCart(state.cart);
    setTicket(t);
    drawCart();
  });
  if (refundBtn) refundBtn.addEventListener("click", () => refundDialog(state.items, () => shift.refresh()));

  // A scanner types into whatever has focus: send stray keystrokes to the search box.
  const keyToSearch = (e) => {
    if (document.querySelector("dialog[open]")) return;
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (e.key.length === 1 && !e.ctrlKey && !e.metaKey && !e.altKey) search.focus();
  };
  document.addEventListener("keydown", keyToSearch);

  app.onEvent((ev) => {
    if (ev.type === "stock_changed") {
      state.stock.set(ev.variant_id ? `${ev.product_id}/${ev.variant_id}` : ev.product_id, ev.on_hand);
      drawTiles();
      drawCart();
    } else if (ev.type === "product_changed" || ev.type === "lagged" || ev.type === "changes_dropped") {
      load().catch((err) => toast(humanError(err), "error"));
    }
  });

  await load();
  search.focus();
  return () => document.removeEventListener("keydown", keyToSearch);
}

function loadCart() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CART_KEY) || "[]");
    return Array.isArray(c) ? c.filter((l) => l && l.key && l.qty >= 1) : [];
  } catch {
    return [];
  }
}

const TICKET_KEY = "tillmesh.ticket";

function loadTicket() {
  try {
    return JSON.parse(sessionStorage.getItem(TICKET_KEY) || "null");
  } catch {
    return null;
  }
}

function saveTicket(t) {
  try {
    if (t) sessionStorage.setItem(TICKET_KEY, JSON.stringify(t));
    else sessionStorage.removeItem(TICKET_KEY);
  } catch {
    // Private mode: the ticket link does not survive a reload.
  }
}

function saveCart(cart) {
  try {
    sessionStorage.setItem(CART_KEY, JSON.stringify(cart));
  } catch {
    // Private mode or full storage: the cart just does not survive a reload.
  }
}

/// The receipt of a sale, as printed.
export function receiptView(sale, app) {
  const s = app.settings;
  const row = (a, b, cls) =>
    h("div", { class: `r-row${cls ? ` ${cls}` : ""}` }, h("span", null, a), h("span", null, b));
  const subtotal = sale.lines.reduce((a, l) => a + l.unit_price * l.qty, 0);
  const taxRates = new Map();
  for (const l of sale.lines) taxRates.set(l.tax_rate, (taxRates.get(l.tax_rate) || 0) + l.tax);
  const paid = sale.payments.reduce((a, p) => a + p.amount, 0);
  return h(
    "div",
    { class: "receipt", id: "receipt" },
    h("h3", null, s.shop_name),
    s.receipt_text ? h("div", { class: "r-center" }, s.receipt_text) : null,
    h("div", { class: "r-sep" }),
    row("Receipt", h("span", { id: "receipt-number" }, sale.receipt)),
    row("Time", dateTime(sale.time)),
    row("Till", app.deviceName(sale.device)),
    row("Served by", app.personName(sale.person)),
    sale.voided_by ? h("div", { class: "r-void" }, "VOIDED") : null,
    h("div", { class: "r-sep" }),
    sale.lines.map((l, i) => [
      row(`${l.qty} × ${l.name}`, money(l.unit_price * l.qty)),
      l.qty > 1 ? h("div", { class: "r-sub" }, `${money(l.unit_price)} each`) : null,
      l.discount ? row("  Discount", `−${money(l.discount)}`, "r-sub") : null,
      sale.returned && sale.returned[i] ? h("div", { class: "r-sub" }, `Returned: ${sale.returned[i]}`) : null,
    ]),
    h("div", { class: "r-sep" }),
    sale.discount || s.tax_mode === "exclusive" ? row("Subtotal", money(subtotal)) : null,
    sale.discount ? row("Discounts", `−${money(sale.discount)}`) : null,
    [...taxRates].map(([rate, tax]) =>
      row(`${s.tax_mode === "inclusive" ? "Incl. tax" : "Tax"} ${percent(rate)}`, money(tax)),
    ),
    sale.rounding ? row("Cash rounding", money(sale.rounding)) : null,
    row(
      "TOTAL",
      h("span", { class: "r-total-amount", id: "receipt-total" }, money(sale.total + (sale.rounding || 0))),
      "r-total",
    ),
    h("div", { class: "r-sep" }),
    sale.payments.map((p) => row(METHOD[p.method], money(p.amount))),
    sale.payments.length > 1 ? row("Paid", money(paid)) : null,
    sale.change_due ? row("Change", h("span", { id: "receipt-change" }, money(sale.change_due)), "r-total") : null,
    h("div", { class: "r-sep" }),
    h("div", { class: "r-center" }, "Thank you!"),
  );
}

/// Shows a receipt with Print, and (from history) Void and Return.
export function showReceipt(sale, app, { fresh = false, onClose, onChanged } = {}) {
  const print = h(
    "button",
    { type: "button", class: "btn", onclick: () => window.print() },
    icon("printer", 18),
    "Print",
  );
  const actions = [print];
  if (!fresh && !sale.voided_by) {
    actions.unshift(
      h(
        "button",
        { type: "button", class: "btn btn-danger", id: "void-sale", onclick: () => voidSale(sale, app, d, onChanged) },
        "Void sale",
      ),
    );
    if (app.can("manager")) {
      actions.unshift(
        h(
          "button",
          { type: "button", class: "btn", id: "return-sale", onclick: () => returnDialog(sale, app, d, onChanged) },
          "Return items",
        ),
      );
    }
  }
  const next = h(
    "button",
    { type: "button", class: "btn btn-primary", id: "new-sale", onclick: () => d.close() },
    fresh ? "New sale" : "Close",
  );
  actions.push(next);
  const body = h(
    "div",
    null,
    fresh && sale.change_due ? h("div", { class: "change" }, `Give ${money(sale.change_due)} change`) : null,
    receiptView(sale, app),
  );
  const d = openDialog({ title: fresh ? "Sale complete" : `Receipt ${sale.receipt}`, body, actions, onClose });
  next.focus();
  return d;
}

async function voidSale(sale, app, receiptDialog, onChanged) {
  const yes = await confirmDialog(
    `Void receipt ${sale.receipt}?`,
    `The whole sale (${money(sale.total)}) is cancelled and its items go back into stock. Give back what was paid.`,
    "Void sale",
  );
  if (!yes) return;
  try {
    await post(`/sales/${sale.id}/void`, { reason: "voided at the till" });
    toast(`Receipt ${sale.receipt} voided.`);
    receiptDialog.close();
    if (onChanged) onChanged();
  } catch (err) {
    toast(humanError(err), "error");
  }
}

function returnDialog(sale, app, receiptDialog, onChanged) {
  const inputs = [];
  const rows = sale.lines.map((l, i) => {
    const left = l.qty - ((sale.returned && sale.returned[i]) || 0);
    const input = h("input", {
      type: "number",
      min: 0,
      max: left,
      value: 0,
      name: `lines[${i}]`,
      "aria-label": `Return how many ${l.name}`,
      disabled: left <= 0,
    });
    inputs.push([i, input]);
    return h("tr", null, h("td", null, l.name), h("td", { class: "num" }, `${left} of ${l.qty}`), h("td", null, input));
  });
  const method = h(
    "select",
    { name: "refund_method" },
    ...["cash", "card", "other"].map((m) => h("option", { value: m }, METHOD[m])),
  );
  const reason = h("input", { name: "reason", placeholder: "e.g. damaged, wrong size" });
  const form = h(
    "form",
    { class: "stack" },
    h(
      "table",
      null,
      h(
        "thead",
        null,
        h("tr", null, h("th", null, "Item"), h("th", { class: "num" }, "Can return"), h("th", null, "Return")),
      ),
      h("tbody", null, rows),
    ),
    h("div", { class: "fields" }, field("Refund by", method), field("Reason", reason)),
  );
  const ok = h("button", { type: "submit", class: "btn btn-primary", id: "return-submit" }, "Return and refund");
  add(form, h("div", { class: "row end" }, ok));
  const d = openDialog({ title: `Return from ${sale.receipt}`, body: form, wide: true });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const lines = inputs
      .map(([line, el]) => ({ line, qty: Math.floor(Number(el.value) || 0) }))
      .filter((x) => x.qty > 0);
    if (!lines.length) {
      showFormError(form, { message: "Choose how many of an item come back." });
      return;
    }
    busy(ok, form, async () => {
      const ret = await post(`/sales/${sale.id}/return`, {
        lines,
        refund_method: method.value,
        reason: reason.value.trim() || null,
      });
      toast(`Refund ${money(ret.refund)} by ${METHOD[ret.refund_method].toLowerCase()}.`);
      d.close();
      receiptDialog.close();
      if (onChanged) onChanged();
    });
  });
}

/// A day's sales on every till (today first): open one for its receipt, void or return.
async function salesToday(app) {
  const today = shopDay();
  const dayInput = h("input", { type: "date", id: "sales-day", value: today, max: today, "aria-label": "Day" });
  const body = h("div", { id: "sales-list" }, h("p", { class: "muted" }, "Loading…"));
  const d = openDialog({
    title: "Sales",
    body: h("div", { class: "stack" }, h("div", { class: "row" }, field("Day", dayInput)), body),
    wide: true,
  });
  dayInput.addEventListener("change", () => refill());
  async function refill() {
    const day = dayInput.value || today;
    try {
      const sales = (await getAll(`/sales?from=${day}&to=${day}`)).reverse();
      if (!sales.length) {
        body.replaceChildren(h("p", { class: "empty" }, day === today ? "No sales yet today." : "No sales that day."));
        return;
      }
      const total = sales.filter((x) => !x.voided_by).reduce((a, x) => a + x.total, 0);
      body.replaceChildren(
        h(
          "p",
          null,
          `${sales.length} ${sales.length === 1 ? "sale" : "sales"}, ${money(total)} in total (voided sales left out).`,
        ),
        h(
          "div",
          { class: "table-wrap" },
          table(
            null,
            [
              h("th", null, "Receipt"),
              h("th", null, "Time"),
              h("th", { class: "hide-narrow" }, "Till"),
              h("th", { class: "hide-narrow" }, "Staff"),
              h("th", { class: "num" }, "Total"),
              h("th", null, ""),
            ],
            h(
              "tbody",
              null,
              sales.map((sale) =>
                h(
                  "tr",
                  null,
                  h("td", { class: "mono" }, sale.receipt),
                  h("td", null, time(sale.time)),
                  h("td", { class: "hide-narrow" }, app.deviceName(sale.device)),
                  h("td", { class: "hide-narrow" }, app.personName(sale.person)),
                  h("td", { class: "num" }, money(sale.total)),
                  h(
                    "td",
                    null,
                    sale.voided_by ? h("span", { class: "badge badge-out" }, "Voided") : null,
                    sale.returned && sale.returned.some((n) => n > 0)
                      ? h("span", { class: "badge badge-low" }, "Returned")
                      : null,
                    " ",
                    h(
                      "button",
                      {
                        type: "button",
                        class: "btn btn-small",
                        dataset: { receipt: sale.receipt },
                        onclick: () => showReceipt(sale, app, { onChanged: refill }),
                      },
                      "Open",
                    ),
                  ),
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
  await refill();
  return d;
}
