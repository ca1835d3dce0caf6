//! Report API latency on a year of data.
//!
//! Data: a shop of `BENCH_PRODUCTS` products (default 2,000; tax rates 0 / 5.5 / 10 / 20 %, ten
//! categories, three stock-in lots each, received the morning before the first day) and `BENCH_SALES` sales (default 500,000) spread over
//! the 365 days before the day the data was made: 1–3 lines per sale, popular products sold
//! more (a squared uniform draw), quantities 1–3, one line in ten discounted, card, cash with
//! change or card + cash; rung up by the owner or two staff. One sale in a hundred is voided
//! and one in two hundred partly returned (those entries are recorded on the day the data was
//! made). Sales go through the real path — `NodeHandle::record_sale_at` (validation, signing,
//! the ledger documents, the projections), 128 at a time so the writer commits them in groups —
//! day after day in order, so each day's ledger documents roll over as on a real till.
//!
//! The data dir is made once and kept under `target/bench-data/reports-<sales>-<products>/`
//! (delete it to make it again); a `ready.json` in it names the first and last day. Making it
//! can be stopped and started again: it resumes from `progress.json`.
//!
//! Measure: the node starts on that data dir with HTTP on 127.0.0.1, an owner logs in over HTTP,
//! then each report route is asked `BENCH_REQUESTS` times (default 300, after 20 warm-up
//! requests) one after the other by a keep-alive client; latency is client-side, send → body
//! read. `BENCH_RUNS` runs (default 3; 0 only makes the data). Goal (issue 5 / DESIGN §10):
//! p99 ≤ 20 ms.
//!
//! `cargo bench --bench reports`

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, TimeZone};
use common::*;
use serde_json::{Value, json};
use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

/// A small deterministic generator (xorshift64*), so every data dir of a size is the same shop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const STAFF_PIN: &str = "2468";

fn data_dir(sales: usize, products: usize) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_string());
    Path::new(&target)
        .join("bench-data")
        .join(format!("reports-{sales}-{products}"))
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// How far the generation got, saved in `progress.json` after every group of sales, so that a
/// stopped generation resumes where it was (`BENCH_SALES=500000` takes about half an hour).
/// The day's sales are drawn again from the generator's state at the start of that day, and the
/// groups already recorded are skipped; a group cut off in the middle may leave up to 127 of its
/// sales recorded twice, which the final count (read back from the node) includes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The first and last day, `YYYY-MM-DD`.
    first: String,
    last: String,
    /// (id, price) of every product, in SKU order.
    products: Vec<(uuid::Uuid, i64)>,
    /// The generator's state at the start of `day`.
    rng: u64,
    /// The day being recorded (0..365; 365 once every day is done).
    day: u64,
    /// Groups of 128 sales of `day` already recorded.
    groups: usize,
    voids: Vec<uuid::Uuid>,
    returns: Vec<uuid::Uuid>,
    /// Voids and returns already recorded.
    voids_done: usize,
    returns_done: usize,
}

impl Progress {
    fn load(dir: &Path) -> Option<Progress> {
        serde_json::from_slice(&std::fs::read(dir.join("progress.json")).ok()?).ok()
    }
    fn save(&self, dir: &Path) {
        let tmp = dir.join("progress.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap()).unwrap();
        std::fs::rename(tmp, dir.join("progress.json")).unwrap();
    }
}

/// Makes the year of data in `dir`, or goes on where a stopped run left it; returns
/// (first day, last day).
async fn generate(dir: &Path, sales: usize, n_products: usize) -> (NaiveDate, NaiveDate) {
    let t0 = Instant::now();
    let resumed = Progress::load(dir);
    // Where a resumed run was stopped: in the voids, or in the returns (see below).
    let stopped_in = resumed
        .as_ref()
        .filter(|p| p.day == 365)
        .map(|p| p.voids_done < p.voids.len());
    if resumed.is_none() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
    }
    let node = Node::builder().data_dir(dir).start().await.unwrap();
    let h = node.handle();
    let mut p = match resumed {
        Some(p) => {
            eprintln!(
                "  resuming at day {} group {}, {} voids and {} returns done",
                p.day, p.groups, p.voids_done, p.returns_done
            );
            p
        }
        None => setup(&h, dir, sales, n_products).await,
    };
    let owner = h.login_password("owner", PASSWORD).await.unwrap();
    let mut clerks = vec![owner.clone()];
    for name in ["sam", "kim"] {
        clerks.push(h.login_pin(name, STAFF_PIN).await.unwrap());
    }

    let parse = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let (first, last) = (parse(&p.first), parse(&p.last));
    let per_day = sales.div_ceil(365);
    let t1 = Instant::now();
    let mut made_now = 0usize;
    while p.day < 365 {
        let date = first.checked_add_days(Days::new(p.day)).unwrap();
        let open = chrono::Utc
            .from_utc_datetime(&date.and_hms_opt(8, 0, 0).unwrap())
            .timestamp_millis();
        let mut rng = Rng(p.rng);
        let n = per_day.min(sales.saturating_sub(p.day as usize * per_day));
        let mut batch = Vec::with_capacity(n);
        for i in 0..n {
            let lines = (0..1 + rng.below(3))
                .map(|_| {
                    let u = rng.unit();
                    let (id, price) =
                        p.products[((u * u) * n_products as f64) as usize % n_products];
                    let qty = 1 + rng.below(3) as i64;
                    NewSaleLine {
                        product_id: id,
                        variant_id: None,
                        qty,
                        discount: (rng.below(10) == 0).then_some(price * qty / 10),
                    }
                })
                .collect();
            let payments = match rng.below(3) {
                0 => vec![NewPayment {
                    method: PaymentMethod::Card,
                    amount: None,
                }],
                1 => vec![NewPayment {
                    method: PaymentMethod::Cash,
                    amount: Some(50_000),
                }],
                _ => vec![
                    NewPayment {
                        method: PaymentMethod::Card,
                        amount: Some(10),
                    },
                    NewPayment {
                        method: PaymentMethod::Cash,
                        amount: None,
                    },
                ],
            };
            let clerk = clerks[rng.below(3) as usize].clone();
            // Twelve opening hours.
            let time = open + (i as i64 * 12 * 3600 * 1000) / n as i64;
            let fate = rng.below(200);
            batch.push((
                clerk,
                NewSale {
                    lines,
                    payments,
                    note: None,
                    ticket_id: None,
                },
                time,
                fate,
            ));
        }
        for chunk in batch.chunks(128).skip(p.groups) {
            let tasks: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|(clerk, sale, time, fate)| {
                    let h = h.clone();
                    tokio::spawn(async move {
                        (h.record_sale_at(&clerk, sale, time).await.unwrap(), fate)
                    })
                })
                .collect();
            for t in tasks {
                let (sale, fate) = t.await.unwrap();
                match fate {
                    0 | 1 => p.voids.push(sale.id),
                    2 => p.returns.push(sale.id),
                    _ => {}
                }
            }
            made_now += chunk.len();
            p.groups += 1;
            p.save(dir);
        }
        p.day += 1;
        p.groups = 0;
        p.rng = rng.0;
        p.save(dir);
        if p.day % 30 == 0 {
            eprintln!(
                "  {made_now} sales in this run, up to {} in {:.0} s ({:.0}/s)",
                day(date),
                t1.elapsed().as_secs_f64(),
                made_now as f64 / t1.elapsed().as_secs_f64()
            );
        }
    }
    // Voids and returns, 32 at a time. A group cut off in the middle is recorded again on
    // resume, and its entries already recorded are refused (already voided / nothing left to
    // return): those refusals are allowed only in the first group after a resume.
    let mut tolerate = stopped_in == Some(true);
    while p.voids_done < p.voids.len() {
        let end = (p.voids_done + 32).min(p.voids.len());
        let tasks: Vec<_> = p.voids[p.voids_done..end]
            .iter()
            .map(|&id| {
                let (h, o) = (h.clone(), owner.clone());
                tokio::spawn(async move { h.void_sale(&o, id, VoidSale::default()).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(tolerate || r.is_ok(), "void: {r:?}");
        }
        tolerate = false;
        p.voids_done = end;
        p.save(dir);
    }
    let mut tolerate = stopped_in == Some(false);
    while p.returns_done < p.returns.len() {
        let end = (p.returns_done + 32).min(p.returns.len());
        let tasks: Vec<_> = p.returns[p.returns_done..end]
            .iter()
            .map(|&id| {
                let (h, o) = (h.clone(), owner.clone());
                tokio::spawn(async move {
                    let cmd = NewReturn {
                        lines: vec![ReturnLine { line: 0, qty: 1 }],
                        refund_method: Some(PaymentMethod::Card),
                        reason: None,
                    };
                    h.return_sale(&o, id, cmd).await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(tolerate || r.is_ok(), "return: {r:?}");
        }
        tolerate = false;
        p.returns_done = end;
        p.save(dir);
    }
    eprintln!(
        "  done: {} voids, {} returns; this run took {:.0} s",
        p.voids.len(),
        p.returns.len(),
        t0.elapsed().as_secs_f64()
    );
    drop(h);
    node.shutdown().await;
    std::fs::write(
        dir.join("ready.json"),
        json!({"first": p.first, "last": p.last}).to_string(),
    )
    .unwrap();
    (first, last)
}

/// The shop, its people, products and stock; saves and returns the first progress.
async fn setup(h: &NodeHandle, dir: &Path, sales: usize, n_products: usize) -> Progress {
    let t0 = Instant::now();
    h.create_shop(NewShop {
        shop_name: "Bench".into(),
        owner_name: "Owner".into(),
        username: "owner".into(),
        password: PASSWORD.into(),
        currency: Some("EUR".into()),
        timezone: Some("UTC".into()),
        tax_mode: Some(TaxMode::Inclusive),
        device_name: None,
    })
    .await
    .unwrap();
    let owner = h.login_password("owner", PASSWORD).await.unwrap();
    h.update_settings(
        &owner,
        SettingsPatch {
            cash_rounding: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for name in ["sam", "kim"] {
        h.add_person(
            &owner,
            NewPerson {
                name: format!("Staff {name}"),
                username: name.into(),
                role: Role::Staff,
                password: None,
                pin: Some(STAFF_PIN.into()),
            },
        )
        .await
        .unwrap();
    }

    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut products = Vec::with_capacity(n_products);
    for i in 0..n_products {
        let price = 50 + rng.below(5000) as i64;
        let p = h
            .create_product(
                &owner,
                NewProduct {
                    sku: format!("P{i:05}"),
                    name: format!("Product {i}"),
                    price,
                    barcode: None,
                    category: Some(format!("Category {}", i % 10)),
                    unit: None,
                    cost: Some(price * 4 / 10),
                    tax_rate: Some([0, 550, 1000, 2000][i % 4]),
                    reorder_level: None,
                    variants: vec![],
                },
            )
            .await
            .unwrap();
        products.push(p);
    }
    eprintln!(
        "  {n_products} products in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    // Three lots per product, a tenth more than its expected share of the year: a sale has two
    // lines of two units on average, and product i is drawn with probability
    // sqrt((i+1)/n) − sqrt(i/n).
    let mut lots = Vec::new();
    for (i, p) in products.iter().enumerate() {
        let n = n_products as f64;
        let share = ((i + 1) as f64 / n).sqrt() - (i as f64 / n).sqrt();
        let qty = (sales as f64 * 4.0 * share * 1.1 / 3.0).ceil() as i64 + 10;
        for k in 0..3 {
            lots.push(StockIn {
                product_id: p.id,
                variant_id: None,
                qty,
                unit_cost: Some(p.cost + k),
                note: None,
            });
        }
    }
    // Received the morning before the first day's sales, as in a shop (see
    // `common::before_history`).
    let last = h.shop_today().checked_sub_days(Days::new(1)).unwrap();
    let first = last.checked_sub_days(Days::new(364)).unwrap();
    let received = chrono::Utc
        .from_utc_datetime(&first.and_hms_opt(7, 0, 0).unwrap())
        .timestamp_millis();
    for chunk in lots.chunks(64) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|cmd| {
                let (h, o) = (h.clone(), owner.clone());
                tokio::spawn(async move { h.stock_in_at(&o, cmd, received).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let p = Progress {
        first: day(first),
        last: day(last),
        products: products.iter().map(|p| (p.id, p.price)).collect(),
        rng: rng.0,
        day: 0,
        groups: 0,
        voids: Vec::new(),
        returns: Vec::new(),
        voids_done: 0,
        returns_done: 0,
    };
    p.save(dir);
    p
}

/// The data dir of this size, made if missing.
async fn year(sales: usize, products: usize) -> (PathBuf, NaiveDate, NaiveDate) {
    let dir = data_dir(sales, products);
    if let Ok(text) = std::fs::read_to_string(dir.join("ready.json")) {
        let v: Value = serde_json::from_str(&text).unwrap();
        let d = |k: &str| NaiveDate::parse_from_str(v[k].as_str().unwrap(), "%Y-%m-%d").unwrap();
        eprintln!("reusing {}", dir.display());
        return (dir, d("first"), d("last"));
    }
    eprintln!("making {} (once; resumable)", dir.display());
    let (first, last) = generate(&dir, sales, products).await;
    (dir, first, last)
}

async fn measure(client: &reqwest::Client, url: &str, token: &str, n: usize) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        let body = res.bytes().await.unwrap();
        assert!(!body.is_empty());
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

fn main() {
    let sales: usize = env_or("BENCH_SALES", 500_000);
    let products: usize = env_or("BENCH_PRODUCTS", 2_000);
    let requests: usize = env_or("BENCH_REQUESTS", 300);
    let runs: usize = env_or("BENCH_RUNS", 3);
    runtime().block_on(async {
        let (dir, first, last) = year(sales, products).await;
        if runs == 0 {
            eprintln!("BENCH_RUNS=0: the data is made; nothing measured");
            return;
        }
        let (from, to) = (day(first), day(last));
        let routes: Vec<(&str, String)> = vec![
            (
                "sales, 365 days by day",
                format!("/api/v1/reports/sales?from={from}&to={to}"),
            ),
            (
                "sales, 365 days by week",
                format!("/api/v1/reports/sales?from={from}&to={to}&group=week"),
            ),
            (
                "sales, 365 days by month",
                format!("/api/v1/reports/sales?from={from}&to={to}&group=month"),
            ),
            (
                "top sellers, 30 days",
                format!("/api/v1/reports/top-sellers?to={to}&days=30"),
            ),
            (
                "top sellers, 7 days",
                format!("/api/v1/reports/top-sellers?to={to}&days=7"),
            ),
            (
                "top sellers, 365 days",
                format!("/api/v1/reports/top-sellers?to={to}&days=365"),
            ),
            (
                "staff, 365 days",
                format!("/api/v1/reports/staff?from={from}&to={to}"),
            ),
            (
                "tax, 365 days",
                format!("/api/v1/reports/tax?from={from}&to={to}"),
            ),
            (
                "payments, 365 days",
                format!("/api/v1/reports/payments?from={from}&to={to}"),
            ),
            ("inventory value", "/api/v1/reports/inventory".to_string()),
            (
                "movements, 7 days",
                "/api/v1/reports/movements?days=7".to_string(),
            ),
        ];
        let mut table: Vec<Vec<(f64, f64)>> = vec![Vec::new(); routes.len()];
        for run in 1..=runs {
            let t = Instant::now();
            let node = Node::builder()
                .data_dir(&dir)
                .http("127.0.0.1:0".parse().unwrap())
                .start()
                .await
                .unwrap();
            let start_ms = t.elapsed().as_secs_f64() * 1000.0;
            let base = format!("http://{}", node.http_addr().unwrap());
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let login: Value = client
                .post(format!("{base}/api/v1/login"))
                .json(&json!({"username": "owner", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = login["token"].as_str().unwrap().to_string();
            // The reports are the owners' and managers': the check reads as the owner.
            let owner = node
                .handle()
                .login_password("owner", PASSWORD)
                .await
                .unwrap();
            check_year(&node.handle(), &owner, first, last);
            eprintln!("run {run}: node started in {start_ms:.0} ms");
            for (i, (name, path)) in routes.iter().enumerate() {
                let lat = measure(&client, &format!("{base}{path}"), &token, requests).await;
                let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
                eprintln!(
                    "  {name:<28} p50 {p50:7.2} ms  p99 {p99:7.2} ms  max {:7.2} ms",
                    lat[lat.len() - 1]
                );
                table[i].push((p50, p99));
            }
            node.shutdown().await;
        }
        println!("\n| report | route | p50 ms (runs) | p99 ms (runs) | median p99 ms |");
        println!("|---|---|---|---|---:|");
        for (i, (name, path)) in routes.iter().enumerate() {
            let p50s: Vec<String> = table[i].iter().map(|x| format!("{:.2}", x.0)).collect();
            let mut p99s: Vec<f64> = table[i].iter().map(|x| x.1).collect();
            let shown: Vec<String> = p99s.iter().map(|x| format!("{x:.2}")).collect();
            p99s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "| {name} | `{}` | {} | {} | {:.2} |",
                path.split('?').next().unwrap(),
                p50s.join(" / "),
                shown.join(" / "),
                pct(&p99s, 0.5)
            );
        }
    });
}

/// The data is what the bench says it is: the year's sales are all counted.
fn check_year(h: &NodeHandle, owner: &Principal, first: NaiveDate, last: NaiveDate) {
    use tillmesh::domain::reports::{DayRange, Period};
    let r = h
        .sales_report(owner, DayRange::new(first, last).unwrap(), Period::Month)
        .unwrap();
    eprintln!(
        "  the year: {} sales (voids left out), gross {} cents, {} returns",
        r.totals.count, r.totals.gross, r.totals.returns
    );
    assert!(r.totals.count > 0);
}
