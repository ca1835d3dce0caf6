//! Profit by day, product and sale from the FIFO projections, closed periods, and low stock
//! counting open purchase orders.
//!
//! Closing a period (owner) writes `close:<through>` into the `settings` document: the figures
//! of every day of the period as they stood, signed by the owner. From then on a closed day
//! always shows those figures; whatever changes later in closed days (an offline till's late
//! sale, a late delivery that re-allocates FIFO cost) is posted as an adjustment on the first
//! open day: live totals of all closed days minus their frozen totals. Every replica has the
//! same closes and the same entries, so it shows the same numbers.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{AutoCommit, ROOT, transaction::Transactable};
use chrono::NaiveDate;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::access::{self, Access};
use super::commands::{hlc_now, person_key, shop_day};
use super::fifo::{CostRow, ProductDay};
use super::orders;
use super::projection::DayTotals;
use crate::docs::{DocId, am};
use crate::error::{Error, Result};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn parse_day(field: &str, d: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, "a day is written YYYY-MM-DD"))
}

fn next_day(d: &str) -> Option<String> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()?
        .succ_opt()
        .map(|d| d.format("%Y-%m-%d").to_string())
}

// --- closed periods ------------------------------------------------------------------------

/// Reads the closes under changed `keys` of the `settings` document (only owners write it).
pub fn read_closes(doc: &AutoCommit, keys: &[String]) -> Vec<PeriodClose> {
    let mut out = Vec::new();
    for key in keys {
        let Some(through) = key.strip_prefix("close:") else {
            continue;
        };
        match am::string(doc, &ROOT, key, None).map(|j| serde_json::from_str::<PeriodClose>(&j)) {
            Some(Ok(c)) if c.through == through => out.push(c),
            _ => tracing::warn!("ignored an unreadable period close {key}"),
        }
    }
    out
}

/// Stores closed periods in `PERIODS`.
pub fn put_closes(tx: &WriteTransaction, closes: &[PeriodClose]) -> Result<()> {
    let mut t = tx.open_table(PERIODS)?;
    for c in closes {
        let json = serde_json::to_string(c).map_err(internal)?;
        t.insert(c.through.as_str(), json.as_str())?;
    }
    Ok(())
}

/// Every `close:` key of the settings document (for `reindex`).
pub fn close_keys(doc: &AutoCommit) -> Vec<String> {
    am::keys(doc, &ROOT, None)
        .into_iter()
        .filter(|k| k.starts_with("close:"))
        .collect()
}

/// Every closed period, oldest first.
pub fn periods(tx: &impl ProfitTables) -> Result<Vec<PeriodClose>> {
    tx.periods()
}

/// Closes the period up to `through` (owner): freezes the figures of its days.
pub fn close_period(ctx: &mut Ctx<'_>, by: &Principal, c: NewPeriodClose) -> Result<PeriodClose> {
    access::require(by, Access::ClosePeriod)?;
    let key = person_key(by)?.clone();
    let through = parse_day("through", &c.through)?;
    let now = hlc_now(ctx)?;
    let settings = ctx.shop().settings()?.clone();
    let today = parse_day("through", &shop_day(&settings, now))?;
    if through >= today {
        return Err(Error::invalid(
            "through",
            "a period can be closed only up to yesterday",
        ));
    }
    let closes = periods(ctx.tx)?;
    let from = match closes.last() {
        Some(last) => {
            if parse_day("through", &last.through)? >= through {
                return Err(Error::Conflict(format!(
                    "the books are already closed through {}",
                    last.through
                )));
            }
            next_day(&last.through).unwrap_or_default()
        }
        None => String::new(),
    };
    let through = c.through.clone();
    let mut days = profit_days(ctx.tx, &from, &through)?;
    for d in &mut days {
        d.closed = true;
    }
    let close = PeriodClose {
        through: through.clone(),
        closed_at: now,
        closed_by: by.person_id,
        days,
    };
    let json = serde_json::to_string(&close).map_err(internal)?;
    ctx.change(&DocId::Settings, &key, |doc| {
        doc.put(ROOT, format!("close:{through}"), json.as_str())?;
        Ok(())
    })?;
    Ok(close)
}

// --- profit --------------------------------------------------------------------------------

fn live_day(tx: &impl ProfitTables, day: &str) -> Result<DayProfit> {
    let totals = tx.day_totals(day)?.unwrap_or_default();
    let costs = tx.day_costs(day)?.unwrap_or_default();
    let revenue = totals.total - totals.tax;
    Ok(DayProfit {
        day: day.to_string(),
        revenue,
        cost: costs.cost,
        profit: revenue - costs.cost,
        shrinkage: costs.shrinkage,
        closed: false,
        adjustment_revenue: 0,
        adjustment_cost: 0,
    })
}

/// Profit per shop-local day for `from..=to` (days with activity, plus the adjustment day).
/// Closed days show their frozen figures; the first open day carries what changed in closed
/// days since.
pub fn profit_days(tx: &impl ProfitTables, from: &str, to: &str) -> Result<Vec<DayProfit>> {
    let closes = tx.periods()?;
    let mut frozen: BTreeMap<String, DayProfit> = BTreeMap::new();
    for c in &closes {
        for d in &c.days {
            frozen.insert(d.day.clone(), d.clone());
        }
    }
    let latest = closes.last().map(|c| c.through.clone());
    let mut days: BTreeSet<String> = tx.active_days(from, to)?;
    days.extend(
        frozen
            .range(from.to_string()..=to.to_string())
            .map(|(d, _)| d.clone()),
    );
    let adjustment_day = latest.as_deref().and_then(next_day);
    if let Some(a) = &adjustment_day
        && a.as_str() >= from
        && a.as_str() <= to
    {
        days.insert(a.clone());
    }
    let mut out = Vec::new();
    for day in days {
        if latest.as_deref().is_some_and(|l| day.as_str() <= l) {
            out.push(frozen.get(&day).cloned().unwrap_or(DayProfit {
                day: day.clone(),
                closed: true,
                ..DayProfit::default()
            }));
            continue;
        }
        let mut d = live_day(tx, &day)?;
        if Some(&day) == adjustment_day.as_ref()
            && let Some(l) = &latest
        {
            let mut live_rev = 0;
            let mut live_cost = 0;
            for past in tx.active_days("", l)? {
                let p = live_day(tx, &past)?;
                live_rev += p.revenue;
                live_cost += p.cost;
            }
            let frozen_rev: i64 = frozen.values().map(|f| f.revenue).sum();
            let frozen_cost: i64 = frozen.values().map(|f| f.cost).sum();
            d.adjustment_revenue = live_rev - frozen_rev;
            d.adjustment_cost = live_cost - frozen_cost;
            d.revenue += d.adjustment_revenue;
            d.cost += d.adjustment_cost;
            d.profit = d.revenue - d.cost;
        }
        out.push(d);
    }
    Ok(out)
}

/// Profit per product over `from..=to` (live FIFO figures), most profitable first.
pub fn profit_by_product(
    tx: &impl ProfitTables,
    from: &str,
    to: &str,
) -> Result<Vec<ProductProfit>> {
    let mut per: BTreeMap<u128, ProductDay> = BTreeMap::new();
    for (p, d) in tx.product_days(from, to)? {
        let e = per.entry(p).or_default();
        e.qty += d.qty;
        e.revenue += d.revenue;
        e.cost += d.cost;
    }
    let mut out = Vec::new();
    for (p, d) in per {
        let id = Uuid::from_u128(p);
        let (sku, name) = tx.product_name(id)?;
        out.push(ProductProfit {
            product_id: id,
            sku,
            name,
            qty: d.qty,
            revenue: d.revenue,
            cost: d.cost,
            profit: d.revenue - d.cost,
        });
    }
    out.sort_by(|a, b| {
        b.profit
            .cmp(&a.profit)
            .then(a.product_id.cmp(&b.product_id))
    });
    Ok(out)
}

/// The profit of one sale: revenue without tax and FIFO cost, after returns (0 if voided).
pub fn sale_profit(tx: &ReadTransaction, sale: &Sale) -> Result<SaleProfit> {
    let costs = tx.open_table(FIFO_COST)?;
    let mut line_costs = Vec::new();
    let mut revenue = 0;
    let mut cost = 0;
    for (i, l) in sale.lines.iter().enumerate() {
        let c = match costs.get((
            l.product_id.as_u128(),
            sale.time,
            sale.id.as_u128(),
            i as u32,
        ))? {
            Some(v) => {
                postcard::from_bytes::<CostRow>(v.value())
                    .map_err(internal)?
                    .cost
            }
            None => 0,
        };
        line_costs.push(c);
        // Returns take back `amount × returned / qty` rounded down, cumulatively (as
        // `return_sale` and FIFO compute them), so what stays is the rest.
        let returned = sale.returned.get(i).copied().unwrap_or(0);
        let back = |a: i64| (a as i128 * returned as i128 / l.qty.max(1) as i128) as i64;
        revenue += (l.total - back(l.total)) - (l.tax - back(l.tax));
        cost += c - back(c);
    }
    let cost = if sale.voided_by.is_some() { 0 } else { cost };
    let revenue = if sale.voided_by.is_some() { 0 } else { revenue };
    Ok(SaleProfit {
        sale_id: sale.id,
        receipt: sale.receipt.clone(),
        revenue,
        cost,
        profit: revenue - cost,
        line_costs,
    })
}

/// Products at or below their reorder level, with what is already on order.
pub fn low_stock(tx: &ReadTransaction, levels: Vec<StockLevel>) -> Result<Vec<LowStock>> {
    let on_order = orders::on_order(tx)?;
    let mut out = Vec::new();
    for l in levels {
        if l.on_hand > l.reorder_level {
            continue;
        }
        let ordered = on_order
            .get(&(l.product_id, l.variant_id))
            .copied()
            .unwrap_or(0);
        out.push(LowStock {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku: l.sku,
            name: l.name,
            on_hand: l.on_hand,
            on_order: ordered,
            reorder_level: l.reorder_level,
            covered: l.on_hand + ordered > l.reorder_level,
        });
    }
    out.sort_by(|a, b| {
        a.covered
            .cmp(&b.covered)
            .then((a.on_hand + a.on_order).cmp(&(b.on_hand + b.on_order)))
            .then(a.sku.cmp(&b.sku))
    });
    Ok(out)
}

/// Reading profit figures from a read or a write transaction.
pub trait ProfitTables: orders::OrdersTables {
    /// Closed periods, oldest first.
    fn periods(&self) -> Result<Vec<PeriodClose>>;
    /// Sales totals of a day.
    fn day_totals(&self, day: &str) -> Result<Option<DayTotals>>;
    /// FIFO cost of a day.
    fn day_costs(&self, day: &str) -> Result<Option<ProductDay>>;
    /// Days in `from..=to` with sales or costs.
    fn active_days(&self, from: &str, to: &str) -> Result<BTreeSet<String>>;
    /// Per product, each day of `from..=to`.
    fn product_days(&self, from: &str, to: &str) -> Result<Vec<(u128, ProductDay)>>;
    /// SKU and name of a product.
    fn product_name(&self, id: Uuid) -> Result<(String, String)> {
        self.item_name(id, None)
    }
}

macro_rules! impl_profit_tables {
    ($t:ty) => {
        impl ProfitTables for $t {
            fn periods(&self) -> Result<Vec<PeriodClose>> {
                let mut out = Vec::new();
                for row in self.open_table(PERIODS)?.iter()? {
                    out.push(serde_json::from_str(row?.1.value()).map_err(internal)?);
                }
                Ok(out)
            }
            fn day_totals(&self, day: &str) -> Result<Option<DayTotals>> {
                self.open_table(DAILY)?
                    .get(day)?
                    .map(|v| postcard::from_bytes(v.value()).map_err(internal))
                    .transpose()
            }
            fn day_costs(&self, day: &str) -> Result<Option<ProductDay>> {
                self.open_table(DAY_COSTS)?
                    .get(day)?
                    .map(|v| postcard::from_bytes(v.value()).map_err(internal))
                    .transpose()
            }
            fn active_days(&self, from: &str, to: &str) -> Result<BTreeSet<String>> {
                let mut out = BTreeSet::new();
                for row in self.open_table(DAILY)?.range(from..=to)? {
                    out.insert(row?.0.value().to_string());
                }
                for row in self.open_table(DAY_COSTS)?.range(from..=to)? {
                    out.insert(row?.0.value().to_string());
                }
                Ok(out)
            }
            fn product_days(&self, from: &str, to: &str) -> Result<Vec<(u128, ProductDay)>> {
                let mut out = Vec::new();
                for row in self
                    .open_table(PRODUCT_DAYS)?
                    .range((from, 0u128)..=(to, u128::MAX))?
                {
                    let (k, v) = row?;
                    out.push((
                        k.value().1,
                        postcard::from_bytes(v.value()).map_err(internal)?,
                    ));
                }
                Ok(out)
            }
        }
    };
}
impl_profit_tables!(WriteTransaction);
impl_profit_tables!(ReadTransaction);
