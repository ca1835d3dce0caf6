//! Backup and restore (issue 6).
//!
//! - `backup_wipe_restore_gives_back_the_same_shop` (processes of the built binary): a shop
//!   sells, voids and returns; `tillmesh backup --out` through the running node, `backup
//!   verify`; a corrupted and a truncated copy are refused by `verify` and `restore` with a
//!   clear error and no data dir is written; the node stops, its data dir is wiped, `tillmesh
//!   restore` rebuilds it (progress lines, a new device key): the same documents at the same
//!   heads, the same stock, sales and daily totals.
//! - `a_restored_till_rejoins_without_duplicating_a_sale` (processes): two tills; till 2 is
//!   backed up, sells on, is lost; `restore --invite` brings it back as a new device that
//!   catches up with till 1, sells under a new receipt prefix, and nothing is doubled.
//! - `importing_what_a_restored_node_has_changes_nothing` (in process): every envelope of the
//!   shop offered again to a restored node is a duplicate and changes no number.
//! - `damaged_backups_are_refused`: every kind of damage gives a clear error.

mod common;
mod procs;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use procs::*;
use serde_json::Value;

/// Document id → sorted heads, as `GET /api/v1/documents` lists them.
async fn documents(api: &Api) -> BTreeMap<String, Vec<String>> {
    let docs = api.ok("/api/v1/documents").await;
    docs.as_array()
        .expect("a document list")
        .iter()
        .map(|d| {
            let mut heads: Vec<String> = d["heads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            heads.sort();
            (d["id"].as_str().unwrap().to_string(), heads)
        })
        .collect()
}

/// Everything a shop's numbers are made of, as the API shows them.
async fn projections(api: &Api) -> (Value, Value, Value) {
    (
        api.ok("/api/v1/stock").await,
        api.ok("/api/v1/sales?from=0").await,
        api.ok("/api/v1/reports/daily?from=2020-01-01&to=2100-01-01")
            .await,
    )
}

fn backup_cmd(home: &Path, name: &str, api: &Api, out: &Path) -> Output {
    tillmesh_cmd(
        home,
        name,
        &[
            "backup",
            "--out",
            out.to_str().unwrap(),
            "--api",
            &api.base,
            "--token",
            api.token.as_deref().unwrap(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_gives_back_the_same_shop() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let data = init(home);
    let (node, addr) = run_with(&data, &home.join("run1.log"), &LOOPBACK_NO_MDNS);
    let api = Api::new(addr);
    api.wait_healthy(&node).await;
    let owner = api.login(OWNER, OWNER_PASSWORD).await;
    let apple = owner.create_product("APPLE", 250).await;
    let pear = owner.create_product("PEAR", 400).await;
    owner.stock_in(&apple, 50).await;
    owner.stock_in(&pear, 20).await;
    let mut sold = Vec::new();
    for q in 1..=5 {
        sold.push(owner.sell(&apple, q).await);
        sold.push(owner.sell(&pear, 1).await);
    }
    let void = sold[0]["id"].as_str().unwrap();
    let (status, v) = owner
        .post(
            &format!("/api/v1/sales/{void}/void"),
            serde_json::json!({"reason": "test"}),
        )
        .await;
    assert_eq!(status, 200, "void: {v}");
    let ret = sold[2]["id"].as_str().unwrap();
    let (status, r) = owner
        .post(
            &format!("/api/v1/sales/{ret}/return"),
            serde_json::json!({"lines": [{"line": 0, "qty": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "return: {r}");

    // Staff may not take a backup.
    let (status, p) = owner
        .post(
            "/api/v1/people",
            serde_json::json!({"name": "Sam", "username": "sam", "role": "staff", "pin": "1234"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let (status, body) = api
        .post(
            "/api/v1/login",
            serde_json::json!({"username": "sam", "pin": "1234"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let staff = Api {
        token: Some(body["token"].as_str().unwrap().into()),
        ..api.clone()
    };
    assert_eq!(staff.get("/api/v1/backup").await.0, 403);

    // A backup through the running node, verified offline.
    let file = home.join("shop.backup");
    let o = backup_cmd(home, "backup", &owner, &file);
    o.assert_ok("backup");
    assert!(o.stdout.contains("OK"), "{}", o.stdout);
    assert!(!home.join("shop.backup.partial").exists());
    let o = tillmesh_cmd(
        home,
        "verify",
        &["backup", "verify", file.to_str().unwrap()],
    );
    o.assert_ok("verify");
    assert!(o.stdout.contains("Backup Shop"), "{}", o.stdout);
    // A second backup to the same name is refused, the first file untouched.
    let before = std::fs::read(&file).unwrap();
    let o = backup_cmd(home, "backup-again", &owner, &file);
    assert!(!o.status.success());
    assert!(o.stderr.contains("already exists"), "{}", o.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let docs_before = documents(&owner).await;
    let numbers_before = projections(&owner).await;
    assert_eq!(numbers_before.1.as_array().unwrap().len(), 10);

    // Damaged copies are refused by verify and by restore, and restore writes nothing.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x5a;
    let corrupt = home.join("corrupt.backup");
    std::fs::write(&corrupt, &flipped).unwrap();
    let truncated = home.join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    for (bad, word) in [(&corrupt, "corrupted"), (&truncated, "truncated")] {
        let o = tillmesh_cmd(
            home,
            "verify-bad",
            &["backup", "verify", bad.to_str().unwrap()],
        );
        assert!(!o.status.success(), "{} verified", bad.display());
        assert!(
            o.stderr.contains(word),
            "verify {}: {}",
            bad.display(),
            o.stderr
        );
        let target = home.join("never");
        let o = tillmesh_cmd(
            home,
            "restore-bad",
            &[
                "restore",
                bad.to_str().unwrap(),
                "--data-dir",
                target.to_str().unwrap(),
            ],
        );
        assert!(!o.status.success(), "{} restored", bad.display());
        assert!(
            o.stderr.contains(word),
            "restore {}: {}",
            bad.display(),
            o.stderr
        );
        assert!(
            !target.exists(),
            "a refused restore created {}",
            target.display()
        );
    }
    // An empty dir stays empty; a non-empty one is refused and left alone.
    let empty = home.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = tillmesh_cmd(
        home,
        "restore-bad-empty",
        &[
            "restore",
            corrupt.to_str().unwrap(),
            "--data-dir",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let o = tillmesh_cmd(
        home,
        "restore-into-live",
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(o.stderr.contains("not empty"), "{}", o.stderr);

    // The device is lost: stop, wipe, restore.
    let old_device = owner.ok("/api/v1/status").await["device"]["id"].clone();
    node.stop();
    std::fs::remove_dir_all(&data).unwrap();
    let o = tillmesh_cmd(
        home,
        "restore",
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    o.assert_ok("restore");
    assert!(o.stdout.contains("Restored shop"), "{}", o.stdout);
    assert!(
        o.stdout.contains("tillmesh join"),
        "says how to rejoin: {}",
        o.stdout
    );
    assert!(
        o.stderr.contains("restored 0 of") && o.stderr.contains("(100%)"),
        "progress lines: {}",
        o.stderr
    );

    let (node, addr) = run_with(&data, &home.join("run2.log"), &LOOPBACK_NO_MDNS);
    let api = Api::new(addr);
    api.wait_healthy(&node).await;
    let owner = api.login(OWNER, OWNER_PASSWORD).await;
    assert_eq!(documents(&owner).await, docs_before, "documents and heads");
    assert_eq!(
        projections(&owner).await,
        numbers_before,
        "stock, sales, daily"
    );
    let status = owner.ok("/api/v1/status").await;
    assert!(status["has_shop"] == true, "{status}");
    assert!(
        status["device"].is_null(),
        "a restored device is not a member until invited again (was {old_device}): {status}"
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_till_rejoins_without_duplicating_a_sale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_a = tmp.path().join("a");
    let dir_b = tmp.path().join("b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let data_a = init(&dir_a);
    let (proc_a, addr_a) = run_with(&data_a, &dir_a.join("run.log"), &LOOPBACK_NO_MDNS);
    let a = Api::new(addr_a);
    a.wait_healthy(&proc_a).await;
    let a = a.login(OWNER, OWNER_PASSWORD).await;
    let product = a.create_product("RJ1", 300).await;
    a.stock_in(&product, 100).await;

    let invite = a.invite("till", "Till 2").await;
    let data_b = dir_b.join("data");
    let o = tillmesh_cmd(
        &dir_b,
        "join",
        &[
            "join",
            "--data-dir",
            data_b.to_str().unwrap(),
            "--no-mdns",
            &invite,
        ],
    );
    o.assert_ok("join");
    let (mut proc_b, addr_b) = run_with(&data_b, &dir_b.join("run.log"), &LOOPBACK_NO_MDNS);
    let b = Api::new(addr_b);
    b.wait_healthy(&proc_b).await;
    let b = b.login(OWNER, OWNER_PASSWORD).await;

    let count = |api: Api| async move {
        api.ok("/api/v1/sales?from=0")
            .await
            .as_array()
            .unwrap()
            .len()
    };
    for _ in 0..3 {
        b.sell(&product, 2).await;
    }
    for _ in 0..2 {
        a.sell(&product, 1).await;
    }
    for (name, api) in [("till 1", &a), ("till 2", &b)] {
        wait_for("5 sales everywhere", START_TIMEOUT, || async {
            (count(api.clone()).await == 5).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let old_prefix = b.ok("/api/v1/status").await["device"]["receipt_prefix"]
        .as_str()
        .unwrap()
        .to_string();

    // Till 2 is backed up, sells once more (a sale only it had), and is lost. Till 1 sells on.
    let file = dir_b.join("till2.backup");
    let o = backup_cmd(&dir_b, "backup", &b, &file);
    o.assert_ok("backup");
    let last = b.sell(&product, 1).await;
    let last_id = last["id"].as_str().unwrap().to_string();
    wait_for("till 1 has till 2's last sale", START_TIMEOUT, || async {
        (a.get(&format!("/api/v1/sales/{last_id}")).await.0 == 200).then_some(())
    })
    .await
    .unwrap();
    proc_b.kill9();
    drop(proc_b);
    std::fs::remove_dir_all(&data_b).unwrap();
    a.sell(&product, 3).await;

    // Restored onto a new device with a new invite: it rejoins.
    let invite = a.invite("till", "Till 2 (restored)").await;
    let data_b2 = dir_b.join("data2");
    let o = tillmesh_cmd(
        &dir_b,
        "restore",
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data_b2.to_str().unwrap(),
            "--invite",
            &invite,
            "--no-mdns",
        ],
    );
    o.assert_ok("restore");
    assert!(o.stdout.contains("Rejoined shop"), "{}", o.stdout);
    let (proc_b2, addr_b2) = run_with(&data_b2, &dir_b.join("run2.log"), &LOOPBACK_NO_MDNS);
    let b2 = Api::new(addr_b2);
    b2.wait_healthy(&proc_b2).await;
    let b2 = b2.login(OWNER, OWNER_PASSWORD).await;
    let status = b2.ok("/api/v1/status").await;
    let new_prefix = status["device"]["receipt_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        new_prefix, old_prefix,
        "a restored device gets a new receipt prefix"
    );

    // It catches up (the sale made after the backup, till 1's later sale) and sells.
    wait_for(
        "the restored till has all 7 sales",
        START_TIMEOUT,
        || async { (count(b2.clone()).await == 7).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}:\n{}", proc_b2.log_tail()));
    let fresh = b2.sell(&product, 1).await;
    assert!(
        fresh["receipt"].as_str().unwrap().starts_with(&new_prefix),
        "{fresh}"
    );
    for (name, api) in [("till 1", &a), ("restored till", &b2)] {
        wait_for("8 sales", START_TIMEOUT, || async {
            (count(api.clone()).await == 8).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Nothing doubled: 8 distinct sales and receipts on both, the same stock, the same documents.
    for api in [&a, &b2] {
        let sales = api.ok("/api/v1/sales?from=0").await;
        let sales = sales.as_array().unwrap();
        let ids: HashSet<&str> = sales.iter().map(|s| s["id"].as_str().unwrap()).collect();
        let receipts: HashSet<&str> = sales
            .iter()
            .map(|s| s["receipt"].as_str().unwrap())
            .collect();
        assert_eq!((ids.len(), receipts.len()), (8, 8));
        let stock = api.ok("/api/v1/stock").await;
        let on_hand = stock.as_array().unwrap()[0]["on_hand"].as_i64().unwrap();
        assert_eq!(on_hand, 100 - (3 * 2 + 2 + 1 + 3 + 1));
    }
    wait_for(
        "both tills hold the same documents",
        START_TIMEOUT,
        || async { (documents(&a).await == documents(&b2).await).then_some(()) },
    )
    .await
    .unwrap();
    drop(proc_b2);
    drop(proc_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_what_a_restored_node_has_changes_nothing() {
    let shop = common::shop().await;
    let (h, owner) = (shop.h.clone(), shop.owner.clone());
    let p = h
        .create_product(&owner, common::product("IDEM", 500, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, common::stock_in(p.id, 30, 200))
        .await
        .unwrap();
    for q in 1..=4 {
        h.record_sale(&owner, common::sale_of(p.id, q))
            .await
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b");
    h.write_backup(std::fs::File::create(&file).unwrap(), |_| {})
        .unwrap();
    let dir = tmp.path().join("restored");
    let mut seen = Vec::new();
    let report = tillmesh::backup::restore(&file, &dir, |p| seen.push((p.done, p.total)))
        .await
        .unwrap();
    let total = h.envelopes().unwrap().len() as u64;
    assert_eq!(report.applied, total);
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));

    let node = tillmesh::Node::builder()
        .data_dir(&dir)
        .start()
        .await
        .unwrap();
    let r = node.handle();
    assert_ne!(
        r.device_id(),
        h.device_id(),
        "a restored node has a new device key"
    );
    let numbers = |n: &tillmesh::NodeHandle| {
        (
            n.sales(0, i64::MAX).unwrap(),
            n.stock().unwrap(),
            n.daily_sales("2000-01-01", "2100-01-01").unwrap(),
            n.documents().unwrap(),
        )
    };
    let before = numbers(&r);
    assert_eq!(format!("{:?}", before), format!("{:?}", numbers(&h)));
    // Everything again, as a rejoining device receives it from its peers: all duplicates.
    let again = r
        .import_envelopes(None, h.envelopes().unwrap())
        .await
        .unwrap();
    assert_eq!(again.len() as u64, total);
    assert!(
        again
            .iter()
            .all(|x| matches!(x, Ok(tillmesh::engine::Applied::Duplicate(_)))),
        "{again:?}"
    );
    assert_eq!(format!("{:?}", numbers(&r)), format!("{:?}", before));
    // And a second restore of the same file into the restored dir is refused.
    let err = tillmesh::backup::restore(&file, &dir, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    drop(r);
    node.shutdown().await;
    drop(h);
    shop.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_are_refused() {
    let shop = common::shop().await;
    let p = shop
        .h
        .create_product(&shop.owner, common::product("DMG", 100, 0))
        .await
        .unwrap();
    shop.h
        .stock_in(&shop.owner, common::stock_in(p.id, 5, 50))
        .await
        .unwrap();
    let mut good = Vec::new();
    shop.h.write_backup(&mut good, |_| {}).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let check = |bytes: &[u8], want: &str| {
        let f = tmp.path().join("f");
        std::fs::write(&f, bytes).unwrap();
        let err = tillmesh::backup::verify(&f).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?}, got {err:?}");
    };
    let f = tmp.path().join("good");
    std::fs::write(&f, &good).unwrap();
    let v = tillmesh::backup::verify(&f).unwrap();
    assert_eq!(v.bytes, good.len() as u64);
    assert_eq!(
        v.header.records("envelopes"),
        shop.h.envelopes().unwrap().len() as u64
    );

    check(b"", "not a tillmesh backup");
    check(
        b"PK\x03\x04 a zip file, not a backup",
        "not a tillmesh backup",
    );
    // Every cut is refused as truncated, wherever it falls.
    for cut in [17, 20, 30, good.len() / 3, good.len() - 40, good.len() - 1] {
        check(&good[..cut], "truncated");
    }
    // A flipped byte anywhere after the magic is caught (by a size check or the checksum).
    for at in [16, 25, good.len() / 2, good.len() - 50, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        let f = tmp.path().join("flip");
        std::fs::write(&f, &bad).unwrap();
        let err = tillmesh::backup::verify(&f).unwrap_err().to_string();
        assert!(
            err.contains("corrupted") || err.contains("truncated") || err.contains("newer"),
            "byte {at}: {err}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    check(&longer, "follow the checksum");
    shop.node.shutdown().await;
}
