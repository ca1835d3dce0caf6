//! The shop's data as the API, the UI and embedders see it.
//!
//! Requests (`New*`, `*Patch`, `StockIn` …) reject unknown fields; views (`Product`, `Sale` …)
//! are what projections return. Money is always an integer number of the currency's minor
//! units (cents for EUR, yen for JPY, fils for KWD); tax rates are basis points (2000 = 20 %).
//!
//! One file per area, every type re-exported here (`crate::model::Product`): the shop, its
//! people and devices (`shop`), the catalog (`catalog`), stock (`stock`), sales (`sales`),
//! the books beyond the till ([`books`]) and the ledger entries ([`ledger`]); what the node
//! itself reports (the logged-in [`Principal`], [`Status`], [`Event`] …) lives here.

pub mod books;
mod catalog;
pub mod ledger;
mod sales;
mod shop;
mod stock;
pub use books::*;
pub use catalog::*;
pub use sales::*;
pub use shop::*;
pub use stock::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A person logged in: who acts, with what role, and (owners and managers) their unlocked key.
#[derive(Clone)]
pub struct Principal {
    /// Person id.
    pub person_id: Uuid,
    /// Display name.
    pub name: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The person key, unlocked with the password at login (owners and managers only).
    pub key: Option<ed25519_dalek::SigningKey>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("person_id", &self.person_id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("key", &self.key.as_ref().map(|_| "<unlocked>"))
            .finish()
    }
}

/// The node as `GET /api/v1/status` and `tillmesh status` show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// Whether this node belongs to a shop yet.
    pub has_shop: bool,
    /// Shop id.
    pub shop_id: Option<Uuid>,
    /// Shop name.
    pub shop_name: Option<String>,
    /// This device.
    pub device: Option<Device>,
    /// Version of tillmesh.
    pub version: String,
    /// Envelopes stored.
    pub envelopes: u64,
    /// Documents stored.
    pub documents: u64,
    /// Set (with the reason) when a device of the shop speaks another version of the sync
    /// protocol: the two cannot sync until both run the same tillmesh version.
    #[serde(default)]
    pub update_needed: Option<String>,
}

/// A document the node stores.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentInfo {
    /// Document id, e.g. `catalog` or `ledger/2026-11-22/ab12cd34ef56ab78/0`.
    pub id: String,
    /// Kind: members, vault, settings, catalog, ledger.
    pub kind: String,
    /// Current heads (hex change hashes).
    pub heads: Vec<String>,
    /// Number of changes.
    pub changes: u64,
    /// Bytes this node stores for it (its saved chunks); `GET /documents/{id}` serves it saved
    /// afresh in one piece, usually a little smaller.
    pub size: u64,
}

/// Something that happened, streamed to UIs and embedders (`GET /api/v1/events`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A signed change was applied (local or from a peer).
    ChangeApplied {
        /// Document id.
        doc: String,
        /// Change hash (hex).
        hash: String,
        /// Whether this device made it.
        local: bool,
    },
    /// A sale was recorded (here or on another till).
    SaleRecorded {
        #[allow(missing_docs)]
        sale_id: Uuid,
        #[allow(missing_docs)]
        receipt: String,
        #[allow(missing_docs)]
        total: i64,
    },
    /// Stock of a product changed.
    StockChanged {
        #[allow(missing_docs)]
        product_id: Uuid,
        #[allow(missing_docs)]
        variant_id: Option<Uuid>,
        #[allow(missing_docs)]
        on_hand: i64,
    },
    /// A product was created or edited.
    ProductChanged {
        #[allow(missing_docs)]
        product_id: Uuid,
    },
    /// Changes were dropped because a revocation made them invalid.
    ChangesDropped {
        /// Document id.
        doc: String,
        /// Dropped change hashes (hex).
        hashes: Vec<String>,
    },
    /// A sale a till made after an owner revoked it was kept for the owners to review
    /// (`GET /api/v1/revoked-sales`).
    RevokedSaleKept {
        /// The revoked till's device id.
        device: String,
        /// The change hash (hex).
        hash: String,
    },
    /// Settings, members or purchase orders changed.
    ShopChanged {
        /// `settings`, `members` or `orders`.
        doc: String,
    },
    /// An open ticket was parked, updated, discarded or paid.
    TicketChanged {
        #[allow(missing_docs)]
        ticket_id: Uuid,
    },
    /// Two tills cut off from each other both closed one ticket: the earliest close is kept,
    /// the other sales need a void or refund.
    TicketDoubleClosed {
        #[allow(missing_docs)]
        ticket_id: Uuid,
        /// The sale that counts.
        kept: Uuid,
        /// Sales to void or refund.
        to_refund: Vec<Uuid>,
    },
    /// An alert was raised (see `GET /api/v1/alerts` for the full list).
    Alert {
        /// Alert id (the same on every replica).
        id: String,
        /// Kind, e.g. `low_stock`, `oversold`, `device_joined`.
        kind: String,
        /// `info`, `warning` or `critical`.
        severity: String,
        /// One line for people.
        title: String,
    },
}

/// Asking for an invite for a new device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Role of the new device (`till`; owners may also invite a `relay`).
    pub role: DeviceRole,
    /// Name of the new device.
    pub name: String,
    /// How long the invite stays valid (default 15).
    #[serde(default)]
    pub ttl_minutes: Option<u32>,
}

/// An invite: type the short code on the new device, or scan the full invite string.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteCreated {
    /// Short code for typing, `ABCDE-FGHIJ` (found on the LAN by mDNS).
    pub code: String,
    /// Full invite string (code plus this node's addresses) for a QR code or pasting.
    pub invite: String,
    /// Expiry (ms since the Unix epoch).
    pub expires_at: i64,
    /// Role.
    pub role: DeviceRole,
    /// Device name.
    pub name: String,
    /// Receipt prefix the device will use.
    pub receipt_prefix: String,
}
