//! Scheduled, encrypted snapshots on the relay (issue 6, `node/snapshot.rs`).
//!
//! - `a_relay_snapshots_its_shop_encrypted_to_the_owner_and_the_recovery_key` (in process,
//!   127.0.0.1): a relay taking snapshots every second writes one of a shop it serves; the file
//!   holds no plaintext of the shop (product name, SKU, shop and owner names); the recovery key
//!   and the owner's password both decrypt it into a backup that verifies and restores into a
//!   data dir with the same products, sales, stock and documents as the shop's till; a wrong
//!   key, a wrong password, a flipped byte and a truncated file are errors that write nothing;
//!   the till's `/peers` entry for the relay shows `last_snapshot`; `backup::restore` opens the
//!   snapshot itself with the recovery key (a wrong password restores nothing).
//! - `a_snapshot_is_taken_only_when_the_shop_changed` (the scheduler's tick, in-memory shop):
//!   unchanged → no snapshot, also after a restart; changed → a snapshot, and retention
//!   deletes the older one of the same hour; an owner added later is a recipient of later
//!   snapshots (their password opens those, not the earlier ones).
//! - `the_relay_binary_snapshots_and_the_cli_lists_and_decrypts` (processes): `tillmesh relay
//!   --snapshot-every 1s`, then `tillmesh snapshot list`, `tillmesh snapshot decrypt` with the
//!   recovery key `init` printed, `tillmesh backup verify` of the output; the till's
//!   `GET /api/v1/peers` shows the relay's `last_snapshot`.
//!
//! Retention's selection is unit-tested with synthetic times in `node/snapshot.rs`.

use crate::common;
use crate::procs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mesh::enroll_relay;
use common::*;
use tillmesh::domain::model::*;
use tillmesh::relay::{Relay, RelayConfig};
use tillmesh::snapshot::{
    self, RecipientKind, SnapshotConfig, SnapshotStore, SnapshotTarget, Snapshots, TickOutcome,
    Unlock,
};
use tillmesh::{Node, NodeHandle};

const T: Duration = Duration::from_secs(90);
const SKU: &str = "ZEBRA-7731";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls an async condition every 50 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a shop's business looks like: products, sales, stock, daily sums.
fn business(n: &NodeHandle) -> String {
    format!(
        "{:?}",
        (
            n.products().unwrap(),
            n.sales(0, i64::MAX).unwrap(),
            n.stock().unwrap(),
            n.daily_sales(&owner_of(n), "2000-01-01", "2100-01-01")
                .unwrap(),
        )
    )
}

fn partial_of(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", out.display()))
}

/// `decrypt_file` fails and leaves nothing at `out` or `out.partial`.
fn refused(file: &Path, unlock: &Unlock, out: &Path, expect: &str) {
    let err = snapshot::decrypt_file(file, unlock, out).unwrap_err();
    assert!(
        err.to_string().contains(expect),
        "expected {expect:?} in: {err}"
    );
    assert!(!out.exists(), "a refused snapshot left {}", out.display());
    assert!(
        !partial_of(out).exists(),
        "a refused snapshot left a .partial"
    );
}

fn every_second(dir: &Path) -> SnapshotConfig {
    SnapshotConfig {
        target: SnapshotTarget::Dir(dir.to_path_buf()),
        every: Duration::from_secs(1),
        keep_hourly: 24,
        keep_daily: 31,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_snapshots_its_shop_encrypted_to_the_owner_and_the_recovery_key() {
    let tmp = tempfile::tempdir().unwrap();
    let till = Node::builder()
        .data_dir(tmp.path().join("till"))
        .listen("/ip4/127.0.0.1/tcp/0")
        .start()
        .await
        .unwrap();
    let h = till.handle();
    let created = h
        .create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let p = h
        .create_product(&owner, product(SKU, 450, 2000))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 40, 200)).await.unwrap();
    for q in 1..=3 {
        h.record_sale(&owner, sale_of(p.id, q)).await.unwrap();
    }

    let snaps = tmp.path().join("snaps");
    let relay_dir = tmp.path().join("relay");
    let mut cfg = RelayConfig::new(&relay_dir, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    cfg.snapshots = Some(every_second(&snaps));
    let relay = Relay::start(cfg).await.unwrap();
    enroll_relay(&relay_dir, &h, &owner, "Cloud relay").await;
    assert!(wait_for(|| relay.shops().len() == 1, T).await);
    let shop = relay.shops()[0];
    h.add_peer(&owner, &relay.addrs()[0].to_string())
        .await
        .unwrap();
    let replica = relay.replica(shop).unwrap();
    assert!(
        wait_for(
            || h.devices().unwrap().len() == 2
                && replica.status().unwrap().envelopes == h.status().unwrap().envelopes,
            T
        )
        .await,
        "the relay holds the whole shop"
    );

    // A snapshot of the whole shop: the last snapshot's fingerprint (taken before its backup
    // was read) is the replica's current one, and the replica holds what the till holds.
    let replica_dir = relay_dir.join("shops").join(shop.to_string());
    assert!(
        wait_for(
            || {
                let current = hex::encode(snapshot::state_fingerprint(&replica).unwrap());
                snapshot::SnapshotState::load(&replica_dir)
                    .is_some_and(|s| s.fingerprint == current)
                    && replica.status().unwrap().envelopes == h.status().unwrap().envelopes
            },
            T
        )
        .await,
        "the relay took a snapshot of the whole shop"
    );
    // The relay notes the time once the snapshot's retention pass is done too.
    assert!(
        wait_for(
            || relay.last_snapshot(shop).is_some_and(|t| t <= now_ms()),
            T
        )
        .await,
        "the relay knows when it took the snapshot"
    );
    // The till learns of it at its next pull from the relay (every 10 s).
    assert!(
        eventually(T, || async {
            h.peers()
                .await
                .iter()
                .any(|p| p.role.as_deref() == Some("relay") && p.last_snapshot.is_some())
        })
        .await,
        "the till's peers show the relay's last snapshot"
    );

    let store = SnapshotStore::open(&SnapshotTarget::Dir(snaps.clone())).unwrap();
    let all = store.list(Some(shop)).await.unwrap();
    let newest = all.last().expect("a snapshot is listed").clone();
    assert_eq!(newest.shop_id, shop);
    assert!(newest.name.starts_with(&format!("{shop}/")) && newest.name.ends_with(".tmsnap"));
    let file = snaps.join(&newest.name);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, newest.size);
    for plain in [
        SKU,
        "Product ZEBRA",
        "Corner Shop",
        "Olivia Owner",
        "olivia",
        "Europe/Paris",
    ] {
        assert!(
            !contains(&bytes, plain.as_bytes()),
            "the snapshot holds {plain:?} in the clear"
        );
    }
    let header = snapshot::read_header(&mut bytes.as_slice()).unwrap();
    assert_eq!(header.shop_id, shop);
    let kinds: Vec<RecipientKind> = header.recipients.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RecipientKind::Owner, RecipientKind::Recovery]);

    // Wrong keys, a flipped byte, a cut file: errors, nothing written.
    let out = tmp.path().join("restored.backup");
    refused(
        &file,
        &Unlock::Key(tillmesh::identity::new_signing_key()),
        &out,
        "not one of the snapshot's recipients",
    );
    refused(
        &file,
        &Unlock::Password("not the owner's password".into()),
        &out,
        "opens none",
    );
    let recovery =
        Unlock::Key(tillmesh::identity::parse_recovery_key(&created.recovery_key).unwrap());
    let flipped = tmp.path().join("flipped.tmsnap");
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&flipped, &bad).unwrap();
    refused(&flipped, &recovery, &out, "corrupted or truncated");
    let cut = tmp.path().join("cut.tmsnap");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    refused(&cut, &recovery, &out, "corrupted or truncated");

    // The recovery key and the owner's password open it.
    let d = snapshot::decrypt_file(&file, &recovery, &out).unwrap();
    assert_eq!(d.backup.header.shop_id, Some(shop));
    tillmesh::backup::verify(&out, None).unwrap();
    let out2 = tmp.path().join("by-password.backup");
    snapshot::decrypt_file(&file, &Unlock::Password(OWNER_PW.into()), &out2).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
    let before = std::fs::read(&out).unwrap();
    let err = snapshot::decrypt_file(&file, &recovery, &out).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "an existing file is left alone"
    );

    // Restored, it is the shop.
    let restored_dir = tmp.path().join("restored");
    tillmesh::backup::restore(&out, None, &restored_dir, |_| {})
        .await
        .unwrap();
    let r = Node::builder()
        .data_dir(&restored_dir)
        .start()
        .await
        .unwrap();
    let rh = r.handle();
    assert_eq!(business(&rh), business(&h));
    assert_eq!(
        format!("{:?}", rh.stored_documents().unwrap()),
        format!("{:?}", h.stored_documents().unwrap())
    );
    assert!(rh.products().unwrap().iter().any(|p| p.sku == SKU));
    // `restore` opens the snapshot itself too (no plain copy on disk), with the same keys only.
    let direct = tmp.path().join("restored-direct");
    let err = tillmesh::backup::restore(
        &file,
        Some(&Unlock::Password("not the owner's password".into())),
        &direct,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("opens none"), "{err}");
    assert!(!direct.exists());
    let r2 = tillmesh::backup::restore(&file, Some(&recovery), &direct, |_| {})
        .await
        .unwrap();
    assert_eq!(r2.opened_by, Some(RecipientKind::Recovery));
    assert_eq!(r2.applied, d.backup.header.records("envelopes"));

    drop((rh, replica, h));
    r.shutdown().await;
    relay.shutdown().await;
    till.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_taken_only_when_the_shop_changed() {
    let shop = common::shop().await;
    let (h, owner) = (shop.h.clone(), shop.owner.clone());
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("replica");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = SnapshotConfig {
        every: Duration::from_secs(3600),
        ..every_second(&tmp.path().join("snaps"))
    };
    let snaps = Snapshots::open(cfg.clone()).unwrap();

    let TickOutcome::Taken { taken: first, .. } = snaps.tick(&h, &state).await.unwrap() else {
        panic!("a shop without a snapshot gets one");
    };
    for _ in 0..2 {
        assert!(matches!(
            snaps.tick(&h, &state).await.unwrap(),
            TickOutcome::Unchanged
        ));
    }
    // A restarted relay remembers (the state file), so still nothing to do.
    let restarted = Snapshots::open(cfg.clone()).unwrap();
    assert!(matches!(
        restarted.tick(&h, &state).await.unwrap(),
        TickOutcome::Unchanged
    ));
    assert_eq!(restarted.last_snapshot(&state), Some(first.created_at));

    h.create_product(&owner, product("CHG", 100, 2000))
        .await
        .unwrap();
    let TickOutcome::Taken {
        taken: second,
        pruned,
    } = snaps.tick(&h, &state).await.unwrap()
    else {
        panic!("a changed shop gets a snapshot");
    };
    assert!(second.created_at > first.created_at);
    // Both in the same hour and day: retention keeps the newest only.
    assert_eq!(pruned, vec![first.name.clone()]);
    let listed: Vec<String> = snaps
        .store()
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, vec![second.name.clone()]);
    let before_oscar = snaps.store().read(&second.name).await.unwrap();
    assert_eq!(second.recipients, 2);

    // An owner added later is a recipient of the next snapshot, not of the earlier ones.
    h.add_person(
        &owner,
        NewPerson {
            name: "Oscar Owner".into(),
            username: "oscar".into(),
            role: Role::Owner,
            password: Some("oscar's long password".into()),
            pin: None,
        },
    )
    .await
    .unwrap();
    let TickOutcome::Taken { taken: third, .. } = snaps.tick(&h, &state).await.unwrap() else {
        panic!("a new owner is a change");
    };
    assert_eq!(third.recipients, 3);
    let oscar = Unlock::Password("oscar's long password".into());
    let file = tmp.path().join("snaps").join(&third.name);
    let out = tmp.path().join("third.backup");
    let d = snapshot::decrypt_file(&file, &oscar, &out).unwrap();
    assert_eq!(d.header.recipients.len(), 3);
    let mut sink = Vec::new();
    assert!(snapshot::decrypt(before_oscar.as_slice(), &oscar, &mut sink).is_err());
    let recovery = Unlock::Key(tillmesh::identity::parse_recovery_key(&shop.recovery_key).unwrap());
    snapshot::decrypt(before_oscar.as_slice(), &recovery, &mut sink).unwrap();

    drop(h);
    shop.node.shutdown().await;
}

/// A shop's till (`init` + `run`, a product, stock, a sale) and a relay process enrolled in it
/// and added as the till's peer, started with `relay_flags` and `env`.
struct ShopAndRelay {
    till: procs::Proc,
    api: procs::Api,
    relay: procs::Proc,
    relay_home: PathBuf,
    recovery_key: String,
}

async fn shop_and_relay(tmp: &Path, relay_flags: &[&str], env: &[(&str, String)]) -> ShopAndRelay {
    use procs::{Api, OWNER, OWNER_PASSWORD};
    let shop_dir = tmp.join("shop");
    std::fs::create_dir_all(&shop_dir).unwrap();
    let data = procs::init(&shop_dir);
    let init_out = std::fs::read_to_string(shop_dir.join("init.out")).unwrap();
    let recovery_key = init_out
        .lines()
        .skip_while(|l| !l.starts_with("RECOVERY KEY"))
        .nth(1)
        .expect("init prints the recovery key")
        .trim()
        .to_string();
    let (till, addr) = procs::run_with(&data, &shop_dir.join("run.log"), &procs::LOOPBACK_NO_MDNS);
    let api = Api::new(addr);
    api.wait_healthy(&till).await;
    let api = api.login(OWNER, OWNER_PASSWORD).await;
    let product = api.create_product("PROC-SNAP", 300).await;
    api.stock_in(&product, 20).await;
    api.sell(&product, 2).await;

    let relay_home = tmp.join("relay");
    std::fs::create_dir_all(&relay_home).unwrap();
    let relay_data = relay_home.join("data");
    let invite = api.invite("relay", "Cloud relay").await;
    let o = procs::tillmesh_cmd(
        &relay_home,
        "enroll",
        &[
            "relay",
            "enroll",
            "--data-dir",
            relay_data.to_str().unwrap(),
            &invite,
        ],
    );
    o.assert_ok("enroll");
    let mut cmd = procs::tillmesh(&relay_home);
    cmd.arg("relay")
        .arg("--data-dir")
        .arg(&relay_data)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-http"])
        .args(relay_flags);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (relay, relay_addr) = procs::spawn_until(cmd, &relay_home.join("relay.log"), |l| {
        l.strip_prefix("relay listening on ").map(String::from)
    });
    let (status, body) = api
        .post("/api/v1/peers", serde_json::json!({"addr": relay_addr}))
        .await;
    assert!(status < 300, "POST /peers: {status} {body}");
    ShopAndRelay {
        till,
        api,
        relay,
        relay_home,
        recovery_key,
    }
}

impl ShopAndRelay {
    /// Waits until the till's `GET /api/v1/peers` shows the relay's last snapshot.
    async fn wait_last_snapshot(&self) -> i64 {
        let peer = procs::wait_for(
            "the till's peers show the relay's last snapshot",
            T,
            || async {
                let (_, peers) = self.api.get("/api/v1/peers").await;
                peers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["role"] == "relay" && p["last_snapshot"].is_i64())
                    .cloned()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nrelay:\n{}", self.relay.log_tail()));
        peer["last_snapshot"].as_i64().unwrap()
    }

    /// `tillmesh snapshot list ARGS`: the (shop id, name) of the first snapshot listed.
    fn list(&self, args: &[&str], env: &[(&str, String)]) -> (String, String) {
        let mut cmd = procs::tillmesh(&self.relay_home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut all = vec!["snapshot", "list"];
        all.extend_from_slice(args);
        let o = procs::finish(cmd, &self.relay_home, "list", &all);
        o.assert_ok("snapshot list");
        let line = o
            .stdout
            .lines()
            .find(|l| l.contains(".tmsnap"))
            .unwrap_or_else(|| panic!("no snapshot listed:\n{}", o.stdout))
            .to_string();
        let shop_id = line.split_whitespace().next().unwrap().to_string();
        let name = line.split_whitespace().last().unwrap().to_string();
        assert!(name.starts_with(&format!("{shop_id}/")), "{line}");
        (shop_id, name)
    }

    /// `tillmesh snapshot decrypt FILE --out OUT --recovery-key-file F` with the key `init`
    /// printed (or `key`), then `tillmesh backup verify OUT`.
    fn decrypt_and_verify(&self, file: &Path, out: &Path) {
        let key_file = self.relay_home.join("recovery.key");
        std::fs::write(&key_file, format!("{}\n", self.recovery_key)).unwrap();
        let o = procs::tillmesh_cmd(
            &self.relay_home,
            "decrypt",
            &[
                "snapshot",
                "decrypt",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--recovery-key-file",
                key_file.to_str().unwrap(),
            ],
        );
        o.assert_ok("snapshot decrypt");
        let o = procs::tillmesh_cmd(
            &self.relay_home,
            "verify",
            &["backup", "verify", out.to_str().unwrap()],
        );
        o.assert_ok("backup verify");
        assert!(o.stdout.contains("OK"), "{}", o.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_binary_snapshots_and_the_cli_lists_and_decrypts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = shop_and_relay(tmp.path(), &["--snapshot-every", "1s"], &[]).await;
    assert!(s.wait_last_snapshot().await > 0);

    // `snapshot list` shows it without any key; the recovery key decrypts it into a backup
    // that verifies.
    let snaps = s.relay_home.join("data").join("snapshots");
    let (_, name) = s.list(&["--dir", snaps.to_str().unwrap()], &[]);
    s.decrypt_and_verify(&snaps.join(&name), &s.relay_home.join("shop.backup"));

    // A wrong key: an error, nothing written.
    let wrong = s.relay_home.join("wrong.key");
    std::fs::write(
        &wrong,
        tillmesh::identity::format_recovery_key(&tillmesh::identity::new_signing_key()),
    )
    .unwrap();
    let nothing = s.relay_home.join("nothing.backup");
    let o = procs::tillmesh_cmd(
        &s.relay_home,
        "decrypt-wrong",
        &[
            "snapshot",
            "decrypt",
            snaps.join(&name).to_str().unwrap(),
            "--out",
            nothing.to_str().unwrap(),
            "--recovery-key-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        o.stderr.contains("not one of the snapshot's recipients"),
        "{}",
        o.stderr
    );
    assert!(!nothing.exists() && !partial_of(&nothing).exists());

    s.relay.stop();
    s.till.stop();
}

/// moto's S3-compatible server (Python package `moto[server]`, which `.ci/run` installs) on
/// 127.0.0.1, killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn s3_server(dir: &Path) -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("moto.log")).unwrap();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("moto_server runs (pip install 'moto[server]')");
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    procs::wait_for("moto's S3 server answers", T, || async {
        c.get(&server.endpoint).send().await.ok().map(|_| ())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}:\n{}",
            std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default()
        )
    });
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_writes_snapshots_to_s3_compatible_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = s3_server(tmp.path()).await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .put(format!("{}/tillmesh-snaps", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "creating the bucket: {}",
        r.status()
    );
    let env = vec![
        ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let url = "s3://tillmesh-snaps/relay-1";
    let s = shop_and_relay(
        tmp.path(),
        &["--snapshot-every", "1s", "--snapshot-url", url],
        &env,
    )
    .await;
    assert!(s.wait_last_snapshot().await > 0);
    assert!(
        !s.relay_home.join("data").join("snapshots").exists(),
        "with --snapshot-url nothing goes to the local directory"
    );
    let (_, name) = s.list(&["--url", url], &env);
    // Fetched from the bucket by `snapshot decrypt --url`, decrypted with the recovery key.
    let key_file = s.relay_home.join("recovery.key");
    std::fs::write(&key_file, format!("{}\n", s.recovery_key)).unwrap();
    let backup = s.relay_home.join("from-s3.backup");
    let mut cmd = procs::tillmesh(&s.relay_home);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let o = procs::finish(
        cmd,
        &s.relay_home,
        "decrypt-s3",
        &[
            "snapshot",
            "decrypt",
            &name,
            "--url",
            url,
            "--out",
            backup.to_str().unwrap(),
            "--recovery-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    o.assert_ok("snapshot decrypt --url");
    assert!(o.stdout.contains("OK"), "{}", o.stdout);
    tillmesh::backup::verify(&backup, None).unwrap();
    assert!(
        !PathBuf::from(format!("{}.tmsnap", backup.display())).exists(),
        "the fetched snapshot is removed"
    );
    // The object in the bucket is not readable without credentials.
    let r = c
        .get(format!("{}/tillmesh-snaps/relay-1/{name}", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    s.relay.stop();
    s.till.stop();
    drop(s3);
}
