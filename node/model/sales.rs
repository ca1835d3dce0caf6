//! Sales: payment methods, new sales and their lines, voids, returns and the daily totals.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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
