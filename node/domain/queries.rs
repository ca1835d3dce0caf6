//! Reads: projections straight from redb read transactions, concurrent with the writer.

use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::commands::SalesTables;
use super::projection::DayTotals;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::tables::*;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Every product.
pub fn products(tx: &ReadTransaction) -> Result<Vec<Product>> {
    let mut out = Vec::new();
    for row in tx.open_table(PRODUCTS)?.iter()? {
        out.push(serde_json::from_str::<Product>(row?.1.value()).map_err(internal)?);
    }
    out.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.sku.cmp(&b.sku))
    });
    Ok(out)
}

/// One product.
pub fn product(tx: &ReadTransaction, id: Uuid) -> Result<Product> {
    let t = tx.open_table(PRODUCTS)?;
    let v = t
        .get(id.as_u128())?
        .ok_or_else(|| Error::NotFound(format!("no product {id}")))?;
    serde_json::from_str(v.value()).map_err(internal)
}

/// Movements of a product (all variants), oldest first.
pub fn movements(tx: &ReadTransaction, product_id: Uuid) -> Result<Vec<Movement>> {
    let p = product_id.as_u128();
    let mut out = Vec::new();
    for row in tx
        .open_table(MOVEMENTS)?
        .range((p, i64::MIN, 0, 0)..=(p, i64::MAX, u128::MAX, u32::MAX))?
    {
        out.push(serde_json::from_str::<Movement>(row?.1.value()).map_err(internal)?);
    }
    Ok(out)
}

/// Movements with `from <= time < to`, oldest first.
pub fn movements_between(tx: &ReadTransaction, from: i64, to: i64) -> Result<Vec<Movement>> {
    let by_time = tx.open_table(MOVEMENTS_BY_TIME)?;
    let moves = tx.open_table(MOVEMENTS)?;
    let mut out = Vec::new();
    for row in by_time.range((from, 0, 0)..(to, 0, 0))? {
        let (k, v) = row?;
        let (time, entry, line) = k.value();
        if let Some(m) = moves.get((v.value(), time, entry, line))? {
            out.push(serde_json::from_str::<Movement>(m.value()).map_err(internal)?);
        }
    }
    Ok(out)
}

/// Stock of every product and variant, with low-stock flags and FIFO value.
pub fn stock(tx: &ReadTransaction, low_stock_default: i64) -> Result<Vec<StockLevel>> {
    let levels = tx.open_table(STOCK)?;
    let mut out = Vec::new();
    for p in products(tx)? {
        let reorder = p.reorder_level.unwrap_or(low_stock_default);
        let level = |variant: Option<&Variant>| -> Result<StockLevel> {
            let vid = variant.map(|v| v.id);
            let on_hand = levels
                .get((p.id.as_u128(), vid.map(|v| v.as_u128()).unwrap_or(0)))?
                .map(|v| v.value())
                .unwrap_or(0);
            Ok(StockLevel {
                product_id: p.id,
                variant_id: vid,
                sku: variant
                    .map(|v| v.sku.clone())
                    .unwrap_or_else(|| p.sku.clone()),
                name: match variant {
                    Some(v) => format!("{} {}", p.name, v.name),
                    None => p.name.clone(),
                },
                on_hand,
                reorder_level: reorder,
                low: on_hand <= reorder,
                value_at_cost: if on_hand > 0 {
                    super::fifo::value_on_hand(tx, p.id, vid)?
                } else {
                    0
                },
            })
        };
        if p.variants.is_empty() {
            out.push(level(None)?);
        } else {
            for v in &p.variants {
                out.push(level(Some(v))?);
            }
        }
    }
    Ok(out)
}

/// Sales with `from <= time < to`, oldest first.
pub fn sales(
    tx: &ReadTransaction,
    from: i64,
    to: i64,
    after: Option<SalesCursor>,
    limit: usize,
) -> Result<(Vec<Sale>, Option<SalesCursor>)> {
    let start = match after {
        Some(c) if c.time >= from => (c.time, c.id.saturating_add(1)),
        _ => (from, 0),
    };
    let mut out = Vec::new();
    let mut last = None;
    if start >= (to, 0) {
        return Ok((out, None));
    }
    for row in tx.open_table(SALES_BY_TIME)?.range(start..(to, 0))? {
        let (time, id) = row?.0.value();
        if out.len() >= limit {
            return Ok((out, last));
        }
        if let Some(s) = tx.sale(Uuid::from_u128(id))? {
            out.push(s);
        }
        last = Some(SalesCursor { time, id });
    }
    Ok((out, None))
}

/// Where a page of [`sales`] stopped: the (time, id) of its last sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesCursor {
    /// Entry time (ms).
    pub time: i64,
    /// Sale id.
    pub id: u128,
}

impl std::fmt::Display for SalesCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:032x}", self.time, self.id)
    }
}

impl std::str::FromStr for SalesCursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<SalesCursor> {
        let bad = || Error::invalid("cursor", "not a cursor from X-Next-Cursor");
        let (time, id) = s.rsplit_once('-').ok_or_else(bad)?;
        if id.len() != 32 {
            return Err(bad());
        }
        Ok(SalesCursor {
            time: time.parse().map_err(|_| bad())?,
            id: u128::from_str_radix(id, 16).map_err(|_| bad())?,
        })
    }
}

/// Daily totals for `from..=to` (days `YYYY-MM-DD`).
pub fn daily(tx: &ReadTransaction, from: &str, to: &str) -> Result<Vec<DailySales>> {
    let mut out = Vec::new();
    for row in tx.open_table(DAILY)?.range(from..=to)? {
        let (k, v) = row?;
        let d: DayTotals = postcard::from_bytes(v.value()).map_err(internal)?;
        out.push(DailySales {
            day: k.value().to_string(),
            count: d.count,
            total: d.total,
            tax: d.tax,
            refunds: d.refunds,
        });
    }
    Ok(out)
}
