//! The task that owns the `Swarm`: it turns [`Command`]s from [`NetHandle`](super::NetHandle)s
//! into swarm calls, and swarm events into [`NetEvent`]s for the core.
//!
//! Answers that arrive later are matched by id: pending dials by connection id, pending
//! requests by outbound request id, and the core's answers to inbound requests are futures
//! polled alongside the swarm. The loop never waits on the core: events queue in an outbox
//! drained as the core reads, so a slow core cannot stall pings, dials or other replies.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, PublishError, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, ping};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use super::behaviour::{NodeBehaviour, NodeBehaviourEvent, REQUEST_TIMEOUT};
use super::peers::PeerBook;
use super::{Acceptance, DISCONNECT_QUIET_PERIOD, NetConfig, NetError, NetEvent, PeerStatus};

/// How often static peers, quiet periods and duplicate connections are looked at.
const TICK: Duration = Duration::from_millis(250);
/// A duplicate connection is closed this long after it appears, so whatever gossipsub queued
/// when the first connection came up (its subscription hello) is flushed first.
const DUPLICATE_GRACE: Duration = Duration::from_secs(1);
/// Gossip and requests beyond this many undelivered events are shed (gossip is reported
/// `Ignore`, a request's peer gets an error); anti-entropy catches up later.
const OUTBOX_LIMIT: usize = 4 * super::EVENT_CHANNEL_CAPACITY;
/// Time the shutdown allows for connections to close gracefully.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A request from a handle, with the `oneshot` its answer goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: RequestReply,
    },
    Dial {
        addr: Multiaddr,
        reply: DialReply,
    },
    Connect {
        addr: Multiaddr,
        reply: DialReply,
    },
    ListenViaRelay {
        relay: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Block {
        peer: PeerId,
        blocked: bool,
        reply: oneshot::Sender<()>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerStatus>>,
    },
    TopicPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    SetTopics {
        publish: String,
        accept: Vec<String>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

type DialReply = oneshot::Sender<Result<(), NetError>>;
type RequestReply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// The core's answer to one inbound request, or None if it dropped the reply or took too long.
type PendingAnswer = BoxFuture<'static, (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)>;

pub(crate) struct EventLoop {
    swarm: Swarm<NodeBehaviour>,
    local_peer_id: PeerId,
    /// The topic this node publishes on (its name empty: none).
    topic: IdentTopic,
    /// Older topics still subscribed to, whose messages are still taken (after a gossip key
    /// rotation, for a grace period the core decides).
    accept: Vec<IdentTopic>,
    max_request_bytes: usize,
    max_gossip_bytes: usize,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    /// Events the core has not taken yet, oldest first.
    outbox: VecDeque<NetEvent>,
    listeners: Vec<ListenerId>,
    /// Listeners through a relay (circuit-relay reservations), by relay.
    relay_listeners: HashMap<PeerId, ListenerId>,
    listen_addrs: Vec<Multiaddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    /// `NetHandle::dial` calls waiting for their connection, by its id.
    pending_dials: HashMap<ConnectionId, (Multiaddr, DialReply)>,
    /// `NetHandle::request` calls waiting for their response, by request id.
    pending_requests: HashMap<OutboundRequestId, (PeerId, RequestReply)>,
    pending_answers: FuturesUnordered<PendingAnswer>,
    peers: PeerBook,
    /// Peers closed on purpose, refused until the instant given.
    quiet: HashMap<PeerId, Instant>,
    /// Peers refused until unblocked (revoked devices, partitions an operator makes).
    blocked: std::collections::HashSet<PeerId>,
    /// Duplicate connections to close once their grace period is over.
    closing: Vec<(Instant, ConnectionId)>,
}

impl EventLoop {
    pub(crate) fn new(
        mut swarm: Swarm<NodeBehaviour>,
        cfg: &NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let topic = IdentTopic::new(cfg.topic.clone());
        // An empty topic joins none (a relay: it syncs by request-response only).
        if !cfg.topic.is_empty() {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&topic)
                .map_err(|e| NetError::Setup(format!("subscribing to the topic: {e}")))?;
        }
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            listeners.push(id);
        }
        let mut peers = PeerBook::default();
        let now = Instant::now();
        for addr in &cfg.static_peers {
            peers.add_static(addr.clone(), now);
        }
        let local_peer_id = *swarm.local_peer_id();
        info!(peer = %local_peer_id, "network starting");
        Ok(Self {
            swarm,
            local_peer_id,
            topic,
            accept: Vec::new(),
            max_request_bytes: cfg.max_request_bytes,
            max_gossip_bytes: cfg.max_gossip_bytes,
            commands,
            events,
            outbox: VecDeque::new(),
            listeners,
            relay_listeners: HashMap::new(),
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_answers: FuturesUnordered::new(),
            peers,
            quiet: HashMap::new(),
            blocked: Default::default(),
            closing: Vec::new(),
        })
    }

    /// Runs until a handle asks for shutdown or every handle is gone.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            self.flush_outbox();
            // An owned permit, so waiting for room in the channel borrows nothing of `self`.
            let events = self.events.clone();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                Some((channel, answer)) = self.pending_answers.next(), if !self.pending_answers.is_empty() => {
                    self.send_answer(channel, answer);
                }
                permit = events.reserve_owned(), if !self.outbox.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.outbox.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The core dropped its receiver: nobody listens any more.
                    Err(_) => self.outbox.clear(),
                },
                _ = tick.tick() => self.on_tick(),
            }
        };
        self.close().await;
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Closes listeners and connections, gives the connections a moment to close cleanly,
    /// then drops the swarm.
    async fn close(mut self) {
        info!(peer = %self.local_peer_id, "network shutting down");
        for id in std::mem::take(&mut self.listeners) {
            self.swarm.remove_listener(id);
        }
        for (_, id) in std::mem::take(&mut self.relay_listeners) {
            self.swarm.remove_listener(id);
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.swarm.connected_peers().next().is_some() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { reply } => {
                if self.listen_addrs.is_empty() && !self.listeners.is_empty() {
                    self.listen_waiters.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
            Command::Publish { data, reply } => {
                let _ = reply.send(self.publish(data));
            }
            Command::Request { peer, data, reply } => {
                if data.len() > self.max_request_bytes {
                    let _ = reply.send(Err(NetError::TooLarge {
                        size: data.len(),
                        max: self.max_request_bytes,
                    }));
                } else if peer == self.local_peer_id {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: "that is this node".into(),
                    }));
                } else {
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, data);
                    self.pending_requests.insert(id, (peer, reply));
                }
            }
            Command::Dial { addr, reply } => self.dial_command(addr, reply),
            Command::Connect { addr, reply } => {
                let opts = dial_opts(&addr, PeerCondition::DisconnectedAndNotDialing);
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        debug!(%addr, "connecting");
                        self.pending_dials.insert(id, (addr, reply));
                    }
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::ListenViaRelay { relay, reply } => {
                let _ = reply.send(self.listen_via_relay(relay));
            }
            Command::Report {
                id,
                source,
                acceptance,
            } => {
                let acceptance = match acceptance {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Reject => MessageAcceptance::Reject,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                };
                let known = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
                if !known {
                    debug!(message = %id, "reported on a message no longer held (validated too late?)");
                }
            }
            Command::Disconnect { peer, reply } => {
                info!(%peer, "disconnecting peer");
                self.quiet
                    .insert(peer, Instant::now() + DISCONNECT_QUIET_PERIOD);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(());
            }
            Command::Block {
                peer,
                blocked,
                reply,
            } => {
                if blocked {
                    info!(%peer, "blocking peer");
                    self.blocked.insert(peer);
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else if self.blocked.remove(&peer) {
                    info!(%peer, "unblocking peer");
                    self.quiet.remove(&peer);
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    self.peers.retry_now(&peer, Instant::now());
                }
                let _ = reply.send(());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers.statuses());
            }
            Command::TopicPeers { reply } => {
                let hash = self.topic.hash();
                let subscribed = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(peer, _)| *peer)
                    .filter(|peer| self.peers.is_connected(peer))
                    .collect();
                let _ = reply.send(subscribed);
            }
            Command::SetTopics {
                publish,
                accept,
                reply,
            } => {
                self.set_topics(publish, accept);
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; kept exhaustive for the compiler.
                let _ = reply.send(());
            }
        }
    }

    /// Every topic subscribed to (non-empty names).
    fn subscribed(&self) -> Vec<IdentTopic> {
        std::iter::once(&self.topic)
            .chain(&self.accept)
            .filter(|t| !t.hash().as_str().is_empty())
            .cloned()
            .collect()
    }

    /// Publishes on `publish` from now on and still takes messages on `accept`; subscribes to
    /// the new names and leaves the ones no longer listed.
    fn set_topics(&mut self, publish: String, accept: Vec<String>) {
        let before = self.subscribed();
        self.topic = IdentTopic::new(publish);
        self.accept = accept
            .into_iter()
            .filter(|t| *t != self.topic.hash().as_str())
            .map(IdentTopic::new)
            .collect();
        let after = self.subscribed();
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let has = |set: &[IdentTopic], t: &IdentTopic| set.iter().any(|s| s.hash() == t.hash());
        for t in before.iter().filter(|t| !has(&after, t)) {
            gossipsub.unsubscribe(t);
        }
        for t in after.iter().filter(|t| !has(&before, t)) {
            if let Err(e) = gossipsub.subscribe(t) {
                warn!(error = %e, "subscribing to a topic failed");
            }
        }
        info!(topic = %self.topic, accepting = self.accept.len(), "gossip topics set");
    }

    fn publish(&mut self, data: Vec<u8>) -> Result<(), NetError> {
        if self.topic.hash().as_str().is_empty() {
            debug!("no gossip topic yet; message left to anti-entropy");
            return Ok(());
        }
        if data.len() > self.max_gossip_bytes {
            return Err(NetError::TooLarge {
                size: data.len(),
                max: self.max_gossip_bytes,
            });
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), data)
        {
            Ok(id) => {
                trace!(message = %id, "published");
                Ok(())
            }
            Err(PublishError::NoPeersSubscribedToTopic) => {
                debug!("no peer subscribed yet; message left to anti-entropy");
                Ok(())
            }
            // Identical bytes were published recently; peers have them (or will pull them).
            Err(PublishError::Duplicate) => Ok(()),
            Err(e) => Err(NetError::Publish(e.to_string())),
        }
    }

    fn dial_command(&mut self, addr: Multiaddr, reply: DialReply) {
        let now = Instant::now();
        if self.peers.add_static(addr.clone(), now) {
            info!(%addr, "added static peer");
        }
        if self.peers.connected_static(&addr).is_some() {
            let _ = reply.send(Ok(()));
            return;
        }
        match self.start_dial(&addr, now) {
            Ok(Some(id)) => {
                self.pending_dials.insert(id, (addr, reply));
            }
            Ok(None) => {
                let _ = reply.send(Ok(()));
            }
            Err(reason) => {
                let _ = reply.send(Err(NetError::Dial { addr, reason }));
            }
        }
    }

    fn listen_via_relay(&mut self, relay: PeerId) -> Result<(), NetError> {
        if self.relay_listeners.contains_key(&relay) {
            return Ok(());
        }
        let Some(dialed) = self.peers.dialed_addr(&relay) else {
            return Err(NetError::Listen {
                addr: Multiaddr::empty().with(Protocol::P2p(relay)),
                reason: "no direct connection to it that this node dialed".into(),
            });
        };
        let mut addr: Multiaddr = dialed
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        addr = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                info!(%addr, "reserving a slot on the relay");
                self.relay_listeners.insert(relay, id);
                Ok(())
            }
            Err(e) => Err(NetError::Listen {
                addr,
                reason: e.to_string(),
            }),
        }
    }

    /// Dials `addr`, remembering the attempt in the peer book. Ok(None) when the peer named by
    /// the address is already connected.
    fn start_dial(
        &mut self,
        addr: &Multiaddr,
        now: Instant,
    ) -> Result<Option<ConnectionId>, String> {
        let opts = dial_opts(addr, PeerCondition::Disconnected);
        let id = opts.connection_id();
        self.peers.dial_started(addr, id);
        match self.swarm.dial(opts) {
            Ok(()) => {
                debug!(%addr, "dialing");
                Ok(Some(id))
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                self.peers.dial_failed(id, now);
                Ok(None)
            }
            Err(e) => {
                self.peers.dial_failed(id, now);
                Err(e.to_string())
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .quiet
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.quiet.remove(&peer);
            if !self.blocked.contains(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
        }

        let (due, later): (Vec<_>, Vec<_>) = self.closing.drain(..).partition(|(at, _)| *at <= now);
        self.closing = later;
        for (_, id) in due {
            debug!(connection = %id, "closing duplicate connection");
            self.swarm.close_connection(id);
        }

        for addr in self.peers.due_dials(now, |p| {
            self.quiet.contains_key(p) || self.blocked.contains(p)
        }) {
            if let Err(reason) = self.start_dial(&addr, now) {
                debug!(%addr, %reason, "static peer dial failed");
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if self.swarm.behaviour().relay.is_enabled() {
                    // The circuit relay tells clients where it is reachable.
                    self.swarm.add_external_address(address.clone());
                }
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                    self.emit(NetEvent::ListenAddrs(self.listen_addrs.clone()));
                }
                for waiter in self.listen_waiters.drain(..) {
                    let _ = waiter.send(self.listen_addrs.clone());
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.forget_listen_addrs(&[address]);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                addresses,
            } => {
                let through = self
                    .relay_listeners
                    .iter()
                    .find(|(_, l)| **l == listener_id)
                    .map(|(r, _)| *r);
                match (reason, through) {
                    (Err(e), Some(relay)) => {
                        info!(%relay, error = %e, "no longer listening through the relay")
                    }
                    (Err(e), None) => warn!(error = %e, "listener closed"),
                    (Ok(()), _) => {}
                }
                self.forget_listen_addrs(&addresses);
                self.relay_listeners.retain(|_, l| *l != listener_id);
                self.listeners.retain(|l| *l != listener_id);
                if self.listeners.is_empty() {
                    for waiter in self.listen_waiters.drain(..) {
                        let _ = waiter.send(self.listen_addrs.clone());
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let remote_addr = endpoint.get_remote_address().clone();
                debug!(peer = %peer_id, addr = %remote_addr, dialer = endpoint.is_dialer(), "connection established");
                let established = self.peers.connection_established(
                    &self.local_peer_id,
                    peer_id,
                    connection_id,
                    endpoint.is_dialer(),
                    remote_addr.clone(),
                    endpoint.is_relayed(),
                );
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                if established.first {
                    info!(peer = %peer_id, addr = %remote_addr, "peer connected");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .add_explicit_peer(&peer_id);
                    self.emit(NetEvent::Connected {
                        peer: peer_id,
                        addr: remote_addr,
                    });
                }
                let close_at = Instant::now() + DUPLICATE_GRACE;
                self.closing
                    .extend(established.close.into_iter().map(|id| (close_at, id)));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, cause = ?cause, "connection closed");
                self.closing.retain(|(_, id)| *id != connection_id);
                if self
                    .peers
                    .connection_closed(&peer_id, connection_id, Instant::now())
                {
                    info!(peer = %peer_id, "peer disconnected");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .remove_explicit_peer(&peer_id);
                    self.emit(NetEvent::Disconnected { peer: peer_id });
                } else if self.peers.is_connected(&peer_id) {
                    self.reannounce_subscription(peer_id);
                    self.emit(NetEvent::Resync { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(peer = ?peer_id, %error, "dial failed");
                self.peers.dial_failed(connection_id, Instant::now());
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial {
                        addr,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(addr = %send_back_addr, %error, "incoming connection failed");
            }
            _ => {}
        }
    }

    fn forget_listen_addrs(&mut self, gone: &[Multiaddr]) {
        let before = self.listen_addrs.len();
        self.listen_addrs.retain(|a| !gone.contains(a));
        if self.listen_addrs.len() != before {
            self.emit(NetEvent::ListenAddrs(self.listen_addrs.clone()));
        }
    }

    fn on_behaviour_event(&mut self, event: NodeBehaviourEvent) {
        match event {
            NodeBehaviourEvent::Blocked(never) => match never {},
            NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                trace!(peer = %peer_id, protocol = %info.protocol_version, agent = %info.agent_version, "identified");
                for addr in self.peers.record_listen_addrs(&peer_id, info.listen_addrs) {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            NodeBehaviourEvent::Identify(_) => {}
            NodeBehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => self.peers.record_rtt(&peer, rtt),
            NodeBehaviourEvent::Ping(ping::Event {
                peer,
                result: Err(e),
                ..
            }) => debug!(%peer, error = %e, "ping failed"),
            NodeBehaviourEvent::Gossipsub(event) => self.on_gossip_event(event),
            NodeBehaviourEvent::Sync(event) => self.on_sync_event(event),
            NodeBehaviourEvent::Relay(event) => debug!(?event, "circuit relay"),
            NodeBehaviourEvent::RelayClient(event) => debug!(?event, "circuit relay client"),
            NodeBehaviourEvent::Dcutr(event) => match event.result {
                Ok(connection) => {
                    info!(peer = %event.remote_peer_id, %connection, "hole punched: direct connection")
                }
                Err(e) => debug!(peer = %event.remote_peer_id, error = %e, "hole punch failed"),
            },
        }
    }

    fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.peers.seen(&propagation_source);
                let verdict = if message.data.len() > self.max_gossip_bytes {
                    warn!(peer = %propagation_source, size = message.data.len(), "oversized gossip rejected");
                    Some(MessageAcceptance::Reject)
                } else if !self.topic_is(&message.topic) {
                    Some(MessageAcceptance::Reject)
                } else if self.outbox_full() {
                    warn!(peer = %propagation_source, "core is behind; gossip message dropped");
                    Some(MessageAcceptance::Ignore)
                } else {
                    None
                };
                match verdict {
                    Some(verdict) => {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .report_message_validation_result(
                                &message_id,
                                &propagation_source,
                                verdict,
                            );
                    }
                    None => self.emit(NetEvent::Gossip {
                        id: message_id,
                        source: propagation_source,
                        data: message.data,
                    }),
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                debug!(peer = %peer_id, %topic, "peer subscribed");
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                debug!(peer = %peer_id, %topic, "peer unsubscribed");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                warn!(peer = %peer_id, ?failed_messages, "peer too slow for gossip");
            }
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.peers.seen(&peer);
                if self.outbox_full() {
                    warn!(%peer, "core is behind; sync request refused");
                    return; // Dropping the channel tells the peer.
                }
                let (reply, answer) = oneshot::channel();
                self.emit(NetEvent::Request {
                    peer,
                    data: request,
                    reply,
                });
                self.pending_answers.push(Box::pin(async move {
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT, answer).await;
                    (channel, answer.ok().and_then(Result::ok))
                }));
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.peers.seen(&peer);
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "sync request failed");
                if let Some((peer, reply)) = self.pending_requests.remove(&request_id) {
                    let error = match error {
                        OutboundFailure::Timeout => NetError::Timeout { peer },
                        OutboundFailure::UnsupportedProtocols => {
                            NetError::UnsupportedProtocol { peer }
                        }
                        other => NetError::Request {
                            peer,
                            reason: other.to_string(),
                        },
                    };
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn send_answer(&mut self, channel: ResponseChannel<Vec<u8>>, answer: Option<Vec<u8>>) {
        let Some(answer) = answer else {
            debug!("core gave no answer to a sync request");
            return; // Dropping the channel tells the peer.
        };
        if answer.len() > self.max_request_bytes {
            warn!(size = answer.len(), "sync response over the limit not sent");
            return;
        }
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, answer)
            .is_err()
        {
            debug!("sync response too late: the request timed out or its connection closed");
        }
    }

    /// After one of several connections to `peer` closed: sends our subscription to every
    /// peer again, and wakes the connection that stays.
    ///
    /// Gossipsub (0.50) queues what it sends to a peer in one queue shared by all connections
    /// to that peer, announces our subscription once (on the first connection), and only the
    /// connection that has an outbound stream open is woken when something is queued. If that
    /// connection is the one closed, the announcement may be lost with it, and what is queued
    /// next sits unsent until the surviving connection happens to be polled (the next ping).
    /// Unsubscribing and subscribing again re-sends the announcement; an identify push to the
    /// peer wakes the surviving connection, which then opens its own stream and drains the
    /// queue. Peers are all explicit, so there is no mesh to rebuild.
    fn reannounce_subscription(&mut self, peer: PeerId) {
        let topics = self.subscribed();
        if topics.is_empty() {
            return;
        }
        let behaviour = self.swarm.behaviour_mut();
        for topic in &topics {
            behaviour.gossipsub.unsubscribe(topic);
            if let Err(e) = behaviour.gossipsub.subscribe(topic) {
                warn!(error = %e, "re-subscribing to the topic failed");
            }
        }
        behaviour.identify.push(std::iter::once(peer));
    }

    /// Hands the core as many queued events as its channel has room for.
    fn flush_outbox(&mut self) {
        while let Some(event) = self.outbox.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.outbox.push_front(event);
                    return;
                }
                // The core dropped its receiver: nobody listens any more.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.outbox.clear();
                    return;
                }
            }
        }
    }

    fn topic_is(&self, topic: &TopicHash) -> bool {
        *topic == self.topic.hash() || self.accept.iter().any(|t| *topic == t.hash())
    }

    fn outbox_full(&self) -> bool {
        self.outbox.len() >= OUTBOX_LIMIT
    }

    fn emit(&mut self, event: NetEvent) {
        if self.events.is_closed() {
            return;
        }
        self.outbox.push_back(event);
    }
}

/// How to dial `addr`: the peer it names (its last `/p2p/`) under `condition`, or whoever
/// answers there.
fn dial_opts(addr: &Multiaddr, condition: PeerCondition) -> DialOpts {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => DialOpts::peer_id(peer)
            .addresses(vec![addr.clone()])
            .condition(condition)
            .build(),
        _ => DialOpts::unknown_peer_id().address(addr.clone()).build(),
    }
}
