//! Projections: derived tables updated in the same write transaction as the change that causes
//! them, and rebuildable from the documents (`reindex`). Every update is commutative and
//! idempotent (sums of movements, a set of entries, the smaller of two void ids), so replicas
//! that hold the same envelopes compute the same numbers whatever the order they arrived in.
//!
//! Entry-level rules live here: a removal, a count adjustment or a return counts only if the
//! change that wrote it was signed by a manager's or owner's person key.

use automerge::{Change, ChangeHash, ScalarValue};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalog;
use super::ledger::{EntryBody, LedgerEntry};
use super::model::*;
use crate::docs::trust::Signer;
use crate::docs::{DocId, am};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::store::tables::*;

/// Totals of one day in the `DAILY` table.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct DayTotals {
    /// Sales not voided.
    pub count: i64,
    /// Revenue after voids and returns.
    pub total: i64,
    /// Tax after voids and returns.
    pub tax: i64,
    /// Refunds.
    pub refunds: i64,
}

/// Updates projections for one applied change.
pub fn project(
    ctx: &mut Ctx<'_>,
    doc: &DocId,
    id: &str,
    change: &Change,
    signer: &Signer,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Result<()> {
    match doc {
        DocId::Ledger { day, .. } => {
            for (key, value) in am::root_puts(change) {
                let (Some(_), ScalarValue::Str(json)) = (key.strip_prefix("entry:"), value) else {
                    continue;
                };
                match serde_json::from_str::<LedgerEntry>(&json) {
                    Ok(entry) => {
                        let events = project_entry(ctx.tx, id, day, &entry, signer)?;
                        super::alerts::entry_projected(ctx, &entry, &events)?;
                        for e in events {
                            ctx.emit(e);
                        }
                    }
                    Err(e) => tracing::warn!(doc = %id, "unreadable ledger entry {key}: {e}"),
                }
            }
        }
        DocId::Catalog => {
            let am_doc = ctx
                .doc(id)?
                .expect("the catalog was just applied, so it is loaded");
            let keys = am::root_keys_changed(am_doc, before, after);
            let mut products = Vec::new();
            for key in keys.iter() {
                if let Some(pid) = key
                    .strip_prefix("product:")
                    .and_then(|s| Uuid::parse_str(s).ok())
                    && let Some(p) = catalog::read_product(am_doc, pid)
                {
                    products.push(p);
                }
            }
            for p in products {
                put_product(ctx.tx, &p)?;
                ctx.emit(Event::ProductChanged { product_id: p.id });
            }
            super::alerts::catalog_changed(ctx, &keys, change)?;
        }
        DocId::Members | DocId::Settings => {
            if *doc == DocId::Members {
                let tx = ctx.tx;
                let members = ctx
                    .doc(id)?
                    .expect("members was just applied, so it is loaded");
                super::alerts::members_changed(tx, members, change, before, after)?;
            }
            ctx.emit(Event::ShopChanged {
                doc: doc.kind().to_string(),
            })
        }
        DocId::Vault | DocId::Orders => {}
    }
    Ok(())
}

/// Writes a product's projection and its SKU index.
pub fn put_product(tx: &WriteTransaction, p: &Product) -> Result<()> {
    let mut products = tx.open_table(PRODUCTS)?;
    let mut skus = tx.open_multimap_table(SKUS)?;
    if let Some(old) = products.get(p.id.as_u128())? {
        let old: Product = serde_json::from_str(old.value()).map_err(internal)?;
        skus.remove(old.sku.as_str(), (old.id.as_u128(), 0))?;
        for v in &old.variants {
            skus.remove(v.sku.as_str(), (old.id.as_u128(), v.id.as_u128()))?;
        }
    }
    skus.insert(p.sku.as_str(), (p.id.as_u128(), 0))?;
    for v in &p.variants {
        skus.insert(v.sku.as_str(), (p.id.as_u128(), v.id.as_u128()))?;
    }
    let json = serde_json::to_string(p).map_err(internal)?;
    products.insert(p.id.as_u128(), json.as_str())?;
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn vid(v: Option<Uuid>) -> u128 {
    v.map(|v| v.as_u128()).unwrap_or(0)
}

/// A stock movement an entry causes: (product, variant, kind, signed qty, lot cost, removal
/// reason, note).
type Move = (
    Uuid,
    Option<Uuid>,
    MovementKind,
    i64,
    Option<i64>,
    Option<RemovalReason>,
    Option<String>,
);

/// Projects one ledger entry; returns the events it causes. Idempotent by entry id.
pub fn project_entry(
    tx: &WriteTransaction,
    doc_id: &str,
    doc_day: &str,
    e: &LedgerEntry,
    signer: &Signer,
) -> Result<Vec<Event>> {
    let mut entries = tx.open_table(ENTRIES)?;
    if entries.get(e.id.as_u128())?.is_some() {
        return Ok(Vec::new());
    }
    let is_manager = signer.person_role() >= Some(Role::Manager);
    let needs_manager = matches!(
        e.body,
        EntryBody::Removal { .. } | EntryBody::Adjustment { .. } | EntryBody::Return { .. }
    );
    if needs_manager && !is_manager {
        tracing::warn!(entry = %e.id, "ignored an entry that needs a manager's signature");
        return Ok(Vec::new());
    }
    entries.insert(e.id.as_u128(), doc_id)?;
    drop(entries);

    let mut events = Vec::new();
    let mut moves: Vec<Move> = Vec::new();
    match &e.body {
        EntryBody::Sale {
            receipt,
            lines,
            total,
            tax,
            discount,
            rounding,
            payments,
            change_due,
            note,
            warnings,
        } => {
            let sale = Sale {
                id: e.id,
                receipt: receipt.clone(),
                time: e.time,
                day: doc_day.to_string(),
                device: e.device.clone(),
                person: e.person,
                lines: lines.clone(),
                total: *total,
                tax: *tax,
                discount: *discount,
                rounding: *rounding,
                payments: payments.clone(),
                change_due: *change_due,
                note: note.clone(),
                voided_by: None,
                returned: vec![0; lines.len()],
                warnings: warnings.clone(),
            };
            let json = serde_json::to_string(&sale).map_err(internal)?;
            tx.open_table(SALES)?
                .insert(e.id.as_u128(), json.as_str())?;
            tx.open_table(SALES_BY_TIME)?
                .insert((e.time, e.id.as_u128()), ())?;
            add_day(tx, doc_day, |d| {
                d.count += 1;
                d.total += total;
                d.tax += tax;
            })?;
            if let Some(n) = receipt
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
            {
                let mut r = tx.open_table(RECEIPTS)?;
                let seen = r.get(e.device.as_str())?.map(|v| v.value()).unwrap_or(0);
                if n > seen {
                    r.insert(e.device.as_str(), n)?;
                }
            }
            for l in lines {
                moves.push((
                    l.product_id,
                    l.variant_id,
                    MovementKind::Sale,
                    -l.qty,
                    None,
                    None,
                    None,
                ));
            }
            events.push(Event::SaleRecorded {
                sale_id: e.id,
                receipt: receipt.clone(),
                total: total + rounding,
            });
        }
        EntryBody::StockIn {
            product_id,
            variant_id,
            qty,
            unit_cost,
            note,
        } => moves.push((
            *product_id,
            *variant_id,
            MovementKind::StockIn,
            *qty,
            Some(*unit_cost),
            None,
            note.clone(),
        )),
        EntryBody::Removal {
            product_id,
            variant_id,
            qty,
            reason,
            note,
        } => moves.push((
            *product_id,
            *variant_id,
            MovementKind::Removal,
            -qty,
            None,
            Some(*reason),
            note.clone(),
        )),
        EntryBody::Adjustment {
            product_id,
            variant_id,
            delta,
            note,
            ..
        } => moves.push((
            *product_id,
            *variant_id,
            MovementKind::Adjustment,
            *delta,
            None,
            None,
            note.clone(),
        )),
        EntryBody::Void {
            sale_id,
            sale_day,
            sale_total,
            sale_tax,
            lines,
            ..
        } => {
            let mut voids = tx.open_table(VOIDS)?;
            let existing = voids.get(sale_id.as_u128())?.map(|v| v.value());
            match existing {
                Some(other) => {
                    // Voided twice (two tills): keep the smaller id; the sale is reversed once.
                    if e.id.as_u128() < other {
                        voids.insert(sale_id.as_u128(), e.id.as_u128())?;
                    }
                }
                None => {
                    voids.insert(sale_id.as_u128(), e.id.as_u128())?;
                    drop(voids);
                    add_day(tx, sale_day, |d| {
                        d.count -= 1;
                        d.total -= sale_total;
                        d.tax -= sale_tax;
                    })?;
                    for l in lines {
                        moves.push((
                            l.product_id,
                            l.variant_id,
                            MovementKind::Void,
                            l.qty,
                            None,
                            None,
                            None,
                        ));
                    }
                }
            }
        }
        EntryBody::Return {
            sale_id,
            lines,
            refund,
            tax,
            ..
        } => {
            let per_line: Vec<(usize, i64)> = lines.iter().map(|l| (l.line, l.sold.qty)).collect();
            let json = serde_json::to_string(&per_line).map_err(internal)?;
            tx.open_table(RETURNS)?
                .insert((sale_id.as_u128(), e.id.as_u128()), json.as_str())?;
            add_day(tx, doc_day, |d| {
                d.total -= refund;
                d.tax -= tax;
                d.refunds += refund;
            })?;
            for l in lines {
                moves.push((
                    l.sold.product_id,
                    l.sold.variant_id,
                    MovementKind::Return,
                    l.sold.qty,
                    None,
                    None,
                    None,
                ));
            }
        }
        // Audit only (domain::audit): no stock, no money.
        EntryBody::Checkpoint { .. } => {}
    }

    let mut stock = tx.open_table(STOCK)?;
    let mut movements = tx.open_table(MOVEMENTS)?;
    let mut by_time = tx.open_table(MOVEMENTS_BY_TIME)?;
    for (line, (product_id, variant_id, kind, qty, unit_cost, reason, note)) in
        moves.into_iter().enumerate()
    {
        let key = (product_id.as_u128(), vid(variant_id));
        let on_hand = stock.get(key)?.map(|v| v.value()).unwrap_or(0) + qty;
        stock.insert(key, on_hand)?;
        let m = Movement {
            entry_id: e.id,
            product_id,
            variant_id,
            time: e.time,
            kind,
            qty,
            unit_cost,
            reason,
            note,
            device: e.device.clone(),
            person: e.person,
        };
        let json = serde_json::to_string(&m).map_err(internal)?;
        movements.insert(
            (product_id.as_u128(), e.time, e.id.as_u128(), line as u32),
            json.as_str(),
        )?;
        by_time.insert((e.time, e.id.as_u128(), line as u32), product_id.as_u128())?;
        events.push(Event::StockChanged {
            product_id,
            variant_id,
            on_hand,
        });
    }
    Ok(events)
}

fn add_day(tx: &WriteTransaction, day: &str, f: impl FnOnce(&mut DayTotals)) -> Result<()> {
    let mut t = tx.open_table(DAILY)?;
    let mut d: DayTotals = match t.get(day)? {
        Some(v) => postcard::from_bytes(v.value()).map_err(internal)?,
        None => DayTotals::default(),
    };
    f(&mut d);
    t.insert(day, postcard::to_allocvec(&d).map_err(internal)?.as_slice())?;
    Ok(())
}
