// Money, times and days as the shop sees them: integer minor units formatted by the currency's
// exponent; times in the shop's time zone (not the browser's).

const shop = { currency: "EUR", exponent: 2, timezone: "UTC", rounding: "half_up", taxMode: "inclusive", cashStep: 1 };
let moneyFmt = null;

/// Called with GET /settings once logged in.
export function configure(settings) {
  shop.currency = settings.currency;
  shop.exponent = settings.currency_exponent;
  shop.timezone = settings.timezone;
  shop.rounding = settings.rounding;
  shop.taxMode = settings.tax_mode;
  shop.cashStep = settings.cash_rounding || 1;
  try {
    moneyFmt = new Intl.NumberFormat(undefined, {
      style: "currency",
      currency: shop.currency,
      minimumFractionDigits: shop.exponent,
      maximumFractionDigits: shop.exponent,
    });
  } catch {
    moneyFmt = null;
  }
}

export function shopSettings() {
  return shop;
}

/// Minor units as a decimal string without the currency: 1250 → "12.50".
export function decimal(minor) {
  const e = shop.exponent;
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(minor));
  if (!e) return `${sign}${abs}`;
  const digits = String(abs).padStart(e + 1, "0");
  return `${sign}${digits.slice(0, -e)}.${digits.slice(-e)}`;
}

/// Minor units with the currency: 1250 → "€12.50".
export function money(minor) {
  if (minor === null || minor === undefined) return "";
  if (moneyFmt) return moneyFmt.format(minor / 10 ** shop.exponent);
  return `${decimal(minor)} ${shop.currency}`;
}

/// "12.5", "12,50" or "12" → minor units; null if it is not an amount.
export function parseMoney(text) {
  const t = String(text ?? "")
    .trim()
    .replace(/\s/g, "")
    .replace(",", ".");
  if (!t) return null;
  if (!/^-?\d*(\.\d*)?$/.test(t) || t === "." || t === "-") return null;
  const [whole, frac = ""] = t.replace("-", "").split(".");
  const e = shop.exponent;
  if (frac.length > e) return null;
  const minor = Number(whole || "0") * 10 ** e + Number((frac + "0".repeat(e)).slice(0, e) || "0");
  return t.startsWith("-") ? -minor : minor;
}

/// Basis points as a percentage: 2000 → "20 %", 550 → "5.5 %".
export function percent(bp) {
  return `${(bp / 100).toLocaleString(undefined, { maximumFractionDigits: 2 })} %`;
}

function fmt(ms, options) {
  try {
    return new Intl.DateTimeFormat(undefined, { timeZone: shop.timezone, ...options }).format(new Date(ms));
  } catch {
    return new Intl.DateTimeFormat(undefined, options).format(new Date(ms));
  }
}

export const time = (ms) => fmt(ms, { hour: "2-digit", minute: "2-digit" });
export const dateTime = (ms) =>
  fmt(ms, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
export const shortDate = (ms) => fmt(ms, { month: "short", day: "numeric" });

/// The shop-local day (YYYY-MM-DD) of a time.
export function shopDay(ms = Date.now()) {
  const parts = {};
  try {
    for (const p of new Intl.DateTimeFormat("en-CA", {
      timeZone: shop.timezone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    }).formatToParts(new Date(ms))) {
      parts[p.type] = p.value;
    }
    return `${parts.year}-${parts.month}-${parts.day}`;
  } catch {
    return new Date(ms).toISOString().slice(0, 10);
  }
}

/// The day `n` days before `day` (YYYY-MM-DD).
export function daysBefore(day, n) {
  const d = new Date(`${day}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() - n);
  return d.toISOString().slice(0, 10);
}

/// "Mon 17" for a YYYY-MM-DD day.
export function dayLabel(day) {
  const d = new Date(`${day}T12:00:00Z`);
  return new Intl.DateTimeFormat(undefined, { timeZone: "UTC", weekday: "short", day: "numeric" }).format(d);
}

/// "just now", "3 min ago", "2 h ago", or a date.
export function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  return dateTime(ms);
}

// The node's rounding rules (node/domain/money.rs), so the cart shows what the sale will be.
function divRound(num, den, rule) {
  const q = Math.trunc(num / den);
  const r = num - q * den;
  if (r === 0) return q;
  const twice = 2 * Math.abs(r);
  const away = num < 0 ? -1 : 1;
  if (rule === "down") return q;
  if (rule === "half_even") return twice > den || (twice === den && q % 2 !== 0) ? q + away : q;
  return twice >= den ? q + away : q;
}

/// [total, tax] of a line, as the node computes them.
export function lineAmounts(unitPrice, qty, discount, taxRateBp) {
  const net = unitPrice * qty - discount;
  if (shop.taxMode === "exclusive") {
    const tax = divRound(net * taxRateBp, 10000, shop.rounding);
    return [net + tax, tax];
  }
  return [net, divRound(net * taxRateBp, 10000 + taxRateBp, shop.rounding)];
}

/// An amount rounded to the shop's cash step (e.g. 5 cents), half up.
export function cashRound(amount) {
  const step = shop.cashStep;
  if (step <= 1) return amount;
  return divRound(amount, step, "half_up") * step;
}

export function initials(name) {
  return String(name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}
