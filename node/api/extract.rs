//! Extractors whose failures answer in the API's error shape.
//!
//! axum's own `Json`, `Path` and `Query` answer bad input with plain-text bodies and 415/422;
//! these wrappers turn every such failure into `400 invalid` (or `413 too_large`) with the
//! field named when serde says which one.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, Request,
};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// A JSON request body (`Content-Type: application/json`), limited to the API's body size.
///
/// As `Option<ApiJson<T>>` an empty body (with or without a content type) is `None`.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state).await?;
        if !is_json {
            return Err(missing_content_type());
        }
        parse(&bytes)
    }
}

impl<T: DeserializeOwned> OptionalFromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Option<Self>, ApiError> {
        let is_json = json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !is_json {
            return Err(missing_content_type());
        }
        parse(&bytes).map(Some)
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<ApiJson<T>, ApiError> {
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(value)| ApiJson(value))
        .map_err(ApiError::from)
}

fn missing_content_type() -> ApiError {
    ApiError::invalid("expected a JSON body with `Content-Type: application/json`")
}

/// `application/json` or `application/<something>+json`, parameters allowed.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters; undecodable ones are `400 invalid`.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub(crate) T);

/// A query string; undecodable ones are `400 invalid`.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// The client's address as login limits count it.
///
/// Global IPv6 clients count per /64 (one household or device usually holds a whole /64; see
/// `limit_key`); IPv4-mapped IPv6 addresses count as the IPv4 address. Without connection info (requests driven
/// in-process) the address is `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let ip = match ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await {
            Ok(ConnectInfo(addr)) => addr.ip(),
            Err(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        Ok(ClientIp(limit_key(ip)))
    }
}

/// Whether a connection comes from this device itself: its peer address is a loopback address
/// (`127.0.0.0/8`, `::1`, or either mapped into IPv6). The till's own screen and tools on the
/// device connect this way; no other device can, because the kernel never routes a loopback
/// source address in from a network interface. (A reverse proxy on the device would make every
/// request look local: put none in front of a node.)
pub(crate) fn is_loopback_peer(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The address a login limit counts against. Global IPv6 addresses count per /64; loopback,
/// link-local (`fe80::/10`) and unique-local (`fc00::/7`) addresses count as they are: every
/// device of a shop's LAN shares those /64s, and one guesser there must not lock out the others.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6)
            if v6.is_loopback()
                || v6.segments()[0] & 0xffc0 == 0xfe80
                || v6.segments()[0] & 0xfe00 == 0xfc00 =>
        {
            IpAddr::V6(v6)
        }
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(segments))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_keys() {
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(limit_key(v6), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert!(limit_key("::1".parse().unwrap()).is_loopback());
        for lan in ["fe80::1:2:3:4", "fd12:3456:789a:1::5"] {
            let ip: IpAddr = lan.parse().unwrap();
            assert_eq!(limit_key(ip), ip, "{lan} counts on its own");
        }
    }

    #[test]
    fn loopback_peers() {
        for local in [
            "127.0.0.1:1",
            "127.3.4.5:80",
            "[::1]:9",
            "[::ffff:127.0.0.1]:9",
        ] {
            assert!(is_loopback_peer(&local.parse().unwrap()), "{local}");
        }
        for remote in [
            "192.168.1.20:1",
            "10.0.0.1:2",
            "0.0.0.0:3",
            "[fe80::1]:4",
            "[::]:5",
        ] {
            assert!(!is_loopback_peer(&remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().unwrap(),
        );
        assert!(json_content_type(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!json_content_type(&h));
    }
}
