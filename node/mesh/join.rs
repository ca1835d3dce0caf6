//! Joining a shop over the network: redeem an invite with the node that made it (found by
//! its address, or by mDNS for a short code), pull the shop, admit this device.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::Host;
use super::wire::{NetPeer, net_config, peer_of, shop_of};
use crate::error::{Error, Result};
use crate::net::{self, Multiaddr, NetEvent, NetHandle, PeerId};
use crate::sync::{self, SyncResponse};

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
        .map_err(|e| Error::store(format!("cannot write {}", path.display()), e))
}

/// Joins the shop of `ticket` over the network: finds the device that made it (at the
/// invite's addresses, or by mDNS for a short code, as `opts` allows), joins through it
/// ([`sync::join`]) and says which address it was reached at.
pub(crate) async fn join<H: Host>(
    h: &H,
    ticket: &crate::docs::admission::Ticket,
    opts: &sync::JoinOptions,
) -> Result<(Joined, Multiaddr)> {
    let mdns_interfaces = opts.mdns.as_deref();
    // A data dir restored from a backup (or a join cut short) has the shop's data but this
    // device is not a member: it may join — the same shop only, as `sync::join` pins the
    // invite's genesis.
    if h.status()?.device.is_some() {
        return Err(Error::HasShop(
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
                    let answer = SyncResponse::Refused(sync::Refusal::new(
                        sync::RefusalKind::Joining,
                        "this device is joining a shop",
                    ));
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
        let answer = sync::join(h, &remote, &ticket.code, opts).await;
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
