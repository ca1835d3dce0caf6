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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::{AutoCommit, Change, ChangeHash, ROOT};
use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::docs::am;
use crate::error::{Error, Result};
use crate::model::ledger::LedgerEntry;
use crate::model::{Event, Movement, Product, Settings};
use crate::replica::Ctx;
use crate::store::tables::*;

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

// --- hooks called while a change is applied ------------------------------------------------

/// After every applied change (engine): notices a peer's clock running ahead (from the first
/// entry of a peer's ledger change), and streams the alerts raised in this change.
pub(crate) fn after_apply(
    ctx: &mut Ctx<'_>,
    doc: &crate::docs::DocId,
    first_entry: Option<(i64, Uuid)>,
    local: bool,
) -> Result<()> {
    if !local
        && let crate::docs::DocId::Ledger { device, .. } = doc
        && let Some((time, entry_id)) = first_entry
    {
        let now = chrono::Utc::now().timestamp_millis();
        if time > now + CLOCK_SKEW_MS {
            let settings = ctx.shop().settings.clone();
            let day = settings
                .as_ref()
                .map(|s| super::commands::shop_day(s, time))
                .unwrap_or_default();
            let ahead = (time - now) / 1000;
            let name = device_name(ctx, device);
            raise(
                ctx.tx,
                &Alert {
                    id: format!("{}:{device}:{day}", kinds::CLOCK_SKEW),
                    kind: kinds::CLOCK_SKEW.into(),
                    severity: Severity::Warning,
                    time,
                    title: format!("{name}'s clock is {ahead} s ahead"),
                    detail: format!(
                        "An entry from {name} arrived stamped {ahead} seconds ahead of this \
                         device's clock (more than 2 minutes). Check the date and time \
                         settings of both devices: sales are ordered by their time."
                    ),
                    refs: AlertRefs {
                        entries: vec![entry_id],
                        devices: vec![device.clone()],
                        ..Default::default()
                    },
                    dismissed: false,
                },
            )?;
        }
    }
    let ids: Vec<String> = {
        let t = ctx.tx.open_table(ALERTS_UNSENT)?;
        if t.is_empty()? {
            return Ok(());
        }
        let mut v = Vec::new();
        for row in t.iter()? {
            v.push(row?.0.value().to_string());
        }
        v
    };
    let mut events = Vec::new();
    {
        let mut unsent = ctx.tx.open_table(ALERTS_UNSENT)?;
        let alerts = ctx.tx.open_table(ALERTS)?;
        for id in ids {
            unsent.remove(id.as_str())?;
            if let Some(v) = alerts.get(id.as_str())?
                && let Ok(a) = serde_json::from_str::<Alert>(v.value())
            {
                events.push(a.event());
            }
        }
    }
    for e in events {
        ctx.emit(e);
    }
    Ok(())
}

fn device_name(ctx: &Ctx<'_>, id: &str) -> String {
    ctx.shop()
        .devices
        .iter()
        .find(|d| d.id == id)
        .map(|d| d.name.clone())
        .unwrap_or_else(|| format!("device {id}"))
}

/// `members` changed: a device created (admitted) raises `device_joined`, a device marked
/// revoked raises `device_revoked`. The shop's first change (its own first device) raises
/// nothing. The alert's time is the change's time.
pub(crate) fn members_changed(
    tx: &WriteTransaction,
    members: &mut AutoCommit,
    change: &Change,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Result<()> {
    if before.is_empty() {
        return Ok(());
    }
    let keys = am::root_keys_touched(members, change);
    for key in keys {
        let Some(id) = key.strip_prefix("device:") else {
            continue;
        };
        let Some(obj) = am::map(members, &ROOT, &key, Some(after)) else {
            continue;
        };
        let name = am::string(members, &obj, "name", Some(after)).unwrap_or_default();
        let existed = am::map(members, &ROOT, &key, Some(before));
        if existed.is_none() {
            let role = am::string(members, &obj, "role", Some(after)).unwrap_or_default();
            raise(
                tx,
                &Alert {
                    id: format!("{}:{id}", kinds::DEVICE_JOINED),
                    kind: kinds::DEVICE_JOINED.into(),
                    severity: Severity::Info,
                    time: change.timestamp(),
                    title: format!("New device joined: {name}"),
                    detail: format!(
                        "{name} ({role}, device {id}) was admitted to the shop. If nobody you \
                         know added it, revoke it under People & devices."
                    ),
                    refs: AlertRefs {
                        devices: vec![id.to_string()],
                        ..Default::default()
                    },
                    dismissed: false,
                },
            )?;
        }
        let revoked_now = am::flag(members, &obj, "revoked", Some(after));
        let revoked_before = existed
            .as_ref()
            .is_some_and(|o| am::flag(members, o, "revoked", Some(before)));
        if revoked_now && !revoked_before {
            raise(
                tx,
                &Alert {
                    id: format!("{}:{id}", kinds::DEVICE_REVOKED),
                    kind: kinds::DEVICE_REVOKED.into(),
                    severity: Severity::Warning,
                    time: change.timestamp(),
                    title: format!("Device revoked: {name}"),
                    detail: format!(
                        "{name} (device {id}) was revoked: nothing it records from now on \
                         counts, and it is disconnected from the shop."
                    ),
                    refs: AlertRefs {
                        devices: vec![id.to_string()],
                        ..Default::default()
                    },
                    dismissed: false,
                },
            )?;
        }
    }
    Ok(())
}

/// `catalog` changed: copies dismissals, records when each product last changed, and streams
/// the catalog alerts the change made appear.
pub(crate) fn catalog_changed(
    ctx: &mut Ctx<'_>,
    keys: &BTreeSet<String>,
    change: &Change,
) -> Result<()> {
    let time = change.timestamp();
    let mut dismissals = Vec::new();
    let mut products = Vec::new();
    {
        let doc = ctx
            .doc("catalog")?
            .expect("the catalog was just applied, so it is loaded");
        for key in keys {
            if let Some(id) = key.strip_prefix(DISMISSED_PREFIX) {
                if let Some(json) = am::string(doc, &ROOT, key, None) {
                    dismissals.push((id.to_string(), json));
                }
            } else if let Some(pid) = key
                .strip_prefix("product:")
                .and_then(|s| Uuid::parse_str(s).ok())
            {
                products.push(pid);
            }
        }
    }
    {
        let mut t = ctx.tx.open_table(ALERT_DISMISSALS)?;
        for (id, json) in &dismissals {
            t.insert(id.as_str(), json.as_str())?;
        }
    }
    let mut events = Vec::new();
    {
        let mut times = ctx.tx.open_table(PRODUCT_TIMES)?;
        for pid in &products {
            let old = times.get(pid.as_u128())?.map(|v| v.value()).unwrap_or(0);
            if time > old {
                times.insert(pid.as_u128(), time)?;
            }
        }
    }
    if !products.is_empty() {
        let settings = ctx.shop().settings.clone();
        let exp = settings.as_ref().map(|s| s.currency_exponent).unwrap_or(2);
        let prods = ctx.tx.open_table(PRODUCTS)?;
        let skus = ctx.tx.open_multimap_table(SKUS)?;
        let times = ctx.tx.open_table(PRODUCT_TIMES)?;
        for pid in &products {
            let Some(v) = prods.get(pid.as_u128())? else {
                continue;
            };
            let p: Product = serde_json::from_str(v.value()).map_err(internal)?;
            if let Some(a) = conflict_alert(&p, time, exp) {
                events.push(a.event());
            }
            let mut claimants = BTreeSet::new();
            for row in skus.get(p.sku.as_str())? {
                claimants.insert(row?.value().0);
            }
            if claimants.len() > 1
                && let Some(a) = duplicate_sku_alert(&p.sku, &claimants, &prods, &times)?
            {
                events.push(a.event());
            }
        }
    }
    for e in events {
        ctx.emit(e);
    }
    Ok(())
}

/// A ledger entry was projected: counts inbound movements (the stock alerts' episodes) and
/// streams `low_stock` / `oversold` when a movement crosses the threshold.
pub(crate) fn entry_projected(
    ctx: &mut Ctx<'_>,
    entry: &LedgerEntry,
    events: &[Event],
) -> Result<()> {
    // The last stock level of each item this entry moved.
    let mut last: BTreeMap<(u128, u128), i64> = BTreeMap::new();
    for e in events {
        if let Event::StockChanged {
            product_id,
            variant_id,
            on_hand,
        } = e
        {
            last.insert(
                (
                    product_id.as_u128(),
                    variant_id.map(|v| v.as_u128()).unwrap_or(0),
                ),
                *on_hand,
            );
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let low_default = ctx
        .shop()
        .settings
        .as_ref()
        .map(|s| s.low_stock_default)
        .unwrap_or(0);
    let mut out = Vec::new();
    for ((pid, vid), on_hand) in last {
        // This entry's movements of the item: the delta, and whether one was inbound.
        let mut delta = 0;
        let mut inbound = 0u64;
        {
            let moves = ctx.tx.open_table(MOVEMENTS)?;
            let t = entry.time;
            let e = entry.id.as_u128();
            for row in moves.range((pid, t, e, 0)..=(pid, t, e, u32::MAX))? {
                let m: Movement = serde_json::from_str(row?.1.value()).map_err(internal)?;
                if m.variant_id.map(|v| v.as_u128()).unwrap_or(0) != vid {
                    continue;
                }
                delta += m.qty;
                if m.qty > 0 {
                    inbound += 1;
                }
            }
        }
        if inbound > 0 {
            let mut eps = ctx.tx.open_table(STOCK_EPISODES)?;
            let n = eps.get((pid, vid))?.map(|v| v.value()).unwrap_or(0);
            eps.insert((pid, vid), n + inbound)?;
        }
        let before = on_hand - delta;
        let product: Option<Product> = {
            let prods = ctx.tx.open_table(PRODUCTS)?;
            prods
                .get(pid)?
                .and_then(|v| serde_json::from_str(v.value()).ok())
        };
        let Some(product) = product else { continue };
        if product.archived {
            continue;
        }
        let level = product.reorder_level.unwrap_or(low_default);
        // Announce an alert when it appears: the level was crossed, or an inbound movement
        // started a new episode (a new id) that is still low or below zero.
        let new_oversold = on_hand < 0 && (before >= 0 || inbound > 0);
        let new_low = (0..=level).contains(&on_hand) && (before > level || inbound > 0);
        if new_oversold || new_low {
            let tx = ctx.tx;
            if let Some(a) = stock_alert(tx, &product, vid, on_hand, level)? {
                out.push(a.event());
            }
        }
    }
    for e in out {
        ctx.emit(e);
    }
    Ok(())
}

/// Rebuilds the stock episodes from `MOVEMENTS` (after `reindex` re-projected them).
pub(crate) fn rebuild_episodes(tx: &WriteTransaction) -> Result<()> {
    tx.delete_table(STOCK_EPISODES)?;
    let mut counts: HashMap<(u128, u128), u64> = HashMap::new();
    {
        let moves = tx.open_table(MOVEMENTS)?;
        for row in moves.iter()? {
            let (k, v) = row?;
            let m: Movement = serde_json::from_str(v.value()).map_err(internal)?;
            if m.qty > 0 {
                *counts
                    .entry((k.value().0, m.variant_id.map(|v| v.as_u128()).unwrap_or(0)))
                    .or_default() += 1;
            }
        }
    }
    let mut eps = tx.open_table(STOCK_EPISODES)?;
    for (k, n) in counts {
        eps.insert(k, n)?;
    }
    Ok(())
}

/// Rebuilds dismissals from the catalog document (for `reindex`).
pub(crate) fn rebuild_dismissals(tx: &WriteTransaction, catalog: &AutoCommit) -> Result<()> {
    let mut t = tx.open_table(ALERT_DISMISSALS)?;
    for key in am::keys(catalog, &ROOT, None) {
        if let Some(id) = key.strip_prefix(DISMISSED_PREFIX)
            && let Some(json) = am::string(catalog, &ROOT, &key, None)
        {
            t.insert(id, json.as_str())?;
        }
    }
    Ok(())
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

/// Every alert, newest first (then by id), dismissed ones included only if asked. Computed
/// from the projections: the same on every replica holding the same changes.
pub fn list(
    tx: &redb::ReadTransaction,
    settings: Option<&Settings>,
    include_dismissed: bool,
) -> Result<Vec<Alert>> {
    let low_default = settings.map(|s| s.low_stock_default).unwrap_or(0);
    let exp = settings.map(|s| s.currency_exponent).unwrap_or(2);
    let products_t = tx.open_table(PRODUCTS)?;
    let times = tx.open_table(PRODUCT_TIMES)?;
    let stock = tx.open_table(STOCK)?;
    let eps = tx.open_table(STOCK_EPISODES)?;
    let moves = tx.open_table(MOVEMENTS)?;
    let mut out = Vec::new();
    for row in products_t.iter()? {
        let (k, v) = row?;
        if no_alert_without_parsing(v.value(), k.value(), &stock, &eps, low_default)? {
            continue;
        }
        let p: Product = serde_json::from_str(v.value()).map_err(internal)?;
        let time = times.get(k.value())?.map(|v| v.value()).unwrap_or(0);
        if let Some(a) = conflict_alert(&p, time, exp) {
            out.push(a);
        }
        if p.archived {
            continue;
        }
        let level = p.reorder_level.unwrap_or(low_default);
        let items: Vec<u128> = if p.variants.is_empty() {
            vec![0]
        } else {
            p.variants.iter().map(|v| v.id.as_u128()).collect()
        };
        for vid in items {
            let on_hand = stock
                .get((p.id.as_u128(), vid))?
                .map(|v| v.value())
                .unwrap_or(0);
            if let Some(a) = build_stock_alert(&eps, &moves, &p, vid, on_hand, level)? {
                out.push(a);
            }
        }
    }
    let skus = tx.open_multimap_table(SKUS)?;
    for row in skus.iter()? {
        let (k, values) = row?;
        let mut claimants = BTreeSet::new();
        for v in values {
            claimants.insert(v?.value().0);
        }
        if let Some(a) = duplicate_sku_alert(k.value(), &claimants, &products_t, &times)? {
            out.push(a);
        }
    }
    for row in tx.open_table(ALERTS)?.iter()? {
        let a: Alert = serde_json::from_str(row?.1.value()).map_err(internal)?;
        out.push(a);
    }
    let dismissed = tx.open_table(ALERT_DISMISSALS)?;
    for a in &mut out {
        a.dismissed = dismissed.get(a.id.as_str())?.is_some();
    }
    if !include_dismissed {
        out.retain(|a| !a.dismissed);
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// Dismisses an alert on every device (manager): writes `alert-dismissed:<id>` into the
/// catalog. Unknown or already dismissed alerts are refused.
pub fn dismiss(
    ctx: &mut Ctx<'_>,
    by: &crate::model::Principal,
    id: &str,
    current: &[Alert],
) -> Result<Alert> {
    super::access::require(by, super::access::Access::DismissAlert)?;
    let key = super::commands::person_key(by)?.clone();
    let Some(mut alert) = current.iter().find(|a| a.id == id).cloned() else {
        return Err(Error::NotFound(format!("no alert {id:?}")));
    };
    if ctx.tx.open_table(ALERT_DISMISSALS)?.get(id)?.is_some() {
        return Err(Error::Conflict("this alert is already dismissed".into()));
    }
    let d = Dismissal {
        by: by.person_id,
        time: super::commands::hlc_now(ctx)?,
    };
    let json = serde_json::to_string(&d).map_err(internal)?;
    let root_key = format!("{DISMISSED_PREFIX}{id}");
    ctx.change(&crate::docs::DocId::Catalog, &key, |doc| {
        use automerge::transaction::Transactable;
        doc.put(ROOT, root_key.as_str(), json.as_str())?;
        Ok(())
    })?;
    alert.dismissed = true;
    Ok(alert)
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
