//! The shop mesh: invites for new devices (peers come with the network layer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::domain::model::{InviteCreated, NewInvite};

/// Create an invite for a new device (owners; managers invite tills only). Shows a short code
/// to type on the new device and a full invite string for a QR code; single use, 15 minutes by
/// default.
#[utoipa::path(
    post,
    path = "/invites",
    tag = "mesh",
    request_body = NewInvite,
    responses(
        (status = 201, description = "Invite created", body = InviteCreated),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn create_invite(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<NewInvite>,
) -> Result<(StatusCode, Json<InviteCreated>), ApiError> {
    let created = state.handle.create_invite(&auth.principal, req).await?;
    tracing::info!(device = %created.name, by = %auth.principal.username, "invite created");
    Ok((StatusCode::CREATED, Json(created)))
}
