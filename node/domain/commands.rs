//! Commands: validate a request against the current state, then write it as a signed change.
//! Each runs inside the writer (see `engine`), so it sees every earlier command of its batch.
//!
//! Signing: entries a device makes on its own account (sales, stock-ins, a staff void) are
//! signed by the device key; privileged changes (catalog, settings, people, removals, counts,
//! returns) by the logged-in owner's or manager's person key.
//!
//! One file per feature: `setup` (the shop's genesis, settings), `people`, `invites` (invites,
//! redemption, admission), `products`, `stock`, `sales` (sales, voids, returns, refunds). This
//! file holds what they share — the clock and shop days, ledger documents and receipt numbers,
//! the common checks — and re-exports every command, so each keeps its `commands::` path.

use automerge::{ROOT, transaction::Transactable};
use chrono::TimeZone;
use ed25519_dalek::SigningKey;
use redb::ReadableTable;
use uuid::Uuid;

use super::money::MAX_AMOUNT;
use crate::docs::shop::non_empty;
use crate::docs::{DocId, LEDGER_ROLLOVER};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::meta;
use crate::store::tables::*;

/// Largest quantity in one line or movement.
pub const MAX_QTY: i64 = 1_000_000_000;
/// How long staff may void their own sale (the rule is [`super::access::require_void`]).
pub use super::access::STAFF_VOID_WINDOW_MS;

/// The person key of an owner or manager session.
pub fn person_key(by: &Principal) -> Result<&SigningKey> {
    by.key
        .as_ref()
        .ok_or_else(|| Error::Forbidden("this needs an owner's or manager's login".into()))
}

mod invites;
mod people;
mod products;
mod sales;
mod setup;
mod stock;

// One file per feature; every command keeps its `commands::` path.
pub use invites::*;
pub use people::*;
pub use products::*;
pub use sales::*;
pub use setup::*;
pub use stock::*;

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

// --- checks and reads the features share ------------------------------------------------

pub(crate) fn load_product(ctx: &Ctx<'_>, id: Uuid) -> Result<Product> {
    let t = ctx.tx.open_table(PRODUCTS)?;
    let v = t
        .get(id.as_u128())?
        .ok_or_else(|| Error::NotFound(format!("no product {id}")))?;
    serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.to_string()))
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
