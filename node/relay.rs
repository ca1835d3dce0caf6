//! The relay (DESIGN §6): one node on a public address that keeps a verified replica of every
//! shop that enrolled it and syncs each with that shop's devices — the tills in the shop, an
//! owner's laptop at home — so they reach each other without opening a port.
//!
//! - **One swarm, one store per shop.** The relay has one key (`DATA_DIR/relay.key`, its libp2p
//!   identity) and one libp2p swarm; each enrolled shop has its own data dir
//!   `DATA_DIR/shops/<shop id>/` (store and writer, the relay's key as its device key), opened
//!   as an ordinary [`Node`] without HTTP or mesh. Nothing of one shop is in another's store.
//! - **Enrollment** ([`enroll`], `tillmesh relay enroll --data-dir D INVITE`): an owner invites a
//!   device with role `relay`; the relay joins like any device (redeems the invite with the
//!   inviting node, pulls the shop, admits itself with the certificate) into a fresh directory
//!   that is renamed to `shops/<shop id>` once complete. A running relay picks new shops up
//!   within [`RESCAN`].
//! - **Store-and-forward, request-response only.** The relay joins no gossipsub topic. Shop
//!   devices speak the ordinary `/tillmesh/sync/3` with it: they pull from it (anti-entropy, on
//!   connect and every 10 s) and push each change they commit to it (`Offer`); the relay
//!   verifies and applies what it is offered through the shop's verify-and-apply path, and
//!   forwards what was new to the shop's other connected devices (`Offer`), so a price set on a
//!   laptop at home reaches the tills at once. The relay pulls from every connected device of a
//!   shop on connect and every [`PULL_INTERVAL`], so it catches up after being down.
//! - **Authorized per shop, isolated.** Every request names its shop (its genesis, see
//!   [`crate::sync::Frame`]) and is served only if the requesting peer's key is an admitted,
//!   unrevoked device of that shop — admitted by the one membership rule
//!   ([`crate::docs::members`]): an owner of shop B who lists a device key of shop A in B's
//!   `members` admits nobody, so the relay neither serves B to A's device nor pulls "B" from
//!   it (and A's device would answer only about A, [`SyncResponse::OtherShop`]). Anyone else
//!   (an unknown key, a revoked device, a device of another shop) gets the same answer,
//!   [`NOT_SERVED`], so a stranger cannot tell which shops the relay serves. The relay never
//!   writes shop data on its own account (its only change is its own admission).
//! - **Per-shop limits**: at most [`RelayConfig::max_requests_per_shop`] requests of one shop are
//!   served at once (more get "busy"), and a shop whose replica holds
//!   [`RelayConfig::max_changes_per_shop`] changes is refused further offers — one shop cannot
//!   exhaust the relay for the others.
//!
//! - **Circuit relay**: the relay also runs a libp2p circuit-relay v2 server for live
//!   connections between devices behind NAT, with the per-circuit limits raised from libp2p's
//!   2 minutes / 128 KiB to [`CIRCUIT_DURATION`] / [`CIRCUIT_BYTES`]. Only devices of the shops
//!   it serves may reserve a slot (listen through the relay), so circuits lead only to them;
//!   anyone may open a circuit (within libp2p's per-peer and per-IP rates), so that a device
//!   joining from elsewhere reaches the device whose invite it holds — which, like on a LAN,
//!   answers a stranger nothing but the invite. Shop devices listen through the relay as soon
//!   as they connect to it, put that address in the invites they make, and dial the shop's
//!   other devices through it (see `mesh`): gossip then flows live between a till and a laptop
//!   at home, and dcutr tries to upgrade the circuit to a direct connection.
//!
//! - **Web UI and API over TLS only** ([`RelayConfig::http`], `tillmesh relay --http ADDR`):
//!   the node's web UI and `/api/v1`, where the login names the shop and a session covers that
//!   one shop ([`crate::api::relay_router`]). An owner or manager logged in there works on the
//!   shop's replica like on a till: their changes are signed with their person key (unlocked
//!   by their password from the synced `vault`) and forwarded at once to the shop's connected
//!   devices (`Offer`, like what the relay applies from devices); devices that connect later
//!   pull them. What a device would sign on its own account (sales, stock in, shifts …) the
//!   replica refuses. The certificate is the operator's (`--tls-cert`, `--tls-key`) or a
//!   self-signed one made on first start in `DATA_DIR/tls/` ([`tls`]); its SHA-256
//!   fingerprint is printed at start so owners can check it.
//!
//! - **Scheduled encrypted snapshots** ([`crate::snapshot`]): as soon as a shop is served and
//!   then every [`SnapshotConfig::every`](crate::snapshot::SnapshotConfig) (1 h), a shop that
//!   changed since its last snapshot gets one — a backup encrypted to the shop's owners and
//!   recovery key — in `DATA_DIR/snapshots` or S3-compatible storage, with hourly/daily
//!   retention. Taken on blocking threads, at most [`SNAPSHOTS_AT_ONCE`] shops at a time, so
//!   sync is served meanwhile. A shop device asks `SnapshotStatus` after each pull and shows
//!   the time (`last_snapshot` in `GET /api/v1/peers`, the Sync screen).

pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::docs::Envelope;
use crate::error::{Error, Result};
use crate::net::{self, Acceptance, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId};
use crate::replica::Applied;
use crate::snapshot::{SnapshotConfig, Snapshots, TickOutcome};
use crate::sync::{self, Refusal, RefusalKind, SyncRequest, SyncResponse};
use crate::{Node, NodeHandle};

/// Directory of the shop replicas inside the relay's data dir.
pub const SHOPS_DIR: &str = "shops";
/// Default snapshot directory inside the relay's data dir.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Shops snapshotted at the same time.
pub const SNAPSHOTS_AT_ONCE: usize = 2;
/// The relay's key inside its data dir (also each replica's device key).
pub const RELAY_KEY_FILE: &str = "relay.key";
/// How often the relay looks for newly enrolled shops.
pub const RESCAN: Duration = Duration::from_secs(2);
/// How often the relay pulls from every connected device of each shop.
pub const PULL_INTERVAL: Duration = crate::mesh::PULL_INTERVAL;
/// Longest a circuit of the circuit-relay v2 server lasts (libp2p's default: 2 minutes).
pub const CIRCUIT_DURATION: Duration = Duration::from_secs(60 * 60);
/// Most bytes a circuit carries each way (libp2p's default: 128 KiB).
pub const CIRCUIT_BYTES: u64 = 64 * 1024 * 1024;
/// Reservations (and circuits) the circuit-relay server holds at once.
pub const CIRCUIT_SLOTS: usize = 1024;
/// The one answer to a peer that is not a device of a shop served here, whatever the reason.
pub const NOT_SERVED: &str = "not a device of any shop this relay serves";

/// How to run a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the key and the shop replicas live.
    pub data_dir: PathBuf,
    /// Listen addresses (a public address in production; tests use `127.0.0.1`).
    pub listen: Vec<Multiaddr>,
    /// Requests of one shop served at once (default 8).
    pub max_requests_per_shop: usize,
    /// Changes one shop's replica may hold before offers are refused (default 20 million).
    pub max_changes_per_shop: u64,
    /// Where the web UI and API listen, over TLS only (`None`: no web UI, the default here;
    /// the CLI serves `0.0.0.0:8443` unless `--no-http`). Port 0 picks a free port.
    pub http: Option<SocketAddr>,
    /// The operator's certificate (PEM) and its key; without them the relay makes a
    /// self-signed certificate in `DATA_DIR/tls/` on first start and keeps it.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Sessions and login limits of the web UI and API.
    pub api: crate::api::ApiOptions,
    /// Scheduled encrypted snapshots (default: hourly into `DATA_DIR/snapshots`, 24 hourly and
    /// 31 daily kept); `None`: no snapshots.
    pub snapshots: Option<SnapshotConfig>,
}

impl RelayConfig {
    /// The defaults for a data dir and listen addresses.
    pub fn new(data_dir: impl Into<PathBuf>, listen: Vec<Multiaddr>) -> RelayConfig {
        let data_dir = data_dir.into();
        RelayConfig {
            snapshots: Some(SnapshotConfig::local(data_dir.join(SNAPSHOTS_DIR))),
            data_dir,
            listen,
            max_requests_per_shop: 8,
            max_changes_per_shop: 20_000_000,
            http: None,
            tls_cert: None,
            tls_key: None,
            api: crate::api::ApiOptions::default(),
        }
    }
}

/// One shop's replica.
struct Replica {
    /// The node owning the replica's store (taken at shutdown).
    node: tokio::sync::Mutex<Option<Node>>,
    handle: NodeHandle,
    /// The shop's genesis: what every sync exchange about this shop names.
    genesis: sync::Hash32,
    busy: Arc<Semaphore>,
    /// The replica's data dir (holds the snapshot state file).
    dir: PathBuf,
    /// A snapshot of this shop is being taken.
    snapshotting: AtomicBool,
    /// When the last snapshot was taken (ms).
    last_snapshot: Mutex<Option<i64>>,
    /// When the snapshot loop last looked at this shop (a newly served shop: never).
    snapshot_checked: Mutex<Option<std::time::Instant>>,
}

type Shops = Arc<RwLock<HashMap<Uuid, Arc<Replica>>>>;

/// A running relay.
#[must_use = "a relay stops when dropped; call shutdown().await"]
pub struct Relay {
    net: NetHandle,
    shops: Shops,
    /// The driver: answers requests, pulls, opens newly enrolled shops.
    driver: JoinHandle<()>,
    /// Per-replica tasks forwarding what is committed on the replica (web UI changes).
    forwarders: Forwarders,
    addrs: Vec<Multiaddr>,
    web: Option<Web>,
    /// Stops the snapshot loop, which lets snapshots under way finish.
    snapshot_stop: tokio::sync::watch::Sender<bool>,
    snapshot_task: Option<JoinHandle<()>>,
}

type Forwarders = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The running HTTPS server.
struct Web {
    addr: SocketAddr,
    tls: tls::TlsIdentity,
    handle: axum_server::Handle<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn shops_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SHOPS_DIR)
}

fn relay_key(data_dir: &Path) -> Result<ed25519_dalek::SigningKey> {
    crate::private_fs::private_dir(data_dir)
        .map_err(|e| Error::store(format!("cannot create data dir {}", data_dir.display()), e))?;
    crate::identity::load_or_create_device_key(&data_dir.join(RELAY_KEY_FILE))
}

/// Opens the replica in `dir` (a `shops/<uuid>` directory), if this relay was admitted there.
async fn open_replica(
    dir: &Path,
    cfg: &RelayConfig,
    snapshots: Option<&Snapshots>,
) -> Result<Option<(Uuid, Replica)>> {
    let node = Node::builder().data_dir(dir).start().await?;
    let handle = node.handle();
    let status = handle.status()?;
    let admitted = status
        .device
        .as_ref()
        .is_some_and(|d| d.role == crate::model::DeviceRole::Relay && !d.revoked);
    let genesis = handle.genesis()?.map(|g| g.0);
    let (Some(shop), Some(genesis)) = (status.shop_id.filter(|_| admitted), genesis) else {
        tracing::warn!(dir = %dir.display(), "not an admitted relay replica; skipped");
        drop(handle);
        node.shutdown().await;
        return Ok(None);
    };
    Ok(Some((
        shop,
        Replica {
            node: tokio::sync::Mutex::new(Some(node)),
            handle,
            genesis,
            busy: Arc::new(Semaphore::new(cfg.max_requests_per_shop)),
            dir: dir.to_path_buf(),
            snapshotting: AtomicBool::new(false),
            last_snapshot: Mutex::new(snapshots.and_then(|s| s.last_snapshot(dir))),
            snapshot_checked: Mutex::new(None),
        },
    )))
}

/// Opens every replica in `shops/` not open yet.
async fn scan_shops(
    cfg: &RelayConfig,
    snapshots: Option<&Snapshots>,
    shops: &Shops,
    known: &mut Vec<PathBuf>,
) -> Result<Vec<(Uuid, Arc<Replica>)>> {
    let dir = shops_dir(&cfg.data_dir);
    let mut opened = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(opened);
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_shop = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| Uuid::parse_str(n).is_ok());
        if !is_shop || !path.is_dir() || known.contains(&path) {
            continue;
        }
        known.push(path.clone());
        match open_replica(&path, cfg, snapshots).await {
            Ok(Some((id, replica))) => {
                tracing::info!(shop = %id, "serving shop");
                let replica = Arc::new(replica);
                shops
                    .write()
                    .expect("shops lock")
                    .insert(id, replica.clone());
                opened.push((id, replica));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(dir = %path.display(), "cannot open a shop replica: {e}"),
        }
    }
    Ok(opened)
}

impl Relay {
    /// Opens every enrolled shop and starts the network.
    pub async fn start(cfg: RelayConfig) -> Result<Relay> {
        let key = relay_key(&cfg.data_dir)?;
        let tls = match cfg.http {
            Some(_) => Some(tls::load_or_generate(
                &cfg.data_dir,
                cfg.tls_cert.as_deref(),
                cfg.tls_key.as_deref(),
            )?),
            None => None,
        };
        let snapshots = cfg.snapshots.clone().map(Snapshots::open).transpose()?;
        let shops: Shops = Default::default();
        let mut known = Vec::new();
        let opened = scan_shops(&cfg, snapshots.as_ref(), &shops, &mut known).await?;
        let mut ncfg = NetConfig::new(key.to_bytes(), "");
        ncfg.listen = cfg.listen.clone();
        let members = shops.clone();
        ncfg.relay_server = Some(net::RelayServer {
            max_circuit_duration: CIRCUIT_DURATION,
            max_circuit_bytes: CIRCUIT_BYTES,
            max_reservations: CIRCUIT_SLOTS,
            allowed: Arc::new(move |peer| !shops_of(&members, peer).is_empty()),
        });
        ncfg.max_request_bytes = sync::MAX_MESSAGE_BYTES;
        let (net, events) = net::start(ncfg)
            .await
            .map_err(|e| Error::Internal(format!("network: {e}")))?;
        let me = net.local_peer_id();
        let addrs: Vec<Multiaddr> = net
            .listen_addrs()
            .await
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me)))
            .collect();
        let forwarders: Forwarders = Default::default();
        for (shop, r) in opened {
            spawn_forwarder(&forwarders, &net, &shops, shop, &r);
        }
        let web = match (cfg.http, tls) {
            (Some(addr), Some(tls)) => Some(serve_web(addr, tls, shops.clone(), cfg.api.clone())?),
            _ => None,
        };
        let max_changes = cfg.max_changes_per_shop;
        let rescan = {
            let shops = shops.clone();
            let net = net.clone();
            let forwarders = forwarders.clone();
            let snapshots = snapshots.clone();
            async move {
                let mut tick = tokio::time::interval(RESCAN);
                loop {
                    tick.tick().await;
                    match scan_shops(&cfg, snapshots.as_ref(), &shops, &mut known).await {
                        Ok(opened) => {
                            for (shop, r) in opened {
                                spawn_forwarder(&forwarders, &net, &shops, shop, &r);
                            }
                        }
                        Err(e) => tracing::warn!("looking for new shops failed: {e}"),
                    }
                }
            }
        };
        let driver = Driver {
            net: net.clone(),
            shops: shops.clone(),
            max_changes,
            tables: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let driver = tokio::spawn(driver.run(events, rescan));
        let (snapshot_stop, stop) = tokio::sync::watch::channel(false);
        let snapshot_task = snapshots.map(|s| {
            tracing::info!(to = %s.store().target(), every = ?s.config().every, "taking snapshots");
            tokio::spawn(snapshot_loop(s, shops.clone(), stop))
        });
        Ok(Relay {
            net,
            shops,
            driver,
            forwarders,
            addrs,
            web,
            snapshot_stop,
            snapshot_task,
        })
    }

    /// Where the web UI and API answer (HTTPS), if they were asked for.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(|w| w.addr)
    }

    /// The certificate the web UI serves (its fingerprint, its PEM), if it runs.
    pub fn tls(&self) -> Option<&tls::TlsIdentity> {
        self.web.as_ref().map(|w| &w.tls)
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Where shop devices reach it (`/ip4/…/tcp/…/p2p/<peer id>`).
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// The shops it serves.
    pub fn shops(&self) -> Vec<Uuid> {
        let mut v: Vec<Uuid> = self
            .shops
            .read()
            .expect("shops lock")
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// The shops in which `peer` counts as a device (those the relay serves it and pulls from
    /// it).
    pub fn shops_of_peer(&self, peer: &PeerId) -> Vec<Uuid> {
        let mut v: Vec<Uuid> = shops_of(&self.shops, peer)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        v.sort();
        v
    }

    /// The replica of a shop (tests and operators read it; owners and managers write through
    /// the web UI, with their person key).
    pub fn replica(&self, shop: Uuid) -> Option<NodeHandle> {
        self.shops
            .read()
            .expect("shops lock")
            .get(&shop)
            .map(|r| r.handle.clone())
    }

    /// When the last snapshot of a shop was taken (ms since the Unix epoch).
    pub fn last_snapshot(&self, shop: Uuid) -> Option<i64> {
        let r = self.shops.read().expect("shops lock").get(&shop).cloned()?;
        *r.last_snapshot.lock().expect("snapshot lock")
    }

    /// Stops the network and closes every replica (snapshots under way finish first).
    pub async fn shutdown(mut self) {
        if let Some(web) = self.web.take() {
            let _ = web.stop.send(true);
            web.handle.graceful_shutdown(Some(Duration::from_secs(10)));
            let _ = web.task.await;
        }
        self.driver.abort();
        for t in self
            .forwarders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        let _ = self.snapshot_stop.send(true);
        if let Some(t) = self.snapshot_task.take() {
            let _ = t.await;
        }
        self.net.shutdown().await;
        let replicas: Vec<Arc<Replica>> = self
            .shops
            .write()
            .expect("shops lock")
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in replicas {
            if let Some(node) = r.node.lock().await.take() {
                node.shutdown().await;
            }
        }
    }
}

/// The shops in which `peer` is an admitted, unrevoked device (by the one membership rule,
/// `docs::members`: a key some owner merely listed is a member of nothing).
fn shops_of(shops: &Shops, peer: &PeerId) -> Vec<(Uuid, Arc<Replica>)> {
    let Some(pk) = net::public_key_of(peer) else {
        return Vec::new();
    };
    shops
        .read()
        .expect("shops lock")
        .iter()
        .filter(|(_, r)| r.handle.is_member_device(&pk) && r.handle.device_public_key() != pk)
        .map(|(id, r)| (*id, r.clone()))
        .collect()
}

/// What a task of the relay's driver ended with.
enum Done {
    /// A pull of one shop's replica from one of its devices ended.
    Pulled(Uuid, PeerId, Result<sync::PullReport>),
    /// Nothing to follow up.
    Nothing,
}

/// The relay's driver: one task, one `select!`, every task it starts in one [`JoinSet`]
/// (aborted with it), as the mesh's actor ([`crate::mesh`]). Per shop, the mesh's peer table
/// ([`crate::mesh::PeerTable`]) keeps its rules: one pull per device at a time (a device that
/// does not answer gathers no waiting pulls), and a backoff for a device whose pulls keep
/// failing.
struct Driver {
    net: NetHandle,
    shops: Shops,
    max_changes: u64,
    tables: HashMap<Uuid, crate::mesh::PeerTable>,
    tasks: JoinSet<Done>,
}

impl Driver {
    async fn run(
        mut self,
        mut events: tokio::sync::mpsc::Receiver<NetEvent>,
        rescan: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.tasks.spawn(async move {
            rescan.await;
            Done::Nothing
        });
        let mut tick = tokio::time::interval(PULL_INTERVAL);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let now = std::time::Instant::now();
                    for p in self.net.peers().await.into_iter().filter(|p| p.connected) {
                        for (shop, r) in shops_of(&self.shops, &p.peer) {
                            let due = self
                                .tables
                                .get(&shop)
                                .is_none_or(|t| t.periodic_pull_due(&p.peer, now));
                            if due {
                                self.pull(shop, &r.handle, p.peer);
                            }
                        }
                    }
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(Done::Pulled(shop, peer, result)) => {
                        let outcome = result.as_ref().map_err(|e| e.to_string());
                        if let Err(e) = &outcome {
                            tracing::debug!(%shop, %peer, "pull failed: {e}");
                        }
                        self.tables.entry(shop).or_default().pull_ended(
                            peer,
                            outcome,
                            std::time::SystemTime::now(),
                            std::time::Instant::now(),
                        );
                    }
                    Ok(Done::Nothing) => {}
                    Err(e) if e.is_panic() => tracing::error!("a relay task panicked: {e}"),
                    Err(_) => {}
                },
            }
        }
    }

    async fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            // Subscribed to nothing: gossip is not for the relay.
            NetEvent::Gossip { id, source, .. } => {
                self.net.report(id, source, Acceptance::Ignore).await;
            }
            NetEvent::Request { peer, data, reply } => {
                let (net, shops, max_changes) =
                    (self.net.clone(), self.shops.clone(), self.max_changes);
                self.tasks.spawn(async move {
                    let (shop, answer) = answer(&net, &shops, max_changes, peer, &data).await;
                    let _ = reply.send(sync::encode_response(shop, &answer));
                    Done::Nothing
                });
            }
            NetEvent::Connected { peer, .. } | NetEvent::Resync { peer } => {
                for (shop, r) in shops_of(&self.shops, &peer) {
                    self.pull(shop, &r.handle, peer);
                }
            }
            NetEvent::Disconnected { .. } | NetEvent::ListenAddrs(_) => {}
        }
    }

    /// Pulls `shop`'s replica from `peer` unless a pull of it from that peer is under way or
    /// the replica is full.
    fn pull(&mut self, shop: Uuid, h: &NodeHandle, peer: PeerId) {
        if !self.tables.entry(shop).or_default().start_pull(peer) {
            return;
        }
        let (net, h, max_changes) = (self.net.clone(), h.clone(), self.max_changes);
        self.tasks.spawn(async move {
            let full = h.status().is_ok_and(|s| {
                s.envelopes + h.held_count().unwrap_or(0) + h.quarantined_count().unwrap_or(0)
                    >= max_changes
            });
            if full {
                tracing::warn!(%shop, "this shop's replica is full; not pulling");
                return Done::Pulled(
                    shop,
                    peer,
                    Err(Error::Conflict("this shop's replica on the relay is full".into())),
                );
            }
            let remote = crate::mesh::NetPeer::new(net, peer, h.clone());
            let result = h.pull_from(&remote).await;
            if let Ok(r) = &result
                && r.fetched > 0
            {
                tracing::info!(%shop, %peer, applied = r.applied, held = r.held, "caught up from a shop device");
            }
            Done::Pulled(shop, peer, result)
        });
    }
}

/// Answers one request of `peer` about the shop it names, if `peer` is a device of it; returns
/// the shop named (the answer names it back) and the answer.
async fn answer(
    net: &NetHandle,
    shops: &Shops,
    max_changes: u64,
    peer: PeerId,
    data: &[u8],
) -> (Option<sync::Hash32>, SyncResponse) {
    let (named, req) = match sync::decode_request(data) {
        Ok(r) => r,
        Err(e) => return (None, SyncResponse::Refused(Refusal::of(&e))),
    };
    // The request names its shop: served only if the peer is a device of that shop. A device
    // of another shop served here, a stranger and a revoked device all get the same answer.
    let Some((shop, replica)) = shops_of(shops, &peer)
        .into_iter()
        .find(|(_, r)| Some(r.genesis) == named)
    else {
        return (
            named,
            SyncResponse::Refused(Refusal::new(RefusalKind::Forbidden, NOT_SERVED)),
        );
    };
    let Ok(_permit) = replica.busy.clone().try_acquire_owned() else {
        tracing::debug!(%shop, %peer, "per-shop request limit reached");
        let busy = SyncResponse::Refused(Refusal::new(
            RefusalKind::Busy,
            "the relay is busy with this shop; try again soon",
        ));
        return (named, busy);
    };
    let h = replica.handle.clone();
    let answer = match req {
        SyncRequest::RedeemStart { .. } | SyncRequest::RedeemFinish { .. } => {
            SyncResponse::Refused(Refusal::new(RefusalKind::Forbidden, NOT_SERVED))
        }
        SyncRequest::SnapshotStatus => {
            SyncResponse::SnapshotStatus(*replica.last_snapshot.lock().expect("snapshot lock"))
        }
        SyncRequest::Offer(envs) if envs.len() <= sync::ENVELOPE_BATCH => {
            offer(net, shops, max_changes, shop, &h, peer, envs).await
        }
        other => tokio::task::spawn_blocking(move || h.answer_sync(other))
            .await
            .unwrap_or_else(|e| {
                SyncResponse::Refused(Refusal::new(RefusalKind::Internal, e.to_string()))
            }),
    };
    (named, answer)
}

/// Applies what a shop device offers, and forwards what was new to the shop's other devices.
async fn offer(
    net: &NetHandle,
    shops: &Shops,
    limit: u64,
    shop: Uuid,
    h: &NodeHandle,
    from: PeerId,
    envs: Vec<Vec<u8>>,
) -> SyncResponse {
    // Held and quarantined envelopes take space too: they count in the shop's quota.
    match h
        .status()
        .and_then(|s| Ok(s.envelopes + h.held_count()? + h.quarantined_count()?))
    {
        Ok(n) if n >= limit => {
            return SyncResponse::Refused(Refusal::new(
                RefusalKind::Full,
                "this shop's space on the relay is full",
            ));
        }
        Err(e) => return SyncResponse::Refused(Refusal::of(&e)),
        _ => {}
    }
    let mut decoded = Vec::with_capacity(envs.len());
    let mut bytes = Vec::with_capacity(envs.len());
    for b in envs {
        if let Ok(e) = Envelope::from_bytes(&b) {
            decoded.push(e);
            bytes.push(b);
        }
    }
    let results = match h
        .import_envelopes_from(&from.to_string(), None, decoded)
        .await
    {
        Ok(r) => r,
        Err(e) => return SyncResponse::Refused(Refusal::of(&e)),
    };
    let mut accepted = 0u32;
    let mut fresh = Vec::new();
    for (r, b) in results.iter().zip(bytes) {
        match r {
            Ok(Applied::New(_)) => {
                accepted += 1;
                fresh.push(b);
            }
            Ok(Applied::Duplicate(_)) => accepted += 1,
            _ => {}
        }
    }
    if !fresh.is_empty() {
        forward(net, shops, shop, fresh, Some(from));
    }
    SyncResponse::Accepted(accepted)
}

/// Offers envelopes to every connected device of `shop` but `except` (in the background).
fn forward(
    net: &NetHandle,
    shops: &Shops,
    shop: Uuid,
    fresh: Vec<Vec<u8>>,
    except: Option<PeerId>,
) {
    let net = net.clone();
    let shops = shops.clone();
    tokio::spawn(async move {
        let targets: Vec<PeerId> = net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.connected && Some(p.peer) != except)
            .map(|p| p.peer)
            .filter(|p| shops_of(&shops, p).iter().any(|(s, _)| *s == shop))
            .collect();
        let genesis = shops
            .read()
            .expect("shops lock")
            .get(&shop)
            .map(|r| r.genesis);
        let msg = sync::encode_request(genesis, &SyncRequest::Offer(fresh));
        for peer in targets {
            let net = net.clone();
            let msg = msg.clone();
            tokio::spawn(async move {
                if let Err(e) = net.request(peer, msg).await {
                    tracing::debug!(%peer, "forwarding to a shop device failed: {e}");
                }
            });
        }
    });
}

/// Forwards what is committed on a replica itself (an owner's change made in the web UI) to
/// the shop's connected devices, as it is committed. Devices not connected pull it later.
fn spawn_forwarder(
    forwarders: &Forwarders,
    net: &NetHandle,
    shops: &Shops,
    shop: Uuid,
    replica: &Replica,
) {
    let mut outbox = replica.handle.outbox();
    let (net, shops) = (net.clone(), shops.clone());
    let task = tokio::spawn(async move {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            let first = match outbox.recv().await {
                Ok(env) => env,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(%shop, skipped = n, "forwarding fell behind; devices pull the rest");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mut batch = vec![first.as_ref().clone()];
            while batch.len() < sync::ENVELOPE_BATCH {
                match outbox.try_recv() {
                    Ok(env) => batch.push(env.as_ref().clone()),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            forward(&net, &shops, shop, batch, None);
        }
    });
    forwarders
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(task);
}

/// Starts the HTTPS server of the web UI and API on `addr`.
fn serve_web(
    addr: SocketAddr,
    tls: tls::TlsIdentity,
    shops: Shops,
    opts: crate::api::ApiOptions,
) -> Result<Web> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Unreachable(format!("cannot listen on {addr} for HTTPS: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("the HTTPS listener has no address: {e}")))?;
    let list: crate::api::ShopList = Arc::new(move || {
        shops
            .read()
            .expect("shops lock")
            .iter()
            .map(|(id, r)| (*id, r.handle.clone()))
            .collect()
    });
    let (router, stop) = crate::api::with_shutdown_signal(crate::api::relay_router(list, opts));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls.config.clone()),
    )
    .map_err(|e| Error::Internal(format!("HTTPS: {e}")))?
    .handle(handle.clone());
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = server.serve(service).await {
            tracing::error!("the relay's HTTPS server stopped: {e}");
        }
    });
    Ok(Web {
        addr,
        tls,
        handle,
        stop,
        task,
    })
}

/// `tillmesh relay enroll`: joins the shop of `invite` (an invite with role `relay`) as this
/// relay, into `DATA_DIR/shops/<shop id>`. The relay may be running: it opens the new shop
/// within [`RESCAN`].
pub async fn enroll(data_dir: &Path, invite: &str) -> Result<crate::mesh::Joined> {
    crate::docs::admission::Ticket::parse(invite)?;
    relay_key(data_dir)?;
    let dir = shops_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::store(format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".enrolling-{}",
        hex::encode(crate::identity::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::store(format!("cannot create {}", tmp.display()), e))?;
    let joined = async {
        std::fs::copy(
            data_dir.join(RELAY_KEY_FILE),
            tmp.join(crate::node::DEVICE_KEY_FILE),
        )
        .map_err(|e| Error::store("cannot copy the relay key", e))?;
        let joined = crate::node::join(
            &tmp,
            invite,
            crate::mesh::JoinOptions::role(crate::model::DeviceRole::Relay),
        )
        .await?;
        let target = dir.join(joined.shop_id.to_string());
        if target.exists() {
            return Err(Error::Conflict(format!(
                "this relay already serves shop {}",
                joined.shop_id
            )));
        }
        std::fs::rename(&tmp, &target)
            .map_err(|e| Error::store("cannot move the new shop in place", e))?;
        Ok(joined)
    }
    .await;
    if joined.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    joined
}

/// Looks at each served shop as soon as it is served and then every
/// [`SnapshotConfig::every`], and takes a snapshot if it changed (each shop in its own task, at
/// most [`SNAPSHOTS_AT_ONCE`] at a time so the relay keeps CPU for sync; a shop still being
/// snapshotted is skipped). On stop, waits for the snapshots under way.
async fn snapshot_loop(
    snapshots: Snapshots,
    shops: Shops,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = snapshots.config().every;
    // Often enough to pick a newly enrolled shop up soon (the rescan runs every 2 s).
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(SNAPSHOTS_AT_ONCE));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        while running.try_join_next().is_some() {}
        let replicas: Vec<(Uuid, Arc<Replica>)> = shops
            .read()
            .expect("shops lock")
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        for (shop, r) in replicas {
            {
                let mut checked = r.snapshot_checked.lock().expect("snapshot lock");
                if checked.is_some_and(|t| t.elapsed() < every) {
                    continue;
                }
                *checked = Some(std::time::Instant::now());
            }
            if r.snapshotting.swap(true, Ordering::SeqCst) {
                continue;
            }
            let snapshots = snapshots.clone();
            let slots = slots.clone();
            running.spawn(async move {
                let _slot = slots.acquire_owned().await;
                match snapshots.tick(&r.handle, &r.dir).await {
                    Ok(TickOutcome::Taken { taken, pruned }) => {
                        tracing::info!(%shop, name = %taken.name, bytes = taken.bytes, recipients = taken.recipients, pruned = pruned.len(), "snapshot taken");
                        *r.last_snapshot.lock().expect("snapshot lock") = Some(taken.created_at);
                    }
                    Ok(TickOutcome::Unchanged) => {}
                    Err(e) => tracing::error!(%shop, "snapshot failed: {e}"),
                }
                r.snapshotting.store(false, Ordering::SeqCst);
            });
        }
    }
    while running.join_next().await.is_some() {}
}
