//! Shared set-up of the benchmarks: a shop on a first node, more tills joined with invites.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

pub const PASSWORD: &str = "bench password 123";

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list from the environment (`BENCH_NODES=2,5`).
pub fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The value at quantile `p` of sorted samples.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `cond` every 10 ms; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first node: a new shop in `dir` (memory when None), on the mesh over loopback, with its
/// owner logged in and its mesh address.
pub async fn first_node(dir: Option<&Path>, http: bool) -> (Node, NodeHandle, Principal, String) {
    let mut b = Node::builder().listen("/ip4/127.0.0.1/tcp/0");
    b = match dir {
        Some(d) => b.data_dir(d),
        None => b.memory(),
    };
    if http {
        b = b.http("127.0.0.1:0".parse().unwrap());
    }
    let n = b.start().await.unwrap();
    let h = n.handle();
    h.create_shop(NewShop {
        shop_name: "Bench".into(),
        owner_name: "O".into(),
        username: "owner".into(),
        password: PASSWORD.into(),
        currency: None,
        timezone: None,
        tax_mode: None,
        device_name: None,
    })
    .await
    .unwrap();
    let owner = h.login_password("owner", PASSWORD).await.unwrap();
    wait_until("the mesh listens", Duration::from_secs(30), || {
        !h.addrs().is_empty()
    })
    .await;
    let addr = h.addrs()[0].clone();
    (n, h, owner, addr)
}

/// Joins a till to the shop of `first` (an invite, `node::join` into `dir`).
pub async fn join(first: &NodeHandle, owner: &Principal, dir: &Path, name: &str) {
    let inv = first
        .create_invite(
            owner,
            NewInvite {
                role: DeviceRole::Till,
                name: name.into(),
                ttl_minutes: None,
            },
        )
        .await
        .unwrap();
    tillmesh::node::join(dir, &inv.invite, Default::default())
        .await
        .unwrap();
}

/// Starts a joined till on `dir`, dialing `peers` (no mesh at all when `peers` is None).
/// Blocks `peer` on `h` as soon as `h`'s mesh runs (it starts once the node sees its own
/// admission).
pub async fn block_when_meshed(h: &NodeHandle, peer: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = h.block_peer(peer).await {
        assert!(Instant::now() < deadline, "the mesh never started: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start_till(dir: &Path, peers: Option<&[String]>) -> Node {
    let mut b = Node::builder().data_dir(dir);
    if let Some(peers) = peers {
        b = b.listen("/ip4/127.0.0.1/tcp/0");
        for p in peers {
            b = b.peer(p.clone());
        }
    }
    b.start().await.unwrap()
}

/// A time before any bench's history (two years ago, ms): stock that a bench's past sales
/// sell from is received then, as in a shop, where goods arrive before they are sold. (Stock
/// received *after* a year of sales would leave every sale waiting for it in the FIFO
/// backlog, a case `fifo` handles correctly but at a cost that grows with the backlog.)
pub fn before_history() -> i64 {
    chrono::Utc::now().timestamp_millis() - 2 * 365 * 86_400_000
}

/// A product with plenty of stock; its id.
pub async fn stocked_product(h: &NodeHandle, owner: &Principal, qty: i64) -> uuid::Uuid {
    let p: NewProduct =
        serde_json::from_value(serde_json::json!({"sku": "B1", "name": "Bench", "price": 100}))
            .unwrap();
    let p = h.create_product(owner, p).await.unwrap();
    let cmd: StockIn = serde_json::from_value(
        serde_json::json!({"product_id": p.id, "qty": qty, "unit_cost": 50}),
    )
    .unwrap();
    h.stock_in_at(owner, cmd, before_history()).await.unwrap();
    p.id
}

/// One card sale of one item.
pub fn sale(product: uuid::Uuid) -> NewSale {
    serde_json::from_value(serde_json::json!({
        "lines": [{"product_id": product, "qty": 1}],
        "payments": [{"method": "card"}]
    }))
    .unwrap()
}
