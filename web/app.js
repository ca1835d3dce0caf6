// The tillmesh web UI: a single page. Screens are modules in /screens; the URL fragment
// (#/sell, #/stock …) says which one is open. This file boots the app, keeps who is logged in
// and the shop's settings, draws the top bar, and relays the node's live events (SSE) to the
// open screen.

import { ApiError, get, post, setCsrf, whenSessionEnds, humanError } from "./lib/api.js";
import { h, icon, toast, alertBox } from "./lib/dom.js";
import { configure } from "./lib/format.js";
import * as setupScreen from "./screens/setup.js";
import * as loginScreen from "./screens/login.js";
import * as sellScreen from "./screens/sell.js";
import * as stockScreen from "./screens/stock.js";
import * as productsScreen from "./screens/products.js";
import * as reportsScreen from "./screens/reports.js";
import * as ordersScreen from "./screens/orders.js";
import * as booksScreen from "./screens/books.js";
import * as peopleScreen from "./screens/people.js";
import * as syncScreen from "./screens/sync.js";
import * as auditScreen from "./screens/audit.js";
import { startAlerts, stopAlerts, alertEvent } from "./lib/alerts.js";

const RANK = { staff: 0, manager: 1, owner: 2 };

// The screens of a logged-in person, in the order of the menu; `role` is the least role.
const SCREENS = [
  { route: "sell", label: "Sell", icon: "sell", role: "staff", module: sellScreen },
  { route: "stock", label: "Stock", icon: "stock", role: "staff", module: stockScreen },
  { route: "products", label: "Products", icon: "products", role: "staff", module: productsScreen },
  { route: "orders", label: "Orders", icon: "box_in", role: "staff", module: ordersScreen },
  { route: "reports", label: "Reports", icon: "reports", role: "manager", module: reportsScreen },
  { route: "books", label: "Books", icon: "count", role: "manager", module: booksScreen },
  {
    route: "people",
    label: "People & devices",
    short: "People",
    icon: "people",
    role: "manager",
    module: peopleScreen,
  },
  { route: "sync", label: "Sync", icon: "sync", role: "staff", module: syncScreen },
  { route: "audit", label: "Audit", icon: "history", role: "manager", module: auditScreen },
];

/// What every screen shares.
export const app = {
  /// "node" (a device of one shop) or "relay" (many shops: the login names the shop).
  server: "node",
  status: null,
  settings: null,
  me: null,
  people: [],
  devices: [],
  listeners: new Set(),
  cleanup: null,

  /// Whether the logged-in person has at least `role`.
  can(role) {
    return !!this.me && RANK[this.me.role] >= RANK[role];
  },
  personName(id) {
    if (!id) return "—";
    const p = this.people.find((x) => x.id === id);
    return p ? p.name : "someone no longer listed";
  },
  deviceName(id) {
    const d = this.devices.find((x) => x.id === id);
    return d ? d.name : `device ${String(id).slice(0, 8)}`;
  },
  thisDevice() {
    return this.status && this.status.device ? this.status.device : null;
  },
  /// Calls `fn(event)` for each live event while the current screen is open.
  onEvent(fn) {
    this.listeners.add(fn);
  },
  go(route) {
    if (location.hash === `#/${route}`) render();
    else location.hash = `#/${route}`;
  },
  async refreshShop() {
    const [status, people] = await Promise.all([get("/status"), get("/login/people")]);
    this.status = status;
    this.people = people;
    if (this.me) {
      const [settings, devices] = await Promise.all([get("/settings"), get("/devices")]);
      this.settings = settings;
      this.devices = devices;
      configure(settings);
    }
    drawTopbar();
  },
  /// After POST /login (or GET /me on a reload).
  async loggedIn(session) {
    setCsrf(session.csrf_token);
    this.me = session.person;
    await this.refreshShop();
    startEvents();
    startAlerts(this);
    const wanted = routeOf();
    this.go(screenFor(wanted) ? wanted : "sell");
  },
  async logout() {
    try {
      await post("/logout");
    } catch {
      // The session may be gone already; the login screen comes next either way.
    }
    endSession();
  },
};

function endSession() {
  app.me = null;
  setCsrf(null);
  stopEvents();
  stopAlerts();
  drawTopbar();
  if (location.hash !== "#/login") location.hash = "#/login";
  else render();
}

whenSessionEnds(() => {
  if (app.me) {
    toast("Your session ended. Log in again.", "error");
    endSession();
  }
});

function routeOf() {
  const m = /^#\/([a-z-]+)/.exec(location.hash);
  return m ? m[1] : "";
}

function screenFor(route) {
  return SCREENS.find((x) => x.route === route && app.can(x.role));
}

// ---- Top bar ----

function drawTopbar() {
  const bar = document.getElementById("topbar");
  const loggedIn = !!app.me;
  bar.hidden = !loggedIn;
  document.getElementById("shop-name").textContent = (app.status && app.status.shop_name) || "tillmesh";
  const device = app.thisDevice();
  document.getElementById("device-name").textContent = device ? device.name : "";
  const revoked = document.getElementById("revoked");
  revoked.hidden = !(device && device.revoked);
  if (!revoked.hidden && !revoked.firstChild) {
    revoked.appendChild(
      alertBox(
        "error",
        `An owner of the shop revoked this device (${device.name}). It no longer syncs with the ` +
          "other tills and cannot record sales or stock: anything done here would not count. " +
          "Ask an owner to invite it again.",
      ),
    );
  }
  const update = document.getElementById("update-needed");
  const why = app.status && app.status.update_needed;
  update.hidden = !why;
  if (why) update.replaceChildren(alertBox("error", `${why}.`));
  document.title = app.status && app.status.shop_name ? `${app.status.shop_name} · tillmesh` : "tillmesh";
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  if (!loggedIn) return;
  const current = routeOf();
  for (const sc of SCREENS) {
    if (!app.can(sc.role)) continue;
    nav.appendChild(
      h(
        "a",
        { href: `#/${sc.route}`, "aria-current": sc.route === current ? "page" : null, id: `nav-${sc.route}` },
        icon(sc.icon),
        h(
          "span",
          { class: sc.short ? "label-long" : null },
          sc.short && window.innerWidth < 1440 ? sc.short : sc.label,
        ),
      ),
    );
  }
  const role = app.me.role[0].toUpperCase() + app.me.role.slice(1);
  document
    .getElementById("who")
    .replaceChildren(h("b", null, app.me.name), h("span", { class: "role-text" }, ` · ${role}`));
}

document.getElementById("logout").addEventListener("click", () => app.logout());

// ---- Live events ----

let source = null;
let retry = null;
let syncTimer = null;

function startEvents() {
  stopEvents();
  source = new EventSource("/api/v1/events");
  const relay = (type) => (e) => {
    let data = {};
    try {
      data = JSON.parse(e.data);
    } catch {
      data = { type };
    }
    if (type === "shop_changed" && data.doc !== "orders") app.refreshShop().catch(() => {});
    if (type === "alert" || type === "lagged" || (type === "change_applied" && data.doc === "catalog")) {
      alertEvent(data, type === "alert");
    }
    for (const fn of app.listeners) {
      try {
        fn(data);
      } catch (err) {
        console.error(err);
      }
    }
  };
  for (const type of [
    "sale_recorded",
    "stock_changed",
    "product_changed",
    "change_applied",
    "changes_dropped",
    "revoked_sale_kept",
    "shop_changed",
    "ticket_changed",
    "ticket_double_closed",
    "lagged",
    "alert",
  ]) {
    source.addEventListener(type, relay(type));
  }
  source.addEventListener("error", () => {
    if (source && source.readyState === EventSource.CLOSED) {
      // The stream was refused (session gone?) or the node restarted: check and reconnect.
      stopEvents();
      retry = setTimeout(async () => {
        try {
          await get("/me");
          startEvents();
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) endSession();
          else retry = setTimeout(startEvents, 3000);
        }
      }, 2000);
    }
  });
  updateSyncDot();
  syncTimer = setInterval(updateSyncDot, 15000);
}

function stopEvents() {
  if (source) source.close();
  source = null;
  clearTimeout(retry);
  clearInterval(syncTimer);
}

/// The dot in the top bar: green when every other device is connected, amber when some are
/// not, grey when this is the only device.
async function updateSyncDot() {
  const dot = document.getElementById("sync-dot");
  try {
    const peers = await get("/peers");
    const me = app.thisDevice();
    const others = app.devices.filter((d) => !d.revoked && (!me || d.id !== me.id));
    if (!others.length) {
      dot.className = "sync-dot";
      dot.title = "This is the only device of the shop";
      return;
    }
    const connected = others.filter((d) => peers.some((p) => p.device_id === d.id && p.connected));
    dot.className = `sync-dot ${connected.length === others.length ? "ok" : connected.length ? "warn" : "bad"}`;
    dot.title = `${connected.length} of ${others.length} other devices connected`;
  } catch {
    dot.className = "sync-dot bad";
    dot.title = "Sync status unknown";
  }
}

// ---- Screens ----

async function render() {
  const main = document.getElementById("main");
  if (app.cleanup) {
    try {
      app.cleanup();
    } catch (err) {
      console.error(err);
    }
  }
  app.cleanup = null;
  app.listeners.clear();
  for (const d of document.querySelectorAll("dialog")) d.close();

  let module;
  let route = routeOf();
  if (app.server === "relay" && !app.me) {
    module = loginScreen;
    route = "login";
  } else if (!app.status || !app.status.has_shop) {
    module = setupScreen;
    route = "setup";
  } else if (!app.me) {
    module = loginScreen;
    route = "login";
  } else {
    const sc = screenFor(route);
    if (!sc) {
      if (SCREENS.some((x) => x.route === route)) {
        main.replaceChildren(
          h(
            "div",
            { class: "panel" },
            alertBox("warn", "This screen is for managers and owners. Ask one of them to log in."),
          ),
        );
        drawTopbar();
        return;
      }
      app.go("sell");
      return;
    }
    module = sc.module;
  }
  document.body.dataset.screen = route;
  drawTopbar();
  main.replaceChildren();
  try {
    const cleanup = await module.render(main, app);
    if (typeof cleanup === "function") app.cleanup = cleanup;
  } catch (err) {
    main.replaceChildren(h("div", { class: "panel" }, alertBox("error", humanError(err))));
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("resize", () => {
  if (app.me) drawTopbar();
});

async function boot() {
  const main = document.getElementById("main");
  // Nodes older than GET /server answer 404: they are nodes.
  app.server = (await get("/server").catch(() => ({ kind: "node" }))).kind;
  if (app.server === "relay") {
    // A relay answers nothing about a shop before the login names it.
    try {
      const me = await get("/me");
      await app.loggedIn(me);
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) toast(humanError(err), "error");
    }
    render();
    return;
  }
  try {
    app.status = await get("/status");
  } catch (err) {
    main.replaceChildren(
      h(
        "div",
        { class: "panel center-page" },
        alertBox("error", humanError(err)),
        h("p", null, h("button", { class: "btn", onclick: () => location.reload() }, "Try again")),
      ),
    );
    return;
  }
  if (app.status.has_shop) {
    app.people = await get("/login/people").catch(() => []);
    try {
      const me = await get("/me");
      await app.loggedIn(me);
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) {
        toast(humanError(err), "error");
      }
    }
  }
  render();
}

boot();
