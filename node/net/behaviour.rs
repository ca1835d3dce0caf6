//! The libp2p protocols a tillmesh node speaks, composed into one `NetworkBehaviour`, and the
//! `Swarm` built around them: TCP + Noise + Yamux (and circuits through a relay, as a
//! circuit-relay v2 client), identify, ping, gossipsub tuned for a LAN, the sync
//! request-response protocol, dcutr (hole punching to upgrade a relayed connection to a direct
//! one) and, on a relay, the circuit-relay v2 server.

use std::time::Duration;

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, dcutr, identify, noise, ping, relay, request_response, tcp, yamux,
};
use sha2::{Digest, Sha256};

use super::codec::FrameCodec;
use super::{NetConfig, NetError};

/// Identify protocol version: peers announcing another one are still identified; the core
/// decides membership.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tillmesh/id/1";
/// How long a request waits for its response (both sides enforce it).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections stay up while idle: sync peers are few and reconnecting costs a handshake.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The gossipsub heartbeat. Short, because a LAN is fast and the mesh is tiny.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);
/// Heartbeats an unvalidated message is kept for: the core must report on a message within
/// `HEARTBEAT * HISTORY_LENGTH` (10 s), or accepting it no longer forwards it.
const HISTORY_LENGTH: usize = 50;
/// Room for what gossipsub adds around the payload (topic, sequence number, signature, source)
/// on top of `max_gossip_bytes`.
const GOSSIP_FRAME_OVERHEAD: usize = 4 * 1024;
/// Message ids are remembered this long so a message is delivered to the core only once.
const DUPLICATE_CACHE_TIME: Duration = Duration::from_secs(120);
const PING_INTERVAL: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
pub(crate) struct NodeBehaviour {
    /// First, so a peer disconnected on purpose is refused before anything else runs.
    pub(crate) blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::Behaviour<FrameCodec>,
    /// A circuit-relay v2 server, on a relay only.
    pub(crate) relay: Toggle<relay::Behaviour>,
    /// The circuit-relay v2 client: reservations on a relay, circuits through it.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Direct connection upgrade through relay (hole punching).
    pub(crate) dcutr: dcutr::Behaviour,
}

/// The message id: the SHA-256 of the payload, so the same envelope published by two peers
/// (or republished) is one message.
pub(crate) fn message_id(data: &[u8]) -> MessageId {
    MessageId::new(&Sha256::digest(data))
}

pub(crate) fn gossipsub_config(max_gossip_bytes: usize) -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(HEARTBEAT)
        .heartbeat_initial_delay(HEARTBEAT / 2)
        .history_length(HISTORY_LENGTH)
        .history_gossip(3)
        .mesh_n(4)
        .mesh_n_low(2)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .flood_publish(true)
        .max_transmit_size(max_gossip_bytes + GOSSIP_FRAME_OVERHEAD)
        .duplicate_cache_time(DUPLICATE_CACHE_TIME)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| message_id(&message.data))
        .build()
        .map_err(|e| NetError::Setup(format!("gossipsub config: {e}")))
}

pub(crate) fn build_swarm(
    keypair: Keypair,
    cfg: &NetConfig,
) -> Result<Swarm<NodeBehaviour>, NetError> {
    let gossip_config = gossipsub_config(cfg.max_gossip_bytes)?;
    let sync_protocol = StreamProtocol::new(cfg.sync_protocol);
    let max_request_bytes = cfg.max_request_bytes;
    let relay_server = cfg.relay_server.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(format!("noise: {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Setup(format!("noise: {e}")))?
        .with_behaviour(
            |key,
             relay_client|
             -> Result<NodeBehaviour, Box<dyn std::error::Error + Send + Sync>> {
                let gossipsub = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                Ok(NodeBehaviour {
                    blocked: allow_block_list::Behaviour::default(),
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_PROTOCOL.to_string(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
                    gossipsub,
                    sync: request_response::Behaviour::with_codec(
                        FrameCodec::new(max_request_bytes),
                        [(sync_protocol, request_response::ProtocolSupport::Full)],
                        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
                    ),
                    relay: Toggle::from(relay_server.map(|rs| {
                        let mut c = relay::Config {
                            max_circuit_duration: rs.max_circuit_duration,
                            max_circuit_bytes: rs.max_circuit_bytes,
                            max_reservations: rs.max_reservations,
                            max_circuits: rs.max_reservations,
                            ..Default::default()
                        };
                        // Only the allowed may reserve a slot, so circuits lead only to them;
                        // anyone may open one (within libp2p's per-peer and per-IP rates), so
                        // that a device joining from elsewhere reaches the device that invited
                        // it (which accepts nothing but the invite from a stranger).
                        let allowed = rs.allowed;
                        c.reservation_rate_limiters
                            .push(Box::new(move |peer, _: &_, _| allowed(&peer)));
                        relay::Behaviour::new(key.public().to_peer_id(), c)
                    })),
                    relay_client,
                    dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                })
            },
        )
        .map_err(|e| NetError::Setup(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    let mut swarm = swarm;
    if let Some(server) = swarm.behaviour_mut().relay.as_mut() {
        // A relay is on a public address by definition: advertise the hop protocol at once
        // rather than after an external address is confirmed (nothing here confirms one).
        server.set_status(Some(relay::Status::Enable));
    }
    Ok(swarm)
}
