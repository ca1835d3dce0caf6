//! The HTTP/JSON API and the web UI.
//!
//! [`router`] builds the whole HTTP surface of a node on top of a [`NodeHandle`]:
//!
//! - the JSON API under `/api/v1` (DESIGN.md §7), described by an OpenAPI document generated from
//!   the same handler declarations that build the router (`utoipa` + `utoipa-axum`), served at
//!   `/api/v1/openapi.json`, so the document cannot drift from the routes;
//! - `GET /health` for load balancers and scripts, `GET /metrics` for Prometheus (see
//!   [`crate::metrics`]);
//! - the web UI at `/` (`web/`, compiled in; see `web`).
//!
//! Every handler is a thin translation: it checks the session, decodes the request, calls one
//! [`NodeHandle`] method with the logged-in [`Principal`](crate::model::Principal) and
//! encodes the answer. The API decides no role: every rule is a row of
//! [`crate::domain::access`], checked by the handle's method (reports, exports and documents
//! included), so a `403` here is the handle's [`Error::Forbidden`](crate::Error::Forbidden).
//! Errors always have the shape `{"error":{"code","message","field"}}` ([`ApiError`]).
//!
//! Sessions, CSRF protection and login rate limits are in `auth`; they live in memory, so a
//! restart logs everybody out (a till logs in again with a PIN; integrators log in again for a
//! new bearer token).
//!
//! Before any route, the `Host` header must name the node (DNS rebinding), and first-start
//! setup and join from another device need the node's setup token: see `guard`.
//!
//! Security headers (`nosniff`, `DENY` framing, no referrer, a strict Content-Security-Policy)
//! are set on every response; API responses are also `Cache-Control: no-store`.

mod alerts;
mod audit;
mod auth;
mod backup;
mod books;
mod catalog_csv;
mod documents;
mod error;
mod examples;
mod export;
mod extract;
mod guard;
mod mesh;
mod metrics;
mod products;
mod range;
mod relay;
mod reports;
mod revoked_sales;
mod sales;
mod shop;
mod sse;
mod stock;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::handle::NodeHandle;

pub use error::ApiError;
pub use guard::SETUP_TOKEN_HEADER;
pub use relay::{ShopList, relay_router};

/// The name of the session cookie set by `POST /api/v1/login`.
pub const SESSION_COOKIE: &str = "tillmesh_session";

/// The header that carries the CSRF token on cookie-authenticated unsafe requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The Content-Security-Policy sent with every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// How the API behaves: session lifetime, login limits, cookie flags, body size.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// A session ends after this long without a request (sliding: each request renews it).
    pub session_idle: Duration,
    /// Failed logins of one username from one client address before lockouts start (0 = no
    /// limit). Lockouts start at 30 s and double with each further failure.
    pub login_user_limit: u32,
    /// Failed logins from one client address (any username) before lockouts start (0 = no
    /// limit).
    pub login_ip_limit: u32,
    /// The longest lockout; a counter is forgotten this long after its lockout ended.
    pub login_window: Duration,
    /// Mark the session cookie `Secure` (serve over TLS, e.g. on a relay).
    pub secure_cookies: bool,
    /// Largest request body accepted, in bytes; larger bodies get `413 too_large`.
    pub body_limit: usize,
    /// Host names the node answers to besides IP literals, `localhost` and its own names
    /// (see `guard`; `--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// Refuse requests whose `Host` is not allowed (the relay, served over TLS, turns it off).
    pub check_host: bool,
}

impl Default for ApiOptions {
    /// 12 h idle sessions; lockouts after 5 failed logins per username and address and 20 per
    /// address, growing up to 15 minutes;
    /// cookies without `Secure` (a shop LAN is plain HTTP); 256 KiB bodies; the `Host` checked,
    /// no extra names.
    fn default() -> Self {
        ApiOptions {
            session_idle: Duration::from_secs(12 * 60 * 60),
            login_user_limit: 5,
            login_ip_limit: 20,
            login_window: Duration::from_secs(15 * 60),
            secure_cookies: false,
            body_limit: 256 * 1024,
            allowed_hosts: Vec::new(),
            check_host: true,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The node.
    pub(crate) handle: NodeHandle,
    /// Logged-in sessions.
    pub(crate) sessions: Arc<auth::Sessions>,
    /// Login attempt counters.
    pub(crate) limiter: Arc<auth::LoginLimiter>,
    /// Options the router was built with.
    pub(crate) opts: Arc<ApiOptions>,
    /// The names the node answers to.
    pub(crate) hosts: Arc<guard::AllowedHosts>,
}

/// Told to long-lived responses (the event stream) when [`serve`] begins a graceful shutdown,
/// so that they end and the shutdown does not wait for them forever.
#[derive(Clone)]
pub(crate) struct ShutdownSignal(pub(crate) watch::Receiver<bool>);

/// Builds the web UI and API of a node.
///
/// The router expects to be served with connection info (see [`serve`]) so that login limits
/// can count per client address; without it (e.g. `tower::ServiceExt::oneshot` in tests) every
/// request counts as coming from `0.0.0.0`, or from the address a
/// [`MockConnectInfo`](axum::extract::connect_info::MockConnectInfo) layer provides.
pub fn router(handle: NodeHandle, opts: ApiOptions) -> Router {
    shop_router(app_state(handle, opts))
}

/// The state of one node's router (the relay keeps one per shop replica).
pub(crate) fn app_state(handle: NodeHandle, opts: ApiOptions) -> AppState {
    let limiter = auth::LoginLimiter::new(
        opts.login_user_limit,
        opts.login_ip_limit,
        opts.login_window,
        Some(handle.store().clone()),
    );
    let hosts = guard::AllowedHosts::for_node(&handle.peer_id(), &opts.allowed_hosts);
    AppState {
        handle,
        sessions: Arc::new(auth::Sessions::new(opts.session_idle)),
        limiter: Arc::new(limiter),
        hosts: Arc::new(hosts),
        opts: Arc::new(opts),
    }
}

/// The OpenAPI document (with its examples) as JSON.
fn openapi_text(openapi: &OpenApi) -> Arc<str> {
    match serde_json::to_value(openapi) {
        Ok(mut doc) => {
            examples::add_examples(&mut doc);
            doc.to_string().into()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not serialize the OpenAPI document");
            "{}".into()
        }
    }
}

/// [`router`] over a state made by [`app_state`].
pub(crate) fn shop_router(state: AppState) -> Router {
    let body_limit = state.opts.body_limit;
    let check_host = state.opts.check_host;
    let (api, openapi) = api_routes().split_for_parts();
    let openapi_json = openapi_text(&openapi);

    let api = api
        // Document ids contain `/`: `{id}` takes them URL-encoded in one segment (the route in
        // the OpenAPI document), this one takes them as a plain path tail.
        .route(
            "/api/v1/documents/{id}/{*rest}",
            get(documents::get_document_tail),
        )
        .route(
            "/api/v1/openapi.json",
            get(move || openapi_document(openapi_json.clone())),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::slide_cookie,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    let pages = Router::new()
        .route("/health", get(shop::health))
        .route("/metrics", get(metrics::metrics))
        .merge(web::routes())
        .method_not_allowed_fallback(method_not_allowed);

    let mut router = Router::new()
        .merge(api)
        .merge(pages)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .fallback(not_found)
        .with_state(state.clone());
    if check_host {
        router = router.layer(axum::middleware::from_fn_with_state(
            state,
            guard::check_host,
        ));
    }
    router
        .layer(security_header(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(security_header(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(security_header(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections,
/// ends open event streams and waits for in-flight requests.
///
/// Connection info is attached to every request, so login limits count per client address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let router = router.layer(axum::Extension(ShutdownSignal(rx)));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Receivers may all be gone already; that is fine.
        let _ = tx.send(true);
    })
    .await
}

/// `router` with the signal that ends its open event streams (for servers other than
/// [`serve`], e.g. the relay's HTTPS): send `true` when shutting down.
pub(crate) fn with_shutdown_signal(router: Router) -> (Router, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    (router.layer(axum::Extension(ShutdownSignal(rx))), tx)
}

/// The routes of `/api/v1` with their OpenAPI descriptions.
fn api_routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::<AppState>::default()
        .routes(routes!(shop::health_v1))
        .routes(routes!(shop::status))
        .routes(routes!(shop::setup_info, shop::setup))
        .routes(routes!(shop::join))
        .routes(routes!(auth::login))
        .routes(routes!(auth::login_people))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(shop::list_people, shop::add_person))
        .routes(routes!(shop::revoke_member))
        .routes(routes!(shop::list_devices))
        .routes(routes!(revoked_sales::list_revoked_sales))
        .routes(routes!(revoked_sales::accept_revoked_sales))
        .routes(routes!(revoked_sales::dismiss_revoked_sales))
        .routes(routes!(shop::get_settings, shop::update_settings))
        .routes(routes!(products::list_products, products::create_product))
        .routes(routes!(products::get_product, products::update_product))
        .routes(routes!(stock::list_stock))
        .routes(routes!(stock::list_movements))
        .routes(routes!(stock::stock_in))
        .routes(routes!(stock::stock_remove))
        .routes(routes!(stock::stock_adjust))
        .routes(routes!(sales::list_sales, sales::record_sale))
        .routes(routes!(sales::get_sale))
        .routes(routes!(sales::void_sale))
        .routes(routes!(sales::return_sale))
        .routes(routes!(sales::daily_report))
        .routes(routes!(books::list_suppliers, books::create_supplier))
        .routes(routes!(books::update_supplier))
        .routes(routes!(
            books::list_purchase_orders,
            books::create_purchase_order
        ))
        .routes(routes!(
            books::get_purchase_order,
            books::update_purchase_order
        ))
        .routes(routes!(books::receive_delivery))
        .routes(routes!(books::list_shifts, books::open_shift))
        .routes(routes!(books::current_shift))
        .routes(routes!(books::cash_move))
        .routes(routes!(books::close_shift))
        .routes(routes!(books::get_shift))
        .routes(routes!(books::list_refunds, books::create_refund))
        .routes(routes!(books::list_tickets, books::park_ticket))
        .routes(routes!(books::get_ticket, books::update_ticket))
        .routes(routes!(books::discard_ticket))
        .routes(routes!(books::profit_days))
        .routes(routes!(books::profit_products))
        .routes(routes!(books::sale_profit))
        .routes(routes!(books::low_stock))
        .routes(routes!(books::list_periods, books::close_period))
        .routes(routes!(reports::sales_report))
        .routes(routes!(reports::top_sellers))
        .routes(routes!(reports::staff_report))
        .routes(routes!(reports::tax_report))
        .routes(routes!(reports::payments_report))
        .routes(routes!(reports::inventory_report))
        .routes(routes!(reports::movement_trend))
        .routes(routes!(documents::list_documents))
        .routes(routes!(documents::get_document))
        .routes(routes!(export::sales_csv))
        .routes(routes!(export::movements_csv))
        .routes(routes!(export::stock_csv))
        .routes(routes!(export::profit_csv))
        .routes(routes!(export::shifts_csv))
        .routes(routes!(mesh::create_invite))
        .routes(routes!(mesh::list_peers, mesh::add_peer))
        .routes(routes!(mesh::mesh_info))
        .routes(routes!(sse::events))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::dismiss_alert))
        .routes(routes!(audit::audit))
        .routes(routes!(audit::audit_export))
        .routes(routes!(catalog_csv::import_products))
        .routes(routes!(catalog_csv::products_csv))
        .routes(routes!(catalog_csv::sale_lines_csv))
        .routes(routes!(backup::backup))
        .routes(routes!(relay::server_info));
    OpenApiRouter::with_openapi(base_document()).nest("/api/v1", v1)
}

/// The parts of the OpenAPI document that are not derived from handlers.
fn base_document() -> OpenApi {
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The `token` returned by `POST /api/v1/login`, as `Authorization: Bearer <token>`.",
            ))
            .build(),
    );
    let cookie = SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
        SESSION_COOKIE,
        "The session cookie set by `POST /api/v1/login`. Unsafe methods (POST, PATCH, PUT, \
         DELETE) also need the header `X-CSRF-Token` with the `csrf_token` of the login.",
    )));
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tillmesh")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP/JSON API of a tillmesh node. Money is always an integer number of \
                     the currency's minor units; tax rates are basis points. Errors have the \
                     shape `{\"error\":{\"code\",\"message\",\"field\"}}`.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("bearer", bearer)
                .security_scheme("session_cookie", cookie)
                .build(),
        ))
        .build()
}

/// `GET /api/v1/openapi.json`.
async fn openapi_document(json: Arc<str>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// A security header that a handler may still set itself.
fn security_header(name: HeaderName, value: HeaderValue) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, value)
}

/// Unknown routes: JSON under `/api/`, plain text elsewhere.
async fn not_found(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        let mut res = ApiError::RouteNotFound.into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    } else {
        (axum::http::StatusCode::NOT_FOUND, "not found").into_response()
    }
}

/// A known route asked with a method it does not have.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
