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
//!   it (and A's device would answer only about A,
//!   [`SyncResponse::OtherShop`](sync::SyncResponse::OtherShop)). Anyone else (an unknown key,
//!   a revoked device, a device of another shop) gets the same answer, [`NOT_SERVED`], so a
//!   stranger cannot tell which shops the relay serves. The relay never
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
//!
//! The code by concern: the replicas on disk and who is a device of which shop (`replicas`),
//! the driver that answers, pulls and forwards (`driver`), the HTTPS server (`web`),
//! [`enroll`] (`enrollment`) and the snapshot loop (`snapshots`); the shared types stay here.

mod driver;
mod enrollment;
mod replicas;
mod snapshots;
pub mod tls;
mod web;

pub use enrollment::enroll;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::net::{self, Multiaddr, NetConfig, NetHandle, PeerId};
use crate::snapshot::{SnapshotConfig, Snapshots};
use crate::sync;
use crate::{Node, NodeHandle};
use driver::{Driver, spawn_forwarder};
use replicas::{relay_key, scan_shops, shops_of};
use snapshots::snapshot_loop;
use web::serve_web;

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
