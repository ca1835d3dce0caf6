//! `GET /metrics` (Prometheus text format) and the layer that times every request.
//!
//! `/metrics` needs no login, like `/health`: it holds counts and latencies, no shop data (no
//! names, amounts or totals), and Prometheus scrapes without a session. A node listens on
//! loopback unless told otherwise; when it serves the shop's LAN (`--http 0.0.0.0:7878`),
//! anyone on that LAN can read these counts — firewall the port if that matters.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.handle.metrics_text().await,
    )
        .into_response()
}

/// Times a request and counts its answer under its route template (`/api/v1/products/{id}`),
/// so ids in paths do not make a series each.
pub(crate) async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Known methods only: any other token would make a new series per request.
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    state
        .handle
        .metrics()
        .http_request(method, &route, res.status().as_u16(), started.elapsed());
    res
}
