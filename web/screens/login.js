// Login: pick your name; staff type their PIN on a pad, owners and managers their password.
// Shows which shop and which device this is. On a relay (many shops, reached from anywhere)
// owners and managers type the shop's name, their username and their password instead.

import { get, post } from "../lib/api.js";
import { h, add, icon, field, busy, alertBox } from "../lib/dom.js";
import { initials } from "../lib/format.js";

const ROLE_LABEL = { staff: "Staff · PIN", manager: "Manager · password", owner: "Owner · password" };

export async function render(main, app) {
  if (app.server === "relay") return relayLogin(main, app);
  app.people = await get("/login/people").catch(() => app.people);
  const device = app.thisDevice();
  const wrap = h("div", { class: "login-wrap" });
  main.appendChild(wrap);
  const area = h("div", { id: "login-area" });
  let chosen = null;
  let keyHandler = null;

  const grid = h("div", { class: "people-grid", id: "login-people", role: "group", "aria-label": "Who are you?" });
  for (const p of app.people) {
    const btn = h(
      "button",
      {
        type: "button",
        class: "person-btn",
        dataset: { username: p.username },
        "aria-pressed": "false",
        onclick: () => choose(p, btn),
      },
      h("span", { class: "avatar" }, initials(p.name)),
      h("span", null, h("strong", null, p.name), h("span", { class: "role" }, ROLE_LABEL[p.role])),
    );
    grid.appendChild(btn);
  }

  add(
    wrap,
    h(
      "div",
      { class: "login-shop" },
      h("h1", null, app.status.shop_name || "tillmesh"),
      h("p", { class: "muted" }, icon("device", 16), " ", device ? `This device: ${device.name}` : "This device"),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Who are you?"),
      app.people.length
        ? grid
        : alertBox(
            "info",
            "Nobody can log in here yet: the shop's people are still being copied from the other devices. Wait a moment and reload.",
          ),
      area,
    ),
  );

  function choose(person, btn) {
    chosen = person;
    for (const b of grid.querySelectorAll(".person-btn")) b.setAttribute("aria-pressed", String(b === btn));
    if (keyHandler) document.removeEventListener("keydown", keyHandler);
    keyHandler = null;
    area.replaceChildren(person.role === "staff" ? pinPad(person) : passwordForm(person));
  }

  async function logIn(body, form, button) {
    return busy(button, form, async () => {
      const session = await post("/login", body);
      if (keyHandler) document.removeEventListener("keydown", keyHandler);
      await app.loggedIn(session);
    });
  }

  function passwordForm(person) {
    const pw = h("input", {
      type: "password",
      name: "password",
      id: "login-password",
      autocomplete: "current-password",
    });
    const submit = h(
      "button",
      { type: "submit", class: "btn btn-primary btn-block", id: "login-submit" },
      `Log in as ${person.name}`,
    );
    const form = h("form", { class: "stack pin-box", novalidate: true }, field("Password", pw), submit);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      logIn({ username: person.username, password: pw.value }, form, submit).then(() => {
        if (!app.me) pw.select();
      });
    });
    setTimeout(() => pw.focus(), 0);
    return form;
  }

  function pinPad(person) {
    let pin = "";
    const dots = h("div", { class: "pin-dots", "aria-hidden": "true" });
    const status = h("p", { class: "sr-only", "aria-live": "polite" });
    const form = h("div", { class: "pin-box", id: "pin-box" });
    const ok = h("button", { type: "button", class: "ok", id: "pin-ok", "aria-label": "Log in" }, "OK");
    const draw = () => {
      const n = Math.max(4, pin.length);
      dots.replaceChildren(...Array.from({ length: n }, (_, i) => h("span", { class: i < pin.length ? "on" : null })));
      status.textContent = `${pin.length} digits entered`;
    };
    const press = (d) => {
      if (pin.length < 6) pin += d;
      draw();
    };
    const back = () => {
      pin = pin.slice(0, -1);
      draw();
    };
    const submit = () => {
      if (pin.length < 4) {
        form.querySelector(".form-error")?.remove();
        form.prepend(h("div", { class: "form-error" }, alertBox("error", "A PIN has 4 to 6 digits.")));
        return;
      }
      const tried = pin;
      pin = "";
      draw();
      logIn({ username: person.username, pin: tried }, form, ok);
    };
    const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map((d) =>
      h("button", { type: "button", dataset: { digit: d }, onclick: () => press(d) }, d),
    );
    ok.addEventListener("click", submit);
    const pad = h(
      "div",
      { class: "pinpad" },
      keys,
      h("button", { type: "button", "aria-label": "Delete last digit", onclick: back }, icon("backspace", 26)),
      h("button", { type: "button", dataset: { digit: "0" }, onclick: () => press("0") }, "0"),
      ok,
    );
    keyHandler = (e) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
      if (/^[0-9]$/.test(e.key)) {
        press(e.key);
        e.preventDefault();
      } else if (e.key === "Backspace") {
        back();
        e.preventDefault();
      } else if (e.key === "Enter") {
        submit();
        e.preventDefault();
      }
    };
    document.addEventListener("keydown", keyHandler);
    add(form, h("p", { class: "muted" }, `PIN for ${person.name}`), dots, status, pad);
    draw();
    return form;
  }

  // Just joined a shop: its people are still being copied. Look again until they are here.
  let poll = null;
  if (!app.people.length) {
    poll = setInterval(async () => {
      const people = await get("/login/people").catch(() => []);
      if (people.length) {
        clearInterval(poll);
        app.go("login");
      }
    }, 3000);
  }

  if (app.people.length === 1) {
    choose(app.people[0], grid.querySelector(".person-btn"));
  } else {
    grid.querySelector(".person-btn")?.focus();
  }
  return () => {
    clearInterval(poll);
    if (keyHandler) document.removeEventListener("keydown", keyHandler);
  };
}

/// The relay's login: it serves many shops and lists no names, so the shop is typed.
function relayLogin(main, app) {
  const input = (attrs) => h("input", { type: "text", autocapitalize: "off", spellcheck: "false", ...attrs });
  const shop = input({ name: "shop", id: "login-shop", autocomplete: "organization" });
  const username = input({ name: "username", id: "login-username", autocomplete: "username" });
  const pw = h("input", { type: "password", name: "password", id: "login-password", autocomplete: "current-password" });
  shop.value = localStorage.getItem("tillmesh.relay.shop") || "";
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block", id: "login-submit" }, "Log in");
  const form = h(
    "form",
    { class: "stack pin-box", novalidate: true },
    field("Shop", shop, "The shop's name, as its owner set it up"),
    field("Username", username),
    field("Password", pw),
    submit,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, form, async () => {
      const session = await post("/login", { shop: shop.value, username: username.value, password: pw.value });
      localStorage.setItem("tillmesh.relay.shop", shop.value.trim());
      await app.loggedIn(session);
    }).then(() => {
      if (!app.me) pw.select();
    });
  });
  add(
    main,
    h(
      "div",
      { class: "login-wrap" },
      h(
        "div",
        { class: "login-shop" },
        h("h1", null, "tillmesh relay"),
        h("p", { class: "muted" }, "Owners and managers: reach your shop from anywhere."),
      ),
      h(
        "section",
        { class: "panel" },
        h("h2", null, "Log in to your shop"),
        alertBox("info", "Staff log in with their PIN on a till in the shop. Sales are recorded on the tills."),
        form,
      ),
    ),
  );
  setTimeout(() => (shop.value ? username : shop).focus(), 0);
}
