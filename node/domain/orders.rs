//! Suppliers and purchase orders (the `orders` document) and deliveries (ledger entries).
//!
//! Layout of `orders`: `supplier:<uuid>` → map `{name, contact, phone, email, note}`;
//! `po:<uuid>` → map `{number, supplier, status, lines, expected_on, note, created_at}` where
//! `lines` is a JSON string written whole (only while the order is a draft) and every field is
//! a last-writer-wins register. Managers and owners write it (signed by their person key).
//!
//! A delivery is a ledger entry of the device that received it (staff may receive), so its
//! stock counts like any stock-in. Its id is `uuid v5(order id, normalized note number)`: the
//! same delivery note recorded on two devices gives two entries with one delivery id, and the
//! smaller (time, entry id) of them is the one that counts on every replica — the other one
//! changes no stock ([`project_delivery`]).

use std::collections::BTreeMap;

use automerge::{AutoCommit, ObjType, ROOT, transaction::Transactable};
use redb::{ReadTransaction, ReadableMultimapTable, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::{self, Access};
use super::commands::{check_money, check_qty, hlc_now, line_product, person_key, stock_entry};
use crate::docs::shop::non_empty;
use crate::docs::{DocId, am};
use crate::error::{Error, Result};
use crate::model::ledger::{DeliveryLine, EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// Namespace of delivery ids (uuid v5).
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6c1e_8a55_0f3b_4d7e_9a21_d3b4_5c6f_7a80);

/// A purchase order's fields as stored in the `orders` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoRecord {
    /// Order id.
    pub id: Uuid,
    /// Number shown to people.
    pub number: String,
    /// Supplier.
    pub supplier_id: Uuid,
    /// Status as written (`received` may also come from deliveries).
    pub status: PoStatus,
    /// Lines with the expected unit cost resolved.
    pub lines: Vec<StoredPoLine>,
    /// Expected delivery day.
    pub expected_on: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// Created at (ms).
    pub created_at: i64,
}

/// A purchase-order line as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPoLine {
    #[allow(missing_docs)]
    pub product_id: Uuid,
    #[allow(missing_docs)]
    pub variant_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub qty: i64,
    #[allow(missing_docs)]
    pub unit_cost: i64,
}

/// A delivery entry as projected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    #[allow(missing_docs)]
    pub entry_id: Uuid,
    #[allow(missing_docs)]
    pub time: i64,
    #[allow(missing_docs)]
    pub device: String,
    #[allow(missing_docs)]
    pub person: Option<Uuid>,
    #[allow(missing_docs)]
    pub po_id: Option<Uuid>,
    #[allow(missing_docs)]
    pub note_number: String,
    #[allow(missing_docs)]
    pub lines: Vec<DeliveryLine>,
    #[allow(missing_docs)]
    pub note: Option<String>,
}

/// The id of a delivery: the same order and note number give the same id everywhere.
pub fn delivery_id(po: Option<Uuid>, note_number: &str) -> Uuid {
    let normalized: String = note_number
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    let mut name = po.unwrap_or(Uuid::nil()).as_bytes().to_vec();
    name.extend_from_slice(normalized.as_bytes());
    Uuid::new_v5(&DELIVERY_NAMESPACE, &name)
}

// --- the document ----------------------------------------------------------------------------

/// What a change of `orders` touched.
pub enum Row {
    /// A supplier.
    Supplier(Supplier),
    /// A purchase order.
    Po(PoRecord),
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Reads the suppliers and orders under `keys` from the document.
pub fn read_changed(doc: &AutoCommit, keys: &[String]) -> Vec<Row> {
    let mut out = Vec::new();
    for key in keys {
        if let Some(id) = key
            .strip_prefix("supplier:")
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            if let Some(s) = read_supplier(doc, id) {
                out.push(Row::Supplier(s));
            }
        } else if let Some(id) = key
            .strip_prefix("po:")
            .and_then(|s| Uuid::parse_str(s).ok())
            && let Some(p) = read_po(doc, id)
        {
            out.push(Row::Po(p));
        }
    }
    out
}

/// Every supplier and order key of the document (for `reindex`).
pub fn all_keys(doc: &AutoCommit) -> Vec<String> {
    am::keys(doc, &ROOT, None)
        .into_iter()
        .filter(|k| k.starts_with("supplier:") || k.starts_with("po:"))
        .collect()
}

fn read_supplier(doc: &AutoCommit, id: Uuid) -> Option<Supplier> {
    let obj = am::map(doc, &ROOT, &format!("supplier:{id}"), None)?;
    let s = |k: &str| am::string(doc, &obj, k, None);
    Some(Supplier {
        id,
        name: s("name").unwrap_or_default(),
        contact: s("contact"),
        phone: s("phone"),
        email: s("email"),
        note: s("note"),
    })
}

fn read_po(doc: &AutoCommit, id: Uuid) -> Option<PoRecord> {
    let obj = am::map(doc, &ROOT, &format!("po:{id}"), None)?;
    let s = |k: &str| am::string(doc, &obj, k, None);
    Some(PoRecord {
        id,
        number: s("number").unwrap_or_default(),
        supplier_id: s("supplier").and_then(|v| Uuid::parse_str(&v).ok())?,
        status: s("status")
            .and_then(|v| PoStatus::parse(&v))
            .unwrap_or(PoStatus::Draft),
        lines: s("lines")
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
        expected_on: s("expected_on"),
        note: s("note"),
        created_at: am::int(doc, &obj, "created_at", None).unwrap_or(0),
    })
}

/// Writes the projection rows of changed suppliers and orders.
pub fn put_rows(tx: &WriteTransaction, rows: &[Row]) -> Result<()> {
    let mut suppliers = tx.open_table(SUPPLIERS)?;
    let mut pos = tx.open_table(PURCHASE_ORDERS)?;
    for row in rows {
        match row {
            Row::Supplier(s) => {
                let json = serde_json::to_string(s).map_err(internal)?;
                suppliers.insert(s.id.as_u128(), json.as_str())?;
            }
            Row::Po(p) => {
                let json = serde_json::to_string(p).map_err(internal)?;
                pos.insert(p.id.as_u128(), json.as_str())?;
            }
        }
    }
    Ok(())
}

fn put_opt(doc: &mut AutoCommit, obj: &automerge::ObjId, k: &str, v: Option<&str>) -> Result<()> {
    match v {
        Some(v) => doc.put(obj, k, v)?,
        None => doc.put(obj, k, automerge::ScalarValue::Null)?,
    }
    Ok(())
}

// --- commands ------------------------------------------------------------------------------

fn opt_text(field: &str, v: &Option<String>, max: usize) -> Result<Option<String>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => non_empty(field, t, max).map(Some),
    }
}

fn check_supplier(s: &NewSupplier) -> Result<NewSupplier> {
    let email = opt_text("email", &s.email, 200)?;
    if let Some(e) = &email
        && (!e.contains('@') || e.contains(' '))
    {
        return Err(Error::invalid("email", "not an e-mail address"));
    }
    Ok(NewSupplier {
        name: non_empty("name", &s.name, 200)?,
        contact: opt_text("contact", &s.contact, 200)?,
        phone: opt_text("phone", &s.phone, 50)?,
        email,
        note: opt_text("note", &s.note, 1000)?,
    })
}

/// Creates (`id` None) or replaces a supplier's details (manager).
pub fn put_supplier(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    id: Option<Uuid>,
    s: NewSupplier,
) -> Result<Supplier> {
    access::require(by, Access::Suppliers)?;
    let key = person_key(by)?.clone();
    let s = check_supplier(&s)?;
    let id = match id {
        Some(id) => {
            supplier(ctx.tx, id)?;
            id
        }
        None => Uuid::new_v4(),
    };
    let exists = ctx.tx.open_table(SUPPLIERS)?.get(id.as_u128())?.is_some();
    ctx.change(&DocId::Orders, &key, |doc| {
        let k = format!("supplier:{id}");
        let obj = match (exists, am::map(doc, &ROOT, &k, None)) {
            (true, Some(obj)) => obj,
            _ => doc.put_object(ROOT, k.as_str(), ObjType::Map)?,
        };
        doc.put(&obj, "name", s.name.as_str())?;
        put_opt(doc, &obj, "contact", s.contact.as_deref())?;
        put_opt(doc, &obj, "phone", s.phone.as_deref())?;
        put_opt(doc, &obj, "email", s.email.as_deref())?;
        put_opt(doc, &obj, "note", s.note.as_deref())?;
        Ok(())
    })?;
    supplier(ctx.tx, id)
}

fn check_lines(ctx: &Ctx<'_>, lines: &[PoLine]) -> Result<Vec<StoredPoLine>> {
    if lines.is_empty() {
        return Err(Error::invalid("lines", "an order needs at least one line"));
    }
    if lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let mut out: Vec<StoredPoLine> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let product = line_product(ctx, i, l.product_id, l.variant_id)?;
        if out
            .iter()
            .any(|o| o.product_id == l.product_id && o.variant_id == l.variant_id)
        {
            return Err(Error::invalid(
                f("product_id"),
                format!("{} is already on the order", product.name),
            ));
        }
        out.push(StoredPoLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            qty: check_qty(&f("qty"), l.qty)?,
            unit_cost: check_money(&f("unit_cost"), l.unit_cost.unwrap_or(product.cost))?,
        });
    }
    Ok(out)
}

fn check_day(field: &str, v: &Option<String>) -> Result<Option<String>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(|_| Some(d.to_string()))
            .map_err(|_| Error::invalid(field, "a day is written YYYY-MM-DD")),
    }
}

/// Creates a draft purchase order (manager).
pub fn create_po(ctx: &mut Ctx<'_>, by: &Principal, po: NewPurchaseOrder) -> Result<PurchaseOrder> {
    access::require(by, Access::CreatePurchaseOrder)?;
    let key = person_key(by)?.clone();
    supplier(ctx.tx, po.supplier_id).map_err(|e| match e {
        Error::NotFound(m) => Error::invalid("supplier_id", m),
        e => e,
    })?;
    let lines = check_lines(ctx, &po.lines)?;
    let expected_on = check_day("expected_on", &po.expected_on)?;
    let note = opt_text("note", &po.note, 1000)?;
    let id = Uuid::new_v4();
    let number = format!("PO-{}", &id.simple().to_string()[..8].to_uppercase());
    let created_at = hlc_now(ctx)?;
    let lines_json = serde_json::to_string(&lines).map_err(internal)?;
    ctx.change(&DocId::Orders, &key, |doc| {
        let obj = doc.put_object(ROOT, format!("po:{id}"), ObjType::Map)?;
        doc.put(&obj, "number", number.as_str())?;
        doc.put(&obj, "supplier", po.supplier_id.to_string())?;
        doc.put(&obj, "status", PoStatus::Draft.as_str())?;
        doc.put(&obj, "lines", lines_json.as_str())?;
        put_opt(doc, &obj, "expected_on", expected_on.as_deref())?;
        put_opt(doc, &obj, "note", note.as_deref())?;
        doc.put(&obj, "created_at", created_at)?;
        Ok(())
    })?;
    purchase_order(ctx.tx, id)
}

/// Changes a purchase order (manager): lines while a draft, status forward, or cancel.
pub fn update_po(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    id: Uuid,
    patch: PurchaseOrderPatch,
) -> Result<PurchaseOrder> {
    access::require(by, Access::ChangePurchaseOrder)?;
    let key = person_key(by)?.clone();
    let current = purchase_order(ctx.tx, id)?;
    let lines = match &patch.lines {
        Some(lines) => {
            if current.status != PoStatus::Draft {
                return Err(Error::Conflict(format!(
                    "{} was already sent: its lines can no longer change",
                    current.number
                )));
            }
            Some(serde_json::to_string(&check_lines(ctx, lines)?).map_err(internal)?)
        }
        None => None,
    };
    if let Some(to) = patch.status {
        use PoStatus::*;
        let ok = match (current.status, to) {
            (a, b) if a == b => true,
            (Draft, Sent) | (Sent, Confirmed) | (Draft, Confirmed) => true,
            (Sent | Confirmed, Received) => true,
            (Draft | Sent | Confirmed, Cancelled) => current.deliveries.is_empty(),
            _ => false,
        };
        if !ok {
            let why = if to == Cancelled && !current.deliveries.is_empty() {
                "goods were already received on it; mark it received to close it short".to_string()
            } else {
                format!(
                    "an order goes draft → sent → confirmed → received; it is {}",
                    current.status.as_str()
                )
            };
            return Err(Error::Conflict(format!(
                "{} cannot become {}: {why}",
                current.number,
                to.as_str()
            )));
        }
    }
    let expected_on = match &patch.expected_on {
        Some(_) => Some(check_day("expected_on", &patch.expected_on)?),
        None => None,
    };
    let note = match &patch.note {
        Some(_) => Some(opt_text("note", &patch.note, 1000)?),
        None => None,
    };
    if lines.is_none()
        && patch.status.is_none_or(|s| s == current.status)
        && expected_on.is_none()
        && note.is_none()
    {
        return Ok(current);
    }
    ctx.change(&DocId::Orders, &key, |doc| {
        let obj = am::map(doc, &ROOT, &format!("po:{id}"), None)
            .ok_or_else(|| Error::NotFound(format!("no purchase order {id}")))?;
        if let Some(l) = &lines {
            doc.put(&obj, "lines", l.as_str())?;
        }
        if let Some(s) = patch.status.filter(|s| *s != current.status) {
            doc.put(&obj, "status", s.as_str())?;
        }
        if let Some(d) = &expected_on {
            put_opt(doc, &obj, "expected_on", d.as_deref())?;
        }
        if let Some(n) = &note {
            put_opt(doc, &obj, "note", n.as_deref())?;
        }
        Ok(())
    })?;
    purchase_order(ctx.tx, id)
}

/// Receives a delivery on an order (anyone logged in; signed by the device).
pub fn receive(ctx: &mut Ctx<'_>, by: &Principal, po_id: Uuid, d: NewDelivery) -> Result<Delivery> {
    let po = purchase_order(ctx.tx, po_id)?;
    if !po.status.is_open() {
        let why = match po.status {
            PoStatus::Draft => "it is still a draft: mark it sent first",
            PoStatus::Received => "everything on it has arrived",
            _ => "it was cancelled",
        };
        return Err(Error::Conflict(format!(
            "{} cannot receive goods: {why}",
            po.number
        )));
    }
    let note_number = non_empty("note_number", &d.note_number, 100)?;
    let id = delivery_id(Some(po_id), &note_number);
    if let Some(first) = deliveries_of(ctx.tx, id)?.first() {
        return Err(Error::Conflict(format!(
            "delivery note {note_number} was already recorded on {} (on device {})",
            po.number, first.device
        )));
    }
    if d.lines.is_empty() {
        return Err(Error::invalid(
            "lines",
            "a delivery needs at least one line",
        ));
    }
    if d.lines.len() > 500 {
        return Err(Error::invalid("lines", "at most 500 lines"));
    }
    let mut lines: Vec<DeliveryLine> = Vec::new();
    for (i, l) in d.lines.iter().enumerate() {
        let f = |x: &str| format!("lines[{i}].{x}");
        let Some(ordered) = po
            .lines
            .iter()
            .find(|o| o.product_id == l.product_id && o.variant_id == l.variant_id)
        else {
            return Err(Error::invalid(
                f("product_id"),
                format!("this item is not on {}", po.number),
            ));
        };
        if lines
            .iter()
            .any(|o| o.product_id == l.product_id && o.variant_id == l.variant_id)
        {
            return Err(Error::invalid(
                f("product_id"),
                "this item is twice in the delivery",
            ));
        }
        lines.push(DeliveryLine {
            product_id: l.product_id,
            variant_id: l.variant_id,
            qty: check_qty(&f("qty"), l.qty)?,
            unit_cost: check_money(&f("unit_cost"), l.unit_cost.unwrap_or(ordered.unit_cost))?,
            expected_cost: Some(ordered.unit_cost),
        });
    }
    let body = EntryBody::Delivery {
        delivery_id: id,
        po_id: Some(po_id),
        note_number,
        lines,
        note: opt_text("note", &d.note, 500)?,
    };
    let key = ctx.device_key().clone();
    stock_entry(ctx, by, &key, body)?;
    delivery(ctx.tx, id)?.ok_or_else(|| Error::Internal("the delivery was not projected".into()))
}

// --- projection ----------------------------------------------------------------------------

/// What a delivery entry does to stock.
pub enum DeliveryOutcome {
    /// The first entry of its delivery: its lines count.
    Counts,
    /// It comes before the entry that counted so far, which stops counting.
    Replaces {
        /// That entry's time.
        time: i64,
        /// That entry's id.
        entry: u128,
    },
    /// Another entry of the same delivery counts.
    Duplicate,
}

/// Records a delivery entry and decides whether its lines count.
pub fn project_delivery(tx: &WriteTransaction, e: &LedgerEntry) -> Result<DeliveryOutcome> {
    let EntryBody::Delivery {
        delivery_id,
        po_id,
        note_number,
        lines,
        note,
    } = &e.body
    else {
        return Err(Error::Internal("not a delivery".into()));
    };
    let d = delivery_id.as_u128();
    let mut t = tx.open_table(DELIVERIES)?;
    let first = t
        .range((d, i64::MIN, 0)..=(d, i64::MAX, u128::MAX))?
        .next()
        .transpose()?
        .map(|(k, _)| k.value());
    let record = DeliveryRecord {
        entry_id: e.id,
        time: e.time,
        device: e.device.clone(),
        person: e.person,
        po_id: *po_id,
        note_number: note_number.clone(),
        lines: lines.clone(),
        note: note.clone(),
    };
    let json = serde_json::to_string(&record).map_err(internal)?;
    t.insert((d, e.time, e.id.as_u128()), json.as_str())?;
    if let Some(po) = po_id {
        tx.open_multimap_table(PO_DELIVERIES)?
            .insert(po.as_u128(), d)?;
    }
    Ok(match first {
        None => DeliveryOutcome::Counts,
        Some((_, time, entry)) if (e.time, e.id.as_u128()) < (time, entry) => {
            DeliveryOutcome::Replaces { time, entry }
        }
        Some(_) => DeliveryOutcome::Duplicate,
    })
}

// --- queries -------------------------------------------------------------------------------

/// Every supplier, by name.
pub fn suppliers(tx: &impl OrdersTables) -> Result<Vec<Supplier>> {
    let mut out: Vec<Supplier> = tx.all_json(SUPPLIERS)?;
    out.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

/// One supplier.
pub fn supplier(tx: &impl OrdersTables, id: Uuid) -> Result<Supplier> {
    tx.one_json(SUPPLIERS, id.as_u128())?
        .ok_or_else(|| Error::NotFound(format!("no supplier {id}")))
}

/// Every entry that recorded delivery `id`, the one that counts first.
fn deliveries_of(tx: &impl OrdersTables, id: Uuid) -> Result<Vec<DeliveryRecord>> {
    tx.deliveries(id.as_u128())
}

/// A delivery with names and variances, if known.
pub fn delivery(tx: &impl OrdersTables, id: Uuid) -> Result<Option<Delivery>> {
    let records = deliveries_of(tx, id)?;
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let mut lines = Vec::new();
    for l in &first.lines {
        let (sku, name) = tx.item_name(l.product_id, l.variant_id)?;
        lines.push(DeliveryLineView {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty: l.qty,
            unit_cost: l.unit_cost,
            expected_cost: l.expected_cost,
            variance: l
                .expected_cost
                .map(|e| (l.unit_cost - e) * l.qty)
                .unwrap_or(0),
        });
    }
    Ok(Some(Delivery {
        id,
        entry_id: first.entry_id,
        duplicates: records[1..].iter().map(|r| r.entry_id).collect(),
        po_id: first.po_id,
        note_number: first.note_number.clone(),
        time: first.time,
        device: first.device.clone(),
        person: first.person,
        total_cost: lines.iter().map(|l| l.unit_cost * l.qty).sum(),
        variance: lines.iter().map(|l| l.variance).sum(),
        lines,
        note: first.note.clone(),
    }))
}

/// One purchase order with its deliveries.
pub fn purchase_order(tx: &impl OrdersTables, id: Uuid) -> Result<PurchaseOrder> {
    let rec: PoRecord = tx
        .one_json(PURCHASE_ORDERS, id.as_u128())?
        .ok_or_else(|| Error::NotFound(format!("no purchase order {id}")))?;
    view(tx, rec)
}

/// Purchase orders, newest first; `open_only` keeps those still waiting for goods.
pub fn purchase_orders(tx: &impl OrdersTables, open_only: bool) -> Result<Vec<PurchaseOrder>> {
    let records: Vec<PoRecord> = tx.all_json(PURCHASE_ORDERS)?;
    let mut out = Vec::new();
    for r in records {
        let po = view(tx, r)?;
        if !open_only || po.status.is_open() {
            out.push(po);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Quantities still to come on open orders, per (product, variant).
pub fn on_order(tx: &impl OrdersTables) -> Result<BTreeMap<(Uuid, Option<Uuid>), i64>> {
    let mut out = BTreeMap::new();
    for po in purchase_orders(tx, true)? {
        for l in po.lines {
            *out.entry((l.product_id, l.variant_id)).or_insert(0) += l.outstanding;
        }
    }
    Ok(out)
}

fn view(tx: &impl OrdersTables, rec: PoRecord) -> Result<PurchaseOrder> {
    let mut deliveries = Vec::new();
    for d in tx.po_deliveries(rec.id.as_u128())? {
        if let Some(d) = delivery(tx, Uuid::from_u128(d))? {
            deliveries.push(d);
        }
    }
    deliveries.sort_by_key(|d| (d.time, d.entry_id));
    let mut lines = Vec::new();
    for l in &rec.lines {
        let (sku, name) = tx.item_name(l.product_id, l.variant_id)?;
        let received: i64 = deliveries
            .iter()
            .flat_map(|d| &d.lines)
            .filter(|x| x.product_id == l.product_id && x.variant_id == l.variant_id)
            .map(|x| x.qty)
            .sum();
        lines.push(PoLineView {
            product_id: l.product_id,
            variant_id: l.variant_id,
            sku,
            name,
            qty: l.qty,
            unit_cost: l.unit_cost,
            received,
            outstanding: 0,
        });
    }
    let all_in = lines.iter().all(|l| l.received >= l.qty);
    let status = match rec.status {
        PoStatus::Sent | PoStatus::Confirmed if all_in => PoStatus::Received,
        s => s,
    };
    if status.is_open() {
        for l in &mut lines {
            l.outstanding = (l.qty - l.received).max(0);
        }
    }
    Ok(PurchaseOrder {
        id: rec.id,
        number: rec.number,
        supplier_id: rec.supplier_id,
        supplier_name: tx
            .one_json::<Supplier>(SUPPLIERS, rec.supplier_id.as_u128())?
            .map(|s| s.name)
            .unwrap_or_default(),
        status,
        ordered_value: lines.iter().map(|l| l.qty * l.unit_cost).sum(),
        received_value: deliveries.iter().map(|d| d.total_cost).sum(),
        lines,
        expected_on: rec.expected_on,
        note: rec.note,
        created_at: rec.created_at,
        deliveries,
    })
}

/// Reading orders from a read or a write transaction.
pub trait OrdersTables {
    /// Every row of a JSON table.
    fn all_json<T: serde::de::DeserializeOwned>(
        &self,
        t: redb::TableDefinition<u128, &str>,
    ) -> Result<Vec<T>>;
    /// One row of a JSON table.
    fn one_json<T: serde::de::DeserializeOwned>(
        &self,
        t: redb::TableDefinition<u128, &str>,
        id: u128,
    ) -> Result<Option<T>>;
    /// Entries that recorded one delivery, the one that counts first.
    fn deliveries(&self, id: u128) -> Result<Vec<DeliveryRecord>>;
    /// Delivery ids received on an order.
    fn po_deliveries(&self, po: u128) -> Result<Vec<u128>>;
    /// SKU and name of a product or variant (empty if unknown).
    fn item_name(&self, product: Uuid, variant: Option<Uuid>) -> Result<(String, String)>;
}

macro_rules! impl_orders_tables {
    ($t:ty) => {
        impl OrdersTables for $t {
            fn all_json<T: serde::de::DeserializeOwned>(
                &self,
                t: redb::TableDefinition<u128, &str>,
            ) -> Result<Vec<T>> {
                let mut out = Vec::new();
                for row in self.open_table(t)?.iter()? {
                    out.push(serde_json::from_str(row?.1.value()).map_err(internal)?);
                }
                Ok(out)
            }
            fn one_json<T: serde::de::DeserializeOwned>(
                &self,
                t: redb::TableDefinition<u128, &str>,
                id: u128,
            ) -> Result<Option<T>> {
                self.open_table(t)?
                    .get(id)?
                    .map(|v| serde_json::from_str(v.value()).map_err(internal))
                    .transpose()
            }
            fn deliveries(&self, id: u128) -> Result<Vec<DeliveryRecord>> {
                let mut out = Vec::new();
                for row in self
                    .open_table(DELIVERIES)?
                    .range((id, i64::MIN, 0)..=(id, i64::MAX, u128::MAX))?
                {
                    out.push(serde_json::from_str(row?.1.value()).map_err(internal)?);
                }
                Ok(out)
            }
            fn po_deliveries(&self, po: u128) -> Result<Vec<u128>> {
                let mut out = Vec::new();
                for v in self.open_multimap_table(PO_DELIVERIES)?.get(po)? {
                    out.push(v?.value());
                }
                Ok(out)
            }
            fn item_name(&self, product: Uuid, variant: Option<Uuid>) -> Result<(String, String)> {
                let Some(p) = self.one_json::<Product>(PRODUCTS, product.as_u128())? else {
                    return Ok((String::new(), String::new()));
                };
                Ok(
                    match variant.and_then(|v| p.variants.iter().find(|x| x.id == v)) {
                        Some(v) => (v.sku.clone(), format!("{} {}", p.name, v.name)),
                        None => (p.sku.clone(), p.name.clone()),
                    },
                )
            }
        }
    };
}
impl_orders_tables!(WriteTransaction);
impl_orders_tables!(ReadTransaction);
