//! The web UI and API against a stranger on the shop's Wi-Fi, a revoked person and a manager
//! (issue 14, items 6 and 7), with real nodes over real HTTP sockets.
//!
//! Tests that need another device's (non-loopback) source address run inside a private network
//! namespace (`common::in_private_netns`, only `lo`), where `lo` also carries 10.77.0.1 (the
//! till, as the LAN reaches it) and 10.77.0.2 (another device on the LAN): a client bound to
//! 10.77.0.2 is, for the node, a device on the Wi-Fi; a client on 127.0.0.1 is the till's own
//! screen. Nothing leaves the namespace.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{OWNER_PW, in_private_netns, wait_for};
use serde_json::{Value, json};
use tillmesh::api::ApiOptions;
use tillmesh::docs::Envelope;
use tillmesh::domain::model::*;
use tillmesh::{Error, Node, NodeHandle};

const TILL_IP: &str = "10.77.0.1";
const LAN_IP: &str = "10.77.0.2";
const PIN: &str = "1234";
const MANAGER_PW: &str = "manager password";

/// Puts the till's and the other device's addresses on `lo` (inside the private namespace).
fn add_lan_addresses() {
    for ip in [TILL_IP, LAN_IP] {
        let out = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .expect("iproute2's `ip` runs");
        assert!(
            out.status.success(),
            "ip addr add {ip}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A node serving HTTP on `ip` (a free port), in memory or in `dir`.
async fn node_at(ip: &str, dir: Option<&Path>, opts: ApiOptions) -> (Node, u16) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let builder = match dir {
        Some(d) => Node::builder().data_dir(d),
        None => Node::builder().memory(),
    };
    let node = builder
        .http_listener(listener)
        .api_options(opts)
        .start()
        .await
        .expect("the node starts");
    (node, port)
}

/// Creates the shop (owner `olivia`) and staff with [`PIN`]; returns the owner.
async fn with_shop(h: &NodeHandle, staff: &[&str]) -> Principal {
    h.create_shop(common::new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    for name in staff {
        h.add_person(
            &owner,
            NewPerson {
                name: name.to_string(),
                username: name.to_string(),
                role: Role::Staff,
                password: None,
                pin: Some(PIN.into()),
            },
        )
        .await
        .unwrap();
    }
    owner
}

/// An HTTP client of one node, from one source address.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// From the device itself (loopback).
    fn till(port: u16) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// From another device on the LAN.
    fn lan(port: u16) -> Client {
        Client {
            http: reqwest::Client::builder()
                .local_address(LAN_IP.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
            base: format!("http://{TILL_IP}:{port}"),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.expect("the node answers");
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    async fn login(&self, body: Value) -> (u16, Value) {
        self.post("/api/v1/login", body, &[]).await
    }

    async fn login_pin(&self, user: &str, pin: &str) -> u16 {
        self.login(json!({"username": user, "pin": pin})).await.0
    }

    /// Logs in and returns the bearer token.
    async fn token(&self, body: Value) -> String {
        let (status, res) = self.login(body).await;
        assert_eq!(status, 200, "login: {res}");
        res["token"].as_str().unwrap().to_owned()
    }
}

/// A device on the LAN guesses a cashier's PIN while the cashier keeps logging in at the till:
/// the guesses are stopped after the limit however often the cashier succeeds, the till's own
/// screen is never locked out, and five wrong PINs from the LAN do not lock a cashier out of
/// the till either.
#[test]
fn interleaved_pin_guesses_from_the_lan_are_stopped_while_the_till_logs_in() {
    in_private_netns(
        "interleaved_pin_guesses_from_the_lan_are_stopped_while_the_till_logs_in",
        || {
            add_lan_addresses();
            runtime().block_on(async {
                let (node, port) = node_at("0.0.0.0", None, ApiOptions::default()).await;
                with_shop(&node.handle(), &["sam", "sue"]).await;
                let (till, lan) = (Client::till(port), Client::lan(port));

                let mut stopped_after = None;
                for i in 0..12 {
                    let guess = format!("{:04}", 5000 + i);
                    match lan.login_pin("sam", &guess).await {
                        429 => {
                            stopped_after = Some(i);
                            break;
                        }
                        status => assert_eq!(status, 401, "guess {i}"),
                    }
                    // The cashier logs in at the till between two guesses.
                    assert_eq!(till.login_pin("sam", PIN).await, 200, "till login {i}");
                }
                assert_eq!(
                    stopped_after,
                    Some(5),
                    "the LAN's guesses must be stopped after 5, whatever the till does"
                );
                // Even the right PIN is refused from the LAN now, without being checked …
                assert_eq!(lan.login_pin("sam", PIN).await, 429);
                // … and the till still logs the cashier in.
                assert_eq!(till.login_pin("sam", PIN).await, 200);

                // Five wrong PINs in a row from the LAN do not lock `sue` out of the till.
                for i in 0..5 {
                    assert_eq!(lan.login_pin("sue", &format!("{:04}", 6000 + i)).await, 401);
                }
                assert_eq!(lan.login_pin("sue", PIN).await, 429);
                assert_eq!(till.login_pin("sue", PIN).await, 200);
                node.shutdown().await;
            });
        },
    );
}

/// Failed logins are kept in the store: restarting the node does not give a guesser a fresh
/// set of attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, port) = node_at("127.0.0.1", Some(dir.path()), ApiOptions::default()).await;
    with_shop(&node.handle(), &["sam"]).await;
    let c = Client::till(port);
    for i in 0..5 {
        assert_eq!(c.login_pin("sam", &format!("{:04}", 7000 + i)).await, 401);
    }
    assert_eq!(c.login_pin("sam", PIN).await, 429);
    node.shutdown().await;

    let (node, port) = node_at("127.0.0.1", Some(dir.path()), ApiOptions::default()).await;
    let c = Client::till(port);
    assert_eq!(
        c.login_pin("sam", PIN).await,
        429,
        "the lockout must survive the restart"
    );
    // Other people are not affected.
    assert_eq!(
        c.login(json!({"username": "olivia", "password": OWNER_PW}))
            .await
            .0,
        200
    );
    node.shutdown().await;
}

/// Password hashing never runs on the async workers and is queued: `/health` keeps answering
/// while 50 logins of unknown users (each a 64 MiB argon2 hash) are under way. In a process of
/// its own with the real argon2id parameters (the test build's cheap ones would finish the
/// logins before a health check could be sent).
#[test]
fn health_answers_while_50_unknown_user_logins_run() {
    common::in_own_process(
        "health_answers_while_50_unknown_user_logins_run",
        &[(tillmesh::identity::STRONG_KDF_ENV, "1")],
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(health_answers_while_logins_run());
        },
    );
}

async fn health_answers_while_logins_run() {
    use tillmesh::identity::KdfParams;
    assert_eq!(KdfParams::PASSWORD.in_effect(), KdfParams::PASSWORD);
    let opts = ApiOptions {
        login_user_limit: 0,
        login_ip_limit: 0,
        ..ApiOptions::default()
    };
    let (node, port) = node_at("127.0.0.1", None, opts).await;
    with_shop(&node.handle(), &[]).await;
    let logins: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                Client::till(port)
                    .login(
                        json!({"username": format!("ghost{i}"), "password": "a guessed password"}),
                    )
                    .await
                    .0
            })
        })
        .collect();
    // No request waits behind a hash: health checks keep being answered, one after the
    // other, while the logins are still being hashed (how fast is `benches/login_flood.rs`).
    let c = Client::till(port);
    let mut checks = 0;
    while logins.iter().any(|t| !t.is_finished()) {
        let (status, body) = c.get("/health", None).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
        checks += 1;
    }
    assert!(
        checks >= 3,
        "only {checks} health checks while the logins ran"
    );
    for t in logins {
        assert_eq!(t.await.unwrap(), 401, "an unknown user is refused");
    }
    node.shutdown().await;
}

/// Reads an event stream until it ends or `timeout` passes; `Some(text)` if it ended.
async fn read_until_end(
    mut res: reqwest::Response,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
) {
    while let Ok(Some(chunk)) = res.chunk().await {
        seen.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A revoked person's open event stream ends and receives no sale made after the revocation;
/// a stream whose session logs out ends too, even with no event to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_end_with_their_session_or_person() {
    let (node, port) = node_at("127.0.0.1", None, ApiOptions::default()).await;
    let h = node.handle();
    let owner = with_shop(&h, &["sam", "sue"]).await;
    let product = h
        .create_product(&owner, common::product("A1", 250, 2000))
        .await
        .unwrap();
    let c = Client::till(port);
    let sam = c.token(json!({"username": "sam", "pin": PIN})).await;
    let res = c
        .http
        .get(format!("{}/api/v1/events", c.base))
        .bearer_auth(&sam)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = tokio::spawn(read_until_end(res, seen.clone()));
    let sales = || seen.lock().unwrap().matches("event: sale_recorded").count();

    h.record_sale(&owner, common::sale_of(product.id, 1))
        .await
        .unwrap();
    assert!(
        wait_for(|| sales() == 1, Duration::from_secs(10)).await,
        "the stream works before the revocation"
    );
    let sam_id = h
        .people(&owner)
        .unwrap()
        .into_iter()
        .find(|p| p.username == "sam")
        .unwrap()
        .id;
    h.revoke_member(&owner, &sam_id.to_string()).await.unwrap();
    h.record_sale(&owner, common::sale_of(product.id, 2))
        .await
        .unwrap();
    assert!(
        wait_for(|| reader.is_finished(), Duration::from_secs(10)).await,
        "the revoked person's stream must end"
    );
    assert_eq!(
        sales(),
        1,
        "no sale reaches a revoked person: {}",
        seen.lock().unwrap()
    );

    // Logging out ends the stream without waiting for an event.
    let sue = c.token(json!({"username": "sue", "pin": PIN})).await;
    let res = c
        .http
        .get(format!("{}/api/v1/events", c.base))
        .bearer_auth(&sue)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reader = tokio::spawn(read_until_end(res, Default::default()));
    let out = c
        .http
        .post(format!("{}/api/v1/logout", c.base))
        .bearer_auth(&sue)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        wait_for(|| reader.is_finished(), Duration::from_secs(10)).await,
        "a logged-out session's stream must end"
    );
    node.shutdown().await;
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The data dir is 0700 (also one an older version made 0755) and the store and device key
/// 0600: another local user cannot copy PIN hashes, sealed keys or sales.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = Node::builder().data_dir(&dir).start().await.unwrap();
    with_shop(&node.handle(), &["sam"]).await;
    assert_eq!(mode(&dir), 0o700, "data dir");
    assert_eq!(mode(&dir.join("tillmesh.redb")), 0o600, "store");
    assert_eq!(mode(&dir.join("device.key")), 0o600, "device key");
    node.shutdown().await;

    // A store an older version left 0644 is tightened at the next start.
    std::fs::set_permissions(
        dir.join("tillmesh.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = Node::builder().data_dir(&dir).start().await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("tillmesh.redb")), 0o600);
    node.shutdown().await;
}

/// One raw HTTP/1.1 request (so the `Host` header is exactly what a rebinding page sends);
/// the status and the body.
async fn raw(port: u16, method: &str, path: &str, host: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Requests naming a foreign host are refused before any route: a DNS-rebinding page (its
/// name re-pointed at the till) can neither read the API nor create a shop on a fresh node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_name_is_refused() {
    let opts = ApiOptions {
        allowed_hosts: vec!["till.shop.lan".into()],
        ..ApiOptions::default()
    };
    let (node, port) = node_at("127.0.0.1", None, opts).await;
    let h = node.handle();
    let shop = json!({
        "shop_name": "Rebound", "owner_name": "Eve", "username": "eve",
        "password": "a long enough password"
    })
    .to_string();
    let (status, body) = raw(port, "POST", "/api/v1/setup", "rebind.evil.example", &shop).await;
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("\"code\":\"host_not_allowed\""), "{body}");
    assert!(!h.status().unwrap().has_shop, "no shop was created");
    let (status, body) = raw(port, "GET", "/api/v1/status", "rebind.evil.example:80", "").await;
    assert_eq!(status, 421, "{body}");
    let (status, _) = raw(port, "GET", "/", "evil.example", "").await;
    assert_eq!(status, 421, "the UI's pages too");
    for good in [
        format!("127.0.0.1:{port}"),
        "localhost".to_string(),
        "[::1]:80".to_string(),
        "till.shop.lan".to_string(),
    ] {
        let (status, body) = raw(port, "GET", "/api/v1/status", &good, "").await;
        assert_eq!(status, 200, "{good}: {body}");
    }
    node.shutdown().await;
}

/// From another device, a node with no shop needs its setup token to be set up or joined;
/// from the device itself none is asked.
#[test]
fn setup_from_another_device_needs_the_setup_token() {
    in_private_netns("setup_from_another_device_needs_the_setup_token", || {
        add_lan_addresses();
        runtime().block_on(async {
            let (node, port) = node_at("0.0.0.0", None, ApiOptions::default()).await;
            let h = node.handle();
            let (till, lan) = (Client::till(port), Client::lan(port));
            assert_eq!(
                till.get("/api/v1/setup", None).await.1["token_required"],
                false
            );
            assert_eq!(
                lan.get("/api/v1/setup", None).await.1["token_required"],
                true
            );
            let shop = json!({
                "shop_name": "Corner Shop", "owner_name": "Olivia", "username": "olivia",
                "password": OWNER_PW
            });
            let (status, body) = lan.post("/api/v1/setup", shop.clone(), &[]).await;
            assert_eq!(status, 403, "{body}");
            assert_eq!(body["error"]["code"], "setup_token");
            let (status, _) = lan
                .post(
                    "/api/v1/setup",
                    shop.clone(),
                    &[("X-Setup-Token", "00112233445566778899")],
                )
                .await;
            assert_eq!(status, 403, "a wrong token");
            let (status, body) = lan
                .post("/api/v1/join", json!({"invite": "ABCDE-FGHIJ"}), &[])
                .await;
            assert_eq!(status, 403, "join too: {body}");
            assert!(!h.status().unwrap().has_shop);

            let token = h
                .setup_token()
                .expect("a node without a shop has a token")
                .to_owned();
            let (status, body) = lan
                .post("/api/v1/setup", shop, &[("X-Setup-Token", &token)])
                .await;
            assert_eq!(status, 201, "{body}");
            assert!(h.status().unwrap().has_shop);
            assert_eq!(h.setup_token(), None, "the token is spent");
            node.shutdown().await;
        });
    });
}

/// A `members` change signed by `by`, made by `edit` on `members` as `h` has it.
fn members_change(
    h: &NodeHandle,
    owner: &Principal,
    by: &Principal,
    edit: impl FnOnce(&mut automerge::AutoCommit, &automerge::ObjId),
    person: uuid::Uuid,
) -> Envelope {
    use automerge::ReadDoc;
    let bytes = h.document_bytes(owner, "members").unwrap();
    let mut doc = automerge::AutoCommit::load(&bytes).unwrap();
    let heads = doc.get_heads();
    let key = by.key.as_ref().unwrap();
    let mut fork = doc.fork();
    fork.set_author(Some(automerge::Author::from(
        key.verifying_key().to_bytes().to_vec(),
    )));
    let (_, obj) = fork
        .get(automerge::ROOT, format!("person:{person}"))
        .unwrap()
        .unwrap();
    edit(&mut fork, &obj);
    fork.commit();
    let change = fork.get_last_local_change().unwrap();
    Envelope::sign(key, "members", &change, 1, &heads)
}

/// Managers never read `members` (staff PIN hashes, admission records), and neither the API
/// nor a hand-crafted change lets them take back an owner's revocation or change a role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_cannot_read_members_nor_change_roles_or_revocations() {
    use automerge::transaction::Transactable;
    let (node, port) = node_at("127.0.0.1", None, ApiOptions::default()).await;
    let h = node.handle();
    let owner = with_shop(&h, &["sam", "sue"]).await;
    h.add_person(
        &owner,
        NewPerson {
            name: "Mia".into(),
            username: "mia".into(),
            role: Role::Manager,
            password: Some(MANAGER_PW.into()),
            pin: None,
        },
    )
    .await
    .unwrap();
    let id_of = |name: &str| {
        h.people(&owner)
            .unwrap()
            .into_iter()
            .find(|p| p.username == name)
            .unwrap()
    };
    let sam = id_of("sam").id;
    let sue = id_of("sue").id;
    h.revoke_member(&owner, &sam.to_string()).await.unwrap();

    // Over HTTP.
    let c = Client::till(port);
    let mia = c
        .token(json!({"username": "mia", "password": MANAGER_PW}))
        .await;
    let olivia = c
        .token(json!({"username": "olivia", "password": OWNER_PW}))
        .await;
    let (status, body) = c.get("/api/v1/documents/members", Some(&mia)).await;
    assert_eq!(status, 403, "{body}");
    let (status, list) = c.get("/api/v1/documents", Some(&mia)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"members") && !ids.contains(&"vault"),
        "{ids:?}"
    );
    assert!(ids.contains(&"catalog"), "{ids:?}");
    let res = c
        .http
        .get(format!("{}/api/v1/documents/members", c.base))
        .bearer_auth(&olivia)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "owners still read it");
    let (status, _) = c.get("/api/v1/documents/vault", Some(&olivia)).await;
    assert_eq!(status, 404, "the vault is never served");

    // Hand-crafted changes, signed by the manager's own key, as a peer would receive them.
    let manager = h.login_password("mia", MANAGER_PW).await.unwrap();
    let unrevoke = members_change(
        &h,
        &owner,
        &manager,
        |d, o| d.put(o, "revoked", false).unwrap(),
        sam,
    );
    let results = h.import_envelopes(None, vec![unrevoke]).await.unwrap();
    assert!(
        matches!(&results[0], Err(Error::Rejected(_))),
        "un-revoking: {results:?}"
    );
    assert!(id_of("sam").revoked, "sam stays revoked");

    let promote = members_change(
        &h,
        &owner,
        &manager,
        |d, o| d.put(o, "role", "manager").unwrap(),
        sue,
    );
    let results = h.import_envelopes(None, vec![promote]).await.unwrap();
    assert!(
        matches!(&results[0], Err(Error::Rejected(_))),
        "changing a role: {results:?}"
    );
    assert_eq!(id_of("sue").role, Role::Staff);

    // What managers may do still goes through: editing a staff member's name.
    let rename = members_change(
        &h,
        &owner,
        &manager,
        |d, o| d.put(o, "name", "Susan").unwrap(),
        sue,
    );
    let results = h.import_envelopes(None, vec![rename]).await.unwrap();
    assert!(results[0].is_ok(), "a manager edits staff: {results:?}");
    assert_eq!(id_of("sue").name, "Susan");
    node.shutdown().await;
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release path end to end: `tillmesh run` on a fresh data dir prints the setup token with
/// the UI's address; a device on the LAN sets the shop up with it (and not without it), and a
/// name given with `--allowed-host` is answered while a foreign one is not.
#[test]
fn the_binary_prints_the_setup_token_another_device_sets_up_with() {
    in_private_netns(
        "the_binary_prints_the_setup_token_another_device_sets_up_with",
        || {
            use std::io::BufRead;
            add_lan_addresses();
            let home = tempfile::tempdir().unwrap();
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tillmesh"));
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("TILLMESH_") && k != "TILLMESH_TEST_NETNS" {
                    cmd.env_remove(k);
                }
            }
            cmd.env("HOME", home.path())
                .env("XDG_CONFIG_HOME", home.path().join(".config"))
                .args(["run", "--data-dir"])
                .arg(home.path().join("data"))
                .args([
                    "--http",
                    "0.0.0.0:0",
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "--no-mdns",
                    "--allowed-host",
                    "till.shop.lan",
                ])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            let mut child = Child(cmd.spawn().expect("tillmesh run starts"));
            let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
            let (mut port, mut token) = (None, None);
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("open http://").nth(1) {
                    port = addr
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()));
                }
                if let Some(t) = line
                    .split("setup token (for setting up from another device): ")
                    .nth(1)
                {
                    token = Some(t.trim().to_owned());
                }
                if line.starts_with("data dir:") {
                    break;
                }
            }
            let port = port.expect("the UI's address is printed");
            let token = token.expect("the setup token is printed");
            runtime().block_on(async {
                let lan = Client::lan(port);
                let shop = json!({
                    "shop_name": "Corner Shop", "owner_name": "Olivia", "username": "olivia",
                    "password": OWNER_PW
                });
                let (status, body) = lan.post("/api/v1/setup", shop.clone(), &[]).await;
                assert_eq!(status, 403, "{body}");
                let (status, body) = lan
                    .post("/api/v1/setup", shop, &[("X-Setup-Token", &token)])
                    .await;
                assert_eq!(status, 201, "{body}");
                let (status, body) = raw(port, "GET", "/api/v1/status", "till.shop.lan", "").await;
                assert_eq!(status, 200, "{body}");
                assert!(body.contains("Corner Shop"));
                let (status, _) = raw(port, "GET", "/api/v1/status", "shop.evil.example", "").await;
                assert_eq!(status, 421);
            });
            drop(child);
        },
    );
}
