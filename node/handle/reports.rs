//! Reports over the ledger (managers and owners: each takes the person who asks), and the
//! reads behind the CSV exports.

use super::*;
use crate::domain::reports;

impl NodeHandle {
    /// Totals per shop-local day (managers and owners), `from_day..=to_day` (`YYYY-MM-DD`).
    pub fn daily_sales(
        &self,
        by: &Principal,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DailySales>> {
        access::require(by, Access::Reports)?;
        queries::daily(&self.read()?, from_day, to_day)
    }

    /// Sales per day, ISO week or month over `range` (managers and owners) (count, gross, discounts, refunds, tax,
    /// net; see [`reports`]). Every period of the range is listed, empty ones included.
    pub fn sales_report(
        &self,
        by: &Principal,
        range: reports::DayRange,
        group: reports::Period,
    ) -> Result<reports::SalesReport> {
        access::require(by, Access::Reports)?;
        reports::sales(&self.read()?, range, group)
    }

    /// The `limit` (1–100) best-selling products and variants over `range` (at most 366 days),
    /// by quantity and by revenue, returns taken off (managers and owners).
    pub fn top_sellers(
        &self,
        by: &Principal,
        range: reports::DayRange,
        limit: usize,
    ) -> Result<reports::TopSellers> {
        access::require(by, Access::Reports)?;
        reports::top_sellers(&self.read()?, range, limit)
    }

    /// Sales per person and per till over `range` (managers and owners).
    pub fn staff_report(
        &self,
        by: &Principal,
        range: reports::DayRange,
    ) -> Result<reports::StaffReport> {
        access::require(by, Access::Reports)?;
        reports::staff(&self.read()?, range, &self.view())
    }

    /// Net, tax and gross per tax rate over `range`, returns taken off (managers and owners).
    pub fn tax_report(
        &self,
        by: &Principal,
        range: reports::DayRange,
    ) -> Result<reports::TaxReport> {
        access::require(by, Access::Reports)?;
        reports::tax(&self.read()?, range)
    }

    /// Money received (net of change) and refunded per payment method over `range`
    /// (managers and owners).
    pub fn payments_report(
        &self,
        by: &Principal,
        range: reports::DayRange,
    ) -> Result<reports::PaymentsReport> {
        access::require(by, Access::Reports)?;
        reports::payments(&self.read()?, range)
    }

    /// What the stock on hand is worth, at cost and at shelf price, per category (managers and
    /// owners).
    pub fn inventory_value(&self, by: &Principal) -> Result<reports::InventoryValue> {
        access::require(by, Access::Reports)?;
        reports::inventory(&self.read()?)
    }

    /// Stock movements per day and kind over `range` (units in and out; managers and owners).
    pub fn movement_trend(
        &self,
        by: &Principal,
        range: reports::DayRange,
    ) -> Result<reports::MovementTrend> {
        access::require(by, Access::Reports)?;
        reports::movements(&self.read()?, range)
    }

    /// Today in the shop's time zone (UTC before the shop has settings).
    pub fn shop_today(&self) -> chrono::NaiveDate {
        let tz = self
            .view()
            .settings
            .as_ref()
            .and_then(|s| s.timezone.parse::<chrono_tz::Tz>().ok())
            .unwrap_or(chrono_tz::UTC);
        chrono::Utc::now().with_timezone(&tz).date_naive()
    }

    /// The reads behind the CSV exports, for `by` (managers and owners): refused here, before
    /// anything is read, unless `by` may export.
    pub fn exports(&self, by: &Principal) -> Result<Exports> {
        access::require(by, Access::Export)?;
        Ok(Exports {
            handle: self.clone(),
            by: by.clone(),
        })
    }
}

/// The reads an export is built from, granted by [`NodeHandle::exports`] to one person. It
/// derefs to the handle for the reads that need no role (products, sales, stock, movements,
/// settings); the ones that do are asked for again as that person.
pub struct Exports {
    handle: NodeHandle,
    by: Principal,
}

impl Exports {
    /// [`NodeHandle::profit_days`] as the person the export is for.
    pub fn profit_days(&self, from_day: &str, to_day: &str) -> Result<Vec<DayProfit>> {
        self.handle.profit_days(&self.by, from_day, to_day)
    }

    /// [`NodeHandle::shifts`] as the person the export is for.
    pub fn shifts(&self, from: i64, to: i64) -> Result<Vec<Shift>> {
        self.handle.shifts(&self.by, from, to)
    }
}

impl std::ops::Deref for Exports {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}
