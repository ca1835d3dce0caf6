//! Nodes on a mesh over 127.0.0.1 for tests: the first till, members, several tills that can
//! be cut off from each other and healed.
#![allow(dead_code)]

use std::time::Duration;

use super::*;
use tillmesh::domain::model::*;
use tillmesh::{Node, NodeHandle};

/// How long a test waits for a condition on the mesh.
pub const T: Duration = Duration::from_secs(20);

pub async fn start_member(dir: &std::path::Path, peer: &str) -> Node {
    Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(peer)
        .start()
        .await
        .unwrap()
}

/// The first till: a new shop in memory, on the mesh over loopback; its owner logged in and
/// its mesh address.
pub async fn first_till() -> (Node, NodeHandle, Principal, String) {
    first_till_on(Node::builder().memory()).await
}

/// [`first_till`] built from `b` (a data dir, mDNS …), listening on loopback.
pub async fn first_till_on(b: tillmesh::NodeBuilder) -> (Node, NodeHandle, Principal, String) {
    let a = b.listen("/ip4/127.0.0.1/tcp/0").start().await.unwrap();
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let addr = wait_addr(&ah).await;
    (a, ah, owner, addr)
}

pub async fn wait_addr(h: &NodeHandle) -> String {
    assert!(
        wait_for(|| !h.addrs().is_empty(), T).await,
        "the mesh listens"
    );
    h.addrs()[0].clone()
}

/// An invite of role `relay` named `name`, made by `by` on `h`.
pub async fn relay_invite(h: &NodeHandle, by: &Principal, name: &str) -> String {
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

/// Enrolls the relay whose data dir is `relay_dir` with an invite named `name` made by `by` on
/// `h` (as `tillmesh relay enroll`); the shop's id.
pub async fn enroll_relay(
    relay_dir: &std::path::Path,
    h: &NodeHandle,
    by: &Principal,
    name: &str,
) -> uuid::Uuid {
    tillmesh::relay::enroll(relay_dir, &relay_invite(h, by, name).await)
        .await
        .expect("the relay enrolls")
        .shop_id
}

/// A node that is no member of the shop but knows its topic (gossipsub tells every connected
/// peer its name), connected to the till at `addr` and subscribed with it: its key, network,
/// events and the till's peer id.
pub async fn outsider_on_topic(
    h: &NodeHandle,
    addr: &str,
) -> (
    ed25519_dalek::SigningKey,
    tillmesh::net::NetHandle,
    tokio::sync::mpsc::Receiver<tillmesh::net::NetEvent>,
    tillmesh::net::PeerId,
) {
    use tillmesh::net::{self, NetConfig};
    let addr: net::Multiaddr = addr.parse().unwrap();
    let key = tillmesh::identity::new_signing_key();
    let mut cfg = NetConfig::new(key.to_bytes(), h.topic().unwrap());
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let (outsider, events) = net::start(cfg).await.unwrap();
    outsider.dial(addr.clone()).await.unwrap();
    let till = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .unwrap();
    assert!(
        wait_for_async(|| async { outsider.topic_peers().await.contains(&till) }, T).await,
        "the outsider is on the till's topic"
    );
    (key, outsider, events, till)
}

/// Waits until `h` holds no connection to the peer `peer_id`.
pub async fn disconnected(h: &NodeHandle, peer_id: &str, timeout: Duration) -> bool {
    wait_for_async(
        || async {
            !h.peers()
                .await
                .iter()
                .any(|p| p.peer_id == peer_id && p.connected)
        },
        timeout,
    )
    .await
}

pub async fn wait_for_async<F, Fut>(mut cond: F, timeout: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}

/// A shop of three tills on loopback: A made the shop; B and C joined with invites and dial
/// A (and C dials B), so every pair is linked directly.
pub struct Three {
    pub nodes: Vec<(Option<tempfile::TempDir>, Node)>,
    pub h: Vec<NodeHandle>,
    pub owners: Vec<Principal>,
    pub product: uuid::Uuid,
}

impl Three {
    pub async fn start(stock: i64) -> Three {
        Three::start_n(3, stock).await
    }

    /// `n` tills in one shop, each connected to every other; product P1 with `stock` at cost
    /// 1.00 on the first.
    pub async fn start_n(n: usize, stock: i64) -> Three {
        let (a, ah, owner, addr_a) = first_till().await;
        let p = ah
            .create_product(&owner, product("P1", 300, 2000))
            .await
            .unwrap();
        if stock > 0 {
            ah.stock_in(&owner, stock_in(p.id, stock, 100))
                .await
                .unwrap();
        }
        let mut nodes = vec![(None, a)];
        let mut peers = vec![addr_a];
        for i in 2..=n {
            let dir = joined_dir(&ah, &owner, format!("Till {i}")).await;
            let mut b = Node::builder()
                .data_dir(dir.path())
                .listen("/ip4/127.0.0.1/tcp/0");
            for addr in &peers {
                b = b.peer(addr);
            }
            let n = b.start().await.unwrap();
            peers.push(wait_addr(&n.handle()).await);
            nodes.push((Some(dir), n));
        }
        let h: Vec<NodeHandle> = nodes.iter().map(|(_, n)| n.handle()).collect();
        let mut owners = Vec::new();
        for x in &h {
            owners.push(x.login_password("olivia", OWNER_PW).await.unwrap());
        }
        let three = Three {
            nodes,
            h,
            owners,
            product: p.id,
        };
        assert!(three.converged(T).await, "the shop reached every till");
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    assert!(three.linked(i, j, T).await, "{i} and {j} are connected");
                }
            }
        }
        three
    }

    pub async fn converged(&self, timeout: Duration) -> bool {
        wait_for(
            || {
                let d = self.h[0].bucket_digests().unwrap();
                self.h.iter().all(|h| h.bucket_digests().unwrap() == d)
                    && self
                        .h
                        .iter()
                        .all(|h| h.devices().unwrap().len() == self.h.len())
            },
            timeout,
        )
        .await
    }

    pub async fn connected(&self, i: usize, j: usize) -> bool {
        let peer = self.h[j].peer_id();
        self.h[i]
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == peer && p.connected)
    }

    pub async fn linked(&self, i: usize, j: usize, timeout: Duration) -> bool {
        wait_for_async(|| self.connected(i, j), timeout).await
    }

    pub async fn unlinked(&self, i: usize, j: usize, timeout: Duration) -> bool {
        wait_for_async(|| async { !self.connected(i, j).await }, timeout).await
    }

    /// Cuts the link between i and j (each refuses the other).
    pub async fn cut(&self, i: usize, j: usize) {
        self.h[i].block_peer(&self.h[j].peer_id()).await.unwrap();
        self.h[j].block_peer(&self.h[i].peer_id()).await.unwrap();
        assert!(self.unlinked(i, j, T).await, "cut {i}–{j}");
        assert!(self.unlinked(j, i, T).await, "cut {j}–{i}");
    }

    pub async fn heal(&self, i: usize, j: usize) {
        self.h[i].unblock_peer(&self.h[j].peer_id()).await.unwrap();
        self.h[j].unblock_peer(&self.h[i].peer_id()).await.unwrap();
    }

    /// `n` sales of one item on till i, a few at a time; their ids.
    pub async fn sell(&self, i: usize, n: usize) -> Vec<uuid::Uuid> {
        let mut ids = Vec::new();
        for chunk in 0..n.div_ceil(8) {
            let batch = (chunk * 8..n.min(chunk * 8 + 8))
                .map(|_| self.h[i].record_sale(&self.owners[i], sale_of(self.product, 1)));
            for s in futures::future::join_all(batch).await {
                ids.push(s.unwrap().id);
            }
        }
        ids
    }

    pub fn sale_ids(&self, i: usize) -> std::collections::BTreeSet<uuid::Uuid> {
        self.h[i]
            .sales(0, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    }

    pub async fn shutdown(self) {
        drop(self.h);
        for (_, n) in self.nodes {
            n.shutdown().await;
        }
    }
}

/// A new data dir that joined `h`'s shop as a till named `name` (an invite by `by`, redeemed
/// with `tillmesh::node::join` over the network), not started.
pub async fn joined_dir(
    h: &NodeHandle,
    by: &Principal,
    name: impl Into<String>,
) -> tempfile::TempDir {
    let inv = till_invite(h, by, name).await;
    let dir = tempfile::tempdir().unwrap();
    tillmesh::node::join(dir.path(), &inv.invite, Default::default())
        .await
        .unwrap();
    dir
}
