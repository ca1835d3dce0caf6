//! The shop itself: health, status, first-start setup, people, devices and settings.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::guard::{FromThisDevice, setup_allowed};
use crate::error::Error;
use crate::model::{
    Device, NewPerson, NewShop, Person, Settings, SettingsPatch, ShopCreated, Status,
};

/// `GET /health`: the node serves.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the node answers.
    status: String,
    /// Whether the node belongs to a shop yet.
    has_shop: bool,
}

/// `GET /health` (outside `/api/v1`, for load balancers and scripts).
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let status = state.handle.status()?;
    Ok(Json(Health {
        status: "ok".into(),
        has_shop: status.has_shop,
    }))
}

/// Whether the node serves, and whether it has a shop yet. No login needed.
#[utoipa::path(
    get,
    path = "/health",
    tag = "shop",
    operation_id = "health",
    responses((status = 200, description = "The node serves", body = Health))
)]
pub(crate) async fn health_v1(state: State<AppState>) -> Result<Json<Health>, ApiError> {
    health(state).await
}

/// Shop, device and store facts. No login needed (the first-start page reads it).
#[utoipa::path(
    get,
    path = "/status",
    tag = "shop",
    responses((status = 200, description = "Node status", body = Status))
)]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    Ok(Json(state.handle.status()?))
}

/// What the first-start page needs to know before setting up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SetupInfo {
    /// Whether the node still has no shop (setup and join are possible).
    open: bool,
    /// Whether this browser must give the setup token (`X-Setup-Token`): the node has no shop
    /// and the request comes from another device.
    token_required: bool,
}

/// Whether first-start setup is open and whether this client needs the setup token. No login
/// needed.
#[utoipa::path(
    get,
    path = "/setup",
    tag = "shop",
    responses((status = 200, description = "Setup state", body = SetupInfo))
)]
pub(crate) async fn setup_info(
    State(state): State<AppState>,
    from: FromThisDevice,
) -> Json<SetupInfo> {
    let open = state.handle.setup_token().is_some();
    Json(SetupInfo {
        open,
        token_required: open && !from.0,
    })
}

/// Create the shop on a node that has none (the first-start page). No login needed; from
/// another device than the node's own, the setup token the node printed at start is needed in
/// `X-Setup-Token`. Refused with 409 once the node has a shop.
#[utoipa::path(
    post,
    path = "/setup",
    tag = "shop",
    request_body = NewShop,
    params(("X-Setup-Token" = Option<String>, Header, description = "The node's setup token (not needed from the device itself)")),
    responses(
        (status = 201, description = "Shop created; the recovery key is shown only now", body = ShopCreated),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "From another device without the setup token", body = ErrorBody),
        (status = 409, description = "This node already has a shop", body = ErrorBody),
    )
)]
pub(crate) async fn setup(
    State(state): State<AppState>,
    from: FromThisDevice,
    headers: HeaderMap,
    ApiJson(shop): ApiJson<NewShop>,
) -> Result<(StatusCode, Json<ShopCreated>), ApiError> {
    // Answer quickly without hashing the password when there is nothing to do.
    if state.handle.status()?.has_shop {
        return Err(Error::HasShop("this node already belongs to a shop".into()).into());
    }
    setup_allowed(&state, &from, &headers)?;
    let created = state.handle.create_shop(shop).await?;
    tracing::info!(shop_id = %created.shop_id, "shop created from the setup page");
    Ok((StatusCode::CREATED, Json(created)))
}

/// What `POST /api/v1/join` takes.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The full invite string (`tillmesh-invite:…`, from the QR code) or the short code
    /// (`ABCDE-FGHIJ`, looked up by mDNS on the shop's network).
    pub invite: String,
}

/// Join an existing shop with an invite from one of its owners or managers (first start of a
/// new device; from another device than the node's own, with the setup token in
/// `X-Setup-Token`). The node dials the device that made the invite, redeems it, pulls the shop and
/// admits itself; then it syncs and people of the shop can log in here.
#[utoipa::path(
    post,
    path = "/join",
    tag = "shop",
    request_body = JoinRequest,
    params(("X-Setup-Token" = Option<String>, Header, description = "The node's setup token (not needed from the device itself)")),
    responses(
        (status = 200, description = "Joined", body = crate::mesh::Joined),
        (status = 400, description = "Not an invite, or it was refused (unknown, used, expired)", body = ErrorBody),
        (status = 403, description = "From another device without the setup token", body = ErrorBody),
        (status = 409, description = "This node already belongs to a shop", body = ErrorBody),
        (status = 502, description = "The device that made the invite did not answer", body = ErrorBody),
    )
)]
pub(crate) async fn join(
    State(state): State<AppState>,
    from: FromThisDevice,
    headers: HeaderMap,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Json<crate::mesh::Joined>, ApiError> {
    if state.handle.status()?.has_shop {
        return Err(Error::HasShop("this node already belongs to a shop".into()).into());
    }
    setup_allowed(&state, &from, &headers)?;
    let joined = state.handle.join(req.invite.trim()).await?;
    tracing::info!(shop_id = %joined.shop_id, device = %joined.device_name, "joined a shop from the setup page");
    Ok(Json(joined))
}

/// People of the shop (managers and owners).
#[utoipa::path(
    get,
    path = "/people",
    tag = "people",
    responses(
        (status = 200, description = "People", body = [Person]),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_people(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<Person>>, ApiError> {
    Ok(Json(state.handle.people(&auth.principal)?))
}

/// Add a person: owners add anyone, managers add staff. Owners and managers need a password
/// (at least 10 characters), staff a PIN of 4–6 digits.
#[utoipa::path(
    post,
    path = "/people",
    tag = "people",
    request_body = NewPerson,
    responses(
        (status = 201, description = "Added", body = Person),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn add_person(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(person): ApiJson<NewPerson>,
) -> Result<(StatusCode, Json<Person>), ApiError> {
    let person = state.handle.add_person(&auth.principal, person).await?;
    Ok((StatusCode::CREATED, Json(person)))
}

/// Revoke a person or a device by id (owners). Their later changes are refused by every peer.
#[utoipa::path(
    post,
    path = "/members/{id}/revoke",
    tag = "people",
    params(("id" = String, Path, description = "Person id (UUID) or device id (hex)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such member", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn revoke_member(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.handle.revoke_member(&auth.principal, &id).await?;
    tracing::info!(member = %id, by = %auth.principal.username, "member revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Devices of the shop.
#[utoipa::path(
    get,
    path = "/devices",
    tag = "people",
    responses(
        (status = 200, description = "Devices", body = [Device]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(state.handle.devices()?))
}

/// The shop's settings.
#[utoipa::path(
    get,
    path = "/settings",
    tag = "shop",
    responses(
        (status = 200, description = "Settings", body = Settings),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    _auth: Auth,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(state.handle.settings()?))
}

/// Change settings (owners); fields left out stay as they are.
#[utoipa::path(
    patch,
    path = "/settings",
    tag = "shop",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The new settings", body = Settings),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn update_settings(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(
        state.handle.update_settings(&auth.principal, patch).await?,
    ))
}
