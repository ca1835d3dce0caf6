//! Catch-up benchmark: a shop of 5 tills on loopback, each on a real data dir; one till is off
//! while the four others sell N sales between them; then it starts again (dialing the four) and
//! we time how long until its store holds exactly what the others hold (bucket digests equal).
//!
//! `cargo bench --bench catch_up` (env `BENCH_MISSED`, default "10000,100000"; `BENCH_NODES`,
//! default 5).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tillmesh::NodeHandle;

async fn run(nodes: usize, missed: usize) -> (f64, f64) {
    let dirs: Vec<_> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, ah, owner, addr_a) = first_node(Some(dirs[0].path()), false).await;
    let product = stocked_product(&ah, &owner, missed as i64 * 2).await;
    let mut tills = Vec::new();
    let mut addrs = vec![addr_a.clone()];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        join(&ah, &owner, dir.path(), &format!("Till {}", i + 1)).await;
        let n = start_till(dir.path(), Some(&addrs)).await;
        let h = n.handle();
        wait_until("the till listens", Duration::from_secs(30), || {
            !h.addrs().is_empty()
        })
        .await;
        addrs.push(h.addrs()[0].clone());
        tills.push(n);
    }
    let mut handles: Vec<NodeHandle> = vec![ah.clone()];
    handles.extend(tills.iter().map(|n| n.handle()));
    wait_until("the shop formed", Duration::from_secs(120), || {
        handles.iter().all(|h| h.devices().unwrap().len() == nodes)
    })
    .await;

    // The last till goes off; the others sell.
    let off = tills.pop().unwrap();
    let off_dir = dirs[nodes - 1].path().to_path_buf();
    handles.pop();
    off.shutdown().await;
    let t = Instant::now();
    let sellers = handles.len();
    let mut tasks = Vec::new();
    for h in &handles {
        let o = h.login_password("owner", PASSWORD).await.unwrap();
        // Eight clerks per till, so each writer commits in groups.
        for _ in 0..8 {
            let (h, o) = (h.clone(), o.clone());
            let n = missed / sellers / 8;
            tasks.push(tokio::spawn(async move {
                for _ in 0..n {
                    h.record_sale(&o, sale(product)).await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = missed / sellers / 8 * sellers * 8;
    wait_until(
        "the online tills converged",
        Duration::from_secs(1800),
        || {
            let d = ah.bucket_digests().unwrap();
            handles.iter().all(|h| h.bucket_digests().unwrap() == d)
        },
    )
    .await;
    let load = t.elapsed().as_secs_f64();
    eprintln!(
        "  {total} sales on {sellers} tills, every online till converged in {load:.1} s ({:.0} sales/s)",
        total as f64 / load
    );

    // The till comes back.
    let t = Instant::now();
    let back = start_till(&off_dir, Some(&addrs[..nodes - 1])).await;
    let bh = back.handle();
    let target = ah.bucket_digests().unwrap();
    wait_until(
        "the returning till caught up",
        Duration::from_secs(1800),
        || bh.bucket_digests().unwrap() == target,
    )
    .await;
    let caught_up = t.elapsed().as_secs_f64();
    assert_eq!(bh.sales(0, i64::MAX).unwrap().len(), total);
    drop((ah, bh, handles));
    back.shutdown().await;
    for n in tills {
        n.shutdown().await;
    }
    a.shutdown().await;
    (caught_up, total as f64 / caught_up)
}

fn main() {
    let nodes: usize = env_or("BENCH_NODES", 5);
    let sizes = env_list("BENCH_MISSED", "10000,100000");
    let rt = runtime();
    println!(
        "catch_up: a till off while {} others sell; time from its restart to identical digests",
        nodes - 1
    );
    println!("| nodes | missed sales | catch-up s | sales/s |");
    println!("|---:|---:|---:|---:|");
    for missed in sizes {
        let (secs, rate) = rt.block_on(run(nodes, missed));
        println!("| {nodes} | {missed} | {secs:.2} | {rate:.0} |");
    }
}
