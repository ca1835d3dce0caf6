//! The shop's data as the API, the UI and embedders see it.
//!
//! Requests (`New*`, `*Patch`, `StockIn` …) reject unknown fields; views (`Product`, `Sale` …)
//! are what projections return. Money is always an integer number of the currency's minor
//! units (cents for EUR, yen for JPY, fils for KWD); tax rates are basis points (2000 = 20 %).

use std::collections::BTreeMap;

pub mod books;
pub mod ledger;
pub use books::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a person may do. Ordered: `Staff < Manager < Owner`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sells, receives stock, looks up stock; logs in with a PIN; has no key.
    Staff,
    /// Catalog, removals, adjustments, reports, staff; has a person key.
    Manager,
    /// Everything; has a person key.
    Owner,
}

impl Role {
    /// The lowercase name used in documents and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Manager => "manager",
            Role::Owner => "owner",
        }
    }
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "staff" => Some(Role::Staff),
            "manager" => Some(Role::Manager),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// What a device is in the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRole {
    /// A shop device: till, tablet, back-office PC.
    Till,
    /// A relay in the cloud (store-and-forward replica).
    Relay,
}

/// Whether shelf prices include tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaxMode {
    /// Prices include tax (typical in the EU); tax is the part of the price.
    Inclusive,
    /// Tax is added on top of prices (typical in the US).
    Exclusive,
}

/// How amounts that fall between two minor units are rounded (per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Half away from zero (commercial rounding).
    HalfUp,
    /// Half to even (banker's rounding).
    HalfEven,
    /// Towards zero.
    Down,
}

/// What happens when a sale needs more than the known stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OversellPolicy {
    /// Sell, and return a warning with the sale.
    Warn,
    /// Refuse the sale.
    Block,
}

/// The shop's settings (the `settings` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    /// Shop name shown on receipts and in the UI.
    pub shop_name: String,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Minor-unit exponent of the currency (JPY 0, EUR 2, KWD 3).
    pub currency_exponent: u8,
    /// IANA time zone, e.g. `Europe/Paris`; decides the shop-local day of every entry.
    pub timezone: String,
    /// Whether prices include tax.
    pub tax_mode: TaxMode,
    /// Rounding of per-line tax.
    pub rounding: Rounding,
    /// Cash totals are rounded to a multiple of this many minor units (1 = no rounding).
    pub cash_rounding: i64,
    /// Text printed at the bottom of receipts.
    pub receipt_text: String,
    /// Reorder level for products that do not set one.
    pub low_stock_default: i64,
    /// Selling beyond known stock: warn (default) or block.
    pub oversell: OversellPolicy,
    /// How many staff accounts the shop may have (default 5).
    pub max_staff: u32,
}

/// A change to the settings; fields left out stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[allow(missing_docs)]
    pub shop_name: Option<String>,
    #[allow(missing_docs)]
    pub currency: Option<String>,
    #[allow(missing_docs)]
    pub timezone: Option<String>,
    #[allow(missing_docs)]
    pub tax_mode: Option<TaxMode>,
    #[allow(missing_docs)]
    pub rounding: Option<Rounding>,
    #[allow(missing_docs)]
    pub cash_rounding: Option<i64>,
    #[allow(missing_docs)]
    pub receipt_text: Option<String>,
    #[allow(missing_docs)]
    pub low_stock_default: Option<i64>,
    #[allow(missing_docs)]
    pub oversell: Option<OversellPolicy>,
    #[allow(missing_docs)]
    pub max_staff: Option<u32>,
}

/// Creating a shop (`tillmesh init` and the first-start page).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShop {
    /// Shop name.
    pub shop_name: String,
    /// The owner's display name.
    pub owner_name: String,
    /// The owner's login name.
    pub username: String,
    /// The owner's password (at least 10 characters).
    pub password: String,
    /// ISO 4217 currency code (default `EUR`).
    #[serde(default)]
    pub currency: Option<String>,
    /// IANA time zone (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Tax mode (default inclusive).
    #[serde(default)]
    pub tax_mode: Option<TaxMode>,
    /// Name of this device (default `Till 1`).
    #[serde(default)]
    pub device_name: Option<String>,
}

/// What creating a shop returns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShopCreated {
    /// The shop's id.
    pub shop_id: Uuid,
    /// The offline recovery key: shown once, write it down.
    pub recovery_key: String,
}

/// A person of the shop (from the `members` document). Never carries secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// Person id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Login name (unique in the shop).
    pub username: String,
    /// Role.
    pub role: Role,
    /// Public person key (hex) for owners and managers.
    pub public_key: Option<String>,
    /// Whether the person was revoked.
    pub revoked: bool,
}

/// Adding a person: managers and owners with a password, staff with a PIN.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    /// Display name.
    pub name: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Password (owners and managers, at least 10 characters).
    #[serde(default)]
    pub password: Option<String>,
    /// PIN of 4–6 digits (staff).
    #[serde(default)]
    pub pin: Option<String>,
}

/// A device of the shop (from the `members` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Short device id (hex), used in ledger document ids.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: DeviceRole,
    /// Public device key (hex).
    pub public_key: String,
    /// Receipt-number prefix, e.g. `T1`.
    pub receipt_prefix: String,
    /// Whether the device was revoked.
    pub revoked: bool,
}

/// A product variant (size × colour …) with its own SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Variant {
    /// Variant id.
    pub id: Uuid,
    /// Its own SKU.
    pub sku: String,
    /// e.g. `M / blue`.
    pub name: String,
    /// Its own barcode, if any.
    pub barcode: Option<String>,
    /// Price if it differs from the product's.
    pub price: Option<i64>,
}

/// A variant in a create or edit request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVariant {
    /// Its own SKU.
    pub sku: String,
    /// e.g. `M / blue`.
    pub name: String,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Price if it differs from the product's.
    #[serde(default)]
    pub price: Option<i64>,
}

/// A product (from the `catalog` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    /// Product id.
    pub id: Uuid,
    /// Stock-keeping unit.
    pub sku: String,
    /// Barcode (EAN/UPC …).
    pub barcode: Option<String>,
    /// Name.
    pub name: String,
    /// Category.
    pub category: Option<String>,
    /// Unit of sale (`pcs`, `kg` …).
    pub unit: String,
    /// Price in minor units (with or without tax by the shop's tax mode).
    pub price: i64,
    /// Expected unit cost in minor units.
    pub cost: i64,
    /// Tax rate in basis points (2000 = 20 %).
    pub tax_rate: u32,
    /// Stock level at which the product counts as low.
    pub reorder_level: Option<i64>,
    /// Variants.
    pub variants: Vec<Variant>,
    /// Archived products are not sold any more.
    pub archived: bool,
    /// Fields that two devices set concurrently: every value, until someone picks one.
    pub conflicts: BTreeMap<String, Vec<serde_json::Value>>,
}

/// Creating a product.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Stock-keeping unit (unique).
    pub sku: String,
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Unit (default `pcs`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Expected unit cost (default 0).
    #[serde(default)]
    pub cost: Option<i64>,
    /// Tax rate in basis points (default 0).
    #[serde(default)]
    pub tax_rate: Option<u32>,
    /// Reorder level.
    #[serde(default)]
    pub reorder_level: Option<i64>,
    /// Variants.
    #[serde(default)]
    pub variants: Vec<NewVariant>,
}

/// Editing a product; fields left out stay as they are. `null` clears an optional field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[allow(missing_docs)]
    pub sku: Option<String>,
    #[allow(missing_docs)]
    pub name: Option<String>,
    #[allow(missing_docs)]
    pub price: Option<i64>,
    #[allow(missing_docs)]
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub barcode: Option<Option<String>>,
    #[allow(missing_docs)]
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<String>>,
    #[allow(missing_docs)]
    pub unit: Option<String>,
    #[allow(missing_docs)]
    pub cost: Option<i64>,
    #[allow(missing_docs)]
    pub tax_rate: Option<u32>,
    #[allow(missing_docs)]
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub reorder_level: Option<Option<i64>>,
    /// Archive (`true`) or bring back (`false`).
    pub archived: Option<bool>,
    /// Variants to add.
    #[serde(default)]
    pub add_variants: Vec<NewVariant>,
}

/// Distinguishes "field absent" from "field null" in patches.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

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

/// Payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    #[allow(missing_docs)]
    Cash,
    #[allow(missing_docs)]
    Card,
    #[allow(missing_docs)]
    Other,
}

/// One line of a sale request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSaleLine {
    /// Product.
    pub product_id: Uuid,
    /// Variant.
    #[serde(default)]
    pub variant_id: Option<Uuid>,
    /// Quantity (> 0).
    pub qty: i64,
    /// Discount on the whole line, minor units (default 0).
    #[serde(default)]
    pub discount: Option<i64>,
}

/// One payment of a sale request; without an amount it tenders exactly what is left.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// Method.
    pub method: PaymentMethod,
    /// Amount tendered in minor units; cash may exceed what is due (change is given).
    #[serde(default)]
    pub amount: Option<i64>,
}

/// Recording a sale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Lines (at least one).
    pub lines: Vec<NewSaleLine>,
    /// Payments (at least one; split tender allowed).
    pub payments: Vec<NewPayment>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
    /// The open ticket this sale pays (closing it).
    #[serde(default)]
    pub ticket_id: Option<Uuid>,
}

/// A line of a recorded sale, with the price and tax rate used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SaleLine {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub sku: String,
    #[allow(missing_docs)]
    pub name: String,
    #[allow(missing_docs)]
    pub qty: i64,
    /// Unit price used.
    pub unit_price: i64,
    /// Tax rate used, basis points.
    pub tax_rate: u32,
    /// Line discount.
    pub discount: i64,
    /// Tax in this line.
    pub tax: i64,
    /// What the customer pays for this line (tax included).
    pub total: i64,
}

/// A payment as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    #[allow(missing_docs)]
    pub method: PaymentMethod,
    /// Amount tendered.
    pub amount: i64,
}

/// A recorded sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sale {
    /// Entry id.
    pub id: Uuid,
    /// Receipt number, e.g. `T1-000123`.
    pub receipt: String,
    /// Entry time (ms since the Unix epoch).
    pub time: i64,
    /// Shop-local day `YYYY-MM-DD`.
    pub day: String,
    /// Device id.
    pub device: String,
    /// Person who sold.
    pub person: Option<Uuid>,
    /// Lines.
    pub lines: Vec<SaleLine>,
    /// Sum of line totals before tax is separated (tax included).
    pub total: i64,
    /// Tax included in `total`.
    pub tax: i64,
    /// Sum of line discounts.
    pub discount: i64,
    /// Cash rounding applied to the total (positive: customer paid more).
    pub rounding: i64,
    /// Payments tendered.
    pub payments: Vec<Payment>,
    /// Change given back in cash.
    pub change_due: i64,
    /// Free text.
    pub note: Option<String>,
    /// The void entry, if voided.
    pub voided_by: Option<Uuid>,
    /// Quantities returned so far, per line index.
    pub returned: Vec<i64>,
    /// Warnings raised when the sale was recorded (e.g. selling beyond known stock).
    pub warnings: Vec<String>,
    /// The open ticket it closed.
    #[serde(default)]
    pub ticket_id: Option<Uuid>,
    /// The cash-drawer shift it was sold in.
    #[serde(default)]
    pub shift_id: Option<Uuid>,
}

/// Voiding a sale.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidSale {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One line of a return.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    /// Index of the line in the original sale.
    pub line: usize,
    /// Quantity returned (> 0, at most what is left of the line).
    pub qty: i64,
}

/// Returning (part of) a sale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReturn {
    /// Lines returned.
    pub lines: Vec<ReturnLine>,
    /// How the refund is paid (default: cash).
    #[serde(default)]
    pub refund_method: Option<PaymentMethod>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A recorded return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SaleReturn {
    /// Entry id.
    pub id: Uuid,
    /// The sale returned.
    pub sale_id: Uuid,
    /// Entry time.
    pub time: i64,
    /// Lines returned with the money refunded per line.
    pub lines: Vec<SaleLine>,
    /// Total refunded.
    pub refund: i64,
    /// Tax refunded.
    pub tax: i64,
    /// How.
    pub refund_method: PaymentMethod,
}

/// Totals of one shop-local day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DailySales {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Sales not voided.
    pub count: i64,
    /// Revenue, tax included, after voids and returns.
    pub total: i64,
    /// Tax, after voids and returns.
    pub tax: i64,
    /// Refunded by returns.
    pub refunds: i64,
}

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
