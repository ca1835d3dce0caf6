//! Alerts: list them, dismiss one (see `domain::alerts`).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use crate::domain::alerts::Alert;

/// Filters of `GET /alerts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    /// Include dismissed alerts (default false).
    include_dismissed: Option<bool>,
}

/// Alerts, newest first: low stock, oversold after a merge, duplicate SKUs, price conflicts,
/// devices joined or revoked, clocks far off, tickets closed twice. The same on every device
/// holding the same changes (clock skew is each device's own observation).
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first", body = [Alert]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let handle = state.handle.clone();
    let include = q.include_dismissed.unwrap_or(false);
    let alerts = tokio::task::spawn_blocking(move || handle.alerts(include))
        .await
        .map_err(|e| ApiError::Node(crate::Error::Internal(e.to_string())))??;
    Ok(Json(alerts))
}

/// Dismiss an alert on every device (managers and owners). The dismissal syncs through the
/// `catalog` document; a stock, SKU or price alert whose condition changes comes back with a
/// new id.
#[utoipa::path(
    post,
    path = "/alerts/{id}/dismiss",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id (URL-encoded)")),
    responses(
        (status = 200, description = "The dismissed alert", body = Alert),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "Already dismissed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn dismiss_alert(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Alert>, ApiError> {
    Ok(Json(
        state.handle.dismiss_alert(&auth.principal, &id).await?,
    ))
}
