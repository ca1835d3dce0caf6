//! API load benchmark: durable sales per second and acknowledgement latency over HTTP.
//!
//! Each run starts a fresh in-process node on a real data dir (a tempdir; every commit is
//! fsynced) with HTTP on `127.0.0.1:0`, creates a shop, logs in over HTTP, creates 50 products
//! and stocks them in. Then:
//!
//! 1. **latency floor**: one client posts 500 sales one after the other;
//! 2. **load**: 16 clients (each its own `reqwest::Client`, keep-alive) post sales of 1–3 lines
//!    paid by card for `BENCH_SECS` seconds (default 10), at most `BENCH_MAX_SALES` sales in all
//!    (default 200,000).
//!
//! Measured: acknowledged (201) sales per second, client-side ack latency (send → 201 with its
//! body read) p50/p90/p99/max, sales per durable commit (`writer_stats()` deltas during the
//! load), the process's VmRSS/VmHWM at the end of the run. The clients run in the same process
//! and on the same two cores as the node, so they are part of the cost being measured.
//!
//! Every run ends by checking that the sales the API lists are exactly the sales it
//! acknowledged (count and ids); any mismatch or any non-201 answer fails the benchmark.
//!
//! `cargo bench --bench api_load` (env `BENCH_SECS`, `BENCH_RUNS` (default 3),
//! `BENCH_CLIENTS` (default 16), `BENCH_MAX_SALES`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tillmesh::Node;
use tillmesh::domain::model::NewShop;

const PRODUCTS: usize = 50;
const SEQUENTIAL_SALES: usize = 500;
const PASSWORD: &str = "bench password 123";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Results of one run.
#[derive(Debug, Clone, Default)]
struct RunResult {
    sales: u64,
    secs: f64,
    per_sec: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    per_commit: f64,
    commits: u64,
    /// VmRSS before the node starts (after earlier runs' garbage went back to the system).
    rss_start_mb: f64,
    /// VmRSS when the load ends (node, clients and their buffers).
    rss_mb: f64,
    /// VmHWM: peak RSS of the process so far (argon2 at login takes 64 MiB for a moment).
    hwm_mb: f64,
    seq_p50: f64,
    seq_p99: f64,
    /// CPU time of the writer thread during the load / wall time, %.
    writer_busy: f64,
    /// CPU time of the whole process during the load / wall time (2.0 = both of 2 cores).
    cpu_cores: f64,
    /// Newest sale time minus the wall clock when the load ended, ms (> 0: sale times ran
    /// ahead of the clock).
    clock_lead_ms: i64,
}

/// Percentile (nearest rank) of sorted latencies, in ms.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) used so far by the process and by its thread named
/// `tillmesh-writer`, from `/proc` (USER_HZ is 100 on Linux).
fn cpu_secs() -> (f64, f64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the command: state is field 3, utime field 14, stime field 15.
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }
    let total = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map(|(_, t)| t)
        .unwrap_or(0);
    let mut writer = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Some((comm, t)) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
                && comm == "tillmesh-writer"
            {
                writer += t;
            }
        }
    }
    (writer as f64 / 100.0, total as f64 / 100.0)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: give freed heap memory back to the system.
    safe fn malloc_trim(pad: usize) -> i32;
}

/// Returns memory that earlier runs freed to the system, so each run's RSS is its own.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc_trim(0);
}

/// A tiny xorshift generator, so the benchmark needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(4)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

/// Checks the status, then parses the body as JSON.
async fn expect_json(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: unexpected status {got}; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn sale_body(rng: &mut Rng, products: &[String]) -> Value {
    let n = 1 + rng.below(3) as usize;
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let p = &products[rng.below(products.len() as u64) as usize];
        lines.push(json!({"product_id": p, "qty": 1 + rng.below(3)}));
    }
    json!({"lines": lines, "payments": [{"method": "card"}]})
}

/// Posts one sale; returns its latency and id, or a description of the failure.
async fn post_sale(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<(Duration, String), String> {
    let t0 = Instant::now();
    let res = c
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| format!("body failed: {e}"))?;
    let elapsed = t0.elapsed();
    if status != 201 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON: {e}"))?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| "a sale without an id".to_string())?
        .to_string();
    Ok((elapsed, id))
}

/// Every sale the API lists from `from` on. A list stops at 10,000 sales (oldest first), so
/// a full page continues from the time of its last sale (sales at that very millisecond are
/// fetched again and kept once).
async fn list_all_sales(c: &reqwest::Client, base: &str, token: &str, from: i64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut from = from;
    loop {
        let res = c
            .get(format!("{base}/api/v1/sales?from={from}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /sales");
        let page = expect_json(res, 200, "GET /sales").await;
        let page = page.as_array().cloned().unwrap_or_default();
        let full = page.len() >= 10_000;
        let last = page.last().and_then(|s| s["time"].as_i64());
        for s in page {
            if let Some(id) = s["id"].as_str()
                && seen.insert(id.to_string())
            {
                out.push(s);
            }
        }
        match last {
            Some(t) if full => {
                assert!(t > from, "more than 10,000 sales in one millisecond");
                from = t;
            }
            _ => return out,
        }
    }
}

async fn one_run(run: usize, secs: u64, clients: usize, max_sales: u64) -> RunResult {
    trim_heap();
    let rss_start_mb = proc_status_mb("VmRSS:");
    let dir = tempfile::tempdir().expect("a tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let node = Node::builder()
        .data_dir(dir.path().join("node"))
        .http_listener(listener)
        .start()
        .await
        .expect("the node starts");
    let handle = node.handle();
    handle
        .create_shop(NewShop {
            shop_name: "Bench Shop".into(),
            owner_name: "Bench Owner".into(),
            username: "owner".into(),
            password: PASSWORD.into(),
            currency: Some("EUR".into()),
            timezone: Some("Europe/Paris".into()),
            tax_mode: None,
            device_name: None,
        })
        .await
        .expect("create the shop");
    let addr: SocketAddr = node.http_addr().expect("HTTP address");
    let base = format!("http://{addr}");
    let setup = client();

    let res = setup
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "owner", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let token = expect_json(res, 200, "login").await["token"]
        .as_str()
        .expect("a token")
        .to_string();

    let mut products = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let res = setup
            .post(format!("{base}/api/v1/products"))
            .bearer_auth(&token)
            .json(&json!({
                "sku": format!("SKU-{i:03}"),
                "name": format!("Product {i}"),
                "price": 100 + 10 * i as i64,
                "tax_rate": 2000,
            }))
            .send()
            .await
            .expect("create a product");
        let p = expect_json(res, 201, "POST /products").await;
        let id = p["id"].as_str().expect("a product id").to_string();
        let res = setup
            .post(format!("{base}/api/v1/stock/in"))
            .bearer_auth(&token)
            .json(&json!({"product_id": id, "qty": 1_000_000, "unit_cost": 50}))
            .send()
            .await
            .expect("stock in");
        expect_json(res, 201, "POST /stock/in").await;
        products.push(id);
    }
    let products = Arc::new(products);
    let sales_url = format!("{base}/api/v1/sales");
    let mut acked: HashSet<String> = HashSet::new();

    // 1. The latency floor: one client, one sale at a time.
    let mut seq = Vec::with_capacity(SEQUENTIAL_SALES);
    {
        let c = client();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ run as u64);
        for _ in 0..SEQUENTIAL_SALES {
            let body = sale_body(&mut rng, &products);
            match post_sale(&c, &sales_url, &token, &body).await {
                Ok((d, id)) => {
                    seq.push(d);
                    acked.insert(id);
                }
                Err(e) => panic!("sequential sale failed: {e}"),
            }
        }
    }
    seq.sort();

    // 2. The load: `clients` clients for `secs` seconds.
    let claimed = Arc::new(AtomicU64::new(0));
    let (commits0, jobs0) = handle.writer_stats();
    let (writer_cpu0, cpu0) = cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(clients);
    for k in 0..clients {
        let products = products.clone();
        let claimed = claimed.clone();
        let token = token.clone();
        let url = sales_url.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((run as u64) << 32) ^ (k as u64 + 1));
            let mut lat = Vec::new();
            let mut ids = Vec::new();
            let mut errors = Vec::new();
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < max_sales {
                let body = sale_body(&mut rng, &products);
                match post_sale(&c, &url, &token, &body).await {
                    Ok((d, id)) => {
                        lat.push(d);
                        ids.push(id);
                    }
                    Err(e) => errors.push(e),
                }
            }
            (lat, ids, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    let mut load_ids = 0u64;
    for t in tasks {
        let (l, ids, e) = t.await.expect("a client task");
        lat.extend(l);
        load_ids += ids.len() as u64;
        acked.extend(ids);
        errors.extend(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (commits1, jobs1) = handle.writer_stats();
    let (writer_cpu1, cpu1) = cpu_secs();
    lat.sort();
    if !errors.is_empty() {
        let shown: Vec<_> = errors.iter().take(5).collect();
        panic!(
            "run {run}: {} sales were not acknowledged; first: {shown:#?}",
            errors.len()
        );
    }

    // 3. Correctness: the API lists exactly the acknowledged sales.
    let end_wall_ms = chrono::Utc::now().timestamp_millis();
    let rss_mb = proc_status_mb("VmRSS:");
    let hwm_mb = proc_status_mb("VmHWM:");
    let listed = list_all_sales(&setup, &base, &token, 0).await;
    let listed_ids: HashSet<String> = listed
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    let res = setup
        .get(format!("{base}/api/v1/sales?from=0"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /sales?from=0");
    let from0 = expect_json(res, 200, "GET /sales?from=0").await;
    let from0 = from0.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        listed.len(),
        acked.len(),
        "run {run}: the API lists {} sales but acknowledged {}",
        listed.len(),
        acked.len()
    );
    assert_eq!(
        listed_ids, acked,
        "run {run}: listed and acknowledged sale ids differ"
    );
    assert_eq!(
        acked.len() as u64,
        SEQUENTIAL_SALES as u64 + load_ids,
        "run {run}: duplicate sale ids"
    );
    if from0 != listed.len() {
        eprintln!(
            "note: GET /sales?from=0 returned {from0} of {} sales (the list stops at 10,000)",
            listed.len()
        );
    }
    let newest = listed
        .iter()
        .filter_map(|s| s["time"].as_i64())
        .max()
        .unwrap_or(0);
    let clock_lead_ms = newest - end_wall_ms;
    node.shutdown().await;

    let commits = commits1 - commits0;
    let jobs = jobs1 - jobs0;
    RunResult {
        sales: lat.len() as u64,
        secs: elapsed,
        per_sec: lat.len() as f64 / elapsed,
        p50: pct(&lat, 50.0),
        p90: pct(&lat, 90.0),
        p99: pct(&lat, 99.0),
        max: lat
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
        per_commit: if commits == 0 {
            f64::NAN
        } else {
            jobs as f64 / commits as f64
        },
        commits,
        rss_start_mb,
        rss_mb,
        hwm_mb,
        seq_p50: pct(&seq, 50.0),
        seq_p99: pct(&seq, 99.0),
        writer_busy: 100.0 * (writer_cpu1 - writer_cpu0) / elapsed,
        cpu_cores: (cpu1 - cpu0) / elapsed,
        clock_lead_ms,
    }
}

fn print_header() {
    println!(
        "| run | sales | secs | sales/s | ack p50 ms | p90 ms | p99 ms | max ms | sales/commit | commits | RSS start MB | RSS end MB | peak RSS MB | 1-client p50 ms | 1-client p99 ms | writer busy % | CPU cores used | clock lead ms |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
}

fn print_row(name: &str, r: &RunResult) {
    println!(
        "| {name} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {} |",
        r.sales,
        r.secs,
        r.per_sec,
        r.p50,
        r.p90,
        r.p99,
        r.max,
        r.per_commit,
        r.commits,
        r.rss_start_mb,
        r.rss_mb,
        r.hwm_mb,
        r.seq_p50,
        r.seq_p99,
        r.writer_busy,
        r.cpu_cores,
        r.clock_lead_ms
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep that short.
    let args: Vec<String> = std::env::args().collect();
    let is_bench = args.iter().any(|a| a == "--bench");
    let secs: u64 = env_or("BENCH_SECS", if is_bench { 10 } else { 1 });
    let runs: usize = env_or("BENCH_RUNS", if is_bench { 3 } else { 1 });
    let clients: usize = env_or("BENCH_CLIENTS", 16);
    let max_sales: u64 = env_or("BENCH_MAX_SALES", 200_000);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "api_load: {runs} run(s), {clients} clients, {secs} s each (at most {max_sales} sales), \
         {PRODUCTS} products, 1-3 lines per sale, card; {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut results = Vec::new();
    for run in 1..=runs {
        let r = rt.block_on(one_run(run, secs, clients, max_sales));
        eprintln!(
            "run {run}: {} sales in {:.2} s = {:.0}/s, p99 {:.2} ms",
            r.sales, r.secs, r.per_sec, r.p99
        );
        results.push(r);
    }
    println!();
    print_header();
    for (i, r) in results.iter().enumerate() {
        print_row(&format!("{}", i + 1), r);
    }
    let m = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let med = RunResult {
        sales: m(|r| r.sales as f64) as u64,
        secs: m(|r| r.secs),
        per_sec: m(|r| r.per_sec),
        p50: m(|r| r.p50),
        p90: m(|r| r.p90),
        p99: m(|r| r.p99),
        max: m(|r| r.max),
        per_commit: m(|r| r.per_commit),
        commits: m(|r| r.commits as f64) as u64,
        rss_start_mb: m(|r| r.rss_start_mb),
        rss_mb: m(|r| r.rss_mb),
        hwm_mb: m(|r| r.hwm_mb),
        seq_p50: m(|r| r.seq_p50),
        seq_p99: m(|r| r.seq_p99),
        writer_busy: m(|r| r.writer_busy),
        cpu_cores: m(|r| r.cpu_cores),
        clock_lead_ms: m(|r| r.clock_lead_ms as f64) as i64,
    };
    print_row("median", &med);
    println!();
    println!(
        "DESIGN.md §10 durable sales/s on one node: first target >= 1,000/s with ack p99 <= 25 ms \
         ({}); where we are going >= 2,500/s with ack p99 <= 16 ms ({})",
        if med.per_sec >= 1000.0 && med.p99 <= 25.0 {
            "met"
        } else {
            "missed"
        },
        if med.per_sec >= 2500.0 && med.p99 <= 16.0 {
            "met"
        } else {
            "missed"
        }
    );
}
