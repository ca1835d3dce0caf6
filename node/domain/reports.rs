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
//!
//! ## Files
//! `writing` holds the facts and the hooks above; one file per report reads the sums: `sales`
//! (per period, top sellers), `staff` (people and tills), `tax`, `payments`, `inventory` (value
//! of stock) and `trend` (movements). This file keeps the day ranges and the day numbers and
//! names they share, and re-exports everything, so each item keeps its `reports::` path.

use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

mod inventory;
mod payments;
mod sales;
mod staff;
mod tax;
mod trend;
mod writing;

// One file per report (and one for the writing); every item keeps its `reports::` path.
pub use inventory::*;
pub use payments::*;
pub use sales::*;
pub use staff::*;
pub use tax::*;
pub use trend::*;
pub use writing::*;

/// The longest range of days a report covers (three years).
pub const MAX_RANGE_DAYS: i64 = 1096;
/// The longest window of the top sellers.
pub const MAX_TOP_DAYS: i64 = 366;
/// The most rows of each top-sellers list.
pub const MAX_TOP_LIMIT: usize = 100;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

// --- day numbers and names the writing and the reports share ---------------------------

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

fn person_key(p: Option<Uuid>) -> u128 {
    p.map(|p| p.as_u128()).unwrap_or(0)
}

/// The month number of a day: year × 12 + month − 1.
fn month_number(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

fn vid(v: Option<Uuid>) -> u128 {
    v.map(|v| v.as_u128()).unwrap_or(0)
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
}
