//! The audit trail: who (person and device) did what, when, on which document — every row
//! traceable to the signed change behind it — plus daily signed checkpoints and an export that
//! anyone can verify offline (`tillmesh audit verify FILE`).
//!
//! **Index.** Every applied envelope (except `vault`'s, which the audit never shows) writes one
//! row into `AUDIT`, keyed by (time, change hash), in the same transaction (`record`, called
//! by the engine's apply path); `reindex` rebuilds it from the stored envelopes ([`rebuild`]).
//! A row's kind comes from the change itself, so it is the same on every replica:
//!
//! - ledger documents: the entries' kinds (`sale`, `stock_in`, `removal`, `adjustment`,
//!   `void`, `return`, `checkpoint`, and any kind added later), the time and person of the
//!   entry, the device of the document;
//! - `catalog`: `product_create` (a product map created), `alert_dismiss`, else
//!   `product_edit` (with the fields written);
//! - `members`: `shop_create`, `device_join`, `person_add`, `revoke`, else `members_change`;
//! - `settings`: `settings_change`; `orders`: `orders_change`.
//!
//! For non-ledger changes the time is the change's own timestamp and the device is the one
//! named in the change's message (`{"device": id}`), both written by `replica::Ctx::change`
//! inside the signed change bytes. (Changes made before this existed carry time 0 and no device.)
//!
//! **Checkpoints.** Once per shop-local day each device writes a ledger entry of kind
//! `checkpoint` ([`write_checkpoint`], run by the node's timer ten minutes after start and
//! then every ten minutes until the day has one) holding the heads of every document whose heads moved
//! since its previous checkpoint (every document in its first one; `vault` left out). Heads
//! name their whole history by hash, so a chain of checkpoints covers every change the device
//! had seen — and it is signed by the device key like any ledger entry.
//!
//! **Export** ([`write_export`]): JSON lines — a header, one `change` line per stored change
//! (document, hash, signer, signature, the envelope bytes in base64, and the audit row's time,
//! kind, device and person), one `checkpoint` line per checkpoint entry, and an `end` line with
//! the counts. [`verify_export`] checks, without a node: every envelope decodes, its change
//! hashes to the listed hash, its signature verifies for the listed signer; every change's
//! dependencies are in the file; every checkpoint was signed by the device it names and every
//! head it names is in the file under that document; the counts match. Verify an export taken
//! on a node that has caught up with its peers: a checkpoint may name changes still on their
//! way to a node that is behind.
//!
//! **Files**: `index` (the rows, `record`, [`rebuild`], [`query`]), `checkpoint`
//! ([`write_checkpoint`]) and `export` ([`write_export`], [`verify_export`]); every item is
//! re-exported here, so each keeps its `audit::` path.

use crate::error::Error;

mod checkpoint;
mod export;
mod index;

pub use checkpoint::*;
pub use export::*;
pub use index::*;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}
