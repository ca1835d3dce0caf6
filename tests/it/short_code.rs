//! Joining with a bare short code (found by mDNS) against a rogue device on the shop's LAN
//! (issue 14, point 5). The rogue answers mDNS for every shop, reads everything the joiner
//! sends, and relays it byte for byte to the real inviter (so it gets whatever the inviter
//! would hand a device that knows the code). It must learn nothing and redeem nothing: the
//! joiner still joins the real shop, and the invite is used by the joiner only.
//!
//! Runs inside a private network namespace (`unshare --net`, loopback only; needs root, as
//! CI has): mDNS never runs on this machine's real interfaces.

use crate::common;
use std::sync::{Arc, Mutex};

use common::mesh::*;
use common::*;
use tillmesh::Node;
use tillmesh::net::{self, NetConfig, NetEvent, NetHandle};
use tillmesh::sync::{self, SyncRequest, SyncResponse};

fn lo() -> Vec<String> {
    vec!["lo".to_string()]
}

/// A device on the LAN that is no member of any shop: it advertises itself by mDNS (so a
/// device joining with a short code dials it) and relays every request it gets to the
/// inviting device, recording what it saw and what came back.
struct Rogue {
    net: NetHandle,
    key: [u8; 32],
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
    discovery: Option<tillmesh::net::discovery::Discovery>,
    task: tokio::task::JoinHandle<()>,
}

impl Rogue {
    async fn start(inviter: &str) -> Rogue {
        let secret = tillmesh::identity::new_signing_key().to_bytes();
        let key = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let mut cfg = NetConfig::new(secret, "rogue");
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        let (net, mut events) = net::start(cfg).await.unwrap();
        let inviter_addr: net::Multiaddr = inviter.parse().unwrap();
        let inviter_peer: net::PeerId = inviter.rsplit('/').next().unwrap().parse().unwrap();
        net.dial(inviter_addr).await.unwrap();
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let answers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let task = {
            let (net, seen, answers) = (net.clone(), Arc::clone(&seen), Arc::clone(&answers));
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    let NetEvent::Request { data, reply, .. } = ev else {
                        continue;
                    };
                    seen.lock().unwrap().push(data.clone());
                    let (net, answers): (NetHandle, Arc<Mutex<Vec<Vec<u8>>>>) =
                        (net.clone(), Arc::clone(&answers));
                    tokio::spawn(async move {
                        // Relayed as is: whatever proves knowledge of the code to the joiner
                        // or to the inviter is passed on.
                        if let Ok(answer) = net.request(inviter_peer, data).await {
                            answers.lock().unwrap().push(answer.clone());
                            let _ = reply.send(answer);
                        }
                    });
                }
            })
        };
        let me = net.local_peer_id().to_string();
        let mut addrs = Vec::new();
        assert!(
            wait_for_async(
                || {
                    let net = net.clone();
                    async move { !net.listen_addrs().await.is_empty() }
                },
                T
            )
            .await
        );
        for a in net.listen_addrs().await {
            addrs.push(a.to_string());
        }
        let (discovery, found) =
            tillmesh::net::discovery::Discovery::start(tillmesh::net::discovery::DiscoveryConfig {
                interfaces: lo(),
                instance: me.clone(),
                // Any shop: a joining device looks for every shop on the LAN.
                shop_hash: tillmesh::docs::admission::shop_hash(uuid::Uuid::new_v4()),
                peer_id: me,
                addrs,
                ui_port: 0,
            })
            .unwrap();
        drop(found);
        Rogue {
            net,
            key,
            seen,
            answers,
            discovery: Some(discovery),
            task,
        }
    }

    /// The rogue never saw the code, in any spelling, in anything sent to it.
    fn assert_code_unseen(&self, code: &str) {
        let bare = code.replace('-', "");
        let spellings = [
            code.to_string(),
            bare.clone(),
            code.to_lowercase(),
            bare.to_lowercase(),
        ];
        let seen = self.seen.lock().unwrap();
        for msg in seen.iter() {
            for s in &spellings {
                assert!(
                    !msg.windows(s.len()).any(|w| w == s.as_bytes()),
                    "the rogue read the code {s} in what the joiner sent"
                );
            }
        }
    }

    /// Nothing the inviter answered the rogue was a redeemed invite.
    fn assert_redeemed_nothing(&self) {
        for a in self.answers.lock().unwrap().iter() {
            assert!(
                !matches!(sync::decode_response(a, None), Ok(SyncResponse::Invite(_))),
                "the inviter redeemed the invite for the rogue"
            );
        }
    }

    async fn stop(mut self) {
        if let Some(d) = self.discovery.take() {
            tokio::task::spawn_blocking(move || d.shutdown())
                .await
                .unwrap();
        }
        self.net.shutdown().await;
        self.task.abort();
    }
}

#[test]
fn a_rogue_mdns_responder_cannot_take_a_short_code() {
    in_private_netns("a_rogue_mdns_responder_cannot_take_a_short_code", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(rogue_responder());
    });
}

async fn rogue_responder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_a = tmp.path().join("a");
    // The inviting till, first with mDNS off: the rogue is the only device a short code
    // finds, so the joiner certainly talks to it.
    let (a, ah, owner, addr_a) = first_till_on(Node::builder().data_dir(&dir_a)).await;
    let inv = till_invite(&ah, &owner, "Till 2").await;
    let rogue = Rogue::start(&addr_a).await;

    let dir_j = tmp.path().join("joiner");
    let err = tillmesh::node::join(&dir_j, &inv.code, tillmesh::mesh::JoinOptions::mdns(lo()))
        .await
        .unwrap_err();
    assert!(
        !rogue.seen.lock().unwrap().is_empty(),
        "the joiner asked the rogue"
    );
    rogue.assert_code_unseen(&inv.code);
    rogue.assert_redeemed_nothing();
    // The relayed run reached the inviter, which answered it (for the rogue's key) …
    assert!(
        rogue.answers.lock().unwrap().iter().any(|a| matches!(
            sync::decode_response(a, None),
            Ok(SyncResponse::RedeemOffers { .. })
        )),
        "the inviter answered the relayed run"
    );
    // … and the joiner, finding no proof that the rogue knows the code, sent nothing more.
    assert!(
        rogue.seen.lock().unwrap().iter().all(|r| !matches!(
            sync::decode_request(r),
            Ok((_, SyncRequest::RedeemFinish { .. }))
        )),
        "the joiner finished a run with the rogue"
    );
    assert!(
        err.to_string().contains("unknown invite code"),
        "only the rogue answered: {err}"
    );
    let rogue_key = hex::encode(rogue.key);
    assert!(
        ah.devices()
            .unwrap()
            .iter()
            .all(|d| d.public_key != rogue_key),
        "the rogue is no device of the shop"
    );
    assert_eq!(ah.devices().unwrap().len(), 1);

    // The inviting till comes back with mDNS on: the joiner finds both (the rogue, perhaps
    // first) and joins the real shop.
    let addr_rogue_sees = addr_a.clone();
    drop(ah);
    a.shutdown().await;
    // Tasks of the stopped node (the rogue's stranger grace) may hold its store a while.
    let deadline = std::time::Instant::now() + T;
    let a = loop {
        match Node::builder()
            .data_dir(&dir_a)
            .listen(addr_rogue_sees.rsplit_once("/p2p/").unwrap().0)
            .mdns(lo())
            .start()
            .await
        {
            Ok(a) => break a,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("already open"), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the inviting till restarts: {e}"),
        }
    };
    let ah = a.handle();
    wait_addr(&ah).await;
    let joined = tillmesh::node::join(&dir_j, &inv.code, tillmesh::mesh::JoinOptions::mdns(lo()))
        .await
        .unwrap();
    assert_eq!(joined.device_name, "Till 2");
    let devices = ah.devices().unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(devices.iter().all(|d| d.public_key != rogue_key));
    rogue.assert_code_unseen(&inv.code);
    rogue.assert_redeemed_nothing();

    // The invite is used up: a third device with the same code is refused.
    let err = tillmesh::node::join(
        &tmp.path().join("third"),
        &inv.code,
        tillmesh::mesh::JoinOptions::mdns(lo()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    rogue.assert_code_unseen(&inv.code);
    rogue.assert_redeemed_nothing();
    assert_eq!(ah.devices().unwrap().len(), 2);

    rogue.stop().await;
    drop(ah);
    a.shutdown().await;
}
