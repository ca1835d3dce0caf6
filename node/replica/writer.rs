//! The writer thread: its bounded queue of jobs, the group-commit batch loop and its own
//! durability timer, and the engine state it owns.

use super::*;

/// Jobs a batch may hold before it is committed.
pub(super) const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer at most; a further [`Writer::write`] waits for room
/// (backpressure) instead of growing memory without limit while the disk or a flood of peers'
/// imports outpaces the commits. Two full batches: group commit still finds a full batch waiting
/// when one ends, and what waits is bounded by this many jobs (each an API command or one import
/// of a peer's envelopes, itself bounded by the mesh's message size).
pub const QUEUE: usize = 2 * MAX_BATCH;
/// Longest a commit of changes from peers may stay unsynced to disk (see [`Ctx::relaxed`]).
pub const MAX_UNSYNCED: std::time::Duration = std::time::Duration::from_millis(500);
/// The writer commits durably once the oldest unsynced commit is this old, whether a job comes
/// or not (its own timer, see `Engine::run`): half of [`MAX_UNSYNCED`], leaving the other half
/// for the batch running at that moment and the sync itself.
pub(super) const SYNC_AFTER: std::time::Duration =
    std::time::Duration::from_millis(MAX_UNSYNCED.as_millis() as u64 / 2);
pub(super) type Finish = Box<dyn FnOnce(Result<()>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&mut Ctx<'_>) -> Finish + Send>;

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
    pub(super) jobs: mpsc::Sender<Job>,
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

/// Everything the writer thread owns.
pub struct Engine {
    pub(super) store: Store,
    pub(super) projector: Arc<dyn Projector>,
    pub(super) shared: Arc<Shared>,
    /// This device's key and id.
    pub device_key: SigningKey,
    /// This device's id.
    pub device_id: String,
    pub(super) actor: ActorId,
    pub(super) docs: HashMap<String, AutoCommit>,
    /// Verified and stored remote ledger changes not yet applied to their loaded document:
    /// Automerge 0.12 walks the whole map on every `apply_changes`, so changes to one document
    /// are applied together, once per batch (or as soon as anything reads the document).
    pub(super) pending: HashMap<String, Pending>,
    pub(super) trust_cache: HashMap<Vec<ChangeHash>, Arc<Trust>>,
    /// What this node pinned about its shop (genesis, devices admitted before protocol 2).
    pub(super) anchor: Anchor,
    pub(super) stopping: bool,
    /// When the oldest commit not yet synced to disk was made.
    pub(super) unsynced_since: Option<std::time::Instant>,
    /// When the last batch holding peers' changes only was committed.
    pub(super) last_relaxed: Option<std::time::Instant>,
    /// When the writer's timer last ran a batch of its own (see [`Engine::timer_due`]).
    pub(super) last_timer: Option<std::time::Instant>,
    /// What is held, counted per document and per peer (loaded from `HELD_META` on first use).
    pub(super) held: Option<HeldCounts>,
    /// Changes stored since the last retry of held envelopes: `retry_held` retries exactly the
    /// envelopes waiting for them (`HELD_WAITING`).
    pub(super) arrived: Vec<[u8; 32]>,
    /// What is in quarantine, counted per signer (loaded from `QUARANTINE_BY_SIGNER` on first
    /// use).
    pub(super) quarantined: Option<QuarantineCounts>,
}

/// Remote changes of one document waiting to be applied to it (see [`Engine::pending`]).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) changes: Vec<Change>,
    pub(super) hashes: HashSet<ChangeHash>,
    /// The document's heads with these changes.
    pub(super) heads: Vec<ChangeHash>,
    /// Authors of the actors these changes introduce.
    pub(super) authors: HashMap<automerge::ActorId, Vec<u8>>,
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

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
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
                            // This job does not call `relaxed`: its batch syncs to disk and, once
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
    pub(super) fn sync_due(&self) -> Option<std::time::Instant> {
        self.unsynced_since.map(|t| t + SYNC_AFTER)
    }

    /// When the writer commits an empty durable batch if no job came by then: when a sync is
    /// due, or when the FIFO work deferred while peers' changes arrived ([`FIFO_BUDGET`]) may
    /// run, [`FIFO_QUIET`] after the last of them. Not sooner than [`SYNC_AFTER`] after its last
    /// one, so a store that fails to commit is retried, not spun on.
    pub(super) fn timer_due(&self) -> Option<std::time::Instant> {
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

    pub(super) fn run_batch(&mut self, batch: Vec<Job>) {
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
                Err(Error::store("a write of this batch failed", why))
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
                    f(Err(Error::store("the commit failed", e.to_string())));
                }
            }
        }
    }

    /// Applies pending remote changes to their document.
    pub(super) fn flush_pending(&mut self, id: &str) -> Result<()> {
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

    pub(super) fn flush_all_pending(&mut self) -> Result<()> {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            self.flush_pending(&id)?;
        }
        Ok(())
    }

    /// Rebuilds the readers' view of `members` and `settings` from the documents.
    pub(super) fn refresh_shop_view(&mut self) {
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

/// Does what migrations marked as due (see [`Rebuild`]), each in one transaction with the
/// clearing of its mark.
pub(super) fn rebuild(store: &Store, projector: &dyn Projector) -> Result<()> {
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
