//! Sales per day, week or month, and the top sellers.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use redb::ReadTransaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DayRange, MAX_TOP_DAYS, MAX_TOP_LIMIT, day_of_number, day_string, month_number};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::tables::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reports::day_number;

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
}
