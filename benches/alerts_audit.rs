//! Alerts and audit benchmark: how long `GET /api/v1/alerts` and `GET /api/v1/audit` take on
//! a shop with a lot of history (measured on the node's handle — what the handlers call — so
//! HTTP adds its ~0.2 ms on top).
//!
//! Set-up: a node on a real data dir; `BENCH_PRODUCTS` products (default 2,000) imported from
//! CSV in one request; each stocked once (a few products get too little, so some are low and
//! some oversold); `BENCH_SALES` one-item sales (default 100,000) recorded at past times spread
//! over 365 days by 16 clerks, round-robin over the products. Then `BENCH_SAMPLES` (default 200)
//! calls of each query are timed.
//!
//! `cargo bench --bench alerts_audit`

mod common;

use std::time::Instant;

use common::*;
use tillmesh::domain::audit::AuditFilter;
use tillmesh::domain::model::*;

fn stats(mut lat: Vec<f64>) -> String {
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "{:.3} | {:.3} | {:.3}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    )
}

fn main() {
    let products: usize = env_or("BENCH_PRODUCTS", 2_000);
    let sales: usize = env_or("BENCH_SALES", 100_000);
    let samples: usize = env_or("BENCH_SAMPLES", 200);
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, h, owner, _) = first_node(Some(dir.path()), false).await;
        let t = Instant::now();
        let mut csv = String::from("sku,name,price,cost,tax_rate,reorder_level\n");
        for i in 0..products {
            csv.push_str(&format!("P{i:05},Product {i},2.50,1.00,20,5\n"));
        }
        let report = h.import_products(&owner, csv, false).await.unwrap();
        assert_eq!(report.created, products);
        eprintln!("  imported {products} products in {:?}", t.elapsed());
        let ids: Vec<uuid::Uuid> = {
            let mut ps = h.products().unwrap();
            ps.sort_by(|a, b| a.sku.cmp(&b.sku));
            ps.into_iter().map(|p| p.id).collect()
        };
        // Every product gets what its share of the sales needs, plus 20; every 100th gets 10
        // fewer than it sells (oversold), every 100th + 1 exactly what it sells plus 3 (low).
        let per_product = sales.div_ceil(products) as i64;
        for (i, id) in ids.iter().enumerate() {
            let qty = match i % 100 {
                0 => (per_product - 10).max(1),
                1 => per_product + 3,
                _ => per_product + 20,
            };
            let cmd: StockIn = serde_json::from_value(
                serde_json::json!({"product_id": id, "qty": qty, "unit_cost": 100}),
            )
            .unwrap();
            h.stock_in_at(&owner, cmd, before_history()).await.unwrap();
        }
        let t = Instant::now();
        let day_ms = 86_400_000i64;
        let now = chrono::Utc::now().timestamp_millis();
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let (h, o, ids) = (h.clone(), owner.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                for i in (worker..sales).step_by(16) {
                    // Oldest first, spread over the last 365 days.
                    let at = now - 365 * day_ms + (i as i64) * (365 * day_ms / sales as i64);
                    h.record_sale_at(&o, sale(ids[i % ids.len()]), at)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!("  recorded {sales} sales in {:?}", t.elapsed());
        let alerts = h.alerts(false).unwrap();
        let oversold = alerts.iter().filter(|a| a.kind == "oversold").count();
        let low = alerts.iter().filter(|a| a.kind == "low_stock").count();
        assert!(oversold > 0 && low > 0, "{oversold} oversold, {low} low");

        println!(
            "alerts_audit: {products} products, {sales} sales over 365 days, {} alerts ({oversold} oversold, {low} low); {samples} samples",
            alerts.len()
        );
        println!("| query | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|");
        let mut lat = Vec::new();
        for _ in 0..samples {
            let t = Instant::now();
            let a = h.alerts(false).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(a.len(), alerts.len());
        }
        println!("| `alerts` (all open alerts) | {} |", stats(lat));
        let newest = AuditFilter {
            from: 0,
            to: i64::MAX,
            limit: 100,
            ..Default::default()
        };
        let mut lat = Vec::new();
        for _ in 0..samples {
            let t = Instant::now();
            let p = h.audit(&owner, &newest).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(p.entries.len(), 100);
        }
        println!("| `audit` newest 100 | {} |", stats(lat));
        let month = AuditFilter {
            from: now - 200 * day_ms,
            to: now - 170 * day_ms,
            kinds: vec!["sale".into()],
            limit: 100,
            ..Default::default()
        };
        let mut lat = Vec::new();
        for _ in 0..samples {
            let t = Instant::now();
            let p = h.audit(&owner, &month).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(p.entries.len(), 100);
        }
        println!("| `audit` kind=sale, a month 200 days ago, 100 | {} |", stats(lat));
        // The worst case: a filter nothing matches scans the whole index.
        let nobody = AuditFilter {
            from: 0,
            to: i64::MAX,
            person: Some(uuid::Uuid::new_v4()),
            limit: 100,
            ..Default::default()
        };
        let mut lat = Vec::new();
        for _ in 0..samples.min(20) {
            let t = Instant::now();
            let p = h.audit(&owner, &nobody).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(p.entries.is_empty());
        }
        println!("| `audit` person matching nothing (whole index scanned) | {} |", stats(lat));
        let t = Instant::now();
        let mut out = std::io::sink();
        h.audit_export(&owner, &mut out).unwrap();
        println!(
            "| `audit/export` (every change, once) | {:.0} | | |",
            t.elapsed().as_secs_f64() * 1000.0
        );
        drop(h);
        node.shutdown().await;
    });
}
