// Building the page: elements, icons, dialogs, toasts and form errors. No framework; screens
// build their DOM with h() and rebuild parts of it when data changes.

import { humanError } from "./api.js";

/// h("button", {class: "btn", onclick: fn}, "Text", child, [more]) → element.
/// Props: class, text, html is not supported (no innerHTML from data); on* are listeners;
/// dataset; everything else is an attribute (false/null leaves it out, true sets it empty).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "value") el.value = v;
      else if (k === "checked") el.checked = !!v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

/// An SVG element (charts, icons).
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Icons: 24×24 strokes, drawn here so nothing is fetched.
const ICONS = {
  sell: "M3 4h2l2.4 11.2a2 2 0 0 0 2 1.6h7.7a2 2 0 0 0 2-1.5L21 8H6.2M10 21h.01M18 21h.01",
  stock: "M21 8 12 3 3 8v8l9 5 9-5zM3 8l9 5 9-5M12 13v8",
  products: "M20.6 13.4 13.4 20.6a2 2 0 0 1-2.8 0L3 13V3h10l7.6 7.6a2 2 0 0 1 0 2.8zM7.5 7.5h.01",
  reports: "M4 20V10M10 20V4M16 20v-7M22 20H2",
  people:
    "M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM22 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8",
  sync: "M21 12a9 9 0 0 1-15.5 6.2L3 16M3 12a9 9 0 0 1 15.5-6.2L21 8M21 3v5h-5M3 21v-5h5",
  search: "M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16zM21 21l-4.3-4.3",
  plus: "M12 5v14M5 12h14",
  minus: "M5 12h14",
  x: "M18 6 6 18M6 6l12 12",
  trash: "M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6",
  warn: "M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0zM12 9v4M12 17h.01",
  info: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM12 16v-4M12 8h.01",
  check: "M20 6 9 17l-5-5",
  printer: "M6 9V2h12v7M6 18H4a2 2 0 0 1-2-2v-5a2 2 0 0 1 2-2h16a2 2 0 0 1 2 2v5a2 2 0 0 1-2 2h-2M6 14h12v8H6z",
  history: "M3 3v5h5M3.05 13A9 9 0 1 0 6 5.3L3 8M12 7v5l4 2",
  tag: "M20.6 13.4 13.4 20.6a2 2 0 0 1-2.8 0L3 13V3h10l7.6 7.6a2 2 0 0 1 0 2.8z",
  lock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
  link: "M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.7 1.7M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7",
  copy: "M9 9h13v13H9zM5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1",
  edit: "M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z",
  box_in: "M12 3v12M7 10l5 5 5-5M5 21h14",
  box_out: "M12 15V3M7 8l5-5 5 5M5 21h14",
  count: "M9 11l3 3L22 4M21 12v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h11",
  back: "M19 12H5M12 19l-7-7 7-7",
  device: "M5 2h14v20H5zM12 18h.01",
  backspace: "M21 4H8l-7 8 7 8h13a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zM18 9l-6 6M12 9l6 6",
  download: "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M7 10l5 5 5-5M12 15V3",
};

export function icon(name, size = 20) {
  return s(
    "svg",
    {
      width: size,
      height: size,
      viewBox: "0 0 24 24",
      fill: "none",
      stroke: "currentColor",
      "stroke-width": 2,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
      focusable: "false",
    },
    s("path", { d: ICONS[name] || ICONS.info }),
  );
}

/// Appends `children` (nodes, strings, arrays; null skipped) to `el`.
export function add(el, ...children) {
  append(el, children);
  return el;
}

/// Puts `children` (nodes, strings, arrays, null skipped) into `el` in place of what it had.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  while (box.children.length >= 3) box.firstChild.remove();
  const el = h("div", { class: `toast ${kind}` }, message);
  box.appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 7000 : 3500);
}

export function alertBox(kind, message) {
  const name = kind === "error" ? "warn" : kind === "ok" ? "check" : kind === "warn" ? "warn" : "info";
  return h(
    "div",
    { class: `alert alert-${kind}`, role: kind === "error" ? "alert" : null },
    icon(name),
    h("div", null, message),
  );
}

/// A labelled form field; `input` is the control. The control gets an id if it has none.
let fieldSeq = 0;
export function field(label, input, hint, wide) {
  if (!input.id) input.id = `f${++fieldSeq}`;
  return h(
    "div",
    { class: `field${wide ? " wide" : ""}` },
    h("label", { for: input.id }, label),
    input,
    hint ? h("span", { class: "hint" }, hint) : null,
  );
}

/// Shows an error in a form: the message in the form's error slot, the offending field marked.
export function showFormError(form, err) {
  clearFormError(form);
  let slot = form.querySelector(".form-error");
  if (!slot) {
    slot = h("div", { class: "form-error" });
    form.prepend(slot);
  }
  slot.replaceChildren(alertBox("error", humanError(err)));
  if (err && err.field) {
    const name = String(err.field).split(/[.[]/)[0];
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }
}

export function clearFormError(form) {
  const slot = form.querySelector(".form-error");
  if (slot) slot.replaceChildren();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/// Runs `work` with the button disabled; shows an error in `form` (or a toast) if it fails.
export async function busy(button, form, work) {
  if (button) button.disabled = true;
  try {
    if (form) clearFormError(form);
    return await work();
  } catch (err) {
    if (form) showFormError(form, err);
    else toast(humanError(err), "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/// A modal dialog. `body` is an element; `actions` are buttons (the first primary one gets
/// the focus unless an input does). Returns {dialog, close}. Escape and the × close it.
export function openDialog({ title, body, actions = [], wide = false, onClose }) {
  const dlg = h("dialog", { class: wide ? "wide" : null, "aria-label": title });
  const close = () => {
    if (dlg.open) dlg.close();
  };
  dlg.addEventListener("close", () => {
    dlg.remove();
    if (onClose) onClose();
  });
  fill(
    dlg,
    h(
      "div",
      { class: "dlg-head" },
      h("h2", null, title),
      h(
        "button",
        { type: "button", class: "btn btn-ghost icon-btn", "aria-label": "Close", onclick: close },
        icon("x"),
      ),
    ),
    h("div", { class: "dlg-body" }, body),
    actions.length ? h("div", { class: "dlg-foot" }, actions) : null,
  );
  document.body.appendChild(dlg);
  dlg.showModal();
  const first = dlg.querySelector(
    ".dlg-body input:not([type=checkbox]):not([readonly]), .dlg-body select, .dlg-body textarea",
  );
  if (first) first.focus();
  return { dialog: dlg, close };
}

/// Asks a yes/no question; resolves true when confirmed.
export function confirmDialog(title, message, confirmLabel, danger = true) {
  return new Promise((resolve) => {
    let answered = false;
    const yes = h(
      "button",
      {
        type: "button",
        id: "confirm-yes",
        class: `btn ${danger ? "btn-danger" : "btn-primary"}`,
        onclick: () => {
          answered = true;
          d.close();
          resolve(true);
        },
      },
      confirmLabel,
    );
    const no = h("button", { type: "button", class: "btn", onclick: () => d.close() }, "Cancel");
    const d = openDialog({
      title,
      body: h("p", null, message),
      actions: [no, yes],
      onClose: () => {
        if (!answered) resolve(false);
      },
    });
    yes.focus();
  });
}

/// A debounced function: calls `fn` once, `ms` after the last call.
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/// Copies text to the clipboard (falls back to selecting it in `input` for the user).
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied.");
  } catch {
    if (input) {
      input.focus();
      input.select();
    }
    toast("Press Ctrl+C to copy the selected text.");
  }
}

/// A table: `headers` are its `th` cells, `body` what follows the head (a `tbody` …).
export function table(props, headers, ...body) {
  return h("table", props, h("thead", null, h("tr", null, ...headers)), ...body);
}
