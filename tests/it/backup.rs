//! Backup and restore (issue 6), and backups as the owners' secrets (issue 14).
//!
//! - `backup_wipe_restore_gives_back_the_same_shop` (processes of the built binary): a shop
//!   sells, voids and returns; `tillmesh backup --out` through the running node, `backup
//!   verify` without a key (layout and checksum only, and it says so) and with the owner's
//!   password; a corrupted and a truncated copy, a wrong password, no key at all, and the
//!   manager's password are refused by `verify` and `restore` with a clear error and no data dir
//!   is written; the node stops, its data dir is wiped, `tillmesh restore --password-file`
//!   (owner) and `restore` with `TILLMESH_RECOVERY_KEY` rebuild it (progress lines, a new device
//!   key): the same documents at the same heads, the same stock, sales and daily totals. A plain
//!   backup (the old format, here made by `snapshot decrypt`) still restores and is called
//!   unencrypted.
//! - `a_managers_backup_is_sealed_to_the_owners_and_the_recovery_key` (a node serving real
//!   HTTP): a manager's `GET /api/v1/backup` holds none of the shop secret, a staff PIN hash, the
//!   manager's sealed key, a SKU or the shop's name in the clear; neither the manager's password
//!   nor the manager's person key opens it; the owner's password and the recovery key do, and
//!   the restored store holds exactly those secrets.
//! - `a_restored_till_rejoins_without_duplicating_a_sale` (processes): two tills; till 2 is
//!   backed up, sells on, is lost; `restore --invite` brings it back as a new device that
//!   catches up with till 1, sells under a new receipt prefix, and nothing is doubled.
//! - `importing_what_a_restored_node_has_changes_nothing` (in process): every envelope of the
//!   shop offered again to a restored node is a duplicate and changes no number.
//! - `damaged_backups_are_refused`: every kind of damage gives a clear error.

use crate::common;
use crate::procs;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use procs::*;
use serde_json::Value;
use tillmesh::sealed::{RecipientKind, Unlock};

const MANAGER_PASSWORD: &str = "manager's own password";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The recovery key `init` printed into `dir/init.out`.
fn recovery_key_of(dir: &Path) -> String {
    let init_out = std::fs::read_to_string(dir.join("init.out")).unwrap();
    init_out
        .lines()
        .skip_while(|l| !l.starts_with("RECOVERY KEY"))
        .nth(1)
        .expect("init prints the recovery key")
        .trim()
        .to_string()
}

/// `tillmesh restore FILE --data-dir TARGET EXTRA…`.
fn restore_cmd(home: &Path, name: &str, file: &Path, target: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tillmesh_cmd(home, name, &args)
}

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

    // The keys that open a backup: the owner's password (the file `init` read) and the
    // recovery key; and one that must not: a manager's password.
    let owner_pw = home.join("owner.password");
    let recovery = recovery_key_of(home);
    let recovery_file = home.join("recovery.txt");
    std::fs::write(&recovery_file, format!("{recovery}\n")).unwrap();
    let (status, p) = owner
        .post(
            "/api/v1/people",
            serde_json::json!({"name": "Mia", "username": "mia", "role": "manager",
                               "password": MANAGER_PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let manager_pw = home.join("manager.password");
    std::fs::write(&manager_pw, MANAGER_PASSWORD).unwrap();
    let manager = api.login("mia", MANAGER_PASSWORD).await;

    // A backup through the running node, checked without a key (it says what it did not check)
    // and with the owner's password.
    let file = home.join("shop.backup");
    let o = backup_cmd(home, "backup", &owner, &file);
    o.assert_ok("backup");
    assert!(o.stdout.contains("OK — encrypted backup"), "{}", o.stdout);
    assert!(!home.join("shop.backup.partial").exists());
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"tillmesh-seal\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup file is its owner's only");
    }
    let o = tillmesh_cmd(
        home,
        "verify-nokey",
        &["backup", "verify", file.to_str().unwrap()],
    );
    o.assert_ok("verify without a key");
    assert!(
        o.stdout.contains("layout and checksum intact")
            && o.stdout.contains("content was not checked")
            && o.stdout.contains("owner ")
            && o.stdout.contains("recovery "),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("Backup Shop"), "{}", o.stdout);
    let o = tillmesh_cmd(
        home,
        "verify",
        &[
            "backup",
            "verify",
            file.to_str().unwrap(),
            "--password-file",
            owner_pw.to_str().unwrap(),
        ],
    );
    o.assert_ok("verify");
    assert!(o.stdout.contains("Backup Shop"), "{}", o.stdout);
    assert!(
        o.stdout.contains("opened with an owner's key"),
        "{}",
        o.stdout
    );
    // A second backup to the same name is refused, the first file untouched.
    let before = std::fs::read(&file).unwrap();
    let o = backup_cmd(home, "backup-again", &owner, &file);
    assert!(!o.status.success());
    assert!(o.stderr.contains("already exists"), "{}", o.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let docs_before = documents(&owner).await;
    let numbers_before = projections(&owner).await;
    assert_eq!(numbers_before.1.as_array().unwrap().len(), 10);

    // A manager may make a backup, and cannot open it: nor can anyone without a key.
    let by_manager = home.join("manager.backup");
    backup_cmd(home, "backup-manager", &manager, &by_manager).assert_ok("a manager's backup");
    for (name, file, extra) in [
        (
            "manager-pw",
            &by_manager,
            vec!["--password-file", manager_pw.to_str().unwrap()],
        ),
        (
            "manager-pw-own",
            &file,
            vec!["--password-file", manager_pw.to_str().unwrap()],
        ),
    ] {
        let o = tillmesh_cmd(
            home,
            &format!("verify-{name}"),
            &[
                &["backup", "verify", file.to_str().unwrap()][..],
                &extra[..],
            ]
            .concat(),
        );
        assert!(
            !o.status.success(),
            "a manager's password opened {}",
            file.display()
        );
        assert!(o.stderr.contains("opens none"), "{}", o.stderr);
    }

    // Damaged copies, a wrong password, no key at all: refused by verify and by restore, and
    // restore writes nothing.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x5a;
    let corrupt = home.join("corrupt.backup");
    std::fs::write(&corrupt, &flipped).unwrap();
    let truncated = home.join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let wrong_pw = home.join("wrong.password");
    std::fs::write(&wrong_pw, "not the owner's password").unwrap();
    let owner_flags = ["--password-file", owner_pw.to_str().unwrap()];
    let wrong_flags = ["--password-file", wrong_pw.to_str().unwrap()];
    for (bad, flags, word) in [
        (&corrupt, &owner_flags[..], "corrupted or truncated"),
        (&truncated, &owner_flags[..], "corrupted or truncated"),
        (&corrupt, &[][..], "corrupted or truncated"),
        (&truncated, &[][..], "corrupted or truncated"),
        (&file, &wrong_flags[..], "opens none"),
        (
            &file,
            &["--password-file", manager_pw.to_str().unwrap()][..],
            "opens none",
        ),
    ] {
        let o = tillmesh_cmd(
            home,
            "verify-bad",
            &[&["backup", "verify", bad.to_str().unwrap()][..], flags].concat(),
        );
        assert!(
            !o.status.success(),
            "{} verified with {flags:?}",
            bad.display()
        );
        assert!(
            o.stderr.contains(word),
            "verify {} {flags:?}: {}",
            bad.display(),
            o.stderr
        );
        let target = home.join("never");
        let o = restore_cmd(home, "restore-bad", bad, &target, flags);
        assert!(!o.status.success(), "{} restored", bad.display());
        assert!(
            o.stderr.contains(word) || (flags.is_empty() && o.stderr.contains("encrypted")),
            "restore {} {flags:?}: {}",
            bad.display(),
            o.stderr
        );
        assert!(
            !target.exists(),
            "a refused restore created {}",
            target.display()
        );
    }
    let target = home.join("never");
    let o = restore_cmd(home, "restore-nokey", &file, &target, &[]);
    assert!(!o.status.success());
    assert!(
        o.stderr
            .contains("encrypted for the shop's owners and recovery key"),
        "{}",
        o.stderr
    );
    assert!(!target.exists());
    // An empty dir stays empty; a non-empty one is refused and left alone.
    let empty = home.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = restore_cmd(home, "restore-bad-empty", &corrupt, &empty, &owner_flags);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let o = restore_cmd(home, "restore-into-live", &file, &data, &owner_flags);
    assert!(!o.status.success());
    assert!(o.stderr.contains("not empty"), "{}", o.stderr);

    // The device is lost: stop, wipe, restore with the owner's password.
    let old_device = owner.ok("/api/v1/status").await["device"]["id"].clone();
    node.stop();
    std::fs::remove_dir_all(&data).unwrap();
    let o = restore_cmd(home, "restore", &file, &data, &owner_flags);
    o.assert_ok("restore");
    assert!(o.stdout.contains("Restored shop"), "{}", o.stdout);
    assert!(
        o.stdout.contains("an owner's key opened it"),
        "{}",
        o.stdout
    );
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
    // The manager's backup, with the recovery key from the environment.
    let by_recovery = home.join("by-recovery");
    let mut cmd = tillmesh(home);
    cmd.env("TILLMESH_RECOVERY_KEY", &recovery);
    let o = finish(
        cmd,
        home,
        "restore-recovery",
        &[
            "restore",
            by_manager.to_str().unwrap(),
            "--data-dir",
            by_recovery.to_str().unwrap(),
        ],
    );
    o.assert_ok("restore with the recovery key");
    assert!(
        o.stdout.contains("the recovery key opened it"),
        "{}",
        o.stdout
    );
    // An old, plain backup (what tillmesh wrote before; `snapshot decrypt` makes one) still
    // restores, and is called unencrypted.
    let plain = home.join("plain.backup");
    tillmesh_cmd(
        home,
        "decrypt",
        &[
            "snapshot",
            "decrypt",
            file.to_str().unwrap(),
            "--out",
            plain.to_str().unwrap(),
            "--recovery-key-file",
            recovery_file.to_str().unwrap(),
        ],
    )
    .assert_ok("decrypt a backup");
    assert!(
        std::fs::read(&plain)
            .unwrap()
            .starts_with(b"tillmesh-backup\n")
    );
    let o = tillmesh_cmd(
        home,
        "verify-plain",
        &["backup", "verify", plain.to_str().unwrap()],
    );
    o.assert_ok("verify a plain backup");
    assert!(o.stdout.contains("NOT encrypted"), "{}", o.stdout);
    let from_plain = home.join("from-plain");
    let o = restore_cmd(home, "restore-plain", &plain, &from_plain, &[]);
    o.assert_ok("restore a plain backup");
    assert!(o.stdout.contains("NOT encrypted"), "{}", o.stdout);

    for (dir, log) in [
        (&data, "run2.log"),
        (&by_recovery, "run3.log"),
        (&from_plain, "run4.log"),
    ] {
        let (node, addr) = run_with(dir, &home.join(log), &LOOPBACK_NO_MDNS);
        let api = Api::new(addr);
        api.wait_healthy(&node).await;
        let owner = api.login(OWNER, OWNER_PASSWORD).await;
        let docs = documents(&owner).await;
        assert_eq!(docs, docs_before, "documents and heads");
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
            "--password-file",
            dir_a.join("owner.password").to_str().unwrap(),
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
    h.write_backup(&owner, std::fs::File::create(&file).unwrap(), |_| {})
        .unwrap();
    let dir = tmp.path().join("restored");
    let mut seen = Vec::new();
    let recovery = Unlock::Key(tillmesh::identity::parse_recovery_key(&shop.recovery_key).unwrap());
    let report = tillmesh::backup::restore(&file, Some(&recovery), &dir, |p| {
        seen.push((p.done, p.total))
    })
    .await
    .unwrap();
    assert_eq!(report.opened_by, Some(RecipientKind::Recovery));
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
            n.daily_sales(&common::owner_of(n), "2000-01-01", "2100-01-01")
                .unwrap(),
            n.stored_documents().unwrap(),
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
            .all(|x| matches!(x, Ok(tillmesh::replica::Applied::Duplicate(_)))),
        "{again:?}"
    );
    assert_eq!(format!("{:?}", numbers(&r)), format!("{:?}", before));
    // And a second restore of the same file into the restored dir is refused.
    let err = tillmesh::backup::restore(&file, Some(&recovery), &dir, |_| {})
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
    let mut sealed = Vec::new();
    shop.h
        .write_backup(&shop.owner, &mut sealed, |_| {})
        .unwrap();
    let recovery = Unlock::Key(tillmesh::identity::parse_recovery_key(&shop.recovery_key).unwrap());
    // The plain backup inside (the format tillmesh wrote before it encrypted backups).
    let mut good = Vec::new();
    tillmesh::sealed::decrypt(sealed.as_slice(), &recovery, &mut good).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let check = |bytes: &[u8], want: &str| {
        let f = tmp.path().join("f");
        std::fs::write(&f, bytes).unwrap();
        let err = tillmesh::backup::verify(&f, None).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?}, got {err:?}");
    };
    let f = tmp.path().join("good");
    std::fs::write(&f, &good).unwrap();
    let v = tillmesh::backup::verify(&f, None).unwrap();
    assert!(v.sealed.is_none());
    assert_eq!(v.bytes, good.len() as u64);
    assert_eq!(
        v.header.records("envelopes"),
        shop.h.envelopes().unwrap().len() as u64
    );
    assert_eq!(v.header.records("held"), 0, "held envelopes never travel");

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
        let err = tillmesh::backup::verify(&f, None).unwrap_err().to_string();
        assert!(
            err.contains("corrupted") || err.contains("truncated") || err.contains("newer"),
            "byte {at}: {err}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    check(&longer, "follow the checksum");

    // The encrypted file: sound with the key and without; any flip or cut is caught by both.
    let f = tmp.path().join("sealed");
    std::fs::write(&f, &sealed).unwrap();
    let v = tillmesh::backup::verify(&f, Some(&recovery)).unwrap();
    assert_eq!(v.sealed.as_ref().unwrap().bytes, sealed.len() as u64);
    assert!(matches!(
        tillmesh::backup::inspect(&f).unwrap(),
        tillmesh::backup::Inspection::Sealed(_)
    ));
    let err = tillmesh::backup::verify(&f, None).unwrap_err().to_string();
    assert!(err.contains("encrypted"), "{err}");
    let n = sealed.len();
    let flips = [20, n / 2, n - 40, n - 1];
    let cuts = [10, 200, n / 2, n - 36, n - 1];
    for bad in flips
        .iter()
        .map(|&at| {
            let mut b = sealed.clone();
            b[at] ^= 1;
            b
        })
        .chain(cuts.iter().map(|&cut| sealed[..cut].to_vec()))
    {
        std::fs::write(&f, &bad).unwrap();
        for err in [
            tillmesh::backup::verify(&f, Some(&recovery)).unwrap_err(),
            tillmesh::backup::inspect(&f).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(
                err.contains("corrupted or truncated") || err.contains("not a tillmesh backup"),
                "{err}"
            );
        }
    }
    shop.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managers_backup_is_sealed_to_the_owners_and_the_recovery_key() {
    use tillmesh::domain::model::{NewPerson, Role};
    let tmp = tempfile::tempdir().unwrap();
    let node = tillmesh::Node::builder()
        .data_dir(tmp.path().join("till"))
        .listen("/ip4/127.0.0.1/tcp/0")
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let h = node.handle();
    let created = h
        .create_shop(common::new_shop(
            "EUR",
            tillmesh::domain::model::TaxMode::Inclusive,
        ))
        .await
        .unwrap();
    let owner = h.login_password("olivia", common::OWNER_PW).await.unwrap();
    const SKU: &str = "QUOKKA-4471";
    let p = h
        .create_product(&owner, common::product(SKU, 450, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, common::stock_in(p.id, 10, 100))
        .await
        .unwrap();
    h.record_sale(&owner, common::sale_of(p.id, 2))
        .await
        .unwrap();
    for (name, username, role, password, pin) in [
        (
            "Mia Manager",
            "mia",
            Role::Manager,
            Some(MANAGER_PASSWORD),
            None,
        ),
        ("Sam Staff", "sam", Role::Staff, None, Some("4321")),
    ] {
        h.add_person(
            &owner,
            NewPerson {
                name: name.into(),
                username: username.into(),
                role,
                password: password.map(Into::into),
                pin: pin.map(Into::into),
            },
        )
        .await
        .unwrap();
    }

    // The manager downloads a backup over HTTP, as the web UI and `tillmesh backup` do.
    let base = format!("http://{}", node.http_addr().unwrap());
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "mia", "password": MANAGER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("the manager logs in");
    let resp = http
        .get(format!("{base}/api/v1/backup"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert!(
        bytes.starts_with(b"tillmesh-seal\n"),
        "the manager's backup is not encrypted: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
    );
    let file = tmp.path().join("manager.backup");
    std::fs::write(&file, &bytes).unwrap();

    // Neither the manager's password nor the manager's own person key opens it; no key at all
    // does not either.
    let err = tillmesh::backup::verify(&file, Some(&Unlock::Password(MANAGER_PASSWORD.into())))
        .unwrap_err();
    assert!(err.to_string().contains("opens none"), "{err}");
    let manager_key = h
        .login_password("mia", MANAGER_PASSWORD)
        .await
        .unwrap()
        .key
        .expect("a manager has a person key");
    let err = tillmesh::backup::verify(&file, Some(&Unlock::Key(manager_key))).unwrap_err();
    assert!(
        err.to_string()
            .contains("not one of the backup's recipients"),
        "{err}"
    );
    let target = tmp.path().join("by-manager");
    let err = tillmesh::backup::restore(
        &file,
        Some(&Unlock::Password(MANAGER_PASSWORD.into())),
        &target,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("opens none"), "{err}");
    assert!(
        !target.exists(),
        "a refused restore wrote {}",
        target.display()
    );
    assert!(tillmesh::backup::verify(&file, None).is_err());

    // The owner's password and the recovery key open it, and what they restore holds the
    // secrets the file must not show in the clear.
    let by_owner = tmp.path().join("by-owner");
    let r = tillmesh::backup::restore(
        &file,
        Some(&Unlock::Password(common::OWNER_PW.into())),
        &by_owner,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(r.opened_by, Some(RecipientKind::Owner));
    let recovery =
        Unlock::Key(tillmesh::identity::parse_recovery_key(&created.recovery_key).unwrap());
    let by_recovery = tmp.path().join("by-recovery");
    let r = tillmesh::backup::restore(&file, Some(&recovery), &by_recovery, |_| {})
        .await
        .unwrap();
    assert_eq!(r.opened_by, Some(RecipientKind::Recovery));

    let store = tillmesh::store::Store::open(&by_owner.join(tillmesh::node::STORE_FILE)).unwrap();
    let doc = |id: &str| {
        store
            .load_doc(id)
            .unwrap()
            .expect("the document was restored")
    };
    let view = tillmesh::domain::shop::ShopView::read(
        Some(&doc("members")),
        Some(&doc("settings")),
        Some(&doc("vault")),
        "",
        &tillmesh::docs::members::Anchor::default(),
    );
    let shop_secret = view
        .shop_secret
        .clone()
        .expect("the vault holds the shop secret");
    let pin_hash = view
        .people
        .iter()
        .find(|p| p.person.username == "sam")
        .and_then(|p| p.pin_hash.clone())
        .expect("members holds the staff PIN hash");
    let manager_id = view
        .people
        .iter()
        .find(|p| p.person.username == "mia")
        .unwrap()
        .person
        .id;
    let manager_sealed = view
        .vault
        .get(&manager_id)
        .expect("the manager's sealed key");
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("the shop secret", shop_secret.as_bytes().to_vec()),
        ("the staff PIN hash", pin_hash.as_bytes().to_vec()),
        (
            "the PIN hash's digest",
            pin_hash.rsplit('$').next().unwrap().as_bytes().to_vec(),
        ),
        (
            "the manager's sealed key",
            manager_sealed.ciphertext.as_bytes().to_vec(),
        ),
        ("a SKU", SKU.as_bytes().to_vec()),
        ("the shop's name", b"Corner Shop".to_vec()),
        ("the manager's name", b"Mia Manager".to_vec()),
    ];
    // What a plain backup (what `GET /backup` gave a manager before) shows in the clear: the
    // backup inside holds every one of these as readable text.
    let mut plain = Vec::new();
    tillmesh::sealed::decrypt(bytes.as_slice(), &recovery, &mut plain).unwrap();
    for (what, needle) in &needles {
        assert!(contains(&plain, needle), "the plain backup holds no {what}");
    }
    for (what, needle) in &needles {
        assert!(
            !contains(&bytes, needle),
            "the manager's backup holds {what} in the clear"
        );
    }
    // In the clear: the recipients (the owner and the recovery key, not the manager) and the
    // owner's password-sealed key (the documented trade-off: a password alone opens the file).
    let header = tillmesh::sealed::read_header(&mut bytes.as_slice()).unwrap();
    let kinds: Vec<RecipientKind> = header.recipients.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RecipientKind::Owner, RecipientKind::Recovery]);
    assert_eq!(header.owner_keys.len(), 1);
    assert_ne!(header.owner_keys[0].public_key, manager_sealed.public_key);
    assert!(
        !bytes
            .windows(manager_sealed.salt.len())
            .any(|w| w == manager_sealed.salt.as_bytes()),
        "the manager's sealed key travels in the header"
    );
    drop(store);

    // What it restores is the shop.
    let r = tillmesh::Node::builder()
        .data_dir(&by_recovery)
        .start()
        .await
        .unwrap();
    let rh = r.handle();
    assert_eq!(
        format!(
            "{:?}",
            (
                rh.products().unwrap(),
                rh.stock().unwrap(),
                rh.sales(0, i64::MAX).unwrap()
            )
        ),
        format!(
            "{:?}",
            (
                h.products().unwrap(),
                h.stock().unwrap(),
                h.sales(0, i64::MAX).unwrap()
            )
        )
    );
    drop(rh);
    r.shutdown().await;
    drop(h);
    node.shutdown().await;
}
