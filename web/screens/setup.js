// First start: this node has no shop yet. Create one (then show the recovery key once), or
// join an existing shop with an invite from another device.

import { get, post, setSetupToken } from "../lib/api.js";
import { h, add, field, busy, alertBox, showFormError } from "../lib/dom.js";

const CURRENCIES = [
  ["EUR", "Euro"],
  ["USD", "US dollar"],
  ["GBP", "Pound sterling"],
  ["CHF", "Swiss franc"],
  ["SEK", "Swedish krona"],
  ["NOK", "Norwegian krone"],
  ["DKK", "Danish krone"],
  ["PLN", "Polish złoty"],
  ["CZK", "Czech koruna"],
  ["HUF", "Hungarian forint"],
  ["CAD", "Canadian dollar"],
  ["AUD", "Australian dollar"],
  ["NZD", "New Zealand dollar"],
  ["JPY", "Japanese yen"],
  ["INR", "Indian rupee"],
  ["ZAR", "South African rand"],
  ["MXN", "Mexican peso"],
  ["BRL", "Brazilian real"],
  ["KWD", "Kuwaiti dinar"],
];

function usernameFrom(name) {
  return name
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .split(/\s+/)[0]
    .replace(/[^a-z0-9._-]/g, "");
}

export function render(main, app) {
  const page = h("div", { class: "center-page" });
  main.appendChild(page);
  add(
    page,
    h(
      "div",
      { class: "hero" },
      h("img", { src: "/icon.svg", alt: "" }),
      h("h1", null, "Welcome to tillmesh"),
      h(
        "p",
        { class: "muted" },
        "This device is not part of a shop yet. Start a new shop, or join the shop your other tills already run.",
      ),
    ),
    h("div", { class: "choice" }, createPanel(app, page), joinPanel(app, page)),
  );
  const first = page.querySelector("input");
  if (first) first.focus();
  // From another device than the node's own, setting up needs the token the node printed
  // when it started (a web page elsewhere must not be able to claim a new till).
  get("/setup")
    .then((info) => {
      if (info && info.token_required) page.insertBefore(tokenPanel(), page.querySelector(".choice"));
    })
    .catch(() => {});
}

function tokenPanel() {
  const token = h("input", {
    name: "setup_token",
    id: "setup-token",
    required: true,
    autocomplete: "off",
    autocapitalize: "none",
    spellcheck: "false",
    placeholder: "e.g. 3f9c0a…",
  });
  token.addEventListener("input", () => setSetupToken(token.value.trim()));
  const panel = h(
    "section",
    { class: "panel stack", id: "setup-token-panel", "aria-labelledby": "setup-token-title" },
    h("h2", { id: "setup-token-title" }, "Setup token"),
    h(
      "p",
      { class: "muted" },
      "You are setting this device up from another computer. Type the setup token that tillmesh printed when it started on the device (the line “setup token: …”).",
    ),
    field("Setup token", token),
  );
  setTimeout(() => token.focus(), 0);
  return panel;
}

function createPanel(app, page) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [tz, "UTC"];
  }
  if (!zones.includes(tz)) zones.unshift(tz);
  const shopName = h("input", {
    name: "shop_name",
    required: true,
    autocomplete: "organization",
    placeholder: "Corner Shop",
  });
  const currency = h(
    "select",
    { name: "currency" },
    CURRENCIES.map(([c, n]) => h("option", { value: c }, `${c} — ${n}`)),
  );
  const timezone = h(
    "select",
    { name: "timezone" },
    zones.map((z) => h("option", { value: z, selected: z === tz }, z)),
  );
  const taxMode = h(
    "select",
    { name: "tax_mode" },
    h("option", { value: "inclusive" }, "Prices include tax"),
    h("option", { value: "exclusive" }, "Tax is added at the till"),
  );
  const deviceName = h("input", { name: "device_name", value: "Till 1" });
  const ownerName = h("input", { name: "owner_name", required: true, autocomplete: "name", placeholder: "Your name" });
  const username = h("input", { name: "username", required: true, autocomplete: "username", autocapitalize: "none" });
  let usernameTouched = false;
  username.addEventListener("input", () => (usernameTouched = true));
  ownerName.addEventListener("input", () => {
    if (!usernameTouched) username.value = usernameFrom(ownerName.value);
  });
  const password = h("input", {
    name: "password",
    type: "password",
    required: true,
    minlength: 10,
    autocomplete: "new-password",
  });
  const password2 = h("input", { name: "password2", type: "password", required: true, autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block", id: "create-shop" }, "Create shop");

  const form = h(
    "form",
    { class: "stack", id: "create-form", novalidate: true },
    h(
      "div",
      { class: "fields" },
      field("Shop name", shopName, null, true),
      field("Currency", currency),
      field("Time zone", timezone),
      field("Prices", taxMode),
      field("This device's name", deviceName, "Shown on receipts and in Sync."),
    ),
    h("h3", null, "You, the owner"),
    h(
      "div",
      { class: "fields" },
      field("Your name", ownerName),
      field("Username", username, "You log in with this."),
      field("Password", password, "At least 10 characters."),
      field("Password again", password2),
    ),
    submit,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (password.value !== password2.value) {
      showFormError(form, { message: "The two passwords are not the same.", field: "password2" });
      return;
    }
    busy(submit, form, async () => {
      const created = await post("/setup", {
        shop_name: shopName.value.trim(),
        owner_name: ownerName.value.trim(),
        username: username.value.trim(),
        password: password.value,
        currency: currency.value,
        timezone: timezone.value,
        tax_mode: taxMode.value,
        device_name: deviceName.value.trim() || null,
      });
      showRecoveryKey(app, page, created.recovery_key, username.value.trim(), password.value);
    });
  });
  return h(
    "section",
    { class: "panel", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Start a new shop"),
    h("p", { class: "muted" }, "For the first device of a shop."),
    form,
  );
}

function joinPanel(app, page) {
  const invite = h("textarea", {
    name: "invite",
    rows: 3,
    id: "invite-input",
    placeholder: "ABCDE-FGHIJ  or  tillmesh-invite:…",
    autocapitalize: "characters",
    spellcheck: "false",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block", id: "join-shop" }, "Join shop");
  const form = h(
    "form",
    { class: "stack", id: "join-form", novalidate: true },
    field(
      "Invite code",
      invite,
      "On a device already in the shop, open People & devices → Invite a device. Type the short code, or paste the whole invite.",
    ),
    submit,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = invite.value.trim();
    if (!text) {
      showFormError(form, { message: "Type the invite code shown on the other device.", field: "invite" });
      return;
    }
    busy(submit, form, async () => {
      const joined = await post("/join", { invite: text });
      await app.refreshShop();
      page.replaceChildren(
        h(
          "div",
          { class: "panel stack", id: "joined" },
          alertBox("ok", `This device joined ${joined.shop_name}.`),
          h(
            "p",
            null,
            "The shop's products, stock and people are being copied from the other device. Log in with your usual PIN or password.",
          ),
          h(
            "button",
            { type: "button", class: "btn btn-primary", id: "go-to-login", onclick: () => app.go("login") },
            "Go to login",
          ),
        ),
      );
    });
  });
  return h(
    "section",
    { class: "panel", "aria-labelledby": "join-title" },
    h("h2", { id: "join-title" }, "Join an existing shop"),
    h("p", { class: "muted" }, "For a second till, a tablet or the back-office PC."),
    form,
  );
}

function showRecoveryKey(app, page, key, username, password) {
  const ok = h("input", { type: "checkbox", id: "wrote-it-down" });
  const cont = h(
    "button",
    { type: "button", class: "btn btn-primary btn-big", id: "recovery-continue", disabled: true },
    "Continue to the till",
  );
  ok.addEventListener("change", () => (cont.disabled = !ok.checked));
  const box = h(
    "div",
    { class: "panel stack", id: "recovery" },
    h("h1", null, "Your shop is ready"),
    alertBox(
      "warn",
      h(
        "span",
        null,
        h("strong", null, "Write this recovery key down now"),
        " and keep it somewhere safe, away from this device. It is shown only once. With it an owner can regain control of the shop if every owner password is lost.",
      ),
    ),
    h("div", { class: "recovery-key", id: "recovery-key" }, key),
    h("label", { class: "check", for: "wrote-it-down" }, ok, "I have written the recovery key down"),
    cont,
  );
  cont.addEventListener("click", () =>
    busy(cont, box, async () => {
      const session = await post("/login", { username, password });
      await app.loggedIn(session);
    }),
  );
  page.replaceChildren(box);
  ok.focus();
}
