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

use super::{catalog, fifo, orders, profit, reports, shifts, tickets};
use crate::docs::trust::Signer;
use crate::docs::{DocId, am};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
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
            let keys = am::root_keys_touched(am_doc, change);
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
            if *doc == DocId::Settings {
                let am_doc = ctx
                    .doc(id)?
                    .expect("the settings document was just applied, so it is loaded");
                let keys: Vec<String> = am::root_keys_touched(am_doc, change)
                    .into_iter()
                    .filter(|k| k.starts_with("close:"))
                    .collect();
                let closes = profit::read_closes(am_doc, &keys);
                profit::put_closes(ctx.tx, &closes)?;
            }
            ctx.emit(Event::ShopChanged {
                doc: doc.kind().to_string(),
            })
        }
        DocId::Orders => {
            let am_doc = ctx
                .doc(id)?
                .expect("the orders document was just applied, so it is loaded");
            let keys = am::root_keys_touched(am_doc, change);
            let keys: Vec<String> = keys.into_iter().collect();
            let rows = orders::read_changed(am_doc, &keys);
            orders::put_rows(ctx.tx, &rows)?;
            ctx.emit(Event::ShopChanged {
                doc: "orders".into(),
            });
        }
        DocId::Vault => {}
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

/// A stock movement an entry causes.
struct Move {
    product_id: Uuid,
    variant_id: Option<Uuid>,
    kind: MovementKind,
    qty: i64,
    unit_cost: Option<i64>,
    reason: Option<RemovalReason>,
    note: Option<String>,
    /// Shop-local day it counts on.
    day: String,
    /// For returns and voids: (sale, line).
    sale: Option<(Uuid, u32)>,
}

impl Move {
    fn new(
        product_id: Uuid,
        variant_id: Option<Uuid>,
        kind: MovementKind,
        qty: i64,
        day: &str,
    ) -> Move {
        Move {
            product_id,
            variant_id,
            kind,
            qty,
            unit_cost: None,
            reason: None,
            note: None,
            day: day.to_string(),
            sale: None,
        }
    }
}

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
        EntryBody::Removal { .. }
            | EntryBody::Adjustment { .. }
            | EntryBody::Return { .. }
            | EntryBody::Refund { .. }
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
            ticket_id,
            shift_id,
            ..
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
                ticket_id: *ticket_id,
                shift_id: *shift_id,
            };
            let json = serde_json::to_string(&sale).map_err(internal)?;
            tx.open_table(SALES)?
                .insert(e.id.as_u128(), json.as_str())?;
            tx.open_table(SALES_BY_TIME)?
                .insert((e.time, e.id.as_u128()), ())?;
            reports::sale_projected(tx, &sale)?;
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
                moves.push(Move::new(
                    l.product_id,
                    l.variant_id,
                    MovementKind::Sale,
                    -l.qty,
                    doc_day,
                ));
                fifo::add_sold(tx, doc_day, l.product_id, l.qty, l.total - l.tax)?;
            }
            if let Some(shift) = shift_id {
                shifts::on_sale(tx, *shift, &e.device, payments, *change_due)?;
            }
            if let Some(ticket) = ticket_id {
                events.extend(tickets::on_close(tx, *ticket, e)?);
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
        } => moves.push(Move {
            unit_cost: Some(*unit_cost),
            note: note.clone(),
            ..Move::new(
                *product_id,
                *variant_id,
                MovementKind::StockIn,
                *qty,
                doc_day,
            )
        }),
        EntryBody::Removal {
            product_id,
            variant_id,
            qty,
            reason,
            note,
        } => moves.push(Move {
            reason: Some(*reason),
            note: note.clone(),
            ..Move::new(
                *product_id,
                *variant_id,
                MovementKind::Removal,
                -qty,
                doc_day,
            )
        }),
        EntryBody::Adjustment {
            product_id,
            variant_id,
            delta,
            note,
            ..
        } => moves.push(Move {
            note: note.clone(),
            ..Move::new(
                *product_id,
                *variant_id,
                MovementKind::Adjustment,
                *delta,
                doc_day,
            )
        }),
        EntryBody::Void {
            sale_id,
            sale_day,
            sale_total,
            sale_tax,
            lines,
            cash_back,
            line_net,
            shift_id,
            ..
        } => {
            if let Some(shift) = shift_id {
                shifts::on_cash_back(tx, *shift, &e.device, *cash_back)?;
            }
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
                    reports::void_projected(tx, *sale_id)?;
                    add_day(tx, sale_day, |d| {
                        d.count -= 1;
                        d.total -= sale_total;
                        d.tax -= sale_tax;
                    })?;
                    let nets = void_line_nets(tx, *sale_id, line_net, lines.len())?;
                    for (i, l) in lines.iter().enumerate() {
                        moves.push(Move {
                            sale: Some((*sale_id, i as u32)),
                            ..Move::new(
                                l.product_id,
                                l.variant_id,
                                MovementKind::Void,
                                l.qty,
                                sale_day,
                            )
                        });
                        fifo::add_sold(tx, sale_day, l.product_id, -l.qty, -nets[i])?;
                    }
                }
            }
        }
        EntryBody::Return {
            sale_id,
            lines,
            refund,
            tax,
            refund_method,
            shift_id,
            ..
        } => {
            let per_line: Vec<(usize, i64)> = lines.iter().map(|l| (l.line, l.sold.qty)).collect();
            let json = serde_json::to_string(&per_line).map_err(internal)?;
            tx.open_table(RETURNS)?
                .insert((sale_id.as_u128(), e.id.as_u128()), json.as_str())?;
            reports::return_projected(tx, doc_day, e)?;
            money_back(tx, doc_day, e, *refund, *tax, *refund_method, *shift_id)?;
            for l in lines {
                moves.push(Move {
                    sale: Some((*sale_id, l.line as u32)),
                    ..Move::new(
                        l.sold.product_id,
                        l.sold.variant_id,
                        MovementKind::Return,
                        l.sold.qty,
                        doc_day,
                    )
                });
                fifo::add_sold(
                    tx,
                    doc_day,
                    l.sold.product_id,
                    -l.sold.qty,
                    -(l.sold.total - l.sold.tax),
                )?;
            }
        }
        EntryBody::Refund {
            lines,
            refund,
            tax,
            refund_method,
            reason,
            restock,
            shift_id,
        } => {
            let view = Refund {
                id: e.id,
                time: e.time,
                lines: lines.clone(),
                refund: *refund,
                tax: *tax,
                refund_method: *refund_method,
                reason: reason.clone(),
                restock: *restock,
            };
            let json = serde_json::to_string(&view).map_err(internal)?;
            tx.open_table(REFUNDS)?
                .insert(e.id.as_u128(), json.as_str())?;
            tx.open_table(REFUNDS_BY_TIME)?
                .insert((e.time, e.id.as_u128()), ())?;
            reports::refund_projected(tx, doc_day, e)?;
            money_back(tx, doc_day, e, *refund, *tax, *refund_method, *shift_id)?;
            for l in lines {
                if *restock {
                    moves.push(Move::new(
                        l.product_id,
                        l.variant_id,
                        MovementKind::Return,
                        l.qty,
                        doc_day,
                    ));
                }
                fifo::add_sold(tx, doc_day, l.product_id, -l.qty, -(l.total - l.tax))?;
            }
        }
        EntryBody::Delivery { lines, note, .. } => match orders::project_delivery(tx, e)? {
            orders::DeliveryOutcome::Duplicate => {}
            outcome => {
                if let orders::DeliveryOutcome::Replaces { time, entry } = outcome {
                    events.extend(remove_moves(tx, time, entry)?);
                }
                for l in lines {
                    moves.push(Move {
                        unit_cost: Some(l.unit_cost),
                        note: note.clone(),
                        ..Move::new(
                            l.product_id,
                            l.variant_id,
                            MovementKind::Delivery,
                            l.qty,
                            doc_day,
                        )
                    });
                }
            }
        },
        EntryBody::ShiftOpen { .. } | EntryBody::CashMove { .. } | EntryBody::ShiftClose { .. } => {
            shifts::project(tx, e)?
        }
        EntryBody::TicketPark { .. } | EntryBody::TicketDiscard { .. } => {
            events.extend(tickets::project(tx, e)?)
        }
        // Audit only (domain::audit): no stock, no money.
        EntryBody::Checkpoint { .. } => {}
    }

    let mut stock = tx.open_table(STOCK)?;
    let mut movements = tx.open_table(MOVEMENTS)?;
    let mut by_time = tx.open_table(MOVEMENTS_BY_TIME)?;
    for (line, mv) in moves.into_iter().enumerate() {
        let key = (mv.product_id.as_u128(), vid(mv.variant_id));
        let on_hand = stock.get(key)?.map(|v| v.value()).unwrap_or(0) + mv.qty;
        stock.insert(key, on_hand)?;
        let m = Movement {
            entry_id: e.id,
            product_id: mv.product_id,
            variant_id: mv.variant_id,
            time: e.time,
            kind: mv.kind,
            qty: mv.qty,
            unit_cost: mv.unit_cost,
            reason: mv.reason,
            note: mv.note,
            device: e.device.clone(),
            person: e.person,
            day: mv.day,
            sale_id: mv.sale.map(|s| s.0),
            sale_line: mv.sale.map(|s| s.1),
        };
        reports::add_movement(tx, doc_day, &m, 1)?;
        let json = serde_json::to_string(&m).map_err(internal)?;
        movements.insert(
            (mv.product_id.as_u128(), e.time, e.id.as_u128(), line as u32),
            json.as_str(),
        )?;
        by_time.insert(
            (e.time, e.id.as_u128(), line as u32),
            mv.product_id.as_u128(),
        )?;
        fifo::mark_dirty(
            tx,
            mv.product_id.as_u128(),
            (e.time, e.id.as_u128(), line as u32),
        )?;
        events.push(Event::StockChanged {
            product_id: mv.product_id,
            variant_id: mv.variant_id,
            on_hand,
        });
    }
    Ok(events)
}

/// Money refunded (a return or a refund): off the day's totals, and out of the drawer of the
/// shift it was paid from if it was cash.
fn money_back(
    tx: &WriteTransaction,
    day: &str,
    e: &LedgerEntry,
    refund: i64,
    tax: i64,
    method: PaymentMethod,
    shift: Option<Uuid>,
) -> Result<()> {
    add_day(tx, day, |d| {
        d.total -= refund;
        d.tax -= tax;
        d.refunds += refund;
    })?;
    match shift {
        Some(shift) if method == PaymentMethod::Cash => {
            shifts::on_cash_back(tx, shift, &e.device, refund)
        }
        _ => Ok(()),
    }
}

/// Revenue without tax of each voided line: carried by the void, else read from the sale
/// (voids written before this field existed), else 0.
fn void_line_nets(
    tx: &WriteTransaction,
    sale_id: Uuid,
    carried: &[i64],
    n: usize,
) -> Result<Vec<i64>> {
    if carried.len() == n {
        return Ok(carried.to_vec());
    }
    let sales = tx.open_table(SALES)?;
    let sale: Option<Sale> = sales
        .get(sale_id.as_u128())?
        .map(|v| serde_json::from_str(v.value()).map_err(internal))
        .transpose()?;
    Ok(match sale {
        Some(s) if s.lines.len() == n => s.lines.iter().map(|l| l.total - l.tax).collect(),
        _ => vec![0; n],
    })
}

/// Takes back the movements of an entry that stopped counting (a delivery recorded twice:
/// the other entry counts).
fn remove_moves(tx: &WriteTransaction, time: i64, entry: u128) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut by_time = tx.open_table(MOVEMENTS_BY_TIME)?;
    let rows: Vec<(u32, u128)> = by_time
        .range((time, entry, 0)..=(time, entry, u32::MAX))?
        .map(|r| r.map(|(k, v)| (k.value().2, v.value())))
        .collect::<std::result::Result<_, _>>()?;
    let mut movements = tx.open_table(MOVEMENTS)?;
    let mut stock = tx.open_table(STOCK)?;
    for (line, product) in rows {
        by_time.remove((time, entry, line))?;
        let Some(json) = movements.remove((product, time, entry, line))? else {
            continue;
        };
        let m: Movement = serde_json::from_str(json.value()).map_err(internal)?;
        drop(json);
        let key = (product, vid(m.variant_id));
        let on_hand = stock.get(key)?.map(|v| v.value()).unwrap_or(0) - m.qty;
        stock.insert(key, on_hand)?;
        reports::add_movement(tx, &m.day, &m, -1)?;
        fifo::remove_row(tx, product, (time, entry, line))?;
        fifo::mark_dirty(tx, product, (time, entry, line))?;
        events.push(Event::StockChanged {
            product_id: m.product_id,
            variant_id: m.variant_id,
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
