//! The books beyond the till, as the API, the UI and embedders see them: suppliers and
//! purchase orders with deliveries, cash-drawer shifts, refunds without a receipt, open
//! tickets, FIFO cost and profit, closed periods. Money is integer minor units.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::PaymentMethod;

// --- suppliers and purchase orders ---------------------------------------------------------

/// A supplier (from the `orders` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Supplier {
    /// Supplier id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Contact person.
    pub contact: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Free text (account number, delivery days …).
    pub note: Option<String>,
}

/// Creating or replacing a supplier's details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Bean Co", "contact": "Sam", "phone": "+33 1 23 45 67 89",
    "email": "orders@bean.example"}))]
pub struct NewSupplier {
    /// Name.
    pub name: String,
    /// Contact person.
    #[serde(default)]
    pub contact: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// Where a purchase order stands. `Received` is set by the last delivery (or by a manager
/// closing an order short); `Cancelled` ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoStatus {
    /// Being written; lines can change.
    Draft,
    /// Sent to the supplier.
    Sent,
    /// The supplier confirmed it.
    Confirmed,
    /// Everything arrived (or closed short).
    Received,
    /// Cancelled.
    Cancelled,
}

impl PoStatus {
    /// The lowercase name stored in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            PoStatus::Draft => "draft",
            PoStatus::Sent => "sent",
            PoStatus::Confirmed => "confirmed",
            PoStatus::Received => "received",
            PoStatus::Cancelled => "cancelled",
        }
    }
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<PoStatus> {
        Some(match s {
            "draft" => PoStatus::Draft,
            "sent" => PoStatus::Sent,
            "confirmed" => PoStatus::Confirmed,
            "received" => PoStatus::Received,
            "cancelled" => PoStatus::Cancelled,
            _ => return None,
        })
    }
    /// Whether goods may still arrive on the order.
    pub fn is_open(self) -> bool {
        matches!(self, PoStatus::Sent | PoStatus::Confirmed)
    }
}

/// One line of a purchase order as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoLine {
    /// Product.
    pub product_id: Uuid,
    /// Variant, if the product has variants.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity ordered (> 0).
    pub qty: i64,
    /// Expected unit cost (default: the product's cost).
    #[serde(default)]
    pub unit_cost: Option<i64>,
}

/// Creating a purchase order (a draft).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPurchaseOrder {
    /// Supplier.
    pub supplier_id: Uuid,
    /// Lines (at least one).
    pub lines: Vec<PoLine>,
    /// Expected delivery day `YYYY-MM-DD`.
    #[serde(default)]
    pub expected_on: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// Changing a purchase order: lines only while it is a draft; status along
/// draft → sent → confirmed → received, or cancelled.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrderPatch {
    /// New lines (drafts only).
    #[serde(default)]
    pub lines: Option<Vec<PoLine>>,
    /// New status.
    #[serde(default)]
    pub status: Option<PoStatus>,
    /// Expected delivery day.
    #[serde(default)]
    pub expected_on: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// A purchase-order line with what has arrived so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoLineView {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    /// SKU (the variant's if any).
    pub sku: String,
    /// Name.
    pub name: String,
    /// Ordered.
    pub qty: i64,
    /// Expected unit cost.
    pub unit_cost: i64,
    /// Received so far (counted deliveries).
    pub received: i64,
    /// Still to come (0 once the order is received or cancelled).
    pub outstanding: i64,
}

/// A purchase order with its deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PurchaseOrder {
    /// Order id.
    pub id: Uuid,
    /// Order number shown to people, e.g. `PO-3F2A91C0`.
    pub number: String,
    /// Supplier.
    pub supplier_id: Uuid,
    /// Supplier name.
    pub supplier_name: String,
    /// Status (`received` once every line arrived).
    pub status: PoStatus,
    /// Lines.
    pub lines: Vec<PoLineView>,
    /// Expected delivery day.
    pub expected_on: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// When it was created (ms since the Unix epoch).
    pub created_at: i64,
    /// Ordered value at expected cost.
    pub ordered_value: i64,
    /// Received value at actual cost.
    pub received_value: i64,
    /// Deliveries received on it, oldest first.
    pub deliveries: Vec<Delivery>,
}

/// One line of a delivery request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeliveryLine {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity received (> 0).
    pub qty: i64,
    /// Actual unit cost on the delivery note (default: the order's expected cost).
    #[serde(default)]
    pub unit_cost: Option<i64>,
}

/// Receiving a delivery on a purchase order (anyone logged in).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelivery {
    /// The supplier's delivery-note number: the same note recorded on two devices counts
    /// once.
    pub note_number: String,
    /// What arrived.
    pub lines: Vec<NewDeliveryLine>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// A delivered line with the price variance against the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryLineView {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub sku: String,
    #[allow(missing_docs)]
    pub name: String,
    /// Quantity received.
    pub qty: i64,
    /// Actual unit cost.
    pub unit_cost: i64,
    /// Unit cost the order expected.
    pub expected_cost: Option<i64>,
    /// (actual − expected) × qty: positive when it cost more than ordered.
    pub variance: i64,
}

/// A delivery as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Delivery id, derived from the order and the note number.
    pub id: Uuid,
    /// The ledger entry that counts for it.
    pub entry_id: Uuid,
    /// Other entries that recorded the same delivery (they change nothing).
    pub duplicates: Vec<Uuid>,
    /// Purchase order.
    pub po_id: Option<Uuid>,
    /// Delivery-note number.
    pub note_number: String,
    /// When it was recorded.
    pub time: i64,
    /// Device that recorded it.
    pub device: String,
    /// Person who recorded it.
    pub person: Option<Uuid>,
    /// Lines.
    pub lines: Vec<DeliveryLineView>,
    /// Value at actual cost.
    pub total_cost: i64,
    /// Sum of the lines' variances.
    pub variance: i64,
    /// Free text.
    pub note: Option<String>,
}

// --- shifts ---------------------------------------------------------------------------------

/// Opening a shift on this till.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenShift {
    /// Cash in the drawer at the start (minor units).
    pub float: i64,
}

/// Whether cash goes into or out of the drawer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CashMoveKind {
    /// Cash put in (change from the bank …).
    PayIn,
    /// Cash taken out (paying a delivery, a bank drop …).
    PayOut,
}

/// A pay-in or pay-out during the open shift.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCashMove {
    /// In or out.
    pub kind: CashMoveKind,
    /// Amount (> 0).
    pub amount: i64,
    /// Why (required).
    pub reason: String,
}

/// Closing the open shift.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseShift {
    /// Cash counted in the drawer.
    pub counted: i64,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// One pay-in or pay-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CashMove {
    /// Entry id.
    pub id: Uuid,
    /// When.
    pub time: i64,
    /// Signed: positive in, negative out.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// Who.
    pub person: Option<Uuid>,
}

/// A cash-drawer shift and its report. Every replica computes the same figures from the
/// till's entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shift {
    /// Shift id.
    pub id: Uuid,
    /// Till (device id).
    pub device: String,
    /// Opened at (ms), once the opening entry is known.
    pub opened_at: Option<i64>,
    /// Opened by.
    pub opened_by: Option<Uuid>,
    /// Float.
    pub float: i64,
    /// Sales recorded in the shift (not counting voids).
    pub sales: i64,
    /// Cash taken for sales, net of change given.
    pub cash_sales: i64,
    /// Card takings.
    pub card_sales: i64,
    /// Other takings.
    pub other_sales: i64,
    /// Cash paid back for voids, returns and refunds.
    pub cash_refunds: i64,
    /// Cash put in.
    pub pay_ins: i64,
    /// Cash taken out.
    pub pay_outs: i64,
    /// float + cash_sales − cash_refunds + pay_ins − pay_outs.
    pub expected: i64,
    /// Counted at close.
    pub counted: Option<i64>,
    /// counted − expected (negative: cash missing).
    pub difference: Option<i64>,
    /// What the till expected when it closed (differs from `expected` only if entries of the
    /// shift arrived after the close, e.g. from another replica's old state).
    pub expected_at_close: Option<i64>,
    /// Closed at (ms).
    pub closed_at: Option<i64>,
    /// Closed by.
    pub closed_by: Option<Uuid>,
    /// Note given at close.
    pub note: Option<String>,
    /// Pay-ins and pay-outs, oldest first.
    pub moves: Vec<CashMove>,
}

// --- refunds without a receipt -------------------------------------------------------------

/// One line of a refund without the original sale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefundLine {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity (> 0).
    pub qty: i64,
    /// Amount refunded for the line, tax included (default: today's price × qty).
    #[serde(default)]
    pub amount: Option<i64>,
}

/// Refunding goods without the original sale (manager).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// Lines.
    pub lines: Vec<NewRefundLine>,
    /// How the money goes back (default cash).
    #[serde(default)]
    pub refund_method: Option<PaymentMethod>,
    /// Why (required).
    pub reason: String,
    /// Put the goods back on the shelf (default true).
    #[serde(default)]
    pub restock: Option<bool>,
}

/// A refund as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    /// Entry id.
    pub id: Uuid,
    /// When.
    pub time: i64,
    /// Lines with the money per line.
    pub lines: Vec<crate::model::SaleLine>,
    /// Total refunded.
    pub refund: i64,
    /// Tax refunded.
    pub tax: i64,
    /// How.
    pub refund_method: PaymentMethod,
    /// Why.
    pub reason: Option<String>,
    /// Whether the goods went back on the shelf.
    pub restock: bool,
}

// --- open tickets ---------------------------------------------------------------------------

/// One line of a parked cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketLine {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity (> 0).
    pub qty: i64,
    /// Line discount.
    #[serde(default)]
    pub discount: Option<i64>,
}

/// Parking a cart (new ticket) or updating a parked one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParkTicket {
    /// Label (table 4, Mrs Smith …).
    pub name: String,
    /// What is in the cart.
    pub lines: Vec<TicketLine>,
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Parked: any till can pick it up.
    Open,
    /// Paid: a sale closed it.
    Closed,
    /// Thrown away.
    Discarded,
}

/// An open ticket (a parked cart), synced to every till.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    /// Ticket id.
    pub id: Uuid,
    /// Label.
    pub name: String,
    /// Content of the latest park.
    pub lines: Vec<TicketLine>,
    /// Status.
    pub status: TicketStatus,
    /// Latest park (ms).
    pub updated_at: i64,
    /// Till that parked it last.
    pub updated_on: String,
    /// Who parked it last.
    pub updated_by: Option<Uuid>,
    /// The sale that closed it: the earliest (time, id) of the sales that closed it.
    pub closed_by: Option<Uuid>,
    /// Further sales that closed it while the tills were cut off from each other: each needs
    /// a void or refund.
    pub double_closed_by: Vec<Uuid>,
}

// --- FIFO cost, profit, periods ------------------------------------------------------------

/// Profit of one day (or, for a closed day, as frozen when its period was closed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DayProfit {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Revenue without tax, after voids and returns.
    pub revenue: i64,
    /// FIFO cost of the goods sold, after voids and returns.
    pub cost: i64,
    /// revenue − cost.
    pub profit: i64,
    /// Stock written off (removals, negative counts) at FIFO cost.
    pub shrinkage: i64,
    /// Whether the day lies in a closed period (its figures are frozen).
    pub closed: bool,
    /// On the first open day after a closed period: what changed in closed days since they
    /// were closed (late entries, re-allocated cost), included in `revenue`/`cost`.
    pub adjustment_revenue: i64,
    /// See `adjustment_revenue`.
    pub adjustment_cost: i64,
}

/// Profit of one product over a range (live FIFO figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductProfit {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub sku: String,
    #[allow(missing_docs)]
    pub name: String,
    /// Quantity sold, after voids and returns.
    pub qty: i64,
    /// Revenue without tax.
    pub revenue: i64,
    /// FIFO cost.
    pub cost: i64,
    /// revenue − cost.
    pub profit: i64,
}

/// The profit of one sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SaleProfit {
    /// Sale.
    pub sale_id: Uuid,
    /// Receipt.
    pub receipt: String,
    /// Revenue without tax, after returns (0 if voided).
    pub revenue: i64,
    /// FIFO cost of what it sold, after returns (0 if voided).
    pub cost: i64,
    /// revenue − cost.
    pub profit: i64,
    /// Cost per line as allocated (before returns).
    pub line_costs: Vec<i64>,
}

/// Closing a period (owner): days up to `through` freeze.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPeriodClose {
    /// Last day of the period, `YYYY-MM-DD` (before today).
    pub through: String,
}

/// A closed period as recorded in the `settings` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeriodClose {
    /// Last day of the period.
    pub through: String,
    /// When it was closed (ms).
    pub closed_at: i64,
    /// Who closed it.
    pub closed_by: Uuid,
    /// The figures of every day with activity up to `through` that was not in an earlier
    /// closed period, frozen.
    pub days: Vec<DayProfit>,
}

/// A product at or below its reorder level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LowStock {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub sku: String,
    #[allow(missing_docs)]
    pub name: String,
    /// On hand.
    pub on_hand: i64,
    /// Still to come on open purchase orders.
    pub on_order: i64,
    /// Reorder level in force.
    pub reorder_level: i64,
    /// Whether what is on order lifts it above the reorder level.
    pub covered: bool,
}
