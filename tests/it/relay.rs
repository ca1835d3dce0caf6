//! The relay (issue 6) over real sockets.
//!
//! - `a_shop_and_a_laptop_sync_only_through_the_relay` (in process, 127.0.0.1): a relay
//!   enrolled by a shop; two tills and an owner's laptop that know only the relay's address
//!   (never each other's): a price set on the laptop reaches both tills, a sale on a till reaches
//!   the laptop, the relay holds a verified replica, goes down while the shop sells, comes back
//!   on the same address and catches up, and the laptop gets the sales made meanwhile.
//! - `two_shops_on_one_relay_are_isolated`: a device of shop A reads shop A's replica and
//!   nothing of shop B; what it offers of shop B is refused and lands nowhere; a stranger, a
//!   revoked device and an unknown shop all get the same answer.
//! - `a_relay_refuses_a_till_invite`: enrolling with an invite for a till admits nothing.
//! - `a_full_replica_refuses_more_changes`: the per-shop change limit refuses offers and pulls.
//! - `held_envelopes_count_in_a_shops_quota`: what a shop's device leaves held on its replica
//!   (changes waiting for what never comes) fills the shop's space like stored changes.
//! - `the_circuit_relay_serves_only_the_shops_devices`: with a libp2p relay client, a device of
//!   the shop reserves a slot and another reaches it through a circuit; a stranger is denied.
//! - `shop_lan_home_and_cloud_namespaces` (processes, root): the same story in three network
//!   namespaces joined by veth pairs through which the shop and home reach only the cloud.

use crate::common;
use crate::procs;

use std::time::Duration;

use common::mesh::relay_invite;
use common::*;
use tillmesh::domain::model::*;
use tillmesh::net::{self, NetConfig};
use tillmesh::relay::{Relay, RelayConfig};
use tillmesh::sync::{Refusal, RefusalKind, SyncRequest, SyncResponse};
use tillmesh::{Node, NodeHandle};

const T: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_relay(dir: &std::path::Path, port: u16) -> Relay {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    Relay::start(RelayConfig::new(dir, vec![listen]))
        .await
        .unwrap()
}

/// A shop's first till on loopback (in a data dir), its owner, its mesh address.
async fn first_till(dir: &std::path::Path) -> (Node, NodeHandle, Principal, String) {
    let n = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0")
        .start()
        .await
        .unwrap();
    let h = n.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    assert!(wait_for(|| !h.addrs().is_empty(), T).await);
    let addr = h.addrs()[0].clone();
    (n, h, owner, addr)
}

/// Joins a device through `h` (as `tillmesh join`), forgets the inviting node's address, and
/// runs it with only `peer` to dial.
async fn device_behind(
    h: &NodeHandle,
    by: &Principal,
    name: &str,
    dir: &std::path::Path,
    peer: &str,
) -> (Node, NodeHandle) {
    let inv = till_invite(h, by, name).await;
    tillmesh::node::join(dir, &inv.invite, Default::default())
        .await
        .unwrap();
    std::fs::remove_file(dir.join(tillmesh::mesh::PEERS_FILE)).unwrap();
    let n = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(peer)
        .start()
        .await
        .unwrap();
    let nh = n.handle();
    (n, nh)
}

async fn connected(h: &NodeHandle) -> Vec<String> {
    h.peers()
        .await
        .into_iter()
        .filter(|p| p.connected)
        .map(|p| p.peer_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_and_a_laptop_sync_only_through_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let (t1, h1, owner, _addr1) = first_till(&d("till1")).await;
    let p = h1
        .create_product(&owner, product("R1", 500, 2000))
        .await
        .unwrap();
    h1.stock_in(&owner, stock_in(p.id, 100, 200)).await.unwrap();

    // The relay runs, and is enrolled while running (it picks the shop up by itself).
    let port = free_port();
    let relay = start_relay(&d("relay"), port).await;
    assert!(relay.shops().is_empty());
    let joined = tillmesh::relay::enroll(&d("relay"), &relay_invite(&h1, &owner, "Cloud").await)
        .await
        .unwrap();
    let shop = joined.shop_id;
    assert!(wait_for(|| relay.shops() == vec![shop], T).await);
    let relay_addr = relay.addrs()[0].to_string();
    let replica = relay.replica(shop).unwrap();
    assert_eq!(
        replica.status().unwrap().device.unwrap().role,
        DeviceRole::Relay
    );

    // Till 1 knows the relay; till 2 and the laptop know only the relay.
    h1.add_peer(&owner, &relay_addr).await.unwrap();
    let (t2, h2) = device_behind(&h1, &owner, "Till 2", &d("till2"), &relay_addr).await;
    let (laptop, hl) = device_behind(&h1, &owner, "Laptop", &d("laptop"), &relay_addr).await;
    // Store and forward only: on one machine the laptop would reach the tills live through a
    // circuit on the relay (hole-punched to a direct connection at once); the three-namespace
    // test below covers circuits.
    for peer in [h1.peer_id(), h2.peer_id()] {
        // The laptop's mesh starts once it sees its own admission.
        let deadline = std::time::Instant::now() + T;
        while let Err(e) = hl.block_peer(&peer).await {
            assert!(std::time::Instant::now() < deadline, "no mesh: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for h in [&h1, &h2, &hl] {
        assert!(
            wait_for(|| h.devices().unwrap().len() == 4, T).await,
            "every device knows the others' admissions"
        );
    }
    let relay_peer = relay.peer_id().to_string();
    for _ in 0..600 {
        if connected(&hl).await == vec![relay_peer.clone()] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connected(&hl).await, vec![relay_peer.clone()]);
    assert!(!connected(&h1).await.contains(&hl.peer_id()));
    assert!(!connected(&h2).await.contains(&hl.peer_id()));

    // A price set on the laptop reaches both tills through the relay.
    let owner_l = hl.login_password("olivia", OWNER_PW).await.unwrap();
    hl.update_product(
        &owner_l,
        p.id,
        ProductPatch {
            price: Some(650),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for h in [&h1, &h2] {
        assert!(wait_for(|| h.product(p.id).unwrap().price == 650, T).await);
    }
    // A sale on till 2 reaches the laptop and till 1.
    let sale = h2.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    for h in [&hl, &h1] {
        assert!(wait_for(|| h.sale(sale.id).is_ok(), T).await);
    }
    assert!(replica.sale(sale.id).is_ok(), "the relay keeps a replica");
    assert!(wait_for(|| on_hand(&hl, p.id) == 98, T).await);
    let peers = hl.peers().await;
    let seen = peers.iter().find(|v| v.peer_id == relay_peer).unwrap();
    assert_eq!(seen.role.as_deref(), Some("relay"), "{seen:?}");
    assert_eq!(seen.name.as_deref(), Some("Cloud"));
    // GET /peers shows the sync state with the relay: pulled from, pushed to, no errors.
    let relay_state = || async {
        h2.peers()
            .await
            .into_iter()
            .find(|v| v.peer_id == relay_peer)
            .unwrap()
    };
    let mut state = relay_state().await;
    for _ in 0..300 {
        if state.last_pull.is_some() && state.last_push.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = relay_state().await;
    }
    assert!(
        state.connected && state.last_pull.is_some() && state.last_push.is_some(),
        "{state:?}"
    );
    assert_eq!((state.pull_error, state.push_error), (None, None));

    // The relay goes down; the shop sells on; the relay comes back and catches up.
    relay.shutdown().await;
    drop(replica);
    let mut offline = Vec::new();
    for q in 1..=3 {
        offline.push(h1.record_sale(&owner, sale_of(p.id, q)).await.unwrap().id);
    }
    let relay = start_relay(&d("relay"), port).await;
    assert_eq!(relay.shops(), vec![shop]);
    let replica = relay.replica(shop).unwrap();
    for id in &offline {
        assert!(
            wait_for(|| replica.sale(*id).is_ok(), T).await,
            "relay caught up"
        );
        assert!(
            wait_for(|| hl.sale(*id).is_ok(), T).await,
            "laptop caught up"
        );
        assert!(
            wait_for(|| h2.sale(*id).is_ok(), T).await,
            "till 2 caught up"
        );
    }
    assert!(wait_for(|| on_hand(&hl, p.id) == 92, T).await);
    assert_eq!(
        connected(&hl).await,
        vec![relay_peer],
        "the laptop reaches only the relay"
    );

    drop((h1, h2, hl, replica));
    for n in [t1, t2, laptop] {
        n.shutdown().await;
    }
    relay.shutdown().await;
}

/// Sends one raw sync request about `shop` (a genesis) to the relay as the device with the
/// key `secret`.
async fn ask_as(
    secret: [u8; 32],
    relay_addr: &str,
    shop: Option<[u8; 32]>,
    req: SyncRequest,
) -> SyncResponse {
    let (net, mut events) = net::start(NetConfig::new(secret, "probe")).await.unwrap();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let addr: net::Multiaddr = relay_addr.parse().unwrap();
    net.dial(addr).await.unwrap();
    let relay = relay_addr.rsplit('/').next().unwrap().parse().unwrap();
    let answer = net
        .request(relay, tillmesh::sync::encode_request(shop, &req))
        .await
        .unwrap();
    net.shutdown().await;
    drain.abort();
    tillmesh::sync::decode_response(&answer, None).unwrap()
}

/// Shop B's owner lists `device` (a key of another shop: peer ids are public) as a till in B's
/// `members`, signed with their own person key — a change B's devices accept, as an owner may
/// write `members`.
async fn owner_lists_foreign_device(h: &NodeHandle, owner: &Principal, device: [u8; 32]) {
    let bytes = h.document_bytes(owner, "members").unwrap();
    let mut doc = automerge::AutoCommit::load(&bytes).unwrap();
    let heads = doc.get_heads();
    let env = members_change(&mut doc, &heads, owner.key.as_ref().unwrap(), |doc| {
        put_device_entry(doc, &device, "T9", None);
    });
    let r = h.import_envelopes(None, vec![env]).await.unwrap();
    assert!(
        matches!(r[0], Ok(tillmesh::replica::Applied::New(_))),
        "an owner may write members: {r:?}"
    );
}

fn key_of(dir: &std::path::Path) -> [u8; 32] {
    std::fs::read(dir.join(tillmesh::node::DEVICE_KEY_FILE))
        .unwrap()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shops_on_one_relay_are_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let port = free_port();
    let relay = start_relay(&d("relay"), port).await;
    let relay_addr = relay.addrs()[0].to_string();

    let (a1, ha, owner_a, _) = first_till(&d("a1")).await;
    let (b1, hb, owner_b, _) = first_till(&d("b1")).await;
    let pa = ha
        .create_product(&owner_a, product("SHOP-A", 100, 0))
        .await
        .unwrap();
    let pb = hb
        .create_product(&owner_b, product("SHOP-B", 200, 0))
        .await
        .unwrap();
    let shop_a = tillmesh::relay::enroll(&d("relay"), &relay_invite(&ha, &owner_a, "Cloud").await)
        .await
        .unwrap()
        .shop_id;
    let shop_b = tillmesh::relay::enroll(&d("relay"), &relay_invite(&hb, &owner_b, "Cloud").await)
        .await
        .unwrap()
        .shop_id;
    assert!(wait_for(|| relay.shops().len() == 2, T).await);
    ha.add_peer(&owner_a, &relay_addr).await.unwrap();
    hb.add_peer(&owner_b, &relay_addr).await.unwrap();
    // A second device of shop A, behind the relay, whose key the probes use once it stopped.
    let (a2, ha2) = device_behind(&ha, &owner_a, "Till A2", &d("a2"), &relay_addr).await;
    let rb = relay.replica(shop_b).unwrap();
    assert!(wait_for(|| ha2.product(pa.id).is_ok(), T).await);
    assert!(wait_for(|| rb.product(pb.id).is_ok(), T).await);
    drop(ha2);
    a2.shutdown().await;
    let ra = relay.replica(shop_a).unwrap();
    assert!(
        wait_for(|| ra.devices().unwrap().len() == 3, T).await,
        "the relay knows Till A2"
    );
    let key_a2 = key_of(&d("a2"));
    let genesis_a = ha.genesis().unwrap().map(|g| g.0);
    let genesis_b = hb.genesis().unwrap().map(|g| g.0);

    // Shop A's device reads shop A's replica, and only it.
    let SyncResponse::Buckets(buckets) =
        ask_as(key_a2, &relay_addr, genesis_a, SyncRequest::Buckets).await
    else {
        panic!("a member is served")
    };
    let mut want = ra.bucket_digests().unwrap();
    let mut got = buckets.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "shop A's buckets");
    let SyncResponse::Hashes(h) = ask_as(
        key_a2,
        &relay_addr,
        genesis_a,
        SyncRequest::Hashes(vec!["catalog".into()]),
    )
    .await
    else {
        panic!()
    };
    let theirs: Vec<[u8; 32]> = rb.doc_hashes(&["catalog".into()]).unwrap()[0].1.clone();
    assert!(!h[0].1.is_empty());
    assert!(
        h[0].1.iter().all(|x| !theirs.contains(x)),
        "nothing of shop B"
    );
    // Asking for shop B's envelopes by hash gives nothing.
    let SyncResponse::Envelopes(e) = ask_as(
        key_a2,
        &relay_addr,
        genesis_a,
        SyncRequest::Envelopes(theirs.clone()),
    )
    .await
    else {
        panic!()
    };
    assert!(e.is_empty(), "shop B's changes are not served to shop A");

    // Shop B's changes offered by shop A's device land nowhere.
    let b_envs: Vec<Vec<u8>> = hb
        .envelopes()
        .unwrap()
        .into_iter()
        .filter(|e| e.doc == "catalog")
        .map(|e| e.to_bytes())
        .collect();
    let before_a = ra.status().unwrap().envelopes;
    let before_b = rb.status().unwrap().envelopes;
    let SyncResponse::Accepted(n) =
        ask_as(key_a2, &relay_addr, genesis_a, SyncRequest::Offer(b_envs)).await
    else {
        panic!()
    };
    assert_eq!(n, 0, "nothing of shop B is accepted into shop A");
    assert_eq!(ra.status().unwrap().envelopes, before_a);
    assert_eq!(rb.status().unwrap().envelopes, before_b);
    assert!(ra.product(pb.id).is_err() && rb.product(pa.id).is_err());

    // Shop B's owner lists shop A's till in B's members (its key is public: its peer id).
    // Nobody counts it as a device of B: the relay does not serve it B, nor pull "B" from it
    // (which A's till would answer with all of A, as the relay is a member of A).
    let key_a1 = ha.device_public_key();
    owner_lists_foreign_device(&hb, &owner_b, key_a1).await;
    let listed = hb.envelopes().unwrap().len();
    assert!(
        wait_for(|| rb.envelopes().unwrap().len() == listed, T).await,
        "the relay has shop B's change"
    );
    assert!(!hb.is_member_device(&key_a1) && !rb.is_member_device(&key_a1));
    assert!(
        rb.devices()
            .unwrap()
            .iter()
            .all(|d| d.public_key != hex::encode(key_a1))
    );
    // A new sale on A's till reaches the relay's replica of A (the relay pulls from it and A's
    // till still syncs with the relay) …
    let sale = ha.record_sale(&owner_a, sale_of(pa.id, 1)).await.unwrap();
    assert!(wait_for(|| ra.sale(sale.id).is_ok(), T).await);
    // … the relay counts A's till a device of shop A only (so it pulls only A from it) …
    let a1_peer = tillmesh::net::peer_id_from_public_key(&key_a1).unwrap();
    assert_eq!(relay.shops_of_peer(&a1_peer), vec![shop_a]);
    // … and nothing of shop A is in the relay's replica of B.
    let a_hashes: std::collections::HashSet<Vec<u8>> = ha
        .envelopes()
        .unwrap()
        .iter()
        .map(|e| e.to_bytes())
        .collect();
    assert!(
        rb.envelopes()
            .unwrap()
            .iter()
            .all(|e| !a_hashes.contains(&e.to_bytes())),
        "none of shop A's envelopes in shop B's replica"
    );
    assert!(rb.sale(sale.id).is_err() && rb.product(pa.id).is_err());

    // A stranger, a revoked device and a redeem attempt get one and the same answer.
    let stranger = ask_as([7; 32], &relay_addr, genesis_a, SyncRequest::Buckets).await;
    assert_eq!(
        stranger,
        SyncResponse::Refused(Refusal::new(
            RefusalKind::Forbidden,
            tillmesh::relay::NOT_SERVED
        ))
    );
    // A device of shop A asking about shop B (or about no shop) is a stranger there too.
    assert_eq!(
        ask_as(key_a2, &relay_addr, genesis_b, SyncRequest::Buckets).await,
        stranger
    );
    assert_eq!(
        ask_as(key_a2, &relay_addr, None, SyncRequest::Buckets).await,
        stranger
    );
    let a2_id = ha
        .devices()
        .unwrap()
        .into_iter()
        .find(|x| x.name == "Till A2")
        .unwrap()
        .id;
    ha.revoke_member(&owner_a, &a2_id).await.unwrap();
    assert!(
        wait_for(
            || ra
                .devices()
                .unwrap()
                .iter()
                .any(|x| x.id == a2_id && x.revoked),
            T
        )
        .await
    );
    assert_eq!(
        ask_as(key_a2, &relay_addr, genesis_a, SyncRequest::Buckets).await,
        stranger,
        "a revoked device is a stranger"
    );
    assert_eq!(
        ask_as(
            [9; 32],
            &relay_addr,
            None,
            SyncRequest::RedeemStart {
                pake: tillmesh::redeem::JoinerRun::start("AAAAA-BBBBB", [9; 32], [8; 32])
                    .unwrap()
                    .message()
            }
        )
        .await,
        stranger
    );

    drop((ha, hb, ra, rb));
    a1.shutdown().await;
    b1.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_a_till_invite() {
    let tmp = tempfile::tempdir().unwrap();
    let (t1, h1, owner, _) = first_till(&tmp.path().join("t1")).await;
    let inv = till_invite(&h1, &owner, "Not a relay").await;
    let err = tillmesh::relay::enroll(&tmp.path().join("relay"), &inv.invite)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a relay"), "{err}");
    assert_eq!(h1.devices().unwrap().len(), 1, "nothing was admitted");
    let shops = tmp.path().join("relay").join(tillmesh::relay::SHOPS_DIR);
    assert_eq!(std::fs::read_dir(shops).unwrap().count(), 0);
    drop(h1);
    t1.shutdown().await;
}

/// Named network namespaces made for one test, deleted when dropped (after the processes in
/// them, which are declared later and so dropped first).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 `ip` runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair between namespaces `a` and `b` (`None`: this one), addresses `a_ip`/`b_ip` in
/// a /24.
fn link(name: &str, a: Option<&str>, a_ip: &str, b: &str, b_ip: &str) {
    let peer = format!("{name}b");
    let mut add = vec!["link", "add", name];
    if let Some(a) = a {
        add.extend(["netns", a]);
    }
    add.extend(["type", "veth", "peer", "name", &peer, "netns", b]);
    ip(&add);
    let a_cidr = format!("{a_ip}/24");
    let b_cidr = format!("{b_ip}/24");
    match a {
        Some(a) => {
            ip(&["-n", a, "addr", "add", &a_cidr, "dev", name]);
            ip(&["-n", a, "link", "set", name, "up"]);
        }
        None => {
            ip(&["addr", "add", &a_cidr, "dev", name]);
            ip(&["link", "set", name, "up"]);
        }
    }
    ip(&["-n", b, "addr", "add", &b_cidr, "dev", &peer]);
    ip(&["-n", b, "link", "set", &peer, "up"]);
}

#[test]
fn shop_lan_home_and_cloud_namespaces() {
    common::in_private_netns("shop_lan_home_and_cloud_namespaces", || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(shop_home_cloud());
    });
}

/// `tillmesh join --no-mdns INVITE` in namespace `ns`, into `home/data`; that data dir.
fn join_in(ns: &str, home: &std::path::Path, invite: &str) -> std::path::PathBuf {
    let data = home.join("data");
    let o = procs::finish(
        procs::tillmesh_in(ns, home),
        home,
        "join",
        &[
            "join",
            "--data-dir",
            data.to_str().unwrap(),
            "--no-mdns",
            invite,
        ],
    );
    o.assert_ok(&format!("join in {ns}"));
    data
}

/// The addresses a node says it can be reached at (`GET /api/v1/mesh`).
async fn mesh_addrs(api: &procs::Api) -> Vec<String> {
    api.ok("/api/v1/mesh").await["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Inside a private namespace (the test's own, where it reaches every node's HTTP), three
/// namespaces: "shop" (two tills), "home" (the owner's laptop) and "cloud" (the relay). The
/// shop and home each have a link to the cloud and one to the test's namespace, none of which
/// forwards: the shop and home reach only the cloud, never each other.
async fn shop_home_cloud() {
    use procs::*;
    let id = std::process::id() % 100_000;
    let (shop, home, cloud) = (
        format!("tm-shop-{id}"),
        format!("tm-home-{id}"),
        format!("tm-cloud-{id}"),
    );
    let _namespaces = Namespaces(vec![shop.clone(), home.clone(), cloud.clone()]);
    for ns in [&shop, &home, &cloud] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    link(&format!("ts{id}"), None, "10.77.1.1", &shop, "10.77.1.2");
    link(&format!("th{id}"), None, "10.77.2.1", &home, "10.77.2.2");
    link(
        &format!("sc{id}"),
        Some(&shop),
        "10.77.3.2",
        &cloud,
        "10.77.3.1",
    );
    link(
        &format!("hc{id}"),
        Some(&home),
        "10.77.4.2",
        &cloud,
        "10.77.4.1",
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| {
        let d = tmp.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let mesh = ["--listen", "/ip4/0.0.0.0/tcp/0", "--no-mdns"];

    // Till 1 creates the shop.
    let data1 = init(&dir("till1"));
    let (till1, addr1) = run_in(
        &shop,
        &data1,
        &dir("till1").join("run.log"),
        "10.77.1.2",
        &mesh,
    );
    let a1 = Api::new(addr1);
    a1.wait_healthy(&till1).await;
    let a1 = a1.login(OWNER, OWNER_PASSWORD).await;
    let product = a1.create_product("NS1", 400).await;
    a1.stock_in(&product, 100).await;

    // The relay runs in the cloud and is enrolled with an invite of role relay.
    let relay_home = dir("relay");
    let relay_data = relay_home.join("data");
    let mut cmd = tillmesh_in(&cloud, &relay_home);
    cmd.arg("relay")
        .arg("--data-dir")
        .arg(&relay_data)
        .args(["--listen", "/ip4/0.0.0.0/tcp/7979"]);
    let find_peer = |l: &str| {
        l.strip_prefix("relay listening on ")
            .and_then(|a| a.rsplit('/').next())
            .map(String::from)
    };
    let (relay, relay_id) = spawn_until(cmd, &relay_home.join("relay1.log"), find_peer);
    let invite = a1.invite("relay", "Cloud relay").await;
    let o = finish(
        tillmesh_in(&cloud, &relay_home),
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
    assert!(o.stdout.contains("now serves shop"), "{}", o.stdout);
    let relay_from_shop = format!("/ip4/10.77.3.1/tcp/7979/p2p/{relay_id}");
    let relay_from_home = format!("/ip4/10.77.4.1/tcp/7979/p2p/{relay_id}");
    let (status, body) = a1
        .post(
            "/api/v1/peers",
            serde_json::json!({"addr": relay_from_shop}),
        )
        .await;
    assert!(status < 300, "POST /peers: {body}");

    // Till 2 joins on the LAN; the laptop joins while in the shop, then goes home.
    let data2 = join_in(&shop, &dir("till2"), &a1.invite("till", "Till 2").await);
    let data_l = join_in(&shop, &dir("laptop"), &a1.invite("till", "Laptop").await);
    let mut flags2 = mesh.to_vec();
    flags2.extend(["--peer", &relay_from_shop]);
    let (till2, addr2) = run_in(
        &shop,
        &data2,
        &dir("till2").join("run.log"),
        "10.77.1.2",
        &flags2,
    );
    let mut flags_l = mesh.to_vec();
    flags_l.extend(["--peer", &relay_from_home]);
    let (laptop, addr_l) = run_in(
        &home,
        &data_l,
        &dir("laptop").join("run.log"),
        "10.77.2.2",
        &flags_l,
    );
    let a2 = Api::new(addr2);
    a2.wait_healthy(&till2).await;
    let a2 = a2.login(OWNER, OWNER_PASSWORD).await;
    let al = Api::new(addr_l);
    al.wait_healthy(&laptop).await;
    let al = al.login(OWNER, OWNER_PASSWORD).await;

    // Everyone is connected to the relay; the laptop to the tills only through it.
    let connected = |api: Api| async move {
        let peers = api.ok("/api/v1/peers").await;
        peers
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["connected"] == true)
            .map(|p| {
                (
                    p["peer_id"].as_str().unwrap().to_string(),
                    p["role"].clone(),
                    p["via_relay"] == true,
                )
            })
            .collect::<Vec<_>>()
    };
    for (name, api) in [("till 1", &a1), ("till 2", &a2), ("laptop", &al)] {
        wait_for("connected to the relay", START_TIMEOUT, || async {
            connected(api.clone())
                .await
                .iter()
                .any(|(p, role, via)| *p == relay_id && role == "relay" && !via)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // A price set on the laptop at home reaches both tills in the shop.
    let (status, p) = al
        .patch(
            &format!("/api/v1/products/{product}"),
            serde_json::json!({"price": 450}),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    for (name, api) in [("till 1", &a1), ("till 2", &a2)] {
        wait_for("the new price", START_TIMEOUT, || async {
            (api.ok(&format!("/api/v1/products/{product}")).await["price"] == 450).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A sale on till 2 reaches the laptop.
    let sold = a2.sell(&product, 2).await;
    let sale_id = sold["id"].as_str().unwrap().to_string();
    wait_for("the sale reaches the laptop", START_TIMEOUT, || async {
        (al.get(&format!("/api/v1/sales/{sale_id}")).await.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", laptop.log_tail()));
    let laptop_peer = al.ok("/api/v1/mesh").await["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let peer_of = |api: &Api| {
        let api = api.clone();
        async move {
            api.ok("/api/v1/mesh").await["peer_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (till1_peer, till2_peer) = (peer_of(&a1).await, peer_of(&a2).await);
    // The laptop reaches the tills live, through circuits on the relay (the shop and home have
    // no route to each other): every connection but the relay's is relayed, on both sides.
    wait_for(
        "live circuits between the laptop and the tills",
        START_TIMEOUT,
        || async {
            let c = connected(al.clone()).await;
            [&till1_peer, &till2_peer]
                .iter()
                .all(|t| c.iter().any(|(p, _, via)| p == *t && *via))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nlaptop:\n{}\nrelay:\n{}\ntill 1:\n{}",
            laptop.log_tail(),
            relay.log_tail(),
            till1.log_tail()
        )
    });
    for (p, _, via) in connected(al.clone()).await {
        assert!(via || p == relay_id, "the laptop reaches {p} directly");
    }
    for api in [&a1, &a2] {
        for (p, _, via) in connected(api.clone()).await {
            assert!(
                via || p != laptop_peer,
                "a till reaches the laptop directly"
            );
        }
    }

    // A new device at home joins with an invite made on till 1: the invite carries till 1's
    // address on the relay, the only way from home to the shop.
    wait_for(
        "till 1 listens through the relay",
        START_TIMEOUT,
        || async {
            mesh_addrs(&a1)
                .await
                .iter()
                .any(|a| a.contains("/p2p-circuit/"))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", till1.log_tail()));
    let data_pc = join_in(&home, &dir("homepc"), &a1.invite("till", "Home PC").await);
    let (homepc, addr_pc) = run_in(
        &home,
        &data_pc,
        &dir("homepc").join("run.log"),
        "10.77.2.2",
        &flags_l,
    );
    let apc = Api::new(addr_pc);
    apc.wait_healthy(&homepc).await;
    let apc = apc.login(OWNER, OWNER_PASSWORD).await;
    wait_for(
        "the home PC has the shop's products",
        START_TIMEOUT,
        || async { (apc.get(&format!("/api/v1/products/{product}")).await.0 == 200).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", homepc.log_tail()));
    let sold = a1.sell(&product, 1).await;
    let sale_pc = sold["id"].as_str().unwrap().to_string();
    wait_for(
        "a sale on till 1 reaches the home PC",
        START_TIMEOUT,
        || async { (apc.get(&format!("/api/v1/sales/{sale_pc}")).await.0 == 200).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", homepc.log_tail()));
    drop(homepc);

    // The relay goes down; the shop sells on; the laptop cannot see it until the relay is back.
    relay.stop();
    let mut offline = Vec::new();
    for _ in 0..3 {
        offline.push(
            a1.sell(&product, 1).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        al.get(&format!("/api/v1/sales/{}", offline[0])).await.0,
        404
    );
    let mut cmd = tillmesh_in(&cloud, &relay_home);
    cmd.arg("relay")
        .arg("--data-dir")
        .arg(&relay_data)
        .args(["--listen", "/ip4/0.0.0.0/tcp/7979"]);
    let (relay, again) = spawn_until(cmd, &relay_home.join("relay2.log"), find_peer);
    assert_eq!(again, relay_id, "the relay keeps its key");
    for id in &offline {
        wait_for(
            "the relay catches up and the laptop gets it",
            Duration::from_secs(120),
            || async { (al.get(&format!("/api/v1/sales/{id}")).await.0 == 200).then_some(()) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nrelay:\n{}", relay.log_tail()));
    }
    let stock = al.ok("/api/v1/stock").await;
    assert_eq!(stock.as_array().unwrap()[0]["on_hand"], 100 - 2 - 1 - 3);
    drop((till1, till2, laptop, relay));
}

mod circuit {
    //! A minimal libp2p circuit-relay v2 client, as a device behind NAT would run.
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{SwarmBuilder, identity::Keypair, noise, ping, relay, tcp, yamux};

    #[derive(NetworkBehaviour)]
    pub struct Client {
        pub relay: relay::client::Behaviour,
        pub ping: ping::Behaviour,
    }

    pub fn client(secret: [u8; 32]) -> libp2p::Swarm<Client> {
        SwarmBuilder::with_existing_identity(Keypair::ed25519_from_bytes(secret).unwrap())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_, relay| Client {
                relay,
                ping: ping::Behaviour::default(),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(super::Duration::from_secs(60)))
            .build()
    }
}

/// The relay's circuit-relay v2 server: a device of a shop it serves reserves a slot and
/// another device of the shop reaches it through a circuit; a stranger is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_relay_serves_only_the_shops_devices() {
    use futures::StreamExt;
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;

    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let relay = start_relay(&d("relay"), free_port()).await;
    let (t1, h1, owner, _) = first_till(&d("t1")).await;
    let shop = tillmesh::relay::enroll(&d("relay"), &relay_invite(&h1, &owner, "Cloud").await)
        .await
        .unwrap()
        .shop_id;
    assert!(wait_for(|| relay.shops() == vec![shop], T).await);
    h1.add_peer(&owner, &relay.addrs()[0].to_string())
        .await
        .unwrap();
    for name in ["X", "Y"] {
        let inv = till_invite(&h1, &owner, name).await;
        tillmesh::node::join(&d(name), &inv.invite, Default::default())
            .await
            .unwrap();
    }
    let replica = relay.replica(shop).unwrap();
    assert!(
        wait_for(|| replica.devices().unwrap().len() == 4, T).await,
        "the relay knows X and Y"
    );
    let relay_addr = relay.addrs()[0].clone();
    let circuit_addr = relay_addr.clone().with(Protocol::P2pCircuit);

    // X, a device of the shop behind NAT, reserves a slot on the relay.
    let mut x = circuit::client(key_of(&d("X")));
    let x_id = *x.local_peer_id();
    x.listen_on(circuit_addr.clone()).unwrap();
    tokio::time::timeout(T, async {
        loop {
            if let SwarmEvent::Behaviour(circuit::ClientEvent::Relay(
                libp2p::relay::client::Event::ReservationReqAccepted { .. },
            )) = x.select_next_some().await
            {
                return;
            }
        }
    })
    .await
    .expect("a device of the shop gets a reservation");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let x_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } = x.select_next_some().await {
                let _ = seen_tx.send(peer_id);
            }
        }
    });

    // Y, another device of the shop, reaches X through the relay.
    let mut y = circuit::client(key_of(&d("Y")));
    let y_id = *y.local_peer_id();
    y.dial(circuit_addr.clone().with(Protocol::P2p(x_id)))
        .unwrap();
    tokio::time::timeout(T, async {
        loop {
            if let SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } = y.select_next_some().await
                && peer_id == x_id
            {
                assert!(
                    endpoint.is_relayed(),
                    "the connection goes through the relay"
                );
                return;
            }
        }
    })
    .await
    .expect("Y reaches X through a circuit");
    let by = tokio::time::timeout(T, async {
        loop {
            match seen_rx.recv().await {
                Some(p) if p == y_id => return p,
                Some(_) => continue,
                None => panic!("X stopped"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(by, y_id);
    x_task.abort();

    // A stranger's reservation is denied.
    let mut s = circuit::client([42; 32]);
    s.listen_on(circuit_addr).unwrap();
    let denied = tokio::time::timeout(T, async {
        loop {
            match s.select_next_some().await {
                SwarmEvent::Behaviour(circuit::ClientEvent::Relay(
                    libp2p::relay::client::Event::ReservationReqAccepted { .. },
                )) => return false,
                SwarmEvent::ListenerClosed { reason: Err(_), .. }
                | SwarmEvent::ListenerError { .. } => return true,
                _ => {}
            }
        }
    })
    .await
    .expect("the stranger gets an answer");
    assert!(denied, "a stranger may not use the circuit relay");

    drop((h1, replica));
    t1.shutdown().await;
    relay.shutdown().await;
}

/// A shop whose replica is full is refused further changes (offered or pulled), with a clear
/// answer; the relay keeps serving reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_refuses_more_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let (t1, h1, owner, _) = first_till(&d("t1")).await;
    let shop = tillmesh::relay::enroll(&d("relay"), &relay_invite(&h1, &owner, "Cloud").await)
        .await
        .unwrap()
        .shop_id;
    // The limit is what the replica holds after enrolling (the shop and the relay's admission).
    let mut cfg = RelayConfig::new(
        d("relay"),
        vec![
            format!("/ip4/127.0.0.1/tcp/{}", free_port())
                .parse()
                .unwrap(),
        ],
    );
    cfg.max_changes_per_shop = 1;
    let relay = Relay::start(cfg).await.unwrap();
    let replica = relay.replica(shop).unwrap();
    let held = replica.status().unwrap().envelopes;
    let relay_addr = relay.addrs()[0].to_string();
    let inv = till_invite(&h1, &owner, "X").await;
    tillmesh::node::join(&d("X"), &inv.invite, Default::default())
        .await
        .unwrap();
    let p = h1
        .create_product(&owner, product("FULL", 100, 0))
        .await
        .unwrap();
    let offered: Vec<Vec<u8>> = h1
        .envelopes()
        .unwrap()
        .into_iter()
        .filter(|e| e.doc == "catalog")
        .map(|e| e.to_bytes())
        .collect();
    // Till 1 is a member the replica knows: its offer is refused for space.
    let shop_genesis = h1.genesis().unwrap().map(|g| g.0);
    let answer = ask_as(
        key_of(&d("t1")),
        &relay_addr,
        shop_genesis,
        SyncRequest::Offer(offered),
    )
    .await;
    assert_eq!(
        answer,
        SyncResponse::Refused(Refusal::new(
            RefusalKind::Full,
            "this shop's space on the relay is full"
        ))
    );
    // Reads still work.
    let SyncResponse::Buckets(_) = ask_as(
        key_of(&d("t1")),
        &relay_addr,
        shop_genesis,
        SyncRequest::Buckets,
    )
    .await
    else {
        panic!("reads are served")
    };
    // Till 1 dials the relay: the relay does not pull the new product either.
    h1.add_peer(&owner, &relay_addr).await.unwrap();
    // Once till 1 has pulled from the relay, the relay's own pull on that connection has run.
    let relay_peer = relay.peer_id().to_string();
    let deadline = std::time::Instant::now() + T;
    loop {
        let pulled = h1
            .peers()
            .await
            .iter()
            .any(|v| v.peer_id == relay_peer && v.last_pull.is_some());
        if pulled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "till 1 pulled from the relay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replica.product(p.id).is_err());
    assert_eq!(replica.status().unwrap().envelopes, held);
    drop((h1, replica));
    t1.shutdown().await;
    relay.shutdown().await;
}

/// Envelopes held on a replica take the shop's space: a device offering validly signed changes
/// that wait for what never comes fills its shop's quota as stored changes would, and then the
/// shop's next offer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_envelopes_count_in_a_shops_quota() {
    use automerge::transaction::Transactable;
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let (t1, h1, owner, _) = first_till(&d("t1")).await;
    let shop = tillmesh::relay::enroll(&d("relay"), &relay_invite(&h1, &owner, "Cloud").await)
        .await
        .unwrap()
        .shop_id;
    let cfg = |limit: u64| {
        let mut cfg = RelayConfig::new(
            d("relay"),
            vec![
                format!("/ip4/127.0.0.1/tcp/{}", free_port())
                    .parse()
                    .unwrap(),
            ],
        );
        cfg.max_changes_per_shop = limit;
        cfg
    };
    // What the replica stores after enrolling, and its members heads.
    let relay = Relay::start(cfg(u64::MAX)).await.unwrap();
    let replica = relay.replica(shop).unwrap();
    let stored = replica.status().unwrap().envelopes;
    let heads: Vec<automerge::ChangeHash> = replica
        .stored_documents()
        .unwrap()
        .into_iter()
        .find(|x| x.id == "members")
        .unwrap()
        .heads
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    drop(replica);
    relay.shutdown().await;

    // Room for one more change.
    let relay = Relay::start(cfg(stored + 1)).await.unwrap();
    let replica = relay.replica(shop).unwrap();
    let relay_addr = relay.addrs()[0].to_string();
    // Till 1 signs, on its own ledger, a change whose predecessor it never sends.
    let key = ed25519_dalek::SigningKey::from_bytes(&key_of(&d("t1")));
    let device = tillmesh::identity::device_id(&key.verifying_key());
    let doc = format!("ledger/2026-01-01/{device}/0");
    let mut am = automerge::AutoCommit::new();
    am.set_author(Some(automerge::Author::from(
        key.verifying_key().to_bytes().to_vec(),
    )));
    am.put(automerge::ROOT, "a", 1).unwrap();
    am.commit();
    am.put(automerge::ROOT, "b", 2).unwrap();
    am.commit();
    let waiting =
        tillmesh::docs::Envelope::sign(&key, &doc, &am.get_last_local_change().unwrap(), 1, &heads);
    let shop_genesis = h1.genesis().unwrap().map(|g| g.0);
    let answer = ask_as(
        key_of(&d("t1")),
        &relay_addr,
        shop_genesis,
        SyncRequest::Offer(vec![waiting.to_bytes()]),
    )
    .await;
    assert_eq!(answer, SyncResponse::Accepted(0), "held, not accepted");
    assert_eq!(replica.held_count().unwrap(), 1);
    assert_eq!(replica.status().unwrap().envelopes, stored);

    // The shop's space is taken: a real change is refused.
    h1.create_product(&owner, product("Q1", 100, 0))
        .await
        .unwrap();
    let offered: Vec<Vec<u8>> = h1
        .envelopes()
        .unwrap()
        .into_iter()
        .filter(|e| e.doc == "catalog")
        .map(|e| e.to_bytes())
        .collect();
    let answer = ask_as(
        key_of(&d("t1")),
        &relay_addr,
        shop_genesis,
        SyncRequest::Offer(offered),
    )
    .await;
    assert_eq!(
        answer,
        SyncResponse::Refused(Refusal::new(
            RefusalKind::Full,
            "this shop's space on the relay is full"
        ))
    );
    drop((h1, replica));
    t1.shutdown().await;
    relay.shutdown().await;
}
