//! The libp2p network: how a node reaches the other devices of its shop.
//!
//! One task owns the libp2p `Swarm` (`event_loop`); everything else talks to it through a
//! cloneable [`NetHandle`], whose methods send a command carrying a `oneshot` for the answer
//! (the shape of rust-libp2p's file-sharing example). What the network hears arrives on the
//! [`NetEvent`] receiver returned by [`start`]. The loop stops on [`NetHandle::shutdown`] or
//! when every handle is dropped.
//!
//! On the wire (DESIGN §3, §5):
//! - TCP, Noise (the device key is the libp2p identity), Yamux; at most one connection per
//!   peer (duplicates from simultaneous dials are closed, see `net::peers`); idle connections stay
//!   up for an hour.
//! - identify (`/tillmesh/id/1`) and ping, for addresses and round-trip times.
//! - gossipsub on the shop's topic, in validation mode: a message reaches the core as
//!   [`NetEvent::Gossip`] and is forwarded to other peers only once the core reports it
//!   [`Acceptance::Accept`] (within 10 s: unvalidated messages are then dropped). Every
//!   connected peer is a gossipsub *explicit* peer, so publishing and forwarding reach every
//!   subscribed neighbour at once — no mesh to wait for, which suits a shop's handful of
//!   devices on one LAN.
//! - request-response on the sync protocol (`/tillmesh/sync/3`): opaque length-prefixed bytes
//!   (`codec`), both ways bounded by [`NetConfig::max_request_bytes`], 30 s timeout.
//! - optionally ([`NetConfig::relay_server`], the relay) a libp2p circuit-relay v2 server, its
//!   2 min / 128 KiB per-circuit defaults raised, open only to the peers the core allows.
//! - static peers (configured, or added through [`NetHandle::dial`]) are redialed with
//!   exponential backoff (1 s → 30 s) while away.
//!
//! Nothing a peer sends can panic the node: frames are size-checked before allocation and
//! oversized gossip is rejected before the core sees it. Whether a peer may stay (is it a
//! member of the shop?) is the core's call, through [`NetHandle::disconnect`].

mod behaviour;
mod codec;
pub mod discovery;
mod event_loop;
mod peers;

use std::time::{Duration, SystemTime};

use libp2p::identity::{self, Keypair};
use tokio::sync::{mpsc, oneshot};

pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};

use event_loop::{Command, EventLoop};

/// The request-response protocol the sync layer speaks.
pub const SYNC_PROTOCOL: &str = crate::sync::PROTOCOL;
/// Default bound on one sync request or response.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Default bound on one gossip message's payload.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024;
/// How many events wait for the core before gossip and requests are shed (connection events
/// are never dropped).
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// How long a peer closed with [`NetHandle::disconnect`] is refused and not redialed.
pub const DISCONNECT_QUIET_PERIOD: Duration = Duration::from_secs(5 * 60);

/// How to start the network.
#[derive(Clone)]
pub struct NetConfig {
    /// The device's ed25519 secret key bytes: the libp2p identity (PeerId) derives from it.
    pub device_secret: [u8; 32],
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/0`; tests use `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Gossipsub topic name (the core passes a hex hash of shop id + shop secret). Empty: join
    /// no topic (a relay, which syncs by request-response only).
    pub topic: String,
    /// Addresses to dial at start and keep dialing with backoff. An address may end in
    /// `/p2p/<peer id>`; without it, whoever answers at the address is accepted.
    pub static_peers: Vec<Multiaddr>,
    /// Protocol name for request-response; default [`SYNC_PROTOCOL`].
    pub sync_protocol: &'static str,
    /// Max bytes of one request or response; default [`MAX_REQUEST_BYTES`] (8 MiB).
    pub max_request_bytes: usize,
    /// Max bytes of one gossip message's payload; default [`MAX_GOSSIP_BYTES`] (1 MiB).
    pub max_gossip_bytes: usize,
    /// Offer a libp2p circuit-relay v2 server (a relay does); default none.
    pub relay_server: Option<RelayServer>,
}

/// A circuit-relay v2 server's limits and who may use it.
#[derive(Clone)]
pub struct RelayServer {
    /// Longest a relayed connection lasts (libp2p's default is 2 minutes).
    pub max_circuit_duration: Duration,
    /// Most bytes a relayed connection carries each way (libp2p's default is 128 KiB).
    pub max_circuit_bytes: u64,
    /// Reservations and circuits at once.
    pub max_reservations: usize,
    /// Whether a peer may reserve a slot (a relay: devices of its shops). Circuits lead only to
    /// peers holding a reservation; anyone may open one, within libp2p's per-peer and per-IP
    /// rate limits, so a device joining from elsewhere reaches the device that invited it.
    pub allowed: std::sync::Arc<dyn Fn(&PeerId) -> bool + Send + Sync>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("max_circuit_duration", &self.max_circuit_duration)
            .field("max_circuit_bytes", &self.max_circuit_bytes)
            .field("max_reservations", &self.max_reservations)
            .finish()
    }
}

impl NetConfig {
    /// A config with the defaults: no listen address, no static peers, the standard protocol
    /// and limits.
    pub fn new(device_secret: [u8; 32], topic: impl Into<String>) -> Self {
        Self {
            device_secret,
            listen: Vec::new(),
            topic: topic.into(),
            static_peers: Vec::new(),
            sync_protocol: SYNC_PROTOCOL,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_gossip_bytes: MAX_GOSSIP_BYTES,
            relay_server: None,
        }
    }
}

impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConfig")
            .field("device_secret", &"<redacted>")
            .field("listen", &self.listen)
            .field("topic", &self.topic)
            .field("static_peers", &self.static_peers)
            .field("sync_protocol", &self.sync_protocol)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_gossip_bytes", &self.max_gossip_bytes)
            .field("relay_server", &self.relay_server)
            .finish()
    }
}

/// The core's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it to other peers.
    Accept,
    /// Invalid (bad signature, forbidden write …): drop it and count it against the sender.
    Reject,
    /// Not forwarded, not held against anyone (e.g. already known, or can't judge yet).
    Ignore,
}

/// What the network tells the core.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message arrived (validation mode: it is NOT forwarded until the core calls
    /// [`NetHandle::report`] with `Accept`). `source` is the peer that *forwarded* it to us —
    /// the one to pass to `report` — not necessarily its author.
    Gossip {
        /// Gossipsub's id of the message (pass it back to [`NetHandle::report`]).
        id: MessageId,
        /// The peer that forwarded it.
        source: PeerId,
        /// The message: an encoded envelope.
        data: Vec<u8>,
    },
    /// A peer sent a request on the sync protocol; the core answers through `reply` (dropping
    /// it = error to the peer). Answers later than 30 s are discarded.
    Request {
        /// Who asks.
        peer: PeerId,
        /// The encoded request.
        data: Vec<u8>,
        /// Where the encoded answer goes.
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A connection to a peer is established (the first one), with the remote address.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The remote address of the connection.
        addr: Multiaddr,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// One of several connections to a peer closed (a duplicate from simultaneous dials):
    /// gossip in flight on it may be lost, so the core should pull from the peer.
    Resync {
        /// The peer.
        peer: PeerId,
    },
    /// The addresses this node listens on changed (a relay reservation was accepted or lost);
    /// all of them, as [`NetHandle::listen_addrs`] would answer.
    ListenAddrs(Vec<Multiaddr>),
}

/// What the network knows about one peer, for the Sync screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: PeerId,
    /// The address of the current connection first, then addresses the peer listens on.
    pub addrs: Vec<Multiaddr>,
    /// Connected now.
    pub connected: bool,
    /// Last ping round trip on the current connection.
    pub rtt: Option<Duration>,
    /// When the peer was last heard from.
    pub last_seen: Option<SystemTime>,
    /// Reached through a static address (configuration or [`NetHandle::dial`]).
    pub is_static: bool,
    /// Connected only through a relay's circuit (no direct connection).
    pub relayed: bool,
}

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The device secret is not a valid ed25519 key.
    #[error("the device secret is not a valid ed25519 key")]
    InvalidKey,
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The swarm could not be built.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// A message over its size limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Dialing failed.
    #[error("dialing {addr} failed: {reason}")]
    Dial {
        /// The address dialed.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A request got no answer in time.
    #[error("request to {peer} timed out")]
    Timeout {
        /// The peer asked.
        peer: PeerId,
    },
    /// The peer does not speak this node's sync protocol (another tillmesh version).
    #[error("{peer} does not speak this node's sync protocol")]
    UnsupportedProtocol {
        /// The peer asked.
        peer: PeerId,
    },
    /// A request failed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// Publishing on gossipsub failed.
    #[error("publishing failed: {0}")]
    Publish(String),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}

/// A cloneable handle on the network task. The task stops when every handle is dropped.
#[derive(Clone, Debug)]
pub struct NetHandle {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The bound listen addresses (port 0 resolved). Waits until at least one is bound; empty
    /// if the node listens on nothing or has stopped.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Publishes on the shop topic. Having no subscribed peer is not an error: the message is
    /// dropped (anti-entropy delivers it later).
    pub async fn publish(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.ask(|reply| Command::Publish { data, reply }).await?
    }

    /// Sends a sync request and waits for the response (at most 30 s). Dials the peer if it
    /// is not connected and an address is known.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let answer = self.ask(|reply| Command::Request { peer, data, reply });
        // The loop enforces the timeout; this only guards against a wedged loop.
        match tokio::time::timeout(behaviour::REQUEST_TIMEOUT + Duration::from_secs(5), answer)
            .await
        {
            Ok(result) => result?,
            Err(_) => Err(NetError::Timeout { peer }),
        }
    }

    /// Dials `addr` and waits until connected (or failed). The address is also remembered as
    /// a static peer and redialed with backoff whenever the peer is away.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Dials `addr` once and waits until connected (or failed), without remembering it: for
    /// addresses worth trying now, such as a circuit through a relay to a device of the shop.
    pub async fn connect(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|reply| Command::Connect { addr, reply }).await?
    }

    /// Listens through the connected relay `relay`: reserves a slot there, so that peers reach
    /// this node at `<relay address>/p2p/<relay>/p2p-circuit/p2p/<this node>` (reported by
    /// [`NetEvent::ListenAddrs`] once the relay accepts). Needs a connection to the relay
    /// that this node dialed (its address is the one others can dial too). Listening through a
    /// relay already listened through does nothing; the listener closes with the connection.
    pub async fn listen_via_relay(&self, relay: PeerId) -> Result<(), NetError> {
        self.ask(|reply| Command::ListenViaRelay { relay, reply })
            .await?
    }

    /// Reports the core's verdict on a gossip message (`source` as given in the event).
    pub async fn report(&self, id: MessageId, source: PeerId, acceptance: Acceptance) {
        let _ = self
            .commands
            .send(Command::Report {
                id,
                source,
                acceptance,
            })
            .await;
    }

    /// Closes every connection to `peer`, then refuses it and does not redial it for
    /// [`DISCONNECT_QUIET_PERIOD`].
    pub async fn disconnect(&self, peer: PeerId) {
        let _ = self.ask(|reply| Command::Disconnect { peer, reply }).await;
    }

    /// Closes every connection to `peer` and refuses it (both ways) until [`Self::unblock`].
    pub async fn block(&self, peer: PeerId) {
        let _ = self
            .ask(|reply| Command::Block {
                peer,
                blocked: true,
                reply,
            })
            .await;
    }

    /// Accepts `peer` again (a static peer is redialed at once).
    pub async fn unblock(&self, peer: PeerId) {
        let _ = self
            .ask(|reply| Command::Block {
                peer,
                blocked: false,
                reply,
            })
            .await;
    }

    /// Every peer known by id (connected, seen before, or static).
    pub async fn peers(&self) -> Vec<PeerStatus> {
        self.ask(|reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }

    /// Connected peers known to be subscribed to the shop topic: a message published now
    /// reaches them.
    pub async fn topic_peers(&self) -> Vec<PeerId> {
        self.ask(|reply| Command::TopicPeers { reply })
            .await
            .unwrap_or_default()
    }

    /// Publishes on `publish` from now on (empty: on no topic) and keeps taking messages on the
    /// `accept` topics too (a gossip key rotation's grace period); subscribes and unsubscribes
    /// to match.
    pub async fn set_topics(&self, publish: String, accept: Vec<String>) {
        let _ = self
            .ask(|reply| Command::SetTopics {
                publish,
                accept,
                reply,
            })
            .await;
    }

    /// Stops the network: closes connections and listeners; returns once they are closed.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        answer.await.map_err(|_| NetError::Stopped)
    }
}

/// The libp2p peer id of an ed25519 public key (None if the bytes are not a valid key).
pub fn peer_id_from_public_key(ed25519_public: &[u8; 32]) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(ed25519_public).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

/// The ed25519 public key inside a peer id (ed25519 peer ids inline the key as an identity
/// multihash); None for hashed or other-typed ids.
pub fn public_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    const IDENTITY_MULTIHASH: u64 = 0;
    let hash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if hash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(hash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// Starts the swarm task: listens, subscribes to the topic, dials the static peers. Returns
/// its handle and the event stream.
pub async fn start(cfg: NetConfig) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    let keypair =
        Keypair::ed25519_from_bytes(cfg.device_secret).map_err(|_| NetError::InvalidKey)?;
    let local_peer_id = keypair.public().to_peer_id();
    let swarm = behaviour::build_swarm(keypair, &cfg)?;
    let (commands, command_rx) = mpsc::channel(256);
    let (event_tx, events) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let event_loop = EventLoop::new(swarm, &cfg, command_rx, event_tx)?;
    tokio::spawn(event_loop.run());
    Ok((
        NetHandle {
            local_peer_id,
            commands,
        },
        events,
    ))
}
