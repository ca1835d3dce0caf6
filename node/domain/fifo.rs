//! FIFO cost and profit, the same on every replica.
//!
//! Each product's movements, ordered by (time, entry id, line) — the key of the `MOVEMENTS`
//! table — are replayed per variant:
//! - stock-ins and deliveries add a lot (quantity, total cost);
//! - sales, removals and negative counts take the oldest lots first; what they take beyond
//!   the known lots is costed at the last lot's unit cost for now and waits in a backlog, and
//!   the next lot to arrive is allocated to it first (the waiting sale's cost is rewritten);
//! - a return or a void brings goods back at the cost they left with (the sale line's cost,
//!   pro rata with cumulative rounding); a refund without its sale and a positive count bring
//!   them back at the last lot's cost.
//!
//! Lots keep their total cost, and taking part of a lot takes `total × taken / qty` rounded
//! down from what is left, so the cents of a lot add up exactly.
//!
//! Results land in `FIFO_COST` (one row per outgoing or returning movement) and in
//! `PRODUCT_DAYS` (per shop-local day and product) and `DAY_COSTS` (per day).
//! Projections only mark a product dirty from the earliest movement that changed
//! ([`mark_dirty`]); [`flush`] runs before every commit and replays each dirty product from the
//! last checkpoint before that point, so a late offline sale re-allocates the product's cost
//! the same way on every replica, once per batch.

use std::collections::{BTreeMap, VecDeque};

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::*;
use crate::store::tables::*;

/// A movement's place in its product's history: (time, entry id, line).
pub type Key = (i64, u128, u32);

/// Checkpoint the state after every this many movements of a product.
const CHECKPOINT_EVERY: u64 = 64;

/// What a `FIFO_COST` row counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CostClass {
    /// Cost of goods sold (sales; negative for returns and voids).
    Sold,
    /// Stock written off (removals, negative counts; negative for positive counts).
    Shrinkage,
}

/// The FIFO cost of one movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// Cost in minor units: positive when goods leave, negative when they come back.
    pub cost: i64,
    /// What it counts towards.
    pub class: CostClass,
    /// Shop-local day it counts on.
    pub day: String,
}

/// Per shop-local day and product, or per day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDay {
    /// Quantity sold, after voids and returns.
    pub qty: i64,
    /// Revenue without tax, after voids and returns.
    pub revenue: i64,
    /// FIFO cost of goods sold.
    pub cost: i64,
    /// Stock written off at FIFO cost.
    pub shrinkage: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Lot {
    qty: i64,
    cost: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    key: Key,
    class: CostClass,
    day: String,
    /// Units not yet allocated to a lot.
    remaining: i64,
    /// Cost allocated from lots so far.
    allocated: i64,
    /// Provisional unit cost of the remaining units (the last lot's).
    unit: i64,
}

impl Waiting {
    fn row(&self) -> CostRow {
        CostRow {
            cost: self.allocated + self.remaining * self.unit,
            class: self.class,
            day: self.day.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct VariantState {
    lots: VecDeque<Lot>,
    backlog: VecDeque<Waiting>,
    /// Unit cost of the last lot received (`None` before the first).
    last_unit: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProductState {
    variants: BTreeMap<u128, VariantState>,
    /// Quantity returned so far per sale line (key of the sale's movement).
    returned: BTreeMap<Key, i64>,
    /// Movements replayed.
    count: u64,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// `amount × part / whole`, rounded down, without overflow.
fn share(amount: i64, part: i64, whole: i64) -> i64 {
    if whole == 0 {
        return 0;
    }
    (amount as i128 * part as i128 / whole as i128) as i64
}

/// Marks `product` for recomputation from `key` on (kept: the earliest).
pub fn mark_dirty(tx: &WriteTransaction, product: u128, key: Key) -> Result<()> {
    let mut t = tx.open_table(FIFO_DIRTY)?;
    let earlier = t.get(product)?.map(|v| v.value());
    if earlier.is_none_or(|k| key < k) {
        t.insert(product, key)?;
    }
    Ok(())
}

/// Adds sold quantity and revenue to a product's day (and the day's).
pub fn add_sold(
    tx: &WriteTransaction,
    day: &str,
    product: Uuid,
    qty: i64,
    revenue: i64,
) -> Result<()> {
    bump(tx, day, product.as_u128(), |d| {
        d.qty += qty;
        d.revenue += revenue;
    })
}

fn bump(
    tx: &WriteTransaction,
    day: &str,
    product: u128,
    f: impl Fn(&mut ProductDay),
) -> Result<()> {
    let mut t = tx.open_table(PRODUCT_DAYS)?;
    let mut d: ProductDay = match t.get((day, product))? {
        Some(v) => postcard::from_bytes(v.value()).map_err(internal)?,
        None => ProductDay::default(),
    };
    f(&mut d);
    t.insert(
        (day, product),
        postcard::to_allocvec(&d).map_err(internal)?.as_slice(),
    )?;
    let mut t = tx.open_table(DAY_COSTS)?;
    let mut d: ProductDay = match t.get(day)? {
        Some(v) => postcard::from_bytes(v.value()).map_err(internal)?,
        None => ProductDay::default(),
    };
    f(&mut d);
    t.insert(day, postcard::to_allocvec(&d).map_err(internal)?.as_slice())?;
    Ok(())
}

/// Writes (or with `None` removes) a movement's cost row, moving the difference into
/// `PRODUCT_DAYS`.
fn set_row(tx: &WriteTransaction, product: u128, key: Key, row: Option<CostRow>) -> Result<()> {
    let full = (product, key.0, key.1, key.2);
    let old: Option<CostRow> = {
        let t = tx.open_table(FIFO_COST)?;
        t.get(full)?
            .map(|v| postcard::from_bytes(v.value()).map_err(internal))
            .transpose()?
    };
    if old == row {
        return Ok(());
    }
    let apply = |r: &CostRow, sign: i64| {
        bump(tx, &r.day, product, |d| match r.class {
            CostClass::Sold => d.cost += sign * r.cost,
            CostClass::Shrinkage => d.shrinkage += sign * r.cost,
        })
    };
    if let Some(o) = &old {
        apply(o, -1)?;
    }
    let mut t = tx.open_table(FIFO_COST)?;
    match &row {
        Some(r) => {
            apply(r, 1)?;
            t.insert(full, postcard::to_allocvec(r).map_err(internal)?.as_slice())?;
        }
        None => {
            t.remove(full)?;
        }
    }
    Ok(())
}

/// Removes the cost row of a movement that no longer exists (a delivery recorded twice).
pub fn remove_row(tx: &WriteTransaction, product: u128, key: Key) -> Result<()> {
    set_row(tx, product, key, None)
}

/// Recomputes dirty products; returns whether none is left. Runs before each commit (and
/// after `reindex`). With a `budget`, a product whose replay would cover more movements stays
/// dirty for a later, unbudgeted flush (see `replica::FIFO_BUDGET`).
pub fn flush(tx: &WriteTransaction, budget: Option<u64>) -> Result<bool> {
    let dirty: Vec<(u128, Key)> = {
        let t = tx.open_table(FIFO_DIRTY)?;
        let mut v = Vec::new();
        for row in t.iter()? {
            let (k, v2) = row?;
            v.push((k.value(), v2.value()));
        }
        v
    };
    let mut all = true;
    for (product, from) in dirty {
        if let Some(budget) = budget
            && replay_len(tx, product, from, budget)? > budget
        {
            all = false;
            continue;
        }
        recompute(tx, product, from)?;
        tx.open_table(FIFO_DIRTY)?.remove(product)?;
    }
    Ok(all)
}

/// The last checkpoint of `product` before `from`: its key and the state's bytes.
fn checkpoint_before(
    tx: &WriteTransaction,
    product: u128,
    from: Key,
) -> Result<Option<(Key, Vec<u8>)>> {
    let t = tx.open_table(FIFO_STATE)?;
    let last = t
        .range((product, i64::MIN, 0, 0)..(product, from.0, from.1, from.2))?
        .next_back()
        .transpose()?;
    Ok(last.map(|(k, v)| {
        let (_, a, b, c) = k.value();
        ((a, b, c), v.value().to_vec())
    }))
}

/// How many movements a recomputation of `product` from `from` would replay (counting stops
/// past `limit`).
fn replay_len(tx: &WriteTransaction, product: u128, from: Key, limit: u64) -> Result<u64> {
    let start = match checkpoint_before(tx, product, from)? {
        Some(((a, b, c), _)) => std::ops::Bound::Excluded((product, a, b, c)),
        None => std::ops::Bound::Included((product, i64::MIN, 0, 0)),
    };
    let end = std::ops::Bound::Included((product, i64::MAX, u128::MAX, u32::MAX));
    let t = tx.open_table(MOVEMENTS)?;
    let mut n = 0;
    for row in t.range::<(u128, i64, u128, u32)>((start, end))? {
        row?;
        n += 1;
        if n > limit {
            break;
        }
    }
    Ok(n)
}

/// The cost row of a sale line right now: from the backlog while it waits, else stored.
fn sale_line_cost(
    tx: &WriteTransaction,
    state: &ProductState,
    product: u128,
    key: Key,
) -> Result<Option<i64>> {
    for v in state.variants.values() {
        if let Some(w) = v.backlog.iter().find(|w| w.key == key) {
            return Ok(Some(w.row().cost));
        }
    }
    let t = tx.open_table(FIFO_COST)?;
    Ok(match t.get((product, key.0, key.1, key.2))? {
        Some(v) => Some(
            postcard::from_bytes::<CostRow>(v.value())
                .map_err(internal)?
                .cost,
        ),
        None => None,
    })
}

fn recompute(tx: &WriteTransaction, product: u128, from: Key) -> Result<()> {
    let (mut state, after): (ProductState, Option<Key>) =
        match checkpoint_before(tx, product, from)? {
            Some((key, bytes)) => (postcard::from_bytes(&bytes).map_err(internal)?, Some(key)),
            None => (ProductState::default(), None),
        };
    {
        let mut t = tx.open_table(FIFO_STATE)?;
        let stale: Vec<(u128, i64, u128, u32)> = t
            .range((product, from.0, from.1, from.2)..=(product, i64::MAX, u128::MAX, u32::MAX))?
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<std::result::Result<_, _>>()?;
        for k in stale {
            t.remove(k)?;
        }
    }
    // Rows still waiting at the checkpoint go back to what they were then: later lots that
    // were allocated to them are replayed below (or are gone).
    for v in state.variants.values() {
        for w in &v.backlog {
            set_row(tx, product, w.key, Some(w.row()))?;
        }
    }
    let moves: Vec<(Key, Movement)> = {
        let t = tx.open_table(MOVEMENTS)?;
        let start = match after {
            Some(k) => std::ops::Bound::Excluded((product, k.0, k.1, k.2)),
            None => std::ops::Bound::Included((product, i64::MIN, 0, 0)),
        };
        let end = std::ops::Bound::Included((product, i64::MAX, u128::MAX, u32::MAX));
        let mut out = Vec::new();
        for row in t.range::<(u128, i64, u128, u32)>((start, end))? {
            let (k, v) = row?;
            let (_, a, b, c) = k.value();
            out.push((
                (a, b, c),
                serde_json::from_str::<Movement>(v.value()).map_err(internal)?,
            ));
        }
        out
    };
    let sales = tx.open_table(SALES)?;
    for (key, m) in moves {
        let vid = m.variant_id.map(|v| v.as_u128()).unwrap_or(0);
        match m.kind {
            MovementKind::StockIn | MovementKind::Delivery => {
                let unit = m.unit_cost.unwrap_or(0);
                let v = state.variants.entry(vid).or_default();
                v.last_unit = Some(unit);
                inflow(tx, product, v, m.qty, m.qty * unit)?;
            }
            MovementKind::Adjustment if m.qty > 0 => {
                let v = state.variants.entry(vid).or_default();
                let total = m.qty * v.last_unit.unwrap_or(0);
                set_row(
                    tx,
                    product,
                    key,
                    Some(CostRow {
                        cost: -total,
                        class: CostClass::Shrinkage,
                        day: m.day.clone(),
                    }),
                )?;
                inflow(tx, product, v, m.qty, total)?;
            }
            MovementKind::Return | MovementKind::Void => {
                let source = match (m.sale_id, m.sale_line) {
                    (Some(sid), Some(line)) => sales
                        .get(sid.as_u128())?
                        .map(|s| serde_json::from_str::<Sale>(s.value()).map_err(internal))
                        .transpose()?
                        .and_then(|s| {
                            s.lines
                                .get(line as usize)
                                .map(|l| ((s.time, sid.as_u128(), line), l.qty))
                        }),
                    _ => None,
                };
                // Without its sale (a refund, or the sale not here yet): the last lot's cost.
                let fallback = m.qty
                    * state
                        .variants
                        .get(&vid)
                        .and_then(|v| v.last_unit)
                        .unwrap_or(0);
                let sold_at = match source {
                    Some((skey, sold)) => {
                        sale_line_cost(tx, &state, product, skey)?.map(|cost| (skey, sold, cost))
                    }
                    None => None,
                };
                let back = match sold_at {
                    Some((skey, sold, cost)) => {
                        let before = state.returned.get(&skey).copied().unwrap_or(0);
                        state.returned.insert(skey, before + m.qty);
                        share(cost, before + m.qty, sold) - share(cost, before, sold)
                    }
                    None => fallback,
                };
                set_row(
                    tx,
                    product,
                    key,
                    Some(CostRow {
                        cost: -back,
                        class: CostClass::Sold,
                        day: m.day.clone(),
                    }),
                )?;
                let v = state.variants.entry(vid).or_default();
                inflow(tx, product, v, m.qty, back)?;
            }
            MovementKind::Sale | MovementKind::Removal | MovementKind::Adjustment => {
                let class = if m.kind == MovementKind::Sale {
                    CostClass::Sold
                } else {
                    CostClass::Shrinkage
                };
                let v = state.variants.entry(vid).or_default();
                let mut want = -m.qty;
                let mut cost = 0;
                while want > 0 {
                    let Some(lot) = v.lots.front_mut() else { break };
                    let take = want.min(lot.qty);
                    let c = share(lot.cost, take, lot.qty);
                    lot.cost -= c;
                    lot.qty -= take;
                    cost += c;
                    want -= take;
                    if lot.qty == 0 {
                        v.lots.pop_front();
                    }
                }
                let w = Waiting {
                    key,
                    class,
                    day: m.day.clone(),
                    remaining: want,
                    allocated: cost,
                    unit: v.last_unit.unwrap_or(0),
                };
                set_row(tx, product, key, Some(w.row()))?;
                if want > 0 {
                    v.backlog.push_back(w);
                }
            }
        }
        state.count += 1;
        if state.count.is_multiple_of(CHECKPOINT_EVERY) {
            let mut t = tx.open_table(FIFO_STATE)?;
            t.insert(
                (product, key.0, key.1, key.2),
                postcard::to_allocvec(&state).map_err(internal)?.as_slice(),
            )?;
        }
    }
    let mut t = tx.open_table(FIFO_STATE)?;
    t.insert(
        (product, FINAL.0, FINAL.1, FINAL.2),
        postcard::to_allocvec(&state).map_err(internal)?.as_slice(),
    )?;
    Ok(())
}

/// Goods arrive: first to what was sold before they were known, the rest as a lot.
fn inflow(
    tx: &WriteTransaction,
    product: u128,
    v: &mut VariantState,
    qty: i64,
    total: i64,
) -> Result<()> {
    let mut qty = qty;
    let mut total = total;
    while qty > 0 {
        let Some(w) = v.backlog.front_mut() else {
            break;
        };
        let take = qty.min(w.remaining);
        let c = share(total, take, qty);
        w.allocated += c;
        w.remaining -= take;
        total -= c;
        qty -= take;
        set_row(tx, product, w.key, Some(w.row()))?;
        if w.remaining == 0 {
            v.backlog.pop_front();
        }
    }
    if qty > 0 {
        v.lots.push_back(Lot { qty, cost: total });
    }
    Ok(())
}

/// Key of a product's state after its last movement.
const FINAL: (i64, u128, u32) = (i64::MAX, u128::MAX, u32::MAX);

/// Value at FIFO cost of what is on hand of one product or variant: the lots left after the
/// last movement (nothing while sales wait for stock).
pub fn value_on_hand(
    tx: &redb::ReadTransaction,
    product: Uuid,
    variant: Option<Uuid>,
) -> Result<i64> {
    let t = tx.open_table(FIFO_STATE)?;
    let Some(v) = t.get((product.as_u128(), FINAL.0, FINAL.1, FINAL.2))? else {
        return Ok(0);
    };
    let state: ProductState = postcard::from_bytes(v.value()).map_err(internal)?;
    Ok(state
        .variants
        .get(&variant.map(|v| v.as_u128()).unwrap_or(0))
        .map(|v| v.lots.iter().map(|l| l.cost).sum())
        .unwrap_or(0))
}
