//! Shared test helpers: a shop on an in-memory node, logins, products.
#![allow(dead_code)]

pub mod mesh;

use std::process::{Command, Stdio};

use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

pub const OWNER_PW: &str = "correct horse battery";

pub struct Shop {
    pub node: Node,
    pub h: NodeHandle,
    pub owner: Principal,
    pub recovery_key: String,
}

pub fn new_shop(currency: &str, tax_mode: TaxMode) -> NewShop {
    NewShop {
        shop_name: "Corner Shop".into(),
        owner_name: "Olivia Owner".into(),
        username: "olivia".into(),
        password: OWNER_PW.into(),
        currency: Some(currency.into()),
        timezone: Some("Europe/Paris".into()),
        tax_mode: Some(tax_mode),
        device_name: None,
    }
}

pub async fn shop_with(currency: &str, tax_mode: TaxMode) -> Shop {
    let node = Node::builder().memory().start().await.expect("node starts");
    let h = node.handle();
    let created = h
        .create_shop(new_shop(currency, tax_mode))
        .await
        .expect("shop created");
    let owner = h
        .login_password("olivia", OWNER_PW)
        .await
        .expect("owner logs in");
    Shop {
        node,
        h,
        owner,
        recovery_key: created.recovery_key,
    }
}

pub async fn shop() -> Shop {
    shop_with("EUR", TaxMode::Inclusive).await
}

pub fn product(sku: &str, price: i64, tax_rate: u32) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: format!("Product {sku}"),
        price,
        barcode: Some(format!("40000{sku}")),
        category: None,
        unit: None,
        cost: Some(price / 2),
        tax_rate: Some(tax_rate),
        reorder_level: Some(2),
        variants: vec![],
    }
}

pub fn sale_of(product_id: uuid::Uuid, qty: i64) -> NewSale {
    NewSale {
        lines: vec![NewSaleLine {
            product_id,
            variant_id: None,
            qty,
            discount: None,
        }],
        payments: vec![NewPayment {
            method: PaymentMethod::Card,
            amount: None,
        }],
        note: None,
        ticket_id: None,
    }
}

pub fn stock_in(product_id: uuid::Uuid, qty: i64, unit_cost: i64) -> StockIn {
    StockIn {
        product_id,
        variant_id: None,
        qty,
        unit_cost: Some(unit_cost),
        note: None,
    }
}

pub fn on_hand(h: &NodeHandle, product_id: uuid::Uuid) -> i64 {
    h.stock()
        .unwrap()
        .into_iter()
        .find(|s| s.product_id == product_id)
        .map(|s| s.on_hand)
        .unwrap()
}

/// Waits for `cond` up to `timeout`, polling.
pub async fn wait_for<F: FnMut() -> bool>(mut cond: F, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}

/// Set (to "1") in a test binary re-executed inside a private network namespace.
pub const NETNS_ENV: &str = "TILLMESH_TEST_NETNS";

/// Set (to "1") in a test binary re-executed by [`in_own_process`].
pub const OWN_PROCESS_ENV: &str = "TILLMESH_TEST_OWN_PROCESS";

/// The full name libtest knows the test `name` by (`module::name`): all tests live in one
/// binary (tests/it/main.rs), whose module tree follows the files, so the module is the path of
/// the caller's file under tests/it/ (`tests/it/browser/ui.rs` → `browser::ui`). `name` may
/// start with an inner module (`circuit::some_test`).
#[track_caller]
pub fn test_name(name: &str) -> String {
    let file = std::panic::Location::caller().file();
    let module = file
        .strip_prefix("tests/it/")
        .and_then(|f| f.strip_suffix(".rs"))
        .unwrap_or_else(|| panic!("{file} is not a test module under tests/it/"));
    let module = module.strip_suffix("/mod").unwrap_or(module);
    format!("{}::{name}", module.replace('/', "::"))
}

/// Runs `body` in a private network namespace. Outside one, re-runs the test `name` (of the
/// caller's file) of this binary inside `unshare --net` and asserts it passed there.
#[track_caller]
pub fn in_private_netns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(NETNS_ENV).is_some() {
        assert_only_loopback();
        body();
        return;
    }
    let name = test_name(name);
    let exe = std::env::current_exe().expect("current test binary");
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "mDNS tests must run in a private network namespace, but `unshare` could not be \
                 run ({e}). Install util-linux and run the tests as root (CI does)."
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- inside `unshare --net` ---\n{stdout}");
    eprintln!("{stderr}");
    if !out.status.success() && !stdout.contains("running 1 test") {
        panic!(
            "could not enter a private network namespace for the mDNS test {name} ({}): {stderr}\n\
             These tests need root (CAP_SYS_ADMIN), util-linux `unshare` and iproute2 `ip`; they \
             are never run on the real network interfaces.",
            out.status
        );
    }
    assert_ran_one_test(&name, "inside `unshare --net`", &out.status, &stdout);
}

/// Runs `body` in a process of its own with the environment `envs`: re-runs the test `name` (of
/// the caller's file) of this binary with them and asserts it passed there. For a test that
/// needs process-wide state (an environment variable read once), which it must not change in
/// this process, shared by every test (tests/it/main.rs).
#[track_caller]
pub fn in_own_process(name: &str, envs: &[(&str, &str)], body: impl FnOnce()) {
    if std::env::var_os(OWN_PROCESS_ENV).is_some() {
        body();
        return;
    }
    let name = test_name(name);
    let exe = std::env::current_exe().expect("current test binary");
    let out = Command::new(&exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS_ENV, "1")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("--- in its own process ---\n{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_ran_one_test(&name, "in its own process", &out.status, &stdout);
}

/// Asserts that a re-run of this binary filtered to `name --exact` ran that one test and it
/// passed (a wrong name would run none and "pass").
fn assert_ran_one_test(name: &str, where_: &str, status: &std::process::ExitStatus, stdout: &str) {
    assert!(status.success(), "{name} failed {where_}");
    assert!(
        stdout.contains("running 1 test") && stdout.contains("test result: ok. 1 passed"),
        "{name} did not run {where_}"
    );
}

/// Panics unless `lo` is this network namespace's only interface (`/proc/self/net/dev` is per
/// namespace; `/sys/class/net` is not).
pub fn assert_only_loopback() {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "refusing to run mDNS: this network namespace has interfaces besides lo"
    );
}

/// An invite for a till, created by `by` on `h`.
pub async fn till_invite(h: &NodeHandle, by: &Principal, name: impl Into<String>) -> InviteCreated {
    h.create_invite(
        by,
        NewInvite {
            role: DeviceRole::Till,
            name: name.into(),
            ttl_minutes: None,
        },
    )
    .await
    .expect("an owner may invite a till")
}

/// A `members` change made on `members` at `at` by `edit`, signed by `key` as its author (a
/// hand-made change, as an attacker with that key would make it).
pub fn members_change(
    members: &mut automerge::AutoCommit,
    at: &[automerge::ChangeHash],
    key: &ed25519_dalek::SigningKey,
    edit: impl FnOnce(&mut automerge::AutoCommit),
) -> tillmesh::docs::Envelope {
    let mut fork = members.fork_at(at).unwrap();
    fork.set_author(Some(automerge::Author::from(
        key.verifying_key().to_bytes().to_vec(),
    )));
    edit(&mut fork);
    fork.commit();
    let change = fork.get_last_local_change().unwrap();
    tillmesh::docs::Envelope::sign(key, "members", &change, 1, at)
}

/// Writes a till's `device:<id>` entry for `key` (as an admission, or an owner, writes it),
/// with `certificate` if given; returns the device id.
pub fn put_device_entry(
    doc: &mut automerge::AutoCommit,
    key: &[u8; 32],
    receipt_prefix: &str,
    certificate: Option<&str>,
) -> String {
    use automerge::transaction::Transactable;
    let id = tillmesh::identity::device_id(&ed25519_dalek::VerifyingKey::from_bytes(key).unwrap());
    let obj = doc
        .put_object(
            automerge::ROOT,
            format!("device:{id}"),
            automerge::ObjType::Map,
        )
        .unwrap();
    doc.put(&obj, "name", "Hand-made").unwrap();
    doc.put(&obj, "role", "till").unwrap();
    doc.put(&obj, "public_key", hex::encode(key)).unwrap();
    doc.put(&obj, "receipt_prefix", receipt_prefix).unwrap();
    if let Some(c) = certificate {
        doc.put(&obj, "certificate", c).unwrap();
    }
    id
}

/// A peer reached by calling its `serve` directly, through the wire encoding (anti-entropy
/// without a network).
pub struct Direct(pub NodeHandle);

impl tillmesh::sync::SyncPeer for Direct {
    async fn request(
        &self,
        req: tillmesh::sync::SyncRequest,
    ) -> tillmesh::Result<tillmesh::sync::SyncResponse> {
        use tillmesh::sync::{SyncRequest, SyncResponse};
        let req = SyncRequest::from_bytes(&req.to_bytes())?;
        SyncResponse::from_bytes(&self.0.answer_sync(req).to_bytes())
    }
}

/// The node `.0` as a sync peer of the node `.1`, in process: requests go through the wire
/// encoding and are answered as from `.1`'s device key (what a connection authenticates), so
/// `.1` can redeem an invite `.0` made and join.
pub struct Joinable(pub NodeHandle, pub NodeHandle);

impl tillmesh::sync::SyncPeer for Joinable {
    async fn request(
        &self,
        req: tillmesh::sync::SyncRequest,
    ) -> tillmesh::Result<tillmesh::sync::SyncResponse> {
        use tillmesh::sync::{SyncRequest, SyncResponse};
        let req = SyncRequest::from_bytes(&req.to_bytes())?;
        let from = self.1.device_public_key();
        SyncResponse::from_bytes(&self.0.answer_sync_from(Some(&from), req).await.to_bytes())
    }

    fn public_key(&self) -> Option<[u8; 32]> {
        Some(self.0.device_public_key())
    }
}

/// The shop's first owner as `h` knows them (no login: a read that needs a manager or an owner
/// checks the role, not the key), for helpers that read reports on several nodes.
pub fn owner_of(h: &NodeHandle) -> Principal {
    let p = h
        .login_people()
        .into_iter()
        .find(|p| p.role == Role::Owner)
        .expect("the shop has an owner");
    Principal {
        person_id: p.id,
        name: p.name,
        username: p.username,
        role: p.role,
        key: None,
    }
}
