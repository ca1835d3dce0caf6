//! The value of stock at cost and at retail, per category.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{internal, vid};
use crate::domain::fifo;
use crate::error::Result;
use crate::store::tables::*;

/// Stock value of one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryValue {
    /// Category (absent: products without one).
    pub category: Option<String>,
    /// Units on hand.
    pub on_hand: i64,
    /// At cost.
    pub at_cost: i64,
    /// At shelf price.
    pub at_retail: i64,
}

/// What the stock on hand is worth (`GET /api/v1/reports/inventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InventoryValue {
    /// At cost: the FIFO lots still on the shelf ([`fifo::value_on_hand`]).
    pub at_cost: i64,
    /// At shelf price (the variant's price if it has its own), tax as the prices have it.
    pub at_retail: i64,
    /// Units on hand (items below zero count as zero).
    pub on_hand: i64,
    /// Products and variants with stock on hand.
    pub items: i64,
    /// Products and variants below zero (sold beyond known stock).
    pub negative: i64,
    /// Per category, largest value at cost first (ties: category name).
    pub categories: Vec<CategoryValue>,
}

/// The fields of a product that value its stock (the rest of the JSON is skipped).
#[derive(Deserialize)]
struct PricedProduct {
    id: Uuid,
    price: i64,
    category: Option<String>,
    variants: Vec<PricedVariant>,
}

#[derive(Deserialize)]
struct PricedVariant {
    id: Uuid,
    price: Option<i64>,
}

/// What the stock on hand is worth, at cost and at shelf price.
pub fn inventory(tx: &ReadTransaction) -> Result<InventoryValue> {
    let stock = tx.open_table(STOCK)?;
    let mut out = InventoryValue {
        at_cost: 0,
        at_retail: 0,
        on_hand: 0,
        items: 0,
        negative: 0,
        categories: Vec::new(),
    };
    let mut categories: BTreeMap<Option<String>, (i64, i64, i64)> = BTreeMap::new();
    for row in tx.open_table(PRODUCTS)?.iter()? {
        let p: PricedProduct = serde_json::from_str(row?.1.value()).map_err(internal)?;
        let items: Vec<(Option<Uuid>, i64)> = if p.variants.is_empty() {
            vec![(None, p.price)]
        } else {
            p.variants
                .iter()
                .map(|v| (Some(v.id), v.price.unwrap_or(p.price)))
                .collect()
        };
        for (variant, price) in items {
            let on_hand = stock
                .get((p.id.as_u128(), vid(variant)))?
                .map(|v| v.value())
                .unwrap_or(0);
            if on_hand < 0 {
                out.negative += 1;
            }
            if on_hand <= 0 {
                continue;
            }
            let at_cost = fifo::value_on_hand(tx, p.id, variant)?;
            // Saturating: a million units of a 10^15 price must not wrap around.
            let at_retail = on_hand.saturating_mul(price);
            out.items += 1;
            out.on_hand += on_hand;
            out.at_cost = out.at_cost.saturating_add(at_cost);
            out.at_retail = out.at_retail.saturating_add(at_retail);
            let c = categories.entry(p.category.clone()).or_default();
            c.0 += on_hand;
            c.1 = c.1.saturating_add(at_cost);
            c.2 = c.2.saturating_add(at_retail);
        }
    }
    out.categories = categories
        .into_iter()
        .map(|(category, (on_hand, at_cost, at_retail))| CategoryValue {
            category,
            on_hand,
            at_cost,
            at_retail,
        })
        .collect();
    out.categories.sort_by(|x, y| {
        y.at_cost
            .cmp(&x.at_cost)
            .then_with(|| x.category.cmp(&y.category))
    });
    Ok(out)
}
