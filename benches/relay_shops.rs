//! A relay serving many shops (issue 6): its memory and CPU per served shop.
//!
//! `BENCH_SHOPS` shops (default 50), each one till in this process (its own data dir, on
//! loopback) with `BENCH_SHOP_SALES` sales (default 2,000) spread over the last 30 days. The
//! relay is a separate process of the built binary (`tillmesh relay`, release profile), so its
//! memory and CPU are its own: resident set (`VmRSS`, peak `VmHWM`) and CPU time (`utime +
//! stime`) from `/proc/<pid>`.
//!
//! 1. The relay starts with no shop (baseline).
//! 2. Each shop enrolls it (`tillmesh relay enroll`, a process: it pulls the whole shop) and adds
//!    it as a peer; the running relay opens the new replica. Wall time per enrollment.
//! 3. Idle: every shop connected, nothing happening, 20 s.
//! 4. Steady: every shop sells one sale a second for `BENCH_SECONDS` (default 60); each sale
//!    goes till → relay (verified, applied, stored). The relay's CPU over the window.
//!
//! `cargo bench --bench relay_shops`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

/// Resident set and its peak (kB), CPU seconds so far of a process.
struct ProcStat {
    rss_kb: u64,
    hwm_kb: u64,
    cpu_s: f64,
}

fn proc_stat(pid: u32) -> ProcStat {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 = rest[11].parse::<f64>().unwrap() + rest[12].parse::<f64>().unwrap();
    // /proc counts in USER_HZ, 100 on Linux.
    let hz = 100.0;
    ProcStat {
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
        cpu_s: ticks / hz,
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Starts `tillmesh relay` on loopback; its process and multiaddr.
fn start_relay(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tillmesh"))
        .args([
            "relay",
            "--no-http",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tillmesh relay starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the relay prints its address").unwrap();
        if let Some(a) = line.strip_prefix("relay listening on ") {
            break a.trim().to_string();
        }
    };
    // Keep reading so the relay never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

struct Shop {
    node: Node,
    h: NodeHandle,
    owner: Principal,
    product: uuid::Uuid,
}

async fn make_shop(dir: &Path, sales: usize) -> Shop {
    let (node, h, owner, _) = first_node(Some(dir), false).await;
    let product = stocked_product(&h, &owner, sales as i64 + 100_000).await;
    let now = chrono::Utc::now().timestamp_millis();
    let month = 30 * 24 * 3600 * 1000_i64;
    let step = month / sales.max(1) as i64;
    for chunk in (0..sales).collect::<Vec<_>>().chunks(256) {
        let futs = chunk.iter().map(|i| {
            let (h, owner) = (h.clone(), owner.clone());
            async move {
                h.record_sale_at(&owner, sale(product), now - month + *i as i64 * step)
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(futs).await;
    }
    Shop {
        node,
        h,
        owner,
        product,
    }
}

async fn relay_synced(h: &NodeHandle, relay_peer: &str) -> bool {
    h.peers()
        .await
        .iter()
        .any(|p| p.peer_id == relay_peer && p.connected && p.last_pull.is_some())
}

async fn run(n_shops: usize, sales: usize, seconds: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    println!("relay_shops: {n_shops} shops of {sales} sales (30 days) each; steady {seconds} s");

    let t = Instant::now();
    let mut shops = Vec::with_capacity(n_shops);
    for i in 0..n_shops {
        shops.push(make_shop(&tmp.path().join(format!("shop-{i}")), sales).await);
    }
    println!(
        "made the shops in {:.0} s ({:.0} sales/s)",
        t.elapsed().as_secs_f64(),
        (n_shops * sales) as f64 / t.elapsed().as_secs_f64()
    );

    let (mut relay, relay_addr) = start_relay(&relay_dir);
    let pid = relay.id();
    let relay_peer = relay_addr.rsplit('/').next().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = proc_stat(pid);
    println!(
        "relay with no shop: RSS {:.1} MB, CPU {:.2} s",
        mb(base.rss_kb),
        base.cpu_s
    );

    let mut enroll_s = Vec::new();
    for s in &shops {
        let inv =
            s.h.create_invite(
                &s.owner,
                NewInvite {
                    role: DeviceRole::Relay,
                    name: "Cloud relay".into(),
                    ttl_minutes: None,
                },
            )
            .await
            .unwrap();
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tillmesh"))
            .args(["relay", "enroll", "--data-dir"])
            .arg(&relay_dir)
            .arg(&inv.invite)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        enroll_s.push(t.elapsed().as_secs_f64());
        s.h.add_peer(&s.owner, &relay_addr).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for (i, s) in shops.iter().enumerate() {
        while !relay_synced(&s.h, &relay_peer).await {
            assert!(
                Instant::now() < deadline,
                "shop {i} never synced with the relay"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    enroll_s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let enrolled = proc_stat(pid);
    println!(
        "enrolled {n_shops} shops: per shop p50 {:.2} s, max {:.2} s; relay CPU for it {:.1} s",
        pct(&enroll_s, 0.5),
        enroll_s[enroll_s.len() - 1],
        enrolled.cpu_s - base.cpu_s
    );

    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle = proc_stat(pid);
    println!(
        "idle 20 s with {n_shops} shops connected: RSS {:.1} MB (peak so far {:.1} MB), CPU {:.1} %",
        mb(idle.rss_kb),
        mb(idle.hwm_kb),
        (idle.cpu_s - enrolled.cpu_s) / 20.0 * 100.0
    );

    let t = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut made = 0usize;
    for _ in 0..seconds {
        tick.tick().await;
        let futs = shops.iter().map(|s| {
            let (h, o, p) = (s.h.clone(), s.owner.clone(), s.product);
            async move { h.record_sale(&o, sale(p)).await.unwrap() }
        });
        made += futures::future::join_all(futs).await.len();
    }
    let window = t.elapsed().as_secs_f64();
    let steady = proc_stat(pid);
    let cpu = steady.cpu_s - idle.cpu_s;
    println!(
        "steady: {made} sales in {window:.0} s ({:.0}/s across the shops): relay CPU {:.1} % of one core \
         ({:.3} % per shop), RSS {:.1} MB, peak {:.1} MB",
        made as f64 / window,
        cpu / window * 100.0,
        cpu / window * 100.0 / n_shops as f64,
        mb(steady.rss_kb),
        mb(steady.hwm_kb)
    );
    println!(
        "| shops | sales each | RSS no shop MB | RSS idle MB | per shop MB | peak MB | idle CPU % | steady CPU % (1 sale/s/shop) | per shop CPU % |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n_shops} | {sales} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.3} |",
        mb(base.rss_kb),
        mb(idle.rss_kb),
        (mb(idle.rss_kb) - mb(base.rss_kb)) / n_shops as f64,
        mb(steady.hwm_kb),
        (idle.cpu_s - enrolled.cpu_s) / 20.0 * 100.0,
        cpu / window * 100.0,
        cpu / window * 100.0 / n_shops as f64
    );

    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = relay.wait();
    for s in shops {
        drop(s.h);
        s.node.shutdown().await;
    }
}

fn main() {
    let shops: usize = env_or("BENCH_SHOPS", 50);
    let sales: usize = env_or("BENCH_SHOP_SALES", 2_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 60);
    runtime().block_on(run(shops, sales, seconds));
}
