//! Writing: the facts of sales and refunds, and the hooks the projection calls to add them to
//! the day-keyed sums.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::{day_number, day_of_number, internal, json_name, month_number, person_key, vid};
use crate::error::Result;
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::store::tables::*;

// --- facts -----------------------------------------------------------------------------------

/// One line as the reports count it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFacts {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    pub variant_id: Option<Uuid>,
    /// Quantity.
    pub qty: i64,
    /// Money for the line, tax included, after its discount.
    pub total: i64,
    /// Tax in `total`.
    pub tax: i64,
    /// Tax rate used, basis points.
    pub tax_rate: u32,
    /// Discount given on the line.
    pub discount: i64,
}

impl LineFacts {
    /// The facts of a recorded sale line.
    pub fn of(l: &SaleLine) -> LineFacts {
        LineFacts {
            product_id: l.product_id,
            variant_id: l.variant_id,
            qty: l.qty,
            total: l.total,
            tax: l.tax,
            tax_rate: l.tax_rate,
            discount: l.discount,
        }
    }
}

/// What a sale adds to the reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleFacts {
    /// Who rang it up.
    pub person: Option<Uuid>,
    /// Which till.
    pub device: String,
    /// Lines.
    pub lines: Vec<LineFacts>,
    /// Money received per method, net of change (cash includes cash rounding).
    pub payments: Vec<(PaymentMethod, i64)>,
    /// Cash rounding of the sale.
    pub rounding: i64,
}

impl SaleFacts {
    /// The facts of a recorded sale: change comes off the cash tendered.
    pub fn of_sale(s: &Sale) -> SaleFacts {
        let mut payments: Vec<(PaymentMethod, i64)> = Vec::new();
        for p in &s.payments {
            match payments.iter_mut().find(|(m, _)| *m == p.method) {
                Some((_, a)) => *a += p.amount,
                None => payments.push((p.method, p.amount)),
            }
        }
        if s.change_due != 0 {
            match payments.iter_mut().find(|(m, _)| *m == PaymentMethod::Cash) {
                Some((_, a)) => *a -= s.change_due,
                None => payments.push((PaymentMethod::Cash, -s.change_due)),
            }
        }
        SaleFacts {
            person: s.person,
            device: s.device.clone(),
            lines: s.lines.iter().map(LineFacts::of).collect(),
            payments,
            rounding: s.rounding,
        }
    }
}

/// What a refund takes off the reports: goods back (if any) and money paid back.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundFacts {
    /// Who gave the refund.
    pub person: Option<Uuid>,
    /// Which till.
    pub device: String,
    /// Lines refunded, with the money per line. Empty for a refund of money only: then its tax
    /// counts in the day's tax but under no rate of the tax report.
    pub lines: Vec<LineFacts>,
    /// Money paid back, tax included.
    pub amount: i64,
    /// Tax in `amount`.
    pub tax: i64,
    /// How it was paid back.
    pub method: PaymentMethod,
}

// --- writing ---------------------------------------------------------------------------------

/// Adds `delta` to the sums at `key`; a row whose sums come to zero is deleted.
macro_rules! bump {
    ($tx:expr, $table:expr, $key:expr, $delta:expr) => {{
        let mut t = $tx.open_table($table)?;
        let key = $key;
        let delta = $delta;
        let mut sums = t.get(key.clone())?.map(|v| v.value()).unwrap_or_default();
        for (s, d) in sums.iter_mut().zip(delta.iter()) {
            *s += *d;
        }
        if sums.iter().all(|s| *s == 0) {
            t.remove(key)?;
        } else {
            t.insert(key, sums)?;
        }
    }};
}

fn scaled<const N: usize>(sign: i64, v: [i64; N]) -> [i64; N] {
    v.map(|x| x * sign)
}

/// Counts a sale on `day` (`sign` 1), or takes it out again (`sign` −1).
pub fn add_sale(tx: &WriteTransaction, day: &str, s: &SaleFacts, sign: i64) -> Result<()> {
    let Some(d) = day_number(day) else {
        tracing::warn!(
            day,
            "a sale on an unreadable day is left out of the reports"
        );
        return Ok(());
    };
    let gross: i64 = s.lines.iter().map(|l| l.total).sum();
    let tax: i64 = s.lines.iter().map(|l| l.tax).sum();
    let discount: i64 = s.lines.iter().map(|l| l.discount).sum();
    bump!(
        tx,
        REPORT_DAYS,
        d,
        scaled(sign, [1, gross, tax, discount, 0, 0, 0, s.rounding])
    );
    for l in &s.lines {
        add_item(tx, d, l, sign)?;
        bump!(
            tx,
            REPORT_TAX,
            (d, l.tax_rate),
            scaled(sign, [l.total, l.tax])
        );
    }
    bump!(
        tx,
        REPORT_STAFF,
        (d, person_key(s.person)),
        scaled(sign, [1, gross, 0])
    );
    bump!(
        tx,
        REPORT_TILLS,
        (d, s.device.as_str()),
        scaled(sign, [1, gross, 0])
    );
    for (method, amount) in &s.payments {
        let m = json_name(method)?;
        bump!(
            tx,
            REPORT_PAYMENTS,
            (d, m.as_str()),
            scaled(sign, [*amount, 0])
        );
    }
    Ok(())
}

/// Counts a refund on `day` (`sign` 1), or takes it out again (`sign` −1).
pub fn add_refund(tx: &WriteTransaction, day: &str, r: &RefundFacts, sign: i64) -> Result<()> {
    let Some(d) = day_number(day) else {
        tracing::warn!(
            day,
            "a refund on an unreadable day is left out of the reports"
        );
        return Ok(());
    };
    bump!(
        tx,
        REPORT_DAYS,
        d,
        scaled(sign, [0, 0, 0, 0, r.amount, r.tax, 1, 0])
    );
    for l in &r.lines {
        add_item(tx, d, l, -sign)?;
        bump!(
            tx,
            REPORT_TAX,
            (d, l.tax_rate),
            scaled(-sign, [l.total, l.tax])
        );
    }
    bump!(
        tx,
        REPORT_STAFF,
        (d, person_key(r.person)),
        scaled(sign, [0, 0, r.amount])
    );
    bump!(
        tx,
        REPORT_TILLS,
        (d, r.device.as_str()),
        scaled(sign, [0, 0, r.amount])
    );
    let m = json_name(&r.method)?;
    bump!(
        tx,
        REPORT_PAYMENTS,
        (d, m.as_str()),
        scaled(sign, [0, r.amount])
    );
    Ok(())
}

/// Counts a stock movement on `day` for the movement trend (`sign` 1), or takes it out again
/// (`sign` −1: a delivery recorded twice stops counting).
pub fn add_movement(tx: &WriteTransaction, day: &str, m: &Movement, sign: i64) -> Result<()> {
    let Some(d) = day_number(day) else {
        return Ok(());
    };
    let kind = json_name(&m.kind)?;
    let delta = if m.qty >= 0 { [m.qty, 0] } else { [0, -m.qty] };
    bump!(tx, REPORT_MOVES, (d, kind.as_str()), scaled(sign, delta));
    Ok(())
}

/// Adds a line to its product's sums of the day and of the month.
fn add_item(tx: &WriteTransaction, day: i32, l: &LineFacts, sign: i64) -> Result<()> {
    let delta = scaled(sign, [l.qty, l.total, l.tax]);
    let (p, v) = (l.product_id.as_u128(), vid(l.variant_id));
    bump!(tx, REPORT_ITEMS, (day, p, v), delta);
    bump!(
        tx,
        REPORT_ITEMS_MONTHS,
        (month_number(day_of_number(day)), p, v),
        delta
    );
    Ok(())
}

/// Hook for a sale just projected (its row is in `SALES`): counts it, unless a void of it
/// arrived first.
pub fn sale_projected(tx: &WriteTransaction, sale: &Sale) -> Result<()> {
    if tx.open_table(VOIDS)?.get(sale.id.as_u128())?.is_some() {
        return Ok(());
    }
    add_sale(tx, &sale.day, &SaleFacts::of_sale(sale), 1)
}

/// Hook for the first void of a sale (the projection ignores later ones): takes the sale out
/// on its own day if it is here; if it is not, [`sale_projected`] will not count it.
pub fn void_projected(tx: &WriteTransaction, sale_id: Uuid) -> Result<()> {
    let sale: Option<Sale> = match tx.open_table(SALES)?.get(sale_id.as_u128())? {
        Some(v) => Some(serde_json::from_str(v.value()).map_err(internal)?),
        None => None,
    };
    match sale {
        Some(sale) => add_sale(tx, &sale.day, &SaleFacts::of_sale(&sale), -1),
        None => Ok(()),
    }
}

/// Hook for a return entry recorded on `day`: a refund with its lines.
pub fn return_projected(tx: &WriteTransaction, day: &str, e: &LedgerEntry) -> Result<()> {
    let EntryBody::Return {
        lines,
        refund,
        tax,
        refund_method,
        ..
    } = &e.body
    else {
        return Ok(());
    };
    let facts = RefundFacts {
        person: e.person,
        device: e.device.clone(),
        lines: lines.iter().map(|l| LineFacts::of(&l.sold)).collect(),
        amount: *refund,
        tax: *tax,
        method: *refund_method,
    };
    add_refund(tx, day, &facts, 1)
}

/// Hook for a refund without its sale, recorded on `day`.
pub fn refund_projected(tx: &WriteTransaction, day: &str, e: &LedgerEntry) -> Result<()> {
    let EntryBody::Refund {
        lines,
        refund,
        tax,
        refund_method,
        ..
    } = &e.body
    else {
        return Ok(());
    };
    let facts = RefundFacts {
        person: e.person,
        device: e.device.clone(),
        lines: lines.iter().map(LineFacts::of).collect(),
        amount: *refund,
        tax: *tax,
        method: *refund_method,
    };
    add_refund(tx, day, &facts, 1)
}

/// Deletes the aggregates (before `reindex` rebuilds them).
pub fn delete_tables(tx: &WriteTransaction) -> Result<()> {
    tx.delete_table(REPORT_DAYS)?;
    tx.delete_table(REPORT_ITEMS)?;
    tx.delete_table(REPORT_ITEMS_MONTHS)?;
    tx.delete_table(REPORT_TAX)?;
    tx.delete_table(REPORT_STAFF)?;
    tx.delete_table(REPORT_TILLS)?;
    tx.delete_table(REPORT_PAYMENTS)?;
    tx.delete_table(REPORT_MOVES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_comes_off_cash() {
        let sale = Sale {
            id: Uuid::nil(),
            receipt: "T1-000001".into(),
            time: 0,
            day: "2026-01-01".into(),
            device: "d".into(),
            person: None,
            lines: vec![],
            total: 1250,
            tax: 0,
            discount: 0,
            rounding: 0,
            payments: vec![
                Payment {
                    method: PaymentMethod::Card,
                    amount: 500,
                },
                Payment {
                    method: PaymentMethod::Cash,
                    amount: 1000,
                },
            ],
            change_due: 250,
            note: None,
            voided_by: None,
            returned: vec![],
            warnings: vec![],
            ticket_id: None,
            shift_id: None,
        };
        assert_eq!(
            SaleFacts::of_sale(&sale).payments,
            vec![(PaymentMethod::Card, 500), (PaymentMethod::Cash, 750)]
        );
    }
}
