//! The relay's web UI and API (DESIGN §6): the same `/api/v1` and web UI as a node, in front
//! of every shop replica the relay serves, where **a session covers one shop**.
//!
//! - `POST /api/v1/login` takes the shop's name (or id) besides the username and password. The
//!   relay checks the password against that shop's replica (owners and managers only: staff
//!   log in with their PIN on a till) and opens the session in that shop's own router, one per
//!   served shop ([`shop_router`](super::shop_router) over the replica's
//!   [`NodeHandle`]). Every later request carrying the token (bearer or cookie) is dispatched
//!   to that router and no other: a token of shop A is always answered from A.
//! - Unknown shop, unknown username and wrong password get the same `401` with the same body,
//!   after the same argon2 work (an unknown shop unlocks a dummy sealed key), so the login
//!   does not tell which shops the relay serves. Login limits count per shop and username and
//!   per client address, as on a node.
//! - Without a session only the UI's files, `/health`, `GET /api/v1/server` (`relay`), the
//!   OpenAPI document, login and logout answer; anything else under `/api/` is `401`.
//! - What a logged-in owner or manager changes runs on the replica node like on a till:
//!   signed by their person key (unlocked from the synced `vault` by their password). The
//!   relay forwards it to the shop's devices ([`crate::relay`]). What a device signs on its own
//!   account (sales, stock in, shifts, tickets, deliveries) the replica refuses: the relay
//!   never writes shop data on its own account. First-start setup, joining, invites and
//!   adding peers are refused here too: they belong to the shop's devices.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{self, LoginLimiter, LoginRequest};
use super::error::ApiError;
use super::extract::{ApiJson, ClientIp};
use super::{ApiOptions, AppState, CONTENT_SECURITY_POLICY};
use crate::error::Error;
use crate::handle::NodeHandle;

/// The shops a relay serves, read at each login (shops enrolled while it runs are seen at
/// once): each shop's id and its replica.
pub type ShopList = Arc<dyn Fn() -> Vec<(Uuid, NodeHandle)> + Send + Sync>;

/// The one answer to a failed login on the relay, whatever failed.
const WRONG: &str = "wrong shop, username or password";

/// What kind of server answers: a shop device's node or a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ServerKind {
    /// A node of one shop (a till, an owner's laptop).
    Node,
    /// A relay serving many shops: log in naming the shop.
    Relay,
}

/// `GET /api/v1/server`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ServerInfo {
    /// `node` or `relay` (on a relay, `POST /login` needs `shop`).
    kind: ServerKind,
}

/// What kind of server this is. No login needed: the login screen asks for the shop on a
/// relay.
#[utoipa::path(
    get,
    path = "/server",
    tag = "session",
    responses((status = 200, description = "What kind of server this is", body = ServerInfo))
)]
pub(crate) async fn server_info() -> Json<ServerInfo> {
    Json(ServerInfo {
        kind: ServerKind::Node,
    })
}

/// One served shop's router and the state that holds its sessions.
struct ShopFront {
    state: AppState,
    router: Router,
}

/// What the relay's handlers share.
struct RelayFront {
    shops: ShopList,
    opts: ApiOptions,
    fronts: Mutex<HashMap<Uuid, Arc<ShopFront>>>,
    /// Which shop each session token belongs to.
    tokens: Mutex<HashMap<String, Uuid>>,
    limiter: LoginLimiter,
    openapi: Arc<str>,
}

type Relay = Arc<RelayFront>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RelayFront {
    /// The router of a served shop, made at its first login.
    fn front(&self, shop: Uuid, handle: NodeHandle) -> Arc<ShopFront> {
        lock(&self.fronts)
            .entry(shop)
            .or_insert_with(|| {
                let state = super::app_state(handle, self.opts.clone());
                Arc::new(ShopFront {
                    router: super::shop_router(state.clone()),
                    state,
                })
            })
            .clone()
    }

    /// The shop router a request's session belongs to, if it carries a known token.
    fn front_of(&self, req: &Request) -> Option<(String, Arc<ShopFront>)> {
        let token = auth::token_of(req.headers())?;
        let shop = *lock(&self.tokens).get(&token)?;
        let front = lock(&self.fronts).get(&shop)?.clone();
        Some((token, front))
    }

    /// The served shops that `name` names: its id, or its name in any case.
    fn named(&self, name: &str) -> Vec<(Uuid, NodeHandle)> {
        let name = name.trim().to_lowercase();
        (self.shops)()
            .into_iter()
            .filter(|(id, h)| {
                id.to_string() == name
                    || h.status()
                        .ok()
                        .and_then(|s| s.shop_name)
                        .is_some_and(|n| n.trim().to_lowercase() == name)
            })
            .collect()
    }

    /// Forgets tokens whose sessions ended.
    fn sweep(&self) {
        let fronts = lock(&self.fronts).clone();
        lock(&self.tokens).retain(|token, shop| {
            fronts
                .get(shop)
                .is_some_and(|f| f.state.sessions.is_live(token))
        });
    }
}

/// Builds the relay's HTTP surface over the shops of `shops` (serve it over TLS only, with
/// connection info, e.g. through [`crate::relay`]). Session cookies are always `Secure`.
pub fn relay_router(shops: ShopList, opts: ApiOptions) -> Router {
    // Served over TLS: the certificate names the relay's hosts, and a browser refuses any other
    // name before a request is sent, so the `Host` list of a node is not needed (nor known).
    let opts = ApiOptions {
        secure_cookies: true,
        check_host: false,
        ..opts
    };
    let (_, openapi) = super::api_routes().split_for_parts();
    let relay: Relay = Arc::new(RelayFront {
        shops,
        limiter: LoginLimiter::new(
            opts.login_user_limit,
            opts.login_ip_limit,
            opts.login_window,
            None,
        ),
        opts,
        fronts: Mutex::default(),
        tokens: Mutex::default(),
        openapi: super::openapi_text(&openapi),
    });
    // Other methods of these paths go to the session's shop like everything else.
    let refused = |what: &'static str| {
        post(move || async move { ApiError::Node(Error::Forbidden(what.into())) })
            .fallback(dispatch)
    };
    let body_limit = relay.opts.body_limit;
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/server", get(relay_info))
        .route("/api/v1/health", get(health))
        .route("/health", get(health))
        .route("/api/v1/openapi.json", get(openapi_document))
        .route(
            "/api/v1/setup",
            refused(
                "the relay has no shop of its own: shops enroll it with `tillmesh relay enroll`",
            ),
        )
        .route(
            "/api/v1/join",
            refused("the relay joins shops with `tillmesh relay enroll`, not from its web UI"),
        )
        .route(
            "/api/v1/invites",
            refused(
                "invite new devices from a device in the shop: the relay does not admit devices",
            ),
        )
        .route(
            "/api/v1/peers",
            refused("the relay's connections are its own: add peers on a device in the shop"),
        )
        .fallback(dispatch)
        .with_state(relay)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(security_header(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        ))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn security_header(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /api/v1/server` on the relay.
async fn relay_info() -> Response {
    no_store(
        Json(ServerInfo {
            kind: ServerKind::Relay,
        })
        .into_response(),
    )
}

/// `GET /health`: the relay serves (it belongs to no shop itself).
async fn health() -> Response {
    no_store(Json(serde_json::json!({"status": "ok", "has_shop": false})).into_response())
}

async fn openapi_document(State(relay): State<Relay>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        relay.openapi.to_string(),
    )
        .into_response()
}

/// Everything else: the session's shop answers; without one, the UI's files or `401`.
async fn dispatch(State(relay): State<Relay>, req: Request) -> Response {
    if let Some((_, front)) = relay.front_of(&req) {
        return match front.router.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
    }
    if req.uri().path().starts_with("/api/") {
        return no_store(
            ApiError::Node(Error::Unauthorized(
                "log in first (POST /api/v1/login naming the shop)".into(),
            ))
            .into_response(),
        );
    }
    let files: Router = super::web::routes();
    match files.oneshot(req).await {
        Ok(res) if res.status() != StatusCode::NOT_FOUND => res,
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `POST /api/v1/login` on the relay: the shop, a username and a password.
async fn login(
    State(relay): State<Relay>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if req.pin.is_some() {
        return Err(ApiError::Node(Error::Forbidden(
            "staff log in with their PIN on a till in the shop; on the relay, owners and \
             managers log in with their password"
                .into(),
        )));
    }
    let Some(password) = req.password else {
        return Err(ApiError::invalid_field(
            "password",
            "the password is required",
        ));
    };
    let shop = req.shop.unwrap_or_default();
    if shop.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "shop",
            "name the shop (its name or id): this relay serves several",
        ));
    }
    if req.username.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "username",
            "the username is required",
        ));
    }
    let attempt = relay
        .limiter
        .begin(&format!("{}\n{}", shop.trim(), req.username), ip)
        .inspect_err(|_| {
            tracing::warn!(username = %req.username, %ip, "relay login refused: too many attempts");
        })?;
    let candidates = relay.named(&shop);
    if candidates.is_empty() {
        crate::handle::dummy_password_check(password).await;
        tracing::warn!(username = %req.username, %ip, "relay login failed");
        drop(attempt);
        return Err(ApiError::Node(Error::Unauthorized(WRONG.into())));
    }
    // Names are not unique across shops: the password decides which one is meant.
    for (id, handle) in candidates {
        match handle.login_password(&req.username, &password).await {
            Ok(principal) => {
                relay.limiter.succeeded(attempt);
                relay.sweep();
                let front = relay.front(id, handle);
                let (token, res) = auth::open_session(&front.state, principal)?;
                lock(&relay.tokens).insert(token, id);
                tracing::info!(shop = %id, username = %req.username, "logged in on the relay");
                return Ok(no_store(res));
            }
            Err(e @ (Error::Store(_) | Error::Internal(_))) => {
                relay.limiter.forgive(attempt);
                return Err(e.into());
            }
            Err(_) => {}
        }
    }
    tracing::warn!(username = %req.username, %ip, "relay login failed");
    drop(attempt);
    Err(ApiError::Node(Error::Unauthorized(WRONG.into())))
}

/// `POST /api/v1/logout`: ends the session in its shop (CSRF checked there).
async fn logout(State(relay): State<Relay>, req: Request) -> Response {
    if let Some((token, front)) = relay.front_of(&req) {
        let res = match front.router.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        if !front.state.sessions.is_live(&token) {
            lock(&relay.tokens).remove(&token);
        }
        return res;
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::logged_out_cookie(true))],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_lowercase() {
        let v = serde_json::to_value(ServerInfo {
            kind: ServerKind::Relay,
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"kind": "relay"}));
        assert_eq!(
            serde_json::to_value(ServerKind::Node).unwrap(),
            serde_json::json!("node")
        );
    }
}
