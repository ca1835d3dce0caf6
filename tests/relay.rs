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
//! - `shop_lan_home_and_cloud_namespaces` (processes, root): the same story in three network
//!   namespaces joined by veth pairs through which the shop and home reach only the cloud.

mod common;
mod procs;

use std::time::Duration;

use common::*;
use tillmesh::domain::model::*;
use tillmesh::net::{self, NetConfig};
use tillmesh::relay::{Relay, RelayConfig};
use tillmesh::sync::{SyncRequest, SyncResponse};
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

async fn relay_invite(h: &NodeHandle, by: &Principal, name: &str) -> String {
    h.create_invite(
        by,
        NewInvite {
            role: DeviceRole::Relay,
            name: name.into(),
            ttl_minutes: None,
        },
    )
    .await
    .expect("an owner may invite a relay")
    .invite
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
    tillmesh::mesh::join(dir, &inv.invite, None).await.unwrap();
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
    h1.add_peer(&relay_addr).await.unwrap();
    let (t2, h2) = device_behind(&h1, &owner, "Till 2", &d("till2"), &relay_addr).await;
    let (laptop, hl) = device_behind(&h1, &owner, "Laptop", &d("laptop"), &relay_addr).await;
    for h in [&h1, &h2, &hl] {
        assert!(
            wait_for(|| h.devices().unwrap().len() == 4, T).await,
            "every device knows the others' admissions"
        );
    }
    let relay_peer = relay.peer_id().to_string();
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
    assert_eq!(connected(&hl).await, vec![relay_peer]);

    drop((h1, h2, hl, replica));
    for n in [t1, t2, laptop] {
        n.shutdown().await;
    }
    relay.shutdown().await;
}

/// Sends one raw sync request to the relay as the device whose key is in `key_file`.
async fn ask_as(secret: [u8; 32], relay_addr: &str, req: SyncRequest) -> SyncResponse {
    let (net, mut events) = net::start(NetConfig::new(secret, "probe")).await.unwrap();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let addr: net::Multiaddr = relay_addr.parse().unwrap();
    net.dial(addr).await.unwrap();
    let relay = relay_addr.rsplit('/').next().unwrap().parse().unwrap();
    let answer = net.request(relay, req.to_bytes()).await.unwrap();
    net.shutdown().await;
    drain.abort();
    SyncResponse::from_bytes(&answer).unwrap()
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
    ha.add_peer(&relay_addr).await.unwrap();
    hb.add_peer(&relay_addr).await.unwrap();
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

    // Shop A's device reads shop A's replica, and only it.
    let SyncResponse::Buckets(buckets) = ask_as(key_a2, &relay_addr, SyncRequest::Buckets).await
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
    let SyncResponse::Envelopes(e) =
        ask_as(key_a2, &relay_addr, SyncRequest::Envelopes(theirs.clone())).await
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
    let SyncResponse::Accepted(n) = ask_as(key_a2, &relay_addr, SyncRequest::Offer(b_envs)).await
    else {
        panic!()
    };
    assert_eq!(n, 0, "nothing of shop B is accepted into shop A");
    assert_eq!(ra.status().unwrap().envelopes, before_a);
    assert_eq!(rb.status().unwrap().envelopes, before_b);
    assert!(ra.product(pb.id).is_err() && rb.product(pa.id).is_err());

    // A stranger, a revoked device and a redeem attempt get one and the same answer.
    let stranger = ask_as([7; 32], &relay_addr, SyncRequest::Buckets).await;
    assert_eq!(
        stranger,
        SyncResponse::Error(tillmesh::relay::NOT_SERVED.into())
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
        ask_as(key_a2, &relay_addr, SyncRequest::Buckets).await,
        stranger,
        "a revoked device is a stranger"
    );
    assert_eq!(
        ask_as(
            [9; 32],
            &relay_addr,
            SyncRequest::Redeem("AAAAA-BBBBB".into())
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
