//! [`NodeHandle`]: cloneable access to a node's shop, what the HTTP API, the CLI, embedders
//! and tests all call. One file per area (`people`, `catalog`, `stock`, `sales`, `reports`,
//! `books`, `bookkeeping`, `documents`, `invites`, `mesh`), and `replica` / `sync`, the node as a
//! replica of the sync protocol. [`crate::node::Node`] owns one: it opens the store, starts
//! the writer, and the mesh and HTTP server above this layer.

mod bookkeeping;
mod books;
mod catalog;
pub mod demo;
mod documents;
mod invites;
mod mesh;
mod people;
mod replica;
mod reports;
mod sales;
mod stock;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use redb::ReadableTable;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::docs::Envelope;
use crate::docs::gossip_keys::GossipKey;
use crate::domain::access::{self, Access};
use crate::domain::commands::{self, PreparedPerson, ShopGenesis};
use crate::domain::{queries, shop};
use crate::error::{Error, Result};
use crate::identity;
use crate::model::*;
use crate::replica::{Shared, Writer};
use crate::store::Store;
use crate::sync::ReplicaRead;

pub use bookkeeping::CHECKPOINT_TICK;
pub(crate) use bookkeeping::spawn_checkpoints;
pub use reports::Exports;

/// The current rotation records' ids and the legacy secret, and what they derived to.
type GossipMemo = (
    (Vec<String>, Option<String>),
    std::result::Result<Option<GossipKey>, Vec<String>>,
);

struct Inner {
    data_dir: Option<PathBuf>,
    /// mDNS interfaces (None: mDNS off), also used to find the shop for a short-code join.
    mdns: Option<Vec<String>>,
    /// The pull turn: pulls take turns once their peer answered (waiting at most
    /// [`crate::sync::PULL_TURN_WAIT`]; see [`NodeHandle::pull_from`]).
    pull_gate: tokio::sync::Mutex<()>,
    /// Unfinished key-exchange runs of devices redeeming invites made here.
    redeem_runs: crate::redeem::Runs,
    /// Held while joining a shop, so the mesh starts only once the join is complete.
    joining: tokio::sync::Mutex<()>,
    /// Addresses this node joined through; the mesh dials them when it starts.
    joined_peers: std::sync::Mutex<Vec<crate::net::Multiaddr>>,
    /// The running mesh, once the node has a shop and a listen address.
    mesh: tokio::sync::RwLock<Option<Arc<crate::mesh::Mesh>>>,
    device_key: ed25519_dalek::SigningKey,
    /// Addresses peers can reach this node at (multiaddrs), set by the mesh; put in invites.
    addrs: RwLock<Vec<String>>,
    /// Needed by first-start setup and join from another device (see `api::guard`).
    setup_token: String,
    /// Set when a device of the shop speaks another sync protocol version (see
    /// [`NodeHandle::update_needed`]).
    update_needed: std::sync::Mutex<Option<String>>,
    /// The gossip key derived for the current rotation records (see [`NodeHandle::gossip_key`]).
    gossip_memo: std::sync::Mutex<Option<GossipMemo>>,
    store: Store,
    writer: Writer,
    shared: Arc<Shared>,
    device_id: String,
}

/// Cloneable access to a running node's shop: what the HTTP API, the CLI, embedders and
/// tests all call.
///
/// Commands (`async`) return once their change is durable and fail with an [`Error`] that
/// changed nothing; most take the [`Principal`] of a logged-in person, whose role decides
/// what is allowed. Queries read the latest commit without waiting for the writer; those that
/// need a role (reports, profit, the shift and refund lists, documents, the audit trail,
/// backups, [`exports`](Self::exports)) take the person too. Every role rule is one row of
/// [`crate::domain::access`], checked here, so the API and an embedder meet the same rules.
///
/// | for | methods |
/// |---|---|
/// | the shop | [`status`](Self::status), [`create_shop`](Self::create_shop), [`join`](Self::join), [`settings`](Self::settings), [`update_settings`](Self::update_settings) |
/// | logins and people | [`login_password`](Self::login_password), [`login_pin`](Self::login_pin), [`login_people`](Self::login_people), [`people`](Self::people), [`add_person`](Self::add_person), [`revoke_member`](Self::revoke_member), [`devices`](Self::devices) |
/// | the catalog | [`products`](Self::products), [`product`](Self::product), [`create_product`](Self::create_product), [`update_product`](Self::update_product) |
/// | stock | [`stock`](Self::stock), [`movements`](Self::movements), [`movements_between`](Self::movements_between), [`stock_in`](Self::stock_in), [`stock_remove`](Self::stock_remove), [`stock_adjust`](Self::stock_adjust) |
/// | sales | [`record_sale`](Self::record_sale), [`sale`](Self::sale), [`sales`](Self::sales), [`sales_page`](Self::sales_page), [`void_sale`](Self::void_sale), [`return_sale`](Self::return_sale) |
/// | reports (managers, owners) | [`daily_sales`](Self::daily_sales), [`sales_report`](Self::sales_report), [`top_sellers`](Self::top_sellers), [`staff_report`](Self::staff_report), [`tax_report`](Self::tax_report), [`payments_report`](Self::payments_report), [`inventory_value`](Self::inventory_value), [`movement_trend`](Self::movement_trend), [`exports`](Self::exports) |
/// | what happens | [`events`](Self::events) (a [`Stream`](futures::Stream)), [`subscribe`](Self::subscribe) |
/// | the mesh | [`peers`](Self::peers), [`add_peer`](Self::add_peer), [`mesh_info`](Self::mesh_info), [`create_invite`](Self::create_invite), [`block_peer`](Self::block_peer), [`unblock_peer`](Self::unblock_peer) |
/// | documents | [`documents`](Self::documents), [`document_bytes`](Self::document_bytes) (saved Automerge), [`stored_documents`](Self::stored_documents) (the device's own listing) |
/// | operations | [`metrics`](Self::metrics), [`metrics_text`](Self::metrics_text), [`writer_stats`](Self::writer_stats) |
///
/// The rest (digests, hashes, envelopes, [`import_envelopes`](Self::import_envelopes) …)
/// is what the mesh's anti-entropy ([`crate::sync`]) and backups use.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

/// The stream of [`NodeHandle::events`]: every applied change as a typed [`Event`], or a
/// [`Lagged`] when the consumer fell behind and events were skipped.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    inner: tokio_stream::wrappers::BroadcastStream<Event>,
}

/// A consumer of [`NodeHandle::events`] fell behind: this many events were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fell behind the node: {skipped} events skipped")]
pub struct Lagged {
    /// How many events were skipped.
    pub skipped: u64,
}

impl futures::Stream for EventStream {
    type Item = std::result::Result<Event, Lagged>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
        std::pin::Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| {
                item.map(|r| {
                    r.map_err(|BroadcastStreamRecvError::Lagged(skipped)| Lagged { skipped })
                })
            })
    }
}

/// Password and PIN hashes (argon2id) computed at once, in the whole process. Each password
/// hash takes 64 MiB and most of a core: without a limit, a burst of logins would take every
/// core and gigabytes of memory, and everything else (sales, `/health`) would wait behind it.
const HASHING_AT_ONCE: usize = 2;

/// Queue of the password and PIN hashes (see [`HASHING_AT_ONCE`]).
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);

/// Runs slow CPU work (argon2) on a blocking thread, at most [`HASHING_AT_ONCE`] at a time,
/// never on an async worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("the hashing queue is closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))?
}

/// What an unknown username's password is checked against, made once per process: an unknown
/// user costs the same argon2 work as a known one (timing does not reveal usernames), and
/// costs no more (no second hash to make a dummy each time).
fn dummy_sealed_key() -> Result<&'static identity::SealedKey> {
    static DUMMY: std::sync::OnceLock<identity::SealedKey> = std::sync::OnceLock::new();
    if let Some(k) = DUMMY.get() {
        return Ok(k);
    }
    let made = identity::seal_key(
        &identity::new_signing_key(),
        &hex::encode(identity::random_bytes::<16>()),
        identity::KdfParams::PASSWORD,
    )?;
    Ok(DUMMY.get_or_init(|| made))
}

/// Spends the time of a real password check, and fails (a relay's login naming no shop it
/// serves).
pub(crate) async fn dummy_password_check(password: String) {
    let _ = blocking(move || identity::unseal_key(dummy_sealed_key()?, &password)).await;
}

/// The PIN hash an unknown username's PIN is checked against (see [`dummy_sealed_key`]).
fn dummy_pin_hash() -> Result<&'static str> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let made = identity::hash_pin(&hex::encode(identity::random_bytes::<8>()))?;
    Ok(DUMMY.get_or_init(|| made))
}

/// File name of the store inside the data dir.
pub const STORE_FILE: &str = "tillmesh.redb";
/// File name of the device key inside the data dir.
pub const DEVICE_KEY_FILE: &str = "device.key";

/// What a [`NodeHandle`] is made of ([`crate::node::NodeBuilder::start`] opens them).
pub(crate) struct Parts {
    pub data_dir: Option<PathBuf>,
    pub mdns: Option<Vec<String>>,
    pub device_key: ed25519_dalek::SigningKey,
    pub store: Store,
    pub writer: Writer,
    pub shared: Arc<Shared>,
    pub device_id: String,
}

impl NodeHandle {
    /// A handle over an open store and a running writer; commits what a stopped node left
    /// to re-offer (see [`crate::replica::Ctx::reoffer_kept`]).
    pub(crate) fn new(p: Parts) -> NodeHandle {
        NodeHandle {
            inner: Arc::new(Inner {
                data_dir: p.data_dir,
                mdns: p.mdns,
                joining: Default::default(),
                pull_gate: Default::default(),
                redeem_runs: Default::default(),
                joined_peers: Default::default(),
                mesh: Default::default(),
                device_key: p.device_key,
                addrs: RwLock::new(Vec::new()),
                setup_token: hex::encode(identity::random_bytes::<10>()),
                update_needed: Default::default(),
                gossip_memo: Default::default(),
                store: p.store,
                writer: p.writer,
                shared: p.shared,
                device_id: p.device_id,
            }),
        }
    }

    /// The writer (the node closes it when it stops).
    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// What the writer shares with readers (tests watch its events).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn view(&self) -> Arc<shop::ShopView> {
        self.inner
            .shared
            .shop
            .read()
            .expect("shop view lock is never poisoned")
            .clone()
    }

    /// `members`, `settings` and `vault` as of the last commit (snapshot recipients).
    pub(crate) fn shop_view(&self) -> Arc<shop::ShopView> {
        self.view()
    }

    pub(crate) fn read(&self) -> Result<redb::ReadTransaction> {
        self.inner.store.read()
    }

    /// The store (the API keeps its login counters there).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// This device's public key.
    pub fn device_public_key(&self) -> [u8; 32] {
        self.inner.device_key.verifying_key().to_bytes()
    }

    /// This device's secret key bytes (the network identity derives from it).
    pub(crate) fn device_secret(&self) -> [u8; 32] {
        self.inner.device_key.to_bytes()
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.inner.device_id
    }

    /// Shop, device and store facts.
    pub fn status(&self) -> Result<Status> {
        let v = self.view();
        Ok(Status {
            has_shop: v.shop_id.is_some(),
            shop_id: v.shop_id,
            shop_name: v.settings.as_ref().map(|s| s.shop_name.clone()),
            device: v.this_device.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            envelopes: self.inner.store.envelope_count()?,
            documents: self.inner.store.docs()?.len() as u64,
            update_needed: self.update_needed(),
        })
    }

    /// Why an update is needed, once a device of the shop was found speaking another version
    /// of the sync protocol than this node (they cannot sync until both run the same one), or
    /// members of the shop wrote documents of a kind this version does not know (kept until
    /// then; see [`crate::replica::Applied::Kept`]).
    pub fn update_needed(&self) -> Option<String> {
        self.inner
            .update_needed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records that members of the shop wrote documents of kinds this version does not know
    /// (kept for a later version, see [`crate::replica::Applied::Kept`]).
    fn note_unknown_kinds(&self, kinds: &std::collections::BTreeSet<String>) {
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        self.note_update_needed(format!(
            "update needed: devices of the shop write documents this version of tillmesh does not \
             know ({}); they are kept, unapplied, until tillmesh is updated on this device",
            kinds.join(", ")
        ));
    }

    fn quarantine(&self) -> Result<Vec<([u8; 32], crate::replica::Quarantined)>> {
        let tx = self.read()?;
        let mut out = Vec::new();
        for row in tx.open_table(crate::store::tables::QUARANTINE)?.iter()? {
            let (h, v) = row?;
            if let Ok(q) = postcard::from_bytes(v.value()) {
                out.push((*h.value(), q));
            }
        }
        Ok(out)
    }

    /// Records that a device speaks another sync protocol version (see [`Self::update_needed`]).
    pub(crate) fn note_update_needed(&self, why: String) {
        *self
            .inner
            .update_needed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
    }

    /// Durable commits made by the writer since start, and the jobs they acknowledged
    /// (jobs / commits = how many writes share one commit).
    pub fn writer_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.shared.commits.load(Relaxed),
            self.inner.shared.jobs.load(Relaxed),
        )
    }

    /// Envelopes made on this node from now on, once committed (encoded).
    pub fn outbox(&self) -> broadcast::Receiver<Arc<Vec<u8>>> {
        self.inner.shared.outbox.subscribe()
    }

    /// Everything applied from now on, as a raw broadcast receiver (see [`Self::events`] for
    /// a [`Stream`](futures::Stream)). A receiver that falls more than 4,096 events behind
    /// gets [`broadcast::error::RecvError::Lagged`] once and then the newest events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
    }

    /// Everything applied from now on — this node's changes and its peers' — as a stream of
    /// typed [`Event`]s, in commit order.
    ///
    /// Events are delivered only after the change is durable. A consumer slower than the node
    /// by more than 4,096 events gets one `Err(`[`Lagged`]`)` saying how many it missed and
    /// then goes on with the newest: it should re-read what it shows (stock, sales …) from
    /// the handle's queries. The stream ends when the node has shut down and every handle is
    /// dropped.
    ///
    /// ```
    /// # async fn demo(h: tillmesh::NodeHandle) {
    /// use futures::StreamExt;
    /// use tillmesh::domain::model::Event;
    ///
    /// let mut events = h.events();
    /// while let Some(item) = events.next().await {
    ///     match item {
    ///         Ok(Event::SaleRecorded { receipt, total, .. }) => println!("{receipt}: {total}"),
    ///         Ok(_) => {}
    ///         Err(lagged) => println!("{lagged}; reloading"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> EventStream {
        EventStream {
            inner: tokio_stream::wrappers::BroadcastStream::new(self.subscribe()),
        }
    }

    /// The keys of the current rotation records this node holds (opened with its device key,
    /// or handed over by a peer).
    fn held_gossip_keys(&self) -> Result<Vec<(String, [u8; 32])>> {
        use crate::docs::gossip_keys;
        let view = self.view();
        let mut out = Vec::new();
        for id in gossip_keys::current(&view.gossip) {
            let key = match self.inner.store.meta(&gossip_keys::meta_key(&id))? {
                Some(b) => <[u8; 32]>::try_from(b.as_slice()).ok(),
                None => view.gossip[&id].open(self.device_id(), &self.inner.device_key),
            };
            if let Some(k) = key {
                out.push((id, k));
            }
        }
        Ok(out)
    }

    /// Derive the gossip key again at the next use (keys handed over were stored).
    fn forget_gossip_key(&self) {
        *self
            .inner
            .gossip_memo
            .lock()
            .expect("gossip memo lock is never poisoned") = None;
    }

    /// Whether the shop's device with `public_key` is revoked; None if it is not a device.
    fn device_revoked(&self, public_key: &[u8; 32]) -> Option<bool> {
        self.view().device_by_key(public_key).map(|d| d.revoked)
    }

    /// This node's counters and histograms (what `GET /metrics` serves).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.shared.metrics
    }

    /// Every metric in the Prometheus text format, gauges read now (`GET /metrics`).
    pub async fn metrics_text(&self) -> String {
        let peers = self.peers().await;
        let now = std::time::SystemTime::now();
        let started = self.metrics().started();
        let sync_lag_seconds = peers
            .iter()
            .filter(|p| p.connected && p.device_id.is_some())
            .map(
                |p| match p.last_pull.and_then(|ms| u64::try_from(ms).ok()) {
                    Some(ms) => now
                        .duration_since(
                            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                        )
                        .unwrap_or_default()
                        .as_secs_f64(),
                    None => started.elapsed().as_secs_f64(),
                },
            )
            .fold(0.0, f64::max);
        let store_bytes = self
            .inner
            .data_dir
            .as_ref()
            .and_then(|d| std::fs::metadata(d.join(STORE_FILE)).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        let gauges = crate::metrics::Gauges {
            peers_connected: peers.iter().filter(|p| p.connected).count() as u64,
            peers_known: peers.len() as u64,
            sync_lag_seconds,
            store_bytes,
            documents: self.inner.store.docs().map(|d| d.len() as u64).unwrap_or(0),
            envelopes: self.inner.store.envelope_count().unwrap_or(0),
        };
        self.metrics().render(&gauges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invites stored before failed runs were counted (no `failures`) still decode, with
    /// none; and a row of the current form is not misread as the older one.
    #[test]
    fn older_invite_rows_decode() {
        use crate::docs::admission::AdmissionCert;
        #[derive(serde::Serialize)]
        struct Old {
            cert: AdmissionCert,
            used: bool,
        }
        let cert = AdmissionCert {
            id: uuid::Uuid::new_v4(),
            shop_id: uuid::Uuid::new_v4(),
            genesis: [3; 32],
            role: DeviceRole::Till,
            name: "Till 2".into(),
            receipt_prefix: "T2".into(),
            expires_at: 1,
            countersigner: [4; 32],
            issuer: [5; 32],
            signature: vec![6; 64],
        };
        let old = postcard::to_allocvec(&Old {
            cert: cert.clone(),
            used: true,
        })
        .unwrap();
        let p = commands::PendingInvite::decode(&old).unwrap();
        assert_eq!((p.cert, p.used, p.failures), (cert.clone(), true, 0));
        let new = postcard::to_allocvec(&commands::PendingInvite {
            cert: cert.clone(),
            used: false,
            failures: 3,
        })
        .unwrap();
        let p = commands::PendingInvite::decode(&new).unwrap();
        assert_eq!((p.used, p.failures), (false, 3));
        assert!(commands::PendingInvite::decode(&old[..old.len() - 1]).is_none());
    }
}
