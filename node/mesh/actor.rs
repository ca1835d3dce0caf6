//! The mesh actor: one task, one `select!`, owning the peer table's rules ([`PeerTable`]) and
//! every task the mesh starts (in one [`JoinSet`], aborted with it). It reacts to
//!
//! - the network's events (gossip is queued for the batched importer; requests are answered
//!   in tasks; connections pull, refuse revoked devices, give strangers a grace period),
//! - the node's `members` changes (revoked devices are disconnected, the gossip key follows
//!   rotations),
//! - two ticks: the key tick (old keys expire, a missing key is asked for) and the pull tick
//!   (anti-entropy with every connected member not backing off, circuits through relays),
//! - what its tasks report back ([`Cmd`] from the long-lived ones, [`Done`] when one ends).
//!
//! Time comes from the tokio clock and is passed into the table, which holds no clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::gossip::{self, Gossiped, KEY_TICK, Keys};
use super::peers::{AfterPull, PeerTable};
use super::wire::{
    self, NetPeer, collect_revoked_sales, is_circuit, is_member, is_relay, is_revoked,
    member_tills, offer_members, own_addr, shop_of,
};
use super::{FoundBy, Host, PULL_INTERVAL, STRANGER_GRACE};
use crate::error::Result;
use crate::model::{DeviceRole, Event};
use crate::net::{self, Acceptance, Multiaddr, NetEvent, NetHandle, PeerId};
use crate::sync::{self, PullReport, SyncRequest, SyncResponse};

/// How long a revoked device stays connected after its revocation, so the change that revokes
/// it reaches it (its UI then says so).
const REVOKED_GRACE: Duration = Duration::from_secs(2);

/// What the actor's long-lived tasks (the gossip importer and publisher, discovery) tell it.
pub(super) enum Cmd {
    /// A gap in this peer's gossip: pull from it (at most once a second).
    GapPull(PeerId),
    /// It sent invalid data.
    Strike(PeerId),
    /// It sent valid data.
    Touch(PeerId),
    /// An offer to this relay ended (why it failed, if it did).
    Pushed(PeerId, Option<String>),
    /// mDNS found this peer at these addresses.
    Mdns(PeerId, Vec<String>),
}

/// What a task of the actor ended with.
enum Done {
    /// A pull from the peer ended.
    Pulled(PeerId, Result<PullReport>),
    /// A request from the peer was answered.
    Answered(PeerId, Answered),
    /// A stranger's grace period is over.
    GraceOver(PeerId),
    /// A relay said when it last took a snapshot of the shop.
    SnapshotStatus(PeerId, Option<i64>),
    /// The gossip keys a till lacked were asked for: derive the key again.
    KeysAsked,
    /// An offer to a relay ended.
    Pushed(PeerId, Option<String>),
    /// Nothing to follow up.
    Nothing,
}

/// What answering a request did that the actor follows up.
enum Answered {
    /// Nothing more.
    Plain,
    /// The request did not decode: a strike.
    Malformed,
    /// A joining device's admission was accepted: pass it on to the relays.
    Offered(Vec<Arc<Vec<u8>>>),
}

/// The mesh's state while it runs.
pub(super) struct Actor<H: Host> {
    node: H,
    net: NetHandle,
    /// Shared with [`super::Mesh`] for reading (`GET /api/v1/peers`) and static peers.
    peers: Arc<Mutex<PeerTable>>,
    keys: Keys,
    tasks: JoinSet<Done>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    /// A task is asking member tills for gossip keys this device lacks (one at a time).
    asking_keys: bool,
}

impl<H: Host> Actor<H> {
    pub(super) fn new(node: H, net: NetHandle, peers: Arc<Mutex<PeerTable>>, keys: Keys) -> Self {
        let (cmd_tx, cmds) = mpsc::unbounded_channel();
        Actor {
            node,
            net,
            peers,
            keys,
            tasks: JoinSet::new(),
            cmds,
            cmd_tx,
            asking_keys: false,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs until the network's events end (the mesh stops: the actor is aborted, and its
    /// tasks with it).
    pub(super) async fn run(
        mut self,
        mut events: mpsc::Receiver<NetEvent>,
        found: Option<mpsc::Receiver<crate::net::discovery::Found>>,
    ) {
        let (gossip, queued) = mpsc::channel(gossip::GOSSIP_QUEUE);
        let (node, net, keys) = (self.node.clone(), self.net.clone(), self.keys.clone());
        let cmds = self.cmd_tx.clone();
        self.tasks.spawn(async move {
            gossip::import(node, net, keys, cmds, queued).await;
            Done::Nothing
        });
        let (node, net, keys) = (self.node.clone(), self.net.clone(), self.keys.clone());
        let cmds = self.cmd_tx.clone();
        self.tasks.spawn(async move {
            gossip::publish(node, net, keys, cmds).await;
            Done::Nothing
        });
        if let Some(found) = found {
            let net = self.net.clone();
            let cmds = self.cmd_tx.clone();
            self.tasks.spawn(async move {
                super::discovery::dial_found(net, cmds, found).await;
                Done::Nothing
            });
        }
        let mut shop = self.node.subscribe();
        let mut key_tick = tokio::time::interval(KEY_TICK);
        let mut pull_tick = tokio::time::interval(PULL_INTERVAL);
        loop {
            use tokio::sync::broadcast::error::RecvError;
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev, &gossip).await,
                    None => return,
                },
                ev = shop.recv() => match ev {
                    Ok(Event::ShopChanged { doc }) if doc == "members" => {
                        self.on_members_changed().await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.on_members_changed().await,
                    Err(RecvError::Closed) => return,
                },
                _ = key_tick.tick() => self.follow_gossip_key(false).await,
                _ = pull_tick.tick() => self.on_pull_tick().await,
                Some(cmd) = self.cmds.recv() => self.on_cmd(cmd).await,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(done) => self.on_done(done).await,
                    Err(e) if e.is_panic() => tracing::error!("a mesh task panicked: {e}"),
                    Err(_) => {}
                },
            }
        }
    }

    async fn on_net_event(&mut self, ev: NetEvent, gossip: &mpsc::Sender<Gossiped>) {
        let node = &self.node;
        match ev {
            NetEvent::Gossip { id, source, .. } if !is_member(node, &source) => {
                // Gossip comes from members only (a stranger is disconnected after identify,
                // but may still be connected during its grace period).
                tracing::debug!(peer = %source, "gossip from a peer that is not a member");
                self.net.report(id, source, Acceptance::Reject).await;
                self.strike(source).await;
            }
            NetEvent::Gossip { id, source, data } => {
                // Applied by the importer, in batches: the actor goes on with connection
                // events meanwhile. A full queue drops the message (not forwarded, not held
                // against the peer): anti-entropy fetches it later.
                if let Err(e) = gossip.try_send(Gossiped { id, source, data }) {
                    let Gossiped { id, source, .. } = e.into_inner();
                    self.net.report(id, source, Acceptance::Ignore).await;
                }
            }
            NetEvent::Request { peer, data, reply } => {
                let allowed =
                    is_member(node, &peer) || self.table().is_joining(&peer, Instant::now());
                let relay = is_relay(node, &peer);
                let node = node.clone();
                let peers = self.peers.clone();
                self.tasks.spawn(async move {
                    let ours = shop_of(&node);
                    let Some(from) = net::public_key_of(&peer) else {
                        return Done::Nothing;
                    };
                    let (answer, done) = match sync::decode_request(&data) {
                        Ok(request) => {
                            // A joining device offers its admission here: pass it on to the
                            // relays, which are in no gossip topic (they drop duplicates).
                            let offered: Option<Vec<Arc<Vec<u8>>>> = match &request {
                                (shop, SyncRequest::Offer(envs))
                                    if allowed && *shop == ours && !relay =>
                                {
                                    Some(envs.iter().map(|b| Arc::new(b.clone())).collect())
                                }
                                _ => None,
                            };
                            let answer = node.answer_framed(ours, &from, allowed, request).await;
                            let done = match (&answer, offered) {
                                (SyncResponse::Invite(_), _) => {
                                    // It may pull the shop and offer its admission for a
                                    // while, from its next request on: marked before the
                                    // answer leaves.
                                    peers
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .joined(peer, Instant::now());
                                    Answered::Plain
                                }
                                (SyncResponse::Accepted(n), Some(batch)) if *n > 0 => {
                                    Answered::Offered(batch)
                                }
                                _ => Answered::Plain,
                            };
                            (answer, done)
                        }
                        Err(e) => (
                            SyncResponse::Refused(sync::Refusal::of(&e)),
                            Answered::Malformed,
                        ),
                    };
                    let _ = reply.send(sync::encode_response(ours, &answer));
                    Done::Answered(peer, done)
                });
            }
            NetEvent::Connected { peer, addr } => self.on_connected(peer, addr),
            NetEvent::ListenAddrs(addrs) => {
                let me = self.net.local_peer_id();
                node.set_addrs(addrs.into_iter().map(|a| own_addr(a, me)).collect());
            }
            // Gossip in flight on a closed duplicate connection is lost: fetch it now rather
            // than at the next periodic pull.
            NetEvent::Resync { peer } => {
                if is_member(node, &peer) {
                    self.pull(peer);
                }
            }
            NetEvent::Disconnected { peer } => self.table().disconnected(peer),
        }
    }

    fn on_connected(&mut self, peer: PeerId, addr: Multiaddr) {
        let node = self.node.clone();
        if is_revoked(&node, &peer) {
            // It may have been switched off when it was revoked: take the sales it made since
            // (they go to quarantine for the owners), hand it the owners' signed proof (the
            // `members` changes), so it learns it and says so, then refuse it.
            tracing::info!(%peer, "refused a connection from a revoked device");
            let net = self.net.clone();
            self.tasks.spawn(async move {
                collect_revoked_sales(&node, &net, peer).await;
                offer_members(&node, &net, peer).await;
                net.block(peer).await;
                Done::Nothing
            });
            return;
        }
        if !is_member(&node, &peer) {
            self.tasks.spawn(async move {
                tokio::time::sleep(STRANGER_GRACE).await;
                Done::GraceOver(peer)
            });
        }
        self.table()
            .connected(peer, addr.to_string(), SystemTime::now());
        if is_member(&node, &peer) {
            self.pull(peer);
        }
        if is_relay(&node, &peer) && !is_circuit(&addr) {
            // Reachable through the relay from now on: devices elsewhere (and new ones
            // joining from elsewhere with an invite made here) dial this node there.
            let net = self.net.clone();
            self.tasks.spawn(async move {
                if let Err(e) = net.listen_via_relay(peer).await {
                    tracing::debug!(%peer, "not listening through the relay: {e}");
                }
                Done::Nothing
            });
        }
    }

    /// `members` changed: devices revoked now are handed the proof and disconnected (after
    /// [`REVOKED_GRACE`]), and the gossip key follows a rotation.
    async fn on_members_changed(&mut self) {
        let revoked: Vec<PeerId> = self
            .net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.connected && is_revoked(&self.node, &p.peer))
            .map(|p| p.peer)
            .collect();
        if !revoked.is_empty() {
            let (node, net) = (self.node.clone(), self.net.clone());
            self.tasks.spawn(async move {
                // Hand it the owners' signed revocation directly: the change that revoked it
                // also rotated the gossip key, so gossip may already have moved to a topic it
                // is not on.
                for peer in &revoked {
                    offer_members(&node, &net, *peer).await;
                }
                tokio::time::sleep(REVOKED_GRACE).await;
                for peer in revoked {
                    tracing::warn!(%peer, "disconnecting a revoked device");
                    net.block(peer).await;
                }
                Done::Nothing
            });
        }
        self.follow_gossip_key(false).await;
    }

    /// Derives the shop's gossip key again, moves the network to its topic, and lets keys past
    /// their grace go. A till that cannot derive it (admitted after the last rotation) asks its
    /// connected member tills for the current records' keys (once per tick at most: then
    /// `asked` is true).
    async fn follow_gossip_key(&mut self, asked: bool) {
        let derived = match self.node.gossip_key() {
            Ok(k) => k,
            Err(missing) if !asked && !self.asking_keys => {
                self.asking_keys = true;
                let (node, net) = (self.node.clone(), self.net.clone());
                self.tasks.spawn(async move {
                    wire::ask_gossip_keys(&node, &net, &missing).await;
                    Done::KeysAsked
                });
                None
            }
            Err(_) => None,
        };
        let (rotated, topics) = {
            let mut ring = self.keys.lock().expect("keys lock");
            let before = ring.current;
            let topics = ring.update(derived);
            (before.is_some() && ring.current != before, topics)
        };
        if let Some((publish, accept)) = topics {
            tracing::info!(topic = %publish, "gossip key changed");
            self.net.set_topics(publish, accept).await;
        }
        if rotated {
            // The tills still on the old key would not hear what is published on the new
            // topic until their next pull: hand them the rotation now.
            for peer in member_tills(&self.node, &self.net).await {
                let (node, net) = (self.node.clone(), self.net.clone());
                self.tasks.spawn(async move {
                    offer_members(&node, &net, peer).await;
                    Done::Nothing
                });
            }
        }
    }

    /// Anti-entropy with every connected member not backing off, then circuits through
    /// relays to the shop's devices this node is not connected to.
    async fn on_pull_tick(&mut self) {
        let status = self.net.peers().await;
        let now = Instant::now();
        let due: Vec<PeerId> = {
            let table = self.table();
            status
                .iter()
                .filter(|p| p.connected && is_member(&self.node, &p.peer))
                .filter(|p| table.periodic_pull_due(&p.peer, now))
                .map(|p| p.peer)
                .collect()
        };
        for peer in due {
            self.pull(peer);
        }
        self.dial_circuits(&status).await;
    }

    /// Starts a pull from `peer` unless one is under way.
    fn pull(&mut self, peer: PeerId) {
        if !self.table().start_pull(peer) {
            return;
        }
        let remote = NetPeer::new(self.net.clone(), peer, self.node.clone());
        let node = self.node.clone();
        self.tasks.spawn(async move {
            let pulled = node.pull_from(&remote).await;
            Done::Pulled(peer, pulled)
        });
    }

    async fn strike(&mut self, peer: PeerId) {
        if self.table().strike(peer) {
            tracing::warn!(%peer, "disconnecting a peer that keeps sending invalid data");
            self.net.disconnect(peer).await;
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::GapPull(peer) => {
                if self.table().gap_pull_due(peer, Instant::now()) {
                    self.pull(peer);
                }
            }
            Cmd::Strike(peer) => self.strike(peer).await,
            Cmd::Touch(peer) => self.table().touch(peer, SystemTime::now()),
            Cmd::Pushed(peer, failed) => self.table().pushed(peer, failed, SystemTime::now()),
            Cmd::Mdns(peer, addrs) => self.table().found_by_mdns(peer, addrs),
        }
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Pulled(peer, result) => {
                let now = (SystemTime::now(), Instant::now());
                let outcome = result
                    .as_ref()
                    .map_err(|e| wire::pull_failure(&self.node, e));
                if let Err(why) = &outcome {
                    tracing::debug!(%peer, "pull failed: {why}");
                }
                let after = self.table().pull_ended(peer, outcome, now.0, now.1);
                if after == AfterPull::Strike {
                    self.strike(peer).await;
                }
                if let Ok(r) = &result {
                    if r.fetched > 0 {
                        tracing::info!(%peer, applied = r.applied, held = r.held, "caught up");
                    }
                    if is_relay(&self.node, &peer) {
                        let (node, net) = (self.node.clone(), self.net.clone());
                        self.tasks.spawn(async move {
                            match wire::ask_snapshot_status(&node, &net, peer).await {
                                Some(at) => Done::SnapshotStatus(peer, at),
                                None => Done::Nothing,
                            }
                        });
                    }
                }
            }
            Done::Answered(peer, answered) => match answered {
                Answered::Plain => {}
                Answered::Malformed => self.strike(peer).await,
                Answered::Offered(batch) => {
                    for (relay, msg) in gossip::relay_offers(&self.node, &self.net, &batch).await {
                        let net = self.net.clone();
                        let shop = shop_of(&self.node);
                        self.tasks.spawn(async move {
                            let (peer, failed) = wire::offer_to_relay(net, shop, relay, msg).await;
                            Done::Pushed(peer, failed)
                        });
                    }
                }
            },
            Done::GraceOver(peer) => {
                let joining = self.table().is_joining(&peer, Instant::now());
                if !is_member(&self.node, &peer) && !joining {
                    tracing::info!(%peer, "disconnecting a peer that is not a member");
                    self.net.disconnect(peer).await;
                }
            }
            Done::SnapshotStatus(peer, at) => self.table().snapshot_status(peer, at),
            Done::KeysAsked => {
                self.asking_keys = false;
                self.follow_gossip_key(true).await;
            }
            Done::Pushed(peer, failed) => self.table().pushed(peer, failed, SystemTime::now()),
            Done::Nothing => {}
        }
    }

    /// Live connections through a relay: each device of the shop that is not connected (not
    /// this node, not a relay, not revoked) is dialed through a connected relay, at
    /// `<relay address>/p2p/<relay>/p2p-circuit/p2p/<device>`, where a device connected to the
    /// same relay listens. Of two devices only the one with the lower peer id dials, as with
    /// mDNS, so they do not open two circuits at once. Gossip then flows between them as on a
    /// LAN, and dcutr tries to punch a direct connection, which replaces the circuit if it
    /// succeeds.
    async fn dial_circuits(&mut self, status: &[net::PeerStatus]) {
        let me = self.net.local_peer_id();
        let relays: Vec<&net::PeerStatus> = status
            .iter()
            .filter(|p| p.connected && !p.relayed && is_relay(&self.node, &p.peer))
            .collect();
        // Listening through each (again, if a reservation failed or lapsed; a relay already
        // listened through is left as it is).
        for r in &relays {
            if let Err(e) = self.net.listen_via_relay(r.peer).await {
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
            return;
        };
        let connected: std::collections::HashSet<PeerId> = status
            .iter()
            .filter(|p| p.connected)
            .map(|p| p.peer)
            .collect();
        let devices = self.node.devices().unwrap_or_default();
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
            let net = self.net.clone();
            self.tasks.spawn(async move {
                if let Err(e) = net.connect(addr).await {
                    tracing::debug!(%peer, "no circuit to the device: {e}");
                }
                Done::Nothing
            });
        }
    }
}

/// Marks `peer` as found by `by` in `table` (static peers at start, "add peer").
pub(super) fn found(table: &Mutex<PeerTable>, peer: PeerId, by: FoundBy) {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .found(peer, by);
}
