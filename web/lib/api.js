// Talking to the node's JSON API under /api/v1, and turning its errors into sentences.
//
// The UI logs in with the session cookie (HttpOnly, set by POST /login); requests that change
// something carry the session's CSRF token in X-CSRF-Token (from the login answer or GET /me).

const BASE = "/api/v1";
let csrfToken = null;
// The node's first-start setup token, typed on the first-start page of another device (the
// node's own screen needs none).
let setupToken = null;
let onSessionEnded = () => {};

/// An error answered by the API ({"error":{code,message,field}}) or a network failure.
export class ApiError extends Error {
  constructor({ status = 0, code = "network", message, field = null, retryAfter = null }) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

export function setCsrf(token) {
  csrfToken = token;
}

/// Sends `token` as X-Setup-Token with every request from now on (null: no more).
export function setSetupToken(token) {
  setupToken = token || null;
}

/// The session's CSRF token, for requests made without `api()` (uploads with progress).
export function csrf() {
  return csrfToken;
}

/// Called when a request finds the session gone (expired, revoked, logged out elsewhere).
export function whenSessionEnds(fn) {
  onSessionEnded = fn;
}

/// Calls the API; resolves with the parsed JSON (or null), rejects with an ApiError.
export async function api(method, path, body) {
  return (await request(method, path, body)).data;
}

/// Every page of a paged list (GET /sales answers `X-Next-Cursor` while more remain).
export async function getAll(path) {
  const all = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await request("GET", cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    all.push(...(page.data || []));
    cursor = page.headers.get("X-Next-Cursor");
    if (!cursor) return all;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (setupToken) headers["X-Setup-Token"] = setupToken;
  let res;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError({
      message: "This device's tillmesh node is not answering. Check that it is running, then try again.",
    });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError({
      status: res.status,
      code: e.code || `http_${res.status}`,
      message: e.message || `The node answered ${res.status} ${res.statusText}.`,
      field: e.field || null,
      retryAfter: res.headers.get("Retry-After"),
    });
    if (res.status === 401 && path !== "/login" && path !== "/me") onSessionEnded(err);
    throw err;
  }
  return { data, headers: res.headers };
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => api("PATCH", path, body);
export const put = (path, body) => api("PUT", path, body);

function sentence(s) {
  const t = String(s || "").trim();
  if (!t) return "";
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

// Messages for codes where the API's own words are not what a person at the till needs.
const BY_CODE = {
  csrf: "This page is out of date. Reload it and try again.",
  internal: "Something went wrong on this device. Try again; if it keeps happening, restart tillmesh.",
  too_large: "That is too much at once. Try with less.",
  invite_invalid: "That invite is not valid. Check the code shown on the other device and type it again.",
  invite_used: "That invite has already been used. Ask for a new one on the other device.",
  invite_expired: "That invite has expired (they last 15 minutes). Ask for a new one on the other device.",
  unreachable:
    "The device that made the invite could not be reached. Make sure it is switched on, running tillmesh and on the same network.",
  peer_unreachable:
    "The device that made the invite could not be reached. Make sure it is switched on, running tillmesh and on the same network.",
  already_in_shop: "This device already belongs to a shop.",
  setup_token:
    "Type the setup token first: tillmesh printed it on the device it runs on when it started (“setup token: …”). Or set the shop up at that device's own screen.",
  host_not_allowed:
    "This device does not answer to that name. Open it by its IP address, or start tillmesh with --allowed-host NAME.",
};

/// A sentence for a person, from any error.
export function humanError(err) {
  if (!(err instanceof ApiError)) return sentence(err && err.message ? err.message : String(err));
  if (BY_CODE[err.code]) return BY_CODE[err.code];
  if (err.status === 429 || err.code === "rate_limited") {
    const secs = Number(err.retryAfter);
    const wait = secs > 90 ? `${Math.ceil(secs / 60)} minutes` : `${secs || 30} seconds`;
    return `Too many wrong attempts. Wait ${wait} and try again.`;
  }
  if (err.code === "invalid" && err.field === "invite" && /damaged|base32|too long|code/i.test(err.message)) {
    return "That invite looks mistyped or cut off. Type the short code again (like ABCDE-FGHIJ), or copy the whole invite once more.";
  }
  if (err.code === "invalid" && err.field === "invite") {
    return `That invite did not work: ${sentence(err.message)} Check the code, or ask for a new invite on the other device.`;
  }
  if (err.status === 403 && err.code === "forbidden") {
    return `${sentence(err.message)} Ask a manager or the owner.`;
  }
  if (err.status === 404 && err.code === "not_found" && /route/.test(err.message)) {
    return "This device's tillmesh does not offer that yet. Update tillmesh on this device.";
  }
  if (err.status === 405) {
    return "This device's tillmesh does not offer that yet. Update tillmesh on this device.";
  }
  return sentence(err.message);
}
