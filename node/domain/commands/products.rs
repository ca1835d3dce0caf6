//! Catalog commands: creating and editing products and their variants.

use redb::ReadableMultimapTable;
use uuid::Uuid;

use super::{MAX_QTY, check_code, check_money, check_tax_rate, load_product, person_key};
use crate::docs::DocId;
use crate::docs::shop::non_empty;
use crate::domain::access::{self, Access};
use crate::domain::catalog;
use crate::error::{Error, Result};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

fn check_sku_free(ctx: &Ctx<'_>, field: &str, sku: &str, except: Option<Uuid>) -> Result<()> {
    let t = ctx.tx.open_multimap_table(SKUS)?;
    for row in t.get(sku)? {
        let (pid, _) = row?.value();
        if Some(Uuid::from_u128(pid)) != except {
            return Err(Error::Conflict(format!("SKU {sku:?} is already used"))).map_err(
                |e| match e {
                    Error::Conflict(m) => Error::Invalid {
                        field: Some(field.to_string()),
                        message: m,
                    },
                    e => e,
                },
            );
        }
    }
    Ok(())
}

fn check_variants(
    ctx: &Ctx<'_>,
    product: Uuid,
    base_sku: &str,
    existing: &[Variant],
    new: &[NewVariant],
    field: &str,
) -> Result<Vec<Variant>> {
    let mut out = Vec::new();
    for (i, v) in new.iter().enumerate() {
        let f = |x: &str| format!("{field}[{i}].{x}");
        let sku = check_code(&f("sku"), &v.sku)?;
        if sku == base_sku
            || existing.iter().any(|e| e.sku == sku)
            || out.iter().any(|e: &Variant| e.sku == sku)
        {
            return Err(Error::invalid(
                f("sku"),
                format!("SKU {sku:?} is already used"),
            ));
        }
        check_sku_free(ctx, &f("sku"), &sku, Some(product))?;
        out.push(Variant {
            id: Uuid::new_v4(),
            sku,
            name: non_empty(&f("name"), &v.name, 100)?,
            barcode: v
                .barcode
                .as_deref()
                .map(|b| check_code(&f("barcode"), b))
                .transpose()?,
            price: v.price.map(|p| check_money(&f("price"), p)).transpose()?,
        });
    }
    if existing.len() + out.len() > 500 {
        return Err(Error::invalid(field, "at most 500 variants"));
    }
    Ok(out)
}

/// Creates a product (manager).
pub fn create_product(ctx: &mut Ctx<'_>, by: &Principal, p: NewProduct) -> Result<Product> {
    access::require(by, Access::CreateProduct)?;
    let key = person_key(by)?.clone();
    let id = Uuid::new_v4();
    let sku = check_code("sku", &p.sku)?;
    check_sku_free(ctx, "sku", &sku, None)?;
    let product = Product {
        id,
        variants: check_variants(ctx, id, &sku, &[], &p.variants, "variants")?,
        sku,
        barcode: p
            .barcode
            .as_deref()
            .map(|b| check_code("barcode", b))
            .transpose()?,
        name: non_empty("name", &p.name, 200)?,
        category: p
            .category
            .as_deref()
            .map(|c| non_empty("category", c, 100))
            .transpose()?,
        unit: p
            .unit
            .as_deref()
            .map(|u| non_empty("unit", u, 20))
            .transpose()?
            .unwrap_or_else(|| "pcs".into()),
        price: check_money("price", p.price)?,
        cost: check_money("cost", p.cost.unwrap_or(0))?,
        tax_rate: check_tax_rate("tax_rate", p.tax_rate.unwrap_or(0))?,
        reorder_level: p
            .reorder_level
            .map(|r| {
                if (0..=MAX_QTY).contains(&r) {
                    Ok(r)
                } else {
                    Err(Error::invalid("reorder_level", "must be 0 or more"))
                }
            })
            .transpose()?,
        archived: false,
        conflicts: Default::default(),
    };
    ctx.change(&DocId::Catalog, &key, |doc| {
        catalog::put_new_product(doc, &product)
    })?;
    load_product(ctx, id)
}

/// Edits a product (manager).
pub fn update_product(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    id: Uuid,
    p: ProductPatch,
) -> Result<Product> {
    access::require(by, Access::EditProduct)?;
    let key = person_key(by)?.clone();
    let old = {
        let doc = ctx
            .doc("catalog")?
            .ok_or_else(|| Error::NoShop("this node has no catalog yet".into()))?;
        catalog::read_product(doc, id).ok_or_else(|| Error::NotFound(format!("no product {id}")))?
    };
    let mut new = old.clone();
    if let Some(sku) = p.sku {
        new.sku = check_code("sku", &sku)?;
        if new.sku != old.sku {
            check_sku_free(ctx, "sku", &new.sku, Some(id))?;
            if old.variants.iter().any(|v| v.sku == new.sku) {
                return Err(Error::invalid(
                    "sku",
                    "a variant of this product uses that SKU",
                ));
            }
        }
    }
    if let Some(v) = p.name {
        new.name = non_empty("name", &v, 200)?;
    }
    if let Some(v) = p.price {
        new.price = check_money("price", v)?;
    }
    if let Some(v) = p.barcode {
        new.barcode = v.as_deref().map(|b| check_code("barcode", b)).transpose()?;
    }
    if let Some(v) = p.category {
        new.category = v
            .as_deref()
            .map(|c| non_empty("category", c, 100))
            .transpose()?;
    }
    if let Some(v) = p.unit {
        new.unit = non_empty("unit", &v, 20)?;
    }
    if let Some(v) = p.cost {
        new.cost = check_money("cost", v)?;
    }
    if let Some(v) = p.tax_rate {
        new.tax_rate = check_tax_rate("tax_rate", v)?;
    }
    if let Some(v) = p.reorder_level {
        if v.is_some_and(|r| !(0..=MAX_QTY).contains(&r)) {
            return Err(Error::invalid("reorder_level", "must be 0 or more"));
        }
        new.reorder_level = v;
    }
    if let Some(v) = p.archived {
        new.archived = v;
    }
    let added = check_variants(
        ctx,
        id,
        &new.sku,
        &old.variants,
        &p.add_variants,
        "add_variants",
    )?;
    new.variants.extend(added);
    if new == old && old.conflicts.is_empty() {
        return Ok(old);
    }
    ctx.change(&DocId::Catalog, &key, |doc| {
        catalog::put_product_edit(doc, &old, &new)
    })?;
    load_product(ctx, id)
}
