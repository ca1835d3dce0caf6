//! Reports: day-keyed aggregates kept by the projection, and the reports read from them.
//!
//! ## Writing
//! The projection (`projection::project_entry`) calls one hook per entry kind, in the same
//! write transaction as the change:
//!
//! - [`sale_projected`] — a sale counts on its own shop-local day, unless a void of it is already
//!   known;
//! - [`void_projected`] — the first void of a sale takes the sale out again on the sale's day,
//!   if the sale is here; a void that arrives before its sale does nothing, and the sale is then
//!   not counted when it arrives (see [`sale_projected`]). Either order ends with the sale not
//!   counted, and a second void of the same sale is ignored (the projection keeps one);
//! - [`return_projected`] — a return counts on the day it was recorded, as a refund (a sale both
//!   voided and returned on two tills cut off from each other has both taken off, the same on
//!   every replica; that conflict is for an alert, not for the sums to hide);
//! - [`add_movement`] — every stock movement the projection writes, for the movement trend; a
//!   positive movement with a unit cost is also a lot (for the value of stock at cost).
//!
//! Entries of other kinds feed the same sums through the normalized functions [`add_sale`]
//! (`sign` 1 to count a sale, −1 to take it out), [`add_refund`] (money going back to a customer,
//! with or without a sale) and [`add_movement`] (called for every movement already). Every update adds to sums keyed by day, so
//! replicas holding the same entries hold the same rows whatever order the entries arrived in,
//! and `reindex` rebuilds them (the tables are deleted in `domain::reindex::reindex_in`).
//!
//! ## Reading
//! Reports scan the aggregates of the days asked for, never the sales: a year of days is a few
//! thousand rows. Ordering is total (ties broken by id), so converged replicas give
//! byte-identical answers. Days are shop-local `YYYY-MM-DD`, ranges include both ends and are at
//! most [`MAX_RANGE_DAYS`] long.
//!
//! Definitions (all amounts integer minor units):
//! - `gross`: what customers were charged for goods (tax included, after line discounts, before
//!   cash rounding) by sales not voided;
//! - `refunds`: money refunded by returns (tax included);
//! - `tax`: tax of sales minus tax refunded; `net` = `gross` − `refunds` − `tax`;
//! - `discounts`: line discounts given by those sales;
//! - payments are what each method brought in net of change (cash includes cash rounding), and
//!   what each method paid back.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Days, NaiveDate};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::docs::shop::ShopView;
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::store::tables::*;

/// The longest range of days a report covers (three years).
pub const MAX_RANGE_DAYS: i64 = 1096;
/// The longest window of the top sellers.
pub const MAX_TOP_DAYS: i64 = 366;
/// The most rows of each top-sellers list.
pub const MAX_TOP_LIMIT: usize = 100;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

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

/// The day number of a shop-local `YYYY-MM-DD` (days since 0001-01-01).
pub fn day_number(day: &str) -> Option<i32> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .map(|d| d.num_days_from_ce())
}

fn day_of_number(n: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(n).unwrap_or(NaiveDate::MIN)
}

fn day_string(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The name of an enum value as it is in JSON (`"cash"`, `"stock_in"` …), as keys.
fn json_name(v: &impl Serialize) -> Result<String> {
    match serde_json::to_value(v).map_err(internal)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(internal(format!("{other} is not a name"))),
    }
}

fn from_json_name<T: for<'de> Deserialize<'de>>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

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

fn person_key(p: Option<Uuid>) -> u128 {
    p.map(|p| p.as_u128()).unwrap_or(0)
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

/// The month number of a day: year × 12 + month − 1.
fn month_number(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

fn vid(v: Option<Uuid>) -> u128 {
    v.map(|v| v.as_u128()).unwrap_or(0)
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

// --- ranges ----------------------------------------------------------------------------------

/// Parses a shop-local day `YYYY-MM-DD`; a bad one is an error on `field`.
pub fn parse_day(raw: &str, field: &str) -> Result<NaiveDate> {
    let s = raw.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| day_string(*d) == s)
        .ok_or_else(|| Error::invalid(field, format!("`{raw}` is not a day (YYYY-MM-DD)")))
}

/// A range of shop-local days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl DayRange {
    /// Parses `from`/`to` (`YYYY-MM-DD`): `from` not after `to`, at most [`MAX_RANGE_DAYS`].
    pub fn parse(from: &str, to: &str) -> Result<DayRange> {
        DayRange::new(parse_day(from, "from")?, parse_day(to, "to")?)
    }

    /// Checks a range: `from` not after `to`, at most [`MAX_RANGE_DAYS`] days.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<DayRange> {
        if from > to {
            return Err(Error::invalid("from", "`from` is after `to`"));
        }
        let r = DayRange { from, to };
        if r.days() > MAX_RANGE_DAYS {
            return Err(Error::invalid(
                "from",
                format!("a report covers at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(r)
    }

    /// The `days` days that end with `to` (1 to `max_days`; a bad count is an error on `days`).
    pub fn last_days(to: NaiveDate, days: i64, max_days: i64) -> Result<DayRange> {
        if !(1..=max_days.min(MAX_RANGE_DAYS)).contains(&days) {
            return Err(Error::invalid(
                "days",
                format!("between 1 and {max_days} days"),
            ));
        }
        let from = to
            .checked_sub_days(Days::new(days as u64 - 1))
            .ok_or_else(|| Error::invalid("to", "too early"))?;
        DayRange::new(from, to)
    }

    /// How many days the range covers.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    fn numbers(&self) -> (i32, i32) {
        (self.from.num_days_from_ce(), self.to.num_days_from_ce())
    }
}

// --- sales per period ------------------------------------------------------------------------

/// How the sales report groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One row per day.
    Day,
    /// One row per ISO week (Monday to Sunday), e.g. `2026-W47`.
    Week,
    /// One row per calendar month, e.g. `2026-11`.
    Month,
}

impl Period {
    /// Parses `day`, `week` or `month`.
    pub fn parse(s: &str) -> Result<Period> {
        match s.trim() {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            other => Err(Error::invalid(
                "group",
                format!("`{other}` is not day, week or month"),
            )),
        }
    }

    fn label(self, d: NaiveDate) -> String {
        match self {
            Period::Day => day_string(d),
            Period::Week => {
                let w = d.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Month => format!("{}-{:02}", d.year(), d.month()),
        }
    }
}

/// Sales sums of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SalesTotals {
    /// Sales not voided.
    pub count: i64,
    /// Charged for goods, tax included, after line discounts (voided sales left out).
    pub gross: i64,
    /// Line discounts given.
    pub discounts: i64,
    /// Refunded by returns, tax included.
    pub refunds: i64,
    /// Returns recorded.
    pub returns: i64,
    /// Tax of sales minus tax refunded.
    pub tax: i64,
    /// `gross − refunds − tax`: revenue without tax, after returns.
    pub net: i64,
    /// Cash rounding (positive: customers paid more than the goods).
    pub rounding: i64,
}

impl SalesTotals {
    fn add(&mut self, v: [i64; 8]) {
        let [
            count,
            gross,
            tax,
            discounts,
            refunds,
            refund_tax,
            returns,
            rounding,
        ] = v;
        self.count += count;
        self.gross += gross;
        self.discounts += discounts;
        self.refunds += refunds;
        self.returns += returns;
        self.tax += tax - refund_tax;
        self.rounding += rounding;
        self.net = self.gross - self.refunds - self.tax;
    }
}

/// One period of the sales report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SalesPeriod {
    /// `2026-11-22`, `2026-W47` or `2026-11`.
    pub period: String,
    /// First day of the period inside the range.
    pub from: String,
    /// Last day of the period inside the range.
    pub to: String,
    /// Sums.
    #[serde(flatten)]
    pub totals: SalesTotals,
}

/// Sales per day, week or month (`GET /api/v1/reports/sales`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SalesReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Grouping.
    pub group: Period,
    /// Every period of the range in order, empty ones included.
    pub periods: Vec<SalesPeriod>,
    /// Sums of the whole range.
    pub totals: SalesTotals,
}

/// Sales per period over `range`.
pub fn sales(tx: &ReadTransaction, range: DayRange, group: Period) -> Result<SalesReport> {
    let (a, b) = range.numbers();
    let mut by_day: HashMap<i32, [i64; 8]> = HashMap::new();
    for row in tx.open_table(REPORT_DAYS)?.range(a..=b)? {
        let (k, v) = row?;
        by_day.insert(k.value(), v.value());
    }
    let mut periods: Vec<SalesPeriod> = Vec::new();
    let mut totals = SalesTotals::default();
    for n in a..=b {
        let d = day_of_number(n);
        let label = group.label(d);
        if periods.last().map(|p| &p.period) != Some(&label) {
            periods.push(SalesPeriod {
                period: label,
                from: day_string(d),
                to: day_string(d),
                totals: SalesTotals::default(),
            });
        }
        let p = periods.last_mut().expect("a period was just pushed");
        p.to = day_string(d);
        if let Some(v) = by_day.get(&n) {
            p.totals.add(*v);
            totals.add(*v);
        }
    }
    Ok(SalesReport {
        from: day_string(range.from),
        to: day_string(range.to),
        group,
        periods,
        totals,
    })
}

// --- top sellers -----------------------------------------------------------------------------

/// A product (or variant) among the top sellers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopSeller {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    pub variant_id: Option<Uuid>,
    /// SKU (the variant's if any), from the catalog.
    pub sku: String,
    /// Name, from the catalog (empty while the product has not arrived).
    pub name: String,
    /// Quantity sold, minus returns.
    pub qty: i64,
    /// Revenue, tax included, minus refunds.
    pub revenue: i64,
}

/// Top sellers of a window (`GET /api/v1/reports/top-sellers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopSellers {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// By quantity (ties: revenue, then product and variant id).
    pub by_qty: Vec<TopSeller>,
    /// By revenue (ties: quantity, then product and variant id).
    pub by_revenue: Vec<TopSeller>,
}

/// The `limit` best sellers over `range`, by quantity and by revenue.
pub fn top_sellers(tx: &ReadTransaction, range: DayRange, limit: usize) -> Result<TopSellers> {
    if range.days() > MAX_TOP_DAYS {
        return Err(Error::invalid(
            "days",
            format!("top sellers cover at most {MAX_TOP_DAYS} days"),
        ));
    }
    if !(1..=MAX_TOP_LIMIT).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("between 1 and {MAX_TOP_LIMIT}"),
        ));
    }
    let mut sums: HashMap<(u128, u128), (i64, i64)> = HashMap::new();
    let mut add = |(p, var): (u128, u128), [qty, revenue, _]: [i64; 3]| {
        let e = sums.entry((p, var)).or_default();
        e.0 += qty;
        e.1 += revenue;
    };
    let days = tx.open_table(REPORT_ITEMS)?;
    let months = tx.open_table(REPORT_ITEMS_MONTHS)?;
    for span in month_spans(range) {
        match span {
            Span::Days(a, b) => {
                for row in days.range((a, 0, 0)..=(b, u128::MAX, u128::MAX))? {
                    let (k, v) = row?;
                    let (_, p, var) = k.value();
                    add((p, var), v.value());
                }
            }
            Span::Month(m) => {
                for row in months.range((m, 0, 0)..=(m, u128::MAX, u128::MAX))? {
                    let (k, v) = row?;
                    let (_, p, var) = k.value();
                    add((p, var), v.value());
                }
            }
        }
    }
    let items: Vec<((u128, u128), (i64, i64))> = sums
        .into_iter()
        .filter(|(_, (q, r))| *q > 0 || *r > 0)
        .collect();
    let mut by_qty = items.clone();
    by_qty.sort_by(|x, y| {
        (y.1.0, y.1.1)
            .cmp(&(x.1.0, x.1.1))
            .then_with(|| x.0.cmp(&y.0))
    });
    by_qty.truncate(limit);
    let mut by_revenue = items;
    by_revenue.sort_by(|x, y| {
        (y.1.1, y.1.0)
            .cmp(&(x.1.1, x.1.0))
            .then_with(|| x.0.cmp(&y.0))
    });
    by_revenue.truncate(limit);
    let products = tx.open_table(PRODUCTS)?;
    let mut names: HashMap<u128, Option<Product>> = HashMap::new();
    let mut view = |((p, v), (qty, revenue)): ((u128, u128), (i64, i64))| -> Result<TopSeller> {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(p) {
            let product = match products.get(p)? {
                Some(json) => serde_json::from_str::<Product>(json.value()).ok(),
                None => None,
            };
            e.insert(product);
        }
        let product = names.get(&p).and_then(Option::as_ref);
        let variant = product.and_then(|pr| pr.variants.iter().find(|x| x.id.as_u128() == v));
        let (sku, name) = match (product, variant) {
            (Some(pr), Some(va)) => (va.sku.clone(), format!("{} {}", pr.name, va.name)),
            (Some(pr), None) => (pr.sku.clone(), pr.name.clone()),
            _ => (String::new(), String::new()),
        };
        Ok(TopSeller {
            product_id: Uuid::from_u128(p),
            variant_id: (v != 0).then(|| Uuid::from_u128(v)),
            sku,
            name,
            qty,
            revenue,
        })
    };
    Ok(TopSellers {
        from: day_string(range.from),
        to: day_string(range.to),
        by_qty: by_qty.into_iter().map(&mut view).collect::<Result<_>>()?,
        by_revenue: by_revenue
            .into_iter()
            .map(&mut view)
            .collect::<Result<_>>()?,
    })
}

/// A piece of a range: some days of a month, or a whole month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    /// Day numbers, both included.
    Days(i32, i32),
    /// A month number (see [`month_number`]).
    Month(i32),
}

/// `range` cut into whole months and the days around them.
fn month_spans(range: DayRange) -> Vec<Span> {
    let mut out = Vec::new();
    let mut d = range.from;
    while d <= range.to {
        let first = d.with_day(1).expect("every month has a first day");
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX);
        let last = next.pred_opt().unwrap_or(next);
        if d == first && last <= range.to {
            out.push(Span::Month(month_number(d)));
        } else {
            let end = last.min(range.to);
            out.push(Span::Days(d.num_days_from_ce(), end.num_days_from_ce()));
        }
        match last.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

// --- staff and tills -------------------------------------------------------------------------

/// Sales of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaffSales {
    /// Person (absent for entries recorded without one).
    pub person_id: Option<Uuid>,
    /// Display name (empty if unknown here).
    pub name: String,
    /// Sales rung up, voids left out.
    pub count: i64,
    /// Their total, tax included.
    pub total: i64,
    /// Refunds this person gave.
    pub refunds: i64,
}

/// Sales of one till.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TillSales {
    /// Device id.
    pub device: String,
    /// Device name (empty if unknown here).
    pub name: String,
    /// Sales, voids left out.
    pub count: i64,
    /// Their total, tax included.
    pub total: i64,
    /// Refunds given on this till.
    pub refunds: i64,
}

/// Sales per person and per till (`GET /api/v1/reports/staff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaffReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Per person, largest total first (ties: person id).
    pub people: Vec<StaffSales>,
    /// Per till, largest total first (ties: device id).
    pub tills: Vec<TillSales>,
}

/// Sales per person and per till over `range`; names from `shop`.
pub fn staff(tx: &ReadTransaction, range: DayRange, shop: &ShopView) -> Result<StaffReport> {
    let (a, b) = range.numbers();
    let mut people: BTreeMap<u128, [i64; 3]> = BTreeMap::new();
    for row in tx
        .open_table(REPORT_STAFF)?
        .range((a, 0)..=(b, u128::MAX))?
    {
        let (k, v) = row?;
        let e = people.entry(k.value().1).or_default();
        for (s, d) in e.iter_mut().zip(v.value()) {
            *s += d;
        }
    }
    let mut tills: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    let t = tx.open_table(REPORT_TILLS)?;
    for row in t.range((a, "")..(b + 1, ""))? {
        let (k, v) = row?;
        let e = tills.entry(k.value().1.to_string()).or_default();
        for (s, d) in e.iter_mut().zip(v.value()) {
            *s += d;
        }
    }
    let mut people: Vec<StaffSales> = people
        .into_iter()
        .map(|(p, [count, total, refunds])| {
            let person_id = (p != 0).then(|| Uuid::from_u128(p));
            StaffSales {
                name: person_id
                    .and_then(|id| shop.person(id))
                    .map(|r| r.person.name.clone())
                    .unwrap_or_default(),
                person_id,
                count,
                total,
                refunds,
            }
        })
        .collect();
    people.sort_by(|x, y| {
        y.total
            .cmp(&x.total)
            .then_with(|| person_key(x.person_id).cmp(&person_key(y.person_id)))
    });
    let mut tills: Vec<TillSales> = tills
        .into_iter()
        .map(|(device, [count, total, refunds])| TillSales {
            name: shop
                .devices
                .iter()
                .find(|d| d.id == device)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            device,
            count,
            total,
            refunds,
        })
        .collect();
    tills.sort_by(|x, y| y.total.cmp(&x.total).then_with(|| x.device.cmp(&y.device)));
    Ok(StaffReport {
        from: day_string(range.from),
        to: day_string(range.to),
        people,
        tills,
    })
}

// --- tax -------------------------------------------------------------------------------------

/// Sums of one tax rate (sales minus returns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxRateTotals {
    /// Rate in basis points (2000 = 20 %).
    pub tax_rate: u32,
    /// Without tax.
    pub net: i64,
    /// Tax.
    pub tax: i64,
    /// With tax.
    pub gross: i64,
}

/// Tax per rate (`GET /api/v1/reports/tax`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Per rate, lowest rate first.
    pub rates: Vec<TaxRateTotals>,
    /// Sums of every rate (`tax_rate` 0).
    pub totals: TaxRateTotals,
}

/// Tax per rate over `range`.
pub fn tax(tx: &ReadTransaction, range: DayRange) -> Result<TaxReport> {
    let (a, b) = range.numbers();
    let mut rates: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    for row in tx.open_table(REPORT_TAX)?.range((a, 0)..=(b, u32::MAX))? {
        let (k, v) = row?;
        let [gross, tax] = v.value();
        let e = rates.entry(k.value().1).or_default();
        e.0 += gross;
        e.1 += tax;
    }
    let rates: Vec<TaxRateTotals> = rates
        .into_iter()
        .filter(|(_, (g, t))| *g != 0 || *t != 0)
        .map(|(tax_rate, (gross, tax))| TaxRateTotals {
            tax_rate,
            net: gross - tax,
            tax,
            gross,
        })
        .collect();
    let mut totals = TaxRateTotals::default();
    for r in &rates {
        totals.net += r.net;
        totals.tax += r.tax;
        totals.gross += r.gross;
    }
    Ok(TaxReport {
        from: day_string(range.from),
        to: day_string(range.to),
        rates,
        totals,
    })
}

// --- payments --------------------------------------------------------------------------------

/// Money of one payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MethodTotals {
    /// Method.
    pub method: PaymentMethod,
    /// Received from sales, net of change (cash includes cash rounding).
    pub received: i64,
    /// Paid back by refunds.
    pub refunded: i64,
    /// `received − refunded`.
    pub net: i64,
}

/// Money per payment method (`GET /api/v1/reports/payments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentsReport {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Cash, card and other always, in that order (then any other method seen).
    pub methods: Vec<MethodTotals>,
    /// Received, refunded and net of every method.
    pub received: i64,
    #[allow(missing_docs)]
    pub refunded: i64,
    #[allow(missing_docs)]
    pub net: i64,
}

/// Money per payment method over `range`.
pub fn payments(tx: &ReadTransaction, range: DayRange) -> Result<PaymentsReport> {
    let (a, b) = range.numbers();
    let mut by: BTreeMap<String, [i64; 2]> = BTreeMap::new();
    for m in [
        PaymentMethod::Cash,
        PaymentMethod::Card,
        PaymentMethod::Other,
    ] {
        by.insert(json_name(&m)?, [0, 0]);
    }
    for row in tx
        .open_table(REPORT_PAYMENTS)?
        .range((a, "")..(b + 1, ""))?
    {
        let (k, v) = row?;
        let e = by.entry(k.value().1.to_string()).or_default();
        let [r, f] = v.value();
        e[0] += r;
        e[1] += f;
    }
    let mut methods: Vec<MethodTotals> = by
        .into_iter()
        .filter_map(|(name, [received, refunded])| {
            Some(MethodTotals {
                method: from_json_name(&name)?,
                received,
                refunded,
                net: received - refunded,
            })
        })
        .collect();
    methods.sort_by_key(|m| m.method);
    Ok(PaymentsReport {
        from: day_string(range.from),
        to: day_string(range.to),
        received: methods.iter().map(|m| m.received).sum(),
        refunded: methods.iter().map(|m| m.refunded).sum(),
        net: methods.iter().map(|m| m.net).sum(),
        methods,
    })
}

// --- inventory value -------------------------------------------------------------------------

/// Stock value of one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryValue {
    /// Category (absent: products without one).
    pub category: Option<String>,
    /// Units on hand.
    pub on_hand: i64,
    /// At cost.
    pub at_cost: i64,
    /// At shelf price.
    pub at_retail: i64,
}

/// What the stock on hand is worth (`GET /api/v1/reports/inventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InventoryValue {
    /// At cost: the FIFO lots still on the shelf ([`super::fifo::value_on_hand`]).
    pub at_cost: i64,
    /// At shelf price (the variant's price if it has its own), tax as the prices have it.
    pub at_retail: i64,
    /// Units on hand (items below zero count as zero).
    pub on_hand: i64,
    /// Products and variants with stock on hand.
    pub items: i64,
    /// Products and variants below zero (sold beyond known stock).
    pub negative: i64,
    /// Per category, largest value at cost first (ties: category name).
    pub categories: Vec<CategoryValue>,
}

/// The fields of a product that value its stock (the rest of the JSON is skipped).
#[derive(Deserialize)]
struct PricedProduct {
    id: Uuid,
    price: i64,
    category: Option<String>,
    variants: Vec<PricedVariant>,
}

#[derive(Deserialize)]
struct PricedVariant {
    id: Uuid,
    price: Option<i64>,
}

/// What the stock on hand is worth, at cost and at shelf price.
pub fn inventory(tx: &ReadTransaction) -> Result<InventoryValue> {
    let stock = tx.open_table(STOCK)?;
    let mut out = InventoryValue {
        at_cost: 0,
        at_retail: 0,
        on_hand: 0,
        items: 0,
        negative: 0,
        categories: Vec::new(),
    };
    let mut categories: BTreeMap<Option<String>, (i64, i64, i64)> = BTreeMap::new();
    for row in tx.open_table(PRODUCTS)?.iter()? {
        let p: PricedProduct = serde_json::from_str(row?.1.value()).map_err(internal)?;
        let items: Vec<(Option<Uuid>, i64)> = if p.variants.is_empty() {
            vec![(None, p.price)]
        } else {
            p.variants
                .iter()
                .map(|v| (Some(v.id), v.price.unwrap_or(p.price)))
                .collect()
        };
        for (variant, price) in items {
            let on_hand = stock
                .get((p.id.as_u128(), vid(variant)))?
                .map(|v| v.value())
                .unwrap_or(0);
            if on_hand < 0 {
                out.negative += 1;
            }
            if on_hand <= 0 {
                continue;
            }
            let at_cost = super::fifo::value_on_hand(tx, p.id, variant)?;
            // Saturating: a million units of a 10^15 price must not wrap around.
            let at_retail = on_hand.saturating_mul(price);
            out.items += 1;
            out.on_hand += on_hand;
            out.at_cost = out.at_cost.saturating_add(at_cost);
            out.at_retail = out.at_retail.saturating_add(at_retail);
            let c = categories.entry(p.category.clone()).or_default();
            c.0 += on_hand;
            c.1 = c.1.saturating_add(at_cost);
            c.2 = c.2.saturating_add(at_retail);
        }
    }
    out.categories = categories
        .into_iter()
        .map(|(category, (on_hand, at_cost, at_retail))| CategoryValue {
            category,
            on_hand,
            at_cost,
            at_retail,
        })
        .collect();
    out.categories.sort_by(|x, y| {
        y.at_cost
            .cmp(&x.at_cost)
            .then_with(|| x.category.cmp(&y.category))
    });
    Ok(out)
}

// --- movement trend --------------------------------------------------------------------------

/// Quantities of one movement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KindQty {
    /// Kind.
    pub kind: MovementKind,
    /// Units in.
    pub qty_in: i64,
    /// Units out.
    pub qty_out: i64,
}

/// Movements of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovementDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Units in, every kind.
    pub qty_in: i64,
    /// Units out, every kind.
    pub qty_out: i64,
    /// Per kind, the kinds of [`MovementTrend::kinds`] in that order.
    pub kinds: Vec<KindQty>,
}

/// Stock movements per day and kind (`GET /api/v1/reports/movements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovementTrend {
    /// First day.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// Kinds that moved in the range, by name.
    pub kinds: Vec<MovementKind>,
    /// Every day of the range in order.
    pub days: Vec<MovementDay>,
}

/// Stock movements per day and kind over `range`.
pub fn movements(tx: &ReadTransaction, range: DayRange) -> Result<MovementTrend> {
    let (a, b) = range.numbers();
    let mut rows: BTreeMap<(i32, String), [i64; 2]> = BTreeMap::new();
    for row in tx.open_table(REPORT_MOVES)?.range((a, "")..(b + 1, ""))? {
        let (k, v) = row?;
        let (d, kind) = k.value();
        rows.insert((d, kind.to_string()), v.value());
    }
    let mut names: Vec<String> = rows.keys().map(|(_, k)| k.clone()).collect();
    names.sort();
    names.dedup();
    let kinds: Vec<(String, MovementKind)> = names
        .into_iter()
        .filter_map(|n| from_json_name(&n).map(|k| (n, k)))
        .collect();
    let days = (a..=b)
        .map(|n| {
            let per: Vec<KindQty> = kinds
                .iter()
                .map(|(name, kind)| {
                    let [qty_in, qty_out] =
                        rows.get(&(n, name.clone())).copied().unwrap_or_default();
                    KindQty {
                        kind: *kind,
                        qty_in,
                        qty_out,
                    }
                })
                .collect();
            MovementDay {
                day: day_string(day_of_number(n)),
                qty_in: per.iter().map(|k| k.qty_in).sum(),
                qty_out: per.iter().map(|k| k.qty_out).sum(),
                kinds: per,
            }
        })
        .collect();
    Ok(MovementTrend {
        from: day_string(range.from),
        to: day_string(range.to),
        kinds: kinds.into_iter().map(|(_, k)| k).collect(),
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            DayRange::parse("2026-01-01", "2026-01-01").unwrap().days(),
            1
        );
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field.unwrap_or_default(),
            e => panic!("{e}"),
        };
        assert_eq!(
            field(DayRange::parse("2026-01-02", "2026-01-01").unwrap_err()),
            "from"
        );
        assert_eq!(
            field(DayRange::parse("2026-13-01", "2026-01-01").unwrap_err()),
            "from"
        );
        assert_eq!(
            field(DayRange::parse("2026-01-01", "soon").unwrap_err()),
            "to"
        );
        // Three years fit (2028 is a leap year); a day more does not.
        assert_eq!(
            DayRange::parse("2026-01-01", "2028-12-31").unwrap().days(),
            1096
        );
        assert_eq!(
            field(DayRange::parse("2025-12-31", "2028-12-31").unwrap_err()),
            "from"
        );
        let r = DayRange::last_days(d("2026-03-01"), 30, MAX_TOP_DAYS).unwrap();
        assert_eq!(r.from, d("2026-01-31"));
        assert_eq!(
            field(DayRange::last_days(d("2026-03-01"), 0, 7).unwrap_err()),
            "days"
        );
        assert_eq!(
            field(DayRange::last_days(d("2026-03-01"), 367, 366).unwrap_err()),
            "days"
        );
    }

    #[test]
    fn whole_months_and_the_days_around_them() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let n = |s: &str| d(s).num_days_from_ce();
        let r = DayRange::new(d("2026-01-20"), d("2026-04-03")).unwrap();
        assert_eq!(
            month_spans(r),
            vec![
                Span::Days(n("2026-01-20"), n("2026-01-31")),
                Span::Month(2026 * 12 + 1),
                Span::Month(2026 * 12 + 2),
                Span::Days(n("2026-04-01"), n("2026-04-03")),
            ]
        );
        let r = DayRange::new(d("2026-02-01"), d("2026-02-28")).unwrap();
        assert_eq!(month_spans(r), vec![Span::Month(2026 * 12 + 1)]);
        let r = DayRange::new(d("2026-02-01"), d("2026-02-27")).unwrap();
        assert_eq!(
            month_spans(r),
            vec![Span::Days(n("2026-02-01"), n("2026-02-27"))]
        );
    }

    #[test]
    fn period_labels() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // 2027-01-01 is a Friday: ISO week 53 of 2026.
        assert_eq!(Period::Week.label(d("2027-01-01")), "2026-W53");
        assert_eq!(Period::Week.label(d("2026-11-22")), "2026-W47");
        assert_eq!(Period::Month.label(d("2026-11-22")), "2026-11");
        assert_eq!(Period::Day.label(d("2026-11-22")), "2026-11-22");
        assert_eq!(
            day_of_number(day_number("2026-11-22").unwrap()),
            d("2026-11-22")
        );
    }

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
