//! Sales commands: recording a sale, reading it back, voids, returns and refunds.

use redb::ReadableTable;
use uuid::Uuid;

use super::{
    append_entry, check_item, check_money, check_qty, hlc_now, line_product, load_product,
    next_receipt, on_hand, person_key, stock_entry,
};
use crate::docs::shop::non_empty;
use crate::domain::access::{self, Access};
use crate::domain::money::{self, MAX_AMOUNT};
use crate::domain::{shifts, tickets};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry, QtyLine, ReturnedLine};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// Records a sale (anyone logged in; signed by the device). `at` back-dates it (demo data
/// only: the API never passes it).
pub fn record_sale(ctx: &mut Ctx<'_>, by: &Principal, s: NewSale, at: Option<i64>) -> Result<Sale> {
    let shop = ctx.shop();
    let settings = shop.settings()?.clone();
    let prefix = shop
        .this_device
        .as_ref()
        .map(|d| d.receipt_prefix.clone())
        .ok_or_else(|| Error::NoShop("this device is not a member of the shop".into()))?;
    if s.lines.is_empty() {
        return Err(Error::invalid("lines", "a sale needs at least one line"));
    }
    if let Some(t) = s.ticket_id {
        tickets::require_open(ctx.tx, t, "ticket_id")?;
    }
    if s.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let mut lines = Vec::with_capacity(s.lines.len());
    let mut wanted: Vec<(Uuid, Option<Uuid>, i64, String)> = Vec::new();
    for (i, l) in s.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let product = load_product(ctx, l.product_id).map_err(|e| match e {
            Error::NotFound(m) => Error::invalid(f("product_id"), m),
            e => e,
        })?;
        if product.archived {
            return Err(Error::invalid(
                f("product_id"),
                format!("{} is archived", product.name),
            ));
        }
        check_item(&product, l.variant_id, &f("variant_id"))?;
        let qty = check_qty(&f("qty"), l.qty)?;
        let variant = l
            .variant_id
            .and_then(|v| product.variants.iter().find(|x| x.id == v));
        let unit_price = variant.and_then(|v| v.price).unwrap_or(product.price);
        let discount = l.discount.unwrap_or(0);
        let (total, tax) = money::line_amounts(
            unit_price,
            qty,
            discount,
            product.tax_rate,
            settings.tax_mode,
            settings.rounding,
        )
        .map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid(f("discount"), message),
            e => e,
        })?;
        let (sku, name) = match variant {
            Some(v) => (v.sku.clone(), format!("{} {}", product.name, v.name)),
            None => (product.sku.clone(), product.name.clone()),
        };
        match wanted
            .iter_mut()
            .find(|w| w.0 == l.product_id && w.1 == l.variant_id)
        {
            Some(w) => w.2 += qty,
            None => wanted.push((l.product_id, l.variant_id, qty, name.clone())),
        }
        lines.push(SaleLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty,
            unit_price,
            tax_rate: product.tax_rate,
            discount,
            tax,
            total,
        });
    }
    let mut warnings = Vec::new();
    for (pid, vid, qty, name) in &wanted {
        let have = on_hand(ctx, *pid, *vid)?;
        if have < *qty {
            let msg = format!("{name}: selling {qty} with {have} known in stock");
            if settings.oversell == OversellPolicy::Block {
                return Err(Error::Conflict(format!("not enough stock — {msg}")));
            }
            warnings.push(msg);
        }
    }
    let total: i64 = lines.iter().map(|l| l.total).sum();
    let tax: i64 = lines.iter().map(|l| l.tax).sum();
    let discount: i64 = lines.iter().map(|l| l.discount).sum();
    if total > MAX_AMOUNT {
        return Err(Error::invalid("lines", "sale total too large"));
    }
    let settled = money::settle(total, &s.payments, settings.cash_rounding)?;
    let note = s
        .note
        .as_deref()
        .map(|n| non_empty("note", n, 500))
        .transpose()?;
    let receipt = next_receipt(ctx, &prefix)?;
    let time = match at {
        Some(t) => t,
        None => hlc_now(ctx)?,
    };
    let entry = LedgerEntry {
        id: Uuid::new_v4(),
        time,
        device: ctx.device_id().to_string(),
        person: Some(by.person_id),
        body: EntryBody::Sale {
            receipt,
            lines,
            total,
            tax,
            discount,
            rounding: settled.rounding,
            payments: settled.payments,
            change_due: settled.change_due,
            note,
            warnings,
            ticket_id: s.ticket_id,
            shift_id: shifts::open_shift_id(ctx)?,
            accepted: None,
        },
    };
    let key = ctx.device_key().clone();
    append_entry(ctx, &key, &settings, &entry)?;
    read_sale(ctx.tx, entry.id)
}

/// A sale with its voids and returns joined in.
pub fn read_sale(tx: &impl SalesTables, id: Uuid) -> Result<Sale> {
    tx.sale(id)?
        .ok_or_else(|| Error::NotFound(format!("no sale {id}")))
}

/// Reading sales from a read or a write transaction.
pub trait SalesTables {
    /// The sale, with voids and returns joined in.
    fn sale(&self, id: Uuid) -> Result<Option<Sale>>;
}

macro_rules! impl_sales_tables {
    ($t:ty) => {
        impl SalesTables for $t {
            fn sale(&self, id: Uuid) -> Result<Option<Sale>> {
                let sales = self.open_table(SALES)?;
                let Some(v) = sales.get(id.as_u128())? else {
                    return Ok(None);
                };
                let mut sale: Sale =
                    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))?;
                sale.voided_by = self
                    .open_table(VOIDS)?
                    .get(id.as_u128())?
                    .map(|v| Uuid::from_u128(v.value()));
                for row in self
                    .open_table(RETURNS)?
                    .range((id.as_u128(), 0)..=(id.as_u128(), u128::MAX))?
                {
                    let per_line: Vec<(usize, i64)> = serde_json::from_str(row?.1.value())
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    for (line, qty) in per_line {
                        if let Some(r) = sale.returned.get_mut(line) {
                            *r += qty;
                        }
                    }
                }
                Ok(Some(sale))
            }
        }
    };
}
impl_sales_tables!(redb::WriteTransaction);
impl_sales_tables!(redb::ReadTransaction);

/// Voids a sale: staff their own within 30 minutes, managers any.
pub fn void_sale(ctx: &mut Ctx<'_>, by: &Principal, id: Uuid, v: VoidSale) -> Result<Sale> {
    let sale = read_sale(ctx.tx, id)?;
    if sale.voided_by.is_some() {
        return Err(Error::Conflict(format!(
            "sale {} is already voided",
            sale.receipt
        )));
    }
    if sale.returned.iter().any(|q| *q > 0) {
        return Err(Error::Conflict(format!(
            "sale {} has returns; return the rest instead of voiding",
            sale.receipt
        )));
    }
    let now = hlc_now(ctx)?;
    access::require_void(
        by,
        sale.person,
        sale.device == ctx.device_id(),
        now - sale.time,
    )?;
    // Managers and owners sign with their own key; staff's void is signed by the till.
    let key = if access::voids_any_sale(by) {
        person_key(by)?.clone()
    } else {
        ctx.device_key().clone()
    };
    let body = EntryBody::Void {
        sale_id: id,
        sale_day: sale.day.clone(),
        sale_total: sale.total,
        sale_tax: sale.tax,
        lines: sale
            .lines
            .iter()
            .map(|l| QtyLine {
                product_id: l.product_id,
                variant_id: l.variant_id,
                qty: l.qty,
            })
            .collect(),
        reason: v
            .reason
            .as_deref()
            .map(|r| non_empty("reason", r, 500))
            .transpose()?,
        cash_back: sale
            .payments
            .iter()
            .filter(|p| p.method == PaymentMethod::Cash)
            .map(|p| p.amount)
            .sum::<i64>()
            - sale.change_due,
        line_net: sale.lines.iter().map(|l| l.total - l.tax).collect(),
        shift_id: shifts::open_shift_id(ctx)?,
    };
    stock_entry(ctx, by, &key, body)?;
    read_sale(ctx.tx, id)
}

/// Returns lines of a sale (manager). Money per line is refunded pro rata with cumulative
/// rounding, so returning a line in parts refunds exactly what it cost.
pub fn return_sale(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    id: Uuid,
    r: NewReturn,
) -> Result<SaleReturn> {
    access::require(by, Access::Return)?;
    let key = person_key(by)?.clone();
    let sale = read_sale(ctx.tx, id)?;
    if sale.voided_by.is_some() {
        return Err(Error::Conflict(format!("sale {} was voided", sale.receipt)));
    }
    if r.lines.is_empty() {
        return Err(Error::invalid("lines", "name at least one line to return"));
    }
    let mut returned = sale.returned.clone();
    let mut lines = Vec::new();
    for (i, rl) in r.lines.iter().enumerate() {
        let Some(sold) = sale.lines.get(rl.line) else {
            return Err(Error::invalid(
                format!("lines[{i}].line"),
                "no such line in the sale",
            ));
        };
        let qty = check_qty(&format!("lines[{i}].qty"), rl.qty)?;
        let before = returned[rl.line];
        if before + qty > sold.qty {
            return Err(Error::invalid(
                format!("lines[{i}].qty"),
                format!("only {} left to return on this line", sold.qty - before),
            ));
        }
        returned[rl.line] += qty;
        let share = |amount: i64, n: i64| (amount as i128 * n as i128 / sold.qty as i128) as i64;
        let mut line = sold.clone();
        line.qty = qty;
        line.total = share(sold.total, before + qty) - share(sold.total, before);
        line.tax = share(sold.tax, before + qty) - share(sold.tax, before);
        line.discount = share(sold.discount, before + qty) - share(sold.discount, before);
        lines.push(ReturnedLine {
            line: rl.line,
            sold: line,
        });
    }
    let refund = lines.iter().map(|l| l.sold.total).sum();
    let tax = lines.iter().map(|l| l.sold.tax).sum();
    let refund_method = r.refund_method.unwrap_or(PaymentMethod::Cash);
    let body = EntryBody::Return {
        sale_id: id,
        lines: lines.clone(),
        refund,
        tax,
        refund_method,
        reason: r
            .reason
            .as_deref()
            .map(|x| non_empty("reason", x, 500))
            .transpose()?,
        shift_id: shifts::open_shift_id(ctx)?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    Ok(SaleReturn {
        id: e.id,
        sale_id: id,
        time: e.time,
        lines: lines.into_iter().map(|l| l.sold).collect(),
        refund,
        tax,
        refund_method,
    })
}

/// Refunds goods without the original sale (manager): each line at today's price unless an
/// amount is given, tax worked out like a sale line.
pub fn refund(ctx: &mut Ctx<'_>, by: &Principal, r: NewRefund) -> Result<Refund> {
    access::require(by, Access::Refund)?;
    let key = person_key(by)?.clone();
    let settings = ctx.shop().settings()?.clone();
    if r.lines.is_empty() {
        return Err(Error::invalid("lines", "name at least one item to refund"));
    }
    if r.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let reason = non_empty("reason", &r.reason, 500)?;
    let mut lines = Vec::new();
    for (i, l) in r.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let product = line_product(ctx, i, l.product_id, l.variant_id)?;
        let qty = check_qty(&f("qty"), l.qty)?;
        let variant = l
            .variant_id
            .and_then(|v| product.variants.iter().find(|x| x.id == v));
        let unit_price = variant.and_then(|v| v.price).unwrap_or(product.price);
        let (mut total, mut tax) = money::line_amounts(
            unit_price,
            qty,
            0,
            product.tax_rate,
            settings.tax_mode,
            settings.rounding,
        )?;
        if let Some(amount) = l.amount {
            let amount = check_money(&f("amount"), amount)?;
            // The tax inside a given amount, in proportion to the line's.
            tax = if total == 0 {
                0
            } else {
                (tax as i128 * amount as i128 / total as i128) as i64
            };
            total = amount;
        }
        let (sku, name) = match variant {
            Some(v) => (v.sku.clone(), format!("{} {}", product.name, v.name)),
            None => (product.sku.clone(), product.name.clone()),
        };
        lines.push(SaleLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty,
            unit_price,
            tax_rate: product.tax_rate,
            discount: 0,
            tax,
            total,
        });
    }
    let refund: i64 = lines.iter().map(|l| l.total).sum();
    let tax: i64 = lines.iter().map(|l| l.tax).sum();
    let refund_method = r.refund_method.unwrap_or(PaymentMethod::Cash);
    let restock = r.restock.unwrap_or(true);
    let body = EntryBody::Refund {
        lines: lines.clone(),
        refund,
        tax,
        refund_method,
        reason: Some(reason.clone()),
        restock,
        shift_id: shifts::open_shift_id(ctx)?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    Ok(Refund {
        id: e.id,
        time: e.time,
        lines,
        refund,
        tax,
        refund_method,
        reason: Some(reason),
        restock,
    })
}
