//! The peer table, without IO: what the mesh knows of each peer (how it was found, whether it
//! is connected, strikes, its pulls and pushes) and the rules over it — when a peer is
//! disconnected for invalid data, when a pull may start, how long a failing peer waits before
//! the periodic pull tries it again, how long a device that redeemed an invite may stay. The
//! actor ([`super::actor`]) owns it and passes the time in, so the rules are tested here with
//! made-up clocks.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::{FoundBy, MAX_STRIKES, PULL_INTERVAL, PeerView};
use crate::model::Device;
use crate::net::{self, PeerId};
use crate::sync::PullReport;

/// At most one gap-triggered pull per peer per this long.
pub const GAP_PULL_EVERY: Duration = Duration::from_secs(1);
/// The longest a peer whose pulls keep failing waits for the next periodic pull (the first
/// retry comes after [`PULL_INTERVAL`], then twice that, …, up to this). A connection or a gap
/// in its gossip still pulls at once.
pub const MAX_PULL_BACKOFF: Duration = Duration::from_secs(40);
/// How long a device that redeemed an invite may pull the shop before it is a member.
pub const JOINING_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Default, Clone)]
pub(crate) struct PeerEntry {
    found_by: Option<FoundBy>,
    connected: bool,
    last_contact: Option<SystemTime>,
    addrs: Vec<String>,
    we_lacked: u64,
    rejected: u64,
    strikes: u32,
    /// When a pull was last started because of a gap in this peer's gossip.
    gap_pull: Option<Instant>,
    last_pull: Option<SystemTime>,
    pull_error: Option<String>,
    /// A pull from this peer is under way: another is not started beside it (a peer that
    /// does not answer would otherwise gather one waiting pull per tick).
    pulling: bool,
    /// Pulls that failed in a row, and when the periodic pull may try again.
    failures: u32,
    retry_at: Option<Instant>,
    last_push: Option<SystemTime>,
    push_error: Option<String>,
    /// Relays: their last snapshot of the shop (ms), as they said at the last pull.
    last_snapshot: Option<i64>,
}

/// Every peer the mesh has heard of, and devices redeeming an invite here.
#[derive(Debug, Default)]
pub struct PeerTable {
    entries: HashMap<PeerId, PeerEntry>,
    /// Devices that redeemed an invite here, and when.
    joining: HashMap<PeerId, Instant>,
}

/// What the actor does after a pull ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterPull {
    /// Nothing more.
    Done,
    /// The peer sent changes that were refused: count a strike.
    Strike,
}

impl PeerTable {
    fn entry(&mut self, peer: PeerId) -> &mut PeerEntry {
        self.entries.entry(peer).or_default()
    }

    /// A static peer (flag, config, "add peer") or an invite's address.
    pub fn found(&mut self, peer: PeerId, by: FoundBy) {
        self.entry(peer).found_by = Some(by);
    }

    /// mDNS reported `peer` at `addrs` (how it was first found stays).
    pub fn found_by_mdns(&mut self, peer: PeerId, addrs: Vec<String>) {
        let e = self.entry(peer);
        e.found_by.get_or_insert(FoundBy::Mdns);
        e.addrs = addrs;
    }

    /// `peer` connected (at `addr`).
    pub fn connected(&mut self, peer: PeerId, addr: String, now: SystemTime) {
        let e = self.entry(peer);
        e.connected = true;
        e.last_contact = Some(now);
        if !e.addrs.contains(&addr) {
            e.addrs.push(addr);
        }
    }

    /// `peer`'s last connection closed.
    pub fn disconnected(&mut self, peer: PeerId) {
        if let Some(e) = self.entries.get_mut(&peer) {
            e.connected = false;
        }
    }

    /// Valid data came from `peer`.
    pub fn touch(&mut self, peer: PeerId, now: SystemTime) {
        if let Some(e) = self.entries.get_mut(&peer) {
            e.last_contact = Some(now);
        }
    }

    /// Counts one invalid message from `peer`; true once it reached [`MAX_STRIKES`] (the
    /// actor disconnects it).
    pub fn strike(&mut self, peer: PeerId) -> bool {
        let e = self.entry(peer);
        e.rejected += 1;
        e.strikes += 1;
        e.strikes >= MAX_STRIKES
    }

    /// Whether a gap in `peer`'s gossip may start a pull now (one per [`GAP_PULL_EVERY`]).
    pub fn gap_pull_due(&mut self, peer: PeerId, now: Instant) -> bool {
        let e = self.entry(peer);
        if e.gap_pull
            .is_some_and(|at| now.duration_since(at) < GAP_PULL_EVERY)
        {
            return false;
        }
        e.gap_pull = Some(now);
        true
    }

    /// Whether the periodic pull should try `peer` now (not while one of its pulls failing
    /// in a row waits out its backoff).
    pub fn periodic_pull_due(&self, peer: &PeerId, now: Instant) -> bool {
        self.entries
            .get(peer)
            .and_then(|e| e.retry_at)
            .is_none_or(|at| now >= at)
    }

    /// Marks a pull from `peer` as started; false if one is under way already.
    pub fn start_pull(&mut self, peer: PeerId) -> bool {
        let e = self.entry(peer);
        !std::mem::replace(&mut e.pulling, true)
    }

    /// A pull from `peer` ended: with what it fetched, or why it failed (in words).
    pub fn pull_ended(
        &mut self,
        peer: PeerId,
        outcome: std::result::Result<&PullReport, String>,
        now: SystemTime,
        at: Instant,
    ) -> AfterPull {
        let e = self.entry(peer);
        e.pulling = false;
        match outcome {
            Ok(r) => {
                e.we_lacked = r.fetched as u64;
                e.last_contact = Some(now);
                e.last_pull = Some(now);
                e.pull_error = None;
                e.failures = 0;
                e.retry_at = None;
                e.rejected += r.rejected as u64;
                if r.rejected > 0 {
                    return AfterPull::Strike;
                }
            }
            Err(why) => {
                e.pull_error = Some(why);
                e.failures = e.failures.saturating_add(1);
                let wait = PULL_INTERVAL
                    .saturating_mul(1 << (e.failures - 1).min(8))
                    .min(MAX_PULL_BACKOFF);
                // The periodic tick comes every PULL_INTERVAL: a wait of one interval is the
                // next tick, as without a backoff.
                e.retry_at = Some(at + wait - PULL_INTERVAL.min(wait));
            }
        }
        AfterPull::Done
    }

    /// An offer to a relay ended (`failed`: why not).
    pub fn pushed(&mut self, peer: PeerId, failed: Option<String>, now: SystemTime) {
        let e = self.entry(peer);
        if failed.is_none() {
            e.last_push = Some(now);
            e.last_contact = e.last_push;
        }
        e.push_error = failed;
    }

    /// A relay said when it last took a snapshot of the shop.
    pub fn snapshot_status(&mut self, peer: PeerId, at: Option<i64>) {
        self.entry(peer).last_snapshot = at;
    }

    /// `peer` redeemed an invite here: it may pull the shop and offer its admission for
    /// [`JOINING_WINDOW`].
    pub fn joined(&mut self, peer: PeerId, now: Instant) {
        self.joining.insert(peer, now);
    }

    /// Whether `peer` redeemed an invite here less than [`JOINING_WINDOW`] ago.
    pub fn is_joining(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.joining
            .retain(|_, at| now.duration_since(*at) < JOINING_WINDOW);
        self.joining.contains_key(peer)
    }

    /// Every peer as `GET /api/v1/peers` shows it: those the network reports (`status`) and
    /// those only this table knows, with the shop's `devices` naming members.
    pub fn views(&self, status: &[net::PeerStatus], devices: &[Device]) -> Vec<PeerView> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in status {
            seen.insert(s.peer);
            out.push(view(&s.peer, self.entries.get(&s.peer), Some(s), devices));
        }
        for (p, e) in &self.entries {
            if !seen.contains(p) {
                out.push(view(p, Some(e), None, devices));
            }
        }
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }
}

fn view(
    peer: &PeerId,
    e: Option<&PeerEntry>,
    s: Option<&net::PeerStatus>,
    devices: &[Device],
) -> PeerView {
    let device = net::public_key_of(peer)
        .map(hex::encode)
        .and_then(|pk| devices.iter().find(|d| d.public_key == pk));
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64)
    };
    PeerView {
        peer_id: peer.to_string(),
        name: device.map(|d| d.name.clone()),
        role: device.map(|d| format!("{:?}", d.role).to_lowercase()),
        device_id: device.map(|d| d.id.clone()),
        found_by: e.and_then(|e| e.found_by).unwrap_or(FoundBy::Inbound),
        connected: s.is_some_and(|s| s.connected) || e.is_some_and(|e| e.connected),
        rtt_ms: s.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
        last_contact: s
            .and_then(|s| s.last_seen)
            .or(e.and_then(|e| e.last_contact))
            .and_then(ms),
        addrs: match s {
            Some(s) if !s.addrs.is_empty() => s.addrs.iter().map(|a| a.to_string()).collect(),
            _ => e.map(|e| e.addrs.clone()).unwrap_or_default(),
        },
        we_lacked: e.map(|e| e.we_lacked).unwrap_or(0),
        rejected: e.map(|e| e.rejected).unwrap_or(0),
        last_pull: e.and_then(|e| e.last_pull).and_then(ms),
        pull_error: e.and_then(|e| e.pull_error.clone()),
        last_push: e.and_then(|e| e.last_push).and_then(ms),
        push_error: e.and_then(|e| e.push_error.clone()),
        last_snapshot: e.and_then(|e| e.last_snapshot),
        via_relay: s.is_some_and(|s| s.relayed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn report(fetched: usize, rejected: usize) -> PullReport {
        PullReport {
            fetched,
            rejected,
            ..Default::default()
        }
    }

    #[test]
    fn a_peer_is_disconnected_at_its_fifth_strike_and_every_strike_shows() {
        let mut t = PeerTable::default();
        let p = peer();
        for n in 1..MAX_STRIKES {
            assert!(!t.strike(p), "strike {n} keeps it");
        }
        assert!(t.strike(p), "strike {MAX_STRIKES} disconnects it");
        let v = t.views(&[], &[]);
        assert_eq!(v[0].rejected, MAX_STRIKES as u64);
    }

    #[test]
    fn one_pull_per_peer_at_a_time_and_a_pull_that_ends_frees_it() {
        let mut t = PeerTable::default();
        let (a, b) = (peer(), peer());
        let (now, at) = (SystemTime::now(), Instant::now());
        assert!(t.start_pull(a));
        assert!(!t.start_pull(a), "a second pull beside the first");
        assert!(t.start_pull(b), "another peer's pull is not held up");
        assert_eq!(
            t.pull_ended(a, Err("timed out".into()), now, at),
            AfterPull::Done
        );
        assert!(t.start_pull(a), "free again after a failure");
        assert_eq!(t.pull_ended(a, Ok(&report(3, 0)), now, at), AfterPull::Done);
        assert!(t.start_pull(a), "free again after a success");
        assert_eq!(
            t.pull_ended(a, Ok(&report(3, 2)), now, at),
            AfterPull::Strike,
            "refused changes count against the peer"
        );
        let v = t.views(&[], &[]);
        let va = v.iter().find(|v| v.peer_id == a.to_string()).unwrap();
        assert_eq!(
            (va.we_lacked, va.rejected, va.pull_error.clone()),
            (3, 2, None)
        );
    }

    #[test]
    fn failing_pulls_back_off_up_to_the_cap_and_a_success_resets_it() {
        let mut t = PeerTable::default();
        let p = peer();
        let (now, t0) = (SystemTime::now(), Instant::now());
        assert!(t.periodic_pull_due(&p, t0), "an unknown peer is due");
        // First failure: the next tick as before.
        t.start_pull(p);
        t.pull_ended(p, Err("timed out".into()), now, t0);
        assert!(t.periodic_pull_due(&p, t0));
        // Second: skips one tick (due PULL_INTERVAL later).
        t.start_pull(p);
        t.pull_ended(p, Err("timed out".into()), now, t0);
        assert!(!t.periodic_pull_due(&p, t0 + PULL_INTERVAL - Duration::from_millis(1)));
        assert!(t.periodic_pull_due(&p, t0 + PULL_INTERVAL));
        // Many: never longer than the cap.
        for _ in 0..20 {
            t.start_pull(p);
            t.pull_ended(p, Err("timed out".into()), now, t0);
        }
        assert!(!t.periodic_pull_due(
            &p,
            t0 + MAX_PULL_BACKOFF - PULL_INTERVAL - Duration::from_millis(1)
        ));
        assert!(t.periodic_pull_due(&p, t0 + MAX_PULL_BACKOFF - PULL_INTERVAL));
        assert_eq!(
            t.views(&[], &[])[0].pull_error.as_deref(),
            Some("timed out")
        );
        // A success: due at every tick again, the error gone.
        t.start_pull(p);
        t.pull_ended(p, Ok(&report(0, 0)), now, t0);
        assert!(t.periodic_pull_due(&p, t0));
        assert_eq!(t.views(&[], &[])[0].pull_error, None);
    }

    #[test]
    fn gap_pulls_are_at_most_one_a_second_per_peer() {
        let mut t = PeerTable::default();
        let (a, b) = (peer(), peer());
        let t0 = Instant::now();
        assert!(t.gap_pull_due(a, t0));
        assert!(!t.gap_pull_due(a, t0 + Duration::from_millis(999)));
        assert!(t.gap_pull_due(b, t0), "per peer");
        assert!(t.gap_pull_due(a, t0 + GAP_PULL_EVERY));
    }

    #[test]
    fn a_joining_device_may_stay_for_the_window_only() {
        let mut t = PeerTable::default();
        let p = peer();
        let t0 = Instant::now();
        assert!(!t.is_joining(&p, t0));
        t.joined(p, t0);
        assert!(t.is_joining(&p, t0 + JOINING_WINDOW - Duration::from_secs(1)));
        assert!(!t.is_joining(&p, t0 + JOINING_WINDOW));
    }

    #[test]
    fn how_a_peer_was_found_first_is_kept_and_connections_add_addresses() {
        let mut t = PeerTable::default();
        let p = peer();
        t.found(p, FoundBy::Static);
        t.found_by_mdns(p, vec!["/ip4/10.0.0.2/tcp/7879".into()]);
        t.connected(p, "/ip4/10.0.0.2/tcp/7879".into(), SystemTime::now());
        t.connected(p, "/ip4/10.0.0.3/tcp/7879".into(), SystemTime::now());
        let v = &t.views(&[], &[])[0];
        assert_eq!(v.found_by, FoundBy::Static);
        assert!(v.connected);
        assert_eq!(v.addrs.len(), 2);
        t.disconnected(p);
        assert!(!t.views(&[], &[])[0].connected);
    }
}
