//! Who may reach a node's HTTP surface before any login: the `Host` allow-list and the
//! first-start setup token.
//!
//! - **`Host` allow-list** ([`check_host`]): a request is served only if its `Host` (or HTTP/2
//!   authority) is an IP literal (v4 or bracketed v6, with or without a port), `localhost`, one
//!   of the node's own names — this machine's host name, `<host name>.local`, and the mDNS name
//!   it advertises (`tm-….local`, [`crate::net::discovery::mdns_host_name`]) — or a name configured
//!   with `--allowed-host` / `TILLMESH_ALLOWED_HOSTS` (e.g. a name the shop's router gives the
//!   till). Anything else gets `421 host_not_allowed`. This is what stops DNS rebinding: a
//!   web page on `evil.example` whose name is re-pointed at the till's address still sends
//!   `Host: evil.example`, so its scripts can neither read the till's answers nor reach
//!   `/setup` or `/join`. A request without `Host` (HTTP/1.0 tools) is served: browsers always
//!   send one. The relay is served over TLS and its certificate names its hosts: a browser
//!   refuses a rebinding name there before any request, so the relay does not use this list.
//! - **Setup token** ([`setup_allowed`]): while a node has no shop, `POST /setup` and
//!   `POST /join` decide who the shop's owner is, so they need the one-time token the node
//!   printed at start ([`NodeHandle::setup_token`](crate::NodeHandle::setup_token)), sent as
//!   `X-Setup-Token` — except from the device itself (a loopback connection,
//!   [`is_loopback_peer`](super::extract::is_loopback_peer)): the shop owner setting up a new
//!   till at its own screen types nothing, as before. `GET /setup` tells the first-start page
//!   whether to ask for the token. The CLI's `init`, `join` and `restore` open the data dir
//!   directly and need no token.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::extract::is_loopback_peer;

/// The header that carries the setup token.
pub const SETUP_TOKEN_HEADER: &str = "x-setup-token";

/// The names a node answers to besides IP literals (lowercase, no final dot).
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// `localhost`, this machine's names, the node's mDNS name (from its `peer_id`) and the
    /// `configured` names.
    pub(crate) fn for_node(peer_id: &str, configured: &[String]) -> AllowedHosts {
        let mut names = vec!["localhost".to_string()];
        if let Some(host) = system_host_name() {
            names.push(format!("{host}.local"));
            names.push(host);
        }
        if !peer_id.is_empty() {
            names.push(crate::net::discovery::mdns_host_name(peer_id));
        }
        names.extend(configured.iter().cloned());
        let mut names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        AllowedHosts { names }
    }

    /// Whether a `Host` header value names this node.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split_once(']')
                .is_some_and(|(ip, port)| ip.parse::<Ipv6Addr>().is_ok() && port_ok(port));
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port_ok(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        };
        if name.parse::<Ipv4Addr>().is_ok() {
            return true;
        }
        let name = normalize(name);
        self.names.contains(&name)
    }
}

/// `""` or `:<port>`.
fn port_ok(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok())
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// This machine's host name, if it can be read.
fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| normalize(&h))
        .filter(|h| !h.is_empty())
}

/// Refuses requests whose `Host` names none of the node's names (layer of the node's router).
pub(crate) async fn check_host(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(host) if !state.hosts.allows(&host) => {
            tracing::warn!(host = %host.escape_debug(), "refused a request for another host name");
            ApiError::HostNotAllowed(host).into_response()
        }
        _ => next.run(req).await,
    }
}

/// Whether a request comes from the device itself (extractor; `false` without connection info).
pub(crate) struct FromThisDevice(pub(crate) bool);

impl<S: Send + Sync> FromRequestParts<S> for FromThisDevice {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Self, std::convert::Infallible> {
        let local = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .is_ok_and(|ConnectInfo(addr)| is_loopback_peer(&addr));
        Ok(FromThisDevice(local))
    }
}

/// Whether first-start setup or join may go on: from the device itself always, from anywhere
/// else with the node's setup token in `X-Setup-Token`.
pub(crate) fn setup_allowed(
    state: &AppState,
    from: &FromThisDevice,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if from.0 {
        return Ok(());
    }
    let Some(expected) = state.handle.setup_token() else {
        // The node has a shop: setup and join refuse on their own (409).
        return Ok(());
    };
    let given = headers
        .get(SETUP_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if super::auth::secrets_equal(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!("refused first-start setup from another device without the setup token");
        Err(ApiError::SetupToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let hosts = AllowedHosts::for_node("12D3KooWpeer", &["Till.Shop.Lan".into()]);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7878",
            "192.168.1.20:7878",
            "[::1]:7878",
            "[fe80::1]",
            "localhost:7878",
            "LOCALHOST",
            "till.shop.lan:80",
            "till.shop.lan.",
            &crate::net::discovery::mdns_host_name("12D3KooWpeer"),
        ] {
            assert!(hosts.allows(ok), "{ok} must be allowed");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1:x",
            "[::1",
            "[nonsense]:80",
            "",
        ] {
            assert!(!hosts.allows(bad), "{bad} must be refused");
        }
    }
}
