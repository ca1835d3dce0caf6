// Audit (managers and owners): who did what, when, on which document — every row names the
// signed change behind it (hash, signer, signature). Filters by date, person, kind and device;
// pages with "Load more"; the export downloads every signed change and checkpoint for
// `tillmesh audit verify`.

import { get, humanError } from "../lib/api.js";
import { h, add, icon, field, alertBox, table } from "../lib/dom.js";
import { dateTime, shopDay, daysBefore } from "../lib/format.js";

const KINDS = [
  ["", "Everything"],
  ["sale", "Sales"],
  ["void,return", "Voids and returns"],
  ["stock_in,removal,adjustment", "Stock movements"],
  ["product_create,product_edit", "Products"],
  ["alert_dismiss", "Alert dismissals"],
  ["device_join,person_add,revoke,members_change,shop_create", "People and devices"],
  ["settings_change", "Settings"],
  ["orders_change", "Orders"],
  ["checkpoint", "Checkpoints"],
];

export async function render(main, app) {
  const today = shopDay();
  const from = h("input", { type: "date", id: "audit-from", value: daysBefore(today, 6) });
  const to = h("input", { type: "date", id: "audit-to", value: today });
  const person = h(
    "select",
    { id: "audit-person" },
    h("option", { value: "" }, "Anyone"),
    app.people.map((p) => h("option", { value: p.id }, p.name)),
  );
  const kind = h(
    "select",
    { id: "audit-kind" },
    KINDS.map(([v, label]) => h("option", { value: v }, label)),
  );
  const device = h(
    "select",
    { id: "audit-device" },
    h("option", { value: "" }, "Any device"),
    app.devices.map((d) => h("option", { value: d.id }, d.name)),
  );
  const tbody = h("tbody", { id: "audit-rows" });
  const status = h("div", { id: "audit-status" });
  const more = h("button", { type: "button", class: "btn", id: "audit-more", hidden: true }, "Load more");
  let cursor = null;

  add(
    main,
    h(
      "div",
      { class: "screen-head" },
      h("h1", null, "Audit"),
      h("span", { class: "spacer" }),
      h(
        "a",
        { class: "btn", id: "audit-export", href: "/api/v1/audit/export", download: `audit-${today}.jsonl` },
        icon("download", 18),
        "Export for verification",
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h(
        "form",
        {
          class: "audit-filters",
          id: "audit-filters",
          onsubmit: (e) => {
            e.preventDefault();
            load(false);
          },
        },
        field("From", from),
        field("To", to),
        field("Person", person),
        field("What", kind),
        field("Device", device),
        h("button", { type: "submit", class: "btn btn-primary" }, "Show"),
      ),
      h(
        "p",
        { class: "muted small" },
        "Every row is a change signed by a device or by a manager's or owner's key. The export holds the signed changes and each device's daily checkpoint; check it anywhere with ",
        h("code", null, "tillmesh audit verify FILE"),
        ".",
      ),
    ),
    h(
      "section",
      { class: "panel" },
      status,
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "audit-table", class: "cards" },
          [
            h("th", null, "When"),
            h("th", null, "Who"),
            h("th", { class: "hide-narrow" }, "Device"),
            h("th", null, "What"),
            h("th", null, "Details"),
            h("th", { class: "hide-narrow" }, "Document"),
            h("th", { class: "hide-narrow" }, "Signed change"),
          ],
          tbody,
        ),
      ),
      more,
    ),
  );
  more.addEventListener("click", () => load(true));
  for (const el of [person, kind, device]) el.addEventListener("change", () => load(false));

  function query() {
    const q = new URLSearchParams();
    if (from.value) q.set("from", from.value);
    if (to.value) q.set("to", to.value);
    if (person.value) q.set("person", person.value);
    if (kind.value) q.set("kind", kind.value);
    if (device.value) q.set("device", device.value);
    q.set("limit", "100");
    return q;
  }

  async function load(append) {
    const q = query();
    if (append && cursor) q.set("cursor", cursor);
    let page;
    try {
      page = await get(`/audit?${q}`);
    } catch (err) {
      status.replaceChildren(alertBox("error", humanError(err)));
      return;
    }
    status.replaceChildren();
    if (!append) tbody.replaceChildren();
    for (const e of page.entries) {
      tbody.appendChild(
        h(
          "tr",
          { dataset: { kind: e.kind, hash: e.hash } },
          h("td", { "data-label": "When" }, dateTime(e.time)),
          h("td", { "data-label": "Who" }, e.person_name || (e.person ? app.personName(e.person) : "—")),
          h(
            "td",
            { "data-label": "Device", class: "hide-narrow" },
            e.device_name || (e.device ? app.deviceName(e.device) : "—"),
          ),
          h("td", { "data-label": "What" }, h("span", { class: "badge" }, e.kind.replaceAll("_", " "))),
          h("td", { "data-label": "Details" }, e.summary),
          h("td", { "data-label": "Document", class: "hide-narrow mono" }, e.doc),
          h(
            "td",
            {
              "data-label": "Signed change",
              class: "hide-narrow mono",
              title: `change ${e.hash}\nsigner ${e.signer} (${e.signer_role})\nsignature ${e.signature}`,
            },
            `${e.hash.slice(0, 12)}… · ${e.signer_role}`,
          ),
        ),
      );
    }
    if (!tbody.children.length) {
      status.replaceChildren(alertBox("info", "Nothing recorded matches these filters."));
    }
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
  }

  await load(false);
}
