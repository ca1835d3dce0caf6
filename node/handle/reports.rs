//! Reports over the ledger.

use super::*;
use crate::domain::reports;

impl NodeHandle {
    /// Totals per shop-local day, `from_day..=to_day` (`YYYY-MM-DD`).
    pub fn daily_sales(&self, from_day: &str, to_day: &str) -> Result<Vec<DailySales>> {
        queries::daily(&self.read()?, from_day, to_day)
    }

    /// Sales per day, ISO week or month over `range` (count, gross, discounts, refunds, tax,
    /// net; see [`reports`]). Every period of the range is listed, empty ones included.
    pub fn sales_report(
        &self,
        range: reports::DayRange,
        group: reports::Period,
    ) -> Result<reports::SalesReport> {
        reports::sales(&self.read()?, range, group)
    }

    /// The `limit` (1–100) best-selling products and variants over `range` (at most 366 days),
    /// by quantity and by revenue, returns taken off.
    pub fn top_sellers(
        &self,
        range: reports::DayRange,
        limit: usize,
    ) -> Result<reports::TopSellers> {
        reports::top_sellers(&self.read()?, range, limit)
    }

    /// Sales per person and per till over `range`.
    pub fn staff_report(&self, range: reports::DayRange) -> Result<reports::StaffReport> {
        reports::staff(&self.read()?, range, &self.view())
    }

    /// Net, tax and gross per tax rate over `range`, returns taken off.
    pub fn tax_report(&self, range: reports::DayRange) -> Result<reports::TaxReport> {
        reports::tax(&self.read()?, range)
    }

    /// Money received (net of change) and refunded per payment method over `range`.
    pub fn payments_report(&self, range: reports::DayRange) -> Result<reports::PaymentsReport> {
        reports::payments(&self.read()?, range)
    }

    /// What the stock on hand is worth, at cost and at shelf price, per category.
    pub fn inventory_value(&self) -> Result<reports::InventoryValue> {
        reports::inventory(&self.read()?)
    }

    /// Stock movements per day and kind over `range` (units in and out).
    pub fn movement_trend(&self, range: reports::DayRange) -> Result<reports::MovementTrend> {
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
}
