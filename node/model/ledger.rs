//! Ledger documents `ledger/<day>/<device>/<n>`: one writer each, append-only.
//!
//! Layout: `schema` plus one root key per entry, `entry:<uuid>` → the entry as a JSON string
//! ([`LedgerEntry`]). Entries are never edited: a void or a return is a new entry pointing at the
//! sale. Because an entry is a single put at the root, a change carries its entries in its
//! operations, and projections read them from the change without loading the document.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::books::TicketLine;
use crate::model::*;

/// Who accepted a revoked till's sale, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedSale {
    /// The revoked till's device id.
    pub from_device: String,
    /// Its name then.
    pub from_device_name: String,
    /// The owner who accepted it.
    pub by: Uuid,
    /// Their name then.
    pub by_name: String,
    /// When (ms since the Unix epoch).
    pub at: i64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Entry id.
    pub id: Uuid,
    /// Hybrid-logical-clock time, ms since the Unix epoch.
    pub time: i64,
    /// Device that recorded it.
    pub device: String,
    /// Person who recorded it.
    pub person: Option<Uuid>,
    /// What happened.
    #[serde(flatten)]
    pub body: EntryBody,
}

/// The kinds of entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    /// A sale, with the prices and tax rates used.
    Sale {
        /// Receipt number `PREFIX-000123`.
        receipt: String,
        /// Lines.
        lines: Vec<SaleLine>,
        /// Customer total (tax included), before cash rounding.
        total: i64,
        /// Tax included in the total.
        tax: i64,
        /// Sum of line discounts.
        discount: i64,
        /// Cash rounding.
        rounding: i64,
        /// Payments.
        payments: Vec<Payment>,
        /// Change given.
        change_due: i64,
        /// Free text.
        note: Option<String>,
        /// Warnings raised at the till.
        warnings: Vec<String>,
        /// The open ticket this sale closed, if it was parked first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<Uuid>,
        /// The cash-drawer shift open on the till when it sold.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shift_id: Option<Uuid>,
        /// Set when an owner accepted this sale from a till revoked before it synced it (see
        /// `domain::revoked_sales`): the entry keeps the till's id, receipt and time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accepted: Option<AcceptedSale>,
    },
    /// Stock received: a FIFO lot.
    StockIn {
        /// Product.
        product_id: Uuid,
        /// Variant.
        variant_id: Option<Uuid>,
        /// Quantity.
        qty: i64,
        /// Unit cost of the lot.
        unit_cost: i64,
        /// Free text.
        note: Option<String>,
    },
    /// Stock removed (manager).
    Removal {
        /// Product.
        product_id: Uuid,
        /// Variant.
        variant_id: Option<Uuid>,
        /// Quantity removed (positive).
        qty: i64,
        /// Why.
        reason: RemovalReason,
        /// Free text.
        note: Option<String>,
    },
    /// A stock count (manager): `delta` = counted − on hand as this device knew it.
    Adjustment {
        /// Product.
        product_id: Uuid,
        /// Variant.
        variant_id: Option<Uuid>,
        /// Change applied to on-hand.
        delta: i64,
        /// What was counted.
        counted: i64,
        /// Free text.
        note: Option<String>,
    },
    /// A sale cancelled; carries what it reverses so it projects without the sale.
    Void {
        /// The sale.
        sale_id: Uuid,
        /// The sale's shop-local day.
        sale_day: String,
        /// The sale's total and tax.
        sale_total: i64,
        /// Tax.
        sale_tax: i64,
        /// Quantities going back on the shelf.
        lines: Vec<QtyLine>,
        /// Why.
        reason: Option<String>,
        /// Cash handed back to the customer (the sale's cash net of change).
        #[serde(default)]
        cash_back: i64,
        /// Revenue without tax of each line of the sale (reversed per product).
        #[serde(default)]
        line_net: Vec<i64>,
        /// The shift open on the till that voided it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shift_id: Option<Uuid>,
    },
    /// Goods returned and refunded (manager).
    Return {
        /// The sale.
        sale_id: Uuid,
        /// Lines returned (with the money per line).
        lines: Vec<ReturnedLine>,
        /// Total refunded.
        refund: i64,
        /// Tax refunded.
        tax: i64,
        /// How.
        refund_method: PaymentMethod,
        /// Why.
        reason: Option<String>,
        /// The shift open on the till that took the return.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shift_id: Option<Uuid>,
    },
    /// Goods returned and refunded without the original sale (manager): priced like a sale
    /// line at today's price unless the refund amount was given.
    Refund {
        /// Lines refunded (`qty`, `total` and `tax` of what comes back).
        lines: Vec<SaleLine>,
        /// Total refunded.
        refund: i64,
        /// Tax refunded.
        tax: i64,
        /// How.
        refund_method: PaymentMethod,
        /// Why.
        reason: Option<String>,
        /// Whether the goods go back on the shelf (false: damaged, thrown away).
        restock: bool,
        /// The shift open on the till that took it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shift_id: Option<Uuid>,
    },
    /// Goods received on a delivery note: FIFO lots at the actual cost. Recorded twice (two
    /// devices, the same note) it counts once: `delivery_id` is derived from the purchase
    /// order and the note number, and of two entries with one `delivery_id` the smaller
    /// (time, entry id) counts on every replica.
    Delivery {
        /// `uuid v5(purchase order or nil, note number)`.
        delivery_id: Uuid,
        /// The purchase order, if any.
        po_id: Option<Uuid>,
        /// The supplier's delivery-note number.
        note_number: String,
        /// What arrived.
        lines: Vec<DeliveryLine>,
        /// Free text.
        note: Option<String>,
    },
    /// A cash-drawer shift opened on this till with a float.
    ShiftOpen {
        /// Shift id.
        shift_id: Uuid,
        /// Cash in the drawer at the start.
        float: i64,
    },
    /// Cash put into (positive) or taken out of (negative) the drawer, with a reason.
    CashMove {
        /// Shift id.
        shift_id: Uuid,
        /// Signed amount.
        amount: i64,
        /// Why.
        reason: String,
    },
    /// A shift closed with the counted cash.
    ShiftClose {
        /// Shift id.
        shift_id: Uuid,
        /// Cash counted in the drawer.
        counted: i64,
        /// Cash expected as the till knew it when closing.
        expected: i64,
        /// Free text.
        note: Option<String>,
    },
    /// A cart parked (or updated) so any till can pick it up. The latest park (time, entry
    /// id) of a ticket is its content.
    TicketPark {
        /// Ticket id.
        ticket_id: Uuid,
        /// Label (table 4, Mrs Smith …).
        name: String,
        /// What is in the cart.
        lines: Vec<TicketLine>,
    },
    /// A parked cart thrown away.
    TicketDiscard {
        /// Ticket id.
        ticket_id: Uuid,
    },
    /// A device's signed daily checkpoint of the document heads it holds (see
    /// `domain::audit`): an audit export shows that nothing checkpointed was later altered or
    /// removed. Stock, sales and every other projection ignore it.
    Checkpoint {
        /// The shop-local day it was written for.
        day: String,
        /// Document id → its heads (hex change hashes): every document whose heads moved since
        /// the device's previous checkpoint (all of them in its first one). `vault` is left out.
        heads: std::collections::BTreeMap<String, Vec<String>>,
    },
}

/// One delivered line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryLine {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    /// Quantity received.
    pub qty: i64,
    /// Actual unit cost on the delivery note.
    pub unit_cost: i64,
    /// Unit cost the purchase order expected.
    pub expected_cost: Option<i64>,
}

/// A product quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QtyLine {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub qty: i64,
}

/// A returned line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnedLine {
    /// Index in the sale's lines.
    pub line: usize,
    /// The sale line as sold, with `qty`, `total` and `tax` of what is returned.
    #[serde(flatten)]
    pub sold: SaleLine,
}

impl LedgerEntry {
    /// Root key of the entry in its ledger document.
    pub fn key(&self) -> String {
        format!("entry:{}", self.id)
    }
}
