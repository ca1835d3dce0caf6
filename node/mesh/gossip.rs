//! Gossip: the keys it is sealed with ([`KeyRing`]), members' gossip applied in batches
//! ([`import`]) and what this node commits published ([`publish`]). Both run as tasks of the
//! mesh actor, and tell it what they saw ([`Cmd`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::actor::Cmd;
use super::wire::{is_relay, offer_to_relay};
use super::{Host, open_gossip, seal_gossip};
use crate::docs::Envelope;
use crate::docs::gossip_keys::GossipKey;
use crate::error::{Error, Result};
use crate::net::{self, Acceptance, NetHandle, PeerId};
use crate::replica::Applied;
use crate::sync::{self, SyncRequest};

/// Gossip messages waiting for the importer; beyond this many, new ones are dropped.
pub(super) const GOSSIP_QUEUE: usize = 4096;
/// Most gossip messages applied in one batch.
const GOSSIP_BATCH: usize = 512;

/// A gossip message from a member, waiting to be applied.
pub(super) struct Gossiped {
    pub id: net::MessageId,
    pub source: PeerId,
    pub data: Vec<u8>,
}

/// How long gossip sealed with the key before a rotation is still opened, after this node
/// switched to the new one: a device that has not learnt the rotation yet publishes with the
/// old key until its next pull (at most [`super::PULL_INTERVAL`] later) brings the new `members`.
pub const OLD_KEY_GRACE: Duration = Duration::from_secs(5 * 60);

/// How often the key loop looks again (old keys expire, a missing key is asked for).
pub(super) const KEY_TICK: Duration = Duration::from_secs(2);

/// The gossip keys this node seals with and opens (see [`crate::docs::gossip_keys`]).
#[derive(Default)]
pub(super) struct KeyRing {
    /// What this node seals with; `None` until a till admitted after the last rotation gets
    /// the key from a member peer.
    pub(super) current: Option<GossipKey>,
    /// Keys before a rotation, opened until the instant given.
    pub(super) previous: Vec<(GossipKey, tokio::time::Instant)>,
}

pub(super) type Keys = Arc<Mutex<KeyRing>>;

impl KeyRing {
    /// Opens a sealed gossip message with the current key or a previous one still in grace.
    pub(super) fn open(&self, data: &[u8]) -> Result<Vec<u8>> {
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
    pub(super) fn update(&mut self, key: Option<GossipKey>) -> Option<(String, Vec<String>)> {
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

/// Applies members' gossip in batches: everything queued while the last batch was applied
/// goes to the writer at once (one import per forwarding peer, all in one group commit), so
/// peers' changes under load cost one commit per batch, not one per message. Then each message
/// is judged as before: forwarded only if it verified; a gap, a forgery or valid data told to
/// the actor (a pull, a strike, a contact). Ends when the actor drops the queue's sender.
pub(super) async fn import<H: Host>(
    node: H,
    net: NetHandle,
    keys: Keys,
    cmds: mpsc::UnboundedSender<Cmd>,
    mut queued: mpsc::Receiver<Gossiped>,
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
                    let _ = cmds.send(Cmd::Strike(source));
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
                        let _ = cmds.send(Cmd::GapPull(source));
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
                let _ = cmds.send(Cmd::Strike(source));
            }
            if struck == 0 {
                let _ = cmds.send(Cmd::Touch(source));
            }
        }
    }
}

/// Publishes what this node commits: sealed on the shop's gossip topic, and offered to every
/// connected relay (in no gossip topic) by request-response. Ends when the node closes.
pub(super) async fn publish<H: Host>(
    node: H,
    net: NetHandle,
    keys: Keys,
    cmds: mpsc::UnboundedSender<Cmd>,
) {
    let mut outbox = node.outbox();
    // Offers in flight to relays (a slow relay holds up no publishing).
    let mut offers = JoinSet::new();
    loop {
        let received = tokio::select! {
            Some(done) = offers.join_next(), if !offers.is_empty() => {
                if let Ok((peer, failed)) = done {
                    let _ = cmds.send(Cmd::Pushed(peer, failed));
                }
                continue;
            }
            received = outbox.recv() => received,
        };
        let mut batch = match received {
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
        for (peer, msg) in relay_offers(&node, &net, &batch).await {
            offers.spawn(offer_to_relay(
                net.clone(),
                super::wire::shop_of(&node),
                peer,
                msg,
            ));
        }
    }
}

/// The offer of `batch` to each connected relay of the shop (peer, framed request).
pub(super) async fn relay_offers<H: Host>(
    node: &H,
    net: &NetHandle,
    batch: &[Arc<Vec<u8>>],
) -> Vec<(PeerId, Vec<u8>)> {
    let relays: Vec<PeerId> = net
        .peers()
        .await
        .into_iter()
        .filter(|p| p.connected && is_relay(node, &p.peer))
        .map(|p| p.peer)
        .collect();
    if relays.is_empty() {
        return Vec::new();
    }
    let msg = sync::encode_request(
        super::wire::shop_of(node),
        &SyncRequest::Offer(batch.iter().map(|b| b.to_vec()).collect()),
    );
    relays.into_iter().map(|p| (p, msg.clone())).collect()
}
