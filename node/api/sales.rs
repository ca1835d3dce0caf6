//! Sales, voids, returns and the daily report.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Days;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::auth::{Auth, require_manager};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::range::{format_day, parse_day, shop_tz, time_range, today};
use crate::domain::model::{DailySales, NewReturn, NewSale, Sale, SaleReturn, VoidSale};

/// A time range: shop-local days (`YYYY-MM-DD`, `to` included), RFC 3339 times or ms since
/// the epoch. Default: the last 24 hours.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TimeRangeQuery {
    /// Start (included).
    pub(crate) from: Option<String>,
    /// End (a day is included; a time is excluded).
    pub(crate) to: Option<String>,
}

/// Record a sale (staff and up). Answers once the sale is durable. A payment without an amount
/// tenders exactly what is left; cash may exceed what is due (change is given).
#[utoipa::path(
    post,
    path = "/sales",
    tag = "sales",
    request_body = NewSale,
    responses(
        (status = 201, description = "Recorded (see `warnings`, e.g. selling beyond known stock)", body = Sale),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
        (status = 409, description = "Refused (e.g. out of stock with the block policy)", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn record_sale(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(sale): ApiJson<NewSale>,
) -> Result<(StatusCode, Json<Sale>), ApiError> {
    let sale = state.handle.record_sale(&auth.principal, sale).await?;
    Ok((StatusCode::CREATED, Json(sale)))
}

/// Sales in a time range, oldest first.
#[utoipa::path(
    get,
    path = "/sales",
    tag = "sales",
    params(TimeRangeQuery),
    responses(
        (status = 200, description = "Sales", body = [Sale]),
        (status = 400, description = "Bad range", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_sales(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(range): ApiQuery<TimeRangeQuery>,
) -> Result<Json<Vec<Sale>>, ApiError> {
    let (from, to) = time_range(&state.handle, range.from.as_deref(), range.to.as_deref())?;
    Ok(Json(state.handle.sales(from, to)?))
}

/// One sale.
#[utoipa::path(
    get,
    path = "/sales/{id}",
    tag = "sales",
    params(("id" = Uuid, Path, description = "Sale id")),
    responses(
        (status = 200, description = "The sale", body = Sale),
        (status = 404, description = "No such sale", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn get_sale(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Sale>, ApiError> {
    Ok(Json(state.handle.sale(id)?))
}

/// Void a sale (staff: their own within 30 minutes; managers and owners: any). The body is
/// optional.
#[utoipa::path(
    post,
    path = "/sales/{id}/void",
    tag = "sales",
    params(("id" = Uuid, Path, description = "Sale id")),
    request_body(content = Option<VoidSale>, description = "Optional reason"),
    responses(
        (status = 200, description = "The voided sale", body = Sale),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such sale", body = ErrorBody),
        (status = 409, description = "Already voided", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn void_sale(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    body: Option<ApiJson<VoidSale>>,
) -> Result<Json<Sale>, ApiError> {
    let cmd = body.map(|ApiJson(cmd)| cmd).unwrap_or_default();
    Ok(Json(
        state.handle.void_sale(&auth.principal, id, cmd).await?,
    ))
}

/// Return lines of a sale (managers and owners).
#[utoipa::path(
    post,
    path = "/sales/{id}/return",
    tag = "sales",
    params(("id" = Uuid, Path, description = "Sale id")),
    request_body = NewReturn,
    responses(
        (status = 201, description = "Recorded", body = SaleReturn),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such sale", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn return_sale(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(cmd): ApiJson<NewReturn>,
) -> Result<(StatusCode, Json<SaleReturn>), ApiError> {
    let ret = state.handle.return_sale(&auth.principal, id, cmd).await?;
    Ok((StatusCode::CREATED, Json(ret)))
}

/// Days of `GET /reports/daily`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DayRangeQuery {
    /// First shop-local day `YYYY-MM-DD` (default: six days before `to`).
    from: Option<String>,
    /// Last shop-local day, included (default: today).
    to: Option<String>,
}

/// Totals per shop-local day (managers and owners).
#[utoipa::path(
    get,
    path = "/reports/daily",
    tag = "reports",
    params(DayRangeQuery),
    responses(
        (status = 200, description = "One entry per day", body = [DailySales]),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn daily_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(days): ApiQuery<DayRangeQuery>,
) -> Result<Json<Vec<DailySales>>, ApiError> {
    require_manager(&auth.principal)?;
    let to = match days.to.as_deref() {
        Some(s) => parse_day(s, "to")?,
        None => today(shop_tz(&state.handle)?),
    };
    let from = match days.from.as_deref() {
        Some(s) => parse_day(s, "from")?,
        None => to.checked_sub_days(Days::new(6)).unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::invalid_field("from", "`from` is after `to`"));
    }
    Ok(Json(
        state
            .handle
            .daily_sales(&format_day(from), &format_day(to))?,
    ))
}
