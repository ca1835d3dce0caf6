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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use crate::error::Error;
use crate::model::{Principal, Role};
use crate::store::Store;
use crate::store::tables::LOGIN_FAILURES;

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
pub(crate) fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
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

/// The first lockout once a limit is reached; each further failure doubles it, up to the
/// window.
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);

/// Failed logins, counted per (username, source address) and per source address, with a
/// lockout that grows with each failure past the limit (see the module docs). Counters are
/// written through to the store when the limiter has one, so a restart forgets nothing.
pub(crate) struct LoginLimiter {
    user_limit: u32,
    ip_limit: u32,
    window: Duration,
    store: Option<Store>,
    state: Arc<Mutex<HashMap<String, Count>>>,
}

/// Failures of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    failures: u32,
    /// Unix ms of the latest failure (wall clock: counters outlive the process).
    last_ms: i64,
}

/// A login attempt under way; dropping it leaves it counted as a failure.
#[must_use]
pub(crate) struct Attempt {
    pair: String,
    source: String,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LoginLimiter {
    /// `user_limit` failures per username and source, `ip_limit` per source (0 = no limit),
    /// before lockouts start; counters are forgotten a `window` after their lockout ends.
    /// With a `store`, counters are loaded from it and kept in it.
    pub(crate) fn new(
        user_limit: u32,
        ip_limit: u32,
        window: Duration,
        store: Option<Store>,
    ) -> LoginLimiter {
        let limiter = LoginLimiter {
            user_limit,
            ip_limit,
            window,
            store,
            state: Arc::default(),
        };
        if let Some(store) = &limiter.store {
            match load_counts(store) {
                Ok(counts) => {
                    let now = now_ms();
                    let mut state = limiter.lock();
                    for (key, count) in counts {
                        if !limiter.is_stale(&key, count, now) {
                            state.insert(key, count);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the login counters"),
            }
        }
        limiter
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Count>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit_of(&self, key: &str) -> u32 {
        if key.starts_with("user\n") {
            self.user_limit
        } else {
            self.ip_limit
        }
    }

    /// How long a counter locks its key after its latest failure.
    fn lockout(&self, key: &str, failures: u32) -> Duration {
        let limit = self.limit_of(key);
        if limit == 0 || failures < limit {
            return Duration::ZERO;
        }
        let doublings = (failures - limit).min(20);
        FIRST_LOCKOUT
            .saturating_mul(1 << doublings)
            .min(self.window)
    }

    /// A counter whose lockout ended a whole window ago is forgotten.
    fn is_stale(&self, key: &str, c: Count, now: i64) -> bool {
        now.saturating_sub(c.last_ms) >= ms(self.lockout(key, c.failures)) + ms(self.window)
    }

    /// Starts an attempt, or refuses it with [`Error::RateLimited`] while a counter of its
    /// username and source, or of its source, is locked.
    pub(crate) fn begin(&self, username: &str, ip: IpAddr) -> Result<Attempt, Error> {
        let user = username.trim().to_lowercase();
        let pair = format!("user\n{user}\n{ip}");
        let source = format!("source\n{ip}");
        {
            let mut state = self.lock();
            // Read under the lock, so the latest failure recorded is never later than `now`.
            let now = now_ms();
            if state.len() > LIMITER_SWEEP_AT {
                state.retain(|k, c| !self.is_stale(k, *c, now));
            }
            let mut wait_ms = 0i64;
            for key in [&pair, &source] {
                if let Some(c) = state.get(key).copied() {
                    if self.is_stale(key, c, now) {
                        state.remove(key);
                        continue;
                    }
                    let lockout = self.lockout(key, c.failures);
                    if !lockout.is_zero() {
                        wait_ms = wait_ms.max(c.last_ms + ms(lockout) - now);
                    }
                }
            }
            if wait_ms > 0 {
                let secs = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1);
                return Err(Error::RateLimited(secs));
            }
            // Counted as failed from the start: a burst of parallel guesses cannot slip past
            // the limit while the slow password check runs.
            for key in [&pair, &source] {
                let c = state.entry(key.clone()).or_insert(Count {
                    failures: 0,
                    last_ms: now,
                });
                c.failures = c.failures.saturating_add(1);
                // The wall clock may step back; a counter never moves back with it.
                c.last_ms = c.last_ms.max(now);
            }
        }
        self.persist(vec![pair.clone(), source.clone()]);
        Ok(Attempt { pair, source })
    }

    /// The attempt succeeded: its username starts afresh *from its source only* (failures
    /// from elsewhere stay counted), and the source is not charged.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        {
            let mut state = self.lock();
            state.remove(&attempt.pair);
            uncount(&mut state, &attempt.source);
        }
        self.persist(vec![attempt.pair, attempt.source]);
    }

    /// The attempt could not be judged (no shop yet, storage failure): it does not count.
    pub(crate) fn forgive(&self, attempt: Attempt) {
        {
            let mut state = self.lock();
            uncount(&mut state, &attempt.pair);
            uncount(&mut state, &attempt.source);
        }
        self.persist(vec![attempt.pair, attempt.source]);
    }

    /// Writes the counters of `keys` as they are when the write begins (so of two writes the
    /// later one always stores the later state). A store write may wait for the node's writer:
    /// on a multi-threaded runtime the worker is handed over meanwhile (`block_in_place`).
    fn persist(&self, keys: Vec<String>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let state = self.state.clone();
        let write = move || {
            let result = (|| -> Result<(), Error> {
                let tx = store.db().begin_write()?;
                {
                    let mut table = tx.open_table(LOGIN_FAILURES)?;
                    let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    for key in &keys {
                        match state.get(key) {
                            Some(c) => {
                                table.insert(key.as_str(), (c.failures, c.last_ms))?;
                            }
                            None => {
                                table.remove(key.as_str())?;
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })();
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot keep the login counters");
            }
        };
        // Done before the request is answered, not on a detached thread: a write left queued
        // held the store open after the node shut down, so a restart on the same data dir
        // right after could not open it (`web_guard::login_counters_survive_a_restart`).
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(write)
            }
            _ => write(),
        }
    }
}

/// Takes one failure back; a counter at zero is dropped.
fn uncount(state: &mut HashMap<String, Count>, key: &str) {
    if let Some(c) = state.get_mut(key) {
        c.failures = c.failures.saturating_sub(1);
        if c.failures == 0 {
            state.remove(key);
        }
    }
}

/// The stored counters (none when the table was never written).
fn load_counts(store: &Store) -> Result<Vec<(String, Count)>, Error> {
    use redb::ReadableTable;
    let tx = store.read()?;
    let table = match tx.open_table(LOGIN_FAILURES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let (failures, last_ms) = v.value();
        out.push((k.value().to_owned(), Count { failures, last_ms }));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Attempt, Error>) -> u64 {
        match r {
            Err(Error::RateLimited(s)) => s,
            Ok(_) => panic!("the attempt must be refused"),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn limiter_counts_and_frees() {
        let l = LoginLimiter::new(2, 3, Duration::from_secs(600), None);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(l.begin("Ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        assert!((1..=30).contains(&refused(l.begin("ann ", ip))));
        // Another user from the same address still has one attempt left.
        drop(l.begin("bob", ip).unwrap());
        refused(l.begin("carl", ip));
        // Another address is not affected.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = l.begin("ann", other).unwrap();
        l.succeeded(a);
        for _ in 0..3 {
            l.forgive(l.begin("dora", other).unwrap());
        }
    }

    /// Without limits nothing is ever refused, however many attempts race (a counter's latest
    /// failure once came out later than the `now` of an attempt that read the clock earlier).
    #[test]
    fn no_limits_never_refuse_racing_attempts() {
        let l = std::sync::Arc::new(LoginLimiter::new(0, 0, Duration::from_secs(600), None));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        drop(l.begin("ann", ip).expect("no limit, no refusal"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_success_clears_only_its_own_source() {
        let l = LoginLimiter::new(2, 0, Duration::from_secs(600), None);
        let lan: IpAddr = "192.0.2.1".parse().unwrap();
        let till: IpAddr = "127.0.0.1".parse().unwrap();
        drop(l.begin("ann", lan).unwrap());
        // The cashier logs in at the till between two guesses from the LAN.
        l.succeeded(l.begin("ann", till).unwrap());
        drop(l.begin("ann", lan).unwrap());
        refused(l.begin("ann", lan));
        // The till is not locked by the LAN's guesses.
        l.succeeded(l.begin("ann", till).unwrap());
    }

    #[test]
    fn the_lockout_grows_and_stops_at_the_window() {
        let l = LoginLimiter::new(3, 0, Duration::from_secs(900), None);
        let key = "user\nann\n192.0.2.1";
        assert_eq!(l.lockout(key, 2), Duration::ZERO);
        assert_eq!(l.lockout(key, 3), FIRST_LOCKOUT);
        assert_eq!(l.lockout(key, 4), FIRST_LOCKOUT * 2);
        assert_eq!(l.lockout(key, 5), FIRST_LOCKOUT * 4);
        assert_eq!(l.lockout(key, 60), Duration::from_secs(900));
        // Forgotten only a whole window after the lockout ended.
        let c = Count {
            failures: 4,
            last_ms: 0,
        };
        assert!(!l.is_stale(key, c, 60_000 + 899_999));
        assert!(l.is_stale(key, c, 60_000 + 900_000));
    }

    #[test]
    fn counters_survive_a_new_limiter() {
        let store = Store::memory().unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let l = LoginLimiter::new(2, 0, Duration::from_secs(600), Some(store.clone()));
        drop(l.begin("ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        drop(l);
        let again = LoginLimiter::new(2, 0, Duration::from_secs(600), Some(store));
        refused(again.begin("ann", ip));
        drop(again.begin("bob", ip).unwrap());
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
