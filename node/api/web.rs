//! The web UI: a single-page app of plain HTML, CSS and JavaScript modules from `web/`,
//! compiled into the binary (shops have no internet; nothing is fetched from elsewhere, and
//! there is no build step). The Content-Security-Policy allows no inline script or style, so
//! each lives in its own file. Icons are SVG drawn by the scripts; the font is Inter (latin and
//! latin-ext subsets, woff2 from the `@fontsource/inter` npm package, SIL Open Font License in
//! `web/fonts/LICENSE-Inter-OFL.txt`), with the system fonts as fallback.
//!
//! `/` is the app's only page; screens are addressed by the URL fragment (`/#/sell`), so the
//! server needs no route per screen. Files are served with `Cache-Control: no-cache`: the
//! browser revalidates each time, so a new binary's UI is seen at the next reload.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One compiled-in file of the UI.
struct Asset {
    /// Where it is served.
    path: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const WOFF2: &str = "font/woff2";

macro_rules! asset {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $file)),
        }
    };
}

/// Every file of the UI.
const ASSETS: &[Asset] = &[
    asset!("/", HTML, "index.html"),
    asset!("/app.css", CSS, "app.css"),
    asset!("/app.js", JS, "app.js"),
    asset!("/icon.svg", SVG, "icon.svg"),
    asset!(
        "/fonts/inter-latin-400.woff2",
        WOFF2,
        "fonts/inter-latin-400-normal.woff2"
    ),
    asset!(
        "/fonts/inter-latin-600.woff2",
        WOFF2,
        "fonts/inter-latin-600-normal.woff2"
    ),
    asset!(
        "/fonts/inter-latin-700.woff2",
        WOFF2,
        "fonts/inter-latin-700-normal.woff2"
    ),
    asset!(
        "/fonts/inter-latin-ext-400.woff2",
        WOFF2,
        "fonts/inter-latin-ext-400-normal.woff2"
    ),
    asset!(
        "/fonts/inter-latin-ext-600.woff2",
        WOFF2,
        "fonts/inter-latin-ext-600-normal.woff2"
    ),
    asset!(
        "/fonts/inter-latin-ext-700.woff2",
        WOFF2,
        "fonts/inter-latin-ext-700-normal.woff2"
    ),
    asset!("/lib/api.js", JS, "lib/api.js"),
    asset!("/lib/dom.js", JS, "lib/dom.js"),
    asset!("/lib/format.js", JS, "lib/format.js"),
    asset!("/lib/chart.js", JS, "lib/chart.js"),
    asset!("/screens/setup.js", JS, "screens/setup.js"),
    asset!("/screens/login.js", JS, "screens/login.js"),
    asset!("/screens/sell.js", JS, "screens/sell.js"),
    asset!("/screens/stock.js", JS, "screens/stock.js"),
    asset!("/screens/products.js", JS, "screens/products.js"),
    asset!("/screens/reports.js", JS, "screens/reports.js"),
    asset!("/screens/orders.js", JS, "screens/orders.js"),
    asset!("/screens/books.js", JS, "screens/books.js"),
    asset!("/screens/till.js", JS, "screens/till.js"),
    asset!("/screens/people.js", JS, "screens/people.js"),
    asset!("/screens/sync.js", JS, "screens/sync.js"),
    asset!("/screens/audit.js", JS, "screens/audit.js"),
    asset!("/lib/alerts.js", JS, "lib/alerts.js"),
    asset!("/lib/import.js", JS, "lib/import.js"),
];

impl Asset {
    fn response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, self.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            self.body,
        )
            .into_response()
    }
}

/// The routes of the UI's files.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { asset.response() }))
    })
}
