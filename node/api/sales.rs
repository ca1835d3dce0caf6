//! Sales, voids, returns and the daily report.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Days;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::range::{format_day, parse_day, shop_tz, time_range, today};
use crate::model::{DailySales, NewReturn, NewSale, Sale, SaleReturn, VoidSale};

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

/// `GET /sales`: a time range and a page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SalesQuery {
    /// Start (included).
    pub(crate) from: Option<String>,
    /// End (a day is included; a time is excluded).
    pub(crate) to: Option<String>,
    /// Most sales in the answer (1–10,000; default 10,000). When more match, the answer has an
    /// `X-Next-Cursor` header (and a `Link: <…>; rel="next"`).
    pub(crate) limit: Option<usize>,
    /// The `X-Next-Cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Largest page of `GET /sales`.
const MAX_SALES_PAGE: usize = 10_000;

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

/// Sales in a time range, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/sales",
    tag = "sales",
    params(SalesQuery),
    responses(
        (status = 200, description = "Sales; `X-Next-Cursor` when more match", body = [Sale],
            headers(("X-Next-Cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 400, description = "Bad range, limit or cursor", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_sales(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<SalesQuery>,
) -> Result<(axum::http::HeaderMap, Json<Vec<Sale>>), ApiError> {
    let (from, to) = time_range(&state.handle, q.from.as_deref(), q.to.as_deref())?;
    let limit = q.limit.unwrap_or(MAX_SALES_PAGE);
    if !(1..=MAX_SALES_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "between 1 and 10000"));
    }
    let after = q.cursor.as_deref().map(str::parse).transpose()?;
    let (sales, next) = state.handle.sales_page(from, to, after, limit)?;
    let mut headers = axum::http::HeaderMap::new();
    if let Some(next) = next {
        let cursor = next.to_string();
        let link = format!(
            "</api/v1/sales?from={from}&to={to}&limit={limit}&cursor={cursor}>; rel=\"next\""
        );
        for (name, value) in [("x-next-cursor", cursor), ("link", link)] {
            if let Ok(v) = value.parse() {
                headers.insert(name, v);
            }
        }
    }
    Ok((headers, Json(sales)))
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
    pub(crate) from: Option<String>,
    /// Last shop-local day, included (default: today).
    pub(crate) to: Option<String>,
}

impl DayRangeQuery {
    /// The range as `YYYY-MM-DD` days, `from <= to`.
    pub(crate) fn days(
        &self,
        handle: &crate::handle::NodeHandle,
    ) -> Result<(String, String), ApiError> {
        let to = match self.to.as_deref() {
            Some(s) => parse_day(s, "to")?,
            None => today(shop_tz(handle)?),
        };
        let from = match self.from.as_deref() {
            Some(s) => parse_day(s, "from")?,
            None => to.checked_sub_days(Days::new(6)).unwrap_or(to),
        };
        if from > to {
            return Err(ApiError::invalid_field("from", "`from` is after `to`"));
        }
        Ok((format_day(from), format_day(to)))
    }
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
    let (from, to) = days.days(&state.handle)?;
    Ok(Json(state.handle.daily_sales(
        &auth.principal,
        &from,
        &to,
    )?))
}
