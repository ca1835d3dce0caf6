//! Sales of a till revoked while it was switched off: kept, shown to owners, accepted by them.
//!
//! A till that an owner revokes while it is off keeps selling; when it comes back, its sales
//! are signed by a revoked key and are never applied as they are (`docs::trust::verify`). They
//! are not lost either: [`crate::docs::trust::revoked_sale`] recognises them — a verified
//! signature by a till of this shop, unrevoked at the `members` heads it named, revoked since,
//! writing sale entries into its own ledger — and the engine keeps them in quarantine
//! (`replica::Ctx::quarantine`, the `QUARANTINE` table, capped per device and in all). A
//! stranger's or another shop's envelopes never get there. They still count as refused: the
//! device stays out. Sales this node had applied before the revocation reached it go to
//! quarantine too when the revocation drops them. The mesh pulls once from a revoked till that
//! reconnects, before it tells the till it is revoked and disconnects it (`mesh::offer_members`),
//! so its unsynced sales arrive.
//!
//! Owners only (a manager could otherwise inject sales) list them ([`list`],
//! `GET /api/v1/revoked-sales`) and accept them ([`accept`], `POST /api/v1/revoked-sales/accept`):
//! each accepted sale is recorded anew — same entry id, receipt, time, lines, payments and till —
//! in this node's ledger, signed by the accepting owner's key, marked [`AcceptedSale`] (the
//! audit trail says "accepted from revoked device … by owner …"). Projections are idempotent by
//! entry id, so accepting twice, or on two nodes, counts each sale once; stock and the books
//! follow as for any sale. [`dismiss`] forgets them on this node only. The quarantine is local
//! to the node that received the envelopes and never goes into backups: what it holds is the
//! revoked till's word, which only an owner's acceptance turns into the shop's books.

use std::collections::{BTreeMap, HashSet};

use automerge::{AutoCommit, ROOT};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::{self, Access};
use super::commands::{self, person_key};
use crate::docs::Envelope;
use crate::docs::members::RevocationRecord;
use crate::docs::shop::ShopView;
use crate::error::{Error, Result};
use crate::model::ledger::{AcceptedSale, EntryBody, LedgerEntry};
use crate::model::*;
use crate::replica::{Ctx, QuarantineReason, Quarantined};
use crate::store::tables::ENTRIES;

/// A sale a revoked till made, as an owner reviews it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevokedSale {
    /// Entry id (kept when accepted).
    pub id: Uuid,
    /// Receipt number (kept when accepted).
    pub receipt: String,
    /// When the till recorded it (ms since the Unix epoch).
    pub time: i64,
    /// Who sold, if known.
    pub person: Option<Uuid>,
    /// Their name.
    pub person_name: Option<String>,
    /// Lines.
    pub lines: Vec<SaleLine>,
    /// Customer total (tax included).
    pub total: i64,
    /// Tax included.
    pub tax: i64,
    /// Payments.
    pub payments: Vec<Payment>,
    /// Change given.
    pub change_due: i64,
}

/// A revoked till's sales waiting for an owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevokedDeviceSales {
    /// Device id.
    pub device_id: String,
    /// Device name.
    pub device_name: Option<String>,
    /// When it was revoked (ms since the Unix epoch).
    pub revoked_at: Option<i64>,
    /// Who revoked it (person name, or `recovery`).
    pub revoked_by: Option<String>,
    /// How many sales.
    pub count: u64,
    /// Their totals, summed.
    pub total: i64,
    /// The sales, oldest first.
    pub sales: Vec<RevokedSale>,
}

/// Which revoked till's sales to accept or dismiss: the sales named, and every sale of the
/// device named.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SelectRevokedSales {
    /// Sale (entry) ids.
    #[serde(default)]
    pub sales: Vec<Uuid>,
    /// A device id: all its sales.
    #[serde(default)]
    pub device: Option<String>,
}

/// What accepting did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AcceptedRevokedSales {
    /// Sales recorded now.
    pub accepted: Vec<Sale>,
    /// Sales selected that were already recorded (accepted before, here or on another node).
    pub already_recorded: Vec<Uuid>,
}

/// The sale entries of a quarantined envelope of a revoked till.
fn sales_of(q: &Quarantined) -> Option<(String, Vec<LedgerEntry>)> {
    let QuarantineReason::RevokedSale { device } = &q.reason else {
        return None;
    };
    let env = Envelope::from_bytes(&q.envelope).ok()?;
    let change = env.decode_change().ok()?;
    let sales = crate::docs::am::root_puts(&change)
        .into_iter()
        .filter(|(k, _)| k.starts_with("entry:"))
        .filter_map(|(_, v)| match v {
            automerge::ScalarValue::Str(json) => serde_json::from_str::<LedgerEntry>(&json).ok(),
            _ => None,
        })
        // The entry must be the till's own: its ledger, its id.
        .filter(|e| matches!(e.body, EntryBody::Sale { .. }) && e.device == *device)
        .collect();
    Some((device.clone(), sales))
}

/// The revoked tills' sales in `quarantine` that are not recorded yet (`recorded`), per device,
/// with the revocation read from `members`.
pub fn list(
    quarantine: &[([u8; 32], Quarantined)],
    recorded: impl Fn(Uuid) -> Result<bool>,
    view: &ShopView,
    members: Option<&AutoCommit>,
) -> Result<Vec<RevokedDeviceSales>> {
    let mut by_device: BTreeMap<String, Vec<RevokedSale>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (_, q) in quarantine {
        let Some((device, entries)) = sales_of(q) else {
            continue;
        };
        for e in entries {
            if !seen.insert(e.id) || recorded(e.id)? {
                continue;
            }
            let EntryBody::Sale {
                receipt,
                lines,
                total,
                tax,
                payments,
                change_due,
                ..
            } = e.body
            else {
                continue;
            };
            by_device
                .entry(device.clone())
                .or_default()
                .push(RevokedSale {
                    id: e.id,
                    receipt,
                    time: e.time,
                    person: e.person,
                    person_name: e
                        .person
                        .and_then(|p| view.person(p))
                        .map(|p| p.person.name.clone()),
                    lines,
                    total,
                    tax,
                    payments,
                    change_due,
                });
        }
    }
    Ok(by_device
        .into_iter()
        .map(|(device_id, mut sales)| {
            sales.sort_by_key(|s| (s.time, s.id));
            let device = view.devices.iter().find(|d| d.id == device_id);
            let revocation: Option<RevocationRecord> = device.zip(members).and_then(|(d, m)| {
                crate::docs::am::string(m, &ROOT, &format!("revocation:{}", d.public_key), None)
                    .and_then(|j| serde_json::from_str(&j).ok())
            });
            RevokedDeviceSales {
                device_name: device.map(|d| d.name.clone()),
                revoked_at: revocation.as_ref().map(|r| r.time),
                revoked_by: revocation.map(|r| {
                    Uuid::parse_str(&r.by)
                        .ok()
                        .and_then(|p| view.person(p))
                        .map(|p| p.person.name.clone())
                        .unwrap_or(r.by)
                }),
                count: sales.len() as u64,
                total: sales.iter().map(|s| s.total).sum(),
                device_id,
                sales,
            }
        })
        .collect())
}

fn check_selection(sel: &SelectRevokedSales) -> Result<()> {
    if sel.sales.is_empty() && sel.device.is_none() {
        return Err(Error::invalid(
            "sales",
            "name the sales to take (their ids) or a device (all its sales)",
        ));
    }
    if sel.sales.len() > 10_000 {
        return Err(Error::invalid("sales", "at most 10000 sales at once"));
    }
    Ok(())
}

fn selected(sel: &SelectRevokedSales, device: &str, id: Uuid) -> bool {
    sel.device.as_deref() == Some(device) || sel.sales.contains(&id)
}

fn is_recorded(ctx: &Ctx<'_>, id: Uuid) -> Result<bool> {
    Ok(ctx.tx.open_table(ENTRIES)?.get(id.as_u128())?.is_some())
}

/// Accepts revoked tills' sales (owners only): each selected sale not yet recorded is recorded
/// anew in this node's ledger, signed by the owner's key, keeping its id, receipt, time, till
/// and seller; an envelope whose sales are all recorded leaves quarantine. Fails, changing
/// nothing, if nothing in quarantine matches.
pub fn accept(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    sel: SelectRevokedSales,
) -> Result<AcceptedRevokedSales> {
    access::require(by, Access::AcceptRevokedSales)?;
    check_selection(&sel)?;
    let key = person_key(by)?.clone();
    let shop = ctx.shop();
    let settings = shop.settings()?.clone();
    let now = commands::hlc_now(ctx)?;
    let mut accepted = Vec::new();
    let mut already = Vec::new();
    let mut matched = false;
    for (hash, q) in ctx.quarantine_all()? {
        let Some((device, entries)) = sales_of(&q) else {
            continue;
        };
        let mut all_recorded = true;
        for mut entry in entries {
            let recorded = is_recorded(ctx, entry.id)?;
            if !selected(&sel, &device, entry.id) {
                all_recorded &= recorded;
                continue;
            }
            matched = true;
            if recorded {
                already.push(entry.id);
                continue;
            }
            if let EntryBody::Sale { accepted: a, .. } = &mut entry.body {
                *a = Some(AcceptedSale {
                    from_device: device.clone(),
                    from_device_name: shop
                        .devices
                        .iter()
                        .find(|d| d.id == device)
                        .map(|d| d.name.clone())
                        .unwrap_or_default(),
                    by: by.person_id,
                    by_name: by.name.clone(),
                    at: now,
                });
            }
            commands::append_entry_on_its_day(ctx, &key, &settings, &entry)?;
            accepted.push(commands::read_sale(ctx.tx, entry.id)?);
        }
        if all_recorded {
            ctx.unquarantine(&hash)?;
        }
    }
    if !matched {
        return Err(Error::NotFound(
            "no sale of a revoked till matches (accepted or dismissed already?)".into(),
        ));
    }
    Ok(AcceptedRevokedSales {
        accepted,
        already_recorded: already,
    })
}

/// Forgets revoked tills' sales on this node (owners only): the envelopes whose sales are all
/// selected (or recorded) leave quarantine, unrecorded. Other nodes keep their copies. Returns
/// how many sales were dismissed.
pub fn dismiss(ctx: &mut Ctx<'_>, by: &Principal, sel: SelectRevokedSales) -> Result<u64> {
    access::require(by, Access::DismissRevokedSales)?;
    check_selection(&sel)?;
    let mut dismissed = 0;
    for (hash, q) in ctx.quarantine_all()? {
        let Some((device, entries)) = sales_of(&q) else {
            continue;
        };
        let mut n = 0;
        let mut all = true;
        for e in &entries {
            if selected(&sel, &device, e.id) {
                n += u64::from(!is_recorded(ctx, e.id)?);
            } else {
                all &= is_recorded(ctx, e.id)?;
            }
        }
        if n > 0 && all {
            ctx.unquarantine(&hash)?;
            dismissed += n;
        }
    }
    if dismissed == 0 {
        return Err(Error::NotFound(
            "no sale of a revoked till matches (accepted or dismissed already?)".into(),
        ));
    }
    Ok(dismissed)
}
