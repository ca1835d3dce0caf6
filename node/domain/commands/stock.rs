//! Stock commands: receiving, removing and counting stock.

use redb::ReadableTable;
use uuid::Uuid;

use super::{
    MAX_QTY, append_entry, check_item, check_money, check_qty, load_product, on_hand, person_key,
    stock_entry,
};
use crate::docs::shop::non_empty;
use crate::domain::access::{self, Access};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

pub(crate) fn movement_of(ctx: &Ctx<'_>, entry: &LedgerEntry) -> Result<Movement> {
    let t = ctx.tx.open_table(MOVEMENTS_BY_TIME)?;
    let pid = t
        .get((entry.time, entry.id.as_u128(), 0))?
        .ok_or_else(|| Error::Internal("the movement was not projected".into()))?
        .value();
    let m = ctx.tx.open_table(MOVEMENTS)?;
    let v = m
        .get((pid, entry.time, entry.id.as_u128(), 0))?
        .ok_or_else(|| Error::Internal("the movement was not projected".into()))?;
    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))
}

/// Receives stock (anyone logged in; signed by the device).
pub fn stock_in(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    c: StockIn,
    at: Option<i64>,
) -> Result<Movement> {
    let product = load_product(ctx, c.product_id)?;
    if product.archived {
        return Err(Error::invalid("product_id", "this product is archived"));
    }
    check_item(&product, c.variant_id, "variant_id")?;
    let body = EntryBody::StockIn {
        product_id: c.product_id,
        variant_id: c.variant_id,
        qty: check_qty("qty", c.qty)?,
        unit_cost: check_money("unit_cost", c.unit_cost.unwrap_or(product.cost))?,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let key = ctx.device_key().clone();
    let e = match at {
        None => stock_entry(ctx, by, &key, body)?,
        Some(time) => {
            let settings = ctx.shop().settings()?.clone();
            let entry = LedgerEntry {
                id: Uuid::new_v4(),
                time,
                device: ctx.device_id().to_string(),
                person: Some(by.person_id),
                body,
            };
            append_entry(ctx, &key, &settings, &entry)?;
            entry
        }
    };
    movement_of(ctx, &e)
}

/// Removes stock with a reason (manager; signed by their person key).
pub fn stock_remove(ctx: &mut Ctx<'_>, by: &Principal, c: StockRemove) -> Result<Movement> {
    access::require(by, Access::RemoveStock)?;
    let key = person_key(by)?.clone();
    let product = load_product(ctx, c.product_id)?;
    check_item(&product, c.variant_id, "variant_id")?;
    let body = EntryBody::Removal {
        product_id: c.product_id,
        variant_id: c.variant_id,
        qty: check_qty("qty", c.qty)?,
        reason: c.reason,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    movement_of(ctx, &e)
}

/// Records a stock count (manager).
pub fn stock_adjust(ctx: &mut Ctx<'_>, by: &Principal, c: StockAdjust) -> Result<Movement> {
    access::require(by, Access::AdjustStock)?;
    let key = person_key(by)?.clone();
    let product = load_product(ctx, c.product_id)?;
    check_item(&product, c.variant_id, "variant_id")?;
    if !(0..=MAX_QTY).contains(&c.counted) {
        return Err(Error::invalid(
            "counted",
            format!("must be between 0 and {MAX_QTY}"),
        ));
    }
    let delta = c.counted - on_hand(ctx, c.product_id, c.variant_id)?;
    if delta == 0 {
        return Err(Error::Conflict(format!(
            "stock of {} is already {}; nothing to adjust",
            product.sku, c.counted
        )));
    }
    let body = EntryBody::Adjustment {
        product_id: c.product_id,
        variant_id: c.variant_id,
        delta,
        counted: c.counted,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    movement_of(ctx, &e)
}
