//! The `catalog` document: `product:<uuid>` → map of fields, each a last-writer-wins register
//! (`sku`, `barcode`, `name`, `category`, `unit`, `price`, `cost`, `tax_rate`, `reorder_level`,
//! `archived`) and `variants` → map `<uuid>` → map `{sku, name, barcode, price}`.
//! A product map is created by one device; concurrent edits of a field keep every value until
//! someone picks one — [`read_product`] reports them as `conflicts`.

use automerge::{AutoCommit, ObjId, ObjType, ROOT, ScalarValue, transaction::Transactable};
use uuid::Uuid;

use crate::docs::am;
use crate::error::Result;
use crate::model::*;

/// Root key of a product.
pub fn product_key(id: Uuid) -> String {
    format!("product:{id}")
}

/// Reads a product from the catalog.
pub fn read_product(doc: &AutoCommit, id: Uuid) -> Option<Product> {
    let obj = am::map(doc, &ROOT, &product_key(id), None)?;
    let s = |k: &str| am::string(doc, &obj, k, None);
    let i = |k: &str| am::int(doc, &obj, k, None);
    let mut conflicts = std::collections::BTreeMap::new();
    for field in [
        "sku",
        "barcode",
        "name",
        "category",
        "unit",
        "price",
        "cost",
        "tax_rate",
        "reorder_level",
        "archived",
    ] {
        let all = am::all_values(doc, &obj, field);
        if all.len() > 1 {
            conflicts.insert(field.to_string(), all);
        }
    }
    let mut variants = Vec::new();
    if let Some(vmap) = am::map(doc, &obj, "variants", None) {
        for vid in am::keys(doc, &vmap, None) {
            let (Ok(vuuid), Some(vo)) = (Uuid::parse_str(&vid), am::map(doc, &vmap, &vid, None))
            else {
                continue;
            };
            variants.push(Variant {
                id: vuuid,
                sku: am::string(doc, &vo, "sku", None).unwrap_or_default(),
                name: am::string(doc, &vo, "name", None).unwrap_or_default(),
                barcode: am::string(doc, &vo, "barcode", None),
                price: am::int(doc, &vo, "price", None),
            });
        }
    }
    variants.sort_by(|a, b| a.sku.cmp(&b.sku));
    Some(Product {
        id,
        sku: s("sku").unwrap_or_default(),
        barcode: s("barcode"),
        name: s("name").unwrap_or_default(),
        category: s("category"),
        unit: s("unit").unwrap_or_else(|| "pcs".into()),
        price: i("price").unwrap_or(0),
        cost: i("cost").unwrap_or(0),
        tax_rate: i("tax_rate").unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        reorder_level: i("reorder_level"),
        variants,
        archived: am::flag(doc, &obj, "archived", None),
        conflicts,
    })
}

fn put_opt<V: Into<ScalarValue>>(
    doc: &mut AutoCommit,
    obj: &ObjId,
    k: &str,
    v: Option<V>,
) -> Result<()> {
    match v {
        Some(v) => doc.put(obj, k, v)?,
        None => doc.put(obj, k, ScalarValue::Null)?,
    }
    Ok(())
}

/// Writes a new product (validated by the caller).
pub fn put_new_product(doc: &mut AutoCommit, p: &Product) -> Result<()> {
    let obj = doc.put_object(ROOT, product_key(p.id), ObjType::Map)?;
    doc.put(&obj, "sku", p.sku.as_str())?;
    put_opt(doc, &obj, "barcode", p.barcode.as_deref())?;
    doc.put(&obj, "name", p.name.as_str())?;
    put_opt(doc, &obj, "category", p.category.as_deref())?;
    doc.put(&obj, "unit", p.unit.as_str())?;
    doc.put(&obj, "price", p.price)?;
    doc.put(&obj, "cost", p.cost)?;
    doc.put(&obj, "tax_rate", p.tax_rate as i64)?;
    put_opt(doc, &obj, "reorder_level", p.reorder_level)?;
    doc.put(&obj, "archived", p.archived)?;
    let vmap = doc.put_object(&obj, "variants", ObjType::Map)?;
    for v in &p.variants {
        put_variant(doc, &vmap, v)?;
    }
    Ok(())
}

fn put_variant(doc: &mut AutoCommit, vmap: &ObjId, v: &Variant) -> Result<()> {
    let vo = doc.put_object(vmap, v.id.to_string(), ObjType::Map)?;
    doc.put(&vo, "sku", v.sku.as_str())?;
    doc.put(&vo, "name", v.name.as_str())?;
    put_opt(doc, &vo, "barcode", v.barcode.as_deref())?;
    put_opt(doc, &vo, "price", v.price)?;
    Ok(())
}

/// Writes the fields of `new` that differ from `old` (one register each), and new variants.
pub fn put_product_edit(doc: &mut AutoCommit, old: &Product, new: &Product) -> Result<()> {
    let obj = am::map(doc, &ROOT, &product_key(old.id), None)
        .expect("the product exists: the caller read it from this document");
    if old.sku != new.sku {
        doc.put(&obj, "sku", new.sku.as_str())?;
    }
    if old.barcode != new.barcode || old.conflicts.contains_key("barcode") {
        put_opt(doc, &obj, "barcode", new.barcode.as_deref())?;
    }
    // A field in conflict is written even if its winning value is unchanged: writing it
    // resolves the conflict (the new value supersedes every concurrent one).
    let c = |f: &str| old.conflicts.contains_key(f);
    if old.sku == new.sku && c("sku") {
        doc.put(&obj, "sku", new.sku.as_str())?;
    }
    if old.name != new.name || c("name") {
        doc.put(&obj, "name", new.name.as_str())?;
    }
    if old.category != new.category || c("category") {
        put_opt(doc, &obj, "category", new.category.as_deref())?;
    }
    if old.unit != new.unit || c("unit") {
        doc.put(&obj, "unit", new.unit.as_str())?;
    }
    if old.price != new.price || c("price") {
        doc.put(&obj, "price", new.price)?;
    }
    if old.cost != new.cost || c("cost") {
        doc.put(&obj, "cost", new.cost)?;
    }
    if old.tax_rate != new.tax_rate || c("tax_rate") {
        doc.put(&obj, "tax_rate", new.tax_rate as i64)?;
    }
    if old.reorder_level != new.reorder_level || c("reorder_level") {
        put_opt(doc, &obj, "reorder_level", new.reorder_level)?;
    }
    if old.archived != new.archived || c("archived") {
        doc.put(&obj, "archived", new.archived)?;
    }
    let added: Vec<&Variant> = new
        .variants
        .iter()
        .filter(|v| !old.variants.iter().any(|o| o.id == v.id))
        .collect();
    if !added.is_empty() {
        let vmap = match am::map(doc, &obj, "variants", None) {
            Some(m) => m,
            None => doc.put_object(&obj, "variants", ObjType::Map)?,
        };
        for v in added {
            put_variant(doc, &vmap, v)?;
        }
    }
    Ok(())
}
