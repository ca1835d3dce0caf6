//! Commands: validate a request against the current state, then write it as a signed change.
//! Each runs inside the writer (see `engine`), so it sees every earlier command of its batch.
//!
//! Signing: entries a device makes on its own account (sales, stock-ins, a staff void) are
//! signed by the device key; privileged changes (catalog, settings, people, removals, counts,
//! returns) by the logged-in owner's or manager's person key.

use automerge::{ROOT, transaction::Transactable};
use chrono::TimeZone;
use ed25519_dalek::SigningKey;
use redb::{ReadableMultimapTable, ReadableTable};
use uuid::Uuid;

use super::access::{self, Access};
use super::catalog;
use super::money::{self, MAX_AMOUNT};
use crate::docs::shop::{self, non_empty};
use crate::docs::{DocId, LEDGER_ROLLOVER};
use crate::error::{Error, Result};
use crate::identity::SealedKey;
use crate::model::ledger::{EntryBody, LedgerEntry, QtyLine, ReturnedLine};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::meta;
use crate::store::tables::*;

/// Largest quantity in one line or movement.
pub const MAX_QTY: i64 = 1_000_000_000;
/// How long staff may void their own sale (the rule is [`access::require_void`]).
pub use super::access::STAFF_VOID_WINDOW_MS;

/// The person key of an owner or manager session.
pub fn person_key(by: &Principal) -> Result<&SigningKey> {
    by.key
        .as_ref()
        .ok_or_else(|| Error::Forbidden("this needs an owner's or manager's login".into()))
}

/// Everything `create_shop` needs, prepared outside the writer (key sealing is slow).
pub struct ShopGenesis {
    /// Shop id.
    pub shop_id: Uuid,
    /// Settings.
    pub settings: Settings,
    /// The owner.
    pub owner: Person,
    /// The owner's person key.
    pub owner_key: SigningKey,
    /// The owner's key sealed under their password.
    pub owner_sealed: SealedKey,
    /// Public recovery key (hex).
    pub recovery_public: String,
    /// This device's name.
    pub device_name: String,
}

/// Creates the shop's documents: `members` (its genesis), `settings`, `vault`, `catalog`.
pub fn create_shop(ctx: &mut Ctx<'_>, g: ShopGenesis) -> Result<()> {
    if ctx.meta(meta::SHOP_ID)?.is_some() {
        return Err(Error::HasShop("this node already belongs to a shop".into()));
    }
    let device = Device {
        id: ctx.device_id().to_string(),
        name: g.device_name.clone(),
        role: DeviceRole::Till,
        public_key: hex::encode(ctx.device_key().verifying_key().as_bytes()),
        receipt_prefix: "T1".into(),
        revoked: false,
    };
    let key = g.owner_key.clone();
    // The shop's first gossip key, wrapped to this device (the shop's only one so far).
    let at = hlc_now(ctx)?;
    let first = vec![(device.id.clone(), ctx.device_key().verifying_key())];
    ctx.change(&DocId::Members, &key, |doc| {
        doc.put(ROOT, "shop_id", g.shop_id.to_string())?;
        doc.put(ROOT, "recovery", g.recovery_public.as_str())?;
        shop::put_person(doc, &g.owner, None)?;
        shop::put_device(doc, &device)?;
        let none = shop::ShopView::default();
        shop::put_rotation(doc, &none, &first, g.owner.id, at, "created")
    })?;
    ctx.change(&DocId::Settings, &key, |doc| {
        shop::write_settings(doc, &g.settings, None)
    })?;
    let sealed =
        serde_json::to_string(&g.owner_sealed).map_err(|e| Error::Internal(e.to_string()))?;
    let shop_secret = hex::encode(crate::identity::random_bytes::<32>());
    ctx.change(&DocId::Vault, &key, |doc| {
        doc.put(ROOT, "shop_secret", shop_secret.as_str())?;
        doc.put(ROOT, format!("key:{}", g.owner.id), sealed.as_str())?;
        Ok(())
    })?;
    ctx.change(&DocId::Catalog, &key, |_| Ok(()))?;
    ctx.set_meta(meta::SHOP_ID, g.shop_id.to_string().as_bytes())?;
    Ok(())
}

// --- time, days, ledger documents, receipts ------------------------------------------------

/// Hybrid logical clock: never behind the last time this node used or saw, persisted with the
/// batch. Entries of one millisecond share it (they are ordered by (time, id)), so a busy till
/// does not borrow future milliseconds and drift ahead of the wall clock.
pub fn hlc_now(ctx: &mut Ctx<'_>) -> Result<i64> {
    let wall = chrono::Utc::now().timestamp_millis();
    let last = ctx
        .meta(meta::HLC)?
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0);
    let now = wall.max(last);
    ctx.set_meta(meta::HLC, &now.to_le_bytes())?;
    Ok(now)
}

/// The shop-local day of `time` (ms).
pub fn shop_day(settings: &Settings, time: i64) -> String {
    let tz: chrono_tz::Tz = settings.timezone.parse().unwrap_or(chrono_tz::UTC);
    match tz.timestamp_millis_opt(time) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d").to_string()
        }
        chrono::LocalResult::None => chrono::Utc
            .timestamp_millis_opt(time)
            .single()
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "1970-01-01".into()),
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct LedgerCursor {
    day: String,
    n: u64,
    entries: u64,
}

/// The ledger document this device writes its next entry of `day` into (rolling over).
fn ledger_doc_for(ctx: &mut Ctx<'_>, day: &str, new_entries: u64) -> Result<DocId> {
    let mut cursor: LedgerCursor = ctx
        .meta(meta::LEDGER_CURSOR)?
        .and_then(|b| postcard::from_bytes(&b).ok())
        .unwrap_or_default();
    if cursor.day != day {
        cursor = LedgerCursor {
            day: day.to_string(),
            n: 0,
            entries: 0,
        };
    } else if cursor.entries + new_entries > LEDGER_ROLLOVER {
        cursor.n += 1;
        cursor.entries = 0;
    }
    cursor.entries += new_entries;
    let bytes = postcard::to_allocvec(&cursor).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.set_meta(meta::LEDGER_CURSOR, &bytes)?;
    Ok(DocId::Ledger {
        day: cursor.day,
        device: ctx.device_id().to_string(),
        n: cursor.n,
    })
}

/// Writes entries into this device's ledger, signed by `key`.
pub(crate) fn append_entry(
    ctx: &mut Ctx<'_>,
    key: &SigningKey,
    settings: &Settings,
    entry: &LedgerEntry,
) -> Result<()> {
    let day = shop_day(settings, entry.time);
    let doc = ledger_doc_for(ctx, &day, 1)?;
    let json = serde_json::to_string(entry).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.change(&doc, key, |am| {
        am.put(ROOT, entry.key(), json.as_str())?;
        Ok(())
    })?;
    Ok(())
}

/// Writes an entry made elsewhere (a revoked till's sale an owner accepts) into this device's
/// ledger of the entry's own day, signed by `key`: today's document as any entry, an earlier
/// day's latest document of this device (the rollover cursor, which follows today, is left
/// alone).
pub(crate) fn append_entry_on_its_day(
    ctx: &mut Ctx<'_>,
    key: &SigningKey,
    settings: &Settings,
    entry: &LedgerEntry,
) -> Result<()> {
    let day = shop_day(settings, entry.time);
    let cursor: LedgerCursor = ctx
        .meta(meta::LEDGER_CURSOR)?
        .and_then(|b| postcard::from_bytes(&b).ok())
        .unwrap_or_default();
    let doc = if cursor.day == day || day >= shop_day(settings, hlc_now(ctx)?) {
        ledger_doc_for(ctx, &day, 1)?
    } else {
        let prefix = format!("ledger/{day}/{}/", ctx.device_id());
        let mut n = 0;
        let docs = ctx.tx.open_table(DOCS)?;
        for row in docs.range(prefix.as_str()..)? {
            let key = row?.0;
            let Some(rest) = key.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            n = n.max(rest.parse().unwrap_or(0));
        }
        DocId::Ledger {
            day,
            device: ctx.device_id().to_string(),
            n,
        }
    };
    let json = serde_json::to_string(entry).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.change(&doc, key, |am| {
        am.put(ROOT, entry.key(), json.as_str())?;
        Ok(())
    })?;
    Ok(())
}

pub(crate) fn next_receipt(ctx: &mut Ctx<'_>, prefix: &str) -> Result<String> {
    let n = ctx
        .meta(meta::RECEIPT_COUNTER)?
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
        + 1;
    ctx.set_meta(meta::RECEIPT_COUNTER, &n.to_le_bytes())?;
    Ok(format!("{prefix}-{n:06}"))
}

// --- products ------------------------------------------------------------------------------

pub(crate) fn load_product(ctx: &Ctx<'_>, id: Uuid) -> Result<Product> {
    let t = ctx.tx.open_table(PRODUCTS)?;
    let v = t
        .get(id.as_u128())?
        .ok_or_else(|| Error::NotFound(format!("no product {id}")))?;
    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))
}

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

pub(crate) fn check_money(field: &str, v: i64) -> Result<i64> {
    if !(0..=MAX_AMOUNT).contains(&v) {
        return Err(Error::invalid(
            field,
            "must be an amount in minor units, 0 or more",
        ));
    }
    Ok(v)
}

pub(crate) fn check_code(field: &str, v: &str) -> Result<String> {
    let v = non_empty(field, v, 64)?;
    if v.chars().any(char::is_whitespace) {
        return Err(Error::invalid(field, "must not contain spaces"));
    }
    Ok(v)
}

pub(crate) fn check_tax_rate(field: &str, v: u32) -> Result<u32> {
    if v > 10_000 {
        return Err(Error::invalid(
            field,
            "a tax rate is in basis points, at most 10000 (100 %)",
        ));
    }
    Ok(v)
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

// --- stock ---------------------------------------------------------------------------------

pub(crate) fn check_item(product: &Product, variant_id: Option<Uuid>, field: &str) -> Result<()> {
    match variant_id {
        Some(v) if !product.variants.iter().any(|x| x.id == v) => Err(Error::invalid(
            field,
            format!("product {} has no variant {v}", product.sku),
        )),
        None if !product.variants.is_empty() => Err(Error::invalid(
            field,
            format!("product {} has variants: name one", product.sku),
        )),
        _ => Ok(()),
    }
}

/// The product of line `i` of a request (field `lines[i].product_id` / `.variant_id`): it exists
/// and the variant fits it.
pub(crate) fn line_product(
    ctx: &Ctx<'_>,
    i: usize,
    product_id: Uuid,
    variant_id: Option<Uuid>,
) -> Result<Product> {
    let product = load_product(ctx, product_id).map_err(|e| match e {
        Error::NotFound(m) => Error::invalid(format!("lines[{i}].product_id"), m),
        e => e,
    })?;
    check_item(&product, variant_id, &format!("lines[{i}].variant_id"))?;
    Ok(product)
}

pub(crate) fn check_qty(field: &str, qty: i64) -> Result<i64> {
    if !(1..=MAX_QTY).contains(&qty) {
        return Err(Error::invalid(
            field,
            format!("must be between 1 and {MAX_QTY}"),
        ));
    }
    Ok(qty)
}

pub(crate) fn on_hand(ctx: &Ctx<'_>, product: Uuid, variant: Option<Uuid>) -> Result<i64> {
    let t = ctx.tx.open_table(STOCK)?;
    Ok(
        t.get((product.as_u128(), variant.map(|v| v.as_u128()).unwrap_or(0)))?
            .map(|v| v.value())
            .unwrap_or(0),
    )
}

pub(crate) fn stock_entry(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    key: &SigningKey,
    body: EntryBody,
) -> Result<LedgerEntry> {
    let settings = ctx.shop().settings()?.clone();
    let entry = LedgerEntry {
        id: Uuid::new_v4(),
        time: hlc_now(ctx)?,
        device: ctx.device_id().to_string(),
        person: Some(by.person_id),
        body,
    };
    append_entry(ctx, key, &settings, &entry)?;
    Ok(entry)
}

pub(crate) fn movement_of(ctx: &Ctx<'_>, entry: &LedgerEntry) -> Result<Movement> {
    let t = ctx.tx.open_table(MOVEMENTS_BY_TIME)?;
    let pid = t
        .get((entry.time, entry.id.as_u128(), 0))?
        .ok_or_else(|| Error::Internal("the movement was not projected".into()))?
        .value();
    let m = ctx.tx.open_table(MOVEMENTS)?;
    let v = m
        .get((pid, entry.time, entry.id.as_u128(), 0))?
        .ok_or_else(|| Error::Internal("the movement was not projected".into()))?;
    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))
}

/// Receives stock (anyone logged in; signed by the device).
pub fn stock_in(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    c: StockIn,
    at: Option<i64>,
) -> Result<Movement> {
    let product = load_product(ctx, c.product_id)?;
    if product.archived {
        return Err(Error::invalid("product_id", "this product is archived"));
    }
    check_item(&product, c.variant_id, "variant_id")?;
    let body = EntryBody::StockIn {
        product_id: c.product_id,
        variant_id: c.variant_id,
        qty: check_qty("qty", c.qty)?,
        unit_cost: check_money("unit_cost", c.unit_cost.unwrap_or(product.cost))?,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let key = ctx.device_key().clone();
    let e = match at {
        None => stock_entry(ctx, by, &key, body)?,
        Some(time) => {
            let settings = ctx.shop().settings()?.clone();
            let entry = LedgerEntry {
                id: Uuid::new_v4(),
                time,
                device: ctx.device_id().to_string(),
                person: Some(by.person_id),
                body,
            };
            append_entry(ctx, &key, &settings, &entry)?;
            entry
        }
    };
    movement_of(ctx, &e)
}

/// Removes stock with a reason (manager; signed by their person key).
pub fn stock_remove(ctx: &mut Ctx<'_>, by: &Principal, c: StockRemove) -> Result<Movement> {
    access::require(by, Access::RemoveStock)?;
    let key = person_key(by)?.clone();
    let product = load_product(ctx, c.product_id)?;
    check_item(&product, c.variant_id, "variant_id")?;
    let body = EntryBody::Removal {
        product_id: c.product_id,
        variant_id: c.variant_id,
        qty: check_qty("qty", c.qty)?,
        reason: c.reason,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    movement_of(ctx, &e)
}

/// Records a stock count (manager).
pub fn stock_adjust(ctx: &mut Ctx<'_>, by: &Principal, c: StockAdjust) -> Result<Movement> {
    access::require(by, Access::AdjustStock)?;
    let key = person_key(by)?.clone();
    let product = load_product(ctx, c.product_id)?;
    check_item(&product, c.variant_id, "variant_id")?;
    if !(0..=MAX_QTY).contains(&c.counted) {
        return Err(Error::invalid(
            "counted",
            format!("must be between 0 and {MAX_QTY}"),
        ));
    }
    let delta = c.counted - on_hand(ctx, c.product_id, c.variant_id)?;
    if delta == 0 {
        return Err(Error::Conflict(format!(
            "stock of {} is already {}; nothing to adjust",
            product.sku, c.counted
        )));
    }
    let body = EntryBody::Adjustment {
        product_id: c.product_id,
        variant_id: c.variant_id,
        delta,
        counted: c.counted,
        note: c
            .note
            .as_deref()
            .map(|n| non_empty("note", n, 500))
            .transpose()?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    movement_of(ctx, &e)
}

// --- sales ---------------------------------------------------------------------------------

/// Records a sale (anyone logged in; signed by the device). `at` back-dates it (demo data
/// only: the API never passes it).
pub fn record_sale(ctx: &mut Ctx<'_>, by: &Principal, s: NewSale, at: Option<i64>) -> Result<Sale> {
    let shop = ctx.shop();
    let settings = shop.settings()?.clone();
    let prefix = shop
        .this_device
        .as_ref()
        .map(|d| d.receipt_prefix.clone())
        .ok_or_else(|| Error::NoShop("this device is not a member of the shop".into()))?;
    if s.lines.is_empty() {
        return Err(Error::invalid("lines", "a sale needs at least one line"));
    }
    if let Some(t) = s.ticket_id {
        super::tickets::require_open(ctx.tx, t, "ticket_id")?;
    }
    if s.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let mut lines = Vec::with_capacity(s.lines.len());
    let mut wanted: Vec<(Uuid, Option<Uuid>, i64, String)> = Vec::new();
    for (i, l) in s.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let product = load_product(ctx, l.product_id).map_err(|e| match e {
            Error::NotFound(m) => Error::invalid(f("product_id"), m),
            e => e,
        })?;
        if product.archived {
            return Err(Error::invalid(
                f("product_id"),
                format!("{} is archived", product.name),
            ));
        }
        check_item(&product, l.variant_id, &f("variant_id"))?;
        let qty = check_qty(&f("qty"), l.qty)?;
        let variant = l
            .variant_id
            .and_then(|v| product.variants.iter().find(|x| x.id == v));
        let unit_price = variant.and_then(|v| v.price).unwrap_or(product.price);
        let discount = l.discount.unwrap_or(0);
        let (total, tax) = money::line_amounts(
            unit_price,
            qty,
            discount,
            product.tax_rate,
            settings.tax_mode,
            settings.rounding,
        )
        .map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid(f("discount"), message),
            e => e,
        })?;
        let (sku, name) = match variant {
            Some(v) => (v.sku.clone(), format!("{} {}", product.name, v.name)),
            None => (product.sku.clone(), product.name.clone()),
        };
        match wanted
            .iter_mut()
            .find(|w| w.0 == l.product_id && w.1 == l.variant_id)
        {
            Some(w) => w.2 += qty,
            None => wanted.push((l.product_id, l.variant_id, qty, name.clone())),
        }
        lines.push(SaleLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty,
            unit_price,
            tax_rate: product.tax_rate,
            discount,
            tax,
            total,
        });
    }
    let mut warnings = Vec::new();
    for (pid, vid, qty, name) in &wanted {
        let have = on_hand(ctx, *pid, *vid)?;
        if have < *qty {
            let msg = format!("{name}: selling {qty} with {have} known in stock");
            if settings.oversell == OversellPolicy::Block {
                return Err(Error::Conflict(format!("not enough stock — {msg}")));
            }
            warnings.push(msg);
        }
    }
    let total: i64 = lines.iter().map(|l| l.total).sum();
    let tax: i64 = lines.iter().map(|l| l.tax).sum();
    let discount: i64 = lines.iter().map(|l| l.discount).sum();
    if total > MAX_AMOUNT {
        return Err(Error::invalid("lines", "sale total too large"));
    }
    let settled = money::settle(total, &s.payments, settings.cash_rounding)?;
    let note = s
        .note
        .as_deref()
        .map(|n| non_empty("note", n, 500))
        .transpose()?;
    let receipt = next_receipt(ctx, &prefix)?;
    let time = match at {
        Some(t) => t,
        None => hlc_now(ctx)?,
    };
    let entry = LedgerEntry {
        id: Uuid::new_v4(),
        time,
        device: ctx.device_id().to_string(),
        person: Some(by.person_id),
        body: EntryBody::Sale {
            receipt,
            lines,
            total,
            tax,
            discount,
            rounding: settled.rounding,
            payments: settled.payments,
            change_due: settled.change_due,
            note,
            warnings,
            ticket_id: s.ticket_id,
            shift_id: super::shifts::open_shift_id(ctx)?,
            accepted: None,
        },
    };
    let key = ctx.device_key().clone();
    append_entry(ctx, &key, &settings, &entry)?;
    read_sale(ctx.tx, entry.id)
}

/// A sale with its voids and returns joined in.
pub fn read_sale(tx: &impl SalesTables, id: Uuid) -> Result<Sale> {
    tx.sale(id)?
        .ok_or_else(|| Error::NotFound(format!("no sale {id}")))
}

/// Reading sales from a read or a write transaction.
pub trait SalesTables {
    /// The sale, with voids and returns joined in.
    fn sale(&self, id: Uuid) -> Result<Option<Sale>>;
}

macro_rules! impl_sales_tables {
    ($t:ty) => {
        impl SalesTables for $t {
            fn sale(&self, id: Uuid) -> Result<Option<Sale>> {
                let sales = self.open_table(SALES)?;
                let Some(v) = sales.get(id.as_u128())? else {
                    return Ok(None);
                };
                let mut sale: Sale =
                    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))?;
                sale.voided_by = self
                    .open_table(VOIDS)?
                    .get(id.as_u128())?
                    .map(|v| Uuid::from_u128(v.value()));
                for row in self
                    .open_table(RETURNS)?
                    .range((id.as_u128(), 0)..=(id.as_u128(), u128::MAX))?
                {
                    let per_line: Vec<(usize, i64)> = serde_json::from_str(row?.1.value())
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    for (line, qty) in per_line {
                        if let Some(r) = sale.returned.get_mut(line) {
                            *r += qty;
                        }
                    }
                }
                Ok(Some(sale))
            }
        }
    };
}
impl_sales_tables!(redb::WriteTransaction);
impl_sales_tables!(redb::ReadTransaction);

/// Voids a sale: staff their own within 30 minutes, managers any.
pub fn void_sale(ctx: &mut Ctx<'_>, by: &Principal, id: Uuid, v: VoidSale) -> Result<Sale> {
    let sale = read_sale(ctx.tx, id)?;
    if sale.voided_by.is_some() {
        return Err(Error::Conflict(format!(
            "sale {} is already voided",
            sale.receipt
        )));
    }
    if sale.returned.iter().any(|q| *q > 0) {
        return Err(Error::Conflict(format!(
            "sale {} has returns; return the rest instead of voiding",
            sale.receipt
        )));
    }
    let now = hlc_now(ctx)?;
    access::require_void(
        by,
        sale.person,
        sale.device == ctx.device_id(),
        now - sale.time,
    )?;
    // Managers and owners sign with their own key; staff's void is signed by the till.
    let key = if access::voids_any_sale(by) {
        person_key(by)?.clone()
    } else {
        ctx.device_key().clone()
    };
    let body = EntryBody::Void {
        sale_id: id,
        sale_day: sale.day.clone(),
        sale_total: sale.total,
        sale_tax: sale.tax,
        lines: sale
            .lines
            .iter()
            .map(|l| QtyLine {
                product_id: l.product_id,
                variant_id: l.variant_id,
                qty: l.qty,
            })
            .collect(),
        reason: v
            .reason
            .as_deref()
            .map(|r| non_empty("reason", r, 500))
            .transpose()?,
        cash_back: sale
            .payments
            .iter()
            .filter(|p| p.method == PaymentMethod::Cash)
            .map(|p| p.amount)
            .sum::<i64>()
            - sale.change_due,
        line_net: sale.lines.iter().map(|l| l.total - l.tax).collect(),
        shift_id: super::shifts::open_shift_id(ctx)?,
    };
    stock_entry(ctx, by, &key, body)?;
    read_sale(ctx.tx, id)
}

/// Returns lines of a sale (manager). Money per line is refunded pro rata with cumulative
/// rounding, so returning a line in parts refunds exactly what it cost.
pub fn return_sale(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    id: Uuid,
    r: NewReturn,
) -> Result<SaleReturn> {
    access::require(by, Access::Return)?;
    let key = person_key(by)?.clone();
    let sale = read_sale(ctx.tx, id)?;
    if sale.voided_by.is_some() {
        return Err(Error::Conflict(format!("sale {} was voided", sale.receipt)));
    }
    if r.lines.is_empty() {
        return Err(Error::invalid("lines", "name at least one line to return"));
    }
    let mut returned = sale.returned.clone();
    let mut lines = Vec::new();
    for (i, rl) in r.lines.iter().enumerate() {
        let Some(sold) = sale.lines.get(rl.line) else {
            return Err(Error::invalid(
                format!("lines[{i}].line"),
                "no such line in the sale",
            ));
        };
        let qty = check_qty(&format!("lines[{i}].qty"), rl.qty)?;
        let before = returned[rl.line];
        if before + qty > sold.qty {
            return Err(Error::invalid(
                format!("lines[{i}].qty"),
                format!("only {} left to return on this line", sold.qty - before),
            ));
        }
        returned[rl.line] += qty;
        let share = |amount: i64, n: i64| (amount as i128 * n as i128 / sold.qty as i128) as i64;
        let mut line = sold.clone();
        line.qty = qty;
        line.total = share(sold.total, before + qty) - share(sold.total, before);
        line.tax = share(sold.tax, before + qty) - share(sold.tax, before);
        line.discount = share(sold.discount, before + qty) - share(sold.discount, before);
        lines.push(ReturnedLine {
            line: rl.line,
            sold: line,
        });
    }
    let refund = lines.iter().map(|l| l.sold.total).sum();
    let tax = lines.iter().map(|l| l.sold.tax).sum();
    let refund_method = r.refund_method.unwrap_or(PaymentMethod::Cash);
    let body = EntryBody::Return {
        sale_id: id,
        lines: lines.clone(),
        refund,
        tax,
        refund_method,
        reason: r
            .reason
            .as_deref()
            .map(|x| non_empty("reason", x, 500))
            .transpose()?,
        shift_id: super::shifts::open_shift_id(ctx)?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    Ok(SaleReturn {
        id: e.id,
        sale_id: id,
        time: e.time,
        lines: lines.into_iter().map(|l| l.sold).collect(),
        refund,
        tax,
        refund_method,
    })
}

/// Refunds goods without the original sale (manager): each line at today's price unless an
/// amount is given, tax worked out like a sale line.
pub fn refund(ctx: &mut Ctx<'_>, by: &Principal, r: NewRefund) -> Result<Refund> {
    access::require(by, Access::Refund)?;
    let key = person_key(by)?.clone();
    let settings = ctx.shop().settings()?.clone();
    if r.lines.is_empty() {
        return Err(Error::invalid("lines", "name at least one item to refund"));
    }
    if r.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let reason = non_empty("reason", &r.reason, 500)?;
    let mut lines = Vec::new();
    for (i, l) in r.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let product = line_product(ctx, i, l.product_id, l.variant_id)?;
        let qty = check_qty(&f("qty"), l.qty)?;
        let variant = l
            .variant_id
            .and_then(|v| product.variants.iter().find(|x| x.id == v));
        let unit_price = variant.and_then(|v| v.price).unwrap_or(product.price);
        let (mut total, mut tax) = money::line_amounts(
            unit_price,
            qty,
            0,
            product.tax_rate,
            settings.tax_mode,
            settings.rounding,
        )?;
        if let Some(amount) = l.amount {
            let amount = check_money(&f("amount"), amount)?;
            // The tax inside a given amount, in proportion to the line's.
            tax = if total == 0 {
                0
            } else {
                (tax as i128 * amount as i128 / total as i128) as i64
            };
            total = amount;
        }
        let (sku, name) = match variant {
            Some(v) => (v.sku.clone(), format!("{} {}", product.name, v.name)),
            None => (product.sku.clone(), product.name.clone()),
        };
        lines.push(SaleLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty,
            unit_price,
            tax_rate: product.tax_rate,
            discount: 0,
            tax,
            total,
        });
    }
    let refund: i64 = lines.iter().map(|l| l.total).sum();
    let tax: i64 = lines.iter().map(|l| l.tax).sum();
    let refund_method = r.refund_method.unwrap_or(PaymentMethod::Cash);
    let restock = r.restock.unwrap_or(true);
    let body = EntryBody::Refund {
        lines: lines.clone(),
        refund,
        tax,
        refund_method,
        reason: Some(reason.clone()),
        restock,
        shift_id: super::shifts::open_shift_id(ctx)?,
    };
    let e = stock_entry(ctx, by, &key, body)?;
    Ok(Refund {
        id: e.id,
        time: e.time,
        lines,
        refund,
        tax,
        refund_method,
        reason: Some(reason),
        restock,
    })
}

// --- settings and people -------------------------------------------------------------------

/// Changes settings (owner).
pub fn update_settings(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    patch: SettingsPatch,
) -> Result<Settings> {
    access::require(by, Access::Settings)?;
    let key = person_key(by)?.clone();
    let old = ctx.shop().settings()?.clone();
    let new = patched_settings(&old, patch)?;
    if new != old {
        ctx.change(&DocId::Settings, &key, |doc| {
            shop::write_settings(doc, &new, Some(&old))
        })?;
    }
    Ok(new)
}

/// A person to add, prepared outside the writer (key sealing and PIN hashing are slow).
pub struct PreparedPerson {
    /// The person.
    pub person: Person,
    /// Staff PIN hash.
    pub pin_hash: Option<String>,
    /// Sealed person key (owners and managers).
    pub sealed: Option<SealedKey>,
}

/// Adds a person: owners anyone, managers staff only.
pub fn add_person(ctx: &mut Ctx<'_>, by: &Principal, p: PreparedPerson) -> Result<Person> {
    check_add_person(&ctx.shop(), by, &p.person.username, p.person.role)?;
    // Adding writes the whole entry: over an existing person it would change their role or
    // take back their revocation, which only owners may do (`docs::trust` refuses it from a
    // manager too).
    if p.person.revoked || ctx.shop().person(p.person.id).is_some() {
        return Err(Error::Conflict(format!(
            "person {} already exists: add a new person instead",
            p.person.id
        )));
    }
    let key = person_key(by)?.clone();
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_person(doc, &p.person, p.pin_hash.as_deref())
    })?;
    if let Some(sealed) = &p.sealed {
        let json = serde_json::to_string(sealed).map_err(|e| Error::Internal(e.to_string()))?;
        ctx.change(&DocId::Vault, &key, |doc| {
            doc.put(ROOT, format!("key:{}", p.person.id), json.as_str())?;
            Ok(())
        })?;
    }
    Ok(p.person)
}

/// The checks of [`add_person`] that need no secrets (run before hashing too).
pub fn check_add_person(
    shop: &shop::ShopView,
    by: &Principal,
    username: &str,
    role: Role,
) -> Result<()> {
    access::require_add_person(by, role)?;
    if shop
        .people
        .iter()
        .any(|p| !p.person.revoked && p.person.username.eq_ignore_ascii_case(username))
    {
        return Err(Error::invalid(
            "username",
            format!("{username:?} is already taken"),
        ));
    }
    let max_staff = shop.settings()?.max_staff as usize;
    if role == Role::Staff
        && shop
            .people
            .iter()
            .filter(|p| !p.person.revoked && p.person.role == Role::Staff)
            .count()
            >= max_staff
    {
        return Err(Error::Conflict(format!(
            "the shop already has {max_staff} staff (the max_staff setting)"
        )));
    }
    Ok(())
}

/// The shop's first gossip key rotation, for a shop created before rotations existed (an owner
/// signing in writes it once; until then gossip uses the legacy key from the shop secret,
/// which old backups hold). Does nothing if the shop has a rotation already.
pub fn rotate_legacy_gossip_key(ctx: &mut Ctx<'_>, by: &Principal) -> Result<bool> {
    access::require(by, Access::RotateGossipKey)?;
    let shop = ctx.shop();
    if !shop.gossip.is_empty() || shop.shop_id.is_none() {
        return Ok(false);
    }
    let key = person_key(by)?.clone();
    let recipients = shop::gossip_recipients(&shop, None);
    let at = hlc_now(ctx)?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_rotation(doc, &shop, &recipients, by.person_id, at, "upgrade")
    })?;
    Ok(true)
}

/// Revokes a person (by uuid) or a device (by id) (owner). The revocation names the changes
/// accepted from the key so far; anything else signed by it is refused from now on.
pub fn revoke_member(ctx: &mut Ctx<'_>, by: &Principal, id: &str) -> Result<()> {
    access::require(by, Access::Revoke)?;
    let key = person_key(by)?.clone();
    let shop = ctx.shop();
    // Revoking a device, an owner or a manager rotates the gossip key (staff hold no key: they
    // sign in on tills, which keep theirs); `leaving` is the device that loses it.
    let (root_key, public_key, rotate, leaving) = if let Ok(pid) = Uuid::parse_str(id) {
        let p = shop
            .person(pid)
            .ok_or_else(|| Error::NotFound(format!("no person {id}")))?;
        if pid == by.person_id {
            return Err(Error::Conflict("you cannot revoke yourself".into()));
        }
        (
            format!("person:{pid}"),
            p.person.public_key.clone(),
            p.person.role >= Role::Manager,
            None,
        )
    } else {
        let d = shop
            .devices
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| Error::NotFound(format!("no member {id}")))?;
        if d.id == ctx.device_id() {
            return Err(Error::Conflict("a device cannot revoke itself".into()));
        }
        (
            format!("device:{id}"),
            Some(d.public_key.clone()),
            true,
            Some(d.id.clone()),
        )
    };
    let revocation = match &public_key {
        Some(pk) => {
            let pk_bytes: [u8; 32] = hex::decode(pk)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::Internal("a member key is malformed".into()))?;
            let mut accepted = Vec::new();
            for row in ctx.tx.open_table(ENVELOPES)?.iter()? {
                let (h, v) = row?;
                if let Ok(env) = crate::docs::Envelope::from_bytes(v.value())
                    && env.signer == pk_bytes
                {
                    accepted.push(hex::encode(h.value()));
                }
            }
            Some(crate::docs::members::RevocationRecord {
                accepted,
                by: by.person_id.to_string(),
                time: hlc_now(ctx)?,
            })
        }
        None => None,
    };
    let recipients = shop::gossip_recipients(&shop, leaving.as_deref());
    let at = hlc_now(ctx)?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_revoked(doc, &root_key)?;
        if let (Some(pk), Some(r)) = (&public_key, &revocation) {
            let json = serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?;
            doc.put(ROOT, format!("revocation:{pk}"), json.as_str())?;
        }
        if rotate {
            shop::put_rotation(
                doc,
                &shop,
                &recipients,
                by.person_id,
                at,
                &format!("revoked {id}"),
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

// --- invites and admission -----------------------------------------------------------------

/// An invite this node issued, waiting to be redeemed. It stays on this device: the
/// certificate is countersigned here, for the key of the device that redeems it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingInvite {
    /// The certificate (signed by the person who made the invite).
    pub cert: crate::docs::admission::AdmissionCert,
    /// Redeemed already (single use).
    pub used: bool,
    /// Key-exchange runs started against it and not finished with its code (see
    /// [`crate::redeem`]); at [`crate::redeem::MAX_FAILED_RUNS`] it is burned.
    pub failures: u32,
}

/// A pending invite as stored before failed runs were counted.
#[derive(serde::Deserialize)]
struct PendingInviteV1 {
    cert: crate::docs::admission::AdmissionCert,
    used: bool,
}

impl PendingInvite {
    /// Decodes a row of the invites table, rows written before `failures` existed included
    /// (postcard has no optional trailing fields; as a newer row read as an old one would
    /// also decode, the newer form is tried first).
    pub fn decode(bytes: &[u8]) -> Option<PendingInvite> {
        postcard::from_bytes::<PendingInvite>(bytes)
            .ok()
            .or_else(|| {
                let old = postcard::from_bytes::<PendingInviteV1>(bytes).ok()?;
                Some(PendingInvite {
                    cert: old.cert,
                    used: old.used,
                    failures: 0,
                })
            })
    }

    /// Where it stands at `now` (ms since the epoch).
    pub fn state(&self, now: i64) -> crate::redeem::InviteState {
        use crate::redeem::{InviteState, MAX_FAILED_RUNS};
        if self.used {
            InviteState::Used
        } else if now > self.cert.expires_at {
            InviteState::Expired
        } else if self.failures >= MAX_FAILED_RUNS {
            InviteState::Burned
        } else {
            InviteState::Pending
        }
    }

    fn put(&self, ctx: &mut Ctx<'_>, code: &str) -> Result<()> {
        ctx.tx.open_table(INVITES)?.insert(
            code,
            postcard::to_allocvec(self)
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_slice(),
        )?;
        Ok(())
    }
}

/// Default lifetime of an invite.
pub const INVITE_TTL_MS: i64 = 15 * 60 * 1000;

/// Creates an invite (owner: any device role; manager: tills). This device will countersign
/// the redeeming device's key.
pub fn create_invite(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    role: DeviceRole,
    name: &str,
    ttl_ms: i64,
) -> Result<(String, crate::docs::admission::AdmissionCert)> {
    use crate::docs::admission::{AdmissionCert, new_code};
    access::require_invite(by, role)?;
    let key = person_key(by)?.clone();
    let name = non_empty("name", name, 100)?;
    if !(60_000..=7 * 24 * 3600 * 1000).contains(&ttl_ms) {
        return Err(Error::invalid("ttl_minutes", "between 1 minute and 7 days"));
    }
    let shop = ctx.shop();
    let shop_id = shop
        .shop_id
        .ok_or_else(|| Error::NoShop("no shop".into()))?;
    if shop.this_device.as_ref().is_none_or(|d| d.revoked) {
        return Err(Error::Forbidden(
            "this device is not an admitted device of the shop: make the invite on another".into(),
        ));
    }
    // Receipt prefixes: T1, T2 … — one past every prefix in use or promised.
    let mut highest = shop
        .devices
        .iter()
        .filter_map(|d| d.receipt_prefix.strip_prefix('T')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    for row in ctx.tx.open_table(INVITES)?.iter()? {
        if let Some(p) = PendingInvite::decode(row?.1.value())
            && let Some(n) = p
                .cert
                .receipt_prefix
                .strip_prefix('T')
                .and_then(|n| n.parse::<u32>().ok())
        {
            highest = highest.max(n);
        }
    }
    let genesis: [u8; 32] = ctx
        .meta(meta::GENESIS)?
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::NoShop("no shop".into()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let cert = AdmissionCert {
        id: Uuid::new_v4(),
        shop_id,
        genesis,
        role,
        name,
        receipt_prefix: format!("T{}", highest + 1),
        expires_at: now + ttl_ms,
        countersigner: ctx.device_key().verifying_key().to_bytes(),
        issuer: [0; 32],
        signature: Vec::new(),
    }
    .sign(&key);
    let code = new_code();
    PendingInvite {
        cert: cert.clone(),
        used: false,
        failures: 0,
    }
    .put(ctx, &code)?;
    Ok((code, cert))
}

pub use crate::docs::admission::UNKNOWN_INVITE;

/// Starts a key-exchange run (see [`crate::redeem`]) against this device's invites: the codes
/// and states of those to offer — pending ones first, each charged one failed run now (a run
/// that redeems it uses it instead), then those used, expired or burned within
/// [`crate::redeem::DEAD_INVITES_SHOWN_MS`]; at most [`crate::redeem::MAX_OFFERS`].
pub fn start_redeem_run(ctx: &mut Ctx<'_>) -> Result<Vec<(String, crate::redeem::InviteState)>> {
    use crate::redeem::{DEAD_INVITES_SHOWN_MS, InviteState, MAX_OFFERS};
    let now = chrono::Utc::now().timestamp_millis();
    let mut invites: Vec<(String, PendingInvite)> = Vec::new();
    for row in ctx.tx.open_table(INVITES)?.iter()? {
        let (code, value) = row?;
        if let Some(p) = PendingInvite::decode(value.value())
            && (p.state(now) == InviteState::Pending
                || p.cert.expires_at + DEAD_INVITES_SHOWN_MS > now)
        {
            invites.push((code.value().to_string(), p));
        }
    }
    // Pending first, then the newest.
    invites.sort_by_key(|(_, p)| (p.state(now) != InviteState::Pending, -p.cert.expires_at));
    invites.truncate(MAX_OFFERS);
    let mut offered = Vec::with_capacity(invites.len());
    for (code, mut p) in invites {
        let state = p.state(now);
        if state == InviteState::Pending {
            p.failures += 1;
            p.put(ctx, &code)?;
            if p.failures == crate::redeem::MAX_FAILED_RUNS {
                // Someone may be guessing: the owner learns why the invite stopped working.
                tracing::warn!(
                    device = %p.cert.name,
                    "an invite had its last redemption attempt: burned unless that one succeeds"
                );
            }
        }
        offered.push((code, state));
    }
    Ok(offered)
}

/// Redeems a short code for the device with key `device` (the key its connection is
/// authenticated with): single use, before it expires by this device's clock; countersigns
/// the certificate for that key. Over the network only once the device proved it knows the
/// code (see [`crate::redeem`]).
pub fn redeem_invite(
    ctx: &mut Ctx<'_>,
    code: &str,
    device: &[u8; 32],
) -> Result<crate::docs::admission::Invite> {
    use crate::redeem::InviteState;
    let code = crate::docs::admission::normalize_code(code)?;
    let unknown = || Error::NotFound(UNKNOWN_INVITE.into());
    let mut pending: PendingInvite = match ctx.tx.open_table(INVITES)?.get(code.as_str())? {
        Some(v) => PendingInvite::decode(v.value()).ok_or_else(unknown)?,
        None => return Err(unknown()),
    };
    // Not judged burned here: the run now finishing was counted when it started, and it
    // started while the invite was pending.
    match pending.state(chrono::Utc::now().timestamp_millis()) {
        state @ (InviteState::Used | InviteState::Expired) => {
            return Err(Error::Conflict(state.refusal().unwrap_or_default()));
        }
        InviteState::Pending | InviteState::Burned => {}
    }
    let shop = ctx.shop();
    if shop
        .devices
        .iter()
        .any(|d| d.public_key == hex::encode(device))
    {
        return Err(Error::Conflict(
            "that device is already a device of the shop".into(),
        ));
    }
    if shop.this_device.as_ref().is_none_or(|d| d.revoked) {
        return Err(Error::Forbidden(
            "this device was revoked: it can no longer admit devices".into(),
        ));
    }
    let genesis = pending.cert.genesis;
    let legacy_devices = ctx
        .meta(meta::LEGACY_DEVICES)?
        .and_then(|b| postcard::from_bytes::<Vec<[u8; 32]>>(&b).ok())
        .unwrap_or_default();
    let admitted = pending.cert.countersign(device, ctx.device_key());
    pending.used = true;
    pending.put(ctx, &code)?;
    Ok(crate::docs::admission::Invite {
        admitted,
        genesis,
        legacy_devices,
        gossip_keys: Vec::new(),
    })
}

/// Admits this device into the shop with a redeemed invite (after pulling `members`).
pub fn admit_self(ctx: &mut Ctx<'_>, invite: &crate::docs::admission::Invite) -> Result<()> {
    if ctx.shop().this_device.is_some() {
        return Err(Error::Conflict("this device is already a member".into()));
    }
    if ctx.doc("members")?.is_none() {
        return Err(Error::NoShop(
            "the shop's members have not arrived yet".into(),
        ));
    }
    let key = ctx.device_key().clone();
    let device_id = ctx.device_id().to_string();
    let public_key = hex::encode(key.verifying_key().as_bytes());
    if invite.admitted.device != key.verifying_key().to_bytes() {
        return Err(Error::invalid(
            "invite",
            "the invite was countersigned for another device",
        ));
    }
    let cert = invite.cert().clone();
    let json =
        serde_json::to_string(&invite.admitted).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_device(
            doc,
            &Device {
                id: device_id.clone(),
                name: cert.name.clone(),
                role: cert.role,
                public_key: public_key.clone(),
                receipt_prefix: cert.receipt_prefix.clone(),
                revoked: false,
            },
        )?;
        let obj = crate::docs::am::map(doc, &ROOT, &format!("device:{device_id}"), None)
            .expect("the device entry was just written");
        doc.put(&obj, "admission", cert.id.to_string())?;
        doc.put(&obj, "certificate", json.as_str())?;
        Ok(())
    })?;
    ctx.set_meta(meta::SHOP_ID, cert.shop_id.to_string().as_bytes())?;
    for (id, key) in &invite.gossip_keys {
        if crate::docs::gossip_keys::valid_id(id) {
            ctx.set_meta(&crate::docs::gossip_keys::meta_key(id), key)?;
        }
    }
    Ok(())
}

/// Applies a patch to settings, validating it.
pub fn patched_settings(old: &Settings, p: SettingsPatch) -> Result<Settings> {
    let mut s = old.clone();
    if let Some(v) = p.shop_name {
        s.shop_name = shop::non_empty("shop_name", &v, 100)?;
    }
    if let Some(v) = p.currency {
        s.currency_exponent = crate::domain::money::currency_exponent("currency", &v)?;
        s.currency = v.to_ascii_uppercase();
    }
    if let Some(v) = p.timezone {
        shop::check_timezone("timezone", &v)?;
        s.timezone = v;
    }
    if let Some(v) = p.tax_mode {
        s.tax_mode = v;
    }
    if let Some(v) = p.rounding {
        s.rounding = v;
    }
    if let Some(v) = p.cash_rounding {
        if !(1..=100_000).contains(&v) {
            return Err(Error::invalid(
                "cash_rounding",
                "must be between 1 and 100000",
            ));
        }
        s.cash_rounding = v;
    }
    if let Some(v) = p.receipt_text {
        if v.len() > 1000 {
            return Err(Error::invalid("receipt_text", "at most 1000 characters"));
        }
        s.receipt_text = v;
    }
    if let Some(v) = p.low_stock_default {
        if v < 0 {
            return Err(Error::invalid("low_stock_default", "must not be negative"));
        }
        s.low_stock_default = v;
    }
    if let Some(v) = p.oversell {
        s.oversell = v;
    }
    if let Some(v) = p.max_staff {
        if v > 1000 {
            return Err(Error::invalid("max_staff", "at most 1000"));
        }
        s.max_staff = v;
    }
    Ok(s)
}
