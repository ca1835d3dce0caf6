//! Alerts raised while a change is applied: members, catalog and ledger hooks, and their rebuild.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::{AutoCommit, Change, ChangeHash, ROOT};
use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use crate::docs::am;
use crate::domain::commands;
use crate::error::Result;
use crate::model::ledger::LedgerEntry;
use crate::model::{Event, Movement, Product};
use crate::replica::Ctx;
use crate::store::tables::*;

use super::{
    Alert, AlertRefs, CLOCK_SKEW_MS, DISMISSED_PREFIX, Severity, conflict_alert,
    duplicate_sku_alert, internal, kinds, raise, stock_alert,
};

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
                .map(|s| commands::shop_day(s, time))
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
