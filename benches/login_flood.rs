//! Login flood benchmark: how `/api/v1/health` answers while 50 logins of unknown users are
//! hashed (each an argon2id check at 64 MiB against the dummy key, so an unknown username costs
//! what a known one does).
//!
//! Each run starts a fresh in-process node (memory store) with HTTP on `127.0.0.1:0` and the
//! login limits off (so every login is hashed, none refused early), creates a shop, then:
//!
//! 1. **idle**: 200 `GET /api/v1/health`, one after the other;
//! 2. **flood**: 50 `POST /api/v1/login` of unknown users at once, while one client sends
//!    `GET /api/v1/health` one after the other until every login has answered.
//!
//! Measured: `/health` latency (client side, send → body read) p50/p99/max idle and under the
//! flood, how many health checks answered during the flood, how long the 50 logins took in
//! all. Every login must answer 401 and every health check 200, or the benchmark fails.
//!
//! `cargo bench --bench login_flood` (env `BENCH_RUNS`, default 5).

use std::time::{Duration, Instant};

use serde_json::json;
use tillmesh::Node;
use tillmesh::api::ApiOptions;
use tillmesh::domain::model::NewShop;

const LOGINS: usize = 50;
const IDLE_CHECKS: usize = 200;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct RunResult {
    idle_p50: f64,
    idle_p99: f64,
    flood_p50: f64,
    flood_p99: f64,
    flood_max: f64,
    checks: usize,
    flood_secs: f64,
}

async fn health(client: &reqwest::Client, base: &str) -> f64 {
    let started = Instant::now();
    let res = client
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .expect("health answers");
    assert_eq!(res.status(), 200, "health");
    res.bytes().await.expect("health body");
    started.elapsed().as_secs_f64() * 1000.0
}

async fn run() -> RunResult {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let opts = ApiOptions {
        login_user_limit: 0,
        login_ip_limit: 0,
        ..ApiOptions::default()
    };
    let node = Node::builder()
        .memory()
        .http_listener(listener)
        .api_options(opts)
        .start()
        .await
        .expect("the node starts");
    node.handle()
        .create_shop(NewShop {
            shop_name: "Bench".into(),
            owner_name: "Olivia".into(),
            username: "olivia".into(),
            password: "bench password 123".into(),
            currency: Some("EUR".into()),
            timezone: Some("UTC".into()),
            tax_mode: None,
            device_name: None,
        })
        .await
        .expect("shop");
    let client = reqwest::Client::new();
    let mut idle = Vec::with_capacity(IDLE_CHECKS);
    for _ in 0..IDLE_CHECKS {
        idle.push(health(&client, &base).await);
    }
    idle.sort_by(f64::total_cmp);

    let started = Instant::now();
    let logins: Vec<_> = (0..LOGINS)
        .map(|i| {
            let (client, base) = (reqwest::Client::new(), base.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{base}/api/v1/login"))
                    .json(
                        &json!({"username": format!("ghost{i}"), "password": "a guessed password"}),
                    )
                    .timeout(Duration::from_secs(300))
                    .send()
                    .await
                    .expect("login answers")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut flood = Vec::new();
    while logins.iter().any(|t| !t.is_finished()) {
        flood.push(health(&client, &base).await);
    }
    let flood_secs = started.elapsed().as_secs_f64();
    for t in logins {
        assert_eq!(t.await.unwrap(), 401, "an unknown user is refused");
    }
    flood.sort_by(f64::total_cmp);
    node.shutdown().await;
    RunResult {
        idle_p50: pct(&idle, 0.5),
        idle_p99: pct(&idle, 0.99),
        flood_p50: pct(&flood, 0.5),
        flood_p99: pct(&flood, 0.99),
        flood_max: flood.last().copied().unwrap_or(f64::NAN),
        checks: flood.len(),
        flood_secs,
    }
}

fn main() {
    // What is measured is argon2id at its real cost. `cargo bench` (release profile) has it
    // anyway; a debug build of the benches (`cargo test --benches`) gets the test-only fast key
    // derivation unless this process asks for the real one. Set before any thread starts.
    if tillmesh::identity::FAST_TEST_KDF {
        // SAFETY: the process has one thread yet; nothing reads the environment concurrently.
        unsafe { std::env::set_var(tillmesh::identity::STRONG_KDF_ENV, "1") };
    }
    use tillmesh::identity::KdfParams;
    assert_eq!(KdfParams::PASSWORD.in_effect(), KdfParams::PASSWORD);
    let runs: usize = env_or("BENCH_RUNS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| run | idle p50 ms | idle p99 ms | flood p50 ms | flood p99 ms | flood max ms | checks during flood | 50 logins s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for i in 1..=runs {
        let r = rt.block_on(run());
        println!(
            "| {i} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
            r.idle_p50, r.idle_p99, r.flood_p50, r.flood_p99, r.flood_max, r.checks, r.flood_secs
        );
        results.push(r);
    }
    let median = |f: &dyn Fn(&RunResult) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "| median | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} |",
        median(&|r| r.idle_p50),
        median(&|r| r.idle_p99),
        median(&|r| r.flood_p50),
        median(&|r| r.flood_p99),
        median(&|r| r.flood_max),
        median(&|r| r.checks as f64),
        median(&|r| r.flood_secs),
    );
}
