//! What an operator watches: counters and histograms of one node, rendered in the Prometheus
//! text format (version 0.0.4) at `GET /metrics`.
//!
//! The registry is small and hand-written (atomics and a few mutex-guarded maps): the node has
//! a dozen series, all known here. Each [`Node`](crate::Node) has its own [`Metrics`]
//! ([`NodeHandle::metrics`](crate::NodeHandle::metrics)), so several nodes in one process
//! (tests, the `two_nodes` example) keep their counts apart.
//!
//! | series | type | what |
//! |---|---|---|
//! | `tillmesh_peers_connected` | gauge | peers connected now |
//! | `tillmesh_peers_known` | gauge | peers this node knows of (connected or not) |
//! | `tillmesh_changes_applied_total{origin}` | counter | signed changes applied, `origin` = `local` (made here) or `peer` |
//! | `tillmesh_changes_rejected_total{reason}` | counter | peers' changes refused: `bad_signature`, `not_allowed`, `revoked`, `malformed`, `no_shop`, `other` |
//! | `tillmesh_changes_held_total` | counter | peers' changes held back waiting for earlier changes or an admission |
//! | `tillmesh_sync_lag_seconds` | gauge | the longest time any connected member peer went without a completed pull (a pull runs on connect and every 10 s; a healthy mesh stays under ~20 s; 0 with no peer connected) |
//! | `tillmesh_commit_seconds` | histogram | time of one group commit of the writer (redb commit, fsync included) |
//! | `tillmesh_commit_jobs_total` | counter | commands and imports acknowledged by those commits |
//! | `tillmesh_peer_changes_per_commit` | histogram | peers' changes (gossip, pulls) applied by one group commit: gossip is imported in batches, so under load most commits carry many |
//! | `tillmesh_http_request_seconds{method,route}` | histogram | API and UI latency, by route template (`/api/v1/products/{id}`) |
//! | `tillmesh_http_requests_total{method,route,status}` | counter | requests answered |
//! | `tillmesh_store_bytes` | gauge | size of the store file (0 for an in-memory node) |
//! | `tillmesh_documents`, `tillmesh_envelopes` | gauge | documents and signed changes stored |
//! | `tillmesh_build_info{version}` | gauge | always 1 |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the buckets of `tillmesh_peer_changes_per_commit`.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A Prometheus histogram with fixed buckets: latencies (0.5 ms to 10 s, the default) or
/// counts ([`Histogram::counts`]).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative; rendering sums them), plus `+Inf` last.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of the observations, in nanoseconds for latencies, else as counted.
    sum: AtomicU64,
    /// What one unit of `sum` is worth in the rendered sum.
    unit: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with(&LATENCY_BUCKETS, 1e-9)
    }
}

impl Histogram {
    fn with(bounds: &'static [f64], unit: f64) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    /// A histogram of how many things happened at once (1 to 512).
    pub fn counts() -> Histogram {
        Histogram::with(&BATCH_BUCKETS, 1.0)
    }

    fn record(&self, value: f64, sum: u64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(sum, Relaxed);
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.record(
            d.as_secs_f64(),
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
        );
    }

    /// Records one count.
    pub fn observe_count(&self, n: u64) {
        self.record(n as f64, n);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let sum = self.sum.load(Relaxed) as f64 * self.unit;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count());
    }
}

/// Why a peer's change was refused, as the `reason` label of
/// `tillmesh_changes_rejected_total`.
pub const REJECTION_REASONS: [&str; 6] = [
    "bad_signature",
    "not_allowed",
    "revoked",
    "malformed",
    "no_shop",
    "other",
];

/// The `reason` label for an error applying a peer's change.
///
/// The verifier's messages (see [`crate::docs::trust::verify`] and
/// [`crate::docs::Envelope`]) are sorted into a few stable labels, so dashboards do not depend
/// on their wording.
pub fn rejection_reason(e: &Error) -> &'static str {
    match e {
        Error::Rejected(why) => {
            let why = why.as_str();
            if why.contains("signature") || why.contains("ed25519") {
                "bad_signature"
            } else if why.contains("revoked") {
                "revoked"
            } else if why.contains("undecodable")
                || why.contains("bad envelope")
                || why.contains("too large")
                || why.contains("too many")
                || why.contains("unknown document")
            {
                "malformed"
            } else if why.contains("member")
                || why.contains("may not write")
                || why.contains("author")
                || why.contains("genesis")
                || why.contains("admission")
            {
                "not_allowed"
            } else {
                "other"
            }
        }
        Error::NoShop(_) => "no_shop",
        Error::Invalid { .. } => "malformed",
        _ => "other",
    }
}

/// Counters and histograms of one node.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Changes made on this node and applied.
    applied_local: AtomicU64,
    /// Peers' changes applied.
    applied_peer: AtomicU64,
    /// Peers' changes held back.
    held: AtomicU64,
    /// Peers' changes refused, by reason (one slot per [`REJECTION_REASONS`] entry).
    rejected: [AtomicU64; REJECTION_REASONS.len()],
    /// Group commits of the writer.
    pub(crate) commit: Histogram,
    /// Jobs acknowledged by group commits.
    commit_jobs: AtomicU64,
    /// Peers' changes applied by one group commit (commits that applied any).
    pub(crate) peer_batch: Histogram,
    /// HTTP latency by (method, route).
    http: Mutex<BTreeMap<(String, String), Histogram>>,
    /// HTTP answers by (method, route, status).
    http_status: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            applied_local: AtomicU64::new(0),
            applied_peer: AtomicU64::new(0),
            held: AtomicU64::new(0),
            rejected: Default::default(),
            commit: Histogram::default(),
            commit_jobs: AtomicU64::new(0),
            peer_batch: Histogram::counts(),
            http: Mutex::new(BTreeMap::new()),
            http_status: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Values read at scrape time from the node rather than counted as they happen.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Peers connected now.
    pub peers_connected: u64,
    /// Peers known.
    pub peers_known: u64,
    /// Seconds since the last completed pull, for the connected member peer waiting longest.
    pub sync_lag_seconds: f64,
    /// Size of the store file in bytes (0 in memory).
    pub store_bytes: u64,
    /// Documents stored.
    pub documents: u64,
    /// Envelopes stored.
    pub envelopes: u64,
}

impl Metrics {
    /// When this registry was created (the node's start).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Counts one applied change.
    pub fn change_applied(&self, local: bool) {
        if local {
            self.applied_local.fetch_add(1, Relaxed);
        } else {
            self.applied_peer.fetch_add(1, Relaxed);
        }
    }

    /// Counts one peer's change held back.
    pub fn change_held(&self) {
        self.held.fetch_add(1, Relaxed);
    }

    /// Counts one peer's change refused.
    pub fn change_rejected(&self, e: &Error) {
        self.rejected_with(rejection_reason(e));
    }

    /// Counts one peer's change refused for `reason` (one of [`REJECTION_REASONS`]; anything
    /// else counts as `other`).
    pub fn rejected_with(&self, reason: &str) {
        let i = REJECTION_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REJECTION_REASONS.len() - 1);
        self.rejected[i].fetch_add(1, Relaxed);
    }

    /// Records one group commit that acknowledged `jobs` jobs.
    pub fn commit_done(&self, took: Duration, jobs: u64) {
        self.commit.observe(took);
        self.commit_jobs.fetch_add(jobs, Relaxed);
    }

    /// Records a group commit that applied `n` (> 0) peers' changes.
    pub fn peer_changes_committed(&self, n: u64) {
        self.peer_batch.observe_count(n);
    }

    /// Records one HTTP request.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let key = (method.to_string(), route.to_string());
        self.http
            .lock()
            .expect("metrics lock is never poisoned")
            .entry(key.clone())
            .or_default()
            .observe(took);
        *self
            .http_status
            .lock()
            .expect("metrics lock is never poisoned")
            .entry((key.0, key.1, status))
            .or_default() += 1;
    }

    /// Peers' changes applied so far.
    pub fn applied_from_peers(&self) -> u64 {
        self.applied_peer.load(Relaxed)
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "tillmesh_build_info",
            "gauge",
            "The running version (always 1).",
        );
        let _ = writeln!(
            out,
            "tillmesh_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        head(
            &mut out,
            "tillmesh_peers_connected",
            "gauge",
            "Mesh peers connected now.",
        );
        let _ = writeln!(out, "tillmesh_peers_connected {}", g.peers_connected);
        head(
            &mut out,
            "tillmesh_peers_known",
            "gauge",
            "Mesh peers this node knows of, connected or not.",
        );
        let _ = writeln!(out, "tillmesh_peers_known {}", g.peers_known);
        head(
            &mut out,
            "tillmesh_changes_applied_total",
            "counter",
            "Signed changes verified and applied, by origin (local: made here; peer).",
        );
        let _ = writeln!(
            out,
            "tillmesh_changes_applied_total{{origin=\"local\"}} {}",
            self.applied_local.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tillmesh_changes_applied_total{{origin=\"peer\"}} {}",
            self.applied_peer.load(Relaxed)
        );
        head(
            &mut out,
            "tillmesh_changes_rejected_total",
            "counter",
            "Peers' changes refused by verification, by reason.",
        );
        for (i, reason) in REJECTION_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "tillmesh_changes_rejected_total{{reason=\"{reason}\"}} {}",
                self.rejected[i].load(Relaxed)
            );
        }
        head(
            &mut out,
            "tillmesh_changes_held_total",
            "counter",
            "Peers' changes held back until earlier changes or an admission arrive.",
        );
        let _ = writeln!(
            out,
            "tillmesh_changes_held_total {}",
            self.held.load(Relaxed)
        );
        head(
            &mut out,
            "tillmesh_sync_lag_seconds",
            "gauge",
            "Longest time a connected member peer went without a completed pull.",
        );
        let _ = writeln!(out, "tillmesh_sync_lag_seconds {}", g.sync_lag_seconds);
        head(
            &mut out,
            "tillmesh_commit_seconds",
            "histogram",
            "Duration of one group commit of the writer, fsync included.",
        );
        self.commit.render(&mut out, "tillmesh_commit_seconds", "");
        head(
            &mut out,
            "tillmesh_commit_jobs_total",
            "counter",
            "Commands and imports acknowledged by group commits.",
        );
        let _ = writeln!(
            out,
            "tillmesh_commit_jobs_total {}",
            self.commit_jobs.load(Relaxed)
        );
        head(
            &mut out,
            "tillmesh_peer_changes_per_commit",
            "histogram",
            "Peers' changes applied by one group commit of the writer.",
        );
        self.peer_batch
            .render(&mut out, "tillmesh_peer_changes_per_commit", "");
        head(
            &mut out,
            "tillmesh_http_request_seconds",
            "histogram",
            "HTTP request latency by method and route template.",
        );
        for ((method, route), h) in self
            .http
            .lock()
            .expect("metrics lock is never poisoned")
            .iter()
        {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            h.render(&mut out, "tillmesh_http_request_seconds", &labels);
        }
        head(
            &mut out,
            "tillmesh_http_requests_total",
            "counter",
            "HTTP requests answered by method, route template and status.",
        );
        for ((method, route, status), n) in self
            .http_status
            .lock()
            .expect("metrics lock is never poisoned")
            .iter()
        {
            let _ = writeln!(
                out,
                "tillmesh_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        head(
            &mut out,
            "tillmesh_store_bytes",
            "gauge",
            "Size of the store file in bytes (0 for an in-memory node).",
        );
        let _ = writeln!(out, "tillmesh_store_bytes {}", g.store_bytes);
        head(&mut out, "tillmesh_documents", "gauge", "Documents stored.");
        let _ = writeln!(out, "tillmesh_documents {}", g.documents);
        head(
            &mut out,
            "tillmesh_envelopes",
            "gauge",
            "Signed changes (envelopes) stored.",
        );
        let _ = writeln!(out, "tillmesh_envelopes {}", g.envelopes);
        out
    }
}

/// Escapes a label value (`\`, `"` and newlines).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.commit_done(Duration::from_micros(300), 2);
        m.commit_done(Duration::from_millis(20), 1);
        m.commit_done(Duration::from_secs(30), 1);
        m.http_request("GET", "/a\"b", 200, Duration::from_millis(1));
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("tillmesh_commit_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tillmesh_commit_seconds_bucket{le=\"0.025\"} 2\n"));
        assert!(text.contains("tillmesh_commit_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("tillmesh_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("tillmesh_commit_seconds_count 3\n"));
        assert!(text.contains("tillmesh_commit_jobs_total 4\n"));
        // Peers' changes per commit: counts, not seconds.
        m.peer_changes_committed(1);
        m.peer_changes_committed(37);
        let text = m.render(&Gauges::default());
        assert!(text.contains("tillmesh_peer_changes_per_commit_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("tillmesh_peer_changes_per_commit_bucket{le=\"32\"} 1\n"));
        assert!(text.contains("tillmesh_peer_changes_per_commit_bucket{le=\"64\"} 2\n"));
        assert!(text.contains("tillmesh_peer_changes_per_commit_sum 38\n"));
        assert!(text.contains("tillmesh_peer_changes_per_commit_count 2\n"));
        assert!(text.contains(
            "tillmesh_http_requests_total{method=\"GET\",route=\"/a\\\"b\",status=\"200\"} 1\n"
        ));
    }

    #[test]
    fn verifier_messages_map_to_stable_reasons() {
        let r = |m: &str| rejection_reason(&Error::Rejected(m.into()));
        assert_eq!(r("bad signature"), "bad_signature");
        assert_eq!(r("signature has the wrong length"), "bad_signature");
        assert_eq!(r("signer is not a valid ed25519 key"), "bad_signature");
        assert_eq!(r("signer has been revoked"), "revoked");
        assert_eq!(r("signer was revoked at the heads it names"), "revoked");
        assert_eq!(
            r("signer is not a member at the heads it names"),
            "not_allowed"
        );
        assert_eq!(r("Device(..) may not write catalog"), "not_allowed");
        assert_eq!(r("change author is not the signer"), "not_allowed");
        assert_eq!(r("undecodable change: x"), "malformed");
        assert_eq!(r("bad envelope: eof"), "malformed");
        assert_eq!(r("unknown document \"x\""), "malformed");
        assert_eq!(
            rejection_reason(&Error::NoShop("this node has no shop yet".into())),
            "no_shop"
        );
        let m = Metrics::default();
        m.rejected_with("nonsense");
        assert!(
            m.render(&Gauges::default())
                .contains("tillmesh_changes_rejected_total{reason=\"other\"} 1\n")
        );
    }
}
