//! Alerts: what a manager should look at — low stock, stock sold below zero after two tills
//! merged, two products claiming one SKU, concurrent price edits, a device joining or being
//! revoked, a device clock far off, a ticket closed twice.
//!
//! Every alert has a **deterministic id** built from what it is about, so converged replicas
//! list the same alerts with the same ids:
//!
//! | kind | id | where it comes from |
//! |---|---|---|
//! | `low_stock` | `low_stock:<product>:<variant or ->:<episode>` | computed at query time from `STOCK` |
//! | `oversold` | `oversold:<product>:<variant or ->:<episode>` | same; lists the sales that took the last units |
//! | `duplicate_sku` | `duplicate_sku:<sku>:<hash of the product ids>` | computed from the `SKUS` multimap |
//! | `price_conflict` / `field_conflict` | `<kind>:<product>:<hash of the conflicting values>` | computed from `Product::conflicts` |
//! | `device_joined`, `device_revoked` | `<kind>:<device id>` | raised by the `members` projection |
//! | `clock_skew` | `clock_skew:<device id>:<shop-local day>` | raised when a peer's ledger entry arrives |
//! | `double_closed_ticket` … | chosen by the projection that calls [`raise`] | raised (persisted in `ALERTS`) |
//!
//! Low stock is raised only for items received at least once (a product never stocked is not
//! "running low"); oversold whenever on hand is below zero.
//!
//! The **episode** of a stock alert is the number of inbound movements (stock-ins, returns,
//! voids, positive counts, deliveries) the product has had — a count over the set of entries,
//! so the same on every replica. A restock starts a new episode: a dismissed low-stock alert
//! comes back (with a new id) when the product runs low again. Likewise a new conflicting value
//! or another product taking the SKU gives a new id.
//!
//! State-derived alerts (`low_stock`, `oversold`, `duplicate_sku`, `*_conflict`) are computed
//! when asked from the projections (one pass over products, stock and SKUs: no history scan
//! except the few sale movements an oversold alert lists), so they always match the data.
//! Raised alerts are rows in `ALERTS`, written in the same transaction as the change that
//! caused them; they are kept by `reindex`.
//!
//! **Clock skew** is a local observation: a node raises it when a peer's ledger entry arrives
//! stamped more than [`CLOCK_SKEW_MS`] ahead of this node's clock. Its id (device and day)
//! is the same wherever it is raised, but a replica that received the entries later (after the
//! sender's clock was corrected, or from a backup) may not raise it: it is the one alert that
//! is not guaranteed identical on every replica.
//!
//! **Dismissals sync**: dismissing (managers and owners) writes `alert-dismissed:<id>` →
//! `{by, time}` into the `catalog` document — the synced document managers may already sign
//! — so an alert dismissed on one till is dismissed on every device, and the audit trail shows
//! who dismissed it. The catalog projection copies them to `ALERT_DISMISSALS`.
//!
//! New alerts are streamed as [`Event::Alert`] on `GET /api/v1/events`: raised alerts when
//! they are first written, stock alerts when a movement crosses the threshold, catalog alerts
//! when a catalog change makes them appear.
//!
//! **Files**: this one holds the alert itself, [`raise`] and the building of state-derived
//! alerts from the projections; `hooks` the hooks called while a change is applied (and their
//! rebuild by `reindex`); `list` [`list`] and [`dismiss`]. Every item keeps its `alerts::` path.

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{Event, Movement, Product};
use crate::store::tables::*;

mod hooks;
mod list;

pub(crate) use hooks::*;
pub use list::*;

/// A peer's entry stamped further than this ahead of the local clock raises `clock_skew`.
pub const CLOCK_SKEW_MS: i64 = 2 * 60 * 1000;
/// Root-key prefix of a dismissal in the `catalog` document.
pub const DISMISSED_PREFIX: &str = "alert-dismissed:";
/// Most sale entries an oversold alert lists.
const MAX_REFS: usize = 50;

/// Alert kinds this module knows (projections may raise others).
pub mod kinds {
    /// On hand at or below the reorder level.
    pub const LOW_STOCK: &str = "low_stock";
    /// On hand below zero (two tills sold the last items while cut off).
    pub const OVERSOLD: &str = "oversold";
    /// Two products claim one SKU.
    pub const DUPLICATE_SKU: &str = "duplicate_sku";
    /// Two devices set a product's price (or cost) concurrently.
    pub const PRICE_CONFLICT: &str = "price_conflict";
    /// Two devices set another product field concurrently.
    pub const FIELD_CONFLICT: &str = "field_conflict";
    /// A device was admitted to the shop.
    pub const DEVICE_JOINED: &str = "device_joined";
    /// A device was revoked.
    pub const DEVICE_REVOKED: &str = "device_revoked";
    /// A peer's clock is more than 2 minutes ahead of this node's.
    pub const CLOCK_SKEW: &str = "clock_skew";
    /// An open ticket was closed on two tills (raised by the tickets projection).
    pub const DOUBLE_CLOSED_TICKET: &str = "double_closed_ticket";
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Good to know.
    Info,
    /// Look at it today.
    Warning,
    /// Money or stock is wrong until someone acts.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRefs {
    /// Ledger entries (sales, tickets …).
    #[serde(default)]
    pub entries: Vec<Uuid>,
    /// Products.
    #[serde(default)]
    pub products: Vec<Uuid>,
    /// Devices (ids).
    #[serde(default)]
    pub devices: Vec<String>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Deterministic id: the same alert has the same id on every replica.
    pub id: String,
    /// Kind (see the module docs): `low_stock`, `oversold`, `duplicate_sku`, …
    pub kind: String,
    /// How urgent.
    pub severity: Severity,
    /// When the condition arose, ms since the Unix epoch (from the entries or changes behind
    /// it, never from the local clock, so it is the same everywhere).
    pub time: i64,
    /// One line for people.
    pub title: String,
    /// More words.
    pub detail: String,
    /// What it is about.
    pub refs: AlertRefs,
    /// Whether a manager dismissed it (on any device).
    #[serde(default)]
    pub dismissed: bool,
}

impl Alert {
    fn event(&self) -> Event {
        Event::Alert {
            id: self.id.clone(),
            kind: self.kind.clone(),
            severity: self.severity.as_str().to_string(),
            title: self.title.clone(),
        }
    }
}

/// A dismissal as written in the `catalog` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dismissal {
    /// The person who dismissed it.
    pub by: Uuid,
    /// When (ms).
    pub time: i64,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Raises an alert in the transaction of the change that caused it. Idempotent by id: returns
/// `false` (and changes nothing) if an alert with this id was raised before. The alert is
/// streamed as [`Event::Alert`] once the transaction commits.
pub fn raise(tx: &WriteTransaction, alert: &Alert) -> Result<bool> {
    let mut t = tx.open_table(ALERTS)?;
    if t.get(alert.id.as_str())?.is_some() {
        return Ok(false);
    }
    let mut stored = alert.clone();
    stored.dismissed = false;
    let json = serde_json::to_string(&stored).map_err(internal)?;
    t.insert(alert.id.as_str(), json.as_str())?;
    tx.open_table(ALERTS_UNSENT)?
        .insert(alert.id.as_str(), ())?;
    Ok(true)
}

/// A short stable hash for ids.
fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..6])
}

fn vid_str(v: u128) -> String {
    if v == 0 {
        "-".into()
    } else {
        Uuid::from_u128(v).to_string()
    }
}

// --- building alerts from projections -------------------------------------------------------

/// The stock alert of one item at `on_hand` (none if the level is fine).
fn stock_alert(
    tx: &WriteTransaction,
    p: &Product,
    vid: u128,
    on_hand: i64,
    level: i64,
) -> Result<Option<Alert>> {
    let eps = tx.open_table(STOCK_EPISODES)?;
    let moves = tx.open_table(MOVEMENTS)?;
    build_stock_alert(&eps, &moves, p, vid, on_hand, level)
}

fn build_stock_alert(
    eps: &impl ReadableTable<(u128, u128), u64>,
    moves: &impl ReadableTable<(u128, i64, u128, u32), &'static str>,
    p: &Product,
    vid: u128,
    on_hand: i64,
    level: i64,
) -> Result<Option<Alert>> {
    if on_hand >= 0 && on_hand > level {
        return Ok(None);
    }
    let pid = p.id.as_u128();
    let episode = eps.get((pid, vid))?.map(|v| v.value()).unwrap_or(0);
    if on_hand >= 0 && episode == 0 {
        // Never received: not stocked yet, rather than running low.
        return Ok(None);
    }
    let (sku, name) = match p.variants.iter().find(|v| v.id.as_u128() == vid) {
        Some(v) => (v.sku.clone(), format!("{} {}", p.name, v.name)),
        None => (p.sku.clone(), p.name.clone()),
    };
    // Newest movements first: the time of the last one, and (oversold) the sales that took
    // the last units — walking back while the stock after the movement was 0 or less.
    let mut time = 0;
    let mut sales = Vec::new();
    let mut after = on_hand;
    for row in moves
        .range((pid, i64::MIN, 0, 0)..=(pid, i64::MAX, u128::MAX, u32::MAX))?
        .rev()
    {
        let m: Movement = serde_json::from_str(row?.1.value()).map_err(internal)?;
        if m.variant_id.map(|v| v.as_u128()).unwrap_or(0) != vid {
            continue;
        }
        if time == 0 {
            time = m.time;
        }
        if on_hand >= 0 || after > 0 || sales.len() >= MAX_REFS {
            break;
        }
        if m.kind == crate::model::MovementKind::Sale && !sales.contains(&m.entry_id) {
            sales.push(m.entry_id);
        }
        after -= m.qty;
    }
    let item = vid_str(vid);
    Ok(Some(if on_hand < 0 {
        Alert {
            id: format!("{}:{}:{item}:{episode}", kinds::OVERSOLD, p.id),
            kind: kinds::OVERSOLD.into(),
            severity: Severity::Critical,
            time,
            title: format!("Oversold: {name} ({sku}) is at {on_hand}"),
            detail: format!(
                "More {name} was sold than was in stock — usually two tills sold the last items \
                 while cut off from each other. {} sale(s) took the last units. Count the shelf \
                 (stock adjust) or receive the missing stock.",
                sales.len()
            ),
            refs: AlertRefs {
                entries: sales,
                products: vec![p.id],
                devices: vec![],
            },
            dismissed: false,
        }
    } else {
        Alert {
            id: format!("{}:{}:{item}:{episode}", kinds::LOW_STOCK, p.id),
            kind: kinds::LOW_STOCK.into(),
            severity: Severity::Warning,
            time,
            title: format!("Low stock: {name} ({sku}) — {on_hand} left"),
            detail: format!("{on_hand} on hand, reorder level {level}."),
            refs: AlertRefs {
                products: vec![p.id],
                ..Default::default()
            },
            dismissed: false,
        }
    }))
}

/// The conflict alert of a product (none without conflicts).
fn conflict_alert(p: &Product, time: i64, exponent: u8) -> Option<Alert> {
    if p.conflicts.is_empty() {
        return None;
    }
    let price = p.conflicts.contains_key("price") || p.conflicts.contains_key("cost");
    let kind = if price {
        kinds::PRICE_CONFLICT
    } else {
        kinds::FIELD_CONFLICT
    };
    let mut parts = Vec::new();
    let mut key = Vec::new();
    for (field, values) in &p.conflicts {
        let shown: Vec<String> = values
            .iter()
            .map(|v| match (field.as_str(), v.as_i64()) {
                ("price" | "cost", Some(n)) => super::products_csv::format_major(n, exponent),
                _ => match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect();
        parts.push(format!("{field}: {}", shown.join(" or ")));
        key.push(format!(
            "{field}={}",
            serde_json::Value::from(values.clone())
        ));
    }
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    Some(Alert {
        id: format!("{kind}:{}:{}", p.id, short_hash(&key)),
        kind: kind.into(),
        severity: Severity::Warning,
        time,
        title: format!(
            "{} of {} ({}) set differently on two devices",
            if price { "Price" } else { "A field" },
            p.name,
            p.sku
        ),
        detail: format!(
            "Concurrent edits kept every value — {}. Open the product and save the right one.",
            parts.join("; ")
        ),
        refs: AlertRefs {
            products: vec![p.id],
            ..Default::default()
        },
        dismissed: false,
    })
}

fn duplicate_sku_alert(
    sku: &str,
    claimants: &BTreeSet<u128>,
    products: &impl ReadableTable<u128, &'static str>,
    times: &impl ReadableTable<u128, i64>,
) -> Result<Option<Alert>> {
    if claimants.len() < 2 {
        return Ok(None);
    }
    let ids: Vec<String> = claimants
        .iter()
        .map(|p| Uuid::from_u128(*p).to_string())
        .collect();
    let mut names = Vec::new();
    let mut time = 0;
    for p in claimants {
        if let Some(v) = products.get(*p)?
            && let Ok(p) = serde_json::from_str::<Product>(v.value())
        {
            names.push(p.name);
        }
        time = time.max(times.get(*p)?.map(|v| v.value()).unwrap_or(0));
    }
    let idrefs: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(Some(Alert {
        id: format!("{}:{sku}:{}", kinds::DUPLICATE_SKU, short_hash(&idrefs)),
        kind: kinds::DUPLICATE_SKU.into(),
        severity: Severity::Warning,
        time,
        title: format!("SKU {sku} is used by {} products", claimants.len()),
        detail: format!(
            "{} were created with the same SKU on devices that could not see each other. \
             Give one of them another SKU (or archive it).",
            names.join(", ")
        ),
        refs: AlertRefs {
            products: claimants.iter().map(|p| Uuid::from_u128(*p)).collect(),
            ..Default::default()
        },
        dismissed: false,
    }))
}

/// Whether a product (its projection's JSON) certainly has no alert, decided without parsing
/// it: no conflicts, no variants, not archived, and stock above its reorder level (or never
/// received and not below zero). Most products of a shop are that, and parsing every one was
/// most of the cost of listing alerts. The JSON is the compact serde output of [`Product`]: a
/// `"key":` pattern cannot occur inside a string value (quotes there are escaped).
fn no_alert_without_parsing(
    json: &str,
    pid: u128,
    stock: &impl ReadableTable<(u128, u128), i64>,
    eps: &impl ReadableTable<(u128, u128), u64>,
    low_default: i64,
) -> Result<bool> {
    if !(json.contains("\"conflicts\":{}")
        && json.contains("\"variants\":[]")
        && json.contains("\"archived\":false"))
    {
        return Ok(false);
    }
    let Some(at) = json.find("\"reorder_level\":") else {
        return Ok(false);
    };
    let rest = &json[at + "\"reorder_level\":".len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    let level = match &rest[..end] {
        "null" => low_default,
        n => match n.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return Ok(false),
        },
    };
    let on_hand = stock.get((pid, 0))?.map(|v| v.value()).unwrap_or(0);
    if on_hand > level {
        return Ok(true);
    }
    let episode = eps.get((pid, 0))?.map(|v| v.value()).unwrap_or(0);
    Ok(on_hand >= 0 && episode == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `no_alert_without_parsing` reads these patterns from the compact JSON of a product.
    #[test]
    fn product_json_has_the_patterns_the_fast_path_reads() {
        let p = Product {
            id: Uuid::new_v4(),
            sku: "\"reorder_level\":1,".into(),
            barcode: None,
            name: "x \"conflicts\":{} y".into(),
            category: None,
            unit: "pcs".into(),
            price: 1,
            cost: 0,
            tax_rate: 0,
            reorder_level: Some(5),
            variants: vec![],
            archived: false,
            conflicts: Default::default(),
        };
        let json = serde_json::to_string(&p).unwrap();
        for pat in [
            "\"conflicts\":{}",
            "\"variants\":[]",
            "\"archived\":false",
            "\"reorder_level\":5,",
        ] {
            assert!(json.contains(pat), "{pat} in {json}");
        }
        // A pattern inside a string value is escaped, so it is never matched there.
        assert_eq!(json.matches("\"reorder_level\":").count(), 1, "{json}");
    }
}
