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
//! - Logins are limited per username and per client address: after the configured number of
//!   failed attempts within the window, further attempts get `429` with `Retry-After` without
//!   the password being checked. Attempts count from the moment they start (a burst of parallel
//!   guesses cannot slip past the limit while the slow password check runs); a successful login
//!   clears its username's count and does not count against its address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ClientIp};
use super::{AppState, CSRF_HEADER, SESSION_COOKIE};
use crate::domain::model::{Principal, Role};
use crate::error::Error;

/// How many stale limiter entries may pile up before a sweep.
const LIMITER_SWEEP_AT: usize = 1024;

/// A logged-in session.
#[derive(Clone)]
pub(crate) struct Session {
    /// Who is logged in.
    pub(crate) principal: Principal,
    /// The CSRF token of the session.
    pub(crate) csrf: String,
    /// When the session ends unless used again.
    expires_at: Instant,
}

/// The sessions of this node, in memory.
pub(crate) struct Sessions {
    idle: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// No sessions yet; sessions end after `idle` without use.
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session; returns its token and the session.
    pub(crate) fn create(&self, principal: Principal) -> Result<(String, Session), Error> {
        let token = random_token()?;
        let session = Session {
            principal,
            csrf: random_token()?,
            expires_at: Instant::now() + self.idle,
        };
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires_at > now);
        map.insert(token.clone(), session.clone());
        Ok((token, session))
    }

    /// The live session of `token`, renewed; `None` (and forgotten) if it expired.
    pub(crate) fn touch(&self, token: &str) -> Option<Session> {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(token) {
            Some(s) if s.expires_at > now => {
                s.expires_at = now + self.idle;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    /// The live session of `token` without renewing it.
    fn peek(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        self.lock()
            .get(token)
            .filter(|s| s.expires_at > now)
            .cloned()
    }

    /// How long the session of `token` has left, if it is live.
    pub(crate) fn remaining(&self, token: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .get(token)
            .and_then(|s| s.expires_at.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Whether `token` still names a live session.
    pub(crate) fn is_live(&self, token: &str) -> bool {
        self.remaining(token).is_some()
    }

    /// Ends the session of `token`.
    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }
}

/// A random 256-bit token, hex-encoded.
fn random_token() -> Result<String, Error> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// Compares two secrets in time that does not depend on where they differ.
fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a request's session token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    Bearer(String),
    Cookie(String),
}

/// The session token of a request: `Authorization: Bearer` first, then the cookie.
///
/// `Err` when an `Authorization` header is present but is not a bearer token.
fn request_token(headers: &HeaderMap) -> Result<Option<TokenSource>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        return Ok(Some(TokenSource::Bearer(token.to_owned())));
    }
    Ok(cookie_token(headers).map(TokenSource::Cookie))
}

/// The value of the session cookie, if the request carries one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Whether a method changes state (and so needs the CSRF token on cookie sessions).
fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request carries the session's CSRF token.
fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| secrets_equal(v.as_bytes(), session.csrf.as_bytes()))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::Node(Error::Unauthorized(message.to_owned()))
}

/// The logged-in person of a request (extractor). Rejects with 401 (no or dead session),
/// 403 `csrf` (cookie session, unsafe method, wrong or missing `X-CSRF-Token`).
pub(crate) struct Auth {
    /// Who acts.
    pub(crate) principal: Principal,
    /// The session token.
    pub(crate) token: String,
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let source = request_token(&parts.headers)?
            .ok_or_else(|| unauthorized("log in first (POST /api/v1/login)"))?;
        let (token, via_cookie) = match source {
            TokenSource::Bearer(t) => (t, false),
            TokenSource::Cookie(t) => (t, true),
        };
        if via_cookie && is_unsafe(&parts.method) {
            // Check the CSRF token before the session is renewed: a forged request must not
            // keep a session alive.
            let session = state
                .sessions
                .peek(&token)
                .ok_or_else(|| unauthorized("session expired; log in again"))?;
            if !csrf_ok(&parts.headers, &session) {
                return Err(ApiError::Csrf);
            }
        }
        let session = state
            .sessions
            .touch(&token)
            .ok_or_else(|| unauthorized("session expired; log in again"))?;
        if let Err(e) = state.handle.refresh_principal(&session.principal) {
            return Err(match e {
                Error::Store(_) | Error::Internal(_) => e.into(),
                other => {
                    state.sessions.remove(&token);
                    tracing::info!(
                        username = %session.principal.username,
                        reason = %other,
                        "session ended: the person may no longer act"
                    );
                    unauthorized("your access was revoked; log in again")
                }
            });
        }
        Ok(Auth {
            principal: session.principal,
            token,
            csrf: session.csrf,
        })
    }
}

/// Renews the cookie's `Max-Age` on responses to cookie-authenticated requests (sliding
/// sessions), and clears a cookie whose session is gone.
pub(crate) async fn slide_cookie(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let token = match request_token(req.headers()) {
        Ok(Some(TokenSource::Cookie(token))) => Some(token),
        _ => None,
    };
    let mut res = next.run(req).await;
    if let Some(token) = token
        && !res.headers().contains_key(header::SET_COOKIE)
    {
        let secure = state.opts.secure_cookies;
        let cookie = match state.sessions.remaining(&token) {
            Some(left) => session_cookie(&token, left, secure),
            None => clear_cookie(secure),
        };
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    res
}

/// `Set-Cookie` for a session with `left` to live.
fn session_cookie(token: &str, left: Duration, secure: bool) -> HeaderValue {
    cookie_value(token, left.as_secs().max(1), secure)
}

/// `Set-Cookie` that removes the session cookie.
fn clear_cookie(secure: bool) -> HeaderValue {
    cookie_value("", 0, secure)
}

fn cookie_value(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // Tokens are hex, so the value is always a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Counts login attempts per username and per client address in a sliding window.
pub(crate) struct LoginLimiter {
    user_limit: u32,
    ip_limit: u32,
    window: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    users: HashMap<String, VecDeque<Instant>>,
    ips: HashMap<IpAddr, VecDeque<Instant>>,
}

/// A login attempt under way; dropping it leaves it counted as a failure.
#[must_use]
pub(crate) struct Attempt {
    user: String,
    ip: IpAddr,
    at: Instant,
}

impl LoginLimiter {
    /// Limits of `user_limit` attempts per username and `ip_limit` per address within
    /// `window` (0 = no limit).
    pub(crate) fn new(user_limit: u32, ip_limit: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            user_limit,
            ip_limit,
            window,
            state: Mutex::new(LimiterState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts an attempt, or refuses it with [`Error::RateLimited`] if a limit is reached.
    pub(crate) fn begin(&self, username: &str, ip: IpAddr) -> Result<Attempt, Error> {
        let user = username.trim().to_lowercase();
        let now = Instant::now();
        let window = self.window;
        let mut state = self.lock();
        if state.users.len() + state.ips.len() > LIMITER_SWEEP_AT {
            state.users.retain(|_, q| {
                prune(q, now, window);
                !q.is_empty()
            });
            state.ips.retain(|_, q| {
                prune(q, now, window);
                !q.is_empty()
            });
        }
        let user_q = state.users.entry(user.clone()).or_default();
        prune(user_q, now, window);
        let user_wait = wait(user_q, self.user_limit, now, window);
        let ip_q = state.ips.entry(ip).or_default();
        prune(ip_q, now, window);
        let ip_wait = wait(ip_q, self.ip_limit, now, window);
        if let Some(w) = user_wait.max(ip_wait) {
            let secs = (w.as_secs() + u64::from(w.subsec_nanos() > 0)).max(1);
            return Err(Error::RateLimited(secs));
        }
        if let Some(q) = state.users.get_mut(&user) {
            q.push_back(now);
        }
        if let Some(q) = state.ips.get_mut(&ip) {
            q.push_back(now);
        }
        Ok(Attempt { user, ip, at: now })
    }

    /// The attempt succeeded: the username starts afresh, the address is not charged.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        let mut state = self.lock();
        state.users.remove(&attempt.user);
        if let Some(q) = state.ips.get_mut(&attempt.ip) {
            remove_one(q, attempt.at);
        }
    }

    /// The attempt could not be judged (no shop yet, storage failure): it does not count.
    pub(crate) fn forgive(&self, attempt: Attempt) {
        let mut state = self.lock();
        if let Some(q) = state.users.get_mut(&attempt.user) {
            remove_one(q, attempt.at);
        }
        if let Some(q) = state.ips.get_mut(&attempt.ip) {
            remove_one(q, attempt.at);
        }
    }
}

/// Drops attempts that left the window.
fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        q.pop_front();
    }
}

/// How long until another attempt is allowed, if the limit is reached.
fn wait(q: &VecDeque<Instant>, limit: u32, now: Instant, window: Duration) -> Option<Duration> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit == 0 || q.len() < limit {
        return None;
    }
    // The oldest attempts must leave the window until fewer than `limit` remain.
    let frees_at = q[q.len() - limit] + window;
    Some(frees_at.saturating_duration_since(now))
}

fn remove_one(q: &mut VecDeque<Instant>, at: Instant) {
    if let Some(i) = q.iter().position(|t| *t == at) {
        q.remove(i);
    }
}

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

/// Fails unless the principal is a manager or an owner (for what the node does not guard:
/// documents, exports, reports).
pub(crate) fn require_manager(p: &Principal) -> Result<(), ApiError> {
    if p.role >= Role::Manager {
        Ok(())
    } else {
        Err(ApiError::Node(Error::Forbidden(
            "only managers and owners may do this".into(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_and_frees() {
        let l = LoginLimiter::new(2, 3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(l.begin("Ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        match l.begin("ann ", ip) {
            Err(Error::RateLimited(s)) => assert!((1..=60).contains(&s)),
            _ => panic!("third attempt for ann must be refused"),
        }
        // Another user from the same address still has one attempt left.
        drop(l.begin("bob", ip).unwrap());
        assert!(matches!(l.begin("carl", ip), Err(Error::RateLimited(_))));
        // Another address is not affected.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = l.begin("dora", other).unwrap();
        l.succeeded(a);
        for _ in 0..3 {
            l.forgive(l.begin("dora", other).unwrap());
        }
    }

    #[test]
    fn success_resets_the_username() {
        let l = LoginLimiter::new(2, 0, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(l.begin("ann", ip).unwrap());
        l.succeeded(l.begin("ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        assert!(l.begin("ann", ip).is_err());
    }

    #[test]
    fn tokens_from_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; tillmesh_session=abc; c=d".parse().unwrap(),
        );
        assert_eq!(
            request_token(&h).unwrap(),
            Some(TokenSource::Cookie("abc".into()))
        );
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(
            request_token(&h).unwrap(),
            Some(TokenSource::Bearer("xyz".into()))
        );
        h.insert(header::AUTHORIZATION, "Basic eHl6".parse().unwrap());
        assert!(request_token(&h).is_err());
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
