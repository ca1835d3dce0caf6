//! # tillmesh
//!
//! A peer-to-peer sync node for small shops: inventory, sales ledger and bookkeeping that keep
//! working with no internet. Every device in a shop runs a node; this crate is that node, as a
//! library ([`Node::builder`]) and as the `tillmesh` binary.
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
//! engine::Ctx::change ─► sign (docs::Envelope) ─► docs::trust::verify ─► apply
//!         │    the same verify-and-apply path takes envelopes from elsewhere
//!         │    (engine::Ctx::apply_envelope, NodeHandle::import_envelopes)
//!         ▼
//! store (redb): one write transaction holds the envelope, the document chunk and the
//!         projections (domain::projection); the writer thread groups concurrent commands
//!         into one durable commit and answers each only after it (batches holding only
//!         peers' changes commit unsynced and are synced within 500 ms)
//!         ▼
//! events (broadcast) ─► SSE `/api/v1/events` and embedders
//! outbox (broadcast) ─► mesh: publish on the shop's gossipsub topic
//!
//! peers' gossip ─► mesh ─► the same verify-and-apply path ─► forward only if it verified
//! anti-entropy (sync::pull over /tillmesh/sync/1) ─► missing envelopes ─► the same path
//! relays (in no gossip topic) ◄─ Offer of each committed envelope; pulls both ways
//! ```
//!
//! ## The parts
//! - [`identity`]: the device key (a 0600 file), person keys sealed under passwords
//!   (argon2id + XChaCha20-Poly1305), the recovery key, staff PIN hashes.
//! - [`docs`]: document ids, signed [`docs::Envelope`]s, [`docs::trust`] — who may write
//!   which document, read from `members` at the heads the signer named — and
//!   [`docs::admission`] (invites and admission certificates).
//! - [`store`]: the redb tables (one file, versioned names, numbered migrations).
//! - [`config`]: flags, `TILLMESH_*` variables and the TOML file.
//! - [`engine`]: the single writer thread (group commit) and the one apply path.
//! - [`domain`]: the data model, commands, money arithmetic, projections and queries.
//! - [`api`]: the axum router — JSON API under `/api/v1`, sessions, CSRF, rate limits,
//!   OpenAPI, SSE, and the web UI (`web/`, compiled in: first start, login, sell, stock,
//!   products, reports, people & devices, sync).
//! - [`sync`]: transport-free anti-entropy — set digests per document and per month of ledger
//!   documents, change hashes, batched envelope fetches; invite redemption and `join`.
//! - [`net`]: the libp2p swarm in one task (TCP, Noise, Yamux, identify, ping, gossipsub,
//!   request-response) behind a cloneable [`net::NetHandle`].
//! - [`discovery`]: mDNS (`_tillmesh._udp.local.`) on chosen interfaces.
//! - [`mesh`]: ties net and discovery to the node — push, verify-then-forward, pull (one at a
//!   time), member-only requests, the peers table, blocking revoked devices, joining a shop
//!   (`tillmesh join`, `POST /api/v1/join`, [`NodeHandle::join`]).
//! - [`node`]: [`Node`] (builder, start, shutdown) and [`NodeHandle`] (typed commands and
//!   queries shared by the API, the CLI, embedders and tests).
//! - [`relay`]: `tillmesh relay` — one swarm in no gossip topic, a replica store per enrolled
//!   shop, store-and-forward over `/tillmesh/sync/1` (devices offer and pull; the relay
//!   forwards what is new to the shop's other devices), each request served from the one shop
//!   the requesting device belongs to.
//! - [`backup`]: one self-checking backup file from one read transaction (`GET
//!   /api/v1/backup`, `tillmesh backup`), `verify`, and `restore` into a new data dir through
//!   the same verify-and-apply path, as a new device that rejoins with an invite.

pub mod api;
pub mod backup;
pub mod config;
pub mod discovery;
pub mod docs;
pub mod domain;
pub mod engine;
pub mod error;
pub mod identity;
pub mod mesh;
pub mod net;
pub mod node;
pub mod relay;
pub mod store;
pub mod sync;

pub use error::{Error, Result};
pub use node::{Node, NodeBuilder, NodeHandle};
