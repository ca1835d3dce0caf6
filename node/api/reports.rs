//! Reports (managers and owners): sales per period, top sellers, staff, tax, payment methods,
//! inventory value and the stock movement trend, read from the day-keyed aggregates of
//! [`crate::domain::reports`]. Days are shop-local `YYYY-MM-DD`; a range includes both ends.
//! Bad days, `from` after `to` and ranges longer than three years are `400 invalid` with the
//! field named.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::domain::reports::{
    self, DayRange, InventoryValue, MAX_TOP_DAYS, MovementTrend, PaymentsReport, Period,
    SalesReport, StaffReport, TaxReport, TopSellers,
};
use crate::handle::NodeHandle;

/// Days a range covers when `from` is left out.
const DEFAULT_DAYS: i64 = 30;

/// A range of shop-local days.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// First day `YYYY-MM-DD` (default: 29 days before `to`).
    from: Option<String>,
    /// Last day, included (default: today). At most 1096 days after `from`.
    to: Option<String>,
}

/// `GET /reports/sales`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SalesReportQuery {
    /// First day `YYYY-MM-DD` (default: 29 days before `to`).
    from: Option<String>,
    /// Last day, included (default: today). At most 1096 days after `from`.
    to: Option<String>,
    /// `day` (default), `week` (ISO weeks) or `month`.
    group: Option<String>,
}

/// `GET /reports/top-sellers`: a window of days that ends on `to`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopSellersQuery {
    /// How many days, 1–366 (default 30).
    days: Option<String>,
    /// Last day `YYYY-MM-DD`, included (default: today).
    to: Option<String>,
    /// Rows per list, 1–100 (default 10).
    limit: Option<String>,
}

/// `GET /reports/movements`: a window of days that ends on `to`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MovementsQuery {
    /// How many days, 1–366 (default 7).
    days: Option<String>,
    /// Last day `YYYY-MM-DD`, included (default: today).
    to: Option<String>,
}

fn day_or_today(
    handle: &NodeHandle,
    raw: Option<&str>,
    field: &str,
) -> Result<NaiveDate, ApiError> {
    match raw.filter(|s| !s.trim().is_empty()) {
        Some(s) => Ok(reports::parse_day(s, field)?),
        None => Ok(handle.shop_today()),
    }
}

fn range(handle: &NodeHandle, from: Option<&str>, to: Option<&str>) -> Result<DayRange, ApiError> {
    let to = day_or_today(handle, to, "to")?;
    match from.filter(|s| !s.trim().is_empty()) {
        Some(f) => Ok(DayRange::new(reports::parse_day(f, "from")?, to)?),
        None => Ok(DayRange::last_days(to, DEFAULT_DAYS, DEFAULT_DAYS)?),
    }
}

fn number(raw: Option<&str>, field: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid_field(field, format!("a number from 1 to {max}"))),
    }
}

fn window(
    handle: &NodeHandle,
    days: Option<&str>,
    to: Option<&str>,
    default_days: i64,
) -> Result<DayRange, ApiError> {
    let to = day_or_today(handle, to, "to")?;
    let days = number(days, "days", default_days, MAX_TOP_DAYS)?;
    Ok(DayRange::last_days(to, days, MAX_TOP_DAYS)?)
}

/// Sales per day, ISO week or month: count, gross, discounts, refunds, tax, net (managers and
/// owners). Every period of the range is listed, empty ones included.
#[utoipa::path(
    get,
    path = "/reports/sales",
    tag = "reports",
    params(SalesReportQuery),
    responses(
        (status = 200, description = "Periods in order and the range's totals", body = SalesReport),
        (status = 400, description = "Bad day, `from` after `to`, range too long or bad group", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn sales_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<SalesReportQuery>,
) -> Result<Json<SalesReport>, ApiError> {
    let range = range(&state.handle, q.from.as_deref(), q.to.as_deref())?;
    let group = match q.group.as_deref() {
        Some(g) => Period::parse(g)?,
        None => Period::Day,
    };
    Ok(Json(state.handle.sales_report(
        &auth.principal,
        range,
        group,
    )?))
}

/// Top sellers of the last `days` days by quantity and by revenue, returns taken off (managers
/// and owners).
#[utoipa::path(
    get,
    path = "/reports/top-sellers",
    tag = "reports",
    params(TopSellersQuery),
    responses(
        (status = 200, description = "Both rankings", body = TopSellers),
        (status = 400, description = "Bad day, days or limit", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn top_sellers(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<TopSellersQuery>,
) -> Result<Json<TopSellers>, ApiError> {
    let range = window(
        &state.handle,
        q.days.as_deref(),
        q.to.as_deref(),
        DEFAULT_DAYS,
    )?;
    let limit = number(
        q.limit.as_deref(),
        "limit",
        10,
        reports::MAX_TOP_LIMIT as i64,
    )?;
    Ok(Json(state.handle.top_sellers(
        &auth.principal,
        range,
        limit as usize,
    )?))
}

/// Sales per person and per till (managers and owners).
#[utoipa::path(
    get,
    path = "/reports/staff",
    tag = "reports",
    params(RangeQuery),
    responses(
        (status = 200, description = "Per person and per till", body = StaffReport),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn staff_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<StaffReport>, ApiError> {
    let range = range(&state.handle, q.from.as_deref(), q.to.as_deref())?;
    Ok(Json(state.handle.staff_report(&auth.principal, range)?))
}

/// Net, tax and gross per tax rate, returns taken off (managers and owners).
#[utoipa::path(
    get,
    path = "/reports/tax",
    tag = "reports",
    params(RangeQuery),
    responses(
        (status = 200, description = "Per rate and in total", body = TaxReport),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn tax_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<TaxReport>, ApiError> {
    let range = range(&state.handle, q.from.as_deref(), q.to.as_deref())?;
    Ok(Json(state.handle.tax_report(&auth.principal, range)?))
}

/// Money per payment method: received net of change, refunded, net (managers and owners).
#[utoipa::path(
    get,
    path = "/reports/payments",
    tag = "reports",
    params(RangeQuery),
    responses(
        (status = 200, description = "Cash, card, other", body = PaymentsReport),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn payments_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<PaymentsReport>, ApiError> {
    let range = range(&state.handle, q.from.as_deref(), q.to.as_deref())?;
    Ok(Json(state.handle.payments_report(&auth.principal, range)?))
}

/// What the stock on hand is worth at cost and at shelf price, per category (managers and
/// owners).
#[utoipa::path(
    get,
    path = "/reports/inventory",
    tag = "reports",
    responses(
        (status = 200, description = "Totals and categories", body = InventoryValue),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn inventory_report(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<InventoryValue>, ApiError> {
    Ok(Json(state.handle.inventory_value(&auth.principal)?))
}

/// Stock movements of the last `days` days (default 7): units in and out per day and kind
/// (managers and owners).
#[utoipa::path(
    get,
    path = "/reports/movements",
    tag = "reports",
    params(MovementsQuery),
    responses(
        (status = 200, description = "Every day of the window", body = MovementTrend),
        (status = 400, description = "Bad day or days", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn movement_trend(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<MovementsQuery>,
) -> Result<Json<MovementTrend>, ApiError> {
    let range = window(&state.handle, q.days.as_deref(), q.to.as_deref(), 7)?;
    Ok(Json(state.handle.movement_trend(&auth.principal, range)?))
}
