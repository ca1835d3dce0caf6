//! Daily checkpoints: each device's signed ledger entry of the heads that moved.

use std::collections::BTreeMap;

use redb::ReadableTable;
use uuid::Uuid;

use crate::domain::commands;
use crate::error::Result;
use crate::model::ledger::{EntryBody, LedgerEntry};
use crate::replica::Ctx;
use crate::store::read_doc_meta;
use crate::store::tables::*;

use super::internal;

/// `meta` key: the shop-local day of this device's last checkpoint.
const CHECKPOINT_DAY: &str = "audit_checkpoint_day";
/// `meta` key: postcard map document → heads at this device's last checkpoint.
const CHECKPOINT_HEADS: &str = "audit_checkpoint_heads";
/// Documents per checkpoint entry (a bigger set is split over several entries).
const DOCS_PER_CHECKPOINT: usize = 2_000;

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
    let now = commands::hlc_now(ctx)?;
    let day = commands::shop_day(&settings, now);
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
            time: commands::hlc_now(ctx)?,
            device: ctx.device_id().to_string(),
            person: None,
            body: EntryBody::Checkpoint {
                day: day.clone(),
                heads: chunk.iter().cloned().collect(),
            },
        };
        commands::append_entry(ctx, &key, &settings, &entry)?;
        ids.push(entry.id);
    }
    let bytes = postcard::to_allocvec(&current).map_err(internal)?;
    ctx.set_meta(CHECKPOINT_HEADS, &bytes)?;
    ctx.set_meta(CHECKPOINT_DAY, day.as_bytes())?;
    Ok(ids)
}
