//! The shop mesh over real sockets on 127.0.0.1: invites, live push, anti-entropy.

use crate::common;
use std::time::Duration;

use common::mesh::*;
use common::*;
use tillmesh::Node;
use tillmesh::domain::model::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tills_sync_sales_and_catalog_live() {
    let dir_a = tempfile::tempdir().unwrap();
    let (a, ah, owner, addr_a) = first_till_on(Node::builder().data_dir(dir_a.path())).await;
    let p = ah
        .create_product(&owner, product("S1", 500, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, 100, 200)).await.unwrap();

    // Two devices join with invites, as `tillmesh join` does, then run.
    let mut others = Vec::new();
    for name in ["Till 2", "Till 3"] {
        let inv = till_invite(&ah, &owner, name).await;
        let dir = tempfile::tempdir().unwrap();
        let joined = tillmesh::node::join(dir.path(), &inv.invite, Default::default())
            .await
            .unwrap();
        assert_eq!(joined.device_name, name);
        let node = start_member(dir.path(), &addr_a).await;
        others.push((dir, node));
    }
    let bh = others[0].1.handle();
    let ch = others[1].1.handle();
    assert!(wait_for(|| ah.devices().unwrap().len() == 3, T).await);
    for h in [&bh, &ch] {
        assert!(wait_for(|| h.product(p.id).is_ok() && on_hand(h, p.id) == 100, T).await);
    }

    // A sale on A is on B and C.
    let sale = ah.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    for h in [&bh, &ch] {
        assert!(
            wait_for(|| h.sale(sale.id).is_ok(), T).await,
            "sale reached a peer"
        );
        assert!(wait_for(|| on_hand(h, p.id) == 98, T).await);
    }
    // A product edit on B reaches A and C.
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    bh.update_product(
        &owner_b,
        p.id,
        ProductPatch {
            name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for h in [&ah, &ch] {
        assert!(wait_for(|| h.product(p.id).unwrap().name == "Renamed", T).await);
    }
    // A sale on C (receipt prefix T3) reaches A and B.
    let owner_c = ch.login_password("olivia", OWNER_PW).await.unwrap();
    let sale_c = ch.record_sale(&owner_c, sale_of(p.id, 1)).await.unwrap();
    assert_eq!(sale_c.receipt, "T3-000001");
    for h in [&ah, &bh] {
        assert!(wait_for(|| h.sale(sale_c.id).is_ok(), T).await);
    }
    // Peers are listed with names.
    let peers = ah.peers().await;
    assert!(
        peers.iter().filter(|p| p.connected).count() >= 2,
        "{peers:?}"
    );
    assert!(
        peers.iter().any(|p| p.name.as_deref() == Some("Till 2")),
        "{peers:?}"
    );

    // Everyone converged.
    assert!(
        wait_for(
            || bh.bucket_digests().unwrap() == ah.bucket_digests().unwrap()
                && ch.bucket_digests().unwrap() == ah.bucket_digests().unwrap(),
            T
        )
        .await
    );
    drop((ah, bh, ch));
    for (_, n) in others {
        n.shutdown().await;
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_invite_is_refused() {
    let (a, ah, owner, _) = first_till().await;
    let inv = till_invite(&ah, &owner, "T2").await;
    let d1 = tempfile::tempdir().unwrap();
    tillmesh::node::join(d1.path(), &inv.invite, Default::default())
        .await
        .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let err = tillmesh::node::join(d2.path(), &inv.invite, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    let err = tillmesh::node::join(d2.path(), "not an invite", Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an invite"), "{err}");
    drop(ah);
    a.shutdown().await;
}

/// A new device joins from its first-start page: `POST /api/v1/join` on a running node with no
/// shop, then it syncs at once; used, garbage and unanswered invites get clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_joins_through_the_api() {
    let (a, ah, owner, _) = first_till().await;
    let p = ah
        .create_product(&owner, product("J1", 250, 0))
        .await
        .unwrap();
    let start_b = || async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let node = Node::builder()
            .memory()
            .http_listener(l)
            .listen("/ip4/127.0.0.1/tcp/0")
            .start()
            .await
            .unwrap();
        let url = format!("http://{}/api/v1/join", node.http_addr().unwrap());
        (node, url)
    };
    let http = reqwest::Client::new();
    let join = |url: String, invite: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .json(&serde_json::json!({ "invite": invite }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };

    let (b, url_b) = start_b().await;
    let bh = b.handle();
    let inv = till_invite(&ah, &owner, "Till 2").await;
    let (status, body) = join(url_b.clone(), inv.invite.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shop_name"], "Corner Shop");
    assert_eq!(body["device_name"], "Till 2");
    assert_eq!(body["device_id"], bh.device_id());
    // It syncs from now on: the product is there, and a sale on A arrives live.
    assert!(wait_for(|| bh.product(p.id).is_ok(), T).await);
    let sale = ah.record_sale(&owner, sale_of(p.id, 1)).await.unwrap();
    assert!(wait_for(|| bh.sale(sale.id).is_ok(), T).await, "live sync");
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let sale_b = bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap();
    assert!(
        wait_for(|| ah.sale(sale_b.id).is_ok(), T).await,
        "both ways"
    );
    // Joining again is refused.
    let inv2 = till_invite(&ah, &owner, "Till 3").await;
    let (status, body) = join(url_b.clone(), inv2.invite.clone()).await;
    assert_eq!(status, 409, "{body}");

    // Another new device: a used invite, garbage, then a device that doesn't answer.
    let (c, url_c) = start_b().await;
    let (status, body) = join(url_c.clone(), inv.invite.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    let (status, body) = join(url_c.clone(), "tillmesh-invite:garbage".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "invite", "{body}");
    drop(ah);
    a.shutdown().await;
    let (status, body) = join(url_c.clone(), inv2.invite.clone()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "unreachable", "{body}");
    assert!(!c.handle().status().unwrap().has_shop, "nothing changed");
    drop(bh);
    b.shutdown().await;
    c.shutdown().await;
}

/// Three nodes with no static peers find each other by mDNS (loopback only, inside a private
/// network namespace) and sync: B and C never met before; a sale on B reaches C.
#[test]
fn nodes_find_each_other_by_mdns_and_sync() {
    in_private_netns("nodes_find_each_other_by_mdns_and_sync", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(mdns_mesh());
    });
}

async fn mdns_mesh() {
    let lo = || vec!["lo".to_string()];
    let dir_a = tempfile::tempdir().unwrap();
    let (a, ah, owner, _) = first_till_on(Node::builder().data_dir(dir_a.path()).mdns(lo())).await;
    let p = ah
        .create_product(&owner, product("D1", 100, 0))
        .await
        .unwrap();
    let mut nodes = Vec::new();
    for name in ["Till 2", "Till 3"] {
        let inv = till_invite(&ah, &owner, name).await;
        let dir = tempfile::tempdir().unwrap();
        // Till 2 scans the QR code (the full invite, with A's address); Till 3 types the short
        // code, and finds the shop by mDNS.
        let invite = if name == "Till 2" {
            &inv.invite
        } else {
            &inv.code
        };
        tillmesh::node::join(dir.path(), invite, tillmesh::mesh::JoinOptions::mdns(lo()))
            .await
            .unwrap();
        // No static peer: discovery only.
        let n = Node::builder()
            .data_dir(dir.path())
            .listen("/ip4/127.0.0.1/tcp/0")
            .mdns(lo())
            .start()
            .await
            .unwrap();
        nodes.push((dir, n));
    }
    let bh = nodes[0].1.handle();
    let ch = nodes[1].1.handle();
    assert!(
        wait_for(|| ch.product(p.id).is_ok(), Duration::from_secs(40)).await,
        "C synced by mDNS"
    );
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let sale = bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap();
    assert!(
        wait_for(|| ch.sale(sale.id).is_ok(), Duration::from_secs(40)).await,
        "B's sale reached C"
    );
    assert!(
        wait_for(|| ah.sale(sale.id).is_ok(), Duration::from_secs(40)).await,
        "B's sale reached A"
    );
    let peers = ch.peers().await;
    assert!(
        peers
            .iter()
            .any(|p| p.found_by == tillmesh::mesh::FoundBy::Mdns),
        "{peers:?}"
    );
    drop((ah, bh, ch));
    for (_, n) in nodes {
        n.shutdown().await;
    }
    a.shutdown().await;
}

/// A till that was off while the others sold (and sold itself, offline) catches up when it
/// comes back: every sale everywhere exactly once, identical stock; two tills that were cut
/// off from each other both keep their first sale of the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_till_catches_up_and_nothing_is_lost_or_doubled() {
    let dir_a = tempfile::tempdir().unwrap();
    let (a, ah, owner, addr_a) = first_till_on(Node::builder().data_dir(dir_a.path())).await;
    let p = ah
        .create_product(&owner, product("O1", 100, 0))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, 10_000, 50))
        .await
        .unwrap();
    let dir_b = joined_dir(&ah, &owner, "Till 2").await;

    // B sells while offline (no mesh), A sells meanwhile.
    let b = Node::builder()
        .data_dir(dir_b.path())
        .start()
        .await
        .unwrap();
    let bh = b.handle();
    let owner_b = bh.login_password("olivia", OWNER_PW).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..150 {
        ids.push(bh.record_sale(&owner_b, sale_of(p.id, 1)).await.unwrap().id);
        ids.push(ah.record_sale(&owner, sale_of(p.id, 2)).await.unwrap().id);
    }
    drop(bh);
    b.shutdown().await;

    // B comes back with the mesh: it pushes nothing live (it was offline), anti-entropy on
    // connect carries everything both ways.
    let b = start_member(dir_b.path(), &addr_a).await;
    let bh = b.handle();
    let expected = 10_000 - 150 - 300;
    for h in [&ah, &bh] {
        assert!(
            wait_for(|| on_hand(h, p.id) == expected, T).await,
            "stock converged"
        );
        assert!(wait_for(|| h.sales(0, i64::MAX).unwrap().len() == ids.len(), T).await);
    }
    for id in &ids {
        assert!(ah.sale(*id).is_ok() && bh.sale(*id).is_ok());
    }
    assert_eq!(
        ah.daily_sales(&owner, "0", "9").unwrap(),
        bh.daily_sales(&owner, "0", "9").unwrap()
    );
    drop((ah, bh));
    b.shutdown().await;
    a.shutdown().await;
}

/// A hostile peer that knows the topic (say, a stolen device) speaks the protocol: forged and
/// under-privileged envelopes and garbage are rejected and never forwarded or applied, its
/// requests are refused, it is disconnected after repeated offences, and the shop keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_rejected_and_disconnected() {
    use tillmesh::docs::Envelope;
    use tillmesh::sync::{SyncRequest, SyncResponse};

    let (a, ah, owner, addr_a) = first_till().await;
    let p = ah
        .create_product(&owner, product("X1", 100, 0))
        .await
        .unwrap();
    let before = (ah.products().unwrap(), ah.envelopes().unwrap().len());

    let (evil_key, evil, _events, a_peer) = outsider_on_topic(&ah, &addr_a).await;

    // Not a member: sync requests about the shop are refused.
    let shop = ah.genesis().unwrap().map(|g| g.0);
    let answer = evil
        .request(
            a_peer,
            tillmesh::sync::encode_request(shop, &SyncRequest::Buckets),
        )
        .await
        .unwrap();
    assert!(matches!(
        tillmesh::sync::decode_response(&answer, shop).unwrap(),
        SyncResponse::Refused(r) if r.kind == tillmesh::sync::RefusalKind::Forbidden
    ));

    // A catalog change signed by a key that is no member (a till key may not write it anyway).
    let change = {
        let mut doc = automerge::AutoCommit::new();
        doc.set_author(Some(automerge::Author::from(
            evil_key.verifying_key().to_bytes().to_vec(),
        )));
        use automerge::transaction::Transactable;
        doc.put(automerge::ROOT, format!("product:{}", p.id), "pwned")
            .unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    };
    let members_heads: Vec<automerge::ChangeHash> = ah
        .stored_documents()
        .unwrap()
        .into_iter()
        .find(|d| d.id == "members")
        .unwrap()
        .heads
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    let bad = Envelope::sign(&evil_key, "catalog", &change, 1, &members_heads);
    evil.publish(bad.to_bytes()).await.unwrap();
    for i in 0..8u8 {
        evil.publish(vec![0xde, 0xad, i]).await.unwrap();
    }
    // Rejections are counted against it and it is cut off.
    assert!(
        wait_for_async(
            || async {
                ah.peers()
                    .await
                    .iter()
                    .any(|v| v.peer_id == evil.local_peer_id().to_string() && v.rejected >= 5)
            },
            T
        )
        .await,
        "{:?}",
        ah.peers().await
    );
    assert!(
        wait_for_async(|| async { !evil.topic_peers().await.contains(&a_peer) }, T).await,
        "disconnected"
    );
    assert_eq!(
        (ah.products().unwrap(), ah.envelopes().unwrap().len()),
        before
    );
    // The shop keeps working.
    ah.record_sale(&owner, sale_of(p.id, 1)).await.unwrap();
    evil.shutdown().await;
    drop(ah);
    a.shutdown().await;
}

/// A stranger that connects to a till and subscribes to the shop's topic (gossipsub tells every
/// connected peer its name) receives the shop's gossip sealed: no envelope, no plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_topic_reads_nothing() {
    use tillmesh::docs::Envelope;
    use tillmesh::net::NetEvent;

    let (a, ah, owner, addr_a) = first_till().await;
    let p = ah
        .create_product(&owner, product("SECRET-SKU-42", 700, 0))
        .await
        .unwrap();
    let (_, net, mut events, _) = outsider_on_topic(&ah, &addr_a).await;

    // A new product and a sale, published while the stranger listens.
    ah.create_product(&owner, product("SECRET-SKU-43", 900, 0))
        .await
        .unwrap();
    let sale = ah.record_sale(&owner, sale_of(p.id, 1)).await.unwrap();
    let mut heard = Vec::new();
    tokio::time::timeout(T, async {
        while heard.len() < 2 {
            match events.recv().await {
                Some(NetEvent::Gossip { data, .. }) => heard.push(data),
                Some(_) => continue,
                None => panic!("the stranger's network stopped"),
            }
        }
    })
    .await
    .expect("the till's gossip reaches a subscribed peer");
    for data in &heard {
        assert!(
            Envelope::from_bytes(data).is_err(),
            "an envelope in the clear"
        );
        for secret in [b"SECRET-SKU-43".as_slice(), sale.receipt.as_bytes()] {
            assert!(
                !data.windows(secret.len()).any(|w| w == secret),
                "{:?} readable in the gossip",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // It is not a member and redeemed no invite: the till disconnects it.
    let stranger = net.local_peer_id().to_string();
    assert!(
        disconnected(&ah, &stranger, tillmesh::mesh::STRANGER_GRACE + T).await,
        "the stranger is disconnected"
    );
    net.shutdown().await;
    drop(ah);
    a.shutdown().await;
}

/// A till revoked while it was switched off learns it when it comes back: the till it reaches
/// hands it the owners' signed revocation (the `members` changes), then refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_revoked_while_off_learns_it_when_it_comes_back() {
    let (a, ah, owner, addr_a) = first_till().await;
    let dir = joined_dir(&ah, &owner, "Till 2").await;
    let b = start_member(dir.path(), &addr_a).await;
    let bh = b.handle();
    let b_id = bh.device_id().to_string();
    assert!(wait_for(|| ah.devices().unwrap().iter().any(|d| d.id == b_id), T).await);
    drop(bh);
    b.shutdown().await;

    ah.revoke_member(&owner, &b_id).await.unwrap();
    let b = start_member(dir.path(), &addr_a).await;
    let bh = b.handle();
    assert!(
        wait_for(|| bh.is_revoked(), T).await,
        "B learns it was revoked"
    );
    let b_peer = bh.peer_id();
    assert!(disconnected(&ah, &b_peer, T).await, "and is refused");
    drop((ah, bh));
    b.shutdown().await;
    a.shutdown().await;
}

/// A device of the shop that speaks another version of the sync protocol (here: Till 2's key
/// on a network that speaks protocol 1): the till's pulls from it fail, and it says an update
/// is needed — on the peer (`pull_error`) and in its status — instead of silently not syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_another_protocol_version_says_update_needed() {
    let (a, ah, owner, addr_a) = first_till().await;
    let dir = joined_dir(&ah, &owner, "Till 2").await;
    assert_eq!(ah.status().unwrap().update_needed, None);
    let key: [u8; 32] = std::fs::read(dir.path().join(tillmesh::node::DEVICE_KEY_FILE))
        .unwrap()
        .try_into()
        .unwrap();
    let mut cfg = tillmesh::net::NetConfig::new(key, "old");
    cfg.sync_protocol = "/tillmesh/sync/1";
    let (old, mut events) = tillmesh::net::start(cfg).await.unwrap();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    old.dial(addr_a.parse().unwrap()).await.unwrap();
    assert!(
        wait_for(|| ah.status().unwrap().update_needed.is_some(), T).await,
        "the till says an update is needed"
    );
    let why = ah.status().unwrap().update_needed.unwrap();
    assert!(why.contains("update needed"), "{why}");
    let peer = old.local_peer_id().to_string();
    assert!(
        ah.peers()
            .await
            .iter()
            .any(|p| p.peer_id == peer && p.pull_error.as_deref() == Some(why.as_str())),
        "the Sync screen shows it on the device"
    );
    drain.abort();
    old.shutdown().await;
    drop(ah);
    a.shutdown().await;
}

/// Partition and heal: A is cut from B and C (and, at first, B from C); every side sells —
/// B and C each make their first sale of the day while cut off from each other — and once
/// healed every till has every sale exactly once and the same stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_tills_heal_with_every_sale_exactly_once() {
    const STOCK: i64 = 5_000;
    let three = Three::start(STOCK).await;
    three.cut(0, 1).await;
    three.cut(0, 2).await;
    three.cut(1, 2).await;
    assert!(
        three.h[1].sales(0, i64::MAX).unwrap().is_empty()
            && three.h[2].sales(0, i64::MAX).unwrap().is_empty(),
        "B and C have sold nothing yet today"
    );
    // Each alone: A and B change the same price; B's and C's first sales of the day go into
    // two ledger documents nobody else has.
    for (i, price) in [(0, 310), (1, 320)] {
        three.h[i]
            .update_product(
                &three.owners[i],
                three.product,
                ProductPatch {
                    price: Some(price),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let mut all = std::collections::BTreeSet::new();
    for i in 0..3 {
        all.extend(three.sell(i, 1).await);
    }
    // B and C find each other again; A stays cut off. Hundreds of sales on both sides.
    three.heal(1, 2).await;
    assert!(three.linked(1, 2, T).await);
    let (a, b, c) = tokio::join!(three.sell(0, 150), three.sell(1, 150), three.sell(2, 150));
    all.extend(a.iter().chain(&b).chain(&c));
    assert_eq!(all.len(), 453);
    let bc = three.sale_ids(1);
    assert!(
        wait_for(|| three.sale_ids(2) == three.sale_ids(1), T).await,
        "B and C sync while A is away"
    );
    assert!(
        a.iter().all(|id| !bc.contains(id)),
        "nothing crossed the cut"
    );
    assert!(
        !three.sale_ids(0).contains(&b[0]),
        "A has none of B's sales"
    );

    three.heal(0, 1).await;
    three.heal(0, 2).await;
    assert!(three.converged(Duration::from_secs(60)).await, "healed");
    for i in 0..3 {
        assert_eq!(
            three.sale_ids(i),
            all,
            "till {i} has every sale exactly once"
        );
        assert_eq!(
            three.h[i].sales(0, i64::MAX).unwrap().len(),
            all.len(),
            "no sale twice on till {i}"
        );
        assert_eq!(
            on_hand(&three.h[i], three.product),
            STOCK - all.len() as i64
        );
    }
    // The concurrent prices converged to one value everywhere, with the conflict reported.
    let p0 = three.h[0].product(three.product).unwrap();
    for i in 1..3 {
        assert_eq!(three.h[i].product(three.product).unwrap(), p0);
    }
    assert!([310, 320].contains(&p0.price), "{p0:?}");
    assert_eq!(p0.conflicts["price"].len(), 2, "{p0:?}");
    let day = |i: usize| {
        three.h[i]
            .daily_sales(&owner_of(&three.h[i]), "2000-01-01", "2999-12-31")
            .unwrap()
    };
    assert_eq!(day(0), day(1));
    assert_eq!(day(1), day(2));
    three.shutdown().await;
}

/// Revoking a till: it learns it was revoked (its status says so and it refuses to record
/// anything), every other till disconnects it and keeps refusing it, and the rest keep syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_till_is_told_and_disconnected_everywhere() {
    let three = Three::start(100).await;
    let b_id = three.h[1].device_id().to_string();
    three.h[0]
        .revoke_member(&three.owners[0], &b_id)
        .await
        .unwrap();
    let b = &three.h[1];
    assert!(
        wait_for(|| b.status().unwrap().device.is_some_and(|d| d.revoked), T).await,
        "B's status says it was revoked"
    );
    let err = b
        .record_sale(&three.owners[1], sale_of(three.product, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    for i in [0, 2] {
        assert!(three.unlinked(i, 1, T).await, "till {i} dropped B");
        assert!(three.unlinked(1, i, T).await, "B dropped till {i}");
    }
    // B stays out: still disconnected a few pull rounds later, while A and C sync.
    let sale = three.h[0]
        .record_sale(&three.owners[0], sale_of(three.product, 1))
        .await
        .unwrap();
    assert!(wait_for(|| three.h[2].sale(sale.id).is_ok(), T).await);
    assert!(b.sale(sale.id).is_err(), "B gets nothing any more");
    assert!(!three.connected(0, 1).await && !three.connected(2, 1).await);
    three.shutdown().await;
}

/// A till paired after 10,000 sales catches up completely over the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_catches_up_after_ten_thousand_sales() {
    const SALES: usize = 10_000;
    let (a, ah, owner, addr_a) = first_till().await;
    let p = ah
        .create_product(&owner, product("L1", 120, 0))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, SALES as i64, 50))
        .await
        .unwrap();
    // Sixteen clerks at once, so the writer commits them in groups.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (h, o) = (ah.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..SALES / 16 {
                h.record_sale(&o, sale_of(p.id, 1)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ah.sales(0, i64::MAX).unwrap().len(), SALES);

    let inv = till_invite(&ah, &owner, "Late till").await;
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    tillmesh::node::join(dir.path(), &inv.invite, Default::default())
        .await
        .unwrap();
    let d = start_member(dir.path(), &addr_a).await;
    let dh = d.handle();
    assert!(
        wait_for(
            || dh.bucket_digests().unwrap() == ah.bucket_digests().unwrap(),
            Duration::from_secs(120)
        )
        .await,
        "caught up"
    );
    eprintln!(
        "late joiner caught up on {SALES} sales in {:?}",
        started.elapsed()
    );
    assert_eq!(dh.sales(0, i64::MAX).unwrap().len(), SALES);
    assert_eq!(on_hand(&dh, p.id), 0);
    assert_eq!(
        dh.daily_sales(&owner, "2000-01-01", "2999-12-31").unwrap(),
        ah.daily_sales(&owner, "2000-01-01", "2999-12-31").unwrap()
    );
    drop((ah, dh));
    d.shutdown().await;
    a.shutdown().await;
}

/// Revocation ends read access to live gossip. Someone holding a copy of Till 2's disk (its
/// gossip key) listens with a fresh key, subscribed to the shop's topic as gossipsub names it:
/// before Till 2 is revoked it reads the shop's sales; once an owner revokes Till 2 the key and
/// topic rotate, the other tills (which joined after the shop was made, so got the key from a
/// peer) move to the new key together, and what the thief hears can no longer be opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tills_key_reads_nothing_after_the_rotation() {
    let three = Three::start(100).await;
    let (a, b, c) = (&three.h[0], &three.h[1], &three.h[2]);
    assert!(
        wait_for(|| b.topic().is_some() && b.topic() == a.topic(), T).await,
        "a till that joined later gets the gossip key from a peer"
    );
    assert!(wait_for(|| c.topic() == a.topic(), T).await);
    let stolen = b.gossip_key().unwrap().unwrap().key;

    let addr_a = wait_addr(a).await;
    let (_, before) = overhear_a_sale(&three, &addr_a).await;
    let opened = tillmesh::mesh::open_gossip(&stolen, &before).expect("the key reads the gossip");
    assert!(tillmesh::docs::Envelope::from_bytes(&opened).is_ok());

    let b_id = b.device_id().to_string();
    let old_topic = a.topic();
    a.revoke_member(&three.owners[0], &b_id).await.unwrap();
    assert!(
        wait_for(|| a.topic() != old_topic && c.topic() == a.topic(), T).await,
        "A and C move to the new key"
    );
    assert!(
        wait_for(|| b.is_revoked(), T).await,
        "B learns it was revoked"
    );
    assert_ne!(
        b.topic(),
        a.topic(),
        "the revoked till cannot derive the new key"
    );

    let (sale, after) = overhear_a_sale(&three, &addr_a).await;
    assert!(
        tillmesh::mesh::open_gossip(&stolen, &after).is_err(),
        "the revoked till's key opens the gossip after the rotation"
    );
    assert!(
        wait_for(|| c.sale(sale.id).is_ok(), T).await,
        "C still gets A's sales"
    );
    three.shutdown().await;
}

/// A peer with a fresh key, subscribed to till A's topic as gossipsub names it, hears the
/// gossip of a sale A records: the sale and the sealed message.
async fn overhear_a_sale(three: &Three, addr_a: &str) -> (Sale, Vec<u8>) {
    use tillmesh::net::NetEvent;
    let a = &three.h[0];
    let (_, net, mut events, _) = outsider_on_topic(a, addr_a).await;
    let sale = a
        .record_sale(&three.owners[0], sale_of(three.product, 1))
        .await
        .unwrap();
    let heard = tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Some(NetEvent::Gossip { data, .. }) => return data,
                Some(_) => continue,
                None => panic!("the listener's network stopped"),
            }
        }
    })
    .await
    .expect("the till's gossip reaches a subscribed peer");
    net.shutdown().await;
    (sale, heard)
}

/// A till gets the shop's gossip key with its invite (the rotations were wrapped to the tills
/// there were before it): it reads the shop's gossip from its first moment as a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_till_gets_the_gossip_key_with_its_invite() {
    let (a, ah, owner, addr_a) = first_till().await;
    let dir = joined_dir(&ah, &owner, "Till 2").await;
    let b = start_member(dir.path(), &addr_a).await;
    let bh = b.handle();
    assert!(ah.topic().is_some());
    assert_eq!(bh.topic(), ah.topic(), "B holds the key as it starts");
    let p = ah
        .create_product(&owner, product("G1", 100, 0))
        .await
        .unwrap();
    assert!(wait_for(|| bh.product(p.id).is_ok(), T).await);
    drop((ah, bh));
    b.shutdown().await;
    a.shutdown().await;
}

/// A burst of sales on one till reaches the other by gossip in batches: the writer commits
/// many peers' changes at once (`tillmesh_peer_changes_per_commit`), not one commit per
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_applied_in_batches() {
    let t = Three::start_n(2, 1000).await;
    let sales = (0..300).map(|_| t.h[0].record_sale(&t.owners[0], sale_of(t.product, 1)));
    for s in futures::future::join_all(sales).await {
        s.unwrap();
    }
    assert!(t.converged(T).await, "the sales reached the other till");
    let value = |name: &str| -> f64 {
        let text = t.h[1]
            .metrics()
            .render(&tillmesh::metrics::Gauges::default());
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in the metrics:\n{text}"))
    };
    // The writer counts a commit just after readers see it.
    let sum = "tillmesh_peer_changes_per_commit_sum";
    assert!(
        wait_for(|| value(sum) >= 300.0, T).await,
        "{} peers' changes applied",
        value(sum)
    );
    let changes = value(sum);
    let commits = value("tillmesh_peer_changes_per_commit_count");
    assert!(
        changes / commits >= 4.0,
        "{changes} peers' changes in {commits} commits: gossip was not batched"
    );
}
