//! The audit index: one row per applied change, rebuilt from the envelopes, and its query.

use std::collections::{BTreeSet, HashMap};

use automerge::{Change, ChangeHash, ScalarValue};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::docs::trust::{Signer, Trust};
use crate::docs::{DocId, Envelope, am};
use crate::domain::alerts;
use crate::error::{Error, Result};
use crate::store::load_doc;
use crate::store::tables::*;

use super::internal;

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
                        .filter_map(|k| k.strip_prefix(alerts::DISMISSED_PREFIX))
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
