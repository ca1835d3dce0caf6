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
//!   once, by the higher one only if still not connected after a short wait (`discovery_loop`).
//! - **Peers**: a table of every peer (how it was found, connected, RTT, last contact, how far
//!   behind) for `GET /api/v1/peers`.

pub use crate::docs::gossip_keys::{GOSSIP_SEAL_BYTES, open_gossip, seal_gossip};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::docs::Envelope;
use crate::docs::gossip_keys::GossipKey;
use crate::error::{Error, Result};
use crate::net::{self, Acceptance, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId};
use crate::replica::Applied;
use crate::sync::{self, SyncPeer, SyncRequest, SyncResponse};

mod host;
pub use host::Host;

/// How often anti-entropy runs with every connected member peer.
pub const PULL_INTERVAL: Duration = Duration::from_secs(10);
/// Invalid messages from one peer before it is disconnected.
pub const MAX_STRIKES: u32 = 5;

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

#[derive(Default)]
struct PeerEntry {
    found_by: Option<FoundBy>,
    connected: bool,
    last_contact: Option<SystemTime>,
    addrs: Vec<String>,
    we_lacked: u64,
    rejected: u64,
    strikes: u32,
    /// When a pull was last started because of a gap in this peer's gossip.
    gap_pull: Option<std::time::Instant>,
    last_pull: Option<SystemTime>,
    pull_error: Option<String>,
    /// A pull from this peer is under way: another is not started beside it (a peer that
    /// does not answer would otherwise gather one waiting pull per tick).
    pulling: bool,
    last_push: Option<SystemTime>,
    push_error: Option<String>,
    /// Relays: their last snapshot of the shop (ms), as they said at the last pull.
    last_snapshot: Option<i64>,
}

type Peers = Arc<Mutex<HashMap<PeerId, PeerEntry>>>;

/// The running mesh.
pub struct Mesh {
    net: NetHandle,
    peers: Peers,
    tasks: Vec<JoinHandle<()>>,
    discovery: Mutex<Option<crate::net::discovery::Discovery>>,
}

/// A peer reached over the network's request-response protocol, asked about the shop of
/// `node` (read at each request: a joining node learns its shop's genesis mid-conversation).
pub struct NetPeer<H> {
    net: NetHandle,
    peer: PeerId,
    node: H,
}

impl<H: Host> NetPeer<H> {
    /// `peer`, reached through `net`, asked about `node`'s shop.
    pub fn new(net: NetHandle, peer: PeerId, node: H) -> NetPeer<H> {
        NetPeer { net, peer, node }
    }
}

/// The genesis of `node`'s shop, as the sync protocol names the shop.
pub(crate) fn shop_of<H: Host>(node: &H) -> Option<sync::Hash32> {
    node.genesis().ok().flatten().map(|g| g.0)
}

/// Sends one framed request about `node`'s shop to `peer` and decodes the answer.
pub(crate) async fn ask<H: Host>(
    net: &NetHandle,
    node: &H,
    peer: PeerId,
    req: &SyncRequest,
) -> Result<SyncResponse> {
    let shop = shop_of(node);
    let bytes = net
        .request(peer, sync::encode_request(shop, req))
        .await
        .map_err(|e| match e {
            net::NetError::UnsupportedProtocol { .. } => Error::UpdateNeeded(e.to_string()),
            e => Error::Internal(format!("request to {peer} failed: {e}")),
        })?;
    sync::decode_response(&bytes, shop)
}

impl<H: Host> SyncPeer for NetPeer<H> {
    async fn request(&self, req: SyncRequest) -> Result<SyncResponse> {
        ask(&self.net, &self.node, self.peer, &req).await
    }

    fn id(&self) -> String {
        self.peer.to_string()
    }

    fn public_key(&self) -> Option<[u8; 32]> {
        net::public_key_of(&self.peer)
    }
}

/// The network identity and protocol settings for a node.
pub fn net_config<H: Host>(
    node: &H,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    topic: String,
) -> NetConfig {
    NetConfig {
        device_secret: node.device_secret(),
        listen,
        topic,
        static_peers: peers,
        sync_protocol: sync::PROTOCOL,
        max_request_bytes: sync::MAX_MESSAGE_BYTES,
        max_gossip_bytes: 1024 * 1024 + GOSSIP_SEAL_BYTES,
        relay_server: None,
    }
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
            // Admitted after the last rotation: the key loop asks a member peer for it.
            Err(_) => None,
        };
        let topic = current.map(|k| k.topic()).unwrap_or_default();
        let keys: Keys = Arc::new(Mutex::new(KeyRing {
            current,
            previous: Vec::new(),
        }));
        let static_peers = cfg.peers.clone();
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
        let peers: Peers = Default::default();
        for a in &static_peers {
            if let Some(p) = peer_of(a) {
                peers
                    .lock()
                    .expect("peers lock")
                    .entry(p)
                    .or_default()
                    .found_by = Some(FoundBy::Static);
            }
        }
        let mut tasks = vec![
            tokio::spawn(event_loop(
                node.clone(),
                net.clone(),
                peers.clone(),
                keys.clone(),
                events,
            )),
            tokio::spawn(publish_loop(
                node.clone(),
                net.clone(),
                peers.clone(),
                keys.clone(),
            )),
            tokio::spawn(key_loop(node.clone(), net.clone(), keys)),
            tokio::spawn(revocation_loop(node.clone(), net.clone())),
            tokio::spawn(pull_loop(node.clone(), net.clone(), peers.clone())),
            tokio::spawn(circuit_loop(node.clone(), net.clone())),
        ];
        let mut discovery = None;
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
            let (d, found) = crate::net::discovery::Discovery::start(dcfg)
                .map_err(|e| Error::Internal(format!("mDNS: {e}")))?;
            discovery = Some(d);
            tasks.push(tokio::spawn(discovery_loop(
                net.clone(),
                peers.clone(),
                found,
            )));
        }
        Ok(Mesh {
            net,
            peers,
            tasks,
            discovery: Mutex::new(discovery),
        })
    }

    /// The network handle.
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Whether mDNS discovery runs.
    pub fn mdns_enabled(&self) -> bool {
        self.discovery.lock().expect("discovery lock").is_some()
    }

    /// Dials an address (`POST /api/v1/peers`).
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<()> {
        if let Some(p) = peer_of(&addr) {
            self.peers
                .lock()
                .expect("peers lock")
                .entry(p)
                .or_default()
                .found_by = Some(FoundBy::Static);
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
        let table = self.peers.lock().expect("peers lock");
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in status {
            seen.insert(s.peer);
            let e = table.get(&s.peer);
            out.push(view(&s.peer, e, Some(&s), &devices));
        }
        for (p, e) in table.iter() {
            if !seen.contains(p) {
                out.push(view(p, Some(e), None, &devices));
            }
        }
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    /// Stops discovery, the loops and the network.
    pub async fn shutdown(&self) {
        if let Some(d) = self.discovery.lock().expect("discovery lock").take() {
            d.shutdown();
        }
        for t in &self.tasks {
            t.abort();
        }
        self.net.shutdown().await;
    }
}

fn view(
    peer: &PeerId,
    e: Option<&PeerEntry>,
    s: Option<&net::PeerStatus>,
    devices: &[crate::model::Device],
) -> PeerView {
    let device = net::public_key_of(peer)
        .map(hex::encode)
        .and_then(|pk| devices.iter().find(|d| d.public_key == pk));
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64)
    };
    PeerView {
        peer_id: peer.to_string(),
        name: device.map(|d| d.name.clone()),
        role: device.map(|d| format!("{:?}", d.role).to_lowercase()),
        device_id: device.map(|d| d.id.clone()),
        found_by: e.and_then(|e| e.found_by).unwrap_or(FoundBy::Inbound),
        connected: s.is_some_and(|s| s.connected) || e.is_some_and(|e| e.connected),
        rtt_ms: s.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
        last_contact: s
            .and_then(|s| s.last_seen)
            .or(e.and_then(|e| e.last_contact))
            .and_then(ms),
        addrs: match s {
            Some(s) if !s.addrs.is_empty() => s.addrs.iter().map(|a| a.to_string()).collect(),
            _ => e.map(|e| e.addrs.clone()).unwrap_or_default(),
        },
        we_lacked: e.map(|e| e.we_lacked).unwrap_or(0),
        rejected: e.map(|e| e.rejected).unwrap_or(0),
        last_pull: e.and_then(|e| e.last_pull).and_then(ms),
        pull_error: e.and_then(|e| e.pull_error.clone()),
        last_push: e.and_then(|e| e.last_push).and_then(ms),
        push_error: e.and_then(|e| e.push_error.clone()),
        last_snapshot: e.and_then(|e| e.last_snapshot),
        via_relay: s.is_some_and(|s| s.relayed),
    }
}

/// The peer id at the end of a multiaddr (`…/p2p/<id>`), if any: the last one, which for a
/// circuit (`…/p2p/<relay>/p2p-circuit/p2p/<id>`) is the device beyond the relay.
fn peer_of(a: &Multiaddr) -> Option<PeerId> {
    a.iter()
        .filter_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// How others reach this node (`me`) at listen address `a`: `a/p2p/<me>`. A circuit's listen
/// address already ends in it.
pub(crate) fn own_addr(a: Multiaddr, me: PeerId) -> String {
    match a.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(_)) => a.to_string(),
        _ => a.with(libp2p::multiaddr::Protocol::P2p(me)).to_string(),
    }
}

fn is_member<H: Host>(node: &H, peer: &PeerId) -> bool {
    net::public_key_of(peer).is_some_and(|pk| node.is_member_device(&pk))
}

fn is_revoked<H: Host>(node: &H, peer: &PeerId) -> bool {
    net::public_key_of(peer).is_some_and(|pk| node.is_revoked_device(&pk))
}

/// How long a revoked device stays connected after its revocation, so the change that revokes
/// it reaches it (its UI then says so).
const REVOKED_GRACE: Duration = Duration::from_secs(2);

/// Disconnects devices as soon as they are revoked (after [`REVOKED_GRACE`]).
async fn revocation_loop<H: Host>(node: H, net: NetHandle) {
    let mut events = node.subscribe();
    loop {
        match events.recv().await {
            Ok(crate::model::Event::ShopChanged { doc }) if doc == "members" => {}
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        let revoked: Vec<PeerId> = net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.connected && is_revoked(&node, &p.peer))
            .map(|p| p.peer)
            .collect();
        if revoked.is_empty() {
            continue;
        }
        let (node, net) = (node.clone(), net.clone());
        tokio::spawn(async move {
            // Hand it the owners' signed revocation directly: the change that revoked it also
            // rotated the gossip key, so gossip may already have moved to a topic it is not on.
            for peer in &revoked {
                offer_members(&node, &net, *peer).await;
            }
            tokio::time::sleep(REVOKED_GRACE).await;
            for peer in revoked {
                tracing::warn!(%peer, "disconnecting a revoked device");
                net.block(peer).await;
            }
        });
    }
}

/// How long a peer that is not a member may stay connected: long enough to redeem an invite
/// (then it may stay for [`JOINING_WINDOW`]); after that it is disconnected, so a stranger on
/// the Wi-Fi, another shop's device or a revoked device holds no connection to the shop.
pub const STRANGER_GRACE: Duration = Duration::from_secs(15);

/// Offers `peer` every `members` change: to a revoked device, the proof of its revocation
/// (signed by an owner; it verifies them like any change, so a rogue peer cannot fake them);
/// to the shop's tills after a gossip key rotation, the rotation, so they move to the new key
/// now rather than at their next pull.
async fn offer_members<H: Host>(node: &H, net: &NetHandle, peer: PeerId) {
    let Ok(proof) = node.doc_envelopes("members") else {
        return;
    };
    for chunk in proof.chunks(sync::ENVELOPE_BATCH) {
        let req = SyncRequest::Offer(chunk.to_vec());
        if let Err(e) = ask(net, node, peer, &req).await {
            tracing::debug!(%peer, "could not tell a revoked device: {e}");
            return;
        }
    }
}

/// Longest the one pull from a revoked device that reconnects may take (see
/// [`collect_revoked_sales`]).
const REVOKED_PULL: Duration = Duration::from_secs(60);

/// Pulls once from a revoked device that reconnects, before it is told and refused: a till
/// revoked while switched off may have sold since, and those sales must reach the owners
/// (`domain::revoked_sales`) instead of dying with the connection. Everything fetched goes
/// through the verify-and-apply path: the till's sales go to quarantine (capped per device),
/// anything else it signed is refused, and what others signed is applied as from any peer.
/// Nothing is counted against it: it is refused right after anyway.
async fn collect_revoked_sales<H: Host>(node: &H, net: &NetHandle, peer: PeerId) {
    let remote = NetPeer::new(net.clone(), peer, node.clone());
    match tokio::time::timeout(REVOKED_PULL, node.pull_from(&remote)).await {
        Ok(Ok(r)) => tracing::info!(%peer, fetched = r.fetched, refused = r.rejected,
            "pulled once from a revoked device (its sales are kept for the owners)"),
        Ok(Err(e)) => tracing::debug!(%peer, "could not pull from a revoked device: {e}"),
        Err(_) => tracing::debug!(%peer, "the pull from a revoked device took too long"),
    }
}

/// How long a device that redeemed an invite may pull the shop before it is a member.
const JOINING_WINDOW: Duration = Duration::from_secs(10 * 60);

type Joining = Arc<Mutex<HashMap<PeerId, std::time::Instant>>>;

fn is_joining(joining: &Joining, peer: &PeerId) -> bool {
    let mut j = joining.lock().expect("joining lock");
    j.retain(|_, t| t.elapsed() < JOINING_WINDOW);
    j.contains_key(peer)
}

/// Gossip messages waiting for the importer; beyond this many, new ones are dropped.
const GOSSIP_QUEUE: usize = 4096;
/// Most gossip messages applied in one batch.
const GOSSIP_BATCH: usize = 512;

/// A gossip message from a member, waiting to be applied.
struct Gossiped {
    id: net::MessageId,
    source: PeerId,
    data: Vec<u8>,
}

/// Applies members' gossip in batches: everything queued while the last batch was applied
/// goes to the writer at once (one import per forwarding peer, all in one group commit), so
/// peers' changes under load cost one commit per batch, not one per message. Then each message
/// is judged as before: forwarded only if it verified, a gap pulled, a forgery struck.
async fn import_gossip<H: Host>(
    node: H,
    net: NetHandle,
    peers: Peers,
    keys: Keys,
    mut queued: tokio::sync::mpsc::Receiver<Gossiped>,
) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < GOSSIP_BATCH {
            match queued.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut by_peer: HashMap<PeerId, Vec<(net::MessageId, Envelope)>> = HashMap::new();
        for Gossiped { id, source, data } in batch {
            let opened = keys.lock().expect("keys lock").open(&data);
            match opened.and_then(|data| Envelope::from_bytes(&data)) {
                Ok(env) => by_peer.entry(source).or_default().push((id, env)),
                Err(e) => {
                    tracing::warn!(peer = %source, "undecodable gossip: {e}");
                    node.metrics().rejected_with("malformed");
                    net.report(id, source, Acceptance::Reject).await;
                    strike_peer(&net, &peers, source).await;
                }
            }
        }
        let imports = by_peer.into_iter().map(|(source, messages)| {
            let node = node.clone();
            async move {
                let (ids, envs): (Vec<_>, Vec<_>) = messages.into_iter().unzip();
                let results = node.import(&source.to_string(), envs).await;
                (source, ids, results)
            }
        });
        for (source, ids, results) in futures::future::join_all(imports).await {
            let results = match results {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("could not apply gossiped changes: {e}");
                    for id in ids {
                        net.report(id, source, Acceptance::Ignore).await;
                    }
                    continue;
                }
            };
            let mut struck = 0;
            for (id, result) in ids.into_iter().zip(results) {
                let verdict = match result {
                    Ok(Applied::New(_)) | Ok(Applied::Duplicate(_)) => Acceptance::Accept,
                    Ok(Applied::Held(..)) => {
                        // A gap: an earlier change (or an admission) did not arrive by
                        // gossip. Fetch it now rather than at the next pull.
                        if gap_pull_due(&peers, source) {
                            spawn_pull(node.clone(), net.clone(), peers.clone(), source);
                        }
                        Acceptance::Ignore
                    }
                    // A document kind this version does not know, from a member: kept for a
                    // later version, neither forwarded nor held against the peer.
                    Ok(Applied::Kept(..)) => Acceptance::Ignore,
                    Err(e) => {
                        tracing::warn!(peer = %source, "rejected a gossiped change: {e}");
                        struck += 1;
                        Acceptance::Reject
                    }
                };
                net.report(id, source, verdict).await;
            }
            // One strike per refused message, as when they came one at a time.
            for _ in 0..struck {
                strike_peer(&net, &peers, source).await;
            }
            if struck == 0 {
                touch(&peers, source);
            }
        }
    }
}

async fn event_loop<H: Host>(
    node: H,
    net: NetHandle,
    peers: Peers,
    keys: Keys,
    mut events: tokio::sync::mpsc::Receiver<NetEvent>,
) {
    let joining: Joining = Default::default();
    let (gossip, queued) = tokio::sync::mpsc::channel(GOSSIP_QUEUE);
    // Ends once this loop ends (its sender dropped) and the queue is drained.
    tokio::spawn(import_gossip(
        node.clone(),
        net.clone(),
        peers.clone(),
        keys,
        queued,
    ));
    while let Some(ev) = events.recv().await {
        match ev {
            NetEvent::Gossip { id, source, .. } if !is_member(&node, &source) => {
                // Gossip comes from members only (a stranger is disconnected after identify,
                // but may still be connected during its grace period).
                tracing::debug!(peer = %source, "gossip from a peer that is not a member");
                net.report(id, source, Acceptance::Reject).await;
                strike_peer(&net, &peers, source).await;
            }
            NetEvent::Gossip { id, source, data } => {
                // Applied by the importer, in batches: this loop goes on with connection
                // events meanwhile. A full queue drops the message (not forwarded, not held
                // against the peer): anti-entropy fetches it later.
                if let Err(e) = gossip.try_send(Gossiped { id, source, data }) {
                    let Gossiped { id, source, .. } = e.into_inner();
                    net.report(id, source, Acceptance::Ignore).await;
                }
            }
            NetEvent::Request { peer, data, reply } => {
                let node = node.clone();
                let net = net.clone();
                let peers = peers.clone();
                let joining = joining.clone();
                tokio::spawn(async move {
                    let allowed = is_member(&node, &peer) || is_joining(&joining, &peer);
                    let ours = shop_of(&node);
                    let Some(from) = net::public_key_of(&peer) else {
                        return;
                    };
                    let (answer, offered) = match sync::decode_request(&data) {
                        Ok(request) => {
                            // A joining device offers its admission here: pass it on to the
                            // relays, which are in no gossip topic (they drop duplicates).
                            let offered: Option<Vec<Arc<Vec<u8>>>> = match &request {
                                (shop, SyncRequest::Offer(envs))
                                    if allowed && *shop == ours && !is_relay(&node, &peer) =>
                                {
                                    Some(envs.iter().map(|b| Arc::new(b.clone())).collect())
                                }
                                _ => None,
                            };
                            let answer = node.answer_framed(ours, &from, allowed, request).await;
                            (answer, offered)
                        }
                        Err(e) => {
                            strike_peer(&net, &peers, peer).await;
                            (SyncResponse::Error(e.to_string()), None)
                        }
                    };
                    match (&answer, offered) {
                        (SyncResponse::Invite(_), _) => {
                            // It may pull the shop and offer its admission for a while.
                            joining
                                .lock()
                                .expect("joining lock")
                                .insert(peer, std::time::Instant::now());
                        }
                        (SyncResponse::Accepted(n), Some(batch)) if *n > 0 => {
                            offer_to_relays(&node, &net, &peers, &batch).await;
                        }
                        _ => {}
                    }
                    let _ = reply.send(sync::encode_response(ours, &answer));
                });
            }
            NetEvent::Connected { peer, addr } => {
                if is_revoked(&node, &peer) {
                    // It may have been switched off when it was revoked: take the sales it
                    // made since (they go to quarantine for the owners), hand it the owners'
                    // signed proof (the `members` changes), so it learns it and says so,
                    // then refuse it.
                    tracing::info!(%peer, "refused a connection from a revoked device");
                    let (node, net) = (node.clone(), net.clone());
                    tokio::spawn(async move {
                        collect_revoked_sales(&node, &net, peer).await;
                        offer_members(&node, &net, peer).await;
                        net.block(peer).await;
                    });
                    continue;
                }
                if !is_member(&node, &peer) {
                    let (node, net, joining) = (node.clone(), net.clone(), joining.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(STRANGER_GRACE).await;
                        if !is_member(&node, &peer) && !is_joining(&joining, &peer) {
                            tracing::info!(%peer, "disconnecting a peer that is not a member");
                            net.disconnect(peer).await;
                        }
                    });
                }
                {
                    let mut t = peers.lock().expect("peers lock");
                    let e = t.entry(peer).or_default();
                    e.connected = true;
                    e.last_contact = Some(SystemTime::now());
                    if !e.addrs.contains(&addr.to_string()) {
                        e.addrs.push(addr.to_string());
                    }
                }
                if is_member(&node, &peer) {
                    spawn_pull(node.clone(), net.clone(), peers.clone(), peer);
                }
                if is_relay(&node, &peer) && !is_circuit(&addr) {
                    // Reachable through the relay from now on: devices elsewhere (and new ones
                    // joining from elsewhere with an invite made here) dial this node there.
                    let net = net.clone();
                    tokio::spawn(async move {
                        if let Err(e) = net.listen_via_relay(peer).await {
                            tracing::debug!(%peer, "not listening through the relay: {e}");
                        }
                    });
                }
            }
            NetEvent::ListenAddrs(addrs) => {
                let me = net.local_peer_id();
                node.set_addrs(addrs.into_iter().map(|a| own_addr(a, me)).collect());
            }
            // Gossip in flight on a closed duplicate connection is lost: fetch it now rather
            // than at the next periodic pull.
            NetEvent::Resync { peer } => {
                if is_member(&node, &peer) {
                    spawn_pull(node.clone(), net.clone(), peers.clone(), peer);
                }
            }
            NetEvent::Disconnected { peer } => {
                if let Some(e) = peers.lock().expect("peers lock").get_mut(&peer) {
                    e.connected = false;
                }
            }
        }
    }
}

/// Why a pull failed, in words for the Sync screen. A peer that speaks another version of
/// the sync protocol ([`Error::UpdateNeeded`]) also marks this node as needing an update
/// (`GET /api/v1/status`, the UI).
fn pull_failure<H: Host>(node: &H, e: &Error) -> String {
    match e {
        Error::UpdateNeeded(_) => {
            let why = format!(
                "update needed: a device of the shop speaks another tillmesh sync protocol than \
                 this one ({}); update tillmesh on every device to the same version",
                sync::PROTOCOL
            );
            node.note_update_needed(why.clone());
            why
        }
        other => other.to_string(),
    }
}

/// At most one gap-triggered pull per peer per second.
fn gap_pull_due(peers: &Peers, peer: PeerId) -> bool {
    let mut t = peers.lock().expect("peers lock");
    let e = t.entry(peer).or_default();
    if e.gap_pull
        .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    {
        return false;
    }
    e.gap_pull = Some(std::time::Instant::now());
    true
}

fn touch(peers: &Peers, peer: PeerId) {
    if let Some(e) = peers.lock().expect("peers lock").get_mut(&peer) {
        e.last_contact = Some(SystemTime::now());
    }
}

async fn strike_peer(net: &NetHandle, peers: &Peers, peer: PeerId) {
    let out = {
        let mut t = peers.lock().expect("peers lock");
        let e = t.entry(peer).or_default();
        e.rejected += 1;
        e.strikes += 1;
        e.strikes >= MAX_STRIKES
    };
    if out {
        tracing::warn!(%peer, "disconnecting a peer that keeps sending invalid data");
        net.disconnect(peer).await;
    }
}

fn spawn_pull<H: Host>(node: H, net: NetHandle, peers: Peers, peer: PeerId) {
    {
        let mut t = peers.lock().expect("peers lock");
        let e = t.entry(peer).or_default();
        if e.pulling {
            return;
        }
        e.pulling = true;
    }
    /// Clears the peer's `pulling` however the pull ends (a panic included).
    struct Pulling(Peers, PeerId);
    impl Drop for Pulling {
        fn drop(&mut self) {
            let mut t = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            t.entry(self.1).or_default().pulling = false;
        }
    }
    tokio::spawn(async move {
        let remote = NetPeer::new(net.clone(), peer, node.clone());
        let pulled = {
            let _pulling = Pulling(peers.clone(), peer);
            node.pull_from(&remote).await
        };
        match pulled {
            Ok(r) => {
                {
                    let mut t = peers.lock().expect("peers lock");
                    let e = t.entry(peer).or_default();
                    e.we_lacked = r.fetched as u64;
                    e.last_contact = Some(SystemTime::now());
                    e.last_pull = e.last_contact;
                    e.pull_error = None;
                    e.rejected += r.rejected as u64;
                }
                if r.rejected > 0 {
                    strike_peer(&net, &peers, peer).await;
                }
                if r.fetched > 0 {
                    tracing::info!(%peer, applied = r.applied, held = r.held, "caught up");
                }
                if is_relay(&node, &peer) {
                    ask_snapshot_status(&node, &net, &peers, peer).await;
                }
            }
            Err(e) => {
                tracing::debug!(%peer, "pull failed: {e}");
                peers
                    .lock()
                    .expect("peers lock")
                    .entry(peer)
                    .or_default()
                    .pull_error = Some(pull_failure(&node, &e));
            }
        }
    });
}

async fn publish_loop<H: Host>(node: H, net: NetHandle, peers: Peers, keys: Keys) {
    let mut outbox = node.outbox();
    loop {
        let mut batch = match outbox.recv().await {
            Ok(bytes) => vec![bytes],
            // Missed some: peers get them by anti-entropy.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        while batch.len() < sync::ENVELOPE_BATCH {
            match outbox.try_recv() {
                Ok(bytes) => batch.push(bytes),
                Err(_) => break,
            }
        }
        // Without the key yet (a till admitted after the last rotation, until a peer hands it
        // over), relays and anti-entropy carry what this node made.
        let key = keys.lock().expect("keys lock").current;
        if let Some(key) = key {
            for bytes in &batch {
                if let Err(e) = net.publish(seal_gossip(&key.key, bytes)).await {
                    tracing::debug!("publish failed (anti-entropy will carry it): {e}");
                }
            }
        }
        offer_to_relays(&node, &net, &peers, &batch).await;
    }
}

/// How long gossip sealed with the key before a rotation is still opened, after this node
/// switched to the new one: a device that has not learnt the rotation yet publishes with the
/// old key until its next pull (at most [`PULL_INTERVAL`] later) brings the new `members`.
pub const OLD_KEY_GRACE: Duration = Duration::from_secs(5 * 60);

/// How often the key loop looks again (old keys expire, a missing key is asked for).
const KEY_TICK: Duration = Duration::from_secs(2);

/// The gossip keys this node seals with and opens (see [`crate::docs::gossip_keys`]).
#[derive(Default)]
struct KeyRing {
    /// What this node seals with; `None` until a till admitted after the last rotation gets
    /// the key from a member peer.
    current: Option<GossipKey>,
    /// Keys before a rotation, opened until the instant given.
    previous: Vec<(GossipKey, tokio::time::Instant)>,
}

type Keys = Arc<Mutex<KeyRing>>;

impl KeyRing {
    /// Opens a sealed gossip message with the current key or a previous one still in grace.
    fn open(&self, data: &[u8]) -> Result<Vec<u8>> {
        let now = tokio::time::Instant::now();
        let mut tried = self.current.iter().chain(
            self.previous
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(k, _)| k),
        );
        let first = tried
            .next()
            .ok_or_else(|| Error::invalid("gossip", "this device has no gossip key yet"))?;
        open_gossip(&first.key, data)
            .or_else(|e| tried.find_map(|k| open_gossip(&k.key, data).ok()).ok_or(e))
    }

    /// Takes `key` as the current one (the one before is opened for [`OLD_KEY_GRACE`]) and
    /// drops expired ones; returns the topics to publish on and to accept if they changed.
    fn update(&mut self, key: Option<GossipKey>) -> Option<(String, Vec<String>)> {
        let now = tokio::time::Instant::now();
        let before = self.previous.len();
        self.previous.retain(|(_, until)| *until > now);
        let mut changed = self.previous.len() != before;
        if let Some(k) = key
            && self.current != Some(k)
        {
            if let Some(old) = self.current.replace(k) {
                self.previous.push((old, now + OLD_KEY_GRACE));
            }
            changed = true;
        }
        changed.then(|| {
            (
                self.current.map(|k| k.topic()).unwrap_or_default(),
                self.previous.iter().map(|(k, _)| k.topic()).collect(),
            )
        })
    }
}

/// Follows the shop's gossip key: after every `members` change (a rotation) and every
/// [`KEY_TICK`], derives it again, moves the network to its topic, and lets keys past their
/// grace go. A till that cannot derive it (admitted after the last rotation) asks its
/// connected member tills for the current records' keys.
async fn key_loop<H: Host>(node: H, net: NetHandle, keys: Keys) {
    use crate::model::Event;
    use tokio::sync::broadcast::error::RecvError;
    let mut events = node.subscribe();
    let mut tick = tokio::time::interval(KEY_TICK);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::ShopChanged { doc }) if doc == "members" => {}
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        let derived = match node.gossip_key() {
            Ok(k) => k,
            Err(missing) => {
                ask_gossip_keys(&node, &net, &missing).await;
                node.gossip_key().ok().flatten()
            }
        };
        let (rotated, topics) = {
            let mut ring = keys.lock().expect("keys lock");
            let before = ring.current;
            let topics = ring.update(derived);
            (before.is_some() && ring.current != before, topics)
        };
        if let Some((publish, accept)) = topics {
            tracing::info!(topic = %publish, "gossip key changed");
            net.set_topics(publish, accept).await;
        }
        if rotated {
            // The tills still on the old key would not hear what is published on the new
            // topic until their next pull: hand them the rotation now.
            for peer in member_tills(&node, &net).await {
                let (node, net) = (node.clone(), net.clone());
                tokio::spawn(async move { offer_members(&node, &net, peer).await });
            }
        }
    }
}

/// Connected peers that are unrevoked tills of the shop.
async fn member_tills<H: Host>(node: &H, net: &NetHandle) -> Vec<PeerId> {
    net.peers()
        .await
        .into_iter()
        .filter(|p| p.connected && is_member(node, &p.peer) && !is_relay(node, &p.peer))
        .map(|p| p.peer)
        .collect()
}

/// Asks connected member tills for the keys of the current rotation records this device
/// cannot open (it was admitted after they were written), until one answers with all of them.
async fn ask_gossip_keys<H: Host>(node: &H, net: &NetHandle, missing: &[String]) {
    for peer in member_tills(node, net).await {
        match ask(net, node, peer, &SyncRequest::GossipKeys).await {
            Ok(SyncResponse::GossipKeys(keys)) => {
                let complete = missing.iter().all(|m| keys.iter().any(|(id, _)| id == m));
                if let Err(e) = node.store_gossip_keys(keys).await {
                    tracing::warn!("could not keep the gossip key: {e}");
                }
                if complete {
                    return;
                }
            }
            Ok(other) => tracing::debug!(%peer, "no gossip key from the peer: {other:?}"),
            Err(e) => tracing::debug!(%peer, "asking for the gossip key failed: {e}"),
        }
    }
}

/// Asks a relay when it last took a snapshot of the shop, for the peers table (an older relay
/// that does not know the question leaves it unknown).
async fn ask_snapshot_status<H: Host>(node: &H, net: &NetHandle, peers: &Peers, peer: PeerId) {
    let answer = ask(net, node, peer, &SyncRequest::SnapshotStatus).await;
    if let Ok(SyncResponse::SnapshotStatus(at)) = answer {
        peers
            .lock()
            .expect("peers lock")
            .entry(peer)
            .or_default()
            .last_snapshot = at;
    }
}

/// Whether `peer` is a relay the shop enrolled (a member device with the `relay` role).
fn is_relay<H: Host>(node: &H, peer: &PeerId) -> bool {
    let Some(pk) = net::public_key_of(peer) else {
        return false;
    };
    let pk = hex::encode(pk);
    node.devices()
        .unwrap_or_default()
        .iter()
        .any(|d| d.public_key == pk && d.role == crate::model::DeviceRole::Relay && !d.revoked)
}

/// A relay is in no gossip topic: what this node commits is offered to every connected relay
/// by request-response (the relay forwards it to the shop's other devices). Failures are left
/// to anti-entropy (the relay pulls on connect and every 10 s).
async fn offer_to_relays<H: Host>(
    node: &H,
    net: &NetHandle,
    peers: &Peers,
    batch: &[Arc<Vec<u8>>],
) {
    let relays: Vec<PeerId> = net
        .peers()
        .await
        .into_iter()
        .filter(|p| p.connected && is_relay(node, &p.peer))
        .map(|p| p.peer)
        .collect();
    if relays.is_empty() {
        return;
    }
    let shop = shop_of(node);
    let msg = sync::encode_request(
        shop,
        &SyncRequest::Offer(batch.iter().map(|b| b.to_vec()).collect()),
    );
    for peer in relays {
        let net = net.clone();
        let msg = msg.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            let failed = match net
                .request(peer, msg)
                .await
                .map(|b| sync::decode_response(&b, shop))
            {
                Ok(Ok(SyncResponse::Accepted(_))) => None,
                Ok(Ok(SyncResponse::Error(e))) => Some(format!("the relay refused: {e}")),
                Ok(Ok(_)) => Some("the relay answered something else".to_string()),
                Ok(Err(e)) => Some(format!("bad answer from the relay: {e}")),
                Err(e) => Some(format!("offering to the relay failed: {e}")),
            };
            if let Some(why) = &failed {
                tracing::debug!(%peer, "{why} (anti-entropy will carry the changes)");
            }
            let mut t = peers.lock().expect("peers lock");
            let e = t.entry(peer).or_default();
            if failed.is_none() {
                e.last_push = Some(SystemTime::now());
                e.last_contact = e.last_push;
            }
            e.push_error = failed;
        });
    }
}

async fn pull_loop<H: Host>(node: H, net: NetHandle, peers: Peers) {
    let mut tick = tokio::time::interval(PULL_INTERVAL);
    loop {
        tick.tick().await;
        let connected: Vec<PeerId> = net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.connected && is_member(&node, &p.peer))
            .map(|p| p.peer)
            .collect();
        for peer in connected {
            spawn_pull(node.clone(), net.clone(), peers.clone(), peer);
        }
    }
}

fn is_circuit(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// Live connections through a relay: every [`PULL_INTERVAL`], each device of the shop that is
/// not connected (not this node, not a relay, not revoked) is dialed through a connected relay,
/// at `<relay address>/p2p/<relay>/p2p-circuit/p2p/<device>`, where a device connected to the
/// same relay listens. Of two devices only the one with the lower peer id dials, as with mDNS,
/// so they do not open two circuits at once. Gossip then flows between them as on a LAN, and dcutr tries
/// to punch a direct connection, which replaces the circuit if it succeeds.
async fn circuit_loop<H: Host>(node: H, net: NetHandle) {
    use crate::model::DeviceRole;
    let me = net.local_peer_id();
    let mut tick = tokio::time::interval(PULL_INTERVAL);
    loop {
        tick.tick().await;
        let status = net.peers().await;
        let relays: Vec<&net::PeerStatus> = status
            .iter()
            .filter(|p| p.connected && !p.relayed && is_relay(&node, &p.peer))
            .collect();
        // Listening through each (again, if a reservation failed or lapsed; a relay already
        // listened through is left as it is).
        for r in &relays {
            if let Err(e) = net.listen_via_relay(r.peer).await {
                tracing::debug!(peer = %r.peer, "not listening through the relay: {e}");
            }
        }
        // A relay this node dialed: the address of that connection (first) is the relay's.
        let Some(via) = relays.first().and_then(|p| {
            let at: Multiaddr = p
                .addrs
                .first()?
                .iter()
                .filter(|x| !matches!(x, libp2p::multiaddr::Protocol::P2p(_)))
                .collect();
            Some(
                at.with(libp2p::multiaddr::Protocol::P2p(p.peer))
                    .with(libp2p::multiaddr::Protocol::P2pCircuit),
            )
        }) else {
            continue;
        };
        let connected: std::collections::HashSet<PeerId> = status
            .iter()
            .filter(|p| p.connected)
            .map(|p| p.peer)
            .collect();
        let devices = node.devices().unwrap_or_default();
        let targets = devices
            .iter()
            .filter(|d| !d.revoked && d.role != DeviceRole::Relay);
        for d in targets {
            let Some(peer) = <[u8; 32]>::try_from(hex::decode(&d.public_key).unwrap_or_default())
                .ok()
                .and_then(|pk| net::peer_id_from_public_key(&pk))
            else {
                continue;
            };
            if peer == me
                || connected.contains(&peer)
                || !crate::net::discovery::should_dial(&me.to_string(), &peer.to_string())
            {
                continue;
            }
            let addr = via.clone().with(libp2p::multiaddr::Protocol::P2p(peer));
            let net = net.clone();
            tokio::spawn(async move {
                if let Err(e) = net.connect(addr).await {
                    tracing::debug!(%peer, "no circuit to the device: {e}");
                }
            });
        }
    }
}

/// How long the peer with the higher id, which leaves dialing to the lower one
/// ([`crate::net::discovery::should_dial`]), waits for it before dialing itself. Short, so two tills
/// restarted a second apart are together again within seconds; long enough that on a LAN the
/// lower one has normally dialed by then (one connection, not two).
const DIAL_FALLBACK: Duration = Duration::from_secs(2);
/// Most fallback dials pending at once: anyone on the LAN can advertise peers of the shop's
/// hash, and each would otherwise cost a task and dials.
const MAX_FALLBACKS: usize = 64;

/// Dials what mDNS finds. The lower peer id dials at once and keeps the address (redialed with
/// backoff while the peer is away). The higher one dials too, once per report, if after
/// [`DIAL_FALLBACK`]
/// the two are still not connected: the lower one may have missed this peer's announcement
/// (before the `run` TXT value, mdns-sd reported nothing for a restart within a goodbye's
/// second: see [`crate::net::discovery`], "Restarts") or be waiting out a long backoff on a dead
/// address; before this fallback the pair then stayed apart until that redial or a restart.
/// A duplicate connection, if both dial, is closed by the network layer (one per peer
/// survives).
async fn discovery_loop(
    net: NetHandle,
    peers: Peers,
    mut found: tokio::sync::mpsc::Receiver<crate::net::discovery::Found>,
) {
    let me = net.local_peer_id().to_string();
    // Fallback dials in flight, per peer (aborted with this loop when the mesh stops).
    let mut fallbacks: HashMap<PeerId, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(f) = found.recv().await {
        while tasks.try_join_next().is_some() {}
        let Ok(peer) = f.peer_id.parse::<PeerId>() else {
            continue;
        };
        {
            let mut t = peers.lock().expect("peers lock");
            let e = t.entry(peer).or_default();
            e.found_by.get_or_insert(FoundBy::Mdns);
            e.addrs = f.addrs.clone();
        }
        let addrs: Vec<Multiaddr> = f
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .map(|addr| match peer_of(&addr) {
                None => addr.with(libp2p::multiaddr::Protocol::P2p(peer)),
                Some(_) => addr,
            })
            .collect();
        if !crate::net::discovery::should_dial(&me, &f.peer_id) {
            // Newer addresses replace a pending fallback's.
            if let Some(pending) = fallbacks.remove(&peer) {
                pending.abort();
            }
            fallbacks.retain(|_, h| !h.is_finished());
            if fallbacks.len() >= MAX_FALLBACKS {
                tracing::debug!(%peer, "mdns: too many fallback dials pending; not dialing");
                continue;
            }
            let net = net.clone();
            let handle = tasks.spawn(async move {
                tokio::time::sleep(DIAL_FALLBACK).await;
                let connected = net
                    .peers()
                    .await
                    .iter()
                    .any(|p| p.peer == peer && p.connected);
                if connected {
                    return;
                }
                tracing::debug!(%peer, "mdns: the peer did not dial; dialing it");
                for addr in addrs {
                    // Once, not kept: keeping the link up is the lower peer id's job.
                    if net.connect(addr).await.is_ok() {
                        break;
                    }
                }
            });
            fallbacks.insert(peer, handle);
            continue;
        }
        for addr in addrs {
            if net.dial(addr).await.is_ok() {
                break;
            }
        }
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

/// What joining a shop did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Joined {
    /// Shop id.
    pub shop_id: uuid::Uuid,
    /// Shop name.
    pub shop_name: String,
    /// This device's name.
    pub device_name: String,
    /// Its receipt prefix.
    pub receipt_prefix: String,
    /// This device's id.
    pub device_id: String,
}

/// File in the data dir listing peers to dial at start (one multiaddr per line): the address a
/// device joined through, so it reconnects without mDNS.
pub const PEERS_FILE: &str = "peers";

/// Adds `addr` to the data dir's [`PEERS_FILE`] (once).
pub fn remember_peer(data_dir: &std::path::Path, addr: &Multiaddr) -> Result<()> {
    let path = data_dir.join(PEERS_FILE);
    let mut lines = std::fs::read_to_string(&path).unwrap_or_default();
    let line = addr.to_string();
    if lines.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    if !lines.is_empty() && !lines.ends_with('\n') {
        lines.push('\n');
    }
    lines.push_str(&line);
    lines.push('\n');
    std::fs::write(&path, lines)
        .map_err(|e| Error::Store(format!("cannot write {}: {e}", path.display())))
}

pub(crate) async fn join_with<H: Host>(
    h: &H,
    ticket: &crate::docs::admission::Ticket,
    mdns_interfaces: Option<&[String]>,
) -> Result<(Joined, Multiaddr)> {
    join_with_role(h, ticket, mdns_interfaces, None).await
}

pub(crate) async fn join_with_role<H: Host>(
    h: &H,
    ticket: &crate::docs::admission::Ticket,
    mdns_interfaces: Option<&[String]>,
    role: Option<crate::model::DeviceRole>,
) -> Result<(Joined, Multiaddr)> {
    // A data dir restored from a backup (or a join cut short) has the shop's data but this
    // device is not a member: it may join — the same shop only, as `sync::join` pins the
    // invite's genesis.
    if h.status()?.device.is_some() {
        return Err(Error::NoShop(
            "this device already belongs to a shop".into(),
        ));
    }
    let mut candidates: Vec<Multiaddr> =
        ticket.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    // A short code carries no address: the shop is looked up by mDNS on these interfaces.
    let lookup = match (candidates.is_empty(), mdns_interfaces) {
        (false, _) => None,
        (true, Some(interfaces)) => Some(interfaces),
        (true, None) => {
            return Err(Error::invalid(
                "invite",
                "a short code is looked up by mDNS, which is off here: use the full invite string",
            ));
        }
    };
    let by_mdns = lookup.is_some();
    let topic = hex::encode(crate::identity::random_bytes::<16>());
    let listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("a valid multiaddr")];
    let (net, mut events) = net::start(net_config(h, listen, vec![], topic))
        .await
        .map_err(|e| Error::Internal(format!("network: {e}")))?;
    // Nobody is a member here yet: refuse requests, note connections.
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    let joiner = h.clone();
    let drain = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                NetEvent::Request { reply, .. } => {
                    let answer = SyncResponse::Error("joining".into());
                    let _ = reply.send(sync::encode_response(shop_of(&joiner), &answer));
                }
                NetEvent::Connected { peer, .. } => {
                    let _ = conn_tx.send(peer);
                }
                _ => {}
            }
        }
    });
    if let Some(interfaces) = lookup {
        match discover_for_join(&net, interfaces).await {
            Ok(c) => candidates = c,
            Err(e) => return finish(net, drain, Err(e)).await,
        }
    }
    let mut last_err = Error::Unreachable(
        "the device that made the invite did not answer: is it running and on this network?".into(),
    );
    let mut outcome = None;
    // Devices that answered the code already (each may be reachable at several addresses).
    let mut asked = std::collections::HashSet::new();
    for addr in candidates {
        let Some(peer) = peer_of(&addr) else { continue };
        if asked.contains(&peer) {
            continue;
        }
        if net.dial(addr.clone()).await.is_err() {
            continue;
        }
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(p) = conn_rx.recv().await {
                if p == peer {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !connected {
            continue;
        }
        let remote = NetPeer::new(net.clone(), peer, h.clone());
        let answer = sync::join_as(h, &remote, &ticket.code, role).await;
        if matches!(&answer, Ok(_) | Err(Error::Invalid { .. })) {
            asked.insert(peer);
        }
        match answer {
            Ok(invite) => {
                let status = match h.status() {
                    Ok(s) => s,
                    Err(e) => return finish(net, drain, Err(e)).await,
                };
                outcome = Some((
                    Joined {
                        shop_id: status.shop_id.unwrap_or_default(),
                        shop_name: status.shop_name.unwrap_or_default(),
                        device_id: h.device_id().to_string(),
                        device_name: invite.cert().name.clone(),
                        receipt_prefix: invite.cert().receipt_prefix.clone(),
                    },
                    addr,
                ));
                break;
            }
            // It did not prove it made the code (another device of the shop, or a rogue that
            // answered mDNS; it got nothing it can use): the one that made it may be next.
            Err(e @ Error::Invalid { .. })
                if by_mdns && e.to_string() == crate::domain::commands::UNKNOWN_INVITE =>
            {
                last_err = e
            }
            Err(e @ Error::Invalid { .. }) => return finish(net, drain, Err(e)).await,
            Err(e) => last_err = e,
        }
    }
    match outcome {
        Some(o) => finish(net, drain, Ok(o)).await,
        None => finish(net, drain, Err(last_err)).await,
    }
}

async fn finish<T>(net: NetHandle, drain: JoinHandle<()>, r: Result<T>) -> Result<T> {
    net.shutdown().await;
    drain.abort();
    // Wait until the task is gone: it holds a handle to the node, whose store stays open (and
    // locked) until the last handle is dropped — `tillmesh join` and a node started on the
    // same data dir right after it would otherwise race for the file.
    let _ = drain.await;
    r
}

/// How long a short-code join keeps listening for more devices after the first one answered.
const JOIN_GATHER: Duration = Duration::from_millis(1500);

/// A short code carries no address: look for shop devices on the LAN by mDNS.
async fn discover_for_join(net: &NetHandle, interfaces: &[String]) -> Result<Vec<Multiaddr>> {
    let cfg = crate::net::discovery::DiscoveryConfig {
        interfaces: interfaces.to_vec(),
        instance: net.local_peer_id().to_string(),
        shop_hash: crate::net::discovery::ANY_SHOP.into(),
        peer_id: net.local_peer_id().to_string(),
        addrs: Vec::new(),
        ui_port: 0,
    };
    let (d, mut found) = crate::net::discovery::Discovery::start(cfg)
        .map_err(|e| Error::Internal(format!("mDNS: {e}")))?;
    // Every device of every shop on the LAN answers; gather them for a moment after the first.
    let mut out: Vec<Multiaddr> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let _ = tokio::time::timeout_at(deadline, async {
        let mut gather_until: Option<tokio::time::Instant> = None;
        loop {
            let f = match gather_until {
                None => found.recv().await,
                Some(t) => match tokio::time::timeout_at(t, found.recv()).await {
                    Ok(f) => f,
                    Err(_) => break,
                },
            };
            let Some(f) = f else { break };
            let Ok(peer) = f.peer_id.parse::<PeerId>() else {
                continue;
            };
            for a in &f.addrs {
                let Ok(addr) = a.parse::<Multiaddr>() else {
                    continue;
                };
                let addr = if peer_of(&addr).is_none() {
                    addr.with(libp2p::multiaddr::Protocol::P2p(peer))
                } else {
                    addr
                };
                if !out.contains(&addr) {
                    out.push(addr);
                }
                gather_until.get_or_insert(tokio::time::Instant::now() + JOIN_GATHER);
            }
        }
    })
    .await;
    let _ = tokio::task::spawn_blocking(move || d.shutdown()).await;
    if out.is_empty() {
        return Err(Error::invalid(
            "invite",
            "no shop device found on this network; use the full invite string",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_gossip_opens_only_with_the_shop_key_and_is_deterministic() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let envelope = b"an encoded envelope".to_vec();
        let sealed = seal_gossip(&key, &envelope);
        assert_eq!(sealed.len(), envelope.len() + GOSSIP_SEAL_BYTES);
        assert!(
            !sealed
                .windows(envelope.len())
                .any(|w| w == envelope.as_slice()),
            "the envelope is not readable in the message"
        );
        assert_eq!(open_gossip(&key, &sealed).unwrap(), envelope);
        // The same envelope sealed twice is the same message (one gossipsub message id).
        assert_eq!(seal_gossip(&key, &envelope), sealed);
        assert_ne!(seal_gossip(&key, b"another envelope"), sealed);
        // Another shop's key, a flipped bit, a cut message, nothing at all: refused.
        assert!(open_gossip(&other, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open_gossip(&key, &flipped).is_err());
        assert!(open_gossip(&key, &sealed[..sealed.len() - 1]).is_err());
        assert!(open_gossip(&key, &[]).is_err());
        assert!(
            open_gossip(&key, &envelope).is_err(),
            "an unsealed envelope"
        );
    }
}
