//! # tillmesh
//!
//! A peer-to-peer sync node for small shops: inventory, sales ledger and bookkeeping that keep
//! working with no internet. Every device in a shop runs a node; this crate is that node, as a
//! library ([`Node::builder`]) and as the `tillmesh` binary.
//!
//! ## Embedding a node
//!
//! A POS, a kiosk or a bookkeeping tool can run a node inside its own process. Build one with
//! [`Node::builder`], then work through its cloneable [`NodeHandle`]: typed commands
//! (create a shop, log in, products, stock, sales, voids and returns), queries and reports
//! (stock, movements, sales, [daily totals](NodeHandle::daily_sales)), a stream of typed
//! [events](NodeHandle::events), peer status ([`NodeHandle::peers`]) and
//! [`Node::shutdown`]. Every command returns once its change is durable on disk (or in
//! memory, for an in-memory node) and fails with an [`Error`] that says what was wrong, having
//! changed nothing.
//!
//! ```
//! use futures::StreamExt;
//! use tillmesh::Node;
//! use tillmesh::domain::model::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! // In memory, no network, no HTTP: `.data_dir(dir)` keeps it on disk, `.listen(…)` joins
//! // the shop mesh, `.api(true)` serves the web UI and the HTTP API.
//! let node = Node::builder().memory().start().await?;
//! let h = node.handle();
//! let mut events = h.events();
//!
//! h.create_shop(NewShop {
//!     shop_name: "Kiosk".into(),
//!     owner_name: "Kim".into(),
//!     username: "kim".into(),
//!     password: "a long password".into(), // owners and managers: at least 10 characters
//!     currency: Some("EUR".into()),
//!     timezone: Some("Europe/Berlin".into()),
//!     tax_mode: Some(TaxMode::Inclusive),
//!     device_name: None,
//! })
//! .await?;
//! // Commands are made by a logged-in person: their role decides what they may do.
//! let kim = h.login_password("kim", "a long password").await?;
//! let coffee = h
//!     .create_product(&kim, NewProduct {
//!         sku: "COF".into(),
//!         name: "Coffee".into(),
//!         price: 280, // minor units: 2.80 EUR
//!         barcode: None,
//!         category: None,
//!         unit: None,
//!         cost: None,
//!         tax_rate: Some(1900), // basis points: 19 %
//!         reorder_level: None,
//!         variants: vec![],
//!     })
//!     .await?;
//! let sale = h
//!     .record_sale(&kim, NewSale {
//!         lines: vec![NewSaleLine { product_id: coffee.id, variant_id: None, qty: 2, discount: None }],
//!         payments: vec![NewPayment { method: PaymentMethod::Cash, amount: Some(1000) }],
//!         note: None,
//!         ticket_id: None,
//!     })
//!     .await?;
//! assert_eq!((sale.total, sale.change_due), (560, 440));
//!
//! // The sale is in the events, after the changes that made the shop and the product.
//! loop {
//!     if let Some(Ok(Event::SaleRecorded { receipt, .. })) = events.next().await {
//!         assert_eq!(receipt, sale.receipt);
//!         break;
//!     }
//! }
//! drop(h);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Two nodes sync when one [`listen`](NodeBuilder::listen)s and the other joins the shop with
//! an invite ([`NodeHandle::create_invite`], then [`node::join`] or [`NodeHandle::join`]) and
//! dials it as a static [`peer`](NodeBuilder::peer) or finds it by
//! [mDNS](NodeBuilder::discovery). The `examples/` directory has complete programs:
//! `embedded_till` (a till that sells and prints the events of a second till),
//! `two_nodes` (two nodes syncing in one program), `http_client` (a node driven over HTTP
//! with a bearer token) and `python/client.py` (the same from Python's standard library).
//!
//! Integrators in other languages start the `tillmesh` binary and use the HTTP API: its
//! OpenAPI document is served at `/api/v1/openapi.json`; the shop's Automerge documents can be
//! read with `GET /api/v1/documents/{id}` (their schema is in `docs/DOCUMENTS.md`).
//!
//! ## How a command flows
//!
//! ```text
//! HTTP API (api) / embedding API (NodeHandle)
//!         │  a command: sell, stock-in, edit product …
//!         ▼
//! domain::commands ── validates against projections, turns it into an Automerge change
//!         │            on one document (docs: members, vault, settings, catalog, ledger/…)
//!         ▼
//! replica::Ctx::change ─► sign (docs::Envelope) ─► docs::trust::verify ─► apply
//!         │    the same verify-and-apply path takes envelopes from elsewhere
//!         │    (replica::Ctx::apply_envelope, NodeHandle::import_envelopes)
//!         ▼
//! store (redb): one write transaction holds the envelope, the document chunk, the
//!         projections (domain::projection), the audit row (domain::audit) and any alert
//!         raised (domain::alerts); the writer thread groups concurrent commands
//!         into one durable commit and answers each only after it (batches holding only
//!         peers' changes commit unsynced and are synced within 500 ms)
//!         ▼
//! events (broadcast) ─► SSE `/api/v1/events` and embedders (NodeHandle::events)
//! metrics: commit latency, changes applied/rejected, HTTP latency ─► GET /metrics
//! outbox (broadcast) ─► mesh: publish on the shop's gossipsub topic (sealed with the gossip
//!         key, which only the shop's tills hold and which rotates on every revocation)
//!
//! peers' gossip ─► mesh (opened, queued, applied in batches: one group commit for many)
//!         ─► the same verify-and-apply path ─► forward only if it verified
//! anti-entropy (sync::pull over /tillmesh/sync/3) ─► missing envelopes ─► the same path
//! relays (in no gossip topic) ◄─ Offer of each committed envelope; pulls both ways
//! ```
//!
//! ## The parts
//!
//! They form layers that point one way (`docs/ARCHITECTURE.md`; `.ci/layers.py`, run by CI,
//! fails on any import cycle between them):
//! `model → store → docs → replica → domain → sync → net → mesh → handle → api → node → cli`.
//!
//! - [`model`]: the shop's data as the API, the UI and embedders see it (requests, views,
//!   events, ledger entries, the books); pure data, the bottom layer.
//! - [`identity`]: the device key (a 0600 file), person keys sealed under passwords
//!   (argon2id + XChaCha20-Poly1305), the recovery key, staff PIN hashes.
//! - [`docs`]: document ids, signed [`docs::Envelope`]s, [`docs::members`] — the one reader
//!   of `members` (a device counts only with a certificate countersigned for its key and this
//!   shop's genesis) —, [`docs::trust`] — who may write which document, read from `members` at
//!   the heads the signer named —, [`docs::admission`] (invites, admission certificates
//!   and the inviting device's countersignature) and [`docs::gossip_keys`] (the gossip key's
//!   rotations, wrapped to each till, and how concurrent ones combine, and gossip sealing),
//!   [`docs::shop`] (the `members`, `settings` and `vault` layouts and [`docs::shop::ShopView`],
//!   their picture between commits) and [`docs::am`] (reading documents; which keys a change
//!   touched, from its operations).
//! - [`store`]: the redb tables (one file, versioned names, numbered migrations; a migration
//!   that needs a layer above marks a [`store::Rebuild`] the writer does when it opens the
//!   store).
//! - [`private_fs`]: the data dir `0700`; store, keys, backups and decrypted snapshots `0600`,
//!   set when each is created.
//! - [`config`]: flags, `TILLMESH_*` variables and the TOML file; [`config::SETTINGS`] lists
//!   every setting and makes the README's reference (`tillmesh config --reference`).
//! - [`replica`]: the single writer thread (group commit, a bounded queue, its own timer that
//!   syncs peers' unsynced commits) and the one apply path, which also
//!   holds what waits for a dependency (capped, expiring) and keeps apart, unapplied, a revoked
//!   till's sales (for owners to accept, [`domain::revoked_sales`]) and members' changes to
//!   document kinds this version does not know (re-offered at start). The domain plugs in
//!   through [`replica::Projector`] ([`domain::reindex::Projections`]): one dispatch for
//!   apply, revocation rebuilds, reindex and migrations.
//! - [`domain`]: the data model, commands, money arithmetic, projections and queries,
//!   [`domain::access`] (the one table of which role may read or do what); the
//!   books beyond the till — [`domain::orders`] (suppliers, purchase orders, deliveries with
//!   derived ids), [`domain::shifts`] (cash drawer), [`domain::tickets`] (parked carts,
//!   earliest close wins), [`domain::fifo`] (deterministic FIFO cost, replayed per product
//!   from checkpoints before each commit) and [`domain::profit`] (profit, closed periods, low
//!   stock counting open orders);
//!   [`domain::reports`] keeps day-keyed sums (sales, items, tax, staff, tills, payments,
//!   movements, lots) in the projection's transaction and reads every report from them;
//!   [`domain::alerts`] (deterministic alert ids, computed from projections or raised by them,
//!   dismissals synced through `catalog`), [`domain::audit`] (one audit row per applied
//!   envelope, written in the apply path, indexed by time, person and kind; daily signed
//!   checkpoints; the export and its offline verification), [`domain::products_csv`] (all-or-nothing CSV import of products).
//! - [`api`]: the axum router — the `Host` allow-list and the first-start setup token, JSON
//!   API under `/api/v1`, sessions, CSRF, login limits per (username, source) kept in the store,
//!   OpenAPI (generated from the handlers, with examples), SSE, `GET /metrics`, the Automerge
//!   documents for integrators, and the web UI (`web/`, compiled in: first start, login,
//!   sell, stock, products, orders, reports, books, people & devices, sync, audit, the alerts
//!   bell).
//! - [`sync`]: anti-entropy without IO — set digests per document and per month of ledger
//!   documents, change hashes, batched envelope fetches: [`sync::answer`] over a
//!   [`sync::ReplicaRead`] snapshot, [`sync::PullSession`] and [`sync::JoinSession`] (a pull's
//!   and a join's state), the [`sync::pull`]
//!   and [`sync::join`] drivers over [`sync::SyncPeer`] / [`sync::LocalReplica`] /
//!   [`sync::Joiner`], typed refusals ([`sync::Refusal`]), and a simulator of replicas on a lossy, partitioned network with a
//!   1,000-case property test. Every message on the wire is a [`sync::Frame`] naming the
//!   shop's genesis (protocol `/tillmesh/sync/3`): a node answers only about its own shop.
//! - [`redeem`]: redeeming an invite code by SPAKE2 keyed by the code (the code never goes on
//!   the wire; a device that did not make the invite learns and redeems nothing), failed
//!   runs capped per invite.
//! - [`net`]: the libp2p swarm in one task (TCP, Noise, Yamux, identify, ping, gossipsub,
//!   request-response, circuit-relay client and — on a relay — server, dcutr) behind a
//!   cloneable [`net::NetHandle`]; [`net::discovery`], mDNS (`_tillmesh._udp.local.`) on
//!   chosen interfaces.
//! - [`mesh`]: the node on the network, over [`mesh::Host`] (what it needs of the node) —
//!   one actor with a sans-IO peer table ([`mesh::PeerTable`]): push, verify-then-forward,
//!   pull (one per peer, backing off from failing ones), member-only requests and gossip,
//!   strangers disconnected after a grace period, telling and blocking revoked devices,
//!   listening through a connected relay and dialing the shop's devices through it, joining
//!   a shop ([`mesh::JoinOptions`]).
//! - [`handle`]: [`NodeHandle`] (typed commands and queries shared by the API, the CLI,
//!   embedders and tests, one file per area; the [`EventStream`]; the sync protocol's local
//!   replica; [`handle::demo`]).
//! - [`node`]: [`Node`] (builder, start, shutdown: it owns the handle and starts the mesh and
//!   the HTTP server) and [`node::join`] (`tillmesh join`, `tillmesh relay enroll`).
//! - [`relay`]: `tillmesh relay` — one swarm in no gossip topic, a replica store per enrolled
//!   shop, store-and-forward over `/tillmesh/sync/3` (devices offer and pull; the relay
//!   forwards what is new to the shop's other devices), each request served from the one shop
//!   the requesting device belongs to; its web UI and API over TLS only (`relay::tls`,
//!   `api::relay_router`), where the login names the shop, a session is dispatched to that
//!   shop's router only, and an owner's changes are made on the replica with their person key
//!   and forwarded to the shop's devices like what the relay applies.
//! - [`backup`]: one self-checking backup file from one read transaction, encrypted to the
//!   owners and the recovery key (`GET /api/v1/backup`, `tillmesh backup`), `verify`, and
//!   `restore` (with the recovery key or an owner's password) into a new data dir through
//!   the same verify-and-apply path, as a new device that rejoins with an invite.
//! - [`sealed`]: the one encryption format of backups and snapshots — a backup file encrypted to
//!   the shop's owners' keys and recovery key (X25519 + XChaCha20-Poly1305 in chunks), opened
//!   with the recovery key or an owner's password; a manager's key never opens one.
//! - [`snapshot`]: the relay's scheduled snapshots — a sealed backup of a shop's replica, taken only
//!   when the shop changed, to a directory or S3 (`object_store`), with hourly/daily
//!   retention; `tillmesh snapshot list/decrypt` turn one back into a backup file.
//! - [`cli`]: the `tillmesh` command line (the binary's `main` only calls [`cli::main`]).
//! - [`metrics`]: the node's counters and histograms (commits, changes applied and rejected,
//!   sync lag, HTTP latency), served in the Prometheus format at `GET /metrics`.

#![deny(missing_docs)]

pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod docs;
pub mod domain;
pub mod error;
pub mod handle;
pub mod identity;
pub mod mesh;
pub mod metrics;
pub mod model;
pub mod net;
pub mod node;
pub mod private_fs;
pub mod redeem;
pub mod relay;
pub mod replica;
pub mod sealed;
pub mod snapshot;
pub mod store;
pub mod sync;

pub use error::{Error, Result};
pub use handle::{EventStream, Lagged, NodeHandle};
pub use node::{Node, NodeBuilder};
