//! Stock: receiving, removals, adjustments, the movements they make and the levels.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Receiving stock: a FIFO lot at the given unit cost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockIn {
    /// Product.
    pub product_id: Uuid,
    /// Variant, if the product has variants.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity received (> 0).
    pub qty: i64,
    /// Unit cost of this lot in minor units (default: the product's cost).
    #[serde(default)]
    pub unit_cost: Option<i64>,
    /// Free text (supplier, delivery note …).
    #[serde(default)]
    pub note: Option<String>,
}

/// Why stock left other than by a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    #[allow(missing_docs)]
    Damaged,
    #[allow(missing_docs)]
    Expired,
    #[allow(missing_docs)]
    Theft,
    #[allow(missing_docs)]
    OwnUse,
    #[allow(missing_docs)]
    ReturnedToSupplier,
    #[allow(missing_docs)]
    Other,
}

/// Removing stock (manager).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockRemove {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity removed (> 0).
    pub qty: i64,
    /// Why.
    pub reason: RemovalReason,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// A stock count: sets on-hand to what was counted by recording the difference (manager).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjust {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// The quantity counted on the shelf (≥ 0).
    pub counted: i64,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// The kind of a stock movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Received stock (a FIFO lot).
    StockIn,
    /// Sold.
    Sale,
    /// Removed with a reason.
    Removal,
    /// Count adjustment.
    Adjustment,
    /// Back on the shelf from a return.
    Return,
    /// Back on the shelf because the sale was voided.
    Void,
    /// Received on a delivery note (a FIFO lot, usually against a purchase order).
    Delivery,
}

/// One change of stock on hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Movement {
    /// The ledger entry that caused it.
    pub entry_id: Uuid,
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    pub variant_id: Option<Uuid>,
    /// Entry time (ms since the Unix epoch, hybrid logical clock).
    pub time: i64,
    /// Kind.
    pub kind: MovementKind,
    /// Signed quantity: positive in, negative out.
    pub qty: i64,
    /// Unit cost of a lot (stock-in) in minor units.
    pub unit_cost: Option<i64>,
    /// Removal reason.
    pub reason: Option<RemovalReason>,
    /// Free text.
    pub note: Option<String>,
    /// Device id that recorded it.
    pub device: String,
    /// Person who recorded it.
    pub person: Option<Uuid>,
    /// Shop-local day it counts on (a void counts on its sale's day).
    #[serde(default)]
    pub day: String,
    /// For a return or void: the sale it came from and the line of that sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_id: Option<Uuid>,
    /// See `sale_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_line: Option<u32>,
}

/// Stock on hand of one product or variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StockLevel {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    pub variant_id: Option<Uuid>,
    /// SKU (the variant's if any).
    pub sku: String,
    /// Name.
    pub name: String,
    /// Quantity on hand (sum of movements; negative after overselling).
    pub on_hand: i64,
    /// Reorder level in force.
    pub reorder_level: i64,
    /// `on_hand <= reorder_level`.
    pub low: bool,
    /// Value of what is on hand at FIFO cost, minor units.
    pub value_at_cost: i64,
}
