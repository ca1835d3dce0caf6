//! The running node: [`Node::builder`] opens the store, starts the writer, the mesh and the
//! HTTP server as asked, and hands out a cloneable [`NodeHandle`] with the shop's typed
//! commands, queries, [events](NodeHandle::events) and peer status.

mod books;
pub mod demo;
mod replica;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use redb::ReadableTable;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::docs::Envelope;
use crate::docs::gossip_keys::GossipKey;
use crate::domain::commands::{self, PreparedPerson, ShopGenesis};
use crate::domain::{queries, reports, shop};
use crate::error::{Error, Result};
use crate::identity;
use crate::model::*;
use crate::replica::{Applied, Engine, Shared, Writer};
use crate::store::Store;
use crate::sync::ReplicaRead;

mod bookkeeping;
pub use bookkeeping::CHECKPOINT_TICK;

/// Builds a [`Node`]: where it keeps its data, whether it syncs and how it finds peers,
/// whether it serves HTTP.
///
/// | option | default | |
/// |---|---|---|
/// | [`data_dir`](Self::data_dir) / [`memory`](Self::memory) | memory | the store file and device key, or nothing on disk |
/// | [`listen`](Self::listen) | none: no mesh | multiaddrs to listen on; the mesh starts once the node has a shop |
/// | [`peer`](Self::peer) | none | static peers, dialed and redialed |
/// | [`discovery`](Self::discovery) / [`mdns`](Self::mdns) | off | mDNS on the LAN |
/// | [`api`](Self::api) / [`http`](Self::http) / [`http_listener`](Self::http_listener) | off | the web UI, the JSON API and `/metrics` |
///
/// ```
/// # async fn demo() -> tillmesh::Result<()> {
/// let node = tillmesh::Node::builder()
///     .memory()
///     .listen("/ip4/127.0.0.1/tcp/0")
///     .discovery(false)
///     .api(true)
///     .start()
///     .await?;
/// println!("UI and API at http://{}", node.http_addr().expect("api(true)"));
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    http: Option<HttpBind>,
    listen: Vec<String>,
    peers: Vec<String>,
    mdns: Option<Vec<String>>,
    api_options: Option<crate::api::ApiOptions>,
}

#[derive(Debug)]
enum HttpBind {
    Addr(SocketAddr),
    Listener(std::net::TcpListener),
}

impl NodeBuilder {
    /// Keep everything in this directory (created if missing). Without it the node is in memory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// Keep everything in memory (tests, demos).
    pub fn memory(mut self) -> Self {
        self.data_dir = None;
        self
    }
    /// Serve the web UI and API on this address.
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(HttpBind::Addr(addr));
        self
    }
    /// Serve the web UI and API on an already-bound listener (tests bind port 0).
    pub fn http_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.http = Some(HttpBind::Listener(listener));
        self
    }

    /// Join the shop mesh, listening on this multiaddr (e.g. `/ip4/0.0.0.0/tcp/7879`;
    /// tests use `/ip4/127.0.0.1/tcp/0`). Without a listen address the node does not sync.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }
    /// A static peer to dial and keep dialing (`/ip4/…/tcp/…/p2p/<peer id>`).
    pub fn peer(mut self, addr: impl Into<String>) -> Self {
        self.peers.push(addr.into());
        self
    }
    /// Find peers by mDNS on these interfaces (empty = every non-loopback interface).
    pub fn mdns(mut self, interfaces: Vec<String>) -> Self {
        self.mdns = Some(interfaces);
        self
    }
    /// Turn discovery (mDNS on the LAN) on or off. **Off by default** for an embedded node —
    /// it then reaches only its static [`peer`](Self::peer)s and the peers that dial it;
    /// `true` uses every non-loopback interface unless [`mdns`](Self::mdns) named some. (The
    /// `tillmesh` binary turns it on unless `--no-mdns`.) Discovery needs a
    /// [`listen`](Self::listen) address, like everything on the mesh.
    pub fn discovery(mut self, on: bool) -> Self {
        self.mdns = match (on, self.mdns.take()) {
            (true, interfaces) => Some(interfaces.unwrap_or_default()),
            (false, _) => None,
        };
        self
    }
    /// Serve the web UI and the HTTP API (and `/metrics`) or not. **Off by default** for an
    /// embedded node: the [`NodeHandle`] is its API. `true` without an address from
    /// [`http`](Self::http) or [`http_listener`](Self::http_listener) serves on a free port of
    /// `127.0.0.1` (see [`Node::http_addr`]); `false` drops any address given before. The
    /// last of `api`, `http` and `http_listener` wins.
    pub fn api(mut self, on: bool) -> Self {
        self.http = match (on, self.http.take()) {
            (true, Some(bind)) => Some(bind),
            (true, None) => Some(HttpBind::Addr(SocketAddr::from(([127, 0, 0, 1], 0)))),
            (false, _) => None,
        };
        self
    }

    /// How the web UI and API behave (sessions, login limits, allowed host names); default
    /// [`ApiOptions::default`](crate::api::ApiOptions).
    pub fn api_options(mut self, opts: crate::api::ApiOptions) -> Self {
        self.api_options = Some(opts);
        self
    }

    /// Opens the store, starts the writer and (if asked) the HTTP server.
    pub async fn start(self) -> Result<Node> {
        let (store, device_key) = match &self.data_dir {
            Some(dir) => {
                // 0700, also for a data dir an older version made 0755: the store holds
                // PIN hashes and sealed keys, and any local user could copy it.
                crate::private_fs::private_dir(dir).map_err(|e| {
                    Error::Store(format!("cannot create data dir {}: {e}", dir.display()))
                })?;
                crate::private_fs::tighten_file(&dir.join(DEVICE_KEY_FILE))
                    .map_err(|e| Error::Store(format!("cannot protect the device key: {e}")))?;
                let key = identity::load_or_create_device_key(&dir.join(DEVICE_KEY_FILE))?;
                (Store::open(&dir.join(STORE_FILE))?, key)
            }
            None => (Store::memory()?, identity::new_signing_key()),
        };
        let shared = Arc::new(Shared::new(Default::default()));
        let mut engine = Engine::new(
            store.clone(),
            shared.clone(),
            device_key.clone(),
            Arc::new(crate::domain::reindex::Projections),
        )?;
        engine.warm_up()?;
        let device_id = engine.device_id.clone();
        let (writer, writer_thread) = Writer::spawn(engine);
        let handle = NodeHandle {
            inner: Arc::new(Inner {
                data_dir: self.data_dir.clone(),
                mdns: self.mdns.clone(),
                joining: Default::default(),
                pull_gate: Default::default(),
                redeem_runs: Default::default(),
                joined_peers: Default::default(),
                mesh: Default::default(),
                device_key,
                addrs: RwLock::new(Vec::new()),
                setup_token: hex::encode(identity::random_bytes::<10>()),
                update_needed: Default::default(),
                gossip_memo: Default::default(),
                store,
                writer,
                shared,
                device_id,
            }),
        };
        handle.reoffer_kept().await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Peers' changes may be committed without a sync to disk; sync them soon after.
        let sync_task = {
            let writer = handle.inner.writer.clone();
            let shared = handle.inner.shared.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::replica::MAX_UNSYNCED / 2);
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tick.tick() => {}
                    }
                    // An empty batch syncs to disk and, once peers' changes stopped arriving,
                    // recomputes the FIFO cost that waited (`replica::FIFO_BUDGET`).
                    if shared.unsynced.load(std::sync::atomic::Ordering::Relaxed)
                        || shared
                            .fifo_deferred
                            .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        let _ = writer.write(|_| Ok(())).await;
                    }
                }
            })
        };
        let parse = |field: &str, a: &String| {
            a.parse::<crate::net::Multiaddr>()
                .map_err(|e| Error::invalid(field, format!("{a:?} is not a multiaddr: {e}")))
        };
        let listen = self
            .listen
            .iter()
            .map(|a| parse("listen", a))
            .collect::<Result<Vec<_>>>()?;
        let peers = self
            .peers
            .iter()
            .map(|a| parse("peer", a))
            .collect::<Result<Vec<_>>>()?;
        let mut http_addr = None;
        let mut http_task = None;
        if let Some(bind) = self.http {
            let listener = match bind {
                HttpBind::Addr(a) => tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| Error::Internal(format!("cannot listen on {a}: {e}")))?,
                HttpBind::Listener(l) => l
                    .set_nonblocking(true)
                    .and_then(|_| tokio::net::TcpListener::from_std(l))
                    .map_err(|e| Error::Internal(format!("cannot use the listener: {e}")))?,
            };
            http_addr = listener.local_addr().ok();
            let router =
                crate::api::router(handle.clone(), self.api_options.clone().unwrap_or_default());
            let mut stop = stop_rx.clone();
            http_task = Some(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::api::serve(listener, router, shutdown).await {
                    tracing::error!("HTTP server failed: {e}");
                }
            }));
        }
        let checkpoint_task = bookkeeping::spawn_checkpoints(handle.clone(), stop_rx.clone());
        let mut mesh_task = None;
        if !listen.is_empty() {
            let cfg = crate::mesh::MeshConfig {
                listen,
                peers,
                mdns: self.mdns.clone(),
                ui_port: http_addr.map(|a| a.port()).unwrap_or(0),
            };
            mesh_task = Some(tokio::spawn(crate::mesh::supervise(
                handle.clone(),
                cfg,
                stop_rx.clone(),
            )));
        }
        Ok(Node {
            handle,
            sync_task: Some(sync_task),
            checkpoint_task: Some(checkpoint_task),
            mesh_task,
            http_addr,
            http_task,
            stop: stop_tx,
            writer_thread: Some(writer_thread),
        })
    }
}

/// Peers remembered in a data dir (see [`crate::mesh::PEERS_FILE`]).
pub fn remembered_peers(data_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join(crate::mesh::PEERS_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// File name of the store inside the data dir.
pub const STORE_FILE: &str = "tillmesh.redb";
/// File name of the device key inside the data dir.
pub const DEVICE_KEY_FILE: &str = "device.key";

/// A running node. Stop it with [`Node::shutdown`].
#[must_use = "a node stops serving when dropped; call shutdown().await"]
pub struct Node {
    handle: NodeHandle,
    sync_task: Option<tokio::task::JoinHandle<()>>,
    checkpoint_task: Option<tokio::task::JoinHandle<()>>,
    mesh_task: Option<tokio::task::JoinHandle<()>>,
    http_addr: Option<SocketAddr>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Start building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }
    /// A cloneable handle to the shop's commands and queries.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }
    /// Where the HTTP server listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }
    /// Stops serving (in-flight requests finish) and lets queued writes commit. The store file
    /// closes when the last [`NodeHandle`] clone is dropped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.http_task.take() {
            let _ = t.await;
        }
        if let Some(t) = self.mesh_task.take() {
            let _ = t.await;
        }
        if let Some(t) = self.sync_task.take() {
            let _ = t.await;
        }
        if let Some(t) = self.checkpoint_task.take() {
            let _ = t.await;
        }
        self.handle.inner.writer.close().await;
        if let Some(thread) = self.writer_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The current rotation records' ids and the legacy secret, and what they derived to.
type GossipMemo = (
    (Vec<String>, Option<String>),
    std::result::Result<Option<GossipKey>, Vec<String>>,
);

struct Inner {
    data_dir: Option<PathBuf>,
    /// mDNS interfaces (None: mDNS off), also used to find the shop for a short-code join.
    mdns: Option<Vec<String>>,
    /// Held by an anti-entropy pull (one at a time, see [`crate::sync::pull`]).
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
/// what is allowed. Queries read the latest commit without waiting for the writer.
///
/// | for | methods |
/// |---|---|
/// | the shop | [`status`](Self::status), [`create_shop`](Self::create_shop), [`join`](Self::join), [`settings`](Self::settings), [`update_settings`](Self::update_settings) |
/// | logins and people | [`login_password`](Self::login_password), [`login_pin`](Self::login_pin), [`login_people`](Self::login_people), [`people`](Self::people), [`add_person`](Self::add_person), [`revoke_member`](Self::revoke_member), [`devices`](Self::devices) |
/// | the catalog | [`products`](Self::products), [`product`](Self::product), [`create_product`](Self::create_product), [`update_product`](Self::update_product) |
/// | stock | [`stock`](Self::stock), [`movements`](Self::movements), [`movements_between`](Self::movements_between), [`stock_in`](Self::stock_in), [`stock_remove`](Self::stock_remove), [`stock_adjust`](Self::stock_adjust) |
/// | sales | [`record_sale`](Self::record_sale), [`sale`](Self::sale), [`sales`](Self::sales), [`sales_page`](Self::sales_page), [`void_sale`](Self::void_sale), [`return_sale`](Self::return_sale) |
/// | reports | [`daily_sales`](Self::daily_sales) |
/// | what happens | [`events`](Self::events) (a [`Stream`](futures::Stream)), [`subscribe`](Self::subscribe) |
/// | the mesh | [`peers`](Self::peers), [`add_peer`](Self::add_peer), [`mesh_info`](Self::mesh_info), [`create_invite`](Self::create_invite), [`block_peer`](Self::block_peer), [`unblock_peer`](Self::unblock_peer) |
/// | documents | [`documents`](Self::documents), [`document_bytes`](Self::document_bytes) (saved Automerge) |
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

impl NodeHandle {
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

    /// Re-offers what an older version kept (documents of kinds it did not know) to this one,
    /// at start: the kinds this version knows are verified in full and applied; the rest stay
    /// kept, and the node says an update is needed.
    async fn reoffer_kept(&self) -> Result<()> {
        if self.view().genesis.is_none() {
            return Ok(());
        }
        let unknown = self.inner.writer.write(|ctx| ctx.reoffer_kept()).await?;
        if !unknown.is_empty() {
            self.note_unknown_kinds(&unknown);
        }
        Ok(())
    }

    /// Documents of kinds this version does not know, kept in quarantine: count per kind.
    pub fn kept_unknown_kinds(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        for (_, q) in self.quarantine()? {
            if let crate::replica::QuarantineReason::UnknownKind { kind } = q.reason {
                *out.entry(kind).or_default() += 1;
            }
        }
        Ok(out)
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

    /// Sales that tills made after an owner revoked them, per device, for the owners to review
    /// (owners only; see [`crate::domain::revoked_sales`]).
    pub fn revoked_sales(
        &self,
        by: &Principal,
    ) -> Result<Vec<crate::domain::revoked_sales::RevokedDeviceSales>> {
        commands::require(by, Role::Owner, "reviewing a revoked till's sales")?;
        let quarantine = self.quarantine()?;
        let tx = self.read()?;
        let entries = tx.open_table(crate::store::tables::ENTRIES)?;
        let members = self.inner.store.load_doc("members")?;
        crate::domain::revoked_sales::list(
            &quarantine,
            |id| Ok(entries.get(id.as_u128())?.is_some()),
            &self.view(),
            members.as_ref(),
        )
    }

    /// Accepts revoked tills' sales (owners only): recorded anew, signed by the owner, once.
    pub async fn accept_revoked_sales(
        &self,
        by: &Principal,
        sel: crate::domain::revoked_sales::SelectRevokedSales,
    ) -> Result<crate::domain::revoked_sales::AcceptedRevokedSales> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| crate::domain::revoked_sales::accept(ctx, &by, sel))
            .await
    }

    /// Dismisses revoked tills' sales on this node (owners only); returns how many.
    pub async fn dismiss_revoked_sales(
        &self,
        by: &Principal,
        sel: crate::domain::revoked_sales::SelectRevokedSales,
    ) -> Result<u64> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| crate::domain::revoked_sales::dismiss(ctx, &by, sel))
            .await
    }

    /// Records that a device speaks another sync protocol version (see [`Self::update_needed`]).
    pub(crate) fn note_update_needed(&self, why: String) {
        *self
            .inner
            .update_needed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
    }

    /// The one-time token that first-start setup and join over HTTP need from another device
    /// than this one, while the node has no shop (`None` once it has one). Made at start and
    /// kept in memory only: `tillmesh run` prints it with the UI's address.
    pub fn setup_token(&self) -> Option<&str> {
        self.view()
            .shop_id
            .is_none()
            .then_some(self.inner.setup_token.as_str())
    }

    /// Create the shop on a node that has none (first start / `tillmesh init`).
    pub async fn create_shop(&self, s: NewShop) -> Result<ShopCreated> {
        if self.view().shop_id.is_some() {
            return Err(Error::NoShop("this node already belongs to a shop".into()));
        }
        let shop_name = shop::non_empty("shop_name", &s.shop_name, 100)?;
        let owner_name = shop::non_empty("owner_name", &s.owner_name, 100)?;
        let username = check_username(&s.username)?;
        identity::check_password("password", &s.password)?;
        let currency = s.currency.unwrap_or_else(|| "EUR".into());
        let currency_exponent = crate::domain::money::currency_exponent("currency", &currency)?;
        let timezone = s.timezone.unwrap_or_else(|| "UTC".into());
        shop::check_timezone("timezone", &timezone)?;
        let device_name = s
            .device_name
            .map(|d| shop::non_empty("device_name", &d, 100))
            .transpose()?
            .unwrap_or_else(|| "Till 1".into());
        let owner_key = identity::new_signing_key();
        let recovery = identity::new_signing_key();
        let password = s.password;
        let sealing_key = owner_key.clone();
        let owner_sealed = blocking(move || {
            identity::seal_key(&sealing_key, &password, identity::KdfParams::PASSWORD)
        })
        .await?;
        let shop_id = Uuid::new_v4();
        let genesis = ShopGenesis {
            shop_id,
            settings: Settings {
                shop_name,
                currency: currency.to_ascii_uppercase(),
                currency_exponent,
                timezone,
                tax_mode: s.tax_mode.unwrap_or(TaxMode::Inclusive),
                rounding: Rounding::HalfUp,
                cash_rounding: 1,
                receipt_text: String::new(),
                low_stock_default: 0,
                oversell: OversellPolicy::Warn,
                max_staff: 5,
            },
            owner: Person {
                id: Uuid::new_v4(),
                name: owner_name,
                username,
                role: Role::Owner,
                public_key: Some(hex::encode(owner_key.verifying_key().as_bytes())),
                revoked: false,
            },
            owner_key,
            owner_sealed,
            recovery_public: hex::encode(recovery.verifying_key().as_bytes()),
            device_name,
        };
        self.inner
            .writer
            .write(move |ctx| commands::create_shop(ctx, genesis))
            .await?;
        Ok(ShopCreated {
            shop_id,
            recovery_key: identity::format_recovery_key(&recovery),
        })
    }

    /// Check an owner's or manager's password and unlock their person key.
    pub async fn login_password(&self, username: &str, password: &str) -> Result<Principal> {
        let view = self.view();
        let wrong = || Error::Unauthorized("wrong username or password".into());
        let found = view
            .person_by_username(username)
            .filter(|p| !p.person.revoked && p.person.role >= Role::Manager)
            .and_then(|p| {
                view.vault
                    .get(&p.person.id)
                    .map(|k| (p.person.clone(), k.clone()))
            });
        let password = password.to_string();
        let Some((person, sealed)) = found else {
            // Spend the same time as a real check, so timing does not reveal usernames.
            let _ = blocking(move || identity::unseal_key(dummy_sealed_key()?, &password)).await;
            return Err(wrong());
        };
        let key = blocking(move || identity::unseal_key(&sealed, &password))
            .await?
            .ok_or_else(wrong)?;
        let principal = Principal {
            person_id: person.id,
            name: person.name,
            username: person.username,
            role: person.role,
            key: Some(key),
        };
        if principal.role == Role::Owner && view.gossip.is_empty() {
            // A shop from before gossip keys rotated: its key comes from the shop secret, which
            // every old backup holds. The first owner to sign in rotates it once.
            let by = principal.clone();
            let rotated = self
                .inner
                .writer
                .write(move |ctx| commands::rotate_legacy_gossip_key(ctx, &by))
                .await;
            if let Err(e) = rotated {
                tracing::warn!("could not rotate the legacy gossip key: {e}");
            }
        }
        Ok(principal)
    }

    /// Check a staff PIN.
    pub async fn login_pin(&self, username: &str, pin: &str) -> Result<Principal> {
        let view = self.view();
        let wrong = || Error::Unauthorized("wrong username or PIN".into());
        let Some(rec) = view
            .person_by_username(username)
            .filter(|p| !p.person.revoked && p.person.role == Role::Staff)
            .cloned()
        else {
            let pin = pin.to_string();
            let _ = blocking(move || identity::verify_pin(&pin, dummy_pin_hash()?)).await;
            return Err(wrong());
        };
        let stored = rec.pin_hash.clone().unwrap_or_default();
        let pin = pin.to_string();
        if !blocking(move || identity::verify_pin(&pin, &stored)).await? {
            return Err(wrong());
        }
        Ok(Principal {
            person_id: rec.person.id,
            name: rec.person.name,
            username: rec.person.username,
            role: rec.person.role,
            key: None,
        })
    }

    /// Look up a principal again (for sessions): fails if the person was revoked or demoted.
    pub fn refresh_principal(&self, p: &Principal) -> Result<()> {
        match self.view().person(p.person_id) {
            Some(r) if !r.person.revoked && r.person.role == p.role => Ok(()),
            _ => Err(Error::Unauthorized("this login is no longer valid".into())),
        }
    }

    /// The shop's settings.
    pub fn settings(&self) -> Result<Settings> {
        self.view().settings().cloned()
    }

    /// Change settings (owner).
    pub async fn update_settings(&self, by: &Principal, patch: SettingsPatch) -> Result<Settings> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::update_settings(ctx, &by, patch))
            .await
    }

    /// People who may log in (not revoked), for the login screen: names, usernames and roles,
    /// nothing secret. No principal needed; the login itself still checks PIN or password.
    pub fn login_people(&self) -> Vec<Person> {
        self.view()
            .people
            .iter()
            .filter(|p| !p.person.revoked)
            .map(|p| p.person.clone())
            .collect()
    }

    /// People of the shop (manager and owner).
    pub fn people(&self, by: &Principal) -> Result<Vec<Person>> {
        commands::require(by, Role::Manager, "listing people")?;
        Ok(self
            .view()
            .people
            .iter()
            .map(|p| p.person.clone())
            .collect())
    }

    /// Add a person (owner: anyone; manager: staff).
    pub async fn add_person(&self, by: &Principal, p: NewPerson) -> Result<Person> {
        let username = check_username(&p.username)?;
        commands::check_add_person(&self.view(), by, &username, p.role)?;
        let person = Person {
            id: Uuid::new_v4(),
            name: shop::non_empty("name", &p.name, 100)?,
            username,
            role: p.role,
            public_key: None,
            revoked: false,
        };
        let prepared = match p.role {
            Role::Staff => {
                if p.password.is_some() {
                    return Err(Error::invalid(
                        "password",
                        "staff log in with a PIN, not a password",
                    ));
                }
                let pin = p
                    .pin
                    .ok_or_else(|| Error::invalid("pin", "staff need a PIN of 4–6 digits"))?;
                identity::check_pin("pin", &pin)?;
                let pin_hash = blocking(move || identity::hash_pin(&pin)).await?;
                PreparedPerson {
                    person,
                    pin_hash: Some(pin_hash),
                    sealed: None,
                }
            }
            Role::Manager | Role::Owner => {
                if p.pin.is_some() {
                    return Err(Error::invalid(
                        "pin",
                        "owners and managers log in with a password",
                    ));
                }
                let password = p.password.ok_or_else(|| {
                    Error::invalid("password", "owners and managers need a password")
                })?;
                identity::check_password("password", &password)?;
                let key = identity::new_signing_key();
                let mut person = person;
                person.public_key = Some(hex::encode(key.verifying_key().as_bytes()));
                let sealed = blocking(move || {
                    identity::seal_key(&key, &password, identity::KdfParams::PASSWORD)
                })
                .await?;
                PreparedPerson {
                    person,
                    pin_hash: None,
                    sealed: Some(sealed),
                }
            }
        };
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::add_person(ctx, &by, prepared))
            .await
    }

    /// Revoke a person (uuid) or a device (device id) (owner).
    pub async fn revoke_member(&self, by: &Principal, id: &str) -> Result<()> {
        let by = by.clone();
        let id = id.to_string();
        self.inner
            .writer
            .write(move |ctx| commands::revoke_member(ctx, &by, &id))
            .await
    }

    /// Devices of the shop.
    pub fn devices(&self) -> Result<Vec<Device>> {
        Ok(self.view().devices.clone())
    }

    /// All products, archived included.
    pub fn products(&self) -> Result<Vec<Product>> {
        queries::products(&self.read()?)
    }

    /// One product.
    pub fn product(&self, id: Uuid) -> Result<Product> {
        queries::product(&self.read()?, id)
    }

    /// Create a product (manager).
    pub async fn create_product(&self, by: &Principal, p: NewProduct) -> Result<Product> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::create_product(ctx, &by, p))
            .await
    }

    /// Edit or archive a product (manager).
    pub async fn update_product(
        &self,
        by: &Principal,
        id: Uuid,
        patch: ProductPatch,
    ) -> Result<Product> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::update_product(ctx, &by, id, patch))
            .await
    }

    /// Stock on hand of every product and variant.
    pub fn stock(&self) -> Result<Vec<StockLevel>> {
        let low = self
            .view()
            .settings
            .as_ref()
            .map(|s| s.low_stock_default)
            .unwrap_or(0);
        queries::stock(&self.read()?, low)
    }

    /// Movements of one product, oldest first.
    pub fn movements(&self, product_id: Uuid) -> Result<Vec<Movement>> {
        let tx = self.read()?;
        queries::product(&tx, product_id)?;
        queries::movements(&tx, product_id)
    }

    /// Every movement with `from <= time < to` (ms), oldest first.
    pub fn movements_between(&self, from: i64, to: i64) -> Result<Vec<Movement>> {
        queries::movements_between(&self.read()?, from, to)
    }

    /// Receive stock (staff and up).
    pub async fn stock_in(&self, by: &Principal, cmd: StockIn) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_in(ctx, &by, cmd, None))
            .await
    }

    /// Receives stock at a given time (demo data and benchmarks that need history, like
    /// [`Self::record_sale_at`]). Not part of the API.
    #[doc(hidden)]
    pub async fn stock_in_at(&self, by: &Principal, cmd: StockIn, time: i64) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_in(ctx, &by, cmd, Some(time)))
            .await
    }

    /// Remove stock with a reason (manager).
    pub async fn stock_remove(&self, by: &Principal, cmd: StockRemove) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_remove(ctx, &by, cmd))
            .await
    }

    /// Record a stock count (manager).
    pub async fn stock_adjust(&self, by: &Principal, cmd: StockAdjust) -> Result<Movement> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::stock_adjust(ctx, &by, cmd))
            .await
    }

    /// Record a sale (staff and up). Returns once it is durable.
    pub async fn record_sale(&self, by: &Principal, sale: NewSale) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::record_sale(ctx, &by, sale, None))
            .await
    }

    /// Records a sale at a given time (demo data and benchmarks that need history). Not part of
    /// the API: a shop's books take the node's own clock.
    #[doc(hidden)]
    pub async fn record_sale_at(&self, by: &Principal, sale: NewSale, time: i64) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::record_sale(ctx, &by, sale, Some(time)))
            .await
    }

    /// Every sale with `from <= time < to` (ms since epoch), oldest first.
    pub fn sales(&self, from: i64, to: i64) -> Result<Vec<Sale>> {
        Ok(queries::sales(&self.read()?, from, to, None, usize::MAX)?.0)
    }

    /// A page of at most `limit` sales with `from <= time < to`, oldest first, starting after
    /// `after`; the cursor of the next page when there are more.
    pub fn sales_page(
        &self,
        from: i64,
        to: i64,
        after: Option<queries::SalesCursor>,
        limit: usize,
    ) -> Result<(Vec<Sale>, Option<queries::SalesCursor>)> {
        queries::sales(&self.read()?, from, to, after, limit)
    }

    /// One sale.
    pub fn sale(&self, id: Uuid) -> Result<Sale> {
        commands::read_sale(&self.read()?, id)
    }

    /// Void a sale (staff: their own within 30 minutes; manager: any).
    pub async fn void_sale(&self, by: &Principal, id: Uuid, cmd: VoidSale) -> Result<Sale> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::void_sale(ctx, &by, id, cmd))
            .await
    }

    /// Return lines of a sale (manager).
    pub async fn return_sale(
        &self,
        by: &Principal,
        id: Uuid,
        cmd: NewReturn,
    ) -> Result<SaleReturn> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::return_sale(ctx, &by, id, cmd))
            .await
    }

    /// Totals per shop-local day, `from_day..=to_day` (`YYYY-MM-DD`).
    pub fn daily_sales(&self, from_day: &str, to_day: &str) -> Result<Vec<DailySales>> {
        queries::daily(&self.read()?, from_day, to_day)
    }

    /// Sales per day, ISO week or month over `range` (count, gross, discounts, refunds, tax,
    /// net; see [`reports`]). Every period of the range is listed, empty ones included.
    pub fn sales_report(
        &self,
        range: reports::DayRange,
        group: reports::Period,
    ) -> Result<reports::SalesReport> {
        reports::sales(&self.read()?, range, group)
    }

    /// The `limit` (1–100) best-selling products and variants over `range` (at most 366 days),
    /// by quantity and by revenue, returns taken off.
    pub fn top_sellers(
        &self,
        range: reports::DayRange,
        limit: usize,
    ) -> Result<reports::TopSellers> {
        reports::top_sellers(&self.read()?, range, limit)
    }

    /// Sales per person and per till over `range`.
    pub fn staff_report(&self, range: reports::DayRange) -> Result<reports::StaffReport> {
        reports::staff(&self.read()?, range, &self.view())
    }

    /// Net, tax and gross per tax rate over `range`, returns taken off.
    pub fn tax_report(&self, range: reports::DayRange) -> Result<reports::TaxReport> {
        reports::tax(&self.read()?, range)
    }

    /// Money received (net of change) and refunded per payment method over `range`.
    pub fn payments_report(&self, range: reports::DayRange) -> Result<reports::PaymentsReport> {
        reports::payments(&self.read()?, range)
    }

    /// What the stock on hand is worth, at cost and at shelf price, per category.
    pub fn inventory_value(&self) -> Result<reports::InventoryValue> {
        reports::inventory(&self.read()?)
    }

    /// Stock movements per day and kind over `range` (units in and out).
    pub fn movement_trend(&self, range: reports::DayRange) -> Result<reports::MovementTrend> {
        reports::movements(&self.read()?, range)
    }

    /// Today in the shop's time zone (UTC before the shop has settings).
    pub fn shop_today(&self) -> chrono::NaiveDate {
        let tz = self
            .view()
            .settings
            .as_ref()
            .and_then(|s| s.timezone.parse::<chrono_tz::Tz>().ok())
            .unwrap_or(chrono_tz::UTC);
        chrono::Utc::now().with_timezone(&tz).date_naive()
    }

    /// Documents this node stores (`vault` included; the API hides it).
    pub fn documents(&self) -> Result<Vec<DocumentInfo>> {
        // One read transaction: sizes match the metadata even while the writer compacts.
        let tx = self.read()?;
        let chunks = tx.open_table(crate::store::tables::DOC_CHUNKS)?;
        let docs = tx.open_table(crate::store::tables::DOCS)?;
        let mut out = Vec::new();
        for row in docs.iter()? {
            let id = row?.0.value().to_string();
            let Some(m) = crate::store::read_doc_meta(&docs, &id)? else {
                continue;
            };
            let mut size = 0u64;
            for row in chunks.range((id.as_str(), m.first_chunk)..(id.as_str(), m.next_chunk))? {
                size += row?.1.value().len() as u64;
            }
            out.push(DocumentInfo {
                kind: crate::docs::DocId::parse(&id)
                    .map(|d| d.kind().to_string())
                    .unwrap_or_default(),
                heads: m.heads.iter().map(hex::encode).collect(),
                changes: m.changes,
                size,
                id,
            });
        }
        Ok(out)
    }

    /// A document saved as Automerge bytes (manager and owner; `vault` refused).
    pub fn document_bytes(&self, by: &Principal, id: &str) -> Result<Vec<u8>> {
        commands::require(by, Role::Manager, "reading documents")?;
        let doc = crate::docs::DocId::parse(id)?;
        if doc == crate::docs::DocId::Vault {
            return Err(Error::Forbidden("the vault is never served".into()));
        }
        // A binary document cannot be filtered: `members` holds the staff's PIN hashes and
        // admission records, which managers must never read.
        if doc == crate::docs::DocId::Members {
            commands::require(by, Role::Owner, "reading the members document")?;
        }
        let mut am = self
            .inner
            .store
            .load_doc(id)?
            .ok_or_else(|| Error::NotFound(format!("no document {id}")))?;
        Ok(am.save())
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

    /// Every stored envelope (for sync, backups and tests), in no particular order.
    pub fn envelopes(&self) -> Result<Vec<Envelope>> {
        let tx = self.read()?;
        let mut out = Vec::new();
        for row in tx.open_table(crate::store::tables::ENVELOPES)?.iter()? {
            out.push(Envelope::from_bytes(row?.1.value())?);
        }
        Ok(out)
    }

    /// The stored envelopes of one document (encoded), in applied order.
    pub fn doc_envelopes(&self, doc: &str) -> Result<Vec<Vec<u8>>> {
        self.read()?.doc_envelopes(doc)
    }

    /// Envelopes held, waiting for their dependencies or the `members` changes they name.
    pub fn held_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        Ok(self.read()?.open_table(crate::store::tables::HELD)?.len()?)
    }

    /// Envelopes in quarantine (revoked tills' sales, documents of unknown kinds).
    pub fn quarantined_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        Ok(self
            .read()?
            .open_table(crate::store::tables::QUARANTINE)?
            .len()?)
    }

    /// Held envelopes by the peer that forwarded them (`""`: a backup or a local import).
    pub fn held_by_peer(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let tx = self.read()?;
        let mut out = std::collections::BTreeMap::new();
        for row in tx.open_table(crate::store::tables::HELD_META)?.iter()? {
            if let Ok(m) = postcard::from_bytes::<crate::replica::HeldMeta>(row?.1.value()) {
                *out.entry(m.from).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// Drops the held envelopes whose time ran out by `now` (ms since the Unix epoch; the
    /// writer does this with the real clock whenever it holds or retries) and returns how many.
    pub async fn expire_held(&self, now: i64) -> Result<u64> {
        self.inner
            .writer
            .write(move |ctx| ctx.expire_held(now))
            .await
    }

    /// Creates an invite for a new device (owner; managers: tills).
    pub async fn create_invite(&self, by: &Principal, req: NewInvite) -> Result<InviteCreated> {
        let by = by.clone();
        let ttl = i64::from(req.ttl_minutes.unwrap_or(15)) * 60_000;
        let (code, cert) = self
            .inner
            .writer
            .write(move |ctx| commands::create_invite(ctx, &by, req.role, &req.name, ttl))
            .await?;
        let shop_hash = crate::docs::admission::shop_hash(cert.shop_id);
        self.refresh_addrs().await;
        let ticket = crate::docs::admission::Ticket {
            code: code.clone(),
            addrs: self.addrs(),
            shop_hash,
        };
        Ok(InviteCreated {
            code,
            invite: ticket.encode(),
            expires_at: cert.expires_at,
            role: cert.role,
            name: cert.name.clone(),
            receipt_prefix: cert.receipt_prefix.clone(),
        })
    }

    /// Redeems an invite code this node issued (single use) for the device with key `device`
    /// (as its connection authenticated it): countersigns the certificate for that key.
    pub async fn redeem_invite(
        &self,
        code: &str,
        device: [u8; 32],
    ) -> Result<crate::docs::admission::Invite> {
        let code = code.to_string();
        let mut invite = self
            .inner
            .writer
            .write(move |ctx| commands::redeem_invite(ctx, &code, &device))
            .await?;
        if invite.cert().role == DeviceRole::Till {
            invite.gossip_keys = self.held_gossip_keys()?;
        }
        Ok(invite)
    }

    /// Answers a device (key `from`, as its connection authenticated it) that starts
    /// redeeming an invite with the SPAKE2 message `pake`: a run against every invite made
    /// here (see [`crate::redeem`]); `None` when this device holds no invite to offer.
    pub async fn redeem_start(
        &self,
        from: [u8; 32],
        pake: Vec<u8>,
    ) -> Result<Option<(crate::redeem::RunId, Vec<crate::redeem::Offer>)>> {
        crate::redeem::check_message(&pake)?;
        self.inner.redeem_runs.reserve(&from)?;
        let invites = self.inner.writer.write(commands::start_redeem_run).await?;
        if invites.is_empty() {
            return Ok(None);
        }
        let run = crate::identity::random_bytes::<16>();
        let me = self.device_public_key();
        let (offers, expected) = tokio::task::spawn_blocking(move || {
            crate::redeem::respond(&run, &from, &me, &pake, &invites)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        self.inner.redeem_runs.insert(run, from, expected);
        Ok(Some((run, offers)))
    }

    /// Finishes run `run` of the device `from`: if `confirm` proves it knows the code of offer
    /// `offer`, redeems that invite for its key.
    pub async fn redeem_finish(
        &self,
        from: [u8; 32],
        run: crate::redeem::RunId,
        offer: u32,
        confirm: [u8; 32],
    ) -> Result<crate::docs::admission::Invite> {
        let code = self
            .inner
            .redeem_runs
            .finish(&run, &from, offer, &confirm)?;
        self.redeem_invite(&code, from).await
    }

    /// Admits this device with a redeemed invite (its `members` must have arrived).
    pub async fn admit_self(&self, invite: crate::docs::admission::Invite) -> Result<()> {
        self.inner
            .writer
            .write(move |ctx| commands::admit_self(ctx, &invite))
            .await?;
        // It may have brought the gossip keys.
        self.forget_gossip_key();
        Ok(())
    }

    /// Joins a shop with an invite (the full `tillmesh-invite:…` string, or a short code looked
    /// up by mDNS): redeems it with the inviting node, pulls the shop, admits this device and
    /// remembers the inviting node's address (in `DATA_DIR/peers`). The node must not belong to
    /// a shop yet. A running node starts syncing as soon as this returns.
    pub async fn join(&self, invite: &str) -> Result<crate::mesh::Joined> {
        let ticket = crate::docs::admission::Ticket::parse(invite)?;
        let _joining = self.inner.joining.lock().await;
        let interfaces = self.inner.mdns.clone();
        let (joined, addr) = crate::mesh::join_with(self, &ticket, interfaces.as_deref()).await?;
        if let Some(dir) = &self.inner.data_dir {
            crate::mesh::remember_peer(dir, &addr)?;
        }
        self.inner
            .joined_peers
            .lock()
            .expect("joined peers lock")
            .push(addr);
        Ok(joined)
    }

    pub(crate) fn pull_gate(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.pull_gate
    }

    /// Waits for a join in progress to finish and takes the addresses joined through.
    pub(crate) async fn after_join(&self) -> Vec<crate::net::Multiaddr> {
        let _joining = self.inner.joining.lock().await;
        std::mem::take(&mut *self.inner.joined_peers.lock().expect("joined peers lock"))
    }

    /// Peers of the mesh with their status (empty when the node does not sync).
    pub async fn peers(&self) -> Vec<crate::mesh::PeerView> {
        match self.inner.mesh.read().await.clone() {
            Some(m) => m.peers(self).await,
            None => Vec::new(),
        }
    }

    /// Dials a peer by address and keeps it as a static peer.
    pub async fn add_peer(&self, addr: &str) -> Result<()> {
        let addr: crate::net::Multiaddr = addr
            .parse()
            .map_err(|e| Error::invalid("addr", format!("{addr:?} is not a multiaddr: {e}")))?;
        match self.inner.mesh.read().await.clone() {
            Some(m) => m.add_peer(addr).await,
            None => Err(Error::Conflict(
                "this node does not sync yet (no shop, or no --listen address)".into(),
            )),
        }
    }

    /// This node's peer id on the mesh (derived from the device key).
    pub fn peer_id(&self) -> String {
        crate::net::peer_id_from_public_key(&self.device_public_key())
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    /// Stops syncing with a peer (by peer id) until [`Self::unblock_peer`]: its connections
    /// close and it is refused both ways. Revoked devices are blocked by the mesh itself.
    pub async fn block_peer(&self, peer: &str) -> Result<()> {
        let (mesh, peer) = self.mesh_and_peer(peer).await?;
        mesh.net().block(peer).await;
        Ok(())
    }

    /// Syncs with a blocked peer again.
    pub async fn unblock_peer(&self, peer: &str) -> Result<()> {
        let (mesh, peer) = self.mesh_and_peer(peer).await?;
        mesh.net().unblock(peer).await;
        Ok(())
    }

    async fn mesh_and_peer(
        &self,
        peer: &str,
    ) -> Result<(Arc<crate::mesh::Mesh>, crate::net::PeerId)> {
        let peer = peer
            .parse()
            .map_err(|e| Error::invalid("peer", format!("{peer:?} is not a peer id: {e}")))?;
        let mesh = self.inner.mesh.read().await.clone().ok_or_else(|| {
            Error::Conflict("this node does not sync yet (no shop, or no --listen address)".into())
        })?;
        Ok((mesh, peer))
    }

    /// Re-reads the addresses the mesh listens on: a wildcard listen address (`0.0.0.0`) is
    /// bound on every interface one by one, and the mesh starts once the first is known.
    async fn refresh_addrs(&self) {
        let Some(mesh) = self.inner.mesh.read().await.clone() else {
            return;
        };
        let me = mesh.net().local_peer_id();
        let addrs: Vec<String> = mesh
            .net()
            .listen_addrs()
            .await
            .into_iter()
            .map(|a| crate::mesh::own_addr(a, me))
            .collect();
        if !addrs.is_empty() {
            self.set_addrs(addrs);
        }
    }

    /// Whether the mesh runs, with mDNS or not, and the addresses peers can add this node by.
    pub async fn mesh_info(&self) -> crate::mesh::MeshInfo {
        self.refresh_addrs().await;
        let addrs = self.addrs();
        match self.inner.mesh.read().await.clone() {
            Some(m) => crate::mesh::MeshInfo {
                running: true,
                mdns: m.mdns_enabled(),
                peer_id: Some(m.net().local_peer_id().to_string()),
                addrs,
            },
            None => crate::mesh::MeshInfo {
                running: false,
                mdns: false,
                peer_id: None,
                addrs,
            },
        }
    }

    pub(crate) async fn set_mesh(&self, mesh: Option<Arc<crate::mesh::Mesh>>) {
        *self.inner.mesh.write().await = mesh;
    }

    /// Addresses peers can reach this node at.
    pub fn addrs(&self) -> Vec<String> {
        self.inner
            .addrs
            .read()
            .expect("addrs lock is never poisoned")
            .clone()
    }

    /// Sets the addresses peers can reach this node at (the mesh does, once listening).
    pub fn set_addrs(&self, addrs: Vec<String>) {
        *self
            .inner
            .addrs
            .write()
            .expect("addrs lock is never poisoned") = addrs;
    }

    /// The shop's gossip topic, once the node belongs to a shop and holds its gossip key.
    pub fn topic(&self) -> Option<String> {
        self.gossip_key().ok().flatten().map(|k| k.topic())
    }

    /// The key the shop's gossip is sealed with now (see [`crate::docs::gossip_keys`]):
    /// `Ok(None)` before the node has a shop; `Err(ids)`: the current rotation records this
    /// device can open neither with its own key nor with a key a peer handed over.
    pub fn gossip_key(&self) -> std::result::Result<Option<GossipKey>, Vec<String>> {
        use crate::docs::gossip_keys;
        let view = self.view();
        let Some(shop_id) = view.shop_id else {
            return Ok(None);
        };
        let memo_key = (gossip_keys::current(&view.gossip), view.shop_secret.clone());
        let mut memo = self
            .inner
            .gossip_memo
            .lock()
            .expect("gossip memo lock is never poisoned");
        if let Some(m) = memo.as_ref()
            && m.0 == memo_key
        {
            return m.1.clone();
        }
        let known = memo_key
            .0
            .iter()
            .filter_map(|id| {
                let bytes = self.inner.store.meta(&gossip_keys::meta_key(id)).ok()??;
                Some((id.clone(), <[u8; 32]>::try_from(bytes.as_slice()).ok()?))
            })
            .collect();
        let derived = gossip_keys::derive(
            shop_id,
            &view.gossip,
            view.shop_secret.as_deref(),
            self.device_id(),
            &self.inner.device_key,
            &known,
        );
        *memo = Some((memo_key, derived.clone()));
        derived
    }

    /// The keys of the current rotation records this node holds, for a member peer that asks
    /// (`SyncRequest::GossipKeys`): only if it is an unrevoked till of the shop.
    pub(crate) fn gossip_keys_for(&self, peer: &[u8; 32]) -> Result<Vec<(String, [u8; 32])>> {
        let view = self.view();
        let hex_key = hex::encode(peer);
        if !view
            .devices
            .iter()
            .any(|d| d.public_key == hex_key && !d.revoked && d.role == DeviceRole::Till)
        {
            return Err(Error::Forbidden(
                "only a till of the shop gets its gossip key".into(),
            ));
        }
        self.held_gossip_keys()
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

    /// Keeps record keys a member peer handed over (only for current records this device
    /// cannot open itself; a key that does not belong is harmless: the derived key would not
    /// open any gossip, and the next rotation replaces it).
    pub(crate) async fn store_gossip_keys(&self, keys: Vec<(String, [u8; 32])>) -> Result<()> {
        use crate::docs::gossip_keys;
        let view = self.view();
        let current = gossip_keys::current(&view.gossip);
        let keep: Vec<(String, [u8; 32])> = keys
            .into_iter()
            .filter(|(id, _)| current.contains(id))
            .collect();
        if keep.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .write(move |ctx| {
                for (id, key) in &keep {
                    ctx.set_meta(&gossip_keys::meta_key(id), key)?;
                }
                Ok(())
            })
            .await?;
        self.forget_gossip_key();
        Ok(())
    }

    /// Derive the gossip key again at the next use (keys handed over were stored).
    fn forget_gossip_key(&self) {
        *self
            .inner
            .gossip_memo
            .lock()
            .expect("gossip memo lock is never poisoned") = None;
    }

    /// Whether `public_key` is a device of the shop that is not revoked.
    pub fn is_member_device(&self, public_key: &[u8; 32]) -> bool {
        self.device_revoked(public_key) == Some(false)
    }

    /// Whether `public_key` is a device of the shop that an owner revoked.
    pub fn is_revoked_device(&self, public_key: &[u8; 32]) -> bool {
        self.device_revoked(public_key) == Some(true)
    }

    /// Whether the shop's device with `public_key` is revoked; None if it is not a device.
    fn device_revoked(&self, public_key: &[u8; 32]) -> Option<bool> {
        let hex = hex::encode(public_key);
        self.view()
            .devices
            .iter()
            .find(|d| d.public_key == hex)
            .map(|d| d.revoked)
    }

    /// Whether an owner revoked this device.
    pub fn is_revoked(&self) -> bool {
        self.view().this_device.as_ref().is_some_and(|d| d.revoked)
    }

    /// (sync bucket, digest) of every bucket (see [`crate::sync::ReplicaRead`]).
    pub fn bucket_digests(&self) -> Result<Vec<(String, [u8; 32])>> {
        self.read()?.bucket_digests()
    }

    /// Digests of the documents in these sync buckets.
    pub fn doc_digests(&self, buckets: &[String]) -> Result<Vec<(String, [u8; 32])>> {
        self.read()?.doc_digests(buckets)
    }

    /// Every stored change hash of these documents.
    pub fn doc_hashes(&self, docs: &[String]) -> Result<Vec<(String, Vec<[u8; 32]>)>> {
        self.read()?.doc_hashes(docs)
    }

    /// Encoded envelopes by change hash (unknown hashes are skipped).
    pub fn envelope_bytes(&self, hashes: &[[u8; 32]]) -> Result<Vec<Vec<u8>>> {
        self.read()?.envelope_bytes(hashes)
    }

    /// The hashes this node has neither stored, held nor in quarantine.
    pub fn missing_hashes(&self, hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        self.read()?.missing_hashes(hashes)
    }

    /// The pinned hash of the shop's first `members` change (from the shop view: every sync
    /// message names it, so it is not read from the store each time).
    pub fn genesis(&self) -> Result<Option<automerge::ChangeHash>> {
        Ok(self.view().genesis)
    }

    /// Applies envelopes from elsewhere (a peer, a backup) through the verify-and-apply path;
    /// `genesis` pins the shop on a node that has none yet. Envelopes waiting for others are
    /// held and retried as the rest arrive.
    pub async fn import_envelopes(
        &self,
        genesis: Option<automerge::ChangeHash>,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Applied>>> {
        self.import_envelopes_from("", genesis, envelopes).await
    }

    /// [`import_envelopes`](Self::import_envelopes) of envelopes that `peer` (a peer id)
    /// forwarded: those held count against that peer's share (see [`crate::replica::MAX_HELD`]).
    pub async fn import_envelopes_from(
        &self,
        peer: &str,
        genesis: Option<automerge::ChangeHash>,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Applied>>> {
        let peer = peer.to_string();
        let kinds: Vec<String> = envelopes
            .iter()
            .map(|e| crate::docs::trust::kind_of(&e.doc).to_string())
            .collect();
        let results = self
            .inner
            .writer
            .write(move |ctx| {
                ctx.forwarded_by(&peer);
                match genesis {
                    Some(g) => ctx.adopt_genesis(g, None)?,
                    None => ctx.relaxed(),
                }
                ctx.apply_all(envelopes)
            })
            .await?;
        let kept: std::collections::BTreeSet<String> = kinds
            .into_iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Ok(Applied::Kept(..))))
            .map(|(k, _)| k)
            .collect();
        if !kept.is_empty() {
            self.note_unknown_kinds(&kept);
        }
        Ok(results).inspect(|results: &Vec<Result<Applied>>| {
            let metrics = &self.inner.shared.metrics;
            for r in results {
                match r {
                    Ok(Applied::Held(..)) => metrics.change_held(),
                    Err(e) => metrics.change_rejected(e),
                    Ok(_) => {}
                }
            }
        })
    }

    /// Pins the shop this node is joining or restoring: its genesis and, from the inviting
    /// device or the backup, the devices admitted before protocol 2 (see
    /// [`crate::docs::members::Anchor`]). Refuses another shop's genesis.
    pub async fn adopt_shop(
        &self,
        genesis: automerge::ChangeHash,
        legacy_devices: Vec<[u8; 32]>,
    ) -> Result<()> {
        self.inner
            .writer
            .write(move |ctx| ctx.adopt_genesis(genesis, Some(&legacy_devices)))
            .await
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

fn check_username(u: &str) -> Result<String> {
    let u = u.trim();
    if !(2..=32).contains(&u.len())
        || !u
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(Error::invalid(
            "username",
            "2–32 characters: letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(u.to_string())
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

    #[test]
    fn discovery_and_api_switches() {
        let b = Node::builder();
        assert_eq!(b.mdns, None, "mDNS is off by default");
        assert!(b.http.is_none(), "HTTP is off by default");
        let b = Node::builder().discovery(true);
        assert_eq!(b.mdns, Some(vec![]), "every non-loopback interface");
        let b = Node::builder().mdns(vec!["eth0".into()]).discovery(true);
        assert_eq!(b.mdns, Some(vec!["eth0".into()]), "named interfaces kept");
        assert_eq!(b.discovery(false).mdns, None);
        let b = Node::builder().api(true);
        assert!(matches!(b.http, Some(HttpBind::Addr(a)) if a.ip().is_loopback() && a.port() == 0));
        let addr: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        let b = Node::builder().http(addr).api(true);
        assert!(
            matches!(b.http, Some(HttpBind::Addr(a)) if a == addr),
            "api(true) keeps it"
        );
        assert!(Node::builder().http(addr).api(false).http.is_none());
    }

    /// A consumer that falls behind is told how many events it missed, then gets the newest.
    #[tokio::test]
    async fn the_event_stream_reports_lagging() {
        use futures::StreamExt;
        let node = Node::builder().memory().start().await.unwrap();
        let h = node.handle();
        let mut events = h.events();
        let shop = |n: usize| Event::ShopChanged {
            doc: format!("settings-{n}"),
        };
        // The channel holds 4096 events: send 100 more than that before reading.
        for n in 0..4196 {
            h.inner.shared.events.send(shop(n)).unwrap();
        }
        match events.next().await {
            Some(Err(lagged)) => assert_eq!(lagged, Lagged { skipped: 100 }),
            other => panic!("a Lagged first, got {other:?}"),
        }
        match events.next().await {
            Some(Ok(Event::ShopChanged { doc })) => assert_eq!(doc, "settings-100"),
            other => panic!("the oldest kept event, got {other:?}"),
        }
        drop(h);
        node.shutdown().await;
    }

    /// An invite whose time is up is refused, and stays unused.
    #[tokio::test]
    async fn an_expired_invite_is_refused() {
        let node = Node::builder().memory().start().await.unwrap();
        let h = node.handle();
        h.create_shop(NewShop {
            shop_name: "Corner Shop".into(),
            owner_name: "Olivia".into(),
            username: "olivia".into(),
            password: "correct horse battery".into(),
            currency: None,
            timezone: None,
            tax_mode: None,
            device_name: None,
        })
        .await
        .unwrap();
        let owner = h
            .login_password("olivia", "correct horse battery")
            .await
            .unwrap();
        let inv = h
            .create_invite(
                &owner,
                NewInvite {
                    role: DeviceRole::Till,
                    name: "Till 2".into(),
                    ttl_minutes: Some(1),
                },
            )
            .await
            .unwrap();
        // Let the minute pass: move the stored expiry one millisecond into the past.
        let code = crate::docs::admission::normalize_code(&inv.code).unwrap();
        let c = code.clone();
        h.inner
            .writer
            .write(move |ctx| {
                use crate::store::tables::INVITES;
                let mut t = ctx.tx.open_table(INVITES)?;
                let mut p: commands::PendingInvite =
                    postcard::from_bytes(t.get(c.as_str())?.unwrap().value()).unwrap();
                p.cert.expires_at = chrono::Utc::now().timestamp_millis() - 1;
                t.insert(c.as_str(), postcard::to_allocvec(&p).unwrap().as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let joiner = crate::identity::new_signing_key()
            .verifying_key()
            .to_bytes();
        let err = h.redeem_invite(&inv.code, joiner).await.unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = h.redeem_invite(&inv.code, joiner).await.unwrap_err();
        assert!(err.to_string().contains("expired"), "still unused: {err}");
        drop(h);
        node.shutdown().await;
    }
}
