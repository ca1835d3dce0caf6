// People & devices: who works here and with which role, adding staff (PIN) and managers or
// owners (password), inviting a new device with a QR code and a short code, and revoking.
// Managers add staff and invite tills; owners do everything, and change the shop's settings.
// Owners also see the sales a till made after it was revoked (it was switched off then): they
// are in no report until an owner accepts them (each is then recorded once, with its receipt),
// or dismisses them. Managers never see them: accepting them would let them add sales.

import { get, post, patch, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, openDialog, confirmDialog, copyText, showFormError, table } from "../lib/dom.js";
import { time, dateTime, initials, decimal, parseMoney, money } from "../lib/format.js";

const ROLE = { staff: "Staff", manager: "Manager", owner: "Owner" };

export async function render(main, app) {
  const isOwner = app.can("owner");
  const peopleBody = h("tbody", { id: "people-rows" });
  const devicesBody = h("tbody", { id: "device-rows" });

  add(
    main,
    h(
      "div",
      { class: "screen-head" },
      h("h1", null, "People & devices"),
      h("span", { class: "spacer" }),
      h(
        "button",
        { type: "button", class: "btn", id: "add-person", onclick: addPerson },
        icon("plus", 18),
        isOwner ? "Add a person" : "Add staff",
      ),
      h(
        "button",
        { type: "button", class: "btn btn-primary", id: "invite-device", onclick: invite },
        icon("device", 18),
        "Invite a device",
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "People"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { class: "cards" },
          [
            h("th", null, "Name"),
            h("th", { class: "hide-narrow" }, "Username"),
            h("th", null, "Role"),
            h("th", null, h("span", { class: "sr-only" }, "Actions")),
          ],
          peopleBody,
        ),
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Devices"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { class: "cards" },
          [
            h("th", null, "Device"),
            h("th", null, "Role"),
            h("th", { class: "hide-narrow" }, "Receipt numbers"),
            h("th", null, h("span", { class: "sr-only" }, "Actions")),
          ],
          devicesBody,
        ),
      ),
    ),
  );

  const revokedSales = h("section", { class: "panel", id: "revoked-sales", hidden: true });
  if (isOwner) add(main, revokedSales);
  if (isOwner) add(main, settingsPanel());

  /// Sales of revoked tills waiting for an owner (`GET /revoked-sales`), per device with totals.
  async function loadRevokedSales() {
    if (!isOwner) return;
    let list;
    try {
      list = await get("/revoked-sales");
    } catch (err) {
      toast(humanError(err), "error");
      return;
    }
    revokedSales.hidden = list.length === 0;
    revokedSales.replaceChildren(
      h("h2", null, "Sales from revoked devices"),
      h(
        "p",
        { class: "muted" },
        "These tills sold after they were revoked, before they could sync. The sales are in no " +
          "report and moved no stock. Accept them to record them as the shop's sales (once, " +
          "with their receipt numbers), or dismiss them.",
      ),
      ...list.map((d) =>
        h(
          "div",
          { class: "revoked-device", dataset: { device: d.device_id } },
          h(
            "div",
            { class: "row between" },
            h(
              "h3",
              null,
              `${d.device_name || d.device_id}: ${d.count} sale${d.count === 1 ? "" : "s"}, ` +
                `total ${money(d.total)}`,
            ),
            h(
              "div",
              { class: "row end" },
              h(
                "button",
                { type: "button", class: "btn btn-small", onclick: () => settle("dismiss", d, { device: d.device_id }) },
                "Dismiss all",
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "btn btn-small btn-primary accept-all",
                  onclick: () => settle("accept", d, { device: d.device_id }),
                },
                "Accept all",
              ),
            ),
          ),
          d.revoked_at
            ? h(
                "p",
                { class: "cell-sub" },
                `Revoked ${dateTime(d.revoked_at)}${d.revoked_by ? ` by ${d.revoked_by}` : ""}`,
              )
            : null,
          h(
            "div",
            { class: "table-wrap" },
            table(
              { class: "cards" },
              [
                h("th", null, "Receipt"),
                h("th", null, "Time"),
                h("th", { class: "hide-narrow" }, "Lines"),
                h("th", { class: "hide-narrow" }, "Payment"),
                h("th", { class: "num" }, "Total"),
                h("th", null, h("span", { class: "sr-only" }, "Actions")),
              ],
              h(
                "tbody",
                null,
                ...d.sales.map((s) =>
                  h(
                    "tr",
                    { dataset: { sale: s.id } },
                    h("td", { class: "mono" }, s.receipt),
                    h("td", null, dateTime(s.time)),
                    h("td", { class: "hide-narrow" }, s.lines.map((l) => `${l.qty} × ${l.name}`).join(", ")),
                    h("td", { class: "hide-narrow" }, s.payments.map((p) => p.method).join(", ")),
                    h("td", { class: "num" }, money(s.total)),
                    h(
                      "td",
                      null,
                      h(
                        "button",
                        { type: "button", class: "btn btn-small", onclick: () => settle("accept", d, { sales: [s.id] }) },
                        "Accept",
                      ),
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  /// Accepts or dismisses sales of a revoked till (owners).
  async function settle(action, d, selection) {
    const name = d.device_name || d.device_id;
    if (
      action === "dismiss" &&
      !(await confirmDialog(
        `Dismiss ${name}'s sales?`,
        "They are forgotten on this device and never recorded here. Other devices may still hold them.",
        "Dismiss",
      ))
    )
      return;
    try {
      const out = await post(`/revoked-sales/${action}`, selection);
      toast(action === "accept" ? `${out.accepted.length} sale(s) from ${name} recorded.` : `${out.dismissed} sale(s) dismissed.`);
      await loadRevokedSales();
    } catch (err) {
      toast(humanError(err), "error");
    }
  }

  /// The shop's settings (owners): name, receipt text, low-stock default, overselling, cash
  /// rounding, time zone.
  function settingsPanel() {
    const st = app.settings;
    const shopName = h("input", { name: "shop_name", value: st.shop_name });
    const receipt = h("textarea", {
      name: "receipt_text",
      rows: 2,
      placeholder: "e.g. address, VAT number, opening hours",
    });
    receipt.value = st.receipt_text || "";
    const low = h("input", { name: "low_stock_default", type: "number", min: 0, value: st.low_stock_default });
    const oversell = h(
      "select",
      { name: "oversell" },
      h("option", { value: "warn", selected: st.oversell === "warn" }, "Allowed, with a warning"),
      h("option", { value: "block", selected: st.oversell === "block" }, "Refused"),
    );
    const cash = h("input", { name: "cash_rounding", inputmode: "decimal", value: decimal(st.cash_rounding || 1) });
    let zones = [];
    try {
      zones = Intl.supportedValuesOf("timeZone");
    } catch {
      zones = [st.timezone];
    }
    if (!zones.includes(st.timezone)) zones.unshift(st.timezone);
    const tz = h(
      "select",
      { name: "timezone" },
      zones.map((z) => h("option", { value: z, selected: z === st.timezone }, z)),
    );
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "save-settings" }, "Save settings");
    const form = h(
      "form",
      { class: "stack", novalidate: true, id: "settings-form" },
      h(
        "div",
        { class: "fields" },
        field("Shop name", shopName),
        field("Time zone", tz, "Days in reports and times on receipts follow it."),
        field("Text on receipts", receipt, null, true),
        field("Low stock at or below", low, "For products without their own reorder level."),
        field("Selling more than is in stock", oversell),
        field("Round cash to", cash, `Smallest coin, e.g. ${decimal(5)} where 1 and 2 cent coins are not used.`),
      ),
      h("div", { class: "row end" }, ok),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const step = parseMoney(cash.value);
      if (step === null || step < 1) {
        showFormError(form, {
          message: `The smallest coin, like ${decimal(1)} or ${decimal(5)}.`,
          field: "cash_rounding",
        });
        return;
      }
      busy(ok, form, async () => {
        await patch("/settings", {
          shop_name: shopName.value.trim(),
          timezone: tz.value,
          receipt_text: receipt.value.trim(),
          low_stock_default: Math.floor(Number(low.value) || 0),
          oversell: oversell.value,
          cash_rounding: step,
        });
        await app.refreshShop();
        toast("Settings saved. Every device takes them.");
      });
    });
    return h("section", { class: "panel" }, h("h2", null, "Shop settings"), form);
  }

  async function load() {
    const [people, devices] = await Promise.all([get("/people"), get("/devices")]);
    app.devices = devices;
    const me = app.thisDevice();
    peopleBody.replaceChildren(
      ...people.map((p) =>
        h(
          "tr",
          { dataset: { username: p.username } },
          h(
            "td",
            null,
            h(
              "div",
              { class: "row" },
              h("span", { class: "avatar" }, initials(p.name)),
              h("span", { class: "cell-name" }, p.name),
            ),
          ),
          h("td", { class: "mono hide-narrow" }, p.username),
          h(
            "td",
            null,
            h("span", { class: `badge ${p.role === "owner" ? "badge-accent" : ""}` }, ROLE[p.role]),
            p.revoked ? [" ", h("span", { class: "badge badge-out" }, "Revoked")] : null,
          ),
          h(
            "td",
            null,
            h(
              "div",
              { class: "row end" },
              isOwner && !p.revoked && p.id !== app.me.id
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small btn-danger",
                      onclick: () => revoke(p.id, p.name, "person"),
                    },
                    "Revoke",
                  )
                : p.id === app.me.id
                  ? h("span", { class: "muted small" }, "You")
                  : null,
            ),
          ),
        ),
      ),
    );
    devicesBody.replaceChildren(
      ...devices.map((d) =>
        h(
          "tr",
          { dataset: { id: d.id } },
          h(
            "td",
            null,
            h(
              "div",
              { class: "cell-name" },
              d.name,
              me && d.id === me.id ? h("span", { class: "badge badge-accent" }, "This device") : null,
            ),
            h("div", { class: "cell-sub mono" }, d.id.slice(0, 16)),
          ),
          h(
            "td",
            null,
            d.role === "till" ? "Till" : "Relay",
            d.revoked ? [" ", h("span", { class: "badge badge-out" }, "Revoked")] : null,
          ),
          h("td", { class: "hide-narrow mono" }, `${d.receipt_prefix}-…`),
          h(
            "td",
            null,
            h(
              "div",
              { class: "row end" },
              isOwner && !d.revoked && !(me && d.id === me.id)
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small btn-danger",
                      onclick: () => revoke(d.id, d.name, "device"),
                    },
                    "Revoke",
                  )
                : null,
            ),
          ),
        ),
      ),
    );
  }

  async function revoke(id, name, kind) {
    const text =
      kind === "person"
        ? `${name} can no longer log in on any device, and changes they make from now on are refused everywhere.`
        : `${name} can no longer sync with the shop. Use this for a lost or stolen device. Its sales already synced stay.`;
    if (!(await confirmDialog(`Revoke ${name}?`, text, "Revoke"))) return;
    try {
      await post(`/members/${encodeURIComponent(id)}/revoke`);
      toast(`${name} revoked.`);
      await load();
    } catch (err) {
      toast(humanError(err), "error");
    }
  }

  function addPerson() {
    const name = h("input", { name: "name", autocomplete: "off" });
    const username = h("input", { name: "username", autocomplete: "off", autocapitalize: "none" });
    let touched = false;
    username.addEventListener("input", () => (touched = true));
    name.addEventListener("input", () => {
      if (!touched)
        username.value = name.value
          .toLowerCase()
          .split(/\s+/)[0]
          .normalize("NFD")
          .replace(/[^a-z0-9._-]/g, "");
    });
    const role = h(
      "select",
      { name: "role", disabled: !isOwner },
      h("option", { value: "staff" }, "Staff — sells, logs in with a PIN"),
      isOwner ? h("option", { value: "manager" }, "Manager — also products, stock counts, reports") : null,
      isOwner ? h("option", { value: "owner" }, "Owner — everything") : null,
    );
    const pin = h("input", { name: "pin", inputmode: "numeric", autocomplete: "off", maxlength: 6 });
    const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
    const pinField = field("PIN (4 to 6 digits)", pin, "They type it on the till's PIN pad.");
    const pwField = field("Password (at least 10 characters)", password);
    const sync = () => {
      const staff = role.value === "staff";
      pinField.hidden = !staff;
      pwField.hidden = staff;
    };
    role.addEventListener("change", sync);
    sync();
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "save-person" }, "Add");
    const form = h(
      "form",
      { class: "stack", novalidate: true, id: "person-form" },
      h(
        "div",
        { class: "fields" },
        field("Name", name),
        field("Username", username),
        field("Role", role, null, true),
        pinField,
        pwField,
      ),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: isOwner ? "Add a person" : "Add staff", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const staff = role.value === "staff";
      busy(ok, form, async () => {
        await post("/people", {
          name: name.value.trim(),
          username: username.value.trim(),
          role: role.value,
          pin: staff ? pin.value.trim() : null,
          password: staff ? null : password.value,
        });
        toast(`${name.value.trim()} added. They can log in now.`);
        d.close();
        await app.refreshShop();
        await load();
      });
    });
  }

  function invite() {
    const n = app.devices.filter((d) => d.role === "till").length + 1;
    const name = h("input", { name: "name", value: `Till ${n}`, id: "invite-name" });
    const ok = h("button", { type: "submit", class: "btn btn-primary", id: "create-invite" }, "Create invite");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      h(
        "p",
        null,
        "Give the new device a name. Then, on the new device, start tillmesh, open its page and choose “Join an existing shop”.",
      ),
      field("Name of the new device", name),
      h("div", { class: "row end" }, ok),
    );
    const d = openDialog({ title: "Invite a device", body: form });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        const inv = await post("/invites", { role: "till", name: name.value.trim() });
        const full = h("textarea", { readonly: true, rows: 3, class: "mono small", id: "invite-full" });
        full.value = inv.invite;
        const qr = h("img", {
          alt: "QR code of the invite",
          id: "invite-qr",
          src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(inv.qr_svg)}`,
        });
        form.replaceChildren(
          h(
            "div",
            { class: "invite" },
            qr,
            h(
              "div",
              { class: "stack" },
              h("p", null, "On ", h("strong", null, inv.name), ", choose “Join an existing shop” and type this code:"),
              h("div", { class: "short-code", id: "invite-code" }, inv.code),
              h(
                "p",
                { class: "muted" },
                `Works once, until ${time(inv.expires_at)}. Or scan the QR code with the new device's camera and paste the text it shows into the invite box.`,
              ),
            ),
          ),
          field("Or paste the whole invite (works from another network too)", full),
          h(
            "div",
            { class: "row end" },
            h(
              "button",
              { type: "button", class: "btn", onclick: () => copyText(inv.invite, full) },
              icon("copy", 18),
              "Copy invite",
            ),
            h("button", { type: "button", class: "btn btn-primary", onclick: () => d.close() }, "Done"),
          ),
        );
        load().catch(() => {});
      });
    });
  }

  app.onEvent((ev) => {
    if (ev.type === "shop_changed") load().catch((err) => toast(humanError(err), "error"));
    if (ev.type === "revoked_sale_kept" || ev.type === "sale_recorded") loadRevokedSales();
  });
  await load();
  await loadRevokedSales();
}
