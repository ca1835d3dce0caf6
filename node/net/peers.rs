//! What the network knows about its peers, without any sockets: who is connected over which
//! connections, round-trip times, when each was last heard from, and the static peers that are
//! redialed with exponential backoff while they are away.
//!
//! The event loop feeds it swarm events and asks it which dials are due; every method takes the
//! current time, so backoff is tested here without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use super::PeerStatus;

/// First wait before redialing a static peer, doubled after each failure up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many addresses are remembered per peer (identify lets a peer claim any number).
const MAX_ADDRS_PER_PEER: usize = 8;

/// One established connection to a peer.
#[derive(Debug, Clone)]
struct Link {
    id: ConnectionId,
    /// Whether this side dialed it: decides which of two duplicate connections survives.
    dialed_by_us: bool,
    remote_addr: Multiaddr,
    /// Through a relay's circuit (either way: dialed through one, or accepted on a listener
    /// through one).
    relayed: bool,
}

impl Link {
    fn relayed(&self) -> bool {
        self.relayed
    }
}

#[derive(Debug, Default)]
struct PeerEntry {
    /// Established connections, oldest first.
    links: Vec<Link>,
    /// Addresses the peer listens on (from identify), most recent first.
    listen_addrs: Vec<Multiaddr>,
    rtt: Option<Duration>,
    last_seen: Option<SystemTime>,
}

/// An address given in the configuration or through `NetHandle::dial`, kept dialed.
#[derive(Debug)]
struct StaticPeer {
    addr: Multiaddr,
    /// The peer last reached at `addr` (or named by its `/p2p/` suffix).
    peer: Option<PeerId>,
    backoff: Duration,
    next_attempt: Instant,
    dialing: Option<ConnectionId>,
}

/// The peer table, owned by the event loop.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    peers: HashMap<PeerId, PeerEntry>,
    statics: Vec<StaticPeer>,
}

/// What the loop must do after a connection was established.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Established {
    /// This is the first connection to the peer: tell the core.
    pub first: bool,
    /// Duplicate connections this side should close (see [`PeerBook::duplicates_to_close`]).
    pub close: Vec<ConnectionId>,
}

impl PeerBook {
    /// Remembers `addr` as a static peer, due to be dialed at once. Returns false if it was
    /// already known.
    pub(crate) fn add_static(&mut self, addr: Multiaddr, now: Instant) -> bool {
        if self.statics.iter().any(|s| s.addr == addr) {
            return false;
        }
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        };
        self.statics.push(StaticPeer {
            addr,
            peer,
            backoff: MIN_BACKOFF,
            next_attempt: now,
            dialing: None,
        });
        true
    }

    /// The peer last reached at a static address, if it is connected now.
    pub(crate) fn connected_static(&self, addr: &Multiaddr) -> Option<PeerId> {
        let peer = self.statics.iter().find(|s| &s.addr == addr)?.peer?;
        self.is_connected(&peer).then_some(peer)
    }

    /// Static addresses whose peer is away, not being dialed, and whose backoff has elapsed.
    /// `quiet` says whether a peer must not be dialed now (it was disconnected on purpose).
    pub(crate) fn due_dials(
        &self,
        now: Instant,
        quiet: impl Fn(&PeerId) -> bool,
    ) -> Vec<Multiaddr> {
        self.statics
            .iter()
            .filter(|s| s.dialing.is_none() && s.next_attempt <= now)
            .filter(|s| s.peer.is_none_or(|p| !self.is_connected(&p) && !quiet(&p)))
            .map(|s| s.addr.clone())
            .collect()
    }

    /// Dial the static addresses of `peer` at the next tick, with the backoff reset.
    pub(crate) fn retry_now(&mut self, peer: &PeerId, now: Instant) {
        for s in self.statics.iter_mut().filter(|s| s.peer == Some(*peer)) {
            s.backoff = MIN_BACKOFF;
            s.next_attempt = now;
        }
    }

    /// A dial of `addr` has started as connection `id`.
    pub(crate) fn dial_started(&mut self, addr: &Multiaddr, id: ConnectionId) {
        if let Some(s) = self.statics.iter_mut().find(|s| &s.addr == addr) {
            s.dialing = Some(id);
        }
    }

    /// A dial failed: wait twice as long before the next attempt.
    pub(crate) fn dial_failed(&mut self, id: ConnectionId, now: Instant) {
        if let Some(s) = self.statics.iter_mut().find(|s| s.dialing == Some(id)) {
            s.dialing = None;
            s.next_attempt = now + s.backoff;
            s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A connection is established. Returns whether it is the first to this peer, and which
    /// duplicates to close.
    pub(crate) fn connection_established(
        &mut self,
        local: &PeerId,
        peer: PeerId,
        id: ConnectionId,
        dialed_by_us: bool,
        remote_addr: Multiaddr,
        relayed: bool,
    ) -> Established {
        for s in self.statics.iter_mut().filter(|s| s.dialing == Some(id)) {
            // The address may now belong to a different peer (a device that got a new key).
            s.peer = Some(peer);
            s.dialing = None;
            s.backoff = MIN_BACKOFF;
        }
        let entry = self.peers.entry(peer).or_default();
        entry.last_seen = Some(SystemTime::now());
        entry.links.push(Link {
            id,
            dialed_by_us,
            remote_addr,
            relayed,
        });
        Established {
            first: entry.links.len() == 1,
            close: duplicates_to_close(local, &peer, &entry.links),
        }
    }

    /// A connection closed. Returns true if it was the last one to this peer.
    pub(crate) fn connection_closed(
        &mut self,
        peer: &PeerId,
        id: ConnectionId,
        now: Instant,
    ) -> bool {
        let Some(entry) = self.peers.get_mut(peer) else {
            return false;
        };
        let before = entry.links.len();
        entry.links.retain(|l| l.id != id);
        let last = before > 0 && entry.links.is_empty();
        if last {
            entry.last_seen = Some(SystemTime::now());
            entry.rtt = None;
            for s in self.statics.iter_mut().filter(|s| s.peer == Some(*peer)) {
                s.next_attempt = now + s.backoff;
            }
        }
        last
    }

    /// The address of a direct connection to `peer` that this side dialed, if any.
    pub(crate) fn dialed_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.peers
            .get(peer)?
            .links
            .iter()
            .find(|l| l.dialed_by_us && !l.relayed())
            .map(|l| l.remote_addr.clone())
    }

    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|e| !e.links.is_empty())
    }

    /// The peer was heard from (a message, a request, a ping).
    pub(crate) fn seen(&mut self, peer: &PeerId) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.last_seen = Some(SystemTime::now());
        }
    }

    pub(crate) fn record_rtt(&mut self, peer: &PeerId, rtt: Duration) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.rtt = Some(rtt);
            entry.last_seen = Some(SystemTime::now());
        }
    }

    /// Remembers the addresses a peer says it listens on; returns those that were new.
    pub(crate) fn record_listen_addrs(
        &mut self,
        peer: &PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Vec<Multiaddr> {
        let Some(entry) = self.peers.get_mut(peer) else {
            return Vec::new();
        };
        let mut fresh = Vec::new();
        for addr in addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
            if !entry.listen_addrs.contains(&addr) {
                fresh.push(addr.clone());
            }
            entry.listen_addrs.retain(|a| a != &addr);
            entry.listen_addrs.insert(0, addr);
        }
        entry.listen_addrs.truncate(MAX_ADDRS_PER_PEER);
        fresh
    }

    /// Every peer known by id: connected ones, ones seen before, and static peers reached once.
    /// (A static address never reached has no peer id yet and is not listed.)
    pub(crate) fn statuses(&self) -> Vec<PeerStatus> {
        let mut out: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(peer, e)| {
                let mut addrs: Vec<Multiaddr> =
                    e.links.iter().map(|l| l.remote_addr.clone()).collect();
                for a in e.listen_addrs.iter().chain(self.static_addrs_of(peer)) {
                    if !addrs.contains(a) {
                        addrs.push(a.clone());
                    }
                }
                PeerStatus {
                    peer: *peer,
                    addrs,
                    connected: !e.links.is_empty(),
                    rtt: e.rtt,
                    last_seen: e.last_seen,
                    is_static: self.static_addrs_of(peer).next().is_some(),
                    relayed: !e.links.is_empty() && e.links.iter().all(Link::relayed),
                }
            })
            .collect();
        for s in &self.statics {
            if let Some(peer) = s.peer
                && !self.peers.contains_key(&peer)
                && !out.iter().any(|st| st.peer == peer)
            {
                out.push(PeerStatus {
                    peer,
                    addrs: vec![s.addr.clone()],
                    connected: false,
                    rtt: None,
                    last_seen: None,
                    is_static: true,
                    relayed: false,
                });
            }
        }
        out.sort_by_key(|s| s.peer);
        out
    }

    fn static_addrs_of<'a>(&'a self, peer: &'a PeerId) -> impl Iterator<Item = &'a Multiaddr> + 'a {
        self.statics
            .iter()
            .filter(move |s| s.peer.as_ref() == Some(peer))
            .map(|s| &s.addr)
    }
}

/// Of several connections to one peer, which ones this side closes so both sides end up
/// keeping the same single connection without talking about it.
///
/// The survivor is the oldest connection dialed by the peer with the lower id, or if there is
/// none, the oldest one. A connection dialed by the higher id is closed by both sides once a
/// lower-dialed one exists (they agree on that); any other extra connection is closed only by
/// the side that dialed it, because the two sides may have seen them established in a
/// different order.
fn duplicates_to_close(local: &PeerId, remote: &PeerId, links: &[Link]) -> Vec<ConnectionId> {
    if links.len() < 2 {
        return Vec::new();
    }
    // A direct connection beats one through a relay's circuit (dcutr's hole punch, or a
    // device met on the LAN): both sides close their relayed ones.
    if links.iter().any(|l| !l.relayed()) && links.iter().any(Link::relayed) {
        let direct: Vec<Link> = links.iter().filter(|l| !l.relayed()).cloned().collect();
        let mut close: Vec<ConnectionId> =
            links.iter().filter(|l| l.relayed()).map(|l| l.id).collect();
        close.extend(duplicates_to_close(local, remote, &direct));
        return close;
    }
    let we_are_lower = local < remote;
    let dialed_by_lower = |l: &Link| l.dialed_by_us == we_are_lower;
    let keep = links
        .iter()
        .find(|l| dialed_by_lower(l))
        .unwrap_or(&links[0])
        .id;
    let lower_dialed_exists = links.iter().any(dialed_by_lower);
    links
        .iter()
        .filter(|l| l.id != keep)
        .filter(|l| l.dialed_by_us || (lower_dialed_exists && !dialed_by_lower(l)))
        .map(|l| l.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn static_peers_back_off_exponentially_and_reset_on_success() {
        let local = PeerId::random();
        let remote = PeerId::random();
        let mut book = PeerBook::default();
        let t0 = Instant::now();
        assert!(book.add_static(addr(1), t0));
        assert!(!book.add_static(addr(1), t0));
        assert_eq!(book.due_dials(t0, |_| false), vec![addr(1)]);

        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let id = ConnectionId::new_unchecked(waits.len());
            book.dial_started(&addr(1), id);
            assert!(
                book.due_dials(now, |_| false).is_empty(),
                "no second dial while dialing"
            );
            book.dial_failed(id, now);
            let next = (1..=60)
                .map(|s| now + Duration::from_secs(s))
                .find(|t| !book.due_dials(*t, |_| false).is_empty())
                .unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);

        let id = ConnectionId::new_unchecked(100);
        book.dial_started(&addr(1), id);
        let est = book.connection_established(&local, remote, id, true, addr(1), false);
        assert!(est.first);
        assert!(
            book.due_dials(now + MAX_BACKOFF, |_| false).is_empty(),
            "connected"
        );
        assert_eq!(book.connected_static(&addr(1)), Some(remote));

        assert!(book.connection_closed(&remote, id, now));
        assert!(book.due_dials(now, |_| false).is_empty());
        assert_eq!(book.due_dials(now + MIN_BACKOFF, |_| false), vec![addr(1)]);
        assert!(
            book.due_dials(now + MIN_BACKOFF, |p| *p == remote)
                .is_empty(),
            "quiet"
        );
        let status = book.statuses();
        assert_eq!(status.len(), 1);
        assert!(status[0].is_static && !status[0].connected);
    }

    fn link(id: usize, dialed_by_us: bool) -> Link {
        Link {
            id: ConnectionId::new_unchecked(id),
            dialed_by_us,
            remote_addr: addr(id as u16),
            relayed: false,
        }
    }

    #[test]
    fn both_sides_keep_the_same_connection() {
        let (mut lo, mut hi) = (PeerId::random(), PeerId::random());
        if lo > hi {
            std::mem::swap(&mut lo, &mut hi);
        }
        // Connection 1 dialed by `lo`, 2 dialed by `hi`, seen in opposite orders.
        let on_lo = [link(2, false), link(1, true)];
        let on_hi = [link(1, false), link(2, true)];
        assert_eq!(
            duplicates_to_close(&lo, &hi, &on_lo),
            vec![ConnectionId::new_unchecked(2)]
        );
        assert_eq!(
            duplicates_to_close(&hi, &lo, &on_hi),
            vec![ConnectionId::new_unchecked(2)]
        );

        // Two connections both dialed by `hi`: only `hi` closes one; `lo` leaves it to it.
        let on_hi = [link(3, true), link(4, true)];
        let on_lo = [link(4, false), link(3, false)];
        assert_eq!(
            duplicates_to_close(&hi, &lo, &on_hi),
            vec![ConnectionId::new_unchecked(4)]
        );
        assert!(duplicates_to_close(&lo, &hi, &on_lo).is_empty());

        assert!(duplicates_to_close(&lo, &hi, &[link(5, true)]).is_empty());
    }

    #[test]
    fn a_direct_connection_replaces_a_relayed_one_on_both_sides() {
        let (mut lo, mut hi) = (PeerId::random(), PeerId::random());
        if lo > hi {
            std::mem::swap(&mut lo, &mut hi);
        }
        let relayed = |id: usize, dialed_by_us: bool| Link {
            id: ConnectionId::new_unchecked(id),
            dialed_by_us,
            remote_addr: format!("/p2p/{}", PeerId::random()).parse().unwrap(),
            relayed: true,
        };
        assert!(relayed(1, true).relayed() && !link(2, true).relayed());
        // Circuit 1 dialed by `hi`, then a direct connection 2 dialed by `lo` (a hole punch):
        // both close the circuit, whoever dialed it.
        let on_lo = [relayed(1, false), link(2, true)];
        let on_hi = [relayed(1, true), link(2, false)];
        assert_eq!(
            duplicates_to_close(&lo, &hi, &on_lo),
            vec![ConnectionId::new_unchecked(1)]
        );
        assert_eq!(
            duplicates_to_close(&hi, &lo, &on_hi),
            vec![ConnectionId::new_unchecked(1)]
        );
        // Two circuits and a direct connection: both circuits go, the direct one stays.
        let on_lo = [relayed(3, true), relayed(4, false), link(5, false)];
        let mut closed = duplicates_to_close(&lo, &hi, &on_lo);
        closed.sort();
        assert_eq!(
            closed,
            vec![
                ConnectionId::new_unchecked(3),
                ConnectionId::new_unchecked(4)
            ]
        );
        // Circuits only: the ordinary rule (the one dialed by the lower id survives).
        let on_lo = [relayed(6, false), relayed(7, true)];
        assert_eq!(
            duplicates_to_close(&lo, &hi, &on_lo),
            vec![ConnectionId::new_unchecked(6)]
        );
    }
}
