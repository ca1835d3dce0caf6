//! The shop mesh: ties the network ([`crate::net`]) and discovery ([`crate::net::discovery`]) to
//! the node.
//!
//! - **Push**: every envelope this node commits is published on the shop's gossip topic, sealed
//!   with a key only member devices hold (`seal`): a stranger that connects and subscribes
//!   reads nothing.
//! - **Receive**: a gossip message is decoded and goes through the node's verify-and-apply path;
//!   only then is gossipsub told to forward it (validation mode). Invalid data is rejected,
//!   logged and counted against the peer that sent it; a peer that keeps sending it is
//!   disconnected.
//! - **Pull**: on connect and periodically, anti-entropy ([`crate::sync::pull`]) with each
//!   member peer fetches what this node lacks.
//! - **Relays** (member devices with the `relay` role, see [`crate::relay`]) are in no gossip
//!   topic: every committed envelope is also offered to each connected relay by
//!   request-response, and so is an admission a joining device offers here.
//! - **Who may talk**: requests from peers that are not member devices are answered only for
//!   `RedeemStart`/`RedeemFinish` (joining with an invite, by a key exchange keyed by the
//!   code: see [`crate::redeem`]).
//! - **Discovery**: what mDNS finds ([`crate::net::discovery`]) is dialed by the lower peer id at
//!   once, by the higher one only if still not connected after a short wait (`discovery`).
//! - **Peers**: a table of every peer (how it was found, connected, RTT, last contact, how far
//!   behind) for `GET /api/v1/peers`, and the rules over peers, without IO ([`PeerTable`]:
//!   strikes, one pull per peer, a backoff for failing ones, the joining window).
//!
//! It runs as one actor (`mesh/actor.rs`: one task, one `select!`, every task it starts in one
//! `JoinSet`, aborted with it) over [`Host`], what it needs of the node: the mesh names no
//! handle and no node.

pub use crate::docs::gossip_keys::{GOSSIP_SEAL_BYTES, open_gossip, seal_gossip};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::net::{self, Multiaddr};
use crate::sync;

mod actor;
mod discovery;
mod gossip;
mod host;
mod join;
mod peers;
mod wire;

pub use host::Host;
pub(crate) use join::join;
pub use join::{Joined, PEERS_FILE, remember_peer};
pub use peers::{AfterPull, GAP_PULL_EVERY, JOINING_WINDOW, MAX_PULL_BACKOFF, PeerTable};
pub use sync::JoinOptions;
pub(crate) use wire::own_addr;
pub use wire::{NetPeer, net_config};

/// How often anti-entropy runs with every connected member peer.
pub const PULL_INTERVAL: Duration = Duration::from_secs(10);
/// Invalid messages from one peer before it is disconnected.
pub const MAX_STRIKES: u32 = 5;
/// How long a peer that is not a member may stay connected: long enough to redeem an invite
/// (then it may stay for [`peers::JOINING_WINDOW`]); after that it is disconnected, so a
/// stranger on the Wi-Fi, another shop's device or a revoked device holds no connection to
/// the shop.
pub const STRANGER_GRACE: Duration = Duration::from_secs(15);
pub use gossip::OLD_KEY_GRACE;

/// How a peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// mDNS on the LAN.
    Mdns,
    /// A static address (flag, config or "add peer").
    Static,
    /// An address in an invite.
    Invite,
    /// It connected to us.
    Inbound,
}

/// A peer as `GET /api/v1/peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    /// libp2p peer id.
    pub peer_id: String,
    /// Device name (from `members`), if a member.
    pub name: Option<String>,
    /// Device role, if a member.
    pub role: Option<String>,
    /// Device id, if a member.
    pub device_id: Option<String>,
    /// How it was found.
    pub found_by: FoundBy,
    /// Connected now.
    pub connected: bool,
    /// Round-trip time in ms.
    pub rtt_ms: Option<f64>,
    /// Last contact (ms since the Unix epoch).
    pub last_contact: Option<i64>,
    /// Addresses.
    pub addrs: Vec<String>,
    /// Changes it had that this node lacked at the last pull.
    pub we_lacked: u64,
    /// Invalid messages received from it.
    pub rejected: u64,
    /// When the last pull (anti-entropy) from it completed (ms since the Unix epoch).
    pub last_pull: Option<i64>,
    /// Why the last pull from it failed, if it did.
    pub pull_error: Option<String>,
    /// Relays: when it last took the changes this node offered it (ms since the Unix epoch).
    pub last_push: Option<i64>,
    /// Relays: why the last offer failed, if it did.
    pub push_error: Option<String>,
    /// Relays: when it last took an encrypted snapshot of the shop (ms since the Unix epoch;
    /// null while unknown or if it takes none).
    #[serde(default)]
    pub last_snapshot: Option<i64>,
    /// Connected only through a relay's circuit (a device elsewhere, reached live through the
    /// relay), not directly.
    #[serde(default)]
    pub via_relay: bool,
}

/// How this node takes part in the mesh, as `GET /api/v1/mesh` shows it (the Sync screen).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeshInfo {
    /// The mesh runs (the node has a shop and a listen address).
    pub running: bool,
    /// mDNS discovery runs (off with `--no-mdns`).
    pub mdns: bool,
    /// This node's libp2p peer id, while the mesh runs.
    pub peer_id: Option<String>,
    /// Addresses other devices can add this node by (`POST /api/v1/peers` on them).
    pub addrs: Vec<String>,
}

/// Mesh settings.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Static peers.
    pub peers: Vec<Multiaddr>,
    /// mDNS: `None` = off; `Some(interfaces)` (empty = all non-loopback interfaces).
    pub mdns: Option<Vec<String>>,
    /// Web UI port (advertised).
    pub ui_port: u16,
}

/// The running mesh: the network, discovery and the actor (`mesh::actor`) that drives them.
pub struct Mesh {
    net: net::NetHandle,
    peers: Arc<Mutex<peers::PeerTable>>,
    actor: JoinHandle<()>,
    discovery: Mutex<Option<crate::net::discovery::Discovery>>,
}

impl Mesh {
    /// Starts the network for a node that belongs to a shop.
    pub async fn start<H: Host>(node: H, cfg: MeshConfig) -> Result<Mesh> {
        let current = match node.gossip_key() {
            Ok(None) => {
                return Err(Error::NoShop(
                    "the mesh needs a shop: create or join one".into(),
                ));
            }
            Ok(Some(k)) => Some(k),
            // Admitted after the last rotation: the actor asks a member peer for it.
            Err(_) => None,
        };
        let topic = current.map(|k| k.topic()).unwrap_or_default();
        let keys: gossip::Keys = Arc::new(Mutex::new(gossip::KeyRing {
            current,
            previous: Vec::new(),
        }));
        let (net, events) = net::start(net_config(
            &node,
            cfg.listen.clone(),
            cfg.peers.clone(),
            topic,
        ))
        .await
        .map_err(|e| Error::Internal(format!("network: {e}")))?;
        let me = net.local_peer_id();
        let addrs: Vec<String> = net
            .listen_addrs()
            .await
            .into_iter()
            .map(|a| own_addr(a, me))
            .collect();
        node.set_addrs(addrs.clone());
        let peers: Arc<Mutex<peers::PeerTable>> = Default::default();
        for a in &cfg.peers {
            if let Some(p) = wire::peer_of(a) {
                actor::found(&peers, p, FoundBy::Static);
            }
        }
        let mut discovery = None;
        let mut found = None;
        if let Some(interfaces) = cfg.mdns {
            let shop_id = node
                .status()?
                .shop_id
                .ok_or_else(|| Error::NoShop("no shop".into()))?;
            let dcfg = crate::net::discovery::DiscoveryConfig {
                interfaces,
                instance: net.local_peer_id().to_string(),
                shop_hash: crate::docs::admission::shop_hash(shop_id),
                peer_id: net.local_peer_id().to_string(),
                addrs: addrs.clone(),
                ui_port: cfg.ui_port,
            };
            let (d, f) = crate::net::discovery::Discovery::start(dcfg)
                .map_err(|e| Error::Internal(format!("mDNS: {e}")))?;
            discovery = Some(d);
            found = Some(f);
        }
        let actor = actor::Actor::new(node, net.clone(), peers.clone(), keys);
        let actor = tokio::spawn(actor.run(events, found));
        Ok(Mesh {
            net,
            peers,
            actor,
            discovery: Mutex::new(discovery),
        })
    }

    /// The network handle.
    pub fn net(&self) -> &net::NetHandle {
        &self.net
    }

    /// Whether mDNS discovery runs.
    pub fn mdns_enabled(&self) -> bool {
        self.discovery.lock().expect("discovery lock").is_some()
    }

    /// Dials an address (`POST /api/v1/peers`).
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<()> {
        if let Some(p) = wire::peer_of(&addr) {
            actor::found(&self.peers, p, FoundBy::Static);
        }
        self.net
            .dial(addr)
            .await
            .map_err(|e| Error::invalid("addr", format!("cannot dial: {e}")))
    }

    /// Every peer with its status.
    pub async fn peers<H: Host>(&self, node: &H) -> Vec<PeerView> {
        let status = self.net.peers().await;
        let devices = node.devices().unwrap_or_default();
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .views(&status, &devices)
    }

    /// Stops discovery, the actor (and every task it started) and the network.
    pub async fn shutdown(&self) {
        if let Some(d) = self.discovery.lock().expect("discovery lock").take() {
            d.shutdown();
        }
        self.actor.abort();
        self.net.shutdown().await;
    }
}

/// Starts the mesh as soon as the node has a shop (at once, or after setup or joining), and
/// stops it when `stop` turns true.
pub async fn supervise<H: Host>(
    node: H,
    cfg: MeshConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = node.subscribe();
    // A shop is created here at once; a join pulls the shop first and admits this device last.
    while matches!(node.gossip_key(), Ok(None)) || !node.is_member_device(&node.device_public_key())
    {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            ev = events.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev { return },
        }
    }
    let mut cfg = cfg;
    for addr in node.after_join().await {
        if !cfg.peers.contains(&addr) {
            cfg.peers.push(addr);
        }
    }
    let mesh = match Mesh::start(node.clone(), cfg).await {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!("the mesh could not start: {e}");
            return;
        }
    };
    tracing::info!(peer_id = %mesh.net().local_peer_id(), addrs = ?node.addrs(), "mesh started");
    node.set_mesh(Some(mesh.clone())).await;
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = revoked(&node) => {
            tracing::error!("an owner revoked this device: it no longer syncs with the shop");
        }
    }
    node.set_mesh(None).await;
    mesh.shutdown().await;
}

/// Returns once this device is revoked.
async fn revoked<H: Host>(node: &H) {
    let mut events = node.subscribe();
    while !node.is_revoked() {
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
            std::future::pending::<()>().await;
        }
    }
}
