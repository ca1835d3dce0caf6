//! Sales of tills revoked while switched off (owners only; see `domain::revoked_sales`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::domain::revoked_sales::{AcceptedRevokedSales, RevokedDeviceSales, SelectRevokedSales};

/// The sales revoked tills made after their revocation, per device with totals, kept for the
/// owners to review (owners only: nothing of it is in the books until an owner accepts it).
#[utoipa::path(
    get,
    path = "/revoked-sales",
    tag = "people",
    responses(
        (status = 200, description = "Per revoked device: its sales and their total", body = [RevokedDeviceSales]),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an owner", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_revoked_sales(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<RevokedDeviceSales>>, ApiError> {
    Ok(Json(state.handle.revoked_sales(&auth.principal)?))
}

/// Accept revoked tills' sales (owners): each is recorded as a sale of the shop, once, with its
/// receipt, time and till, signed by the owner; stock and reports follow.
#[utoipa::path(
    post,
    path = "/revoked-sales/accept",
    tag = "people",
    request_body = SelectRevokedSales,
    responses(
        (status = 200, description = "The sales now recorded", body = AcceptedRevokedSales),
        (status = 400, description = "Nothing named", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an owner", body = ErrorBody),
        (status = 404, description = "No such sale waiting", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn accept_revoked_sales(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(sel): ApiJson<SelectRevokedSales>,
) -> Result<Json<AcceptedRevokedSales>, ApiError> {
    let out = state
        .handle
        .accept_revoked_sales(&auth.principal, sel)
        .await?;
    tracing::info!(accepted = out.accepted.len(), by = %auth.principal.username,
        "accepted sales of a revoked till");
    Ok(Json(out))
}

/// How many sales were dismissed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Dismissed {
    /// Sales dismissed on this node.
    dismissed: u64,
}

/// Dismiss revoked tills' sales on this node (owners): they are forgotten here, unrecorded.
#[utoipa::path(
    post,
    path = "/revoked-sales/dismiss",
    tag = "people",
    request_body = SelectRevokedSales,
    responses(
        (status = 200, description = "How many were dismissed", body = Dismissed),
        (status = 400, description = "Nothing named", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an owner", body = ErrorBody),
        (status = 404, description = "No such sale waiting", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn dismiss_revoked_sales(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(sel): ApiJson<SelectRevokedSales>,
) -> Result<Json<Dismissed>, ApiError> {
    let dismissed = state
        .handle
        .dismiss_revoked_sales(&auth.principal, sel)
        .await?;
    Ok(Json(Dismissed { dismissed }))
}
