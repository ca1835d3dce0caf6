//! Stock: levels, movements, receiving, removals and counts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use crate::model::{Movement, StockAdjust, StockIn, StockLevel, StockRemove};

/// Stock on hand of every product and variant.
#[utoipa::path(
    get,
    path = "/stock",
    tag = "stock",
    responses(
        (status = 200, description = "Stock levels", body = [StockLevel]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_stock(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<StockLevel>>, ApiError> {
    Ok(Json(state.handle.stock()?))
}

/// Movements of one product, oldest first.
#[utoipa::path(
    get,
    path = "/stock/{product_id}/movements",
    tag = "stock",
    params(("product_id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "Movements", body = [Movement]),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_movements(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(product_id): ApiPath<Uuid>,
) -> Result<Json<Vec<Movement>>, ApiError> {
    Ok(Json(state.handle.movements(product_id)?))
}

/// Receive stock (staff and up): a FIFO lot at the given unit cost.
#[utoipa::path(
    post,
    path = "/stock/in",
    tag = "stock",
    request_body = StockIn,
    responses(
        (status = 201, description = "Recorded", body = Movement),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn stock_in(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(cmd): ApiJson<StockIn>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    let movement = state.handle.stock_in(&auth.principal, cmd).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}

/// Remove stock with a reason (managers and owners).
#[utoipa::path(
    post,
    path = "/stock/remove",
    tag = "stock",
    request_body = StockRemove,
    responses(
        (status = 201, description = "Recorded", body = Movement),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn stock_remove(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(cmd): ApiJson<StockRemove>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    let movement = state.handle.stock_remove(&auth.principal, cmd).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}

/// Record a stock count (managers and owners): on-hand becomes what was counted.
#[utoipa::path(
    post,
    path = "/stock/adjust",
    tag = "stock",
    request_body = StockAdjust,
    responses(
        (status = 201, description = "Recorded", body = Movement),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn stock_adjust(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(cmd): ApiJson<StockAdjust>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    let movement = state.handle.stock_adjust(&auth.principal, cmd).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}
