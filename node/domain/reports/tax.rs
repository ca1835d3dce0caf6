//! Tax per rate.

use std::collections::BTreeMap;

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DayRange, day_string};
use crate::error::Result;
use crate::store::tables::*;

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
