// First-start page: create a shop, or log in and glance at products and stock.
// Talks to /api/v1 with the session cookie; unsafe requests carry the CSRF token.

const API = "/api/v1";
const $ = (id) => document.getElementById(id);

let csrfToken = null;

const views = ["loading", "create", "recovery", "login", "home"];

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
}

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

// Calls the API; resolves with the parsed JSON (or null), rejects with an Error carrying
// the API's message, code and status.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const res = await fetch(API + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const err = new Error(data && data.error ? data.error.message : `HTTP ${res.status}`);
    err.status = res.status;
    err.code = data && data.error ? data.error.code : null;
    err.retryAfter = res.headers.get("Retry-After");
    throw err;
  }
  return data;
}

function formatMoney(minor, exponent) {
  if (!exponent) return String(minor);
  const sign = minor < 0 ? "-" : "";
  const digits = String(Math.abs(minor)).padStart(exponent + 1, "0");
  return `${sign}${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillTable(tableId, emptyId, rows) {
  const table = $(tableId);
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren(...rows);
  table.hidden = rows.length === 0;
  $(emptyId).hidden = rows.length !== 0;
}

async function start() {
  showError("");
  let status;
  try {
    status = await api("GET", "/status");
  } catch (e) {
    show("loading");
    showError(`This node does not answer: ${e.message}`);
    return;
  }
  if (!status.has_shop) {
    $("shop-name").textContent = "";
    prepareCreateForm();
    show("create");
    return;
  }
  $("shop-name").textContent = status.shop_name || "";
  try {
    const me = await api("GET", "/me");
    csrfToken = me.csrf_token;
    await showHome(me.person);
  } catch (e) {
    if (e.status !== 401) showError(e.message);
    show("login");
    $("login-form").elements.username.focus();
  }
}

function prepareCreateForm() {
  const form = $("create-form");
  let zone = "UTC";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch (_) {
    // Keep UTC.
  }
  if (!form.elements.timezone.value) form.elements.timezone.value = zone;
  const list = $("timezones");
  if (list.children.length === 0 && typeof Intl.supportedValuesOf === "function") {
    const options = Intl.supportedValuesOf("timeZone").map((z) => {
      const o = document.createElement("option");
      o.value = z;
      return o;
    });
    list.replaceChildren(...options);
  }
}

async function createShop(event) {
  event.preventDefault();
  showError("");
  const f = event.target.elements;
  const value = (name) => f[name].value.trim();
  if (!value("shop_name") || !value("owner_name") || !value("username")) {
    showError("Please fill in the shop name, your name and a username.");
    return;
  }
  if (!/^[A-Za-z]{3}$/.test(value("currency"))) {
    showError("The currency is a three-letter code such as EUR, USD or JPY.");
    return;
  }
  if (f.password.value.length < 10) {
    showError("The password needs at least 10 characters.");
    return;
  }
  if (f.password.value !== f.password2.value) {
    showError("The two passwords differ.");
    return;
  }
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  button.textContent = "Creating…";
  try {
    const created = await api("POST", "/setup", {
      shop_name: value("shop_name"),
      owner_name: value("owner_name"),
      username: value("username"),
      password: f.password.value,
      currency: value("currency").toUpperCase(),
      timezone: value("timezone") || "UTC",
      tax_mode: f.tax_mode.value,
    });
    $("shop-name").textContent = value("shop_name");
    event.target.reset();
    $("recovery-key").textContent = created.recovery_key;
    $("recovery-done").checked = false;
    $("recovery-continue").disabled = true;
    show("recovery");
  } catch (e) {
    showError(e.message);
  } finally {
    button.disabled = false;
    button.textContent = "Create shop";
  }
}

async function login(event) {
  event.preventDefault();
  showError("");
  const f = event.target.elements;
  const username = f.username.value.trim();
  const secret = f.secret.value;
  if (!username || !secret) {
    showError("Enter your username and your password or PIN.");
    return;
  }
  // Staff PINs are 4–6 digits; passwords are at least 10 characters.
  const body = /^\d{4,6}$/.test(secret) ? { username, pin: secret } : { username, password: secret };
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const session = await api("POST", "/login", body);
    csrfToken = session.csrf_token;
    f.secret.value = "";
    await showHome(session.person);
  } catch (e) {
    if (e.status === 429 && e.retryAfter) {
      showError(`Too many attempts. Try again in ${Math.ceil(Number(e.retryAfter) / 60)} minute(s).`);
    } else {
      showError(e.message);
    }
  } finally {
    button.disabled = false;
  }
}

async function showHome(person) {
  $("who").textContent = `Logged in as ${person.name} (${person.role})`;
  show("home");
  try {
    const [settings, products, stock] = await Promise.all([
      api("GET", "/settings"),
      api("GET", "/products"),
      api("GET", "/stock"),
    ]);
    const exp = settings.currency_exponent;
    const productRows = products.slice(0, 50).map((p) => {
      const tr = document.createElement("tr");
      tr.append(cell(p.name), cell(p.sku), cell(`${formatMoney(p.price, exp)} ${settings.currency}`, "num"));
      return tr;
    });
    fillTable("products", "no-products", productRows);
    const stockRows = stock.slice(0, 50).map((s) => {
      const tr = document.createElement("tr");
      tr.append(cell(s.name), cell(s.sku), cell(String(s.on_hand), s.low ? "num low" : "num"));
      return tr;
    });
    fillTable("stock", "no-stock", stockRows);
  } catch (e) {
    showError(e.message);
  }
}

async function logout() {
  try {
    await api("POST", "/logout");
  } catch (_) {
    // The session is gone either way.
  }
  csrfToken = null;
  show("login");
}

$("create-form").addEventListener("submit", createShop);
$("login-form").addEventListener("submit", login);
$("recovery-done").addEventListener("change", (e) => {
  $("recovery-continue").disabled = !e.target.checked;
});
$("recovery-continue").addEventListener("click", () => {
  $("recovery-key").textContent = "";
  start();
});
$("logout").addEventListener("click", logout);

start();
