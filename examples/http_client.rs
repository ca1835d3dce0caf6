//! Driving a node over its HTTP API, the way a program in any language would: log in for a
//! bearer token, import products from a CSV price list, receive stock, record a sale and read
//! the daily report and the stock.
//!
//! Against a running node (an owner's or manager's login):
//!
//! ```sh
//! cargo run --example http_client -- http://127.0.0.1:7878 olivia 'a long password'
//! ```
//!
//! Without arguments it starts a node of its own in this process (`Node::builder().api(true)`,
//! in memory, HTTP on a free port of 127.0.0.1) and creates its shop with `POST /api/v1/setup`,
//! as the first-start page does.
//!
//! Every route used here is in the node's OpenAPI document (`GET /api/v1/openapi.json`).

use std::io::Write;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A price list to import: sku, name, price (cents), tax rate (basis points), stock.
const PRICE_LIST: &str = "\
sku,name,price,tax_rate,stock
TEA,Green tea,350,700,40
CKE,Cheesecake,420,700,12
WTR,Still water,150,1900,60
";

/// A logged-in client of a node's API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Logs in with `POST /api/v1/login` and keeps the bearer token it answers.
    pub async fn login(base: &str, username: &str, password: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        let base = base.trim_end_matches('/').to_string();
        let res = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let body = answer(res).await?;
        let token = body["token"].as_str().context("no token")?.to_string();
        Ok(Client { http, base, token })
    }

    /// `GET path` → JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        answer(res).await
    }

    /// `POST path` with a JSON body → JSON.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        answer(res).await
    }
}

/// An error answer of the API: `{"error":{"code","message","field"}}` and its status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable code: `invalid`, `unauthorized`, `forbidden`, `not_found`, `conflict` …
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The request field at fault, if one.
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The JSON of a successful answer, or the API's error as an [`ApiError`].
async fn answer(res: reqwest::Response) -> anyhow::Result<Value> {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let e = &body["error"];
        return Err(ApiError {
            status: status.as_u16(),
            code: e["code"].as_str().unwrap_or("?").to_string(),
            message: e["message"].as_str().unwrap_or("?").to_string(),
            field: e["field"].as_str().map(String::from),
        }
        .into());
    }
    Ok(body)
}

/// Imports the price list, sells, and prints the report, against the node at `base`.
pub async fn run_against(
    base: &str,
    username: &str,
    password: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let api = Client::login(base, username, password).await?;
    let me = api.get("/api/v1/me").await?;
    writeln!(
        out,
        "logged in as {} ({})",
        me["person"]["name"].as_str().unwrap_or(""),
        me["person"]["role"].as_str().unwrap_or("")
    )?;

    // Import: create each product (or find it by SKU if it exists), then receive its stock.
    let mut ids = Vec::new();
    for line in PRICE_LIST.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [sku, name, price, tax_rate, stock] = f[..] else {
            bail!("bad price list line {line:?}");
        };
        let product = json!({
            "sku": sku, "name": name, "price": price.parse::<i64>()?,
            "tax_rate": tax_rate.parse::<u32>()?
        });
        let id = match api.post("/api/v1/products", &product).await {
            Ok(p) => p["id"].as_str().context("a product id")?.to_string(),
            // Imported before: the SKU is taken. Use that product.
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|e| e.field.as_deref() == Some("sku")) =>
            {
                let found = api.get(&format!("/api/v1/products?q={sku}")).await?;
                found
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["sku"] == sku))
                    .and_then(|p| p["id"].as_str())
                    .context("an existing product with that SKU")?
                    .to_string()
            }
            Err(e) => return Err(e),
        };
        api.post(
            "/api/v1/stock/in",
            &json!({"product_id": id, "qty": stock.parse::<i64>()?, "unit_cost": 100}),
        )
        .await?;
        writeln!(out, "imported {sku} {name} (+{stock} in stock)")?;
        ids.push(id);
    }

    // A sale: two teas and a cheesecake, paid in cash.
    let sale = api
        .post(
            "/api/v1/sales",
            &json!({
                "lines": [{"product_id": ids[0], "qty": 2}, {"product_id": ids[1], "qty": 1}],
                "payments": [{"method": "cash", "amount": 2000}]
            }),
        )
        .await?;
    writeln!(
        out,
        "sale {}: total {}, tax {}, change {}",
        sale["receipt"].as_str().unwrap_or(""),
        sale["total"],
        sale["tax"],
        sale["change_due"]
    )?;

    // The report of the sale's shop-local day, and what is left on the shelf.
    let day = sale["day"].as_str().context("the sale's day")?;
    let report = api
        .get(&format!("/api/v1/reports/daily?from={day}&to={day}"))
        .await?;
    for d in report.as_array().into_iter().flatten() {
        writeln!(
            out,
            "report {}: {} sales, total {}, tax {}",
            d["day"].as_str().unwrap_or(""),
            d["count"],
            d["total"],
            d["tax"]
        )?;
    }
    let stock = api.get("/api/v1/stock").await?;
    for s in stock.as_array().into_iter().flatten() {
        if ids.iter().any(|id| s["product_id"] == id.as_str()) {
            writeln!(
                out,
                "stock {}: {}",
                s["sku"].as_str().unwrap_or(""),
                s["on_hand"]
            )?;
        }
    }
    Ok(())
}

/// Starts a node in this process and creates its shop over HTTP; returns it with its URL.
pub async fn start_own_node(
    username: &str,
    password: &str,
) -> anyhow::Result<(tillmesh::Node, String)> {
    let node = tillmesh::Node::builder().memory().api(true).start().await?;
    let base = format!(
        "http://{}",
        node.http_addr().context("the node serves HTTP")?
    );
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("{base}/api/v1/setup"))
        .json(&json!({
            "shop_name": "HTTP Café", "owner_name": "Hana", "username": username,
            "password": password, "currency": "EUR", "timezone": "Europe/Vienna"
        }))
        .send()
        .await?;
    let created = answer(res).await?;
    anyhow::ensure!(created["shop_id"].is_string(), "no shop id: {created}");
    Ok((node, base))
}

#[allow(dead_code)] // Not called when the test suite includes this file as a module.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    match &args[..] {
        [base, username, password] => run_against(base, username, password, &mut out).await,
        [] => {
            let (node, base) = start_own_node("hana", "a long password").await?;
            println!("started a node at {base}");
            let result = run_against(&base, "hana", "a long password", &mut out).await;
            node.shutdown().await;
            result
        }
        _ => bail!("usage: http_client [URL USERNAME PASSWORD]"),
    }
}
