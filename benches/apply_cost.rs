//! Apply-cost benchmark: how long a node takes to verify and apply one sale made by another
//! till (`import_envelopes`, the path every gossiped change takes), on a shop with 1 day of
//! history and with 365 days of it. The node's store is on disk (every apply is a durable
//! commit) or in memory (the CPU cost alone).
//!
//! `cargo bench --bench apply_cost` (env `BENCH_DAYS`, default "1,365"; `BENCH_PER_DAY`, sales per
//! day of history, default 100; `BENCH_SAMPLES`, default 1000).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tillmesh::docs::Envelope;
use tillmesh::replica::Applied;

async fn run(days: usize, per_day: usize, samples: usize, disk: bool) -> Vec<f64> {
    let dir_a = tempfile::tempdir().unwrap();
    let (a, ah, owner, _) = first_node(disk.then_some(dir_a.path()), false).await;
    let product = stocked_product(&ah, &owner, 10_000_000).await;
    // History: `per_day` sales a day for `days` days, up to yesterday.
    let day_ms = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (h, o) = (ah.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            for i in (worker..days * per_day).step_by(16) {
                let (d, k) = ((i / per_day) as i64, (i % per_day) as i64);
                let at = now - (d + 1) * day_ms + k * 60_000;
                h.record_sale_at(&o, sale(product), at).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Another till, joined and then kept off the mesh, sells; its envelopes are captured.
    let dir_b = tempfile::tempdir().unwrap();
    join(&ah, &owner, dir_b.path(), "Till 2").await;
    let b = start_till(dir_b.path(), None).await;
    let bh = b.handle();
    let ob = bh.login_password("owner", PASSWORD).await.unwrap();
    let mut outbox = bh.outbox();
    let mut envs = Vec::with_capacity(samples);
    for _ in 0..samples {
        bh.record_sale(&ob, sale(product)).await.unwrap();
        let bytes = tokio::time::timeout(Duration::from_secs(5), outbox.recv())
            .await
            .unwrap()
            .unwrap();
        envs.push(Envelope::from_bytes(&bytes).unwrap());
    }
    // One at a time, as a quiet shop's gossip arrives.
    eprintln!("  applying {samples} envelopes ({days} days of history)");
    let mut lat = Vec::with_capacity(samples);
    for env in envs {
        let t = Instant::now();
        let r = ah.import_envelopes(None, vec![env]).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(matches!(r[0], Ok(Applied::New(_))), "{:?}", r[0]);
    }
    assert_eq!(
        ah.sales(0, i64::MAX).unwrap().len(),
        days * per_day + samples
    );
    drop((ah, bh));
    b.shutdown().await;
    a.shutdown().await;
    lat
}

fn main() {
    let days = env_list("BENCH_DAYS", "1,365");
    let per_day: usize = env_or("BENCH_PER_DAY", 100);
    let samples: usize = env_or("BENCH_SAMPLES", 1000);
    let rt = runtime();
    println!(
        "apply_cost: verify + apply one sale from another till ({samples} samples, {per_day} sales/day of history)"
    );
    println!("| store | days of history | sales stored | p50 ms | p90 ms | p99 ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for disk in [false, true] {
        for &d in &days {
            let mut lat = rt.block_on(run(d, per_day, samples, disk));
            let mean = lat.iter().sum::<f64>() / lat.len() as f64;
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "| {} | {d} | {} | {:.3} | {:.3} | {:.3} | {mean:.3} |",
                if disk { "disk" } else { "memory" },
                d * per_day,
                pct(&lat, 0.5),
                pct(&lat, 0.9),
                pct(&lat, 0.99),
            );
        }
    }
}
