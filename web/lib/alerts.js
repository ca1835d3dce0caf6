// The alerts bell in the top bar: a badge with the number of open alerts and a panel listing
// them (newest first) with a Dismiss button for managers and owners. The list comes from
// GET /api/v1/alerts; it is reloaded when the node streams an `alert` event, when the catalog
// changes (a dismissal on another device syncs through it) and every minute.

import { get, post, humanError } from "./api.js";
import { h, icon, toast, alertBox } from "./dom.js";
import { dateTime } from "./format.js";

let appRef = null;
let alerts = [];
let timer = null;
let pending = null;

const bell = () => document.getElementById("alerts-bell");
const panel = () => document.getElementById("alerts-panel");

/// Starts showing alerts for the logged-in person (call after login).
export function startAlerts(app) {
  appRef = app;
  const b = bell();
  b.hidden = false;
  if (!b.dataset.wired) {
    b.dataset.wired = "1";
    b.addEventListener("click", () => togglePanel());
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !panel().hidden) togglePanel(false);
    });
    document.addEventListener("click", (e) => {
      const p = panel();
      if (!p.hidden && !p.contains(e.target) && !bell().contains(e.target)) togglePanel(false);
    });
  }
  clearInterval(timer);
  timer = setInterval(reloadAlerts, 60000);
  reloadAlerts();
}

/// Stops (logout).
export function stopAlerts() {
  clearInterval(timer);
  alerts = [];
  const b = bell();
  if (b) b.hidden = true;
  togglePanel(false);
}

/// A live event: reload when it may have changed the list (debounced).
export function alertEvent(data, isNew) {
  if (!appRef) return;
  if (isNew && data && data.title) toast(`Alert: ${data.title}`, data.severity === "critical" ? "error" : "info");
  clearTimeout(pending);
  pending = setTimeout(reloadAlerts, 300);
}

export async function reloadAlerts() {
  try {
    alerts = await get("/alerts");
  } catch {
    return;
  }
  drawBadge();
  if (!panel().hidden) drawPanel();
}

function drawBadge() {
  const count = document.getElementById("alerts-count");
  const worst = alerts.some((a) => a.severity === "critical") ? "critical" : alerts.length ? "warning" : "";
  count.textContent = alerts.length ? String(alerts.length) : "";
  count.hidden = !alerts.length;
  bell().className = `btn btn-ghost btn-small bell ${worst}`;
  bell().setAttribute("aria-label", alerts.length ? `Alerts: ${alerts.length} open` : "Alerts: none");
}

function togglePanel(open) {
  const p = panel();
  const show = open === undefined ? p.hidden : open;
  p.hidden = !show;
  bell().setAttribute("aria-expanded", show ? "true" : "false");
  if (show) drawPanel();
}

function drawPanel() {
  const p = panel();
  const canDismiss = appRef && appRef.can("manager");
  p.replaceChildren(
    h("div", { class: "alerts-head" }, h("h2", null, "Alerts"), h("span", { class: "muted" }, `${alerts.length} open`)),
    alerts.length
      ? h(
          "ul",
          { class: "alerts-list", id: "alerts-list" },
          alerts.map((a) =>
            h(
              "li",
              { class: `alert-item sev-${a.severity}`, dataset: { id: a.id, kind: a.kind } },
              h(
                "div",
                { class: "alert-main" },
                icon(a.severity === "info" ? "info" : "warn", 18),
                h(
                  "div",
                  null,
                  h("strong", null, a.title),
                  h("p", { class: "muted" }, a.detail),
                  h("span", { class: "muted small" }, a.time ? dateTime(a.time) : ""),
                ),
              ),
              canDismiss
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-small dismiss",
                      onclick: async (e) => {
                        e.target.disabled = true;
                        try {
                          await post(`/alerts/${encodeURIComponent(a.id)}/dismiss`);
                          toast("Dismissed on every device", "ok");
                          await reloadAlerts();
                        } catch (err) {
                          e.target.disabled = false;
                          toast(humanError(err), "error");
                        }
                      },
                    },
                    "Dismiss",
                  )
                : null,
            ),
          ),
        )
      : alertBox("ok", "Nothing needs your attention."),
  );
}
