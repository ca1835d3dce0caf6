//! The shop mesh: invites for new devices (peers come with the network layer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::domain::model::{InviteCreated, NewInvite};
use crate::mesh::PeerView;

/// Adding a peer by address.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPeer {
    /// A multiaddr, e.g. `/ip4/192.168.1.20/tcp/7879/p2p/12D3Koo…`.
    addr: String,
}

/// Peers of the shop mesh: name, role, how each was found, connected, RTT, last contact, how
/// far behind.
#[utoipa::path(
    get,
    path = "/peers",
    tag = "mesh",
    responses(
        (status = 200, description = "Peers", body = [PeerView]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_peers(State(state): State<AppState>, _auth: Auth) -> Json<Vec<PeerView>> {
    Json(state.handle.peers().await)
}

/// Add a peer by address (when multicast is blocked). Managers and owners.
#[utoipa::path(
    post,
    path = "/peers",
    tag = "mesh",
    request_body = AddPeer,
    responses(
        (status = 202, description = "Dialing"),
        (status = 400, description = "Bad address", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "This node does not sync", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn add_peer(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<AddPeer>,
) -> Result<StatusCode, ApiError> {
    crate::domain::commands::require(
        &auth.principal,
        crate::domain::model::Role::Manager,
        "adding a peer",
    )?;
    state.handle.add_peer(&req.addr).await?;
    Ok(StatusCode::ACCEPTED)
}

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
