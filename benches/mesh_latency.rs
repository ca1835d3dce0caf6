//! Mesh benchmark: how long until a sale posted to node A's HTTP API is visible on node B
//! (B's projection updated and its `sale_recorded` event sent), for 2 and 5 nodes on loopback,
//! each on a real data dir (every commit fsynced).
//!
//! `cargo bench --bench mesh_latency` (env `BENCH_SALES`, default 1000 per size; `BENCH_NODES`,
//! default "2,5").

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tillmesh::domain::model::*;

async fn run(nodes: usize, sales: usize) -> (Vec<f64>, Vec<f64>) {
    let dirs: Vec<_> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, ah, owner, addr_a) = first_node(Some(dirs[0].path()), true).await;
    let mut others = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        join(&ah, &owner, dir.path(), &format!("Till {}", i + 1)).await;
        others.push(start_till(dir.path(), Some(std::slice::from_ref(&addr_a))).await);
    }
    let bh = others[0].handle();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ah.devices().unwrap().len() < nodes || bh.topic().is_none() {
        assert!(Instant::now() < deadline, "the mesh formed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every connection and gossip subscription settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let base = format!("http://{}", a.http_addr().unwrap());
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "owner", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let product: Value = http
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(&token)
        .json(&json!({"sku": "B1", "name": "Bench", "price": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = product["id"].as_str().unwrap().to_string();
    let mut events = bh.subscribe();
    let mut lat = Vec::with_capacity(sales);
    let mut acked = Vec::with_capacity(sales);
    for _ in 0..sales {
        let t0 = Instant::now();
        let resp = http
            .post(format!("{base}/api/v1/sales"))
            .bearer_auth(&token)
            .json(&json!({"lines": [{"product_id": pid, "qty": 1}], "payments": [{"method": "card"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        acked.push(t0.elapsed().as_secs_f64() * 1000.0);
        let sale: Value = resp.json().await.unwrap();
        let id: uuid::Uuid = sale["id"].as_str().unwrap().parse().unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(Event::SaleRecorded { sale_id, .. }) if sale_id == id => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events closed: {e}"),
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "sale {id} never reached B");
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        if lat[lat.len() - 1] > 1000.0 {
            eprintln!(
                "  sale {} of {sales} took {:.0} ms to reach B",
                lat.len(),
                lat[lat.len() - 1]
            );
        }
    }
    // Everyone converges on every sale.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &others {
        let h = n.handle();
        while h.sales(0, i64::MAX).unwrap().len() < sales {
            assert!(Instant::now() < deadline, "a node converged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop((ah, bh));
    for n in others {
        n.shutdown().await;
    }
    a.shutdown().await;
    (lat, acked)
}

fn main() {
    let sales: usize = env_or("BENCH_SALES", 1000);
    let sizes = env_list("BENCH_NODES", "2,5");
    let rt = runtime();
    println!(
        "mesh_latency: sale posted to A's HTTP API → visible on B (event after B's commit), {sales} sales, loopback"
    );
    println!("| nodes | sales | p50 ms | p90 ms | p99 ms | max ms | A answered, p50 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let (mut lat, mut acked) = rt.block_on(run(n, sales));
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        acked.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {n} | {sales} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            lat[lat.len() - 1],
            pct(&acked, 0.5),
        );
    }
}
