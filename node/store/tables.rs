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
/// change hash → postcard envelope waiting for changes this node lacks: dependencies of the
/// change, or `members` heads its signature names. Only envelopes whose signature verified are
/// held, within caps, for a while (see `replica::hold`). Never in backups. (`held-1` held
/// envelopes before their signature was checked; migration 6 drops it.)
pub const HELD: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("held-2");
/// change hash → postcard `replica::HeldMeta` of a held envelope (document, forwarding peer,
/// size, expiry, the hashes it waits for): the caps count from it without decoding envelopes.
pub const HELD_META: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("held-meta-1");
/// missing change hash → the held envelopes waiting for it: a change stored here retries exactly
/// those (no document is rescanned).
pub const HELD_WAITING: MultimapTableDefinition<&[u8; 32], &[u8; 32]> =
    MultimapTableDefinition::new("held-waiting-1");
/// (expiry in ms since the Unix epoch, change hash) → (): held envelopes by when they expire.
pub const HELD_EXPIRY: TableDefinition<(i64, &[u8; 32]), ()> =
    TableDefinition::new("held-expiry-1");

/// change hash → postcard `replica::Quarantined`: an envelope kept aside, never applied as it is —
/// a sale a till signed after an owner revoked it (owners review and may accept it), or a
/// document of a kind this build does not know, signed by a member (re-verified when a version
/// that knows the kind starts). Verified before it is kept, within caps per signer and in all
/// (`replica::MAX_QUARANTINED`). Never in backups.
pub const QUARANTINE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("quarantine-1");
/// (signer key, change hash) → stored size: the quarantine per signer (caps, the owners' list).
pub const QUARANTINE_BY_SIGNER: TableDefinition<(&[u8; 32], &[u8; 32]), u64> =
    TableDefinition::new("quarantine-by-signer-1");

/// short invite code → postcard `PendingInvite`: invites this node issued and redeems.
pub const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites-2");
/// Protocol 1's pending invites (deleted by migration 6).
pub const INVITES_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("invites-1");

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

// --- the books: orders, deliveries, shifts, tickets, refunds, FIFO (rebuilt by `reindex`) --

/// supplier id → JSON `Supplier` (from `orders`).
pub const SUPPLIERS: TableDefinition<u128, &str> = TableDefinition::new("suppliers-1");
/// purchase-order id → JSON `orders::PoRecord` (the document's fields; deliveries are joined
/// in at read time).
pub const PURCHASE_ORDERS: TableDefinition<u128, &str> = TableDefinition::new("purchase-orders-1");
/// (delivery id, entry time, entry id) → JSON `orders::DeliveryRecord`: every entry that
/// recorded a delivery; the first row of a delivery id is the one that counts.
pub const DELIVERIES: TableDefinition<(u128, i64, u128), &str> =
    TableDefinition::new("deliveries-1");
/// purchase-order id → delivery ids received on it.
pub const PO_DELIVERIES: MultimapTableDefinition<u128, u128> =
    MultimapTableDefinition::new("po-deliveries-1");
/// shift id → JSON `Shift` (sums kept by every entry of the shift, in any order).
pub const SHIFTS: TableDefinition<u128, &str> = TableDefinition::new("shifts-1");
/// (time of the entry that opened it, shift id) → (): shifts by time.
pub const SHIFTS_BY_TIME: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("shifts-by-time-1");
/// ticket id → JSON `tickets::TicketState`.
pub const TICKETS: TableDefinition<u128, &str> = TableDefinition::new("tickets-1");
/// refund entry id → JSON `Refund` (refunds without the original sale).
pub const REFUNDS: TableDefinition<u128, &str> = TableDefinition::new("refunds-1");
/// (time, refund entry id) → (): refunds by time.
pub const REFUNDS_BY_TIME: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("refunds-by-time-1");
/// product id → earliest movement key (time, entry id, line) whose FIFO cost must be
/// recomputed before the batch commits.
pub const FIFO_DIRTY: TableDefinition<u128, (i64, u128, u32)> =
    TableDefinition::new("fifo-dirty-1");
/// (product id, time, entry id, line) → postcard FIFO state of the product after that
/// movement (a checkpoint every few movements; recomputation starts from one).
pub const FIFO_STATE: TableDefinition<(u128, i64, u128, u32), &[u8]> =
    TableDefinition::new("fifo-state-1");
/// (product id, time, entry id, line) → postcard `fifo::CostRow`: the FIFO cost of an
/// outgoing movement, or of goods coming back.
pub const FIFO_COST: TableDefinition<(u128, i64, u128, u32), &[u8]> =
    TableDefinition::new("fifo-cost-1");
/// (shop-local day, product id) → postcard `fifo::ProductDay` (qty sold, revenue without tax,
/// FIFO cost, shrinkage), after voids and returns.
pub const PRODUCT_DAYS: TableDefinition<(&str, u128), &[u8]> =
    TableDefinition::new("product-days-1");
/// shop-local day → postcard `fifo::ProductDay` of the whole shop: FIFO cost and shrinkage of
/// the day (quantity and revenue too).
pub const DAY_COSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("day-costs-1");
/// last day of a closed period → JSON `PeriodClose` (from the `settings` document).
pub const PERIODS: TableDefinition<&str, &str> = TableDefinition::new("periods-1");

// --- report aggregates (domain::reports; rebuilt by `reindex`) ---------------------------
//
// Days are numbers here: days since 0001-01-01 (chrono's `num_days_from_ce`) of the shop-local
// day, so a range of days is one range scan. Every value is an array of sums; a row whose sums
// are all zero is deleted (absent and zero mean the same).

/// day → [sales, gross, tax, discounts, refunds, refund tax, returns, cash rounding]: a sale
/// counts on its own day (a void takes it out there), a return on the day it was recorded.
pub const REPORT_DAYS: TableDefinition<i32, [i64; 8]> = TableDefinition::new("report-days-1");
/// (day, product id, variant id) → [quantity, revenue (tax included), tax], sales minus returns.
pub const REPORT_ITEMS: TableDefinition<(i32, u128, u128), [i64; 3]> =
    TableDefinition::new("report-items-1");
/// (month as year × 12 + month − 1, product id, variant id) → the sums of [`REPORT_ITEMS`] over
/// the month, so a long window of top sellers reads whole months instead of their days.
pub const REPORT_ITEMS_MONTHS: TableDefinition<(i32, u128, u128), [i64; 3]> =
    TableDefinition::new("report-items-months-1");
/// (day, tax rate in basis points) → [gross (tax included), tax], sales minus returns.
pub const REPORT_TAX: TableDefinition<(i32, u32), [i64; 2]> = TableDefinition::new("report-tax-1");
/// (day, person id or 0) → [sales, total, refunds]: sales the person rang up, refunds they gave.
pub const REPORT_STAFF: TableDefinition<(i32, u128), [i64; 3]> =
    TableDefinition::new("report-staff-1");
/// (day, device id) → [sales, total, refunds] per till.
pub const REPORT_TILLS: TableDefinition<(i32, &str), [i64; 3]> =
    TableDefinition::new("report-tills-1");
/// (day, payment method as in JSON) → [received net of change, refunded].
pub const REPORT_PAYMENTS: TableDefinition<(i32, &str), [i64; 2]> =
    TableDefinition::new("report-payments-1");
/// (day, movement kind as in JSON) → [quantity in, quantity out].
pub const REPORT_MOVES: TableDefinition<(i32, &str), [i64; 2]> =
    TableDefinition::new("report-moves-1");

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
/// (person id, time, change hash) → (): the audit rows of one person, by time (the `person`
/// filter of `GET /audit` reads it instead of scanning every row of the range).
pub const AUDIT_BY_PERSON: TableDefinition<(u128, i64, &[u8; 32]), ()> =
    TableDefinition::new("audit-by-person-1");
/// (kind, time, change hash) → (): the audit rows of one kind (each part of `sale+void`), by time.
pub const AUDIT_BY_KIND: TableDefinition<(&str, i64, &[u8; 32]), ()> =
    TableDefinition::new("audit-by-kind-1");
/// (product id, variant id) → inbound movements so far (stock-ins, returns, voids, positive
/// counts): a stock alert's episode (see `domain::alerts`). Rebuilt by `reindex`.
pub const STOCK_EPISODES: TableDefinition<(u128, u128), u64> =
    TableDefinition::new("stock-episodes-1");

// --- login limits (see `api::auth`) ------------------------------------------------------------

/// Failed-login counter key (`user\n<username>\n<source>` or `source\n<source>`) → (failures,
/// unix ms of the latest): kept across restarts so a guesser gains nothing by waiting for one.
/// Not part of the shop's data (no backup, no reindex); a missing table reads as empty.
pub const LOGIN_FAILURES: TableDefinition<&str, (u32, i64)> =
    TableDefinition::new("login-failures-1");
