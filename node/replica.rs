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
//!
//! Where things are: `writer` (the [`Writer`] handle, the thread and its batch loop, the
//! durability timer, the [`Engine`] state it owns), `ctx` (a job's view, [`Ctx`], and making a
//! local change), `apply` (the verify-and-apply path, revocations enforced), `held` and
//! `quarantine` (their tables, caps and counts). This file is the surface other modules use.

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

mod apply;
mod ctx;
mod held;
mod quarantine;
#[cfg(test)]
mod tests;
mod writer;

pub use ctx::Ctx;
pub use held::{
    HELD_TTL_MS, HeldMeta, MAX_HELD, MAX_HELD_BYTES, MAX_HELD_BYTES_PER_PEER, MAX_HELD_PER_DOC,
    MAX_HELD_PER_PEER,
};
pub use quarantine::{
    MAX_QUARANTINED, MAX_QUARANTINED_BYTES, MAX_QUARANTINED_BYTES_PER_SIGNER,
    MAX_QUARANTINED_PER_SIGNER, QuarantineReason, Quarantined,
};
pub use writer::{Engine, FIFO_BUDGET, FIFO_QUIET, MAX_UNSYNCED, QUEUE, Writer};

// Shared between the writer and the apply path's parts.
use held::HeldCounts;
use quarantine::QuarantineCounts;

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

/// Loads a document's metadata in a transaction (for projections that need counts).
pub fn doc_meta(tx: &WriteTransaction, id: &str) -> Result<Option<DocMeta>> {
    read_doc_meta(&tx.open_table(DOCS)?, id)
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
