//! Relay and backup benchmarks (issue 6).
//!
//! 1. **Through the relay**: a till and an owner's laptop that know only a relay (all three
//!    in-process on loopback, real data dirs, every local commit fsynced): how long from
//!    `record_sale` on the till until the laptop has applied it (its `sale_recorded` event).
//!    Sales one after the other, `BENCH_SALES` (default 300). This is the store-and-forward
//!    path (till → relay's replica → laptop): the laptop blocks the till, because on one
//!    machine their circuit through the relay would be hole-punched (dcutr) into a direct
//!    connection, which `mesh_latency` measures already.
//! 2. **Backup and restore of a large shop**: one till with `BENCH_BACKUP_SALES` (default
//!    100,000) sales spread over a year; then `BENCH_RUNS` (default 3) times each: a backup
//!    written to a file (one read transaction, encrypted to the owner and the recovery key as
//!    every backup is), `backup::verify` of it with the owner's key (decrypt + check), and
//!    `backup::restore` with that key into a fresh data dir (verify + import of every change
//!    through the verify-and-apply path).
//! 3. **Encrypted snapshots of that shop** (`node/snapshot.rs`), `BENCH_RUNS` times each: a
//!    snapshot taken as the relay takes it (backup from one read transaction, encrypted to the
//!    owner and recovery key, streamed into a local snapshot directory through `object_store`),
//!    and its decryption with the owner's key into a backup file (without the backup verify,
//!    measured above).
//!
//! `cargo bench --bench relay_backup`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tillmesh::domain::model::*;
use tillmesh::relay::{Relay, RelayConfig};

async fn relay_latency(sales: usize) -> Vec<f64> {
    let tmp = tempfile::tempdir().unwrap();
    let (till, th, owner, _) = first_node(Some(&tmp.path().join("till")), false).await;
    let relay = Relay::start(RelayConfig::new(
        tmp.path().join("relay"),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
    ))
    .await
    .unwrap();
    let inv = th
        .create_invite(
            &owner,
            NewInvite {
                role: DeviceRole::Relay,
                name: "Relay".into(),
                ttl_minutes: None,
            },
        )
        .await
        .unwrap();
    tillmesh::relay::enroll(&tmp.path().join("relay"), &inv.invite)
        .await
        .unwrap();
    wait_until("the relay serves the shop", Duration::from_secs(30), || {
        relay.shops().len() == 1
    })
    .await;
    let relay_addr = relay.addrs()[0].to_string();
    th.add_peer(&owner, &relay_addr).await.unwrap();
    let laptop_dir = tmp.path().join("laptop");
    join(&th, &owner, &laptop_dir, "Laptop").await;
    std::fs::remove_file(laptop_dir.join(tillmesh::mesh::PEERS_FILE)).unwrap();
    let laptop = start_till(&laptop_dir, Some(std::slice::from_ref(&relay_addr))).await;
    let lh = laptop.handle();
    // Store and forward only: on loopback the laptop would otherwise reach the till through a
    // circuit on the relay, which dcutr upgrades to a direct connection at once (see the module
    // doc).
    block_when_meshed(&lh, &th.peer_id()).await;
    let product = stocked_product(&th, &owner, 1_000_000).await;
    wait_until(
        "the laptop has the product",
        Duration::from_secs(60),
        || lh.product(product).is_ok(),
    )
    .await;
    // Let the connections and the first pulls settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut events = lh.subscribe();
    let mut lat = Vec::with_capacity(sales);
    for _ in 0..sales {
        let t0 = Instant::now();
        let s = th.record_sale(&owner, sale(product)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match events.recv().await {
                    Ok(Event::SaleRecorded { sale_id, .. }) if sale_id == s.id => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events closed: {e}"),
                }
            }
        })
        .await
        .expect("the sale reached the laptop");
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop((th, lh));
    laptop.shutdown().await;
    till.shutdown().await;
    relay.shutdown().await;
    lat
}

fn file_size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

async fn backup_restore(sales: usize, runs: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (till, th, owner, _) = first_node(Some(&tmp.path().join("till")), false).await;
    let product = stocked_product(&th, &owner, sales as i64 + 1).await;
    let year_ago = chrono::Utc::now().timestamp_millis() - 365 * 24 * 3600 * 1000;
    let step = 365 * 24 * 3600 * 1000 / sales as i64;
    let t0 = Instant::now();
    for chunk in (0..sales).collect::<Vec<_>>().chunks(256) {
        let futs = chunk.iter().map(|i| {
            let th = th.clone();
            let owner = owner.clone();
            async move {
                th.record_sale_at(&owner, sale(product), year_ago + *i as i64 * step)
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(futs).await;
    }
    let status = th.status().unwrap();
    println!(
        "generated {sales} sales over a year in {:.1} s: {} documents, {} changes, store {:.1} MB",
        t0.elapsed().as_secs_f64(),
        status.documents,
        status.envelopes,
        file_size(&tmp.path().join("till").join(tillmesh::node::STORE_FILE)) as f64 / 1e6
    );
    println!("| run | backup s | file MB | verify s | restore s | restored changes/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let (mut b, mut v, mut r) = (Vec::new(), Vec::new(), Vec::new());
    let unlock =
        tillmesh::sealed::Unlock::Key(owner.key.clone().expect("the owner's key is unlocked"));
    for run in 1..=runs {
        let file = tmp.path().join(format!("b{run}"));
        let t = Instant::now();
        let th2 = th.clone();
        let f2 = file.clone();
        let owner2 = owner.clone();
        tokio::task::spawn_blocking(move || {
            th2.write_backup(
                &owner2,
                std::io::BufWriter::new(std::fs::File::create(&f2).unwrap()),
                |_| {},
            )
            .unwrap()
        })
        .await
        .unwrap();
        let backup = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (f2, u2) = (file.clone(), unlock.clone());
        let verified =
            tokio::task::spawn_blocking(move || tillmesh::backup::verify(&f2, Some(&u2)).unwrap())
                .await
                .unwrap();
        let verify = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let report = tillmesh::backup::restore(
            &file,
            Some(&unlock),
            &tmp.path().join(format!("r{run}")),
            |_| {},
        )
        .await
        .unwrap();
        let restore = t.elapsed().as_secs_f64();
        assert_eq!(report.applied, verified.header.records("envelopes"));
        println!(
            "| {run} | {backup:.2} | {:.1} | {verify:.2} | {restore:.2} | {:.0} |",
            verified.sealed.as_ref().map_or(verified.bytes, |s| s.bytes) as f64 / 1e6,
            report.applied as f64 / restore
        );
        b.push(backup);
        v.push(verify);
        r.push(restore);
        std::fs::remove_dir_all(tmp.path().join(format!("r{run}"))).unwrap();
        std::fs::remove_file(&file).unwrap();
    }
    for x in [&mut b, &mut v, &mut r] {
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "| **median** | {:.2} | | {:.2} | {:.2} | |",
        pct(&b, 0.5),
        pct(&v, 0.5),
        pct(&r, 0.5)
    );
    snapshots(&th, &owner, tmp.path(), runs).await;
    drop(th);
    till.shutdown().await;
}

async fn snapshots(
    th: &tillmesh::NodeHandle,
    owner: &Principal,
    tmp: &std::path::Path,
    runs: usize,
) {
    use tillmesh::snapshot::{self, SnapshotStore, SnapshotTarget, Unlock};
    let dir = tmp.join("snapshots");
    let store = SnapshotStore::open(&SnapshotTarget::Dir(dir.clone())).unwrap();
    let unlock = Unlock::Key(owner.key.clone().expect("the owner's key is unlocked"));
    println!("| run | snapshot + encrypt s | snapshot MB | decrypt s |");
    println!("|---:|---:|---:|---:|");
    let (mut e, mut d) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let t = Instant::now();
        let taken = snapshot::take(&store, th, chrono::Utc::now().timestamp_millis())
            .await
            .unwrap();
        let enc = t.elapsed().as_secs_f64();
        let file = dir.join(&taken.name);
        let out = tmp.join(format!("d{run}"));
        let t = Instant::now();
        let (f, o, u) = (file.clone(), out.clone(), unlock.clone());
        tokio::task::spawn_blocking(move || {
            let input = std::io::BufReader::new(std::fs::File::open(&f).unwrap());
            let output = std::io::BufWriter::new(std::fs::File::create(&o).unwrap());
            snapshot::decrypt(input, &u, output).unwrap()
        })
        .await
        .unwrap();
        let dec = t.elapsed().as_secs_f64();
        println!(
            "| {run} | {enc:.2} | {:.1} | {dec:.2} |",
            taken.bytes as f64 / 1e6
        );
        e.push(enc);
        d.push(dec);
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(&out).unwrap();
    }
    for x in [&mut e, &mut d] {
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "| **median** | {:.2} | | {:.2} |",
        pct(&e, 0.5),
        pct(&d, 0.5)
    );
}

fn main() {
    let sales: usize = env_or("BENCH_SALES", 300);
    let big: usize = env_or("BENCH_BACKUP_SALES", 100_000);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let rt = runtime();
    println!(
        "relay_backup: a sale on a till → applied on a laptop that reaches it only through a relay (loopback, {sales} sales)"
    );
    let mut lat = rt.block_on(relay_latency(sales));
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("| sales | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {sales} | {:.2} | {:.2} | {:.2} | {:.2} |",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!("backup and restore of a shop with {big} sales over a year, {runs} runs");
    rt.block_on(backup_restore(big, runs));
}
