//! The running node: [`Node::builder`] opens the store, starts the writer, the mesh and the
//! HTTP server as asked, and hands out a cloneable [`NodeHandle`] with the shop's typed
//! commands, queries, [events](NodeHandle::events) and peer status. The top of the layers: it
//! owns the handle ([`crate::handle`]) and starts what runs above it ([`crate::mesh`],
//! [`crate::api`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::handle::NodeHandle;
pub use crate::handle::{DEVICE_KEY_FILE, STORE_FILE};
use crate::identity;
use crate::replica::{Engine, Shared, Writer};
use crate::store::Store;

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
                    Error::store(format!("cannot create data dir {}", dir.display()), e)
                })?;
                crate::private_fs::tighten_file(&dir.join(DEVICE_KEY_FILE))
                    .map_err(|e| Error::store("cannot protect the device key", e))?;
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
        let handle = NodeHandle::new(crate::handle::Parts {
            data_dir: self.data_dir.clone(),
            mdns: self.mdns.clone(),
            device_key,
            store,
            writer,
            shared,
            device_id,
        });
        handle.reoffer_kept().await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        let checkpoint_task = crate::handle::spawn_checkpoints(handle.clone(), stop_rx.clone());
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

/// A running node. Stop it with [`Node::shutdown`].
#[must_use = "a node stops serving when dropped; call shutdown().await"]
pub struct Node {
    handle: NodeHandle,
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
        if let Some(t) = self.checkpoint_task.take() {
            let _ = t.await;
        }
        self.handle.writer().close().await;
        if let Some(thread) = self.writer_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// `tillmesh join` (and `tillmesh relay enroll`): joins the shop with a node started on
/// `data_dir` just for that (see [`NodeHandle::join_with`]); `opts.mdns` is where a short code
/// is looked up (None: mDNS off).
pub async fn join(
    data_dir: &std::path::Path,
    invite: &str,
    opts: crate::mesh::JoinOptions,
) -> Result<crate::mesh::Joined> {
    crate::docs::admission::Ticket::parse(invite)?;
    let mut b = Node::builder().data_dir(data_dir);
    if let Some(interfaces) = opts.mdns.clone() {
        b = b.mdns(interfaces);
    }
    let node = b.start().await?;
    let h = node.handle();
    let result = h.join_with(invite, &opts).await;
    drop(h);
    node.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::commands;
    use crate::handle::Lagged;
    use crate::model::*;
    use redb::ReadableTable;

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
            h.shared().events.send(shop(n)).unwrap();
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
        h.writer()
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
