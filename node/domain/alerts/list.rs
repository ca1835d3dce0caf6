//! Listing the alerts (derived and raised, dismissals joined) and dismissing one.

use std::collections::BTreeSet;

use automerge::ROOT;
use redb::{ReadableMultimapTable, ReadableTable};

use crate::domain::{access, commands};
use crate::error::{Error, Result};
use crate::model::{Product, Settings};
use crate::replica::Ctx;
use crate::store::tables::*;

use super::{
    Alert, DISMISSED_PREFIX, Dismissal, build_stock_alert, conflict_alert, duplicate_sku_alert,
    internal, no_alert_without_parsing,
};

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
    access::require(by, access::Access::DismissAlert)?;
    let key = commands::person_key(by)?.clone();
    let Some(mut alert) = current.iter().find(|a| a.id == id).cloned() else {
        return Err(Error::NotFound(format!("no alert {id:?}")));
    };
    if ctx.tx.open_table(ALERT_DISMISSALS)?.get(id)?.is_some() {
        return Err(Error::Conflict("this alert is already dismissed".into()));
    }
    let d = Dismissal {
        by: by.person_id,
        time: commands::hlc_now(ctx)?,
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
