//! The relay's driver and what it serves: requests of shop devices answered per shop, offers
//! applied and forwarded, pulls from connected devices, and the forwarders of what is committed
//! on a replica itself.

use std::collections::HashMap;

use tokio::task::JoinSet;
use uuid::Uuid;

use super::replicas::shops_of;
use super::{Forwarders, NOT_SERVED, PULL_INTERVAL, Replica, Shops};
use crate::NodeHandle;
use crate::docs::Envelope;
use crate::error::{Error, Result};
use crate::net::{Acceptance, NetEvent, NetHandle, PeerId};
use crate::replica::Applied;
use crate::sync::{self, Refusal, RefusalKind, SyncRequest, SyncResponse};

/// What a task of the relay's driver ended with.
pub(super) enum Done {
    /// A pull of one shop's replica from one of its devices ended.
    Pulled(Uuid, PeerId, Result<sync::PullReport>),
    /// Nothing to follow up.
    Nothing,
}

/// The relay's driver: one task, one `select!`, every task it starts in one [`JoinSet`]
/// (aborted with it), as the mesh's actor ([`crate::mesh`]). Per shop, the mesh's peer table
/// ([`crate::mesh::PeerTable`]) keeps its rules: one pull per device at a time (a device that
/// does not answer gathers no waiting pulls), and a backoff for a device whose pulls keep
/// failing.
pub(super) struct Driver {
    pub(super) net: NetHandle,
    pub(super) shops: Shops,
    pub(super) max_changes: u64,
    pub(super) tables: HashMap<Uuid, crate::mesh::PeerTable>,
    pub(super) tasks: JoinSet<Done>,
}

impl Driver {
    pub(super) async fn run(
        mut self,
        mut events: tokio::sync::mpsc::Receiver<NetEvent>,
        rescan: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.tasks.spawn(async move {
            rescan.await;
            Done::Nothing
        });
        let mut tick = tokio::time::interval(PULL_INTERVAL);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let now = std::time::Instant::now();
                    for p in self.net.peers().await.into_iter().filter(|p| p.connected) {
                        for (shop, r) in shops_of(&self.shops, &p.peer) {
                            let due = self
                                .tables
                                .get(&shop)
                                .is_none_or(|t| t.periodic_pull_due(&p.peer, now));
                            if due {
                                self.pull(shop, &r.handle, p.peer);
                            }
                        }
                    }
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(Done::Pulled(shop, peer, result)) => {
                        let outcome = result.as_ref().map_err(|e| e.to_string());
                        if let Err(e) = &outcome {
                            tracing::debug!(%shop, %peer, "pull failed: {e}");
                        }
                        self.tables.entry(shop).or_default().pull_ended(
                            peer,
                            outcome,
                            std::time::SystemTime::now(),
                            std::time::Instant::now(),
                        );
                    }
                    Ok(Done::Nothing) => {}
                    Err(e) if e.is_panic() => tracing::error!("a relay task panicked: {e}"),
                    Err(_) => {}
                },
            }
        }
    }

    async fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            // Subscribed to nothing: gossip is not for the relay.
            NetEvent::Gossip { id, source, .. } => {
                self.net.report(id, source, Acceptance::Ignore).await;
            }
            NetEvent::Request { peer, data, reply } => {
                let (net, shops, max_changes) =
                    (self.net.clone(), self.shops.clone(), self.max_changes);
                self.tasks.spawn(async move {
                    let (shop, answer) = answer(&net, &shops, max_changes, peer, &data).await;
                    let _ = reply.send(sync::encode_response(shop, &answer));
                    Done::Nothing
                });
            }
            NetEvent::Connected { peer, .. } | NetEvent::Resync { peer } => {
                for (shop, r) in shops_of(&self.shops, &peer) {
                    self.pull(shop, &r.handle, peer);
                }
            }
            NetEvent::Disconnected { .. } | NetEvent::ListenAddrs(_) => {}
        }
    }

    /// Pulls `shop`'s replica from `peer` unless a pull of it from that peer is under way or
    /// the replica is full.
    fn pull(&mut self, shop: Uuid, h: &NodeHandle, peer: PeerId) {
        if !self.tables.entry(shop).or_default().start_pull(peer) {
            return;
        }
        let (net, h, max_changes) = (self.net.clone(), h.clone(), self.max_changes);
        self.tasks.spawn(async move {
            let full = h.status().is_ok_and(|s| {
                s.envelopes + h.held_count().unwrap_or(0) + h.quarantined_count().unwrap_or(0)
                    >= max_changes
            });
            if full {
                tracing::warn!(%shop, "this shop's replica is full; not pulling");
                return Done::Pulled(
                    shop,
                    peer,
                    Err(Error::Conflict("this shop's replica on the relay is full".into())),
                );
            }
            let remote = crate::mesh::NetPeer::new(net, peer, h.clone());
            let result = h.pull_from(&remote).await;
            if let Ok(r) = &result
                && r.fetched > 0
            {
                tracing::info!(%shop, %peer, applied = r.applied, held = r.held, "caught up from a shop device");
            }
            Done::Pulled(shop, peer, result)
        });
    }
}

/// Answers one request of `peer` about the shop it names, if `peer` is a device of it; returns
/// the shop named (the answer names it back) and the answer.
async fn answer(
    net: &NetHandle,
    shops: &Shops,
    max_changes: u64,
    peer: PeerId,
    data: &[u8],
) -> (Option<sync::Hash32>, SyncResponse) {
    let (named, req) = match sync::decode_request(data) {
        Ok(r) => r,
        Err(e) => return (None, SyncResponse::Refused(Refusal::of(&e))),
    };
    // The request names its shop: served only if the peer is a device of that shop. A device
    // of another shop served here, a stranger and a revoked device all get the same answer.
    let Some((shop, replica)) = shops_of(shops, &peer)
        .into_iter()
        .find(|(_, r)| Some(r.genesis) == named)
    else {
        return (
            named,
            SyncResponse::Refused(Refusal::new(RefusalKind::Forbidden, NOT_SERVED)),
        );
    };
    let Ok(_permit) = replica.busy.clone().try_acquire_owned() else {
        tracing::debug!(%shop, %peer, "per-shop request limit reached");
        let busy = SyncResponse::Refused(Refusal::new(
            RefusalKind::Busy,
            "the relay is busy with this shop; try again soon",
        ));
        return (named, busy);
    };
    let h = replica.handle.clone();
    let answer = match req {
        SyncRequest::RedeemStart { .. } | SyncRequest::RedeemFinish { .. } => {
            SyncResponse::Refused(Refusal::new(RefusalKind::Forbidden, NOT_SERVED))
        }
        SyncRequest::SnapshotStatus => {
            SyncResponse::SnapshotStatus(*replica.last_snapshot.lock().expect("snapshot lock"))
        }
        SyncRequest::Offer(envs) if envs.len() <= sync::ENVELOPE_BATCH => {
            offer(net, shops, max_changes, shop, &h, peer, envs).await
        }
        other => tokio::task::spawn_blocking(move || h.answer_sync(other))
            .await
            .unwrap_or_else(|e| {
                SyncResponse::Refused(Refusal::new(RefusalKind::Internal, e.to_string()))
            }),
    };
    (named, answer)
}

/// Applies what a shop device offers, and forwards what was new to the shop's other devices.
async fn offer(
    net: &NetHandle,
    shops: &Shops,
    limit: u64,
    shop: Uuid,
    h: &NodeHandle,
    from: PeerId,
    envs: Vec<Vec<u8>>,
) -> SyncResponse {
    // Held and quarantined envelopes take space too: they count in the shop's quota.
    match h
        .status()
        .and_then(|s| Ok(s.envelopes + h.held_count()? + h.quarantined_count()?))
    {
        Ok(n) if n >= limit => {
            return SyncResponse::Refused(Refusal::new(
                RefusalKind::Full,
                "this shop's space on the relay is full",
            ));
        }
        Err(e) => return SyncResponse::Refused(Refusal::of(&e)),
        _ => {}
    }
    let mut decoded = Vec::with_capacity(envs.len());
    let mut bytes = Vec::with_capacity(envs.len());
    for b in envs {
        if let Ok(e) = Envelope::from_bytes(&b) {
            decoded.push(e);
            bytes.push(b);
        }
    }
    let results = match h
        .import_envelopes_from(&from.to_string(), None, decoded)
        .await
    {
        Ok(r) => r,
        Err(e) => return SyncResponse::Refused(Refusal::of(&e)),
    };
    let mut accepted = 0u32;
    let mut fresh = Vec::new();
    for (r, b) in results.iter().zip(bytes) {
        match r {
            Ok(Applied::New(_)) => {
                accepted += 1;
                fresh.push(b);
            }
            Ok(Applied::Duplicate(_)) => accepted += 1,
            _ => {}
        }
    }
    if !fresh.is_empty() {
        forward(net, shops, shop, fresh, Some(from));
    }
    SyncResponse::Accepted(accepted)
}

/// Offers envelopes to every connected device of `shop` but `except` (in the background).
fn forward(
    net: &NetHandle,
    shops: &Shops,
    shop: Uuid,
    fresh: Vec<Vec<u8>>,
    except: Option<PeerId>,
) {
    let net = net.clone();
    let shops = shops.clone();
    tokio::spawn(async move {
        let targets: Vec<PeerId> = net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.connected && Some(p.peer) != except)
            .map(|p| p.peer)
            .filter(|p| shops_of(&shops, p).iter().any(|(s, _)| *s == shop))
            .collect();
        let genesis = shops
            .read()
            .expect("shops lock")
            .get(&shop)
            .map(|r| r.genesis);
        let msg = sync::encode_request(genesis, &SyncRequest::Offer(fresh));
        for peer in targets {
            let net = net.clone();
            let msg = msg.clone();
            tokio::spawn(async move {
                if let Err(e) = net.request(peer, msg).await {
                    tracing::debug!(%peer, "forwarding to a shop device failed: {e}");
                }
            });
        }
    });
}

/// Forwards what is committed on a replica itself (an owner's change made in the web UI) to
/// the shop's connected devices, as it is committed. Devices not connected pull it later.
pub(super) fn spawn_forwarder(
    forwarders: &Forwarders,
    net: &NetHandle,
    shops: &Shops,
    shop: Uuid,
    replica: &Replica,
) {
    let mut outbox = replica.handle.outbox();
    let (net, shops) = (net.clone(), shops.clone());
    let task = tokio::spawn(async move {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            let first = match outbox.recv().await {
                Ok(env) => env,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(%shop, skipped = n, "forwarding fell behind; devices pull the rest");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mut batch = vec![first.as_ref().clone()];
            while batch.len() < sync::ENVELOPE_BATCH {
                match outbox.try_recv() {
                    Ok(env) => batch.push(env.as_ref().clone()),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            forward(&net, &shops, shop, batch, None);
        }
    });
    forwarders
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(task);
}
