//! Sessions, login, CSRF protection and login rate limits.
//!
//! `POST /api/v1/login` checks a password (owners, managers) or a PIN (staff) through the node
//! and opens a session: a random 256-bit token, kept in memory with the logged-in principal and
//! a second random token for CSRF. The token is returned in the body (for integrators:
//! `Authorization: Bearer <token>`) and as the cookie `tillmesh_session` (HttpOnly,
//! SameSite=Strict; Secure when configured) for the web UI.
//!
//! - A session ends after [`ApiOptions::session_idle`](super::ApiOptions) without requests;
//!   every request renews it, and responses to cookie requests renew the cookie's `Max-Age`.
//! - Cookie-authenticated unsafe requests (anything but GET, HEAD, OPTIONS) must carry
//!   `X-CSRF-Token` with the session's CSRF token. SameSite=Strict already keeps other sites'
//!   requests from carrying the cookie; the token also covers older browsers and same-site
//!   pages on other ports of the shop's LAN. Bearer requests need no token: no browser sends
//!   them on its own.
//! - Every authenticated request asks the node again whether the person may still act
//!   ([`NodeHandle::refresh_principal`](crate::NodeHandle::refresh_principal)); a revoked
//!   person's sessions end at their next request.
//! - Failed logins are counted per (username, source address) and per source address (IPv6:
//!   global addresses per /64). Once a counter reaches its limit, its key is locked out for
//!   30 s, then twice as long after each further failure, up to the window (15 minutes by
//!   default); a locked key gets `429` with `Retry-After` without the password being checked.
//!   A counter is forgotten a whole window after its lockout ended. Attempts count from the
//!   moment they start (a burst of parallel guesses cannot slip past the limit while the slow
//!   password check runs).
//!   A successful login clears the counter of its username *from its own source only* — the
//!   guesses of another device stay counted however often the cashier logs in — and does not
//!   count against its source. So a device on the LAN guessing a cashier's PIN locks out
//!   itself, never the till's own screen, which logs in from the device itself (a loopback
//!   source, [`is_loopback_peer`](super::extract::is_loopback_peer)). Counters are kept in the
//!   node's store (`login-failures-1`), so restarting the node forgets none of them.
//!
//! The code: sessions, tokens, CSRF and the cookie (`sessions`), login limits (`limiter`); the
//! routes (login, logout, me, the login screen's people) are here.

mod limiter;
mod sessions;

pub(crate) use limiter::LoginLimiter;
pub(crate) use sessions::{Auth, Sessions, secrets_equal, slide_cookie};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ClientIp};
use crate::error::Error;
use crate::model::{Principal, Role};
use sessions::{TokenSource, clear_cookie, csrf_ok, request_token, session_cookie, unauthorized};

/// `POST /api/v1/login`: a username with either a password or a PIN.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// Login name.
    pub(crate) username: String,
    /// Password (owners and managers).
    #[serde(default)]
    pub(crate) password: Option<String>,
    /// PIN (staff).
    #[serde(default)]
    pub(crate) pin: Option<String>,
    /// The shop's name or id. Required on a relay (`GET /api/v1/server` says `relay`), which
    /// serves many shops; a node checks it names its own shop (a wrong shop answers like a
    /// wrong password).
    #[serde(default)]
    pub(crate) shop: Option<String>,
}

/// The person of a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionPerson {
    /// Person id.
    id: Uuid,
    /// Display name.
    name: String,
    /// Login name.
    username: String,
    /// Role.
    role: Role,
}

impl From<&Principal> for SessionPerson {
    fn from(p: &Principal) -> Self {
        SessionPerson {
            id: p.person_id,
            name: p.name.clone(),
            username: p.username.clone(),
            role: p.role,
        }
    }
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    /// Session token: `Authorization: Bearer <token>` (also set as the session cookie).
    token: String,
    /// Send as `X-CSRF-Token` on POST/PATCH/PUT/DELETE requests authenticated by the cookie.
    csrf_token: String,
    /// Who logged in.
    person: SessionPerson,
    /// Seconds the session lives without use (each request renews it).
    expires_in: u64,
}

/// Someone who may log in on this till, as the login screen lists them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginPerson {
    /// Person id (sales name it as `person`).
    id: Uuid,
    /// Display name.
    name: String,
    /// What to send as `username` to `POST /login`.
    username: String,
    /// Staff log in with a PIN, managers and owners with a password.
    role: Role,
}

/// Who may log in here (not revoked), for the login screen's list of names: a till shows the
/// staff's names and a PIN pad rather than asking for a username. No login needed; nothing
/// secret (no keys, no PIN or password hashes). Empty when the node has no shop.
#[utoipa::path(
    get,
    path = "/login/people",
    tag = "session",
    responses((status = 200, description = "People who may log in", body = [LoginPerson]))
)]
pub(crate) async fn login_people(State(state): State<AppState>) -> Json<Vec<LoginPerson>> {
    let mut people: Vec<LoginPerson> = state
        .handle
        .login_people()
        .into_iter()
        .map(|p| LoginPerson {
            id: p.id,
            name: p.name,
            username: p.username,
            role: p.role,
        })
        .collect();
    people.sort_by_key(|p| p.name.to_lowercase());
    Json(people)
}

/// The session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeResponse {
    /// Who is logged in.
    person: SessionPerson,
    /// The session's CSRF token.
    csrf_token: String,
    /// Seconds the session lives without use.
    expires_in: u64,
}

/// Log in with a password (owners, managers) or a PIN (staff).
#[utoipa::path(
    post,
    path = "/login",
    tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set too", body = LoginResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Wrong username, password or PIN", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    enum Secret {
        Password(String),
        Pin(String),
    }
    let secret = match (req.password, req.pin) {
        (Some(password), None) => Secret::Password(password),
        (None, Some(pin)) => Secret::Pin(pin),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "pin",
                "give either a password or a PIN, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_field(
                "password",
                "a password or a PIN is required",
            ));
        }
    };
    if req.username.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "username",
            "the username is required",
        ));
    }

    let attempt = state.limiter.begin(&req.username, ip).inspect_err(|_| {
        tracing::warn!(username = %req.username, %ip, "login refused: too many attempts");
    })?;
    let (result, wrong) = match secret {
        Secret::Password(password) => (
            state.handle.login_password(&req.username, &password).await,
            "wrong username or password",
        ),
        Secret::Pin(pin) => (
            state.handle.login_pin(&req.username, &pin).await,
            "wrong username or PIN",
        ),
    };
    let principal = match result {
        Ok(_)
            if req
                .shop
                .as_deref()
                .is_some_and(|shop| !names_shop(&state, shop)) =>
        {
            tracing::warn!(username = %req.username, %ip, "login failed: another shop named");
            drop(attempt);
            return Err(unauthorized(wrong));
        }
        Ok(principal) => {
            state.limiter.succeeded(attempt);
            principal
        }
        Err(
            e @ (Error::NoShop(_) | Error::Store(_) | Error::Internal(_) | Error::RateLimited(_)),
        ) => {
            state.limiter.forgive(attempt);
            return Err(e.into());
        }
        Err(e) => {
            tracing::warn!(username = %req.username, %ip, reason = %e, "login failed");
            // Attempt stays counted. Unknown user and wrong secret answer the same.
            drop(attempt);
            return Err(match e {
                Error::Invalid { .. } => e.into(),
                _ => unauthorized(wrong),
            });
        }
    };

    Ok(open_session(&state, principal)?.1)
}

/// Whether `shop` (a name, any case, or an id) names this node's shop.
pub(crate) fn names_shop(state: &AppState, shop: &str) -> bool {
    let Ok(status) = state.handle.status() else {
        return false;
    };
    let shop = shop.trim();
    status
        .shop_id
        .is_some_and(|id| id.to_string() == shop.to_lowercase())
        || status
            .shop_name
            .is_some_and(|name| name.trim().to_lowercase() == shop.to_lowercase())
}

/// Opens a session for `principal`: its token, and the login answer (body and cookie).
pub(crate) fn open_session(
    state: &AppState,
    principal: Principal,
) -> Result<(String, Response), ApiError> {
    let (token, session) = state.sessions.create(principal)?;
    let idle = state.opts.session_idle;
    let body = LoginResponse {
        token: token.clone(),
        csrf_token: session.csrf.clone(),
        person: SessionPerson::from(&session.principal),
        expires_in: idle.as_secs(),
    };
    tracing::info!(username = %session.principal.username, role = session.principal.role.as_str(), "logged in");
    let cookie = session_cookie(&token, idle, state.opts.secure_cookies);
    Ok((
        token,
        ([(header::SET_COOKIE, cookie)], Json(body)).into_response(),
    ))
}

/// The session token a request carries (bearer first, then the cookie), if any.
pub(crate) fn token_of(headers: &HeaderMap) -> Option<String> {
    match request_token(headers) {
        Ok(Some(TokenSource::Bearer(t) | TokenSource::Cookie(t))) => Some(t),
        _ => None,
    }
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn logged_out_cookie(secure: bool) -> HeaderValue {
    clear_cookie(secure)
}

/// End the caller's session and clear the session cookie.
///
/// Always answers 204 (logging out twice is fine), except that a cookie session needs its
/// `X-CSRF-Token`, like every other unsafe request.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "session",
    responses(
        (status = 204, description = "Logged out"),
        (status = 403, description = "Cookie session without its X-CSRF-Token", body = ErrorBody),
    ),
    security((), ("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match request_token(&headers)? {
        Some(TokenSource::Bearer(token)) => state.sessions.remove(&token),
        Some(TokenSource::Cookie(token)) => {
            if let Some(session) = state.sessions.peek(&token) {
                if !csrf_ok(&headers, &session) {
                    return Err(ApiError::Csrf);
                }
                state.sessions.remove(&token);
            }
        }
        None => {}
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie(state.opts.secure_cookies))],
    )
        .into_response())
}

/// The caller's session: who is logged in and the CSRF token.
#[utoipa::path(
    get,
    path = "/me",
    tag = "session",
    responses(
        (status = 200, description = "The session", body = MeResponse),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn me(State(state): State<AppState>, auth: Auth) -> Json<MeResponse> {
    Json(MeResponse {
        person: SessionPerson::from(&auth.principal),
        csrf_token: auth.csrf,
        expires_in: state.opts.session_idle.as_secs(),
    })
}
