//! Every redb table, in one place. Names carry a version: a table whose layout changes gets a
//! new name and a migration (see `migrations.rs`).
//!
//! Ids: entry, product, variant and sale ids are UUIDs stored as `u128`; variant `0` means "no
//! variant". Times are ms since the Unix epoch (hybrid logical clock). Days are shop-local
//! `YYYY-MM-DD`.

use redb::{MultimapTableDefinition, TableDefinition};

/// Node facts: `schema_version` (u64 LE), `shop_id`, `genesis`, `hlc`, `ledger_cursor`,
/// `receipt_counter`, `receipt_prefix` … (see `meta` keys in `store.rs`).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-1");

// --- documents and envelopes -------------------------------------------------------------

/// change hash → postcard [`crate::docs::Envelope`]. Every envelope ever accepted.
pub const ENVELOPES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("envelopes-1");
/// (document id, sequence) → change hash, in the order the changes were applied here.
pub const DOC_CHANGES: TableDefinition<(&str, u64), &[u8; 32]> =
    TableDefinition::new("doc-changes-1");
/// (document id, chunk number) → bytes Automerge can `load`: one `save()` after compaction,
/// then one raw change per later change. Concatenated in order they load the document.
pub const DOC_CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("doc-chunks-1");
/// document id → postcard `DocMeta` (heads, change count, chunk numbering).
pub const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs-1");
/// document id → XOR of the hashes of its stored changes (a set digest: two replicas holding
/// the same changes have the same digest, whatever order they came in).
pub const DOC_DIGESTS: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("doc-digests-1");
/// sync bucket (a document id, or `ledger/<YYYY-MM>` for a month of ledger documents) → XOR of
/// its documents' digests. Anti-entropy compares these first.
pub const BUCKET_DIGESTS: TableDefinition<&str, &[u8; 32]> =
    TableDefinition::new("bucket-digests-1");
/// change hash → postcard envelope waiting for its dependencies or its signer's admission.
pub const HELD: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("held-1");

/// short invite code → postcard `PendingInvite`: invites this node issued and redeems.
pub const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites-1");

// --- projections (rebuilt by `reindex`) --------------------------------------------------

/// entry id → document id holding it. Makes projecting an entry idempotent.
pub const ENTRIES: TableDefinition<u128, &str> = TableDefinition::new("entries-1");
/// product id → JSON `Product` view (from `catalog`).
pub const PRODUCTS: TableDefinition<u128, &str> = TableDefinition::new("products-1");
/// sku → (product id, variant id). Several products may claim one SKU after a merge.
pub const SKUS: MultimapTableDefinition<&str, (u128, u128)> =
    MultimapTableDefinition::new("skus-1");
/// (product id, variant id) → quantity on hand (sum of movements).
pub const STOCK: TableDefinition<(u128, u128), i64> = TableDefinition::new("stock-1");
/// (product id, time, entry id, line) → JSON `Movement`.
pub const MOVEMENTS: TableDefinition<(u128, i64, u128, u32), &str> =
    TableDefinition::new("movements-1");
/// (time, entry id, line) → product id: movements by time.
pub const MOVEMENTS_BY_TIME: TableDefinition<(i64, u128, u32), u128> =
    TableDefinition::new("movements-by-time-1");
/// sale id → JSON `Sale` as recorded (voids and returns are joined in at read time).
pub const SALES: TableDefinition<u128, &str> = TableDefinition::new("sales-1");
/// (time, sale id) → (): sales by time.
pub const SALES_BY_TIME: TableDefinition<(i64, u128), ()> = TableDefinition::new("sales-by-time-1");
/// sale id → void entry id. Of two voids of one sale the smaller id is kept; both reverse the
/// same amounts, so totals do not depend on which arrived first.
pub const VOIDS: TableDefinition<u128, u128> = TableDefinition::new("voids-1");
/// (sale id, return entry id) → JSON list of (line index, qty) returned.
pub const RETURNS: TableDefinition<(u128, u128), &str> = TableDefinition::new("returns-1");
/// day → postcard `DayTotals` (count, total, tax, refunds).
pub const DAILY: TableDefinition<&str, &[u8]> = TableDefinition::new("daily-1");
/// device id → highest receipt counter seen from it.
pub const RECEIPTS: TableDefinition<&str, u64> = TableDefinition::new("receipts-1");

// --- alerts and audit (see `domain::alerts`, `domain::audit`) -----------------------------

/// alert id → JSON [`crate::domain::alerts::Alert`]: alerts raised by projections (a device
/// joined or was revoked, a clock far off, a ticket closed twice …). Kept by `reindex`.
pub const ALERTS: TableDefinition<&str, &str> = TableDefinition::new("alerts-1");
/// alert id → (): alerts raised in this write transaction and not yet streamed as events.
pub const ALERTS_UNSENT: TableDefinition<&str, ()> = TableDefinition::new("alerts-unsent-1");
/// alert id → JSON `Dismissal` (from the `catalog` document's `alert-dismissed:<id>` keys).
pub const ALERT_DISMISSALS: TableDefinition<&str, &str> =
    TableDefinition::new("alert-dismissals-1");
/// product id → latest change time (ms) of the catalog changes that touched it (max-merged,
/// so the same on every replica). Kept by `reindex`.
pub const PRODUCT_TIMES: TableDefinition<u128, i64> = TableDefinition::new("product-times-1");
/// (time, change hash) → postcard `AuditRow`: one row per applied envelope, by time.
pub const AUDIT: TableDefinition<(i64, &[u8; 32]), &[u8]> = TableDefinition::new("audit-1");
/// (product id, variant id) → inbound movements so far (stock-ins, returns, voids, positive
/// counts): a stock alert's episode (see `domain::alerts`). Rebuilt by `reindex`.
pub const STOCK_EPISODES: TableDefinition<(u128, u128), u64> =
    TableDefinition::new("stock-episodes-1");
