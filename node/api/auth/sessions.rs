//! Sessions: the in-memory session table, the token a request carries (bearer or cookie), the
//! CSRF check, the [`Auth`] extractor and the session cookie.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::{AppState, CSRF_HEADER, SESSION_COOKIE};
use crate::error::Error;
use crate::model::Principal;

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
    pub(super) fn peek(&self, token: &str) -> Option<Session> {
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
pub(super) enum TokenSource {
    Bearer(String),
    Cookie(String),
}

/// The session token of a request: `Authorization: Bearer` first, then the cookie.
///
/// `Err` when an `Authorization` header is present but is not a bearer token.
pub(super) fn request_token(headers: &HeaderMap) -> Result<Option<TokenSource>, ApiError> {
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
pub(super) fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| secrets_equal(v.as_bytes(), session.csrf.as_bytes()))
}

pub(super) fn unauthorized(message: &str) -> ApiError {
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
pub(super) fn session_cookie(token: &str, left: Duration, secure: bool) -> HeaderValue {
    cookie_value(token, left.as_secs().max(1), secure)
}

/// `Set-Cookie` that removes the session cookie.
pub(super) fn clear_cookie(secure: bool) -> HeaderValue {
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

#[cfg(test)]
mod tests {
    use super::*;

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
