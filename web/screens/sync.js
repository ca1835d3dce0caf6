// Sync: the other devices of the shop — connected or not, how each was found, when last heard
// from, how far behind — in one plain sentence at the top, with hints when the network seems
// to block multicast (mDNS), and adding a peer by address.

import { get, post, humanError } from "../lib/api.js";
import { h, add, icon, field, busy, toast, alertBox, copyText, table } from "../lib/dom.js";
import { ago } from "../lib/format.js";

const FOUND_BY = {
  mdns: "Found on the network",
  static: "Added by address",
  invite: "From the invite",
  inbound: "It connected here",
};

/// The health of the mesh in one sentence: {tone: ok|warn|bad|none, text}.
export function health(devices, peers, me) {
  if (me && devices.some((d) => d.id === me.id && d.revoked)) {
    return { tone: "bad", text: "This device was revoked: it no longer syncs with the shop" };
  }
  const others = devices.filter((d) => !d.revoked && (!me || d.id !== me.id));
  if (!others.length) {
    return { tone: "none", text: "This is the only device of the shop. Invite another one from People & devices." };
  }
  const problems = [];
  let behind = 0;
  for (const d of others) {
    const p = peers.find((x) => x.device_id === d.id);
    if (!p || (!p.connected && !p.last_contact)) problems.push(`${d.name} has not connected yet`);
    else if (!p.connected) problems.push(`${d.name} last seen ${ago(p.last_contact)}`);
    else if (p.we_lacked > 0) behind += 1;
  }
  const total = others.length + 1;
  const kind = others.every((d) => d.role === "till") ? "tills" : "devices";
  if (!problems.length && !behind) {
    return { tone: "ok", text: total === 2 ? `Both ${kind} in sync` : `All ${total} ${kind} in sync` };
  }
  if (!problems.length) return { tone: "warn", text: "Catching up with the other devices…" };
  return { tone: problems.length === others.length ? "bad" : "warn", text: problems.join(" · ") };
}

export async function render(main, app) {
  const healthLine = h("div", { class: "health", id: "sync-health" });
  const hints = h("div", { class: "stack", id: "sync-hints" });
  const tbody = h("tbody", { id: "peer-rows" });
  const relayPanel = h("section", { class: "panel stack", id: "relay-panel", hidden: true });
  const own = h("div", { id: "own-addrs" });
  const checked = h("p", { class: "muted small" });

  add(
    main,
    h("div", { class: "screen-head" }, h("h1", null, "Sync"), h("span", { class: "spacer" }), checked),
    h("section", { class: "panel stack" }, healthLine, hints),
    relayPanel,
    h(
      "section",
      { class: "panel" },
      h("h2", null, "Other devices"),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "peer-table", class: "cards" },
          [
            h("th", null, "Device"),
            h("th", null, "Connected"),
            h("th", { class: "hide-narrow" }, "How found"),
            h("th", null, "Last contact"),
            h("th", { class: "num" }, "Behind by"),
          ],
          tbody,
        ),
      ),
    ),
    h(
      "div",
      { class: "grid-2" },
      h(
        "section",
        { class: "panel" },
        h("h2", null, "This device's address"),
        h(
          "p",
          { class: "muted" },
          "If another device cannot find this one by itself, add this address on its Sync screen.",
        ),
        own,
      ),
      app.can("manager") ? addPeerPanel() : null,
    ),
    app.can("manager") ? backupPanel() : null,
  );

  // Owners and managers may download a backup; it is encrypted on the node (node/sealed.rs)
  // so that only the owners and the recovery key open it — a manager makes it, cannot read it.
  function backupPanel() {
    return h(
      "section",
      { class: "panel", id: "backup-panel" },
      h("h2", null, "Backup"),
      h(
        "p",
        { class: "muted" },
        "One file with everything this device holds, encrypted for the shop's owners and its recovery key: " +
          "only an owner's password or the recovery key opens it (tillmesh restore FILE --password-file F " +
          "or --recovery-key-file F). A manager can make one but not open it.",
      ),
      h(
        "div",
        { class: "row" },
        h(
          "a",
          { class: "btn", id: "backup-download", href: "/api/v1/backup", download: "" },
          icon("download", 18),
          "Download encrypted backup",
        ),
      ),
    );
  }

  function addPeerPanel() {
    const addr = h("input", {
      name: "addr",
      id: "peer-addr",
      placeholder: "/ip4/192.168.1.20/tcp/7879/p2p/12D3Koo…",
      spellcheck: "false",
      class: "mono",
    });
    const ok = h("button", { type: "submit", class: "btn btn-primary" }, icon("link", 18), "Connect");
    const form = h(
      "form",
      { class: "stack", novalidate: true },
      field("Address of the other device", addr, "Shown on that device's Sync screen under “This device's address”."),
      h("div", { class: "row end" }, ok),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(ok, form, async () => {
        await post("/peers", { addr: addr.value.trim() });
        toast("Connecting… the device appears in the list once it answers.");
        addr.value = "";
        setTimeout(() => load().catch(() => {}), 1500);
      });
    });
    return h("section", { class: "panel" }, h("h2", null, "Add a device by address"), form);
  }

  async function load() {
    const [peers, mesh, devices] = await Promise.all([get("/peers"), get("/mesh"), get("/devices")]);
    app.devices = devices;
    const me = app.thisDevice();
    const hl = health(devices, peers, me);
    healthLine.replaceChildren(
      h("span", { class: `sync-dot ${hl.tone === "none" ? "" : hl.tone}` }),
      h("span", null, hl.text),
    );
    checked.textContent = `Checked ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })}`;

    const others = devices.filter((d) => !d.revoked && (!me || d.id !== me.id));
    const tips = [];
    if (hl.tone === "bad" && me && devices.some((d) => d.id === me.id && d.revoked)) {
      // The banner at the top says what to do.
    } else if (!mesh.running) {
      tips.push(
        alertBox(
          "warn",
          "Sync is not running on this device, so its sales stay here. It was started without a network address to listen on; restart tillmesh without --listen to use the default.",
        ),
      );
    } else if (!mesh.mdns) {
      tips.push(
        alertBox(
          "info",
          "Automatic discovery is off on this device (started with --no-mdns). Other devices are reached only by address.",
        ),
      );
    } else if (others.length) {
      const connected = peers.filter((p) => p.connected);
      const byMdns = peers.some((p) => p.found_by === "mdns");
      if (!connected.length) {
        tips.push(
          alertBox(
            "warn",
            "No other device is connected. Check that they are switched on, running tillmesh and on the same network. If they are, the network may block the multicast that devices use to find each other (common on guest Wi-Fi or with “client isolation”): add a device by its address below.",
          ),
        );
      } else if (!byMdns) {
        tips.push(
          alertBox(
            "info",
            "Devices were reached by address, but none was found automatically on the network. The network may block multicast (mDNS). Sync still works; if a device is missing, add it by address.",
          ),
        );
      }
    }
    hints.replaceChildren(...tips);

    renderRelays(devices, peers);

    const rows = [];
    for (const p of peers) {
      const name = p.name || (p.device_id ? app.deviceName(p.device_id) : "Unknown device");
      rows.push(
        h(
          "tr",
          { dataset: { peer: p.peer_id } },
          h(
            "td",
            null,
            h("div", { class: "cell-name" }, name),
            h(
              "div",
              { class: "cell-sub" },
              p.role ? (p.role === "till" ? "Till" : "Relay") : "Not a member",
              p.rtt_ms ? ` · ${Math.round(p.rtt_ms)} ms` : "",
            ),
            p.rejected ? h("div", { class: "badge badge-out" }, `${p.rejected} bad messages refused`) : null,
          ),
          h(
            "td",
            null,
            p.connected
              ? h("span", { class: "conn" }, h("span", { class: "sync-dot ok" }), p.via_relay ? "Connected through the relay" : "Connected")
              : h("span", { class: "conn" }, h("span", { class: "sync-dot bad" }), "Not connected"),
          ),
          h("td", { class: "hide-narrow" }, FOUND_BY[p.found_by] || p.found_by),
          h("td", { "data-label": "Last contact" }, ago(p.last_contact)),
          h("td", { class: "num", "data-label": "Behind by" }, p.we_lacked ? `${p.we_lacked} changes` : "up to date"),
        ),
      );
    }
    for (const d of others) {
      if (!peers.some((p) => p.device_id === d.id)) {
        rows.push(
          h(
            "tr",
            null,
            h("td", null, h("div", { class: "cell-name" }, d.name), h("div", { class: "cell-sub" }, "Till")),
            h("td", null, h("span", { class: "conn" }, h("span", { class: "sync-dot bad" }), "Not connected")),
            h("td", { class: "hide-narrow" }, "Not found yet"),
            h("td", { "data-label": "Last contact" }, "never"),
            h("td", { class: "num", "data-label": "Behind by" }, "unknown"),
          ),
        );
      }
    }
    tbody.replaceChildren(
      ...(rows.length ? rows : [h("tr", null, h("td", { colspan: 5, class: "empty" }, "No other devices yet."))]),
    );

    own.replaceChildren(
      mesh.addrs.length
        ? h(
            "div",
            { class: "stack" },
            mesh.addrs.map((a) =>
              h(
                "div",
                { class: "row" },
                h("span", { class: "addr grow" }, a),
                h(
                  "button",
                  { type: "button", class: "btn btn-small", "aria-label": "Copy address", onclick: () => copyText(a) },
                  icon("copy", 16),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "Not listening on the network."),
    );
  }

  // The shop's relays: a replica in the cloud that this device pushes its changes to and
  // pulls from; shown with when it last synced each way and took its last encrypted snapshot.
  function renderRelays(devices, peers) {
    const relays = devices.filter((d) => d.role === "relay" && !d.revoked);
    relayPanel.hidden = !relays.length;
    if (!relays.length) return;
    const items = relays.map((d) => {
      const p = peers.find((x) => x.device_id === d.id);
      const up = p && p.connected;
      const problem = p && (p.push_error || p.pull_error);
      return h(
        "div",
        { class: "stack", dataset: { relay: d.id } },
        h(
          "div",
          { class: "row" },
          h("span", { class: `sync-dot ${up ? "ok" : "bad"}` }),
          h("strong", null, d.name),
          h("span", { class: "muted" }, up ? "Connected" : p ? "Not connected" : "Not reached yet — add its address below"),
        ),
        h(
          "p",
          { class: "muted small relay-sync" },
          `Last synced ${ago(p && p.last_pull)} · last change sent ${ago(p && p.last_push)}`,
          p && p.we_lacked ? ` · ${p.we_lacked} changes fetched from it at the last sync` : "",
        ),
        h(
          "p",
          { class: "muted small relay-snapshot" },
          p && p.last_snapshot
            ? `Last encrypted snapshot ${ago(p.last_snapshot)}`
            : "Last encrypted snapshot: none known yet",
        ),
        problem ? alertBox("warn", problem) : null,
      );
    });
    relayPanel.replaceChildren(
      h("h2", null, relays.length > 1 ? "Relays" : "Relay"),
      h(
        "p",
        { class: "muted" },
        "A copy of the shop in the cloud: this device sends it every change and fetches what other devices sent, so devices that cannot reach each other (the owner's laptop at home) stay in sync.",
      ),
      ...items,
    );
  }

  app.onEvent(() => refreshSoon());
  let pending = null;
  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      load().catch((err) => toast(humanError(err), "error"));
    }, 500);
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => {
    clearInterval(timer);
    clearTimeout(pending);
  };
}
