//! The shop, its people and its devices: roles, settings, the new shop, persons and devices.

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
