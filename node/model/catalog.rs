//! The catalog: products and their variants, new ones and patches.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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
