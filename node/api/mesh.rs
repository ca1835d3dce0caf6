//! The shop mesh: invites for new devices (peers come with the network layer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::error::Error;
use crate::mesh::{MeshInfo, PeerView};
use crate::model::{InviteCreated, NewInvite};

/// An invite as `POST /api/v1/invites` answers it: the invite and a QR code of it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct InviteWithQr {
    #[serde(flatten)]
    invite: InviteCreated,
    /// The full invite string as a QR code, an SVG image (black on white), for the new device's
    /// camera.
    qr_svg: String,
}

/// The full invite string as an SVG QR code.
fn invite_qr(invite: &str) -> Result<String, Error> {
    let code = qrcode::QrCode::with_error_correction_level(invite, qrcode::EcLevel::M)
        .map_err(|e| Error::Internal(format!("cannot draw the invite as a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// How this node takes part in the mesh: running, mDNS on or off, its own addresses.
#[utoipa::path(
    get,
    path = "/mesh",
    tag = "mesh",
    responses(
        (status = 200, description = "This node in the mesh", body = MeshInfo),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn mesh_info(State(state): State<AppState>, _auth: Auth) -> Json<MeshInfo> {
    Json(state.handle.mesh_info().await)
}

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
    state.handle.add_peer(&auth.principal, &req.addr).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Create an invite for a new device (owners; managers invite tills only). Shows a short code
/// to type on the new device and a full invite string for a QR code; single use, 15 minutes by
/// default. The answer carries the invite as an SVG QR code too (`qr_svg`).
#[utoipa::path(
    post,
    path = "/invites",
    tag = "mesh",
    request_body = NewInvite,
    responses(
        (status = 201, description = "Invite created", body = InviteWithQr),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn create_invite(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<NewInvite>,
) -> Result<(StatusCode, Json<InviteWithQr>), ApiError> {
    let created = state.handle.create_invite(&auth.principal, req).await?;
    tracing::info!(device = %created.name, by = %auth.principal.username, "invite created");
    let qr_svg = invite_qr(&created.invite)?;
    Ok((
        StatusCode::CREATED,
        Json(InviteWithQr {
            invite: created,
            qr_svg,
        }),
    ))
}
