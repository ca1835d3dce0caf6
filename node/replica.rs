//! The writer: one thread owns every write. Commands arrive as jobs; the thread runs all jobs
//! waiting at that moment inside **one** redb write transaction and commits once (group commit),
//! then answers each job. A job's answer is sent only after its commit is durable. At most
//! [`QUEUE`] jobs wait; a caller beyond that waits for room (backpressure). A batch of peers'
//! changes only may commit without a sync to disk ([`Ctx::relaxed`]); the writer's own timer
//! syncs it within [`MAX_UNSYNCED`] and runs the FIFO work deferred during a catch-up once peers
//! are quiet ([`FIFO_BUDGET`]), with no task outside the writer asking.
//!
//! Inside a job, [`Ctx::change`] turns a domain edit into an Automerge change, signs it, and
//! hands it to `Ctx::apply` — the same path an envelope from a peer takes
//! ([`Ctx::apply_envelope`]): verify, apply to the document, store envelope and chunk, update
//! projections in the same transaction, queue events. What is derived from the documents
//! (projections, the audit trail, alerts, FIFO cost) is the domain's, plugged in as a
//! [`Projector`]: the writer knows the seam, not the projections.
//!
//! An envelope from elsewhere that waits for changes this node lacks (its dependencies, or the
//! `members` heads it names) is **held** — only once its signature verified and its signer is
//! plausible (`Ctx::may_hold`), within caps per forwarding peer, per document and in all
//! ([`MAX_HELD`]), for [`HELD_TTL_MS`]. It is indexed by the hashes it waits for, and
//! [`Ctx::retry_held`] retries exactly those waiting for a change just stored; nothing held is
//! read on a local change. Held envelopes never go into backups.
//!
//! Two kinds of envelopes are **quarantined** instead (`Ctx::quarantine`, the `QUARANTINE`
//! table, capped per signer and in all, see [`MAX_QUARANTINED`]; never in backups): a sale a
//! till signed after an owner revoked it ([`crate::docs::trust::revoked_sale`]; still refused,
//! kept for the owners, see [`crate::domain::revoked_sales`]), and a change to a document of a
//! kind this build does not know, signed by a member ([`Applied::Kept`]; re-offered at every
//! start by [`Ctx::reoffer_kept`], so a later version applies it). Neither is applied as it is.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use automerge::{ActorId, Author, AutoCommit, Change, ChangeHash, ROOT, transaction::Transactable};
use ed25519_dalek::SigningKey;
use redb::{ReadableTable, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::docs::members::Anchor;
use crate::docs::trust::{Signer, Trust, Verdict, VerifyContext, verify};
use crate::docs::{DocId, Envelope, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::model::Event;
use crate::store::tables::*;
use crate::store::{DocMeta, Rebuild, Store, load_doc, meta, read_doc_meta};

/// Jobs a batch may hold before it is committed.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer at most; a further [`Writer::write`] waits for room
/// (backpressure) instead of growing memory without limit while the disk or a flood of peers'
/// imports outpaces the commits. Two full batches: group commit still finds a full batch waiting
/// when one ends, and what waits is bounded by this many jobs (each an API command or one import
/// of a peer's envelopes, itself bounded by the mesh's message size).
pub const QUEUE: usize = 2 * MAX_BATCH;
/// A document is re-saved as one chunk once it has this many chunks.
const COMPACT_AFTER_CHUNKS: u64 = 128;
/// Longest a commit of changes from peers may stay unsynced to disk (see [`Ctx::relaxed`]).
pub const MAX_UNSYNCED: std::time::Duration = std::time::Duration::from_millis(500);
/// The writer commits durably once the oldest unsynced commit is this old, whether a job comes
/// or not (its own timer, see `Engine::run`): half of [`MAX_UNSYNCED`], leaving the other half
/// for the batch running at that moment and the sync itself.
const SYNC_AFTER: std::time::Duration =
    std::time::Duration::from_millis(MAX_UNSYNCED.as_millis() as u64 / 2);
/// Most envelopes held at once (waiting for changes this node lacks), from all peers together;
/// beyond any cap below new ones are not kept (not the sender's fault: anti-entropy brings them
/// again once what they wait for is here). The global caps are what bounds a flood: fresh peer
/// ids and signer keys cost an attacker nothing.
pub const MAX_HELD: usize = 10_000;
/// Most bytes of envelopes held at once.
pub const MAX_HELD_BYTES: u64 = 64 << 20;
/// Most envelopes held from one forwarding peer (its peer id; imports from a backup or the API
/// count as one source).
pub const MAX_HELD_PER_PEER: usize = 1_000;
/// Most bytes of envelopes held from one forwarding peer.
pub const MAX_HELD_BYTES_PER_PEER: u64 = 16 << 20;
/// Most envelopes held for one document.
pub const MAX_HELD_PER_DOC: usize = 1_000;
/// How long an envelope stays held. What a real peer sends waits seconds (a gossiped change
/// overtaking an earlier one, a new device's change before its admission) until the gap pull
/// fetches what it lacks; an hour is ample. Dropping one costs nothing: no longer held, its hash
/// counts as missing again and the next anti-entropy pull fetches it from whoever has it.
pub const HELD_TTL_MS: i64 = 60 * 60 * 1000;
/// Most envelopes in quarantine (sales of revoked tills, documents of unknown kinds) from all
/// signers together. Only envelopes signed by a device or person of this shop get there (see
/// `Ctx::quarantine`), so the per-signer caps below bound what each key costs, and these
/// bound the shop's few keys together. Beyond a cap nothing more is kept: a revoked till's
/// further sales are refused as before (and stay on the till's disk).
pub const MAX_QUARANTINED: usize = 50_000;
/// Most bytes in quarantine.
pub const MAX_QUARANTINED_BYTES: u64 = 64 << 20;
/// Most envelopes in quarantine signed by one key.
pub const MAX_QUARANTINED_PER_SIGNER: usize = 10_000;
/// Most bytes in quarantine signed by one key.
pub const MAX_QUARANTINED_BYTES_PER_SIGNER: u64 = 16 << 20;

/// Why an envelope is in quarantine (the `QUARANTINE` table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QuarantineReason {
    /// A sale signed by this till after an owner revoked it (`docs::trust::revoked_sale`).
    RevokedSale {
        /// The revoked till's device id.
        device: String,
    },
    /// A document of a kind this build does not know, signed by a member.
    UnknownKind {
        /// The kind (the document name's first segment).
        kind: String,
    },
}

/// An envelope in quarantine, with why and where from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Why it is kept.
    pub reason: QuarantineReason,
    /// The peer it came from (`""`: a local import, or a change this node had applied before
    /// the revocation reached it).
    pub from: String,
    /// When it was kept (ms since the Unix epoch).
    pub kept_at: i64,
    /// The envelope ([`Envelope::to_bytes`]).
    pub envelope: Vec<u8>,
}

/// Envelopes in quarantine counted for the caps (see [`MAX_QUARANTINED`]).
#[derive(Default)]
struct QuarantineCounts {
    total: usize,
    bytes: u64,
    by_signer: HashMap<[u8; 32], (usize, u64)>,
}

impl QuarantineCounts {
    fn add(&mut self, signer: &[u8; 32], bytes: u64, sign: i64) {
        let n = |v: usize| v.saturating_add_signed(sign as isize);
        let b = |v: u64| v.saturating_add_signed(sign * bytes as i64);
        self.total = n(self.total);
        self.bytes = b(self.bytes);
        let s = self.by_signer.entry(*signer).or_default();
        *s = (n(s.0), b(s.1));
        if s.0 == 0 {
            self.by_signer.remove(signer);
        }
    }

    fn full(&self, signer: &[u8; 32], bytes: u64) -> Option<&'static str> {
        let (n, b) = self.by_signer.get(signer).copied().unwrap_or_default();
        if self.total >= MAX_QUARANTINED || self.bytes + bytes > MAX_QUARANTINED_BYTES {
            Some("the quarantine is full")
        } else if n >= MAX_QUARANTINED_PER_SIGNER || b + bytes > MAX_QUARANTINED_BYTES_PER_SIGNER {
            Some("the quarantine holds as much from this signer as it keeps")
        } else {
            None
        }
    }
}

/// Documents kept loaded besides `members`, `settings`, `catalog` and `vault`.
const DOC_CACHE: usize = 64;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;
type Job = Box<dyn FnOnce(&mut Ctx<'_>) -> Finish + Send>;

/// State shared between the writer and readers, refreshed after commits.
pub struct Shared {
    /// Broadcasts applied changes to UIs and embedders.
    pub events: broadcast::Sender<Event>,
    /// The `members` and `settings` documents as readers see them, after the last commit.
    pub shop: RwLock<Arc<crate::docs::shop::ShopView>>,
    /// Commits made (durable or, for peers' changes, synced soon after).
    pub commits: std::sync::atomic::AtomicU64,
    /// Jobs acknowledged by those commits.
    pub jobs: std::sync::atomic::AtomicU64,
    /// Envelopes made on this node, sent once committed (the mesh publishes them).
    pub outbox: broadcast::Sender<Arc<Vec<u8>>>,
    /// Set while a commit of peers' changes is not yet synced to disk (see [`Ctx::relaxed`]).
    pub unsynced: std::sync::atomic::AtomicBool,
    /// Set while FIFO costs wait for a quiet moment to be recomputed (see [`FIFO_BUDGET`]).
    pub fifo_deferred: std::sync::atomic::AtomicBool,
    /// Counters and histograms served at `GET /metrics` (commit latency, changes applied).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Shared {
    /// Empty state for a writer that has not run yet.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Shared {
        Shared {
            events: broadcast::channel(4096).0,
            shop: RwLock::new(Arc::new(crate::docs::shop::ShopView::default())),
            commits: Default::default(),
            jobs: Default::default(),
            outbox: broadcast::channel(4096).0,
            unsynced: Default::default(),
            fifo_deferred: Default::default(),
            metrics,
        }
    }
}

/// While peers' changes stream in (catch-up), a batch recomputes FIFO cost only for products
/// whose replay is at most this many movements; longer replays wait until no peers' changes
/// arrived for [`FIFO_QUIET`], so a long catch-up replays each product a few times, not once
/// per batch. Projections other than FIFO cost are always current.
pub const FIFO_BUDGET: u64 = 4096;
/// See [`FIFO_BUDGET`].
pub const FIFO_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// Cloneable handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. It ends when every `Writer` is dropped, after finishing the
    /// jobs already queued.
    pub fn spawn(engine: Engine) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("tillmesh-writer".into())
            .spawn(move || engine.run(rx))
            .expect("spawning the writer thread");
        (Writer { jobs: tx }, thread)
    }

    /// Lets the writer finish what is queued, then stop; later writes fail.
    pub async fn close(&self) {
        let _ = self
            .write(|ctx| {
                ctx.engine.stopping = true;
                Ok(())
            })
            .await;
    }

    /// Jobs waiting for the writer now (at most [`QUEUE`]).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Runs `f` in the next group commit and returns its result once the commit is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let out = f(ctx);
            Box::new(move |committed: Result<()>| {
                let _ = tx.send(committed.and(out));
            })
        });
        // Waits while the queue is full (see [`QUEUE`]). Never called from a job: a job runs on
        // the writer thread, which would wait for itself.
        self.jobs
            .send(job)
            .await
            .map_err(|_| Error::Internal("the node is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the writer stopped".into()))?
    }
}

/// One applied change, as the [`Projector`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Projected<'a> {
    /// Its document.
    pub doc: &'a DocId,
    /// The document's name.
    pub id: &'a str,
    /// The change.
    pub change: &'a Change,
    /// Who signed it, as `members` stood at the heads it named.
    pub signer: &'a Signer,
    /// The document's heads before and after it (for a batch of a ledger's changes, the
    /// heads of the batch).
    pub before: &'a [ChangeHash],
    /// See `before`.
    pub after: &'a [ChangeHash],
    /// Made on this node (not from a peer, a backup or a test).
    pub local: bool,
}

/// What the domain plugs into the writer: everything derived from the documents, in one
/// dispatch the apply path, a revocation's rebuild, `tillmesh reindex` and the migrations'
/// rebuilds all go through (`domain::reindex::Projections`). The writer knows no projection.
pub trait Projector: Send + Sync + 'static {
    /// Updates the projections for one applied change, in its transaction. An error other
    /// than [`Error::Store`] is an entry the projections refuse (hostile data or a bug): it is
    /// logged and the change stays; a store error fails the batch.
    fn project(&self, ctx: &mut Ctx<'_>, change: &Projected<'_>) -> Result<()>;
    /// The audit row and the alerts of one applied change; an error fails the batch.
    fn record(&self, ctx: &mut Ctx<'_>, change: &Projected<'_>) -> Result<()>;
    /// Work deferred to the end of a batch (FIFO cost) within `budget` (`None`: all of it);
    /// whether all of it was done.
    fn before_commit(&self, tx: &WriteTransaction, budget: Option<u64>) -> Result<bool>;
    /// Rebuilds every projection from the stored documents and envelopes.
    fn reindex(&self, tx: &WriteTransaction) -> Result<ReindexReport>;
    /// Rebuilds the audit trail's secondary indexes from its rows.
    fn reindex_audit(&self, tx: &WriteTransaction) -> Result<()>;
}

/// Why a relay's replica refuses a change signed on the device's own account.
pub const RELAY_REFUSES: &str = "this is the relay, which never writes shop data on its own \
     account: sell, count stock, take deliveries and run shifts on a till in the shop";

/// Everything the writer thread owns.
pub struct Engine {
    store: Store,
    projector: Arc<dyn Projector>,
    shared: Arc<Shared>,
    /// This device's key and id.
    pub device_key: SigningKey,
    /// This device's id.
    pub device_id: String,
    actor: ActorId,
    docs: HashMap<String, AutoCommit>,
    /// Verified and stored remote ledger changes not yet applied to their loaded document:
    /// Automerge 0.12 walks the whole map on every `apply_changes`, so changes to one document
    /// are applied together, once per batch (or as soon as anything reads the document).
    pending: HashMap<String, Pending>,
    trust_cache: HashMap<Vec<ChangeHash>, Arc<Trust>>,
    /// What this node pinned about its shop (genesis, devices admitted before protocol 2).
    anchor: Anchor,
    stopping: bool,
    /// When the oldest commit not yet synced to disk was made.
    unsynced_since: Option<std::time::Instant>,
    /// When the last batch holding peers' changes only was committed.
    last_relaxed: Option<std::time::Instant>,
    /// When the writer's timer last ran a batch of its own (see [`Engine::timer_due`]).
    last_timer: Option<std::time::Instant>,
    /// What is held, counted per document and per peer (loaded from `HELD_META` on first use).
    held: Option<HeldCounts>,
    /// Changes stored since the last retry of held envelopes: `retry_held` retries exactly the
    /// envelopes waiting for them (`HELD_WAITING`).
    arrived: Vec<[u8; 32]>,
    /// What is in quarantine, counted per signer (loaded from `QUARANTINE_BY_SIGNER` on first
    /// use).
    quarantined: Option<QuarantineCounts>,
}

/// What is known of a held envelope besides its bytes (the `HELD_META` table).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HeldMeta {
    /// Its document.
    pub doc: String,
    /// The peer it came from (`""`: a backup or a local import).
    pub from: String,
    /// Size of the stored envelope.
    pub bytes: u64,
    /// When it is dropped (ms since the Unix epoch).
    pub expires: i64,
    /// The change hashes it waits for (missing dependencies or `members` heads).
    pub waits: Vec<[u8; 32]>,
}

/// Held envelopes counted for the caps (see [`MAX_HELD`]).
#[derive(Default)]
struct HeldCounts {
    total: usize,
    bytes: u64,
    by_doc: HashMap<String, usize>,
    by_peer: HashMap<String, (usize, u64)>,
}

impl HeldCounts {
    fn add(&mut self, m: &HeldMeta, sign: i64) {
        let n = |v: usize| v.saturating_add_signed(sign as isize);
        let b = |v: u64| v.saturating_add_signed(sign * m.bytes as i64);
        self.total = n(self.total);
        self.bytes = b(self.bytes);
        let d = self.by_doc.entry(m.doc.clone()).or_default();
        *d = n(*d);
        if *d == 0 {
            self.by_doc.remove(&m.doc);
        }
        let p = self.by_peer.entry(m.from.clone()).or_default();
        *p = (n(p.0), b(p.1));
        if p.0 == 0 {
            self.by_peer.remove(&m.from);
        }
    }

    /// Why one more envelope of `bytes` for `doc` from `from` may not be held, if so.
    fn full(&self, doc: &str, from: &str, bytes: u64) -> Option<&'static str> {
        let (peer_n, peer_b) = self.by_peer.get(from).copied().unwrap_or_default();
        if self.total >= MAX_HELD || self.bytes + bytes > MAX_HELD_BYTES {
            Some("this node holds as many waiting changes as it keeps")
        } else if peer_n >= MAX_HELD_PER_PEER || peer_b + bytes > MAX_HELD_BYTES_PER_PEER {
            Some("this node holds as many waiting changes from this peer as it keeps")
        } else if self.by_doc.get(doc).copied().unwrap_or(0) >= MAX_HELD_PER_DOC {
            Some("this node holds as many waiting changes of this document as it keeps")
        } else {
            None
        }
    }
}

/// Remote changes of one document waiting to be applied to it (see [`Engine::pending`]).
#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    hashes: HashSet<ChangeHash>,
    /// The document's heads with these changes.
    heads: Vec<ChangeHash>,
    /// Authors of the actors these changes introduce.
    authors: HashMap<automerge::ActorId, Vec<u8>>,
}

impl Engine {
    /// An engine over `store` for the device with `device_key`; a fresh Automerge actor for
    /// this session (reusing an actor after data loss would break Automerge).
    pub fn new(
        store: Store,
        shared: Arc<Shared>,
        device_key: SigningKey,
        projector: Arc<dyn Projector>,
    ) -> Result<Engine> {
        rebuild(&store, &*projector)?;
        let anchor = Anchor::from_meta(
            store.meta(meta::GENESIS)?.as_deref(),
            store.meta(meta::LEGACY_DEVICES)?.as_deref(),
        );
        Ok(Engine {
            device_id: crate::identity::device_id(&device_key.verifying_key()),
            store,
            projector,
            shared,
            device_key,
            actor: ActorId::from(crate::identity::random_bytes::<16>()),
            docs: HashMap::new(),
            pending: HashMap::new(),
            trust_cache: HashMap::new(),
            anchor,
            stopping: false,
            unsynced_since: None,
            last_relaxed: None,
            last_timer: None,
            held: None,
            arrived: Vec::new(),
            quarantined: None,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        // The writer's own clock: it waits for a job only until something it committed must be
        // synced or the deferred FIFO work is due, then commits an empty durable batch itself.
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("building the writer's timer");
        while !self.stopping {
            let first = match self.timer_due() {
                None => clock.block_on(rx.recv()),
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    // Inside the runtime: the timeout's timer needs its clock.
                    match clock.block_on(async { tokio::time::timeout_at(at, rx.recv()).await }) {
                        Ok(job) => job,
                        Err(_elapsed) => {
                            self.last_timer = Some(std::time::Instant::now());
                            // A job does not call `relaxed`: its batch syncs to disk, and, once
                            // peers' changes stopped arriving, does the FIFO work that waited.
                            let noop: Job = Box::new(|_| Box::new(|_| {}));
                            Some(noop)
                        }
                    }
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
    }

    /// When a commit of peers' changes must be synced to disk: [`SYNC_AFTER`] after the oldest
    /// unsynced one.
    fn sync_due(&self) -> Option<std::time::Instant> {
        self.unsynced_since.map(|t| t + SYNC_AFTER)
    }

    /// When the writer commits an empty durable batch if no job came by then: when a sync is
    /// due, or when the FIFO work deferred while peers' changes arrived ([`FIFO_BUDGET`]) may
    /// run, [`FIFO_QUIET`] after the last of them. Not sooner than [`SYNC_AFTER`] after its last
    /// one, so a store that fails to commit is retried, not spun on.
    fn timer_due(&self) -> Option<std::time::Instant> {
        let deferred = self
            .shared
            .fifo_deferred
            .load(std::sync::atomic::Ordering::Relaxed);
        let fifo = deferred.then(|| {
            self.last_relaxed
                .map_or_else(std::time::Instant::now, |t| t + FIFO_QUIET)
        });
        let due = self.sync_due().into_iter().chain(fifo).min()?;
        Some(self.last_timer.map_or(due, |t| due.max(t + SYNC_AFTER)))
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let mut tx = match self.store.db().begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the jobs drops their reply senders: every caller gets an error.
                tracing::error!(
                    "cannot begin a write transaction ({} jobs refused): {e}",
                    batch.len()
                );
                return;
            }
        };
        let mut finishers = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut outbox = Vec::new();
        let mut touched = HashSet::new();
        let mut poisoned = None;
        let mut shop_changed = false;
        let mut durable = false;
        let mut relaxed_jobs = false;
        for job in batch {
            let mut ctx = Ctx {
                engine: self,
                tx: &tx,
                events: Vec::new(),
                outbox: Vec::new(),
                touched: HashSet::new(),
                poisoned: None,
                shop_changed: false,
                durable: true,
                from: String::new(),
            };
            let finish = job(&mut ctx);
            let Ctx {
                events: ev,
                outbox: ob,
                touched: t,
                poisoned: p,
                shop_changed: s,
                durable: d,
                ..
            } = ctx;
            durable |= d;
            relaxed_jobs |= !d;
            events.extend(ev);
            outbox.extend(ob);
            touched.extend(t);
            shop_changed |= s;
            if poisoned.is_none() {
                poisoned = p;
            }
            finishers.push(finish);
        }
        self.arrived.clear();
        if relaxed_jobs {
            self.last_relaxed = Some(std::time::Instant::now());
        }
        let quiet = !relaxed_jobs && self.last_relaxed.is_none_or(|t| t.elapsed() >= FIFO_QUIET);
        let budget = if quiet { None } else { Some(FIFO_BUDGET) };
        if poisoned.is_none() {
            match self
                .flush_all_pending()
                .and_then(|()| self.projector.before_commit(&tx, budget))
            {
                Ok(all) => self
                    .shared
                    .fifo_deferred
                    .store(!all, std::sync::atomic::Ordering::Relaxed),
                Err(e) => poisoned = Some(e.to_string()),
            }
        }
        // Only batches of peers' changes may skip the sync to disk, and not for long: also while
        // they keep arriving and the timer never fires.
        durable |= self
            .sync_due()
            .is_some_and(|at| std::time::Instant::now() >= at);
        let level = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        if let Err(e) = tx.set_durability(level) {
            poisoned.get_or_insert(e.to_string());
        }
        let commit_started = std::time::Instant::now();
        let outcome = match poisoned {
            Some(why) => {
                let _ = tx.abort();
                Err(Error::Store(why))
            }
            None => tx.commit().map_err(Error::from),
        };
        let commit_took = commit_started.elapsed();
        if outcome.is_ok() {
            use std::sync::atomic::Ordering::Relaxed;
            if durable {
                self.unsynced_since = None;
                self.shared.unsynced.store(false, Relaxed);
            } else {
                self.unsynced_since
                    .get_or_insert_with(std::time::Instant::now);
                self.shared.unsynced.store(true, Relaxed);
            }
        }
        match outcome {
            Ok(()) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.shared.commits.fetch_add(1, Relaxed);
                self.shared.jobs.fetch_add(finishers.len() as u64, Relaxed);
                let metrics = self.shared.metrics.clone();
                metrics.commit_done(commit_took, finishers.len() as u64);
                if shop_changed {
                    self.refresh_shop_view();
                }
                for env in outbox {
                    let _ = self.shared.outbox.send(Arc::new(env));
                }
                let mut from_peers = 0;
                for ev in events {
                    if let Event::ChangeApplied { local, .. } = &ev {
                        metrics.change_applied(*local);
                        from_peers += u64::from(!*local);
                    }
                    let _ = self.shared.events.send(ev);
                }
                if from_peers > 0 {
                    metrics.peer_changes_committed(from_peers);
                }
                for f in finishers {
                    f(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    "commit failed, {} jobs not acknowledged: {e}",
                    finishers.len()
                );
                // In-memory documents may hold changes that were not stored: reload them.
                for doc in touched {
                    self.docs.remove(&doc);
                }
                for (doc, _) in self.pending.drain() {
                    self.docs.remove(&doc);
                }
                self.held = None;
                self.quarantined = None;
                self.arrived.clear();
                self.trust_cache.clear();
                for f in finishers {
                    f(Err(Error::Store(e.to_string())));
                }
            }
        }
    }

    /// Applies pending remote changes to their document.
    fn flush_pending(&mut self, id: &str) -> Result<()> {
        let Some(p) = self.pending.remove(id) else {
            return Ok(());
        };
        let doc = self
            .docs
            .get_mut(id)
            .expect("a document with pending changes stays loaded");
        doc.apply_changes(p.changes)?;
        debug_assert_eq!(doc.get_heads(), p.heads, "pending heads of {id}");
        Ok(())
    }

    fn flush_all_pending(&mut self) -> Result<()> {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            self.flush_pending(&id)?;
        }
        Ok(())
    }

    /// Rebuilds the readers' view of `members` and `settings` from the documents.
    fn refresh_shop_view(&mut self) {
        let view = crate::docs::shop::ShopView::read(
            self.docs.get("members"),
            self.docs.get("settings"),
            self.docs.get("vault"),
            &self.device_id,
            &self.anchor,
        );
        *self
            .shared
            .shop
            .write()
            .expect("shop view lock is never poisoned") = Arc::new(view);
    }

    /// Loads `members` and `settings` so the shop view is current (at start).
    pub fn warm_up(&mut self) -> Result<()> {
        for id in ["members", "settings", "vault", "catalog"] {
            if let Some(mut doc) = self.store.load_doc(id)? {
                doc.set_actor(self.actor.clone());
                self.docs.insert(id.to_string(), doc);
            }
        }
        self.refresh_shop_view();
        Ok(())
    }
}

/// Whether a change was made here or came from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Made by this node in this job (already in the in-memory document).
    Local,
    /// From a peer, a backup, a test.
    Remote,
}

/// What applying an envelope did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Verified, applied, stored.
    New(ChangeHash),
    /// Already stored: nothing to do.
    Duplicate(ChangeHash),
    /// Signed by a key that may write it, but waiting for changes this node lacks (its
    /// dependencies, or the `members` heads it names): kept aside if the caps allow (the text
    /// says which), else not kept.
    Held(ChangeHash, String),
    /// A document of a kind this build does not know, signed by a member of the shop: kept in
    /// quarantine for a later version if the caps allow (the text says which), not applied, and
    /// not the sender's fault. The node says an update is needed.
    Kept(ChangeHash, String),
}

/// One job's view of the writer: the open write transaction and the loaded documents.
pub struct Ctx<'a> {
    engine: &'a mut Engine,
    /// The batch's write transaction.
    pub tx: &'a WriteTransaction,
    events: Vec<Event>,
    outbox: Vec<Vec<u8>>,
    touched: HashSet<String>,
    poisoned: Option<String>,
    shop_changed: bool,
    durable: bool,
    /// The peer the job's envelopes came from (`""`: a backup or a local import).
    from: String,
}

impl Ctx<'_> {
    /// The envelopes this job applies were forwarded by `peer` (held ones count against it).
    pub fn forwarded_by(&mut self, peer: &str) {
        self.from = peer.to_string();
    }

    /// This job only applies changes from peers: its batch may commit without syncing to disk
    /// (unless another job of the batch needs it). A crash may then lose what it applied, which
    /// costs nothing: the peers still have it and anti-entropy fetches it again. The writer
    /// syncs within [`MAX_UNSYNCED`], by itself if no job comes; local changes are always synced
    /// before they are answered.
    pub fn relaxed(&mut self) {
        self.durable = false;
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.engine.device_id
    }

    /// This device's key.
    pub fn device_key(&self) -> &SigningKey {
        &self.engine.device_key
    }

    /// Queues an event, sent once the batch commits.
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The readers' shop view as of the last commit (members and settings).
    pub fn shop(&self) -> Arc<crate::docs::shop::ShopView> {
        self.engine
            .shared
            .shop
            .read()
            .expect("shop view lock is never poisoned")
            .clone()
    }

    /// A loaded document, if it exists.
    pub fn doc(&mut self, id: &str) -> Result<Option<&mut AutoCommit>> {
        self.load(id)?;
        self.engine.flush_pending(id)?;
        Ok(self.engine.docs.get_mut(id))
    }

    fn load(&mut self, id: &str) -> Result<()> {
        if self.engine.docs.contains_key(id) {
            return Ok(());
        }
        let docs = self.tx.open_table(DOCS)?;
        let chunks = self.tx.open_table(DOC_CHUNKS)?;
        if let Some(mut doc) = load_doc(&docs, &chunks, id)? {
            doc.set_actor(self.engine.actor.clone());
            if self.engine.docs.len() >= DOC_CACHE + 4 {
                let evict: Vec<String> = self
                    .engine
                    .docs
                    .keys()
                    .filter(|k| k.starts_with("ledger/") && !self.engine.pending.contains_key(*k))
                    .take(DOC_CACHE / 2)
                    .cloned()
                    .collect();
                for k in evict {
                    self.engine.docs.remove(&k);
                }
            }
            self.engine.docs.insert(id.to_string(), doc);
        }
        Ok(())
    }

    /// Reads a `meta` value in this transaction.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let t = self.tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes a `meta` value in this transaction.
    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.tx.open_table(META)?.insert(key, value)?;
        Ok(())
    }

    /// Pins the shop's genesis (first `members` change) before applying it.
    pub fn set_genesis(&mut self, hash: ChangeHash) -> Result<()> {
        self.set_meta(meta::GENESIS, &hash.0)?;
        self.engine.anchor.genesis = Some(hash);
        self.engine.trust_cache.clear();
        self.shop_changed = true;
        Ok(())
    }

    /// Pins the genesis of a shop this node is joining (refuses a different shop), and, when
    /// the inviting device (or the backup) says which, the devices admitted before protocol 2.
    pub fn adopt_genesis(
        &mut self,
        hash: ChangeHash,
        legacy_devices: Option<&[[u8; 32]]>,
    ) -> Result<()> {
        match self.engine.anchor.genesis {
            Some(g) if g == hash => {}
            Some(_) => return Err(Error::Conflict("this node belongs to another shop".into())),
            None => self.set_genesis(hash)?,
        }
        if let Some(legacy) = legacy_devices
            && self.meta(meta::LEGACY_DEVICES)?.is_none()
        {
            let bytes = postcard::to_allocvec(&legacy.to_vec()).expect("a list of keys serializes");
            self.set_meta(meta::LEGACY_DEVICES, &bytes)?;
            self.engine.anchor.legacy_devices = legacy.iter().copied().collect();
            self.engine.trust_cache.clear();
            self.shop_changed = true;
        }
        Ok(())
    }

    /// Applies the held envelopes waiting for changes stored since the last retry (and what
    /// those unblock in turn), found by the hashes they wait for: nothing else held is read.
    pub fn retry_held(&mut self) -> Result<usize> {
        let mut applied = 0;
        self.expire_held(chrono::Utc::now().timestamp_millis())?;
        while let Some(arrived) = self.engine.arrived.pop() {
            let waiting: Vec<[u8; 32]> = {
                let mut t = self.tx.open_multimap_table(HELD_WAITING)?;
                let mut v = Vec::new();
                for row in t.remove_all(&arrived)? {
                    v.push(*row?.value());
                }
                v
            };
            for h in waiting {
                let env = {
                    let t = self.tx.open_table(HELD)?;
                    let Some(v) = t.get(&h)? else { continue };
                    Envelope::from_bytes(v.value())
                };
                match env.map(|env| self.apply_envelope(env)) {
                    Ok(Ok(Applied::New(_))) => applied += 1,
                    // Still waiting (for something else now): `hold` noted what for.
                    Ok(Ok(Applied::Held(..))) => {}
                    Ok(Ok(Applied::Duplicate(_))) => {}
                    Ok(Ok(Applied::Kept(..))) => self.unhold(&h)?,
                    // Refused now that it could be checked in full, or unreadable: dropped.
                    Ok(Err(_)) | Err(_) => self.unhold(&h)?,
                }
            }
        }
        Ok(applied)
    }

    /// The held-envelope counts, loaded on first use.
    fn held_counts(&mut self) -> Result<&mut HeldCounts> {
        if self.engine.held.is_none() {
            let mut counts = HeldCounts::default();
            for row in self.tx.open_table(HELD_META)?.iter()? {
                if let Ok(m) = postcard::from_bytes::<HeldMeta>(row?.1.value()) {
                    counts.add(&m, 1);
                }
            }
            self.engine.held = Some(counts);
        }
        Ok(self.engine.held.as_mut().expect("just loaded"))
    }

    /// Drops held envelopes whose time ran out by `now` (ms); returns how many.
    pub fn expire_held(&mut self, now: i64) -> Result<u64> {
        let expired: Vec<[u8; 32]> = {
            let t = self.tx.open_table(HELD_EXPIRY)?;
            let mut v = Vec::new();
            for row in t.range((i64::MIN, &[0u8; 32])..=(now, &[0xffu8; 32]))? {
                v.push(*row?.0.value().1);
            }
            v
        };
        for h in &expired {
            self.unhold(h)?;
        }
        Ok(expired.len() as u64)
    }

    /// Forgets a held envelope (applied, duplicate, refused or expired) and what it waited for.
    fn unhold(&mut self, hash: &[u8; 32]) -> Result<()> {
        let Some(meta) = self.tx.open_table(HELD_META)?.remove(hash)?.map(|v| {
            postcard::from_bytes::<HeldMeta>(v.value()).map_err(|e| Error::Store(e.to_string()))
        }) else {
            self.tx.open_table(HELD)?.remove(hash)?;
            return Ok(());
        };
        let meta = meta?;
        self.tx.open_table(HELD)?.remove(hash)?;
        self.tx
            .open_table(HELD_EXPIRY)?
            .remove((meta.expires, hash))?;
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        for w in &meta.waits {
            waiting.remove(w, hash)?;
        }
        if let Some(counts) = self.engine.held.as_mut() {
            counts.add(&meta, -1);
        }
        Ok(())
    }

    /// The envelope in quarantine with this change hash, if any.
    pub fn quarantined(&self, hash: &[u8; 32]) -> Result<Option<Quarantined>> {
        let t = self.tx.open_table(QUARANTINE)?;
        let Some(v) = t.get(hash)? else {
            return Ok(None);
        };
        Ok(postcard::from_bytes(v.value()).ok())
    }

    /// Every envelope in quarantine, by change hash.
    pub fn quarantine_all(&self) -> Result<Vec<([u8; 32], Quarantined)>> {
        let mut out = Vec::new();
        for row in self.tx.open_table(QUARANTINE)?.iter()? {
            let (h, v) = row?;
            if let Ok(q) = postcard::from_bytes::<Quarantined>(v.value()) {
                out.push((*h.value(), q));
            }
        }
        Ok(out)
    }

    /// The device id if `env` is a sale of a till revoked since (see
    /// [`crate::docs::trust::revoked_sale`]).
    fn revoked_sale(
        &mut self,
        env: &Envelope,
        change: &Change,
        genesis: ChangeHash,
    ) -> Option<String> {
        self.load("members").ok()?;
        let members = self.engine.docs.get_mut("members")?;
        let mut vctx = VerifyContext {
            members,
            anchor: &self.engine.anchor,
            genesis,
            cache: &mut self.engine.trust_cache,
        };
        crate::docs::trust::revoked_sale(env, change, &mut vctx)
    }

    fn quarantine_counts(&mut self) -> Result<&mut QuarantineCounts> {
        if self.engine.quarantined.is_none() {
            let mut counts = QuarantineCounts::default();
            for row in self.tx.open_table(QUARANTINE_BY_SIGNER)?.iter()? {
                let (k, v) = row?;
                counts.add(k.value().0, v.value(), 1);
            }
            self.engine.quarantined = Some(counts);
        }
        Ok(self.engine.quarantined.as_mut().expect("just loaded"))
    }

    /// Keeps a verified envelope in quarantine (see [`QuarantineReason`]) within the caps
    /// ([`MAX_QUARANTINED`]). A revoked till's sale is still refused (`Err`): it counts against
    /// the device that sent it, which stays out. A document of an unknown kind is
    /// [`Applied::Kept`].
    fn quarantine(&mut self, env: &Envelope, reason: QuarantineReason) -> Result<Applied> {
        let hash = env.decode_change()?.hash();
        let bytes = env.to_bytes();
        let full = self
            .quarantine_counts()?
            .full(&env.signer, bytes.len() as u64);
        if full.is_none() {
            let q = Quarantined {
                reason: reason.clone(),
                from: self.from.clone(),
                kept_at: chrono::Utc::now().timestamp_millis(),
                envelope: bytes.clone(),
            };
            let value = postcard::to_allocvec(&q).expect("a quarantined envelope serializes");
            self.tx
                .open_table(QUARANTINE)?
                .insert(&hash.0, value.as_slice())?;
            self.tx
                .open_table(QUARANTINE_BY_SIGNER)?
                .insert((&env.signer, &hash.0), bytes.len() as u64)?;
            self.quarantine_counts()?
                .add(&env.signer, bytes.len() as u64, 1);
            self.unhold(&hash.0)?;
        }
        let not_kept = full.map(|f| format!("; not kept: {f}")).unwrap_or_default();
        match reason {
            QuarantineReason::RevokedSale { device } => {
                tracing::warn!(%device, %hash, "a revoked till's sale{not_kept}");
                if full.is_none() {
                    self.emit(Event::RevokedSaleKept {
                        device,
                        hash: hash.to_string(),
                    });
                }
                Err(Error::Rejected(format!(
                    "signer has been revoked; its sale is kept for the owners to review{not_kept}"
                )))
            }
            QuarantineReason::UnknownKind { kind } => Ok(Applied::Kept(
                hash,
                format!("a document of kind {kind:?}, which this version does not know{not_kept}"),
            )),
        }
    }

    /// Takes an envelope out of quarantine (accepted, dismissed, or re-offered).
    pub fn unquarantine(&mut self, hash: &[u8; 32]) -> Result<Option<Quarantined>> {
        let Some(q) = self.quarantined(hash)? else {
            return Ok(None);
        };
        self.tx.open_table(QUARANTINE)?.remove(hash)?;
        if let Ok(env) = Envelope::from_bytes(&q.envelope) {
            let removed = self
                .tx
                .open_table(QUARANTINE_BY_SIGNER)?
                .remove((&env.signer, hash))?
                .map(|v| v.value());
            if let (Some(bytes), Some(counts)) = (removed, self.engine.quarantined.as_mut()) {
                counts.add(&env.signer, bytes, -1);
            }
        }
        Ok(Some(q))
    }

    /// An envelope for a document kind this build does not know, with a well-formed name:
    /// checked as far as it can be (signature; signer a member of this shop), then kept or held.
    fn apply_unknown_kind(
        &mut self,
        env: Envelope,
        change: Change,
        hash: ChangeHash,
        genesis: ChangeHash,
    ) -> Result<Applied> {
        if let Err(why) = self.may_hold(&env, &change, hash, genesis) {
            tracing::warn!(doc = %env.doc, %hash, "refused a change: {why}");
            return Err(Error::Rejected(why));
        }
        // The Automerge author of an actor's later changes is in its document, which this
        // build does not keep: only the first change's is checked here; the version that knows
        // the kind verifies the kept envelope in full.
        let author = match change.seq() {
            1 => change.author().map(|a| a.as_bytes().to_vec()),
            _ => Some(env.signer.to_vec()),
        };
        self.load("members")?;
        let mut scratch = AutoCommit::new();
        let members = self.engine.docs.get_mut("members").unwrap_or(&mut scratch);
        let mut vctx = VerifyContext {
            members,
            anchor: &self.engine.anchor,
            genesis,
            cache: &mut self.engine.trust_cache,
        };
        match verify(&env, &change, author.as_deref(), &mut vctx) {
            Verdict::Keep(_) => {
                let kind = crate::docs::trust::kind_of(&env.doc).to_string();
                self.quarantine(&env, QuarantineReason::UnknownKind { kind })
            }
            Verdict::Hold(why) => {
                let waits = env
                    .members_heads
                    .iter()
                    .filter(|h| vctx.members.get_change_by_hash(&ChangeHash(**h)).is_none())
                    .copied()
                    .collect();
                self.hold(&env, hash, why, waits)
            }
            Verdict::Reject(why) | Verdict::Quarantine(why) => Err(Error::Rejected(why)),
            Verdict::Accept(_) => Err(Error::Rejected(format!("unknown document {:?}", env.doc))),
        }
    }

    /// Re-offers the kept envelopes of document kinds this build knows (kept by an older
    /// version): each goes through the full verify-and-apply path, as if it had just arrived.
    /// Returns the kinds still unknown, whose envelopes stay kept. Run at every start, so
    /// replacing the binary by one that knows a kind is all an upgrade needs.
    pub fn reoffer_kept(&mut self) -> Result<std::collections::BTreeSet<String>> {
        let mut unknown = std::collections::BTreeSet::new();
        let mut known = Vec::new();
        for (h, q) in self.quarantine_all()? {
            if let QuarantineReason::UnknownKind { kind } = &q.reason {
                match Envelope::from_bytes(&q.envelope) {
                    Ok(env) if DocId::parse(&env.doc).is_ok() => known.push((h, env)),
                    Ok(_) => {
                        unknown.insert(kind.clone());
                    }
                    Err(_) => {
                        self.unquarantine(&h)?;
                    }
                }
            }
        }
        for (h, env) in known {
            self.unquarantine(&h)?;
            if let Err(e) = self.apply_envelope(env) {
                tracing::warn!(hash = %hex::encode(h), "a kept change was refused: {e}");
            }
        }
        self.retry_held()?;
        Ok(unknown)
    }

    /// Makes a change on `doc` with `edit`, signs it with `key` and applies it like any
    /// envelope. `edit` must validate before it writes: an error rolls the edit back.
    pub fn change(
        &mut self,
        doc: &DocId,
        key: &SigningKey,
        edit: impl FnOnce(&mut AutoCommit) -> Result<()>,
    ) -> Result<ChangeHash> {
        if self.shop().this_device.as_ref().is_some_and(|d| d.revoked) {
            return Err(Error::Forbidden(
                "this device was revoked by an owner of the shop: nothing recorded here would \
                 count. Ask an owner to invite it again."
                    .into(),
            ));
        }
        if key.verifying_key() == self.engine.device_key.verifying_key()
            && self
                .shop()
                .this_device
                .as_ref()
                .is_some_and(|d| d.role == crate::model::DeviceRole::Relay)
        {
            // Only tills write on a device's own account (DESIGN §6): a relay's replica takes
            // changes signed by a person's key, never its own.
            return Err(Error::Forbidden(RELAY_REFUSES.into()));
        }
        let id = doc.to_string();
        let members_heads = match self.doc("members")? {
            Some(m) => m.get_heads(),
            None => Vec::new(),
        };
        self.load(&id)?;
        self.engine.flush_pending(&id)?;
        let actor = self.engine.actor.clone();
        let am = self
            .engine
            .docs
            .entry(id.clone())
            .or_insert_with(|| AutoCommit::new().with_actor(actor));
        let fresh = am.get_heads().is_empty();
        am.set_author(Some(Author::from(key.verifying_key().to_bytes().to_vec())));
        if fresh {
            am.put(ROOT, "schema", SCHEMA_VERSION as u64)?;
        }
        if let Err(e) = edit(am) {
            am.rollback();
            if fresh {
                self.engine.docs.remove(&id);
            }
            return Err(e);
        }
        // The change carries its time and the device that made it (signed with it): the audit
        // trail reads both (domain::audit).
        let options = automerge::transaction::CommitOptions::default()
            .with_time(chrono::Utc::now().timestamp_millis())
            .with_message(format!("{{\"device\":\"{}\"}}", self.engine.device_id));
        if am.commit_with(options).is_none() {
            return Err(Error::Internal(format!("an edit of {id} changed nothing")));
        }
        let change = am
            .get_last_local_change()
            .expect("a change was just committed");
        self.touched.insert(id.clone());
        if fresh && *doc == DocId::Members && self.engine.anchor.genesis.is_none() {
            // The shop's first change: pin it as the genesis that vouches for itself.
            self.set_genesis(change.hash())?;
        }
        let env = Envelope::sign(key, &id, &change, SCHEMA_VERSION, &members_heads);
        let bytes = env.to_bytes();
        match self.apply(env, change, Origin::Local) {
            Ok(Applied::New(h)) => {
                self.outbox.push(bytes);
                Ok(h)
            }
            Ok(other) => {
                self.engine.docs.remove(&id);
                Err(Error::Internal(format!(
                    "a local change was not applied: {other:?}"
                )))
            }
            Err(e) => {
                self.engine.docs.remove(&id);
                Err(e)
            }
        }
    }

    /// Applies envelopes from elsewhere, in order, then what was held waiting for them: one
    /// result per envelope.
    pub fn apply_all(&mut self, envelopes: Vec<Envelope>) -> Result<Vec<Result<Applied>>> {
        let results = envelopes
            .into_iter()
            .map(|e| self.apply_envelope(e))
            .collect();
        self.retry_held()?;
        Ok(results)
    }

    /// Applies an envelope from elsewhere (a peer, a backup, a test) through the same path as
    /// local changes.
    pub fn apply_envelope(&mut self, env: Envelope) -> Result<Applied> {
        let change = env.decode_change()?;
        self.apply(env, change, Origin::Remote)
    }

    fn apply(&mut self, env: Envelope, change: Change, origin: Origin) -> Result<Applied> {
        let hash = change.hash();
        if self.tx.open_table(ENVELOPES)?.get(&hash.0)?.is_some() {
            self.unhold(&hash.0)?;
            return Ok(Applied::Duplicate(hash));
        }
        if origin == Origin::Remote
            && let Some(q) = self.quarantined(&hash.0)?
        {
            return match q.reason {
                QuarantineReason::UnknownKind { .. } => Ok(Applied::Kept(
                    hash,
                    "already kept for a later version".into(),
                )),
                QuarantineReason::RevokedSale { .. } => Err(Error::Rejected(
                    "signer has been revoked; this sale is already kept for the owners to review"
                        .into(),
                )),
            };
        }
        let Some(genesis) = self.engine.anchor.genesis else {
            return Err(Error::NoShop("this node has no shop yet".into()));
        };
        let doc_id = match DocId::parse(&env.doc) {
            Ok(d) => d,
            Err(_)
                if crate::docs::is_well_formed_doc_name(&env.doc) && origin == Origin::Remote =>
            {
                return self.apply_unknown_kind(env, change, hash, genesis);
            }
            Err(_) => return Err(Error::Rejected(format!("unknown document {:?}", env.doc))),
        };
        let id = env.doc.clone();

        // 1. verify, against `members` as this node has it.
        self.load(&id)?;
        let deferred = origin == Origin::Remote && matches!(doc_id, DocId::Ledger { .. });
        if !deferred {
            self.engine.flush_pending(&id)?;
        }
        if origin == Origin::Remote {
            // Nothing is held, or looked at further, before this.
            if let Err(why) = self.may_hold(&env, &change, hash, genesis) {
                tracing::warn!(doc = %id, hash = %hash, "refused a change: {why}");
                return Err(Error::Rejected(why));
            }
            // A revoked till's sale is judged before its dependencies: they are its own earlier
            // sales, in quarantine too, and would never arrive.
            if deferred && let Some(device) = self.revoked_sale(&env, &change, genesis) {
                return self.quarantine(&env, QuarantineReason::RevokedSale { device });
            }
            let pending = self.engine.pending.get(&id);
            let missing: Vec<[u8; 32]> = match self.engine.docs.get_mut(&id) {
                Some(doc) => change
                    .deps()
                    .iter()
                    .filter(|d| {
                        doc.get_change_by_hash(d).is_none()
                            && !pending.is_some_and(|p| p.hashes.contains(d))
                    })
                    .map(|d| d.0)
                    .collect(),
                None => change.deps().iter().map(|d| d.0).collect(),
            };
            if !missing.is_empty() {
                return self.hold(&env, hash, "waiting for earlier changes".into(), missing);
            }
        }
        let author: Option<Vec<u8>> = if change.seq() == 1 {
            change.author().map(|a| a.as_bytes().to_vec())
        } else {
            let pending = self
                .engine
                .pending
                .get(&id)
                .and_then(|p| p.authors.get(change.actor_id()).cloned());
            match self.engine.docs.get(&id) {
                _ if pending.is_some() => pending,
                Some(doc) if doc.get_author_for_actor(change.actor_id()).is_some() => doc
                    .get_author_for_actor(change.actor_id())
                    .map(|a| a.as_bytes().to_vec()),
                // Its dependencies are all here, and an actor's earlier changes are always
                // among the dependencies of its later ones: this change lies about its actor.
                _ => {
                    return Err(Error::Rejected(
                        "change author unknown: its actor has no earlier change among its \
                         dependencies"
                            .into(),
                    ));
                }
            }
        };
        self.load("members")?;
        let signer = {
            let mut scratch = AutoCommit::new();
            let members = self.engine.docs.get_mut("members").unwrap_or(&mut scratch);
            let mut vctx = VerifyContext {
                members,
                anchor: &self.engine.anchor,
                genesis,
                cache: &mut self.engine.trust_cache,
            };
            match verify(&env, &change, author.as_deref(), &mut vctx) {
                Verdict::Accept(s) => s,
                Verdict::Hold(why) => {
                    let waits = env
                        .members_heads
                        .iter()
                        .filter(|h| vctx.members.get_change_by_hash(&ChangeHash(**h)).is_none())
                        .copied()
                        .collect();
                    return self.hold(&env, hash, why, waits);
                }
                Verdict::Reject(why) | Verdict::Keep(why) => {
                    tracing::warn!(doc = %id, hash = %hash, "refused a change: {why}");
                    return Err(Error::Rejected(why));
                }
                Verdict::Quarantine(why) => {
                    let DocId::Ledger { device, .. } = &doc_id else {
                        return Err(Error::Rejected(why));
                    };
                    let device = device.clone();
                    return self.quarantine(&env, QuarantineReason::RevokedSale { device });
                }
            }
        };

        // 2. apply to the document (a local change is already in it).
        self.load(&id)?;
        let actor = self.engine.actor.clone();
        let am = self
            .engine
            .docs
            .entry(id.clone())
            .or_insert_with(|| AutoCommit::new().with_actor(actor));
        let (before, after): (Vec<ChangeHash>, Vec<ChangeHash>) = match origin {
            Origin::Local => (change.deps().to_vec(), am.get_heads()),
            Origin::Remote if deferred => {
                // Stored now, applied to the document with the others of this batch.
                let p = self.engine.pending.entry(id.clone()).or_default();
                if p.changes.is_empty() {
                    p.heads = am.get_heads();
                }
                let before = p.heads.clone();
                let mut after: Vec<ChangeHash> = before
                    .iter()
                    .filter(|h| !change.deps().contains(h))
                    .copied()
                    .collect();
                after.push(hash);
                after.sort_unstable();
                if let Some(a) = &author
                    && change.seq() == 1
                {
                    p.authors.insert(change.actor_id().clone(), a.clone());
                }
                p.heads = after.clone();
                p.hashes.insert(hash);
                p.changes.push(change.clone());
                self.touched.insert(id.clone());
                (before, after)
            }
            Origin::Remote => {
                let missing: Vec<[u8; 32]> = change
                    .deps()
                    .iter()
                    .filter(|d| am.get_change_by_hash(d).is_none())
                    .map(|d| d.0)
                    .collect();
                if !missing.is_empty() {
                    return self.hold(&env, hash, "waiting for earlier changes".into(), missing);
                }
                let before = am.get_heads();
                self.touched.insert(id.clone());
                am.apply_changes([change.clone()])?;
                (before, am.get_heads())
            }
        };

        // 3. store: from here on a failure poisons the batch.
        let stored = self.store_change(&id, &env, &change, &after);
        if let Err(e) = stored {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        let projector = self.engine.projector.clone();
        let projected = Projected {
            doc: &doc_id,
            id: &id,
            change: &change,
            signer: &signer,
            before: &before,
            after: &after,
            local: origin == Origin::Local,
        };
        if let Err(e) = projector.project(self, &projected) {
            if !matches!(e, Error::Store(_)) {
                // A projection refusing an entry is a bug or hostile data; the change itself is
                // valid and stays, so log it rather than failing the batch.
                tracing::warn!(doc = %id, "projection skipped an entry: {e}");
            } else {
                self.poisoned = Some(e.to_string());
                return Err(e);
            }
        }
        // The audit row and the alerts of this change (domain::audit, domain::alerts).
        if let Err(e) = projector.record(self, &projected) {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        if matches!(doc_id, DocId::Members | DocId::Settings | DocId::Vault) {
            self.shop_changed = true;
            if doc_id == DocId::Members {
                self.engine.trust_cache.clear();
                if let Err(e) = self.enforce_revocations(&change) {
                    self.poisoned = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        self.emit(Event::ChangeApplied {
            doc: id,
            hash: hash.to_string(),
            local: origin == Origin::Local,
        });
        Ok(Applied::New(hash))
    }

    /// A members change that revokes a key invalidates every change by that key outside the
    /// revocation's accepted set — including ones this node applied before the revocation
    /// arrived. Those documents are rebuilt from their remaining valid envelopes (dropping also
    /// what depended on an invalid change) and the projections are rebuilt.
    fn enforce_revocations(&mut self, change: &Change) -> Result<()> {
        self.engine.flush_all_pending()?;
        let members = self
            .engine
            .docs
            .get_mut("members")
            .expect("members was just applied");
        let revoked: Vec<[u8; 32]> = crate::docs::am::root_keys_touched(members, change)
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix("revocation:")
                    .and_then(|h| hex::decode(h).ok())
            })
            .filter_map(|b| b.try_into().ok())
            .collect();
        if revoked.is_empty() {
            return Ok(());
        }
        let trust = Trust::read(
            self.engine.docs.get("members").expect("loaded"),
            None,
            &self.engine.anchor,
        );
        let mut invalid: HashMap<String, HashSet<[u8; 32]>> = HashMap::new();
        for row in self.tx.open_table(ENVELOPES)?.iter()? {
            let (h, v) = row?;
            let Ok(env) = Envelope::from_bytes(v.value()) else {
                continue;
            };
            if revoked.contains(&env.signer)
                && !trust.accepted_after_revocation(&env.signer, h.value())
            {
                invalid
                    .entry(env.doc.clone())
                    .or_default()
                    .insert(*h.value());
            }
        }
        if invalid.is_empty() {
            return Ok(());
        }
        for (doc, bad) in invalid {
            self.rebuild_without(&doc, bad)?;
        }
        self.engine.projector.clone().reindex(self.tx)?;
        Ok(())
    }

    fn rebuild_without(&mut self, id: &str, mut dropped: HashSet<[u8; 32]>) -> Result<()> {
        let hashes: Vec<[u8; 32]> = {
            let t = self.tx.open_table(DOC_CHANGES)?;
            let mut v = Vec::new();
            for row in t.range((id, 0)..=(id, u64::MAX))? {
                v.push(*row?.1.value());
            }
            v
        };
        let mut kept = Vec::new();
        {
            let envs = self.tx.open_table(ENVELOPES)?;
            for h in &hashes {
                let env = match envs.get(h)? {
                    Some(v) => Envelope::from_bytes(v.value())?,
                    None => continue,
                };
                let change = env.decode_change()?;
                if dropped.contains(h) || change.deps().iter().any(|d| dropped.contains(&d.0)) {
                    dropped.insert(*h);
                } else {
                    kept.push((*h, change, env.change));
                }
            }
        }
        let mut doc = AutoCommit::new().with_actor(self.engine.actor.clone());
        doc.apply_changes(kept.iter().map(|(_, c, _)| c.clone()))?;
        let mut changes = self.tx.open_table(DOC_CHANGES)?;
        let mut chunks = self.tx.open_table(DOC_CHUNKS)?;
        let mut docs = self.tx.open_table(DOCS)?;
        let old = read_doc_meta(&docs, id)?.unwrap_or_default();
        for n in 0..old.changes {
            changes.remove((id, n))?;
        }
        for n in old.first_chunk..old.next_chunk {
            chunks.remove((id, n))?;
        }
        for (n, (h, _, _)) in kept.iter().enumerate() {
            changes.insert((id, n as u64), h)?;
        }
        let saved = doc.save();
        chunks.insert((id, 0), saved.as_slice())?;
        let meta = DocMeta {
            heads: doc.get_heads().iter().map(|h| h.0).collect(),
            changes: kept.len() as u64,
            first_chunk: 0,
            next_chunk: 1,
        };
        docs.insert(
            id,
            postcard::to_allocvec(&meta)
                .expect("DocMeta serializes")
                .as_slice(),
        )?;
        let mut removed = Vec::new();
        {
            let mut envs = self.tx.open_table(ENVELOPES)?;
            let mut doc_digests = self.tx.open_table(DOC_DIGESTS)?;
            let mut bucket_digests = self.tx.open_table(BUCKET_DIGESTS)?;
            for h in &dropped {
                if let Some(v) = envs.remove(h)? {
                    removed.push(v.value().to_vec());
                    crate::store::xor_digest(&mut doc_digests, id, h)?;
                    crate::store::xor_digest(&mut bucket_digests, &crate::store::bucket_of(id), h)?;
                }
            }
        }
        drop((changes, chunks, docs));
        // A revoked till's sales that this node had applied before the revocation reached it
        // are not lost either: they go to quarantine, as if they had arrived after it.
        if let Some(genesis) = self.engine.anchor.genesis {
            for bytes in removed {
                let Ok(env) = Envelope::from_bytes(&bytes) else {
                    continue;
                };
                let Ok(change) = env.decode_change() else {
                    continue;
                };
                if let Some(device) = self.revoked_sale(&env, &change, genesis) {
                    let from = std::mem::take(&mut self.from);
                    let kept = self.quarantine(&env, QuarantineReason::RevokedSale { device });
                    self.from = from;
                    match kept {
                        Err(Error::Rejected(_)) | Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        tracing::warn!(doc = %id, dropped = dropped.len(), "dropped changes made invalid by a revocation");
        self.emit(Event::ChangesDropped {
            doc: id.to_string(),
            hashes: dropped.iter().map(hex::encode).collect(),
        });
        self.touched.insert(id.to_string());
        self.engine.docs.insert(id.to_string(), doc);
        Ok(())
    }

    /// What an envelope from elsewhere must show before it may be held (or checked further):
    /// a valid signature over its change hash by its signer, who is the change's author where
    /// the change names one, and who is plausible as a writer. "Plausible" (the full check is
    /// [`verify`], once nothing is missing): when this node has every `members` head the
    /// envelope names, the signer is a member at those heads and not revoked there — or the
    /// change is to `members` and may be a device admitting itself, which can only be judged
    /// with its dependencies; when a head is missing, only the signature can be checked, and
    /// the caps on holding (see [`MAX_HELD`]) bound what such envelopes cost.
    fn may_hold(
        &mut self,
        env: &Envelope,
        change: &Change,
        hash: ChangeHash,
        genesis: ChangeHash,
    ) -> std::result::Result<(), String> {
        env.verify_signature(&hash).map_err(|e| e.to_string())?;
        if change.seq() == 1
            && change.author().map(|a| a.as_bytes().to_vec()) != Some(env.signer.to_vec())
        {
            return Err("change author is not the signer".into());
        }
        let mut heads = env.members_heads();
        if heads.is_empty() {
            // Only the genesis names no members heads (see `trust::verify`).
            return if hash == genesis {
                Ok(())
            } else {
                Err("a change naming no members heads that is not the shop's genesis".into())
            };
        }
        heads.sort();
        let trust = match self.engine.trust_cache.get(&heads) {
            Some(t) => t.clone(),
            None => {
                let Some(members) = self.engine.docs.get_mut("members") else {
                    return Ok(());
                };
                if heads
                    .iter()
                    .any(|h| members.get_change_by_hash(h).is_none())
                {
                    return Ok(());
                }
                let t = Arc::new(Trust::read(members, Some(&heads), &self.engine.anchor));
                if self.engine.trust_cache.len() > 256 {
                    self.engine.trust_cache.clear();
                }
                self.engine.trust_cache.insert(heads, t.clone());
                t
            }
        };
        match trust.signer(&env.signer) {
            Some((_, false)) => Ok(()),
            Some((_, true)) => Err("signer was revoked at the heads it names".into()),
            None if env.doc == "members" => Ok(()),
            None => Err("signer is not a member at the heads it names".into()),
        }
    }

    /// Keeps a verified-so-far envelope until the changes it waits for (`waits`: change hashes)
    /// arrive, within the caps (see [`MAX_HELD`]); it expires after [`HELD_TTL_MS`].
    fn hold(
        &mut self,
        env: &Envelope,
        hash: ChangeHash,
        why: String,
        waits: Vec<[u8; 32]>,
    ) -> Result<Applied> {
        let now = chrono::Utc::now().timestamp_millis();
        self.expire_held(now)?;
        let held = self
            .tx
            .open_table(HELD_META)?
            .get(&hash.0)?
            .map(|v| postcard::from_bytes::<HeldMeta>(v.value()));
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        if let Some(Ok(mut meta)) = held {
            // Retried and still waiting, maybe for something else now.
            for w in &meta.waits {
                waiting.remove(w, &hash.0)?;
            }
            for w in &waits {
                waiting.insert(w, &hash.0)?;
            }
            meta.waits = waits;
            self.put_held_meta(&hash.0, &meta)?;
            return Ok(Applied::Held(hash, why));
        }
        drop(waiting);
        let bytes = env.to_bytes();
        let meta = HeldMeta {
            doc: env.doc.clone(),
            from: self.from.clone(),
            bytes: bytes.len() as u64,
            expires: now + HELD_TTL_MS,
            waits,
        };
        if let Some(full) = self.held_counts()?.full(&meta.doc, &meta.from, meta.bytes) {
            return Ok(Applied::Held(hash, format!("{why}; not kept: {full}")));
        }
        self.held_counts()?.add(&meta, 1);
        self.tx
            .open_table(HELD)?
            .insert(&hash.0, bytes.as_slice())?;
        self.put_held_meta(&hash.0, &meta)?;
        self.tx
            .open_table(HELD_EXPIRY)?
            .insert((meta.expires, &hash.0), ())?;
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        for w in &meta.waits {
            waiting.insert(w, &hash.0)?;
        }
        Ok(Applied::Held(hash, why))
    }

    fn put_held_meta(&mut self, hash: &[u8; 32], meta: &HeldMeta) -> Result<()> {
        let bytes = postcard::to_allocvec(meta).expect("held metadata serializes");
        self.tx
            .open_table(HELD_META)?
            .insert(hash, bytes.as_slice())?;
        Ok(())
    }

    fn store_change(
        &mut self,
        id: &str,
        env: &Envelope,
        change: &Change,
        after: &[ChangeHash],
    ) -> Result<()> {
        let hash = change.hash();
        self.tx
            .open_table(ENVELOPES)?
            .insert(&hash.0, env.to_bytes().as_slice())?;
        self.unhold(&hash.0)?;
        self.engine.arrived.push(hash.0);
        crate::store::xor_digest(&mut self.tx.open_table(DOC_DIGESTS)?, id, &hash.0)?;
        crate::store::xor_digest(
            &mut self.tx.open_table(BUCKET_DIGESTS)?,
            &crate::store::bucket_of(id),
            &hash.0,
        )?;
        let mut docs = self.tx.open_table(DOCS)?;
        let mut meta = read_doc_meta(&docs, id)?.unwrap_or_default();
        self.tx
            .open_table(DOC_CHANGES)?
            .insert((id, meta.changes), &hash.0)?;
        meta.changes += 1;
        meta.heads = after.iter().map(|h| h.0).collect();
        let mut chunks = self.tx.open_table(DOC_CHUNKS)?;
        if meta.chunk_count() + 1 >= COMPACT_AFTER_CHUNKS {
            // Compact: one saved document replaces the chunks (history is kept in it). Saved
            // without compression: it is rewritten often and deflate dominated the writer.
            self.engine.flush_pending(id)?;
            let saved = self
                .engine
                .docs
                .get_mut(id)
                .expect("the document was loaded to apply the change")
                .save_nocompress();
            for n in meta.first_chunk..meta.next_chunk {
                chunks.remove((id, n))?;
            }
            meta.first_chunk = meta.next_chunk;
            chunks.insert((id, meta.next_chunk), saved.as_slice())?;
        } else {
            chunks.insert((id, meta.next_chunk), env.change.as_slice())?;
        }
        meta.next_chunk += 1;
        docs.insert(
            id,
            postcard::to_allocvec(&meta)
                .expect("DocMeta serializes")
                .as_slice(),
        )?;
        Ok(())
    }

    /// Reads the signer's role at the current `members` (for entry-level rules).
    pub fn signer_is_person(signer: &Signer) -> bool {
        signer.person_role().is_some()
    }
}

/// Loads a document's metadata in a transaction (for projections that need counts).
pub fn doc_meta(tx: &WriteTransaction, id: &str) -> Result<Option<DocMeta>> {
    read_doc_meta(&tx.open_table(DOCS)?, id)
}

/// Does what migrations marked as due (see [`Rebuild`]), each in one transaction with the
/// clearing of its mark.
fn rebuild(store: &Store, projector: &dyn Projector) -> Result<()> {
    for what in store.rebuilds_due()? {
        let tx = store.db().begin_write()?;
        match what {
            Rebuild::Projections => {
                projector.reindex(&tx)?;
            }
            Rebuild::AuditIndexes => projector.reindex_audit(&tx)?,
            Rebuild::LegacyDevices => {
                let members = {
                    let docs = tx.open_table(DOCS)?;
                    let chunks = tx.open_table(DOC_CHUNKS)?;
                    load_doc(&docs, &chunks, "members")?
                };
                if let Some(members) = members {
                    let keys = crate::docs::members::listed_device_keys(&members);
                    let bytes = postcard::to_allocvec(&keys).expect("a list of keys serializes");
                    tx.open_table(META)?
                        .insert(meta::LEGACY_DEVICES, bytes.as_slice())?;
                }
            }
        }
        what.done(&tx)?;
        tx.commit()?;
        tracing::info!(?what, "rebuilt after a migration");
    }
    Ok(())
}

/// What `reindex` rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// Documents read.
    pub documents: u64,
    /// Ledger entries projected.
    pub entries: u64,
    /// Products projected.
    pub products: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    /// A projector that derives nothing: these tests are about the writer, not the domain.
    struct NoProjections;

    impl Projector for NoProjections {
        fn project(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
            Ok(())
        }
        fn record(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
            Ok(())
        }
        fn before_commit(&self, _: &WriteTransaction, _: Option<u64>) -> Result<bool> {
            Ok(true)
        }
        fn reindex(&self, _: &WriteTransaction) -> Result<ReindexReport> {
            Ok(ReindexReport::default())
        }
        fn reindex_audit(&self, _: &WriteTransaction) -> Result<()> {
            Ok(())
        }
    }

    /// Defers its end-of-batch work whenever the batch gives it a budget (peers' changes
    /// arriving), like the FIFO cost of a long replay.
    struct DeferringProjections;

    impl Projector for DeferringProjections {
        fn project(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
            Ok(())
        }
        fn record(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
            Ok(())
        }
        fn before_commit(&self, _: &WriteTransaction, budget: Option<u64>) -> Result<bool> {
            Ok(budget.is_none())
        }
        fn reindex(&self, _: &WriteTransaction) -> Result<ReindexReport> {
            Ok(ReindexReport::default())
        }
        fn reindex_audit(&self, _: &WriteTransaction) -> Result<()> {
            Ok(())
        }
    }

    fn writer() -> (Writer, Arc<Shared>, std::thread::JoinHandle<()>) {
        writer_with(Arc::new(NoProjections))
    }

    fn writer_with(
        projector: Arc<dyn Projector>,
    ) -> (Writer, Arc<Shared>, std::thread::JoinHandle<()>) {
        let shared = Arc::new(Shared::new(Default::default()));
        let engine = Engine::new(
            Store::memory().expect("an in-memory store"),
            shared.clone(),
            crate::identity::new_signing_key(),
            projector,
        )
        .expect("an engine");
        let (writer, thread) = Writer::spawn(engine);
        (writer, shared, thread)
    }

    async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Holds the writer thread inside a job until the returned sender is dropped or sent to.
    async fn block(writer: &Writer) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let w = writer.clone();
        let task = tokio::spawn(async move {
            w.write(move |_| {
                let _ = started_tx.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
            .expect("the blocking job commits");
        });
        started.await.expect("the writer runs the blocking job");
        (release, task)
    }

    /// A full queue refuses further jobs until there is room: the write that found it full
    /// and was given up never runs, and the queue never holds more than [`QUEUE`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_writes_wait() {
        let (writer, _shared, thread) = writer();
        let (release, blocker) = block(&writer).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let mut queued = Vec::new();
        for _ in 0..QUEUE {
            let (w, ran) = (writer.clone(), ran.clone());
            queued.push(tokio::spawn(async move {
                w.write(move |_| Ok(ran.fetch_add(1, SeqCst))).await
            }));
        }
        wait_for("the queue to fill", Duration::from_secs(10), || {
            writer.queued() == QUEUE
        })
        .await;
        // One more: its future stays pending without its job entering the queue.
        let extra_ran = Arc::new(AtomicUsize::new(0));
        let extra = {
            let extra_ran = extra_ran.clone();
            writer.write(move |_| Ok(extra_ran.fetch_add(1, SeqCst)))
        };
        let mut extra = Box::pin(extra);
        assert!(
            futures::poll!(extra.as_mut()).is_pending(),
            "a write to a full queue waits"
        );
        assert_eq!(
            writer.queued(),
            QUEUE,
            "the queue holds no more than its bound"
        );
        drop(extra);
        release.send(()).expect("the blocking job waits");
        blocker.await.expect("the blocking job ends");
        for q in queued {
            q.await
                .expect("a queued write ends")
                .expect("a queued write commits");
        }
        assert_eq!(ran.load(SeqCst), QUEUE, "every queued job ran");
        writer
            .write(|_| Ok(()))
            .await
            .expect("a later write commits");
        assert_eq!(
            extra_ran.load(SeqCst),
            0,
            "the write given up while the queue was full was never queued"
        );
        writer.close().await;
        drop(writer);
        thread.join().expect("the writer thread ends");
    }

    /// Many more concurrent writers than the queue holds all get through: none waits forever,
    /// none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_beyond_the_bound_all_complete() {
        let (writer, shared, thread) = writer();
        let (release, blocker) = block(&writer).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let n = 4 * QUEUE;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (w, ran) = (writer.clone(), ran.clone());
                tokio::spawn(async move {
                    w.write(move |_| {
                        ran.fetch_add(1, SeqCst);
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        wait_for("the queue to fill", Duration::from_secs(10), || {
            writer.queued() == QUEUE
        })
        .await;
        release.send(()).expect("the blocking job waits");
        blocker.await.expect("the blocking job ends");
        let mut seen = Vec::with_capacity(n);
        for t in tasks {
            seen.push(t.await.expect("a write ends").expect("a write commits"));
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..n).collect::<Vec<_>>(),
            "every writer got its answer"
        );
        assert_eq!(ran.load(SeqCst), n, "every job ran once");
        assert!(
            shared.jobs.load(SeqCst) == n as u64 + 1,
            "every job was acknowledged by a commit"
        );
        writer.close().await;
        drop(writer);
        thread.join().expect("the writer thread ends");
    }

    /// A commit of peers' changes made without a sync to disk is synced by the writer itself
    /// within [`MAX_UNSYNCED`], with no further job and no task outside it asking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relaxed_commit_is_synced_without_another_job() {
        let (writer, shared, thread) = writer();
        writer
            .write(|ctx| {
                ctx.relaxed();
                Ok(())
            })
            .await
            .expect("a relaxed job commits");
        let committed = Instant::now();
        assert!(
            shared.unsynced.load(SeqCst),
            "the relaxed commit was not synced"
        );
        let commits = shared.commits.load(SeqCst);
        wait_for("the writer to sync", Duration::from_secs(5), || {
            !shared.unsynced.load(SeqCst)
        })
        .await;
        assert!(
            committed.elapsed() < MAX_UNSYNCED + Duration::from_millis(250),
            "synced {:?} after the relaxed commit",
            committed.elapsed()
        );
        assert_eq!(
            shared.commits.load(SeqCst),
            commits + 1,
            "one durable commit of the writer's own synced it"
        );
        writer.close().await;
        drop(writer);
        thread.join().expect("the writer thread ends");
    }

    /// Relaxed jobs arriving without a pause (a long catch-up) never let the writer's timer
    /// fire; they must not starve the sync: every unsynced commit is followed by a durable one
    /// within [`MAX_UNSYNCED`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relaxed_jobs_without_a_pause_do_not_starve_the_sync() {
        let (writer, _shared, thread) = writer();
        // What each job saw: when it ran, and since when the writer had something unsynced.
        let seen = Arc::new(std::sync::Mutex::new(
            Vec::<(Instant, Option<Instant>)>::new(),
        ));
        let until = Instant::now() + 4 * MAX_UNSYNCED;
        let streams: Vec<_> = (0..4)
            .map(|_| {
                let (w, seen) = (writer.clone(), seen.clone());
                tokio::spawn(async move {
                    while Instant::now() < until {
                        let seen = seen.clone();
                        w.write(move |ctx| {
                            ctx.relaxed();
                            let since = ctx.engine.unsynced_since;
                            seen.lock()
                                .expect("not poisoned")
                                .push((Instant::now(), since));
                            Ok(())
                        })
                        .await
                        .expect("a relaxed job commits");
                    }
                })
            })
            .collect();
        for s in streams {
            s.await.expect("a stream of jobs ends");
        }
        let seen = seen.lock().expect("not poisoned").clone();
        let mut syncs = 0;
        for pair in seen.windows(2) {
            let [(_, Some(since)), (after, now)] = pair else {
                continue;
            };
            if now.as_ref() == Some(since) {
                continue;
            }
            // The first job to see a different state ran after the sync that ended this one.
            syncs += 1;
            assert!(
                *after - *since <= MAX_UNSYNCED,
                "a commit stayed unsynced for {:?} while jobs kept arriving",
                *after - *since
            );
        }
        assert!(syncs >= 3, "the stream was synced only {syncs} times");
        writer.close().await;
        drop(writer);
        thread.join().expect("the writer thread ends");
    }

    /// The end-of-batch work a projector deferred while peers' changes arrived is done once
    /// they stop, [`FIFO_QUIET`] later, with no further job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_work_is_done_once_peers_are_quiet() {
        let (writer, shared, thread) = writer_with(Arc::new(DeferringProjections));
        writer
            .write(|ctx| {
                ctx.relaxed();
                Ok(())
            })
            .await
            .expect("a relaxed job commits");
        let committed = Instant::now();
        assert!(shared.fifo_deferred.load(SeqCst), "the work was deferred");
        wait_for("the deferred work", Duration::from_secs(5), || {
            !shared.fifo_deferred.load(SeqCst)
        })
        .await;
        assert!(
            committed.elapsed() >= FIFO_QUIET,
            "the deferred work waited for quiet"
        );
        assert!(!shared.unsynced.load(SeqCst), "and the commit was synced");
        writer.close().await;
        drop(writer);
        thread.join().expect("the writer thread ends");
    }
}
