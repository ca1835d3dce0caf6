//! The audit trail: who (person and device) did what, when, on which document — every row
//! traceable to the signed change behind it — plus daily signed checkpoints and an export that
//! anyone can verify offline (`tillmesh audit verify FILE`).
//!
//! **Index.** Every applied envelope (except `vault`'s, which the audit never shows) writes one
//! row into `AUDIT`, keyed by (time, change hash), in the same transaction ([`record`], called
//! by the engine's apply path); `reindex` rebuilds it from the stored envelopes ([`rebuild`]).
//! A row's kind comes from the change itself, so it is the same on every replica:
//!
//! - ledger documents: the entries' kinds (`sale`, `stock_in`, `removal`, `adjustment`,
//!   `void`, `return`, `checkpoint`, and any kind added later), the time and person of the
//!   entry, the device of the document;
//! - `catalog`: `product_create` (a product map created), `alert_dismiss`, else
//!   `product_edit` (with the fields written);
//! - `members`: `shop_create`, `device_join`, `person_add`, `revoke`, else `members_change`;
//! - `settings`: `settings_change`; `orders`: `orders_change`.
//!
//! For non-ledger changes the time is the change's own timestamp and the device is the one
//! named in the change's message (`{"device": id}`), both written by `replica::Ctx::change`
//! inside the signed change bytes. (Changes made before this existed carry time 0 and no device.)
//!
//! **Checkpoints.** Once per shop-local day each device writes a ledger entry of kind
//! `checkpoint` ([`write_checkpoint`], run by the node's timer ten minutes after start and
//! then every ten minutes until the day has one) holding the heads of every document whose heads moved
//! since its previous checkpoint (every document in its first one; `vault` left out). Heads
//! name their whole history by hash, so a chain of checkpoints covers every change the device
//! had seen — and it is signed by the device key like any ledger entry.
//!
//! **Export** ([`write_export`]): JSON lines — a header, one `change` line per stored change
//! (document, hash, signer, signature, the envelope bytes in base64, and the audit row's time,
//! kind, device and person), one `checkpoint` line per checkpoint entry, and an `end` line with
//! the counts. [`verify_export`] checks, without a node: every envelope decodes, its change
//! hashes to the listed hash, its signature verifies for the listed signer; every change's
//! dependencies are in the file; every checkpoint was signed by the device it names and every
//! head it names is in the file under that document; the counts match. Verify an export taken
//! on a node that has caught up with its peers: a checkpoint may name changes still on their
//! way to a node that is behind.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Write};

use automerge::{Change, ChangeHash, ScalarValue};
use data_encoding::BASE64;
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::docs::trust::{Signer, Trust};
use crate::docs::{DocId, Envelope, am};
use crate::error::{Error, Result};
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::replica::Ctx;
use crate::store::tables::*;
use crate::store::{load_doc, read_doc_meta};

/// `meta` key: the shop-local day of this device's last checkpoint.
const CHECKPOINT_DAY: &str = "audit_checkpoint_day";
/// `meta` key: postcard map document → heads at this device's last checkpoint.
const CHECKPOINT_HEADS: &str = "audit_checkpoint_heads";
/// Documents per checkpoint entry (a bigger set is split over several entries).
const DOCS_PER_CHECKPOINT: usize = 2_000;
/// The export's format name.
pub const EXPORT_FORMAT: &str = "tillmesh-audit/1";

/// One row of the audit index (postcard in `AUDIT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Document id.
    pub doc: String,
    /// What kind of change.
    pub kind: String,
    /// A few words on what changed.
    pub summary: String,
    /// Device that made it, if known.
    pub device: Option<String>,
    /// Person who made it, if known.
    pub person: Option<Uuid>,
    /// `device`, `owner`, `manager`, `recovery` or `genesis`.
    pub signer_role: String,
    /// Ledger entries in the change.
    pub entries: Vec<Uuid>,
}

/// An audit entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When (ms since the Unix epoch): the entry's time, or the change's timestamp.
    pub time: i64,
    /// Document id.
    pub doc: String,
    /// Kind: `sale`, `stock_in`, `product_edit`, `device_join`, `checkpoint` …
    pub kind: String,
    /// What changed, in a few words.
    pub summary: String,
    /// Device id that made the change, if known.
    pub device: Option<String>,
    /// That device's name.
    pub device_name: Option<String>,
    /// Person who made it, if known.
    pub person: Option<Uuid>,
    /// That person's name.
    pub person_name: Option<String>,
    /// The change hash (hex): `GET /api/v1/audit/export` carries the signed change.
    pub hash: String,
    /// The signer's public key (hex).
    pub signer: String,
    /// `device`, `owner`, `manager`, `recovery` or `genesis`.
    pub signer_role: String,
    /// The envelope's ed25519 signature (hex).
    pub signature: String,
    /// Ledger entries the change holds.
    pub entries: Vec<Uuid>,
}

/// A page of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `from <= time`.
    pub from: i64,
    /// `time < to`.
    pub to: i64,
    /// Only this person.
    pub person: Option<Uuid>,
    /// Only these kinds.
    pub kinds: Vec<String>,
    /// Only this device.
    pub device: Option<String>,
    /// Only this document (or, ending in `/`, documents starting with it).
    pub doc: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Continue before this (time, hash).
    pub cursor: Option<(i64, [u8; 32])>,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The device named in a change's message (`{"device": id}`).
fn message_device(change: &Change) -> Option<String> {
    let m = change.message()?;
    serde_json::from_str::<serde_json::Value>(m)
        .ok()?
        .get("device")?
        .as_str()
        .map(String::from)
}

fn signer_fields(signer: &Signer) -> (String, Option<Uuid>, Option<String>) {
    match signer {
        Signer::Device { id, .. } => ("device".into(), None, Some(id.clone())),
        Signer::Person { id, role } => (role.as_str().into(), Some(*id), None),
        Signer::Recovery => ("recovery".into(), None, None),
        Signer::Genesis => ("genesis".into(), None, None),
    }
}

/// The row of one change (none for `vault`) and its time.
pub fn row_of(doc: &DocId, id: &str, change: &Change, signer: &Signer) -> Option<(i64, AuditRow)> {
    let (signer_role, mut person, mut device) = signer_fields(signer);
    if device.is_none() {
        device = message_device(change);
    }
    let mut time = change.timestamp();
    let mut entries = Vec::new();
    let (kind, summary) = match doc {
        DocId::Vault => return None,
        DocId::Ledger { device: d, .. } => {
            device = Some(d.clone());
            let mut kinds: Vec<String> = Vec::new();
            let mut parts = Vec::new();
            for (key, value) in am::root_puts(change) {
                let (true, ScalarValue::Str(json)) = (key.starts_with("entry:"), value) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
                    continue;
                };
                let kind = v["kind"].as_str().unwrap_or("entry").to_string();
                if let Some(eid) = v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    entries.push(eid);
                }
                if entries.len() == 1 {
                    if let Some(t) = v["time"].as_i64() {
                        time = t;
                    }
                    if person.is_none() {
                        person = v["person"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                    }
                }
                parts.push(entry_summary(&kind, &v));
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            if kinds.is_empty() {
                (
                    "ledger_change".to_string(),
                    "ledger document created".into(),
                )
            } else {
                (kinds.join("+"), parts.join("; "))
            }
        }
        _ => {
            let ops = change.decode().operations;
            use automerge::legacy::{Key, ObjectId, OpType};
            let mut made = Vec::new();
            let mut root_puts = Vec::new();
            let mut nested = BTreeSet::new();
            for op in &ops {
                let Key::Map(k) = &op.key else { continue };
                match (&op.obj, &op.action) {
                    (ObjectId::Root, OpType::Make(_)) => made.push(k.to_string()),
                    (ObjectId::Root, _) => root_puts.push(k.to_string()),
                    _ => {
                        nested.insert(k.to_string());
                    }
                }
            }
            let nested: Vec<String> = nested.into_iter().collect();
            match doc {
                DocId::Catalog => {
                    let created: Vec<&String> =
                        made.iter().filter(|k| k.starts_with("product:")).collect();
                    let dismissed: Vec<&str> = root_puts
                        .iter()
                        .filter_map(|k| k.strip_prefix(super::alerts::DISMISSED_PREFIX))
                        .collect();
                    if !created.is_empty() {
                        (
                            "product_create".into(),
                            format!("created {} product(s)", created.len()),
                        )
                    } else if !dismissed.is_empty() {
                        (
                            "alert_dismiss".into(),
                            format!("dismissed {}", dismissed.join(", ")),
                        )
                    } else {
                        (
                            "product_edit".into(),
                            format!("edited {}", nested.join(", ")),
                        )
                    }
                }
                DocId::Members => {
                    if root_puts.iter().any(|k| k == "shop_id") {
                        ("shop_create".into(), "created the shop".into())
                    } else if let Some(d) = made.iter().find_map(|k| k.strip_prefix("device:")) {
                        ("device_join".into(), format!("device {d} joined"))
                    } else if let Some(p) = made.iter().find_map(|k| k.strip_prefix("person:")) {
                        ("person_add".into(), format!("added person {p}"))
                    } else if root_puts.iter().any(|k| k.starts_with("revocation:"))
                        || nested.iter().any(|k| k == "revoked")
                    {
                        ("revoke".into(), "revoked a member".into())
                    } else {
                        (
                            "members_change".into(),
                            format!("changed {}", root_puts.join(", ")),
                        )
                    }
                }
                DocId::Settings => (
                    "settings_change".into(),
                    format!(
                        "changed {}",
                        root_puts
                            .iter()
                            .filter(|k| *k != "schema")
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                DocId::Orders => (
                    "orders_change".into(),
                    format!(
                        "changed {}",
                        made.iter()
                            .chain(root_puts.iter())
                            .filter(|k| *k != "schema")
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                _ => (doc.kind().to_string(), String::new()),
            }
        }
    };
    let _ = id;
    Some((
        time,
        AuditRow {
            doc: doc.to_string(),
            kind,
            summary,
            device,
            person,
            signer_role,
            entries,
        },
    ))
}

fn entry_summary(kind: &str, v: &serde_json::Value) -> String {
    match kind {
        "sale" => {
            let mut s = format!(
                "sale {} ({} line(s), total {})",
                v["receipt"].as_str().unwrap_or(""),
                v["lines"].as_array().map(Vec::len).unwrap_or(0),
                v["total"]
            );
            // An owner accepted it from a revoked till (`domain::revoked_sales`).
            if let Some(a) = v.get("accepted").filter(|a| a.is_object()) {
                s.push_str(&format!(
                    ", accepted from revoked device {} ({}) by owner {} ({})",
                    a["from_device_name"].as_str().unwrap_or(""),
                    a["from_device"].as_str().unwrap_or(""),
                    a["by_name"].as_str().unwrap_or(""),
                    a["by"].as_str().unwrap_or(""),
                ));
            }
            s
        }
        "stock_in" | "removal" => format!("{kind} of {} × {}", v["qty"], v["product_id"]),
        "adjustment" => format!(
            "count {} (Δ {}) of {}",
            v["counted"], v["delta"], v["product_id"]
        ),
        "void" | "return" => format!("{kind} of sale {}", v["sale_id"]),
        "checkpoint" => format!(
            "checkpoint of {} document(s)",
            v["heads"].as_object().map(|m| m.len()).unwrap_or(0)
        ),
        other => other.to_string(),
    }
}

/// Writes the row of an applied change (engine apply path). Returns, for a ledger change, the
/// time and id of its first entry (the alerts' clock check reads it).
pub(crate) fn record(
    tx: &WriteTransaction,
    doc: &DocId,
    id: &str,
    change: &Change,
    signer: &Signer,
) -> Result<Option<(i64, Uuid)>> {
    let Some((time, row)) = row_of(doc, id, change, signer) else {
        return Ok(None);
    };
    insert_row(tx, time, &change.hash().0, &row)?;
    Ok(match (doc, row.entries.first()) {
        (DocId::Ledger { .. }, Some(e)) => Some((time, *e)),
        _ => None,
    })
}

/// Stores one audit row and its entries in the person and kind indexes.
fn insert_row(tx: &WriteTransaction, time: i64, hash: &[u8; 32], row: &AuditRow) -> Result<()> {
    let bytes = postcard::to_allocvec(row).map_err(internal)?;
    tx.open_table(AUDIT)?
        .insert((time, hash), bytes.as_slice())?;
    index_row(tx, time, hash, row)
}

/// The person and kind index entries of one row.
fn index_row(tx: &WriteTransaction, time: i64, hash: &[u8; 32], row: &AuditRow) -> Result<()> {
    if let Some(p) = row.person {
        tx.open_table(AUDIT_BY_PERSON)?
            .insert((p.as_u128(), time, hash), ())?;
    }
    let mut by_kind = tx.open_table(AUDIT_BY_KIND)?;
    for kind in row.kind.split('+') {
        by_kind.insert((kind, time, hash), ())?;
    }
    Ok(())
}

/// Fills the person and kind indexes from the stored rows (migration 5). Returns the rows seen.
pub fn index_rows(tx: &WriteTransaction) -> Result<usize> {
    tx.delete_table(AUDIT_BY_PERSON)?;
    tx.delete_table(AUDIT_BY_KIND)?;
    let audit = tx.open_table(AUDIT)?;
    let mut n = 0;
    for row in audit.iter()? {
        let (k, v) = row?;
        let (time, hash) = k.value();
        let r: AuditRow = postcard::from_bytes(v.value()).map_err(internal)?;
        index_row(tx, time, hash, &r)?;
        n += 1;
    }
    Ok(n)
}

/// Rebuilds the audit index from every stored envelope (`reindex`, migration 4).
pub fn rebuild(tx: &WriteTransaction) -> Result<usize> {
    tx.delete_table(AUDIT)?;
    tx.delete_table(AUDIT_BY_PERSON)?;
    tx.delete_table(AUDIT_BY_KIND)?;
    let members = {
        let docs = tx.open_table(DOCS)?;
        let chunks = tx.open_table(DOC_CHUNKS)?;
        load_doc(&docs, &chunks, "members")?.unwrap_or_default()
    };
    let genesis = tx
        .open_table(META)?
        .get(crate::store::meta::GENESIS)?
        .and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
    let anchor = crate::docs::members::Anchor::in_tx(&tx.open_table(META)?)?;
    let mut trust: HashMap<Vec<ChangeHash>, Trust> = HashMap::new();
    let changes: Vec<(String, [u8; 32])> = {
        let t = tx.open_table(DOC_CHANGES)?;
        let mut v = Vec::new();
        for row in t.iter()? {
            let (k, h) = row?;
            v.push((k.value().0.to_string(), *h.value()));
        }
        v
    };
    let mut n = 0;
    let envs = tx.open_table(ENVELOPES)?;
    for (doc, h) in changes {
        let Ok(doc_id) = DocId::parse(&doc) else {
            continue;
        };
        if doc_id == DocId::Vault {
            continue;
        }
        let Some(v) = envs.get(&h)? else { continue };
        let env = Envelope::from_bytes(v.value())?;
        let change = env.decode_change()?;
        let signer = if Some(h) == genesis {
            Signer::Genesis
        } else {
            let mut heads = env.members_heads();
            heads.sort();
            let t = trust
                .entry(heads.clone())
                .or_insert_with(|| Trust::read(&members, Some(&heads), &anchor));
            match t.signer(&env.signer) {
                Some((s, _)) => s.clone(),
                // A device admitting itself is not in `members` before its own change.
                None => match ed25519_dalek::VerifyingKey::from_bytes(&env.signer) {
                    Ok(k) => Signer::Device {
                        id: crate::identity::device_id(&k),
                        role: crate::model::DeviceRole::Till,
                    },
                    Err(_) => continue,
                },
            }
        };
        if let Some((time, row)) = row_of(&doc_id, &doc, &change, &signer) {
            insert_row(tx, time, &h, &row)?;
            n += 1;
        }
    }
    Ok(n)
}

/// A page of the audit trail, newest first. A person filter reads the person index, a kind
/// filter the kind index (one range per kind, merged); other filters scan the date range.
pub fn query(
    tx: &redb::ReadTransaction,
    shop: &crate::docs::shop::ShopView,
    f: &AuditFilter,
) -> Result<AuditPage> {
    let audit = tx.open_table(AUDIT)?;
    let envs = tx.open_table(ENVELOPES)?;
    let upper = match f.cursor {
        Some((t, h)) => (t, h),
        None => (f.to, [0u8; 32]),
    };
    let lo = [0u8; 32];
    // Up to limit + 1 matching rows, newest first (one more than a page tells if there is more).
    let mut found: Vec<(i64, [u8; 32], AuditRow)> = Vec::new();
    let take = |found: &mut Vec<_>, time: i64, hash: [u8; 32], r: AuditRow| -> bool {
        if time < f.to && matches(f, &r) {
            found.push((time, hash, r));
        }
        found.len() > f.limit
    };
    let row = |time: i64, hash: &[u8; 32]| -> Result<Option<AuditRow>> {
        match audit.get((time, hash))? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value()).map_err(internal)?)),
            None => Ok(None),
        }
    };
    if let Some(p) = f.person {
        let p = p.as_u128();
        let idx = tx.open_table(AUDIT_BY_PERSON)?;
        for k in idx.range((p, f.from, &lo)..(p, upper.0, &upper.1))?.rev() {
            let k = k?.0;
            let (_, time, hash) = k.value();
            let hash = *hash;
            if let Some(r) = row(time, &hash)?
                && take(&mut found, time, hash, r)
            {
                break;
            }
        }
    } else if !f.kinds.is_empty() {
        let idx = tx.open_table(AUDIT_BY_KIND)?;
        let kinds: BTreeSet<&str> = f.kinds.iter().map(String::as_str).collect();
        for kind in kinds {
            let mut of_kind = Vec::new();
            for k in idx
                .range((kind, f.from, &lo)..(kind, upper.0, &upper.1))?
                .rev()
            {
                let k = k?.0;
                let (_, time, hash) = k.value();
                let hash = *hash;
                if let Some(r) = row(time, &hash)?
                    && take(&mut of_kind, time, hash, r)
                {
                    break;
                }
            }
            found.extend(of_kind);
        }
        // A `sale+void` row is in two kinds' ranges.
        found.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
        found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        found.truncate(f.limit + 1);
    } else {
        for k in audit.range((f.from, &lo)..(upper.0, &upper.1))?.rev() {
            let (k, v) = k?;
            let (time, hash) = k.value();
            let r: AuditRow = postcard::from_bytes(v.value()).map_err(internal)?;
            if take(&mut found, time, *hash, r) {
                break;
            }
        }
    }
    let next = (found.len() > f.limit)
        .then(|| found.get(f.limit.wrapping_sub(1)))
        .flatten()
        .map(|(t, h, _)| format!("{t}:{}", hex::encode(h)));
    let mut entries = Vec::new();
    for (time, hash, r) in found.into_iter().take(f.limit) {
        let env = match envs.get(&hash)? {
            Some(v) => Envelope::from_bytes(v.value())?,
            None => continue,
        };
        entries.push(AuditEntry {
            time,
            device_name: r.device.as_ref().and_then(|d| {
                shop.devices
                    .iter()
                    .find(|x| &x.id == d)
                    .map(|x| x.name.clone())
            }),
            person_name: r
                .person
                .and_then(|p| shop.person(p).map(|p| p.person.name.clone())),
            doc: r.doc,
            kind: r.kind,
            summary: r.summary,
            device: r.device,
            person: r.person,
            hash: hex::encode(hash),
            signer: hex::encode(env.signer),
            signer_role: r.signer_role,
            signature: hex::encode(&env.signature),
            entries: r.entries,
        });
    }
    Ok(AuditPage {
        entries,
        next_cursor: next,
    })
}

/// Whether a row passes every filter of `f` (the time range is the caller's).
fn matches(f: &AuditFilter, r: &AuditRow) -> bool {
    if f.person.is_some() && r.person != f.person {
        return false;
    }
    if !f.kinds.is_empty() && !r.kind.split('+').any(|k| f.kinds.iter().any(|x| x == k)) {
        return false;
    }
    if f.device.is_some() && r.device != f.device {
        return false;
    }
    match &f.doc {
        Some(d) if d.ends_with('/') => r.doc.starts_with(d.as_str()),
        Some(d) => &r.doc == d,
        None => true,
    }
}

/// Parses a cursor `time:hash`.
pub fn parse_cursor(s: &str) -> Result<(i64, [u8; 32])> {
    let bad = || Error::invalid("cursor", "not a cursor from a previous page");
    let (t, h) = s.split_once(':').ok_or_else(bad)?;
    let t: i64 = t.parse().map_err(|_| bad())?;
    let h: [u8; 32] = hex::decode(h)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    Ok((t, h))
}

// --- checkpoints ---------------------------------------------------------------------------

/// Writes this device's checkpoint if today's (shop-local) is not written yet, or always with
/// `force`. Returns the entry ids written (none when not due, or when this node has no shop
/// or this device was revoked).
pub fn write_checkpoint(ctx: &mut Ctx<'_>, force: bool) -> Result<Vec<Uuid>> {
    let shop = ctx.shop();
    let (Some(settings), Some(device)) = (shop.settings.clone(), shop.this_device.clone()) else {
        return Ok(Vec::new());
    };
    if device.revoked {
        return Ok(Vec::new());
    }
    let now = super::commands::hlc_now(ctx)?;
    let day = super::commands::shop_day(&settings, now);
    if !force && ctx.meta(CHECKPOINT_DAY)?.as_deref() == Some(day.as_bytes()) {
        return Ok(Vec::new());
    }
    let previous: BTreeMap<String, Vec<[u8; 32]>> = ctx
        .meta(CHECKPOINT_HEADS)?
        .and_then(|b| postcard::from_bytes(&b).ok())
        .unwrap_or_default();
    let current: BTreeMap<String, Vec<[u8; 32]>> = {
        let docs = ctx.tx.open_table(DOCS)?;
        let mut m = BTreeMap::new();
        for row in docs.iter()? {
            let (k, _) = row?;
            let id = k.value().to_string();
            if id == "vault" {
                continue;
            }
            if let Some(meta) = read_doc_meta(&docs, &id)? {
                m.insert(id, meta.heads);
            }
        }
        m
    };
    let always = ["members", "settings", "catalog", "orders"];
    let heads: Vec<(String, Vec<String>)> = current
        .iter()
        .filter(|(id, h)| always.contains(&id.as_str()) || previous.get(*id) != Some(*h))
        .map(|(id, h)| (id.clone(), h.iter().map(hex::encode).collect()))
        .collect();
    let key = ctx.device_key().clone();
    let mut ids = Vec::new();
    for chunk in heads.chunks(DOCS_PER_CHECKPOINT) {
        let entry = LedgerEntry {
            id: Uuid::new_v4(),
            time: super::commands::hlc_now(ctx)?,
            device: ctx.device_id().to_string(),
            person: None,
            body: EntryBody::Checkpoint {
                day: day.clone(),
                heads: chunk.iter().cloned().collect(),
            },
        };
        super::commands::append_entry(ctx, &key, &settings, &entry)?;
        ids.push(entry.id);
    }
    let bytes = postcard::to_allocvec(&current).map_err(internal)?;
    ctx.set_meta(CHECKPOINT_HEADS, &bytes)?;
    ctx.set_meta(CHECKPOINT_DAY, day.as_bytes())?;
    Ok(ids)
}

// --- export and offline verification -------------------------------------------------------

/// One line of an audit export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Header {
        /// [`EXPORT_FORMAT`].
        format: String,
        /// Shop id.
        shop_id: Option<Uuid>,
        /// Shop name.
        shop_name: Option<String>,
        /// When it was exported (ms).
        exported_at: i64,
        /// The device that exported it.
        exported_by: String,
    },
    /// A signed change.
    Change {
        /// Document id.
        doc: String,
        /// Change hash (hex).
        hash: String,
        /// Signer public key (hex).
        signer: String,
        /// Signature (hex).
        signature: String,
        /// Audit time (ms).
        time: i64,
        /// Audit kind.
        kind: String,
        /// Device, if known.
        device: Option<String>,
        /// Person, if known.
        person: Option<Uuid>,
        /// The envelope as stored and sent (postcard), base64.
        envelope: String,
    },
    /// A checkpoint entry (also inside its change; repeated here to be read easily).
    Checkpoint {
        /// Entry id.
        entry_id: Uuid,
        /// The device that signed it.
        device: String,
        /// Shop-local day.
        day: String,
        /// Entry time (ms).
        time: i64,
        /// The change holding it (hex).
        change: String,
        /// Document → heads (hex).
        heads: BTreeMap<String, Vec<String>>,
    },
    /// The last line.
    End {
        /// Change lines.
        changes: u64,
        /// Checkpoint lines.
        checkpoints: u64,
    },
}

/// The checkpoints held in a ledger change.
fn checkpoints_in(change: &Change) -> Vec<LedgerEntry> {
    am::root_puts(change)
        .into_iter()
        .filter_map(|(k, v)| match (k.starts_with("entry:"), v) {
            (true, ScalarValue::Str(json)) => serde_json::from_str::<LedgerEntry>(&json).ok(),
            _ => None,
        })
        .filter(|e| matches!(e.body, EntryBody::Checkpoint { .. }))
        .collect()
}

/// Writes the audit export of every stored change but `vault`'s, as JSON lines.
pub fn write_export(
    tx: &redb::ReadTransaction,
    header: ExportLine,
    out: &mut impl Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Internal(format!("writing the export: {e}"));
    let line = |out: &mut dyn Write, l: &ExportLine| -> Result<()> {
        serde_json::to_writer(&mut *out, l).map_err(internal)?;
        out.write_all(b"\n").map_err(io)
    };
    line(out, &header)?;
    let changes_t = tx.open_table(DOC_CHANGES)?;
    let envs = tx.open_table(ENVELOPES)?;
    let audit_times: HashMap<[u8; 32], (i64, AuditRow)> = {
        let mut m = HashMap::new();
        for row in tx.open_table(AUDIT)?.iter()? {
            let (k, v) = row?;
            let (t, h) = k.value();
            if let Ok(r) = postcard::from_bytes::<AuditRow>(v.value()) {
                m.insert(*h, (t, r));
            }
        }
        m
    };
    let (mut changes, mut checkpoints) = (0u64, 0u64);
    for row in changes_t.iter()? {
        let (k, h) = row?;
        let doc = k.value().0.to_string();
        if doc == "vault" {
            continue;
        }
        let h = *h.value();
        let Some(v) = envs.get(&h)? else { continue };
        let env = Envelope::from_bytes(v.value())?;
        let (time, kind, device, person) = match audit_times.get(&h) {
            Some((t, r)) => (*t, r.kind.clone(), r.device.clone(), r.person),
            None => (0, String::new(), None, None),
        };
        line(
            out,
            &ExportLine::Change {
                doc: doc.clone(),
                hash: hex::encode(h),
                signer: hex::encode(env.signer),
                signature: hex::encode(&env.signature),
                time,
                kind,
                device,
                person,
                envelope: BASE64.encode(v.value()),
            },
        )?;
        changes += 1;
        if doc.starts_with("ledger/") {
            let change = env.decode_change()?;
            for e in checkpoints_in(&change) {
                if let EntryBody::Checkpoint { day, heads } = e.body {
                    line(
                        out,
                        &ExportLine::Checkpoint {
                            entry_id: e.id,
                            device: e.device,
                            day,
                            time: e.time,
                            change: hex::encode(h),
                            heads,
                        },
                    )?;
                    checkpoints += 1;
                }
            }
        }
    }
    line(
        out,
        &ExportLine::End {
            changes,
            checkpoints,
        },
    )?;
    out.flush().map_err(io)
}

/// What [`verify_export`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Shop named in the header.
    pub shop_name: Option<String>,
    /// Changes whose hash and signature verified.
    pub changes: u64,
    /// Documents.
    pub documents: usize,
    /// Distinct signer keys.
    pub signers: usize,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Devices that signed checkpoints.
    pub checkpointing_devices: BTreeSet<String>,
    /// Earliest and latest audit time of the changes (ms), 0 if none.
    pub first_time: i64,
    /// Latest.
    pub last_time: i64,
    /// Everything wrong (empty: the export verified).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the export verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks an audit export offline (see the module docs). I/O errors and a file that is not an
/// export at all are errors; everything wrong inside one is listed in `problems`.
pub fn verify_export(input: impl BufRead) -> Result<VerifyReport> {
    const MAX_PROBLEMS: usize = 50;
    let mut r = VerifyReport::default();
    fn problem(r: &mut VerifyReport, p: String) {
        if r.problems.len() < MAX_PROBLEMS {
            r.problems.push(p);
        }
    }
    let mut by_doc: HashMap<String, HashSet<[u8; 32]>> = HashMap::new();
    // (line, document, change, its dependencies)
    type Deps = (usize, String, [u8; 32], Vec<[u8; 32]>);
    // (line, entry id, device, heads)
    type Listed = (usize, Uuid, String, BTreeMap<String, Vec<String>>);
    let mut deps: Vec<Deps> = Vec::new();
    let mut signers = HashSet::new();
    let mut found_checkpoints: HashMap<Uuid, (String, BTreeMap<String, Vec<String>>)> =
        HashMap::new();
    let mut listed_checkpoints: Vec<Listed> = Vec::new();
    let mut end: Option<(u64, u64)> = None;
    let mut header = false;
    let mut lines_seen = 0u64;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::Internal(format!("reading the export: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        lines_seen += 1;
        let parsed: ExportLine = match serde_json::from_str(&line) {
            Ok(l) => l,
            Err(e) if i == 0 => {
                return Err(Error::invalid(
                    "file",
                    format!("not a tillmesh audit export (line 1: {e})"),
                ));
            }
            Err(e) => {
                problem(&mut r, format!("line {n}: unreadable ({e})"));
                continue;
            }
        };
        if end.is_some() {
            problem(&mut r, format!("line {n}: data after the end line"));
        }
        match parsed {
            ExportLine::Header {
                format, shop_name, ..
            } => {
                if i != 0 || format != EXPORT_FORMAT {
                    return Err(Error::invalid(
                        "file",
                        format!("line {n}: expected a {EXPORT_FORMAT} header"),
                    ));
                }
                header = true;
                r.shop_name = shop_name;
            }
            ExportLine::Change {
                doc,
                hash,
                signer,
                signature,
                time,
                envelope,
                ..
            } => {
                if !header {
                    return Err(Error::invalid("file", "the export has no header line"));
                }
                let env = match BASE64
                    .decode(envelope.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|b| Envelope::from_bytes(&b).map_err(|e| e.to_string()))
                {
                    Ok(e) => e,
                    Err(e) => {
                        problem(&mut r, format!("line {n}: envelope does not decode: {e}"));
                        continue;
                    }
                };
                let change = match env.decode_change() {
                    Ok(c) => c,
                    Err(e) => {
                        problem(&mut r, format!("line {n}: change does not decode: {e}"));
                        continue;
                    }
                };
                let h = change.hash();
                if hex::encode(h.0) != hash {
                    problem(
                        &mut r,
                        format!(
                            "line {n}: the change bytes hash to {}, not the listed {hash} \
                             (altered)",
                            hex::encode(h.0)
                        ),
                    );
                    continue;
                }
                if env.doc != doc {
                    problem(
                        &mut r,
                        format!("line {n}: the envelope is for {}, not {doc}", env.doc),
                    );
                }
                if hex::encode(env.signer) != signer || hex::encode(&env.signature) != signature {
                    problem(
                        &mut r,
                        format!("line {n}: signer or signature differ from the envelope's"),
                    );
                }
                if let Err(e) = env.verify_signature(&h) {
                    problem(&mut r, format!("line {n}: change {hash}: {e}"));
                    continue;
                }
                if DocId::parse(&doc).is_err() || doc == "vault" {
                    problem(&mut r, format!("line {n}: unexpected document {doc:?}"));
                }
                if !by_doc.entry(doc.clone()).or_default().insert(h.0) {
                    problem(&mut r, format!("line {n}: change {hash} appears twice"));
                }
                signers.insert(env.signer);
                deps.push((
                    n,
                    doc.clone(),
                    h.0,
                    change.deps().iter().map(|d| d.0).collect(),
                ));
                if doc.starts_with("ledger/") {
                    for e in checkpoints_in(&change) {
                        let signer_device = crate::identity::device_id(
                            &ed25519_dalek::VerifyingKey::from_bytes(&env.signer)
                                .map_err(|_| Error::invalid("file", "bad key"))?,
                        );
                        let doc_device = doc.split('/').nth(2).unwrap_or("");
                        if e.device != signer_device || doc_device != signer_device {
                            problem(
                                &mut r,
                                format!(
                                    "line {n}: checkpoint {} names device {} but was signed by \
                                     device {signer_device}",
                                    e.id, e.device
                                ),
                            );
                        }
                        if let EntryBody::Checkpoint { heads, .. } = e.body {
                            r.checkpointing_devices.insert(e.device.clone());
                            found_checkpoints.insert(e.id, (e.device, heads));
                        }
                    }
                }
                r.changes += 1;
                if time != 0 {
                    r.first_time = if r.first_time == 0 {
                        time
                    } else {
                        r.first_time.min(time)
                    };
                    r.last_time = r.last_time.max(time);
                }
            }
            ExportLine::Checkpoint {
                entry_id,
                device,
                heads,
                ..
            } => listed_checkpoints.push((n, entry_id, device, heads)),
            ExportLine::End {
                changes,
                checkpoints,
            } => end = Some((changes, checkpoints)),
        }
    }
    if lines_seen == 0 {
        return Err(Error::invalid("file", "the file is empty"));
    }
    for (n, doc, hash, ds) in &deps {
        let have = &by_doc[doc];
        for d in ds {
            if !have.contains(d) {
                problem(
                    &mut r,
                    format!(
                        "line {n}: change {} of {doc} depends on {}, which is not in the file \
                         (removed)",
                        hex::encode(hash),
                        hex::encode(d)
                    ),
                );
            }
        }
    }
    for (id, (device, heads)) in &found_checkpoints {
        for (doc, hs) in heads {
            for h in hs {
                let known = hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .is_some_and(|b| by_doc.get(doc).is_some_and(|s| s.contains(&b)));
                if !known {
                    problem(
                        &mut r,
                        format!(
                            "checkpoint {id} by device {device} names change {h} of {doc}, \
                             which is not in the file (removed or altered)"
                        ),
                    );
                }
            }
        }
    }
    for (n, id, device, heads) in &listed_checkpoints {
        match found_checkpoints.get(id) {
            Some((d, h)) if d == device && h == heads => {}
            _ => problem(
                &mut r,
                format!("line {n}: checkpoint {id} does not match any signed checkpoint"),
            ),
        }
    }
    r.checkpoints = found_checkpoints.len() as u64;
    match end {
        None => problem(&mut r, "the end line is missing (truncated)".into()),
        Some((c, k)) => {
            let verified = r.changes;
            if c != verified || k != listed_checkpoints.len() as u64 {
                problem(
                    &mut r,
                    format!(
                        "the end line counts {c} changes and {k} checkpoints; the file holds \
                         {} verified changes and {} checkpoints",
                        verified,
                        listed_checkpoints.len()
                    ),
                );
            }
        }
    }
    r.documents = by_doc.len();
    r.signers = signers.len();
    Ok(r)
}
