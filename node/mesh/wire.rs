//! The mesh on the wire: a peer asked over request-response ([`NetPeer`], [`ask`]), who a
//! peer is (member, revoked, relay: one lookup in the shop's view, rebuilt when `members`
//! changes), and the requests the actor makes of peers (offers to relays and revoked devices,
//! gossip keys, snapshot status).

use std::time::Duration;

use super::{GOSSIP_SEAL_BYTES, Host};
use crate::error::{Error, Result};
use crate::model::DeviceRole;
use crate::net::{self, Multiaddr, NetConfig, NetHandle, PeerId};
use crate::sync::{self, SyncPeer, SyncRequest, SyncResponse};

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

/// The peer id at the end of a multiaddr (`…/p2p/<id>`), if any: the last one, which for a
/// circuit (`…/p2p/<relay>/p2p-circuit/p2p/<id>`) is the device beyond the relay.
pub(super) fn peer_of(a: &Multiaddr) -> Option<PeerId> {
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

pub(super) fn is_circuit(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// The shop's device `peer` is, if it is one: its role and whether it is revoked.
fn device<H: Host>(node: &H, peer: &PeerId) -> Option<(DeviceRole, bool)> {
    net::public_key_of(peer).and_then(|pk| node.device_role(&pk))
}

/// Whether `peer` is an unrevoked device of the shop.
pub(super) fn is_member<H: Host>(node: &H, peer: &PeerId) -> bool {
    net::public_key_of(peer).is_some_and(|pk| node.is_member_device(&pk))
}

/// Whether `peer` is a device of the shop that an owner revoked.
pub(super) fn is_revoked<H: Host>(node: &H, peer: &PeerId) -> bool {
    device(node, peer).is_some_and(|(_, revoked)| revoked)
}

/// Whether `peer` is a relay the shop enrolled (an unrevoked member device with the `relay`
/// role).
pub(super) fn is_relay<H: Host>(node: &H, peer: &PeerId) -> bool {
    device(node, peer) == Some((DeviceRole::Relay, false))
}

/// Offers `peer` every `members` change: to a revoked device, the proof of its revocation
/// (signed by an owner; it verifies them like any change, so a rogue peer cannot fake them);
/// to the shop's tills after a gossip key rotation, the rotation, so they move to the new key
/// now rather than at their next pull.
pub(super) async fn offer_members<H: Host>(node: &H, net: &NetHandle, peer: PeerId) {
    let Ok(proof) = node.doc_envelopes("members") else {
        return;
    };
    for chunk in proof.chunks(sync::ENVELOPE_BATCH) {
        let req = SyncRequest::Offer(chunk.to_vec());
        if let Err(e) = ask(net, node, peer, &req).await {
            tracing::debug!(%peer, "could not hand the members changes over: {e}");
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
pub(super) async fn collect_revoked_sales<H: Host>(node: &H, net: &NetHandle, peer: PeerId) {
    let remote = NetPeer::new(net.clone(), peer, node.clone());
    match tokio::time::timeout(REVOKED_PULL, node.pull_from(&remote)).await {
        Ok(Ok(r)) => tracing::info!(%peer, fetched = r.fetched, refused = r.rejected,
            "pulled once from a revoked device (its sales are kept for the owners)"),
        Ok(Err(e)) => tracing::debug!(%peer, "could not pull from a revoked device: {e}"),
        Err(_) => tracing::debug!(%peer, "the pull from a revoked device took too long"),
    }
}

/// Offers a framed batch (`msg`) to a relay, which is in no gossip topic (it forwards what it
/// takes to the shop's other devices). Returns why it failed, if it did; anti-entropy carries
/// the changes then (the relay pulls on connect and every 10 s).
pub(super) async fn offer_to_relay(
    net: NetHandle,
    shop: Option<sync::Hash32>,
    peer: PeerId,
    msg: Vec<u8>,
) -> (PeerId, Option<String>) {
    let failed = match net
        .request(peer, msg)
        .await
        .map(|b| sync::decode_response(&b, shop))
    {
        Ok(Ok(SyncResponse::Accepted(_))) => None,
        Ok(Ok(SyncResponse::Refused(e))) => Some(format!("the relay refused: {e}")),
        Ok(Ok(_)) => Some("the relay answered something else".to_string()),
        Ok(Err(e)) => Some(format!("bad answer from the relay: {e}")),
        Err(e) => Some(format!("offering to the relay failed: {e}")),
    };
    if let Some(why) = &failed {
        tracing::debug!(%peer, "{why} (anti-entropy will carry the changes)");
    }
    (peer, failed)
}

/// Connected peers that are unrevoked tills of the shop.
pub(super) async fn member_tills<H: Host>(node: &H, net: &NetHandle) -> Vec<PeerId> {
    net.peers()
        .await
        .into_iter()
        .filter(|p| p.connected && is_member(node, &p.peer) && !is_relay(node, &p.peer))
        .map(|p| p.peer)
        .collect()
}

/// Asks connected member tills for the keys of the current rotation records this device
/// cannot open (it was admitted after they were written), until one answers with all of them.
pub(super) async fn ask_gossip_keys<H: Host>(node: &H, net: &NetHandle, missing: &[String]) {
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

/// Asks a relay when it last took a snapshot of the shop (`None`: unknown, or an older relay
/// that does not know the question).
pub(super) async fn ask_snapshot_status<H: Host>(
    node: &H,
    net: &NetHandle,
    peer: PeerId,
) -> Option<Option<i64>> {
    match ask(net, node, peer, &SyncRequest::SnapshotStatus).await {
        Ok(SyncResponse::SnapshotStatus(at)) => Some(at),
        _ => None,
    }
}

/// Why a pull failed, in words for the Sync screen. A peer that speaks another version of
/// the sync protocol ([`Error::UpdateNeeded`]) also marks this node as needing an update
/// (`GET /api/v1/status`, the UI).
pub(super) fn pull_failure<H: Host>(node: &H, e: &Error) -> String {
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
