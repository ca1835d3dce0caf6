//! The HTTP API over an in-memory node: driven in-process with `tower::ServiceExt::oneshot`,
//! plus one test over real TCP with reqwest.
//!
//! Each test starts its own node with a shop whose owner is `olive`, builds the router on its
//! handle and talks JSON to it the way the web UI and integrators do.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures::StreamExt;
use serde_json::{Value, json};
use tillmesh::Node;
use tillmesh::api::{self, ApiOptions};
use tillmesh::domain::model::{NewShop, TaxMode};
use tower::ServiceExt;

const OWNER: &str = "olive";
const OWNER_PASSWORD: &str = "correct horse battery";
const MANAGER_PASSWORD: &str = "long-enough-pw";
const STAFF_PIN: &str = "1234";

/// A node with a shop and the router on it.
struct App {
    node: Node,
    router: Router,
}

/// A response, its body parsed as JSON when it is JSON (else `Null`).
#[derive(Debug)]
struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    #[track_caller]
    fn expect(self, status: u16) -> Res {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
struct Session {
    token: String,
    csrf: String,
    /// `tillmesh_session=<token>`, as a `Cookie` header value.
    cookie: String,
    set_cookie: String,
}

async fn start(opts: ApiOptions) -> App {
    let node = Node::builder()
        .memory()
        .start()
        .await
        .expect("an in-memory node starts");
    node.handle()
        .create_shop(NewShop {
            shop_name: "Corner Shop".into(),
            owner_name: "Olive Owner".into(),
            username: OWNER.into(),
            password: OWNER_PASSWORD.into(),
            currency: Some("EUR".into()),
            timezone: Some("Europe/Paris".into()),
            tax_mode: Some(TaxMode::Inclusive),
            device_name: Some("Till 1".into()),
        })
        .await
        .expect("the shop is created");
    let router = api::router(node.handle(), opts);
    App { node, router }
}

async fn start_default() -> App {
    start(ApiOptions::default()).await
}

/// A request with an optional bearer token and an optional JSON body.
fn req(method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    b.body(body).expect("a valid request")
}

/// A request with a raw body and the given content type (if any).
fn raw_req(
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).expect("a valid request")
}

/// A request authenticated by the session cookie, with an optional CSRF header.
fn cookie_req(
    method: &str,
    path: &str,
    session: &Session,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, &session.cookie);
    if let Some(csrf) = csrf {
        b = b.header("x-csrf-token", csrf);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    b.body(body).expect("a valid request")
}

async fn call_on(router: &Router, request: Request<Body>) -> Res {
    let res = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = res.status();
    let headers = res.headers().clone();
    let raw = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("a readable body")
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Res {
        status,
        headers,
        body,
        raw,
    }
}

impl App {
    async fn call(&self, request: Request<Body>) -> Res {
        call_on(&self.router, request).await
    }

    async fn get(&self, path: &str, token: &str) -> Res {
        self.call(req("GET", path, Some(token), None)).await
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> Res {
        self.call(req("POST", path, Some(token), Some(body))).await
    }

    async fn patch(&self, path: &str, token: &str, body: &Value) -> Res {
        self.call(req("PATCH", path, Some(token), Some(body))).await
    }

    async fn login(&self, body: Value) -> Session {
        let res = self
            .call(req("POST", "/api/v1/login", None, Some(&body)))
            .await
            .expect(200);
        session_of(&res)
    }

    async fn login_owner(&self) -> Session {
        self.login(json!({"username": OWNER, "password": OWNER_PASSWORD}))
            .await
    }

    /// Adds the manager `mia` and the staff member `sam`; returns their sessions.
    async fn add_team(&self, owner: &Session) -> (Session, Session) {
        self.post(
            "/api/v1/people",
            &owner.token,
            &json!({"name": "Mia", "username": "mia", "role": "manager", "password": MANAGER_PASSWORD}),
        )
        .await
        .expect(201);
        self.post(
            "/api/v1/people",
            &owner.token,
            &json!({"name": "Sam", "username": "sam", "role": "staff", "pin": STAFF_PIN}),
        )
        .await
        .expect(201);
        let manager = self
            .login(json!({"username": "mia", "password": MANAGER_PASSWORD}))
            .await;
        let staff = self
            .login(json!({"username": "sam", "pin": STAFF_PIN}))
            .await;
        (manager, staff)
    }

    /// Creates a product and returns it.
    async fn product(&self, token: &str, sku: &str, price: i64) -> Value {
        self.post(
            "/api/v1/products",
            token,
            &json!({"sku": sku, "name": format!("Product {sku}"), "price": price}),
        )
        .await
        .expect(201)
        .body
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

fn session_of(res: &Res) -> Session {
    let token = res.body["token"]
        .as_str()
        .expect("a token in the login response")
        .to_owned();
    let csrf = res.body["csrf_token"]
        .as_str()
        .expect("a csrf_token in the login response")
        .to_owned();
    let set_cookie = res
        .header("set-cookie")
        .expect("login sets the session cookie")
        .to_owned();
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("a cookie pair")
        .trim()
        .to_owned();
    Session {
        token,
        csrf,
        cookie,
        set_cookie,
    }
}

/// Asserts the status and the `{"error":{"code","message","field"}}` shape.
#[track_caller]
fn assert_error(res: &Res, status: u16, code: &str) {
    assert_eq!(
        res.status.as_u16(),
        status,
        "unexpected status; body: {}",
        res.text()
    );
    let error = &res.body["error"];
    assert_eq!(error["code"], code, "unexpected code; body: {}", res.text());
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error message; body: {}",
        res.text()
    );
    assert!(
        error
            .get("field")
            .is_some_and(|f| f.is_null() || f.is_string()),
        "a field (null or a string); body: {}",
        res.text()
    );
}

/// A sale of `qty` of one product paid in cash.
fn sale_of(product_id: &Value, qty: i64) -> Value {
    json!({"lines": [{"product_id": product_id, "qty": qty}], "payments": [{"method": "cash"}]})
}

#[tokio::test]
async fn login_answers_a_token_a_csrf_token_and_a_strict_cookie() {
    let app = start_default().await;
    let res = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": OWNER_PASSWORD})),
        ))
        .await
        .expect(200);
    assert_eq!(res.body["person"]["username"], OWNER);
    assert_eq!(res.body["person"]["name"], "Olive Owner");
    assert_eq!(res.body["person"]["role"], "owner");
    assert!(res.body["person"]["id"].is_string());
    assert_eq!(res.body["expires_in"], 12 * 60 * 60);
    let session = session_of(&res);
    assert_eq!(session.token.len(), 64, "a 256-bit hex token");
    assert_ne!(session.token, session.csrf);
    assert_eq!(
        session.cookie,
        format!("tillmesh_session={}", session.token)
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            session.set_cookie.contains(attribute),
            "{attribute} in {}",
            session.set_cookie
        );
    }
    assert!(!session.set_cookie.contains("Secure"));

    let me = app.get("/api/v1/me", &session.token).await.expect(200);
    assert_eq!(me.body["person"]["username"], OWNER);
    assert_eq!(me.body["csrf_token"], session.csrf.as_str());
    app.stop().await;
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let app = start(ApiOptions {
        secure_cookies: true,
        ..ApiOptions::default()
    })
    .await;
    let session = app.login_owner().await;
    assert!(session.set_cookie.contains("; Secure"));
    app.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_401() {
    let app = start_default().await;
    let wrong_password = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": "not the password"})),
        ))
        .await;
    assert_error(&wrong_password, 401, "unauthorized");
    assert!(wrong_password.header("set-cookie").is_none());
    let unknown_user = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": "nobody", "password": "not the password"})),
        ))
        .await;
    assert_error(&unknown_user, 401, "unauthorized");
    assert_eq!(
        wrong_password.body["error"]["message"], unknown_user.body["error"]["message"],
        "unknown users and wrong passwords answer alike"
    );
    // Neither or both secrets.
    let neither = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER})),
        ))
        .await;
    assert_error(&neither, 400, "invalid");
    let both = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": OWNER_PASSWORD, "pin": "1234"})),
        ))
        .await;
    assert_error(&both, 400, "invalid");
    app.stop().await;
}

#[tokio::test]
async fn logins_are_limited_per_username() {
    let app = start(ApiOptions {
        login_user_limit: 3,
        login_ip_limit: 100,
        ..ApiOptions::default()
    })
    .await;
    let wrong = json!({"username": OWNER, "password": "not the password"});
    for _ in 0..3 {
        let res = app
            .call(req("POST", "/api/v1/login", None, Some(&wrong)))
            .await;
        assert_error(&res, 401, "unauthorized");
    }
    // Refused without checking the password, even the right one.
    let res = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": OWNER_PASSWORD})),
        ))
        .await;
    assert_error(&res, 429, "rate_limited");
    let retry_after: u64 = res
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=15 * 60).contains(&retry_after),
        "retry after {retry_after} s"
    );
    // Other usernames are not affected.
    let other = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": "someone-else", "password": "not the password"})),
        ))
        .await;
    assert_error(&other, 401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn a_successful_login_resets_the_username_count() {
    let app = start(ApiOptions {
        login_user_limit: 3,
        login_ip_limit: 100,
        ..ApiOptions::default()
    })
    .await;
    let wrong = json!({"username": OWNER, "password": "not the password"});
    for _ in 0..2 {
        let res = app
            .call(req("POST", "/api/v1/login", None, Some(&wrong)))
            .await;
        assert_error(&res, 401, "unauthorized");
    }
    app.login_owner().await;
    for _ in 0..2 {
        let res = app
            .call(req("POST", "/api/v1/login", None, Some(&wrong)))
            .await;
        assert_error(&res, 401, "unauthorized");
    }
    app.login_owner().await;
    app.stop().await;
}

#[tokio::test]
async fn logins_are_limited_per_client_address() {
    let app = start(ApiOptions {
        login_user_limit: 100,
        login_ip_limit: 4,
        ..ApiOptions::default()
    })
    .await;
    let from_a = app
        .router
        .clone()
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 10], 40000))));
    let from_b = app
        .router
        .clone()
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 11], 40000))));
    for i in 0..4 {
        let res = call_on(
            &from_a,
            req(
                "POST",
                "/api/v1/login",
                None,
                Some(&json!({"username": format!("guess{i}"), "password": "not the password"})),
            ),
        )
        .await;
        assert_error(&res, 401, "unauthorized");
    }
    let res = call_on(
        &from_a,
        req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": OWNER_PASSWORD})),
        ),
    )
    .await;
    assert_error(&res, 429, "rate_limited");
    assert!(res.header("retry-after").is_some());
    // Another address logs in fine.
    call_on(
        &from_b,
        req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": OWNER, "password": OWNER_PASSWORD})),
        ),
    )
    .await
    .expect(200);
    app.stop().await;
}

#[tokio::test]
async fn unauthenticated_requests_are_401() {
    let app = start_default().await;
    let res = app.call(req("GET", "/api/v1/stock", None, None)).await;
    assert_error(&res, 401, "unauthorized");
    let res = app
        .call(req(
            "POST",
            "/api/v1/sales",
            None,
            Some(&json!({"lines": [], "payments": []})),
        ))
        .await;
    assert_error(&res, 401, "unauthorized");
    let res = app
        .get("/api/v1/products", "00000000000000000000000000000000")
        .await;
    assert_error(&res, 401, "unauthorized");
    let res = app
        .call(
            Request::builder()
                .uri("/api/v1/products")
                .header(header::AUTHORIZATION, "Basic b2xpdmU6cHc=")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&res, 401, "unauthorized");
    let res = app.call(req("GET", "/api/v1/events", None, None)).await;
    assert_error(&res, 401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = start_default().await;
    let session = app.login_owner().await;
    let res = app
        .call(req("POST", "/api/v1/logout", Some(&session.token), None))
        .await
        .expect(204);
    let cleared = res.header("set-cookie").expect("the cookie is cleared");
    assert!(cleared.starts_with("tillmesh_session=;"));
    assert!(cleared.contains("Max-Age=0"));
    assert_error(
        &app.get("/api/v1/me", &session.token).await,
        401,
        "unauthorized",
    );
    app.stop().await;
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_changes() {
    let app = start_default().await;
    let session = app.login_owner().await;
    let product = json!({"sku": "CSRF-1", "name": "Cookie", "price": 250});

    let res = app
        .call(cookie_req(
            "POST",
            "/api/v1/products",
            &session,
            None,
            Some(&product),
        ))
        .await;
    assert_error(&res, 403, "csrf");
    let res = app
        .call(cookie_req(
            "POST",
            "/api/v1/products",
            &session,
            Some("not-the-token"),
            Some(&product),
        ))
        .await;
    assert_error(&res, 403, "csrf");

    // Reads need no token; nothing was created.
    let list = app
        .call(cookie_req("GET", "/api/v1/products", &session, None, None))
        .await
        .expect(200);
    assert!(
        !list.text().contains("CSRF-1"),
        "nothing created without the token: {}",
        list.text()
    );
    // Responses to cookie requests renew the cookie.
    let renewed = list.header("set-cookie").expect("the cookie is renewed");
    assert!(renewed.starts_with(&session.cookie));
    assert!(renewed.contains("HttpOnly") && renewed.contains("SameSite=Strict"));

    let created = app
        .call(cookie_req(
            "POST",
            "/api/v1/products",
            &session,
            Some(&session.csrf),
            Some(&product),
        ))
        .await
        .expect(201);
    assert_eq!(created.body["sku"], "CSRF-1");

    // Bearer requests need no CSRF token.
    app.product(&session.token, "CSRF-2", 100).await;

    // Logging out with the cookie needs the token too.
    let res = app
        .call(cookie_req("POST", "/api/v1/logout", &session, None, None))
        .await;
    assert_error(&res, 403, "csrf");
    app.call(cookie_req(
        "POST",
        "/api/v1/logout",
        &session,
        Some(&session.csrf),
        None,
    ))
    .await
    .expect(204);
    app.stop().await;
}

#[tokio::test]
async fn staff_sell_and_receive_but_cannot_change_prices_or_see_people() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let (_manager, staff) = app.add_team(&owner).await;
    let product = app.product(&owner.token, "TEA-1", 250).await;
    let id = product["id"].as_str().unwrap().to_owned();

    let res = app
        .patch(
            &format!("/api/v1/products/{id}"),
            &staff.token,
            &json!({"price": 1}),
        )
        .await;
    assert_error(&res, 403, "forbidden");
    let after = app
        .get(&format!("/api/v1/products/{id}"), &staff.token)
        .await
        .expect(200);
    assert_eq!(after.body["price"], 250, "the price is unchanged");

    let movement = app
        .post(
            "/api/v1/stock/in",
            &staff.token,
            &json!({"product_id": id, "qty": 10}),
        )
        .await
        .expect(201);
    assert_eq!(movement.body["qty"], 10);
    assert_eq!(movement.body["kind"], "stock_in");
    let sale = app
        .post("/api/v1/sales", &staff.token, &sale_of(&product["id"], 2))
        .await
        .expect(201);
    assert_eq!(sale.body["lines"][0]["qty"], 2);
    assert_eq!(sale.body["total"], 500);

    assert_error(
        &app.get("/api/v1/people", &staff.token).await,
        403,
        "forbidden",
    );
    assert_error(
        &app.get("/api/v1/documents", &staff.token).await,
        403,
        "forbidden",
    );
    assert_error(
        &app.get("/api/v1/documents/catalog", &staff.token).await,
        403,
        "forbidden",
    );
    app.stop().await;
}

/// Method, path, content type, body, expected status, expected error field.
type BadCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    String,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let app = start(ApiOptions {
        login_user_limit: 0,
        login_ip_limit: 0,
        ..ApiOptions::default()
    })
    .await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app.product(t, "BASE-1", 300).await;
    let pid = product["id"].as_str().unwrap().to_owned();
    app.post("/api/v1/stock/in", t, &json!({"product_id": pid, "qty": 5}))
        .await
        .expect(201);

    let snapshot = |app: &App| {
        let t = owner.token.clone();
        let pid = pid.clone();
        let router = app.router.clone();
        async move {
            let mut out = Vec::new();
            for path in [
                "/api/v1/products?include_archived=true".to_owned(),
                "/api/v1/stock".to_owned(),
                format!("/api/v1/stock/{pid}/movements"),
                "/api/v1/sales?from=0".to_owned(),
            ] {
                let res = call_on(&router, req("GET", &path, Some(&t), None))
                    .await
                    .expect(200);
                out.push(res.body);
            }
            out
        }
    };
    let before = snapshot(&app).await;

    let json_ct = Some("application/json");
    let cases: Vec<BadCase> = vec![
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            json!({"sku": "B-1", "name": "Bad", "price": 100, "colour": "red"}).to_string(),
            400,
            Some("colour"),
        ),
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            json!({"sku": "B-1", "name": "Bad", "price": "100"}).to_string(),
            400,
            Some("price"),
        ),
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            json!({"sku": "B-1", "name": "Bad"}).to_string(),
            400,
            Some("price"),
        ),
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            "{\"sku\": \"B-1\", \"name\":".into(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            "[1, 2, 3]".into(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/products".into(),
            None,
            json!({"sku": "B-1", "name": "Bad", "price": 100}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/products".into(),
            Some("text/plain"),
            json!({"sku": "B-1", "name": "Bad", "price": 100}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/stock/in".into(),
            json_ct,
            json!({"product_id": pid, "qty": -3}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/stock/in".into(),
            json_ct,
            json!({"product_id": pid, "qty": 0}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/stock/in".into(),
            json_ct,
            json!({"product_id": "not-a-uuid", "qty": 3}).to_string(),
            400,
            Some("product_id"),
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json_ct,
            json!({"lines": [], "payments": [{"method": "cash"}]}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json_ct,
            json!({"lines": [{"product_id": pid, "qty": -1}], "payments": [{"method": "cash"}]})
                .to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json_ct,
            json!({"lines": [{"product_id": pid, "qty": "two"}], "payments": [{"method": "cash"}]})
                .to_string(),
            400,
            Some("lines[0].qty"),
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json_ct,
            json!({"lines": [{"product_id": pid, "qty": 1}], "payments": [{"method": "bitcoin"}]})
                .to_string(),
            400,
            Some("payments[0].method"),
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json_ct,
            json!({"lines": [{"product_id": pid, "qty": 1, "price": 1}], "payments": [{"method": "cash"}]})
                .to_string(),
            400,
            Some("lines[0].price"),
        ),
        (
            "PATCH",
            format!("/api/v1/products/{pid}"),
            json_ct,
            json!({"price": "free"}).to_string(),
            400,
            Some("price"),
        ),
        (
            "PATCH",
            "/api/v1/products/not-a-uuid".into(),
            json_ct,
            json!({"price": 1}).to_string(),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/products".into(),
            json_ct,
            json!({"sku": "HUGE", "name": "x".repeat(300 * 1024), "price": 1}).to_string(),
            413,
            None,
        ),
    ];
    for (method, path, content_type, body, status, field) in cases {
        let res = app
            .call(raw_req(method, &path, Some(t), content_type, body.clone()))
            .await;
        let code = if status == 413 {
            "too_large"
        } else {
            "invalid"
        };
        assert_error(&res, status, code);
        if let Some(field) = field {
            assert_eq!(
                res.body["error"]["field"],
                field,
                "{method} {path} {body:.200}: {}",
                res.text()
            );
        }
    }

    // Queries that make no sense.
    for path in [
        "/api/v1/sales?from=yesterday",
        "/api/v1/sales?from=2026-02-10&to=2026-02-01",
        "/api/v1/products?include_archived=maybe",
        "/api/v1/reports/daily?from=last-week",
    ] {
        assert_error(&app.get(path, t).await, 400, "invalid");
    }

    // Unknown products: the core decides between 404 and 400; either way nothing changes.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (path, body) in [
        ("/api/v1/sales", sale_of(&json!(unknown), 1)),
        ("/api/v1/stock/in", json!({"product_id": unknown, "qty": 1})),
    ] {
        let res = app.post(path, t, &body).await;
        assert!(
            matches!(res.status.as_u16(), 400 | 404),
            "{path}: {}",
            res.text()
        );
        assert!(res.body["error"]["code"].is_string());
    }
    assert_error(
        &app.get(&format!("/api/v1/products/{unknown}"), t).await,
        404,
        "not_found",
    );

    assert_eq!(before, snapshot(&app).await, "bad input changed nothing");
    app.stop().await;
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    for (path, token, api) in [
        ("/", None, false),
        ("/app.js", None, false),
        ("/app.css", None, false),
        ("/screens/sell.js", None, false),
        ("/fonts/inter-latin-400.woff2", None, false),
        ("/health", None, false),
        ("/api/v1/health", None, true),
        ("/api/v1/status", None, true),
        ("/api/v1/stock", None, true),
        ("/api/v1/stock", Some(owner.token.as_str()), true),
        ("/api/v1/no-such-route", None, true),
        ("/api/v1/openapi.json", None, true),
    ] {
        let res = app.call(req("GET", path, token, None)).await;
        assert_eq!(
            res.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(res.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(
            res.header("content-security-policy"),
            Some(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 frame-ancestors 'none'"
            ),
            "{path}"
        );
        if api {
            assert_eq!(res.header("cache-control"), Some("no-store"), "{path}");
        }
    }
    let not_found = app
        .call(req("GET", "/api/v1/no-such-route", None, None))
        .await;
    assert_error(&not_found, 404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn health_status_and_setup_page_need_no_login() {
    let app = start_default().await;
    for path in ["/health", "/api/v1/health"] {
        let res = app.call(req("GET", path, None, None)).await.expect(200);
        assert_eq!(res.body, json!({"status": "ok", "has_shop": true}));
    }
    let status = app
        .call(req("GET", "/api/v1/status", None, None))
        .await
        .expect(200);
    assert_eq!(status.body["has_shop"], true);
    assert_eq!(status.body["shop_name"], "Corner Shop");

    let page = app.call(req("GET", "/", None, None)).await.expect(200);
    assert!(
        page.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html"))
    );
    let html = page.text();
    assert!(html.contains("/app.js") && html.contains("/app.css"));
    assert!(
        !html.contains("<script>"),
        "no inline script (the CSP forbids it)"
    );
    assert!(
        !html.contains("<style"),
        "no inline style (the CSP forbids it)"
    );
    // Every file of the UI is compiled in and served with its type.
    for (path, ty) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/icon.svg", "image/svg+xml"),
        ("/lib/api.js", "text/javascript"),
        ("/screens/setup.js", "text/javascript"),
        ("/fonts/inter-latin-700.woff2", "font/woff2"),
    ] {
        let res = app.call(req("GET", path, None, None)).await.expect(200);
        assert!(
            res.header("content-type")
                .is_some_and(|ct| ct.starts_with(ty)),
            "{path}: {:?}",
            res.header("content-type")
        );
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
    }
    let js = app
        .call(req("GET", "/screens/setup.js", None, None))
        .await
        .expect(200);
    let js = js.text();
    assert!(js.contains("\"/setup\"") && js.contains("\"/login\"") && js.contains("\"/join\""));
    assert!(js.contains("shown only once"));
    let api_js = app
        .call(req("GET", "/lib/api.js", None, None))
        .await
        .expect(200);
    assert!(api_js.text().contains("\"/api/v1\""));

    // The shop exists: setup is refused.
    let again = app
        .call(req(
            "POST",
            "/api/v1/setup",
            None,
            Some(&json!({
                "shop_name": "Other", "owner_name": "Eve", "username": "eve",
                "password": "another long password"
            })),
        ))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert!(again.body["error"]["code"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn setup_creates_the_shop_once() {
    let node = Node::builder()
        .memory()
        .start()
        .await
        .expect("an in-memory node starts");
    // The till's own screen (loopback) sets up without the setup token.
    let app = App {
        router: api::router(node.handle(), ApiOptions::default())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)))),
        node,
    };
    let health = app
        .call(req("GET", "/health", None, None))
        .await
        .expect(200);
    assert_eq!(health.body["has_shop"], false);
    let shop = json!({
        "shop_name": "Fresh Shop", "owner_name": "Fran", "username": "fran",
        "password": "a long enough password", "currency": "JPY", "timezone": "Asia/Tokyo",
        "tax_mode": "exclusive"
    });
    let created = app
        .call(req("POST", "/api/v1/setup", None, Some(&shop)))
        .await
        .expect(201);
    assert!(created.body["shop_id"].is_string());
    assert!(
        created.body["recovery_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    let again = app
        .call(req("POST", "/api/v1/setup", None, Some(&shop)))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let session = app
        .login(json!({"username": "fran", "password": "a long enough password"}))
        .await;
    let settings = app
        .get("/api/v1/settings", &session.token)
        .await
        .expect(200);
    assert_eq!(settings.body["currency"], "JPY");
    assert_eq!(settings.body["timezone"], "Asia/Tokyo");
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_the_routes() {
    let app = start_default().await;
    let res = app
        .call(req("GET", "/api/v1/openapi.json", None, None))
        .await
        .expect(200);
    let doc: Value = serde_json::from_slice(&res.raw).expect("the document is JSON");
    assert_eq!(doc["info"]["title"], "tillmesh");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/sales",
        "/api/v1/sales/{id}/void",
        "/api/v1/login",
        "/api/v1/logout",
        "/api/v1/stock",
        "/api/v1/stock/in",
        "/api/v1/stock/remove",
        "/api/v1/stock/adjust",
        "/api/v1/stock/{product_id}/movements",
        "/api/v1/people",
        "/api/v1/members/{id}/revoke",
        "/api/v1/documents",
        "/api/v1/documents/{id}",
        "/api/v1/events",
        "/api/v1/health",
        "/api/v1/reports/sales",
        "/api/v1/reports/top-sellers",
        "/api/v1/reports/staff",
        "/api/v1/reports/tax",
        "/api/v1/reports/payments",
        "/api/v1/reports/inventory",
        "/api/v1/reports/movements",
    ] {
        assert!(paths.contains_key(path), "{path} in the OpenAPI document");
    }
    assert!(paths["/api/v1/products"].get("get").is_some());
    assert!(paths["/api/v1/products"].get("post").is_some());
    assert!(paths["/api/v1/products/{id}"].get("patch").is_some());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for schema in [
        "NewProduct",
        "Product",
        "NewSale",
        "Sale",
        "StockIn",
        "Movement",
        "SalesReport",
        "TopSellers",
        "StaffReport",
        "TaxReport",
        "PaymentsReport",
        "InventoryValue",
        "MovementTrend",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema}"
        );
    }
    app.stop().await;
}

/// What a role should get from a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// 2xx.
    Ok,
    /// 403 `forbidden`.
    Forbidden,
}

#[tokio::test]
async fn role_matrix() {
    use Want::{Forbidden as F, Ok as O};

    let app = start_default().await;
    let owner = app.login_owner().await;
    let (manager, staff) = app.add_team(&owner).await;
    let product = app.product(&owner.token, "MATRIX-1", 400).await;
    let pid = product["id"].as_str().unwrap().to_owned();
    app.post(
        "/api/v1/stock/in",
        &owner.token,
        &json!({"product_id": pid, "qty": 100}),
    )
    .await
    .expect(201);
    let sale = app
        .post("/api/v1/sales", &owner.token, &sale_of(&product["id"], 5))
        .await
        .expect(201);
    let sid = sale.body["id"].as_str().unwrap().to_owned();
    let temp = app
        .post(
            "/api/v1/people",
            &owner.token,
            &json!({"name": "Tem", "username": "tem", "role": "staff", "pin": "5678"}),
        )
        .await
        .expect(201);
    let temp_id = temp.body["id"].as_str().unwrap().to_owned();
    let sup = app
        .post(
            "/api/v1/suppliers",
            &owner.token,
            &json!({"name": "Bean Co"}),
        )
        .await
        .expect(201);
    let sup_id = sup.body["id"].as_str().unwrap().to_owned();
    let po = app
        .post(
            "/api/v1/purchase-orders",
            &owner.token,
            &json!({"supplier_id": sup_id, "lines": [{"product_id": pid, "qty": 100, "unit_cost": 150}]}),
        )
        .await
        .expect(201);
    let po_id = po.body["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/api/v1/purchase-orders/{po_id}"),
        &owner.token,
        &json!({"status": "sent"}),
    )
    .await
    .expect(200);

    // Rows: method, path, body, and what staff, manager and owner get. Roles run in that
    // order, so that the owner's revocation comes last.
    let rows = |role: &str| -> Vec<(&'static str, String, Option<Value>, [Want; 3])> {
        vec![
            ("GET", "/api/v1/me".into(), None, [O, O, O]),
            ("GET", "/api/v1/products".into(), None, [O, O, O]),
            (
                "POST",
                "/api/v1/products".into(),
                Some(json!({"sku": format!("BY-{role}"), "name": "New", "price": 100})),
                [F, O, O],
            ),
            ("GET", format!("/api/v1/products/{pid}"), None, [O, O, O]),
            (
                "PATCH",
                format!("/api/v1/products/{pid}"),
                Some(json!({"name": format!("Renamed by {role}")})),
                [F, O, O],
            ),
            ("GET", "/api/v1/stock".into(), None, [O, O, O]),
            (
                "GET",
                format!("/api/v1/stock/{pid}/movements"),
                None,
                [O, O, O],
            ),
            (
                "POST",
                "/api/v1/stock/in".into(),
                Some(json!({"product_id": pid, "qty": 2, "note": role})),
                [O, O, O],
            ),
            (
                "POST",
                "/api/v1/stock/remove".into(),
                Some(json!({"product_id": pid, "qty": 1, "reason": "damaged"})),
                [F, O, O],
            ),
            (
                "POST",
                "/api/v1/stock/adjust".into(),
                Some(json!({"product_id": pid, "counted": 80})),
                [F, O, O],
            ),
            (
                "POST",
                "/api/v1/sales".into(),
                Some(sale_of(&json!(pid), 1)),
                [O, O, O],
            ),
            ("GET", "/api/v1/sales".into(), None, [O, O, O]),
            ("GET", format!("/api/v1/sales/{sid}"), None, [O, O, O]),
            (
                "POST",
                format!("/api/v1/sales/{sid}/return"),
                Some(json!({"lines": [{"line": 0, "qty": 1}]})),
                [F, O, O],
            ),
            ("GET", "/api/v1/people".into(), None, [F, O, O]),
            (
                "POST",
                "/api/v1/people".into(),
                Some(json!({
                    "name": format!("Staff by {role}"), "username": format!("staff-{role}"),
                    "role": "staff", "pin": "4321"
                })),
                [F, O, O],
            ),
            ("GET", "/api/v1/devices".into(), None, [O, O, O]),
            ("GET", "/api/v1/settings".into(), None, [O, O, O]),
            (
                "PATCH",
                "/api/v1/settings".into(),
                Some(json!({"receipt_text": format!("Thanks from {role}")})),
                [F, F, O],
            ),
            ("GET", "/api/v1/documents".into(), None, [F, O, O]),
            ("GET", "/api/v1/documents/catalog".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/daily".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/sales".into(), None, [F, O, O]),
            (
                "GET",
                "/api/v1/reports/top-sellers?days=7".into(),
                None,
                [F, O, O],
            ),
            ("GET", "/api/v1/reports/staff".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/tax".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/payments".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/inventory".into(), None, [F, O, O]),
            ("GET", "/api/v1/reports/movements".into(), None, [F, O, O]),
            ("GET", "/api/v1/export/sales.csv".into(), None, [F, O, O]),
            ("GET", "/api/v1/export/stock.csv".into(), None, [F, O, O]),
            ("GET", "/api/v1/export/profit.csv".into(), None, [F, O, O]),
            ("GET", "/api/v1/export/shifts.csv".into(), None, [F, O, O]),
            ("GET", "/api/v1/suppliers".into(), None, [O, O, O]),
            (
                "POST",
                "/api/v1/suppliers".into(),
                Some(json!({"name": format!("Supplier of {role}")})),
                [F, O, O],
            ),
            (
                "PUT",
                format!("/api/v1/suppliers/{sup_id}"),
                Some(json!({"name": format!("Bean Co ({role})")})),
                [F, O, O],
            ),
            ("GET", "/api/v1/purchase-orders".into(), None, [O, O, O]),
            (
                "GET",
                format!("/api/v1/purchase-orders/{po_id}"),
                None,
                [O, O, O],
            ),
            (
                "POST",
                "/api/v1/purchase-orders".into(),
                Some(json!({"supplier_id": sup_id, "lines": [{"product_id": pid, "qty": 3}]})),
                [F, O, O],
            ),
            (
                "POST",
                format!("/api/v1/purchase-orders/{po_id}/deliveries"),
                Some(
                    json!({"note_number": format!("DN-{role}"), "lines": [{"product_id": pid, "qty": 2}]}),
                ),
                [O, O, O],
            ),
            ("GET", "/api/v1/shifts/current".into(), None, [O, O, O]),
            (
                "POST",
                "/api/v1/shifts".into(),
                Some(json!({"float": 5000})),
                [O, O, O],
            ),
            (
                "POST",
                "/api/v1/shifts/current/cash".into(),
                Some(json!({"kind": "pay_in", "amount": 100, "reason": "change"})),
                [O, O, O],
            ),
            (
                "POST",
                "/api/v1/shifts/current/close".into(),
                Some(json!({"counted": 5100})),
                [O, O, O],
            ),
            ("GET", "/api/v1/shifts".into(), None, [F, O, O]),
            (
                "POST",
                "/api/v1/refunds".into(),
                Some(json!({"lines": [{"product_id": pid, "qty": 1}], "reason": "no receipt"})),
                [F, O, O],
            ),
            ("GET", "/api/v1/refunds".into(), None, [F, O, O]),
            (
                "POST",
                "/api/v1/tickets".into(),
                Some(
                    json!({"name": format!("Table of {role}"), "lines": [{"product_id": pid, "qty": 1}]}),
                ),
                [O, O, O],
            ),
            ("GET", "/api/v1/tickets?open=true".into(), None, [O, O, O]),
            ("GET", "/api/v1/reports/profit".into(), None, [F, O, O]),
            (
                "GET",
                "/api/v1/reports/profit/products".into(),
                None,
                [F, O, O],
            ),
            (
                "GET",
                format!("/api/v1/sales/{sid}/profit"),
                None,
                [F, O, O],
            ),
            ("GET", "/api/v1/reports/low-stock".into(), None, [O, O, O]),
            ("GET", "/api/v1/periods".into(), None, [F, O, O]),
            (
                "POST",
                "/api/v1/periods".into(),
                Some(json!({"through": "2020-01-01"})),
                [F, F, O],
            ),
            (
                "POST",
                format!("/api/v1/members/{temp_id}/revoke"),
                None,
                [F, F, O],
            ),
        ]
    };

    for (i, (role, session)) in [("staff", &staff), ("manager", &manager), ("owner", &owner)]
        .into_iter()
        .enumerate()
    {
        for (method, path, body, wants) in rows(role) {
            let res = app
                .call(req(method, &path, Some(&session.token), body.as_ref()))
                .await;
            match wants[i] {
                Want::Ok => assert!(
                    res.status.is_success(),
                    "{role}: {method} {path} should succeed, got {}: {}",
                    res.status,
                    res.text()
                ),
                Want::Forbidden => {
                    assert_eq!(
                        res.status,
                        StatusCode::FORBIDDEN,
                        "{role}: {method} {path} should be forbidden: {}",
                        res.text()
                    );
                    assert_eq!(
                        res.body["error"]["code"], "forbidden",
                        "{role}: {method} {path}"
                    );
                }
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_person_loses_their_session() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let (_manager, staff) = app.add_team(&owner).await;
    app.get("/api/v1/stock", &staff.token).await.expect(200);
    let people = app.get("/api/v1/people", &owner.token).await.expect(200);
    let sam = people
        .body
        .as_array()
        .expect("a list of people")
        .iter()
        .find(|p| p["username"] == "sam")
        .expect("sam is listed")
        .clone();
    app.call(req(
        "POST",
        &format!("/api/v1/members/{}/revoke", sam["id"].as_str().unwrap()),
        Some(&owner.token),
        None,
    ))
    .await
    .expect(204);
    assert_error(
        &app.get("/api/v1/stock", &staff.token).await,
        401,
        "unauthorized",
    );
    let again = app
        .call(req(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"username": "sam", "pin": STAFF_PIN})),
        ))
        .await;
    assert!(again.status.is_client_error(), "{}", again.text());
    app.stop().await;
}

#[tokio::test]
async fn products_can_be_searched_and_archived() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let tea = app.product(t, "TEA-GREEN", 300).await;
    app.post(
        "/api/v1/products",
        t,
        &json!({"sku": "COF-1", "name": "Coffee beans", "price": 900, "barcode": "4006381333931"}),
    )
    .await
    .expect(201);
    let skus = |res: &Res| -> Vec<String> {
        res.body
            .as_array()
            .expect("a list")
            .iter()
            .map(|p| p["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        skus(&app.get("/api/v1/products?q=tea-gr", t).await.expect(200)),
        ["TEA-GREEN"]
    );
    assert_eq!(
        skus(&app.get("/api/v1/products?q=COFFEE", t).await.expect(200)),
        ["COF-1"]
    );
    assert_eq!(
        skus(&app.get("/api/v1/products?q=0063813", t).await.expect(200)),
        ["COF-1"]
    );

    let archived = app
        .patch(
            &format!("/api/v1/products/{}", tea["id"].as_str().unwrap()),
            t,
            &json!({"archived": true}),
        )
        .await
        .expect(200);
    assert_eq!(archived.body["archived"], true);
    assert_eq!(
        skus(&app.get("/api/v1/products", t).await.expect(200)),
        ["COF-1"]
    );
    let mut all = skus(
        &app.get("/api/v1/products?include_archived=true", t)
            .await
            .expect(200),
    );
    all.sort();
    assert_eq!(all, ["COF-1", "TEA-GREEN"]);
    app.stop().await;
}

#[tokio::test]
async fn sales_are_listed_by_range_and_voided_without_a_body() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let (_manager, staff) = app.add_team(&owner).await;
    let product = app.product(&owner.token, "BREAD", 180).await;
    let sale = app
        .post("/api/v1/sales", &staff.token, &sale_of(&product["id"], 1))
        .await
        .expect(201)
        .body;
    let sid = sale["id"].as_str().unwrap();
    let day = sale["day"].as_str().unwrap();
    let time = sale["time"].as_i64().unwrap();

    let ids = |res: Res| -> Vec<String> {
        res.expect(200)
            .body
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let t = staff.token.as_str();
    assert_eq!(ids(app.get("/api/v1/sales", t).await), [sid]);
    assert_eq!(
        ids(app
            .get(&format!("/api/v1/sales?from={day}&to={day}"), t)
            .await),
        [sid]
    );
    assert_eq!(
        ids(app
            .get(&format!("/api/v1/sales?from={time}&to={}", time + 1), t)
            .await),
        [sid]
    );
    assert!(
        ids(app
            .get(&format!("/api/v1/sales?from={}", time + 1), t)
            .await)
        .is_empty()
    );
    assert!(
        ids(app
            .get("/api/v1/sales?from=2001-01-01&to=2001-01-31", t)
            .await)
        .is_empty()
    );
    assert!(
        ids(app
            .get(
                "/api/v1/sales?from=2001-01-01T00:00:00Z&to=2001-02-01T00:00:00%2B01:00",
                t
            )
            .await)
        .is_empty()
    );
    app.get(&format!("/api/v1/sales/{sid}"), t)
        .await
        .expect(200);

    // Staff void their own recent sale; the body is optional.
    let voided = app
        .call(req(
            "POST",
            &format!("/api/v1/sales/{sid}/void"),
            Some(t),
            None,
        ))
        .await
        .expect(200);
    assert!(voided.body["voided_by"].is_string());
    let again = app
        .post(
            &format!("/api/v1/sales/{sid}/void"),
            t,
            &json!({"reason": "twice"}),
        )
        .await;
    assert!(again.status.is_client_error(), "{}", again.text());

    let report = app
        .get(
            &format!("/api/v1/reports/daily?from={day}&to={day}"),
            &owner.token,
        )
        .await
        .expect(200);
    assert!(report.body.is_array());
    app.stop().await;
}

#[tokio::test]
async fn documents_hide_the_vault_and_accept_ids_with_slashes() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app.product(t, "DOC-1", 100).await;
    app.post("/api/v1/sales", t, &sale_of(&product["id"], 1))
        .await
        .expect(201);

    let docs = app.get("/api/v1/documents", t).await.expect(200);
    let ids: Vec<String> = docs
        .body
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|id| id != "vault"), "{ids:?}");
    assert!(ids.iter().any(|id| id == "catalog"), "{ids:?}");
    let ledger = ids
        .iter()
        .find(|id| id.starts_with("ledger/"))
        .expect("a ledger document after a sale");

    let encoded = app
        .get(
            &format!("/api/v1/documents/{}", ledger.replace('/', "%2F")),
            t,
        )
        .await
        .expect(200);
    assert_eq!(
        encoded.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(!encoded.raw.is_empty());
    let tail = app
        .get(&format!("/api/v1/documents/{ledger}"), t)
        .await
        .expect(200);
    assert_eq!(encoded.raw, tail.raw);

    let vault = app.get("/api/v1/documents/vault", t).await;
    assert_error(&vault, 404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn exports_are_csv_with_a_header_row() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app
        .post(
            "/api/v1/products",
            t,
            &json!({"sku": "CSV-1", "name": "Jam, \"homemade\"", "price": 1234}),
        )
        .await
        .expect(201)
        .body;
    app.post(
        "/api/v1/stock/in",
        t,
        &json!({"product_id": product["id"], "qty": 4, "unit_cost": 500}),
    )
    .await
    .expect(201);
    app.post("/api/v1/sales", t, &sale_of(&product["id"], 1))
        .await
        .expect(201);

    let sales = app.get("/api/v1/export/sales.csv", t).await.expect(200);
    assert!(
        sales
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/csv"))
    );
    let text = sales.text();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("sale_id,receipt,time,day,device")
    );
    let row = lines.next().expect("one sale line");
    assert!(row.contains("CSV-1"), "{row}");
    assert!(row.contains("\"Jam, \"\"homemade\"\"\""), "{row}");
    assert!(row.contains("12.34"), "{row}");
    assert!(lines.next().is_none());

    let movements = app.get("/api/v1/export/movements.csv", t).await.expect(200);
    let text = movements.text();
    assert!(text.starts_with("entry_id,time,product_id"));
    assert!(text.contains("stock_in") && text.contains("5.00"), "{text}");
    assert_eq!(text.lines().count(), 3, "header, stock-in, sale: {text}");

    let stock = app.get("/api/v1/export/stock.csv", t).await.expect(200);
    let text = stock.text();
    assert!(text.starts_with("product_id,variant_id,sku,name,on_hand"));
    assert!(text.contains("CSV-1"));
    app.stop().await;
}

#[tokio::test]
async fn events_stream_what_happens() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let product = app.product(&owner.token, "SSE-1", 100).await;

    let res = app
        .router
        .clone()
        .oneshot(req("GET", "/api/v1/events", Some(&owner.token), None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    );
    let mut body = res.into_body().into_data_stream();

    let sale = app
        .post("/api/v1/sales", &owner.token, &sale_of(&product["id"], 1))
        .await
        .expect(201)
        .body;

    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("a chunk")));
            if seen.contains("event: sale_recorded") && seen.contains(sale["id"].as_str().unwrap())
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the sale is streamed: {seen}");
    let data = seen
        .lines()
        .skip_while(|l| *l != "event: sale_recorded")
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let event: Value = serde_json::from_str(data).expect("JSON data");
    assert_eq!(event["type"], "sale_recorded");
    assert_eq!(event["sale_id"], sale["id"]);
    app.stop().await;
}

#[tokio::test]
async fn over_tcp_login_create_and_read_back() {
    let node = Node::builder()
        .memory()
        .start()
        .await
        .expect("an in-memory node starts");
    node.handle()
        .create_shop(NewShop {
            shop_name: "TCP Shop".into(),
            owner_name: "Olive Owner".into(),
            username: OWNER.into(),
            password: OWNER_PASSWORD.into(),
            currency: None,
            timezone: None,
            tax_mode: None,
            device_name: None,
        })
        .await
        .expect("the shop is created");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(
        listener,
        api::router(node.handle(), ApiOptions::default()),
        async move {
            let _ = stopped.await;
        },
    ));

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://{addr}/api/v1");
    let res = client
        .post(format!("{base}/login"))
        .json(&json!({"username": OWNER, "password": OWNER_PASSWORD}))
        .send()
        .await
        .expect("login request");
    assert_eq!(res.status().as_u16(), 200);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    assert!(cookie.starts_with("tillmesh_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    let login: Value = res.json().await.expect("JSON");
    let token = login["token"].as_str().unwrap().to_owned();

    let res = client
        .post(format!("{base}/products"))
        .bearer_auth(&token)
        .json(&json!({"sku": "TCP-1", "name": "Wire", "price": 1999}))
        .send()
        .await
        .expect("create request");
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = res.json().await.expect("JSON");

    let res = client
        .get(format!(
            "{base}/products/{}",
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let read: Value = res.json().await.expect("JSON");
    assert_eq!(read, created);
    assert_eq!(read["price"], 1999);

    // An open event stream does not hold up the graceful shutdown.
    let events = client
        .get(format!("{base}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("events request");
    assert_eq!(events.status().as_u16(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops despite the open event stream")
        .expect("the server task")
        .expect("serve ends cleanly");
    drop(events);
    node.shutdown().await;
}

/// `GET /sales` pages with `limit` and the `X-Next-Cursor` header: every sale exactly once,
/// nothing cut off silently.
#[tokio::test]
async fn sales_are_listed_a_page_at_a_time() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app.product(t, "PAGE", 100).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        let s = app
            .post("/api/v1/sales", t, &sale_of(&product["id"], 1))
            .await
            .expect(201)
            .body;
        made.push(s["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/sales?from=0&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let res = app.get(&path, t).await.expect(200);
        pages += 1;
        let page: Vec<String> = res
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(page.len() <= 2);
        seen.extend(page);
        match res.header("x-next-cursor") {
            Some(c) => {
                let link = res.header("link").expect("a Link header beside the cursor");
                assert!(link.contains(c) && link.ends_with("rel=\"next\""), "{link}");
                path = format!("/api/v1/sales?from=0&limit=2&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = made.clone();
    sorted.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, sorted, "every sale exactly once");
    // All of them in one page by default.
    let all = app.get("/api/v1/sales?from=0", t).await.expect(200);
    assert_eq!(all.body.as_array().unwrap().len(), 5);
    assert!(all.header("x-next-cursor").is_none());
    for bad in [
        "/api/v1/sales?limit=0",
        "/api/v1/sales?limit=10001",
        "/api/v1/sales?cursor=nonsense",
        "/api/v1/sales?cursor=12-zz",
    ] {
        let res = app.get(bad, t).await;
        assert_error(&res, 400, "invalid");
    }
    app.stop().await;
}

#[tokio::test]
async fn login_people_lists_who_may_log_in_and_nothing_secret() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    app.add_team(&owner).await;
    let people = app
        .call(req("GET", "/api/v1/login/people", None, None))
        .await
        .expect(200);
    let list = people.body.as_array().expect("a list");
    let usernames: Vec<&str> = list
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert_eq!(usernames.len(), 3, "{usernames:?}");
    for u in [OWNER, "mia", "sam"] {
        assert!(usernames.contains(&u), "{u} in {usernames:?}");
    }
    for p in list {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "only id, name, username, role: {keys:?}");
        for k in ["id", "name", "username", "role"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
    }
    let sam = list.iter().find(|p| p["username"] == "sam").unwrap();
    assert_eq!(sam["role"], "staff");

    // A revoked person is no longer offered.
    let sam_id = sam["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/members/{sam_id}/revoke"),
        &owner.token,
        &json!({}),
    )
    .await
    .expect(204);
    let people = app
        .call(req("GET", "/api/v1/login/people", None, None))
        .await
        .expect(200);
    assert!(
        people
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["username"] != "sam")
    );
    app.stop().await;
}

#[tokio::test]
async fn invites_carry_a_qr_code_and_mesh_info_needs_a_login() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let inv = app
        .post(
            "/api/v1/invites",
            &owner.token,
            &json!({"role": "till", "name": "Till 2"}),
        )
        .await
        .expect(201);
    assert!(inv.body["code"].is_string() && inv.body["invite"].is_string());
    let svg = inv.body["qr_svg"].as_str().expect("qr_svg");
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    assert!(
        !svg.contains("style="),
        "no inline style (the CSP forbids it)"
    );

    assert_error(
        &app.call(req("GET", "/api/v1/mesh", None, None)).await,
        401,
        "unauthorized",
    );
    let mesh = app.get("/api/v1/mesh", &owner.token).await.expect(200);
    // An in-memory node without a listen address does not sync.
    assert_eq!(mesh.body["running"], false);
    assert_eq!(mesh.body["mdns"], false);
    assert!(mesh.body["addrs"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn books_routes_refuse_bad_input_and_change_nothing() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app.product(t, "BOOKS-1", 300).await;
    let pid = product["id"].as_str().unwrap().to_owned();
    let sup = app
        .post("/api/v1/suppliers", t, &json!({"name": "Bean Co"}))
        .await
        .expect(201);
    let sup_id = sup.body["id"].as_str().unwrap().to_owned();
    let po = app
        .post(
            "/api/v1/purchase-orders",
            t,
            &json!({"supplier_id": sup_id, "lines": [{"product_id": pid, "qty": 10}]}),
        )
        .await
        .expect(201);
    let po_id = po.body["id"].as_str().unwrap().to_owned();
    let envelopes = app.node.handle().envelopes().unwrap().len();
    let nobody = uuid::Uuid::new_v4();

    // method, path, body, status, error code, field.
    type Case<'a> = (&'a str, String, Value, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/suppliers".into(),
            json!({"name": " "}),
            400,
            "invalid",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/suppliers".into(),
            json!({"name": "X", "email": "not-mail"}),
            400,
            "invalid",
            Some("email"),
        ),
        (
            "POST",
            "/api/v1/suppliers".into(),
            json!({"name": "X", "fax": "1"}),
            400,
            "invalid",
            None,
        ),
        (
            "PUT",
            format!("/api/v1/suppliers/{nobody}"),
            json!({"name": "X"}),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/purchase-orders".into(),
            json!({"supplier_id": nobody, "lines": [{"product_id": pid, "qty": 1}]}),
            400,
            "invalid",
            Some("supplier_id"),
        ),
        (
            "POST",
            "/api/v1/purchase-orders".into(),
            json!({"supplier_id": sup_id, "lines": []}),
            400,
            "invalid",
            Some("lines"),
        ),
        (
            "POST",
            "/api/v1/purchase-orders".into(),
            json!({"supplier_id": sup_id, "lines": [{"product_id": pid, "qty": 0}]}),
            400,
            "invalid",
            Some("lines[0].qty"),
        ),
        (
            "POST",
            "/api/v1/purchase-orders".into(),
            json!({"supplier_id": sup_id, "lines": [{"product_id": pid, "qty": 1}], "expected_on": "soon"}),
            400,
            "invalid",
            Some("expected_on"),
        ),
        (
            "PATCH",
            format!("/api/v1/purchase-orders/{po_id}"),
            json!({"status": "received"}),
            409,
            "conflict",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/purchase-orders/{po_id}"),
            json!({"status": "done"}),
            400,
            "invalid",
            None,
        ),
        (
            "GET",
            format!("/api/v1/purchase-orders/{nobody}"),
            Value::Null,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            format!("/api/v1/purchase-orders/{po_id}/deliveries"),
            json!({"note_number": "DN-1", "lines": [{"product_id": pid, "qty": 1}]}),
            409,
            "conflict",
            None,
        ),
        (
            "POST",
            "/api/v1/shifts".into(),
            json!({"float": -1}),
            400,
            "invalid",
            Some("float"),
        ),
        (
            "POST",
            "/api/v1/shifts/current/close".into(),
            json!({"counted": 0}),
            409,
            "conflict",
            None,
        ),
        (
            "POST",
            "/api/v1/shifts/current/cash".into(),
            json!({"kind": "pay_out", "amount": 1, "reason": "x"}),
            409,
            "conflict",
            None,
        ),
        (
            "GET",
            format!("/api/v1/shifts/{nobody}"),
            Value::Null,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/refunds".into(),
            json!({"lines": [], "reason": "x"}),
            400,
            "invalid",
            Some("lines"),
        ),
        (
            "POST",
            "/api/v1/refunds".into(),
            json!({"lines": [{"product_id": pid, "qty": 1}], "reason": ""}),
            400,
            "invalid",
            Some("reason"),
        ),
        (
            "POST",
            "/api/v1/tickets".into(),
            json!({"name": "T", "lines": []}),
            400,
            "invalid",
            Some("lines"),
        ),
        (
            "PUT",
            format!("/api/v1/tickets/{nobody}"),
            json!({"name": "T", "lines": [{"product_id": pid, "qty": 1}]}),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            format!("/api/v1/tickets/{nobody}/discard"),
            json!({}),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/sales".into(),
            json!({"lines": [{"product_id": pid, "qty": 1}], "payments": [{"method": "card"}], "ticket_id": nobody}),
            400,
            "invalid",
            Some("ticket_id"),
        ),
        (
            "GET",
            "/api/v1/reports/profit?from=2026-13-01".into(),
            Value::Null,
            400,
            "invalid",
            Some("from"),
        ),
        (
            "GET",
            "/api/v1/reports/profit?from=2026-02-01&to=2026-01-01".into(),
            Value::Null,
            400,
            "invalid",
            Some("from"),
        ),
        (
            "POST",
            "/api/v1/periods".into(),
            json!({"through": "2999-01-01"}),
            400,
            "invalid",
            Some("through"),
        ),
        (
            "POST",
            "/api/v1/periods".into(),
            json!({"through": "yesterday"}),
            400,
            "invalid",
            Some("through"),
        ),
        (
            "GET",
            format!("/api/v1/sales/{nobody}/profit"),
            Value::Null,
            404,
            "not_found",
            None,
        ),
    ];
    for (method, path, body, status, code, field) in cases {
        let body = (!body.is_null()).then_some(&body);
        let res = app.call(req(method, &path, Some(t), body)).await;
        assert_error(&res, status, code);
        if let Some(f) = field {
            assert_eq!(
                res.body["error"]["field"],
                f,
                "{method} {path}: {}",
                res.text()
            );
        }
    }
    assert_eq!(
        app.node.handle().envelopes().unwrap().len(),
        envelopes,
        "nothing was written"
    );
    app.stop().await;
}

/// The reports answer managers and owners with JSON in minor units, and refuse bad days, a
/// `from` after `to`, too long ranges and bad numbers with `400` naming the field.
#[tokio::test]
async fn reports_answer_in_minor_units_and_refuse_bad_ranges_with_the_field() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let t = owner.token.as_str();
    let product = app.product(t, "REP-1", 1250).await;
    app.post(
        "/api/v1/stock/in",
        t,
        &json!({"product_id": product["id"], "qty": 10, "unit_cost": 500}),
    )
    .await
    .expect(201);
    app.post("/api/v1/sales", t, &sale_of(&product["id"], 2))
        .await
        .expect(201);

    let sales = app
        .get("/api/v1/reports/sales?group=week", t)
        .await
        .expect(200);
    assert_eq!(sales.body["group"], "week");
    assert_eq!(sales.body["totals"]["count"], 1);
    assert_eq!(sales.body["totals"]["gross"], 2500);
    let day = sales.body["to"].as_str().unwrap().to_string();
    let top = app
        .get(
            &format!("/api/v1/reports/top-sellers?to={day}&days=1&limit=5"),
            t,
        )
        .await
        .expect(200);
    assert_eq!(top.body["by_qty"][0]["sku"], "REP-1");
    assert_eq!(top.body["by_qty"][0]["qty"], 2);
    assert_eq!(top.body["by_revenue"][0]["revenue"], 2500);
    let pay = app.get("/api/v1/reports/payments", t).await.expect(200);
    assert_eq!(pay.body["methods"][0]["method"], "cash");
    assert_eq!(pay.body["methods"][0]["received"], 2500);
    let inv = app.get("/api/v1/reports/inventory", t).await.expect(200);
    assert_eq!(inv.body["at_cost"], 8 * 500);
    assert_eq!(inv.body["at_retail"], 8 * 1250);
    let moves = app.get("/api/v1/reports/movements", t).await.expect(200);
    assert_eq!(moves.body["days"].as_array().unwrap().len(), 7);
    assert_eq!(moves.body["days"][6]["qty_in"], 10);
    assert_eq!(moves.body["days"][6]["qty_out"], 2);
    for path in ["/api/v1/reports/staff", "/api/v1/reports/tax"] {
        let r = app.get(path, t).await.expect(200);
        assert_eq!(r.body["to"], day, "{path}");
    }

    for (path, field) in [
        ("/api/v1/reports/sales?from=yesterday", "from"),
        ("/api/v1/reports/sales?to=2026-02-30", "to"),
        (
            "/api/v1/reports/sales?from=2026-02-10&to=2026-02-01",
            "from",
        ),
        (
            "/api/v1/reports/sales?from=2020-01-01&to=2026-01-01",
            "from",
        ),
        ("/api/v1/reports/sales?group=year", "group"),
        ("/api/v1/reports/tax?from=2026-02-10&to=2026-02-01", "from"),
        (
            "/api/v1/reports/staff?from=2020-01-01&to=2026-01-01",
            "from",
        ),
        ("/api/v1/reports/payments?to=tomorrow", "to"),
        ("/api/v1/reports/top-sellers?days=0", "days"),
        ("/api/v1/reports/top-sellers?days=400", "days"),
        ("/api/v1/reports/top-sellers?days=ten", "days"),
        ("/api/v1/reports/top-sellers?limit=101", "limit"),
        ("/api/v1/reports/top-sellers?to=2026-1-1", "to"),
        ("/api/v1/reports/movements?days=-1", "days"),
    ] {
        let res = app.get(path, t).await;
        assert_error(&res, 400, "invalid");
        assert_eq!(res.body["error"]["field"], field, "{path}: {}", res.text());
    }
    app.stop().await;
}

/// The sales of revoked tills are for owners only: a manager could otherwise add sales to the
/// books by accepting them. Bad selections get clear errors.
#[tokio::test]
async fn revoked_sales_are_for_owners_only() {
    let app = start_default().await;
    let owner = app.login_owner().await;
    let (manager, staff) = app.add_team(&owner).await;
    let res = app
        .call(req(
            "GET",
            "/api/v1/revoked-sales",
            Some(&owner.token),
            None,
        ))
        .await
        .expect(200);
    assert_eq!(res.body, json!([]));
    let select = json!({"device": "0123456789abcdef"});
    for who in [&manager, &staff] {
        let res = app
            .call(req("GET", "/api/v1/revoked-sales", Some(&who.token), None))
            .await
            .expect(403);
        assert_eq!(res.body["error"]["code"], "forbidden");
        for action in ["accept", "dismiss"] {
            app.post(
                &format!("/api/v1/revoked-sales/{action}"),
                &who.token,
                &select,
            )
            .await
            .expect(403);
        }
    }
    let res = app
        .post("/api/v1/revoked-sales/accept", &owner.token, &json!({}))
        .await
        .expect(400);
    assert_eq!(res.body["error"]["field"], "sales");
    app.post("/api/v1/revoked-sales/accept", &owner.token, &select)
        .await
        .expect(404);
    app.call(req("GET", "/api/v1/revoked-sales", None, None))
        .await
        .expect(401);
    app.node.shutdown().await;
}
