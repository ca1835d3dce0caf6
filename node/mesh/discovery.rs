//! Dialing what mDNS finds ([`crate::net::discovery`]): the lower peer id at once, the higher
//! one after a wait if the pair is still apart.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::actor::Cmd;
use super::wire::peer_of;
use crate::net::{Multiaddr, NetHandle, PeerId};

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
pub(super) async fn dial_found(
    net: NetHandle,
    cmds: mpsc::UnboundedSender<Cmd>,
    mut found: mpsc::Receiver<crate::net::discovery::Found>,
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
        let _ = cmds.send(Cmd::Mdns(peer, f.addrs.clone()));
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
