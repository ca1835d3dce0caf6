//! The first-start page: create a shop, or log in and glance at products and stock.
//!
//! Plain HTML, CSS and JavaScript from `web/`, compiled into the binary (shops have no
//! internet; nothing is fetched from elsewhere). The Content-Security-Policy allows no inline
//! script or style, so each lives in its own file.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../web/setup.html");
const SCRIPT: &str = include_str!("../../web/setup.js");
const STYLE: &str = include_str!("../../web/setup.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /setup.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /setup.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
