//! Rebuilding every projection from the stored documents and envelopes (`tillmesh reindex`,
//! a migration's [`Rebuild::Projections`](crate::store::Rebuild), a revocation's rebuild), and
//! [`Projections`]: the domain as the writer's [`Projector`], the one dispatch the apply path,
//! the rebuilds and the migrations go through.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::{ChangeHash, ROOT};
use redb::{ReadableTable, WriteTransaction};

use super::{alerts, audit, catalog, fifo, projection};
use crate::docs::members::Anchor;
use crate::docs::trust::Trust;
use crate::docs::{DocId, Envelope};
use crate::error::{Error, Result};
use crate::model::ledger::LedgerEntry;
use crate::replica::{Ctx, Projected, Projector, ReindexReport};
use crate::store::tables::*;
use crate::store::{Store, load_doc};

/// The domain's projections, alerts and audit trail, plugged into the writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Projections;

impl Projector for Projections {
    fn project(&self, ctx: &mut Ctx<'_>, c: &Projected<'_>) -> Result<()> {
        projection::project(ctx, c.doc, c.id, c.change, c.signer, c.before, c.after)
    }

    fn record(&self, ctx: &mut Ctx<'_>, c: &Projected<'_>) -> Result<()> {
        let first = audit::record(ctx.tx, c.doc, c.id, c.change, c.signer)?;
        alerts::after_apply(ctx, c.doc, first, c.local)
    }

    fn before_commit(&self, tx: &WriteTransaction, budget: Option<u64>) -> Result<bool> {
        fifo::flush(tx, budget)
    }

    fn reindex(&self, tx: &WriteTransaction) -> Result<ReindexReport> {
        reindex_in(tx)
    }

    fn reindex_audit(&self, tx: &WriteTransaction) -> Result<()> {
        audit::index_rows(tx).map(|_| ())
    }
}

/// Rebuilds every projection from the stored documents and envelopes, in one transaction.
pub fn reindex(store: &Store) -> Result<ReindexReport> {
    let tx = store.db().begin_write()?;
    let report = reindex_in(&tx)?;
    tx.commit()?;
    Ok(report)
}

/// [`reindex`] inside an open write transaction.
pub fn reindex_in(tx: &WriteTransaction) -> Result<ReindexReport> {
    tx.delete_table(ENTRIES)?;
    tx.delete_table(PRODUCTS)?;
    tx.delete_multimap_table(SKUS)?;
    tx.delete_table(STOCK)?;
    tx.delete_table(MOVEMENTS)?;
    tx.delete_table(MOVEMENTS_BY_TIME)?;
    tx.delete_table(SALES)?;
    tx.delete_table(SALES_BY_TIME)?;
    tx.delete_table(VOIDS)?;
    tx.delete_table(RETURNS)?;
    tx.delete_table(DAILY)?;
    tx.delete_table(RECEIPTS)?;
    tx.delete_table(SUPPLIERS)?;
    tx.delete_table(PURCHASE_ORDERS)?;
    tx.delete_table(DELIVERIES)?;
    tx.delete_multimap_table(PO_DELIVERIES)?;
    tx.delete_table(SHIFTS)?;
    tx.delete_table(SHIFTS_BY_TIME)?;
    tx.delete_table(TICKETS)?;
    tx.delete_table(REFUNDS)?;
    tx.delete_table(REFUNDS_BY_TIME)?;
    tx.delete_table(FIFO_DIRTY)?;
    tx.delete_table(FIFO_STATE)?;
    tx.delete_table(FIFO_COST)?;
    tx.delete_table(PRODUCT_DAYS)?;
    tx.delete_table(DAY_COSTS)?;
    tx.delete_table(PERIODS)?;
    super::reports::delete_tables(tx)?;
    tx.delete_table(ALERT_DISMISSALS)?;
    crate::store::migrations::create_tables(tx)?;
    let mut report = ReindexReport::default();
    let ids: Vec<String> = {
        let t = tx.open_table(DOCS)?;
        let mut v = Vec::new();
        for row in t.iter()? {
            v.push(row?.0.value().to_string());
        }
        v
    };
    let members = {
        let docs = tx.open_table(DOCS)?;
        let chunks = tx.open_table(DOC_CHUNKS)?;
        load_doc(&docs, &chunks, "members")?.unwrap_or_default()
    };
    let anchor = Anchor::in_tx(&tx.open_table(META)?)?;
    let mut trust: HashMap<Vec<ChangeHash>, Arc<Trust>> = HashMap::new();
    for id in ids {
        report.documents += 1;
        match DocId::parse(&id) {
            Ok(DocId::Catalog) => {
                let doc = {
                    let docs = tx.open_table(DOCS)?;
                    let chunks = tx.open_table(DOC_CHUNKS)?;
                    load_doc(&docs, &chunks, &id)?
                };
                if let Some(doc) = doc {
                    super::alerts::rebuild_dismissals(tx, &doc)?;
                    for key in crate::docs::am::keys(&doc, &ROOT, None) {
                        if let Some(p) = key
                            .strip_prefix("product:")
                            .and_then(|s| uuid::Uuid::parse_str(s).ok())
                            .and_then(|pid| catalog::read_product(&doc, pid))
                        {
                            projection::put_product(tx, &p)?;
                            report.products += 1;
                        }
                    }
                }
            }
            Ok(DocId::Settings) => {
                let doc = {
                    let docs = tx.open_table(DOCS)?;
                    let chunks = tx.open_table(DOC_CHUNKS)?;
                    load_doc(&docs, &chunks, &id)?
                };
                if let Some(doc) = doc {
                    let keys = super::profit::close_keys(&doc);
                    let closes = super::profit::read_closes(&doc, &keys);
                    super::profit::put_closes(tx, &closes)?;
                }
            }
            Ok(DocId::Orders) => {
                let doc = {
                    let docs = tx.open_table(DOCS)?;
                    let chunks = tx.open_table(DOC_CHUNKS)?;
                    load_doc(&docs, &chunks, &id)?
                };
                if let Some(doc) = doc {
                    let keys = super::orders::all_keys(&doc);
                    let rows = super::orders::read_changed(&doc, &keys);
                    super::orders::put_rows(tx, &rows)?;
                }
            }
            Ok(DocId::Ledger { day, .. }) => {
                let hashes: Vec<[u8; 32]> = {
                    let t = tx.open_table(DOC_CHANGES)?;
                    let mut v = Vec::new();
                    for row in t.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))? {
                        v.push(*row?.1.value());
                    }
                    v
                };
                for h in hashes {
                    let env = {
                        let t = tx.open_table(ENVELOPES)?;
                        let v = t.get(&h)?.ok_or_else(|| {
                            Error::damaged(format!("envelope {} is missing", hex::encode(h)))
                        })?;
                        Envelope::from_bytes(v.value())?
                    };
                    let change = env.decode_change()?;
                    let mut heads = env.members_heads();
                    heads.sort();
                    let t = trust
                        .entry(heads.clone())
                        .or_insert_with(|| Arc::new(Trust::read(&members, Some(&heads), &anchor)))
                        .clone();
                    let Some((signer, _)) = t.signer(&env.signer) else {
                        continue;
                    };
                    for (key, value) in crate::docs::am::root_puts(&change) {
                        if let (true, automerge::ScalarValue::Str(json)) =
                            (key.starts_with("entry:"), value)
                            && let Ok(entry) = serde_json::from_str::<LedgerEntry>(&json)
                        {
                            projection::project_entry(tx, &id, &day, &entry, signer)?;
                            if !matches!(
                                entry.body,
                                crate::model::ledger::EntryBody::Checkpoint { .. }
                            ) {
                                report.entries += 1;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    super::alerts::rebuild_episodes(tx)?;
    super::audit::rebuild(tx)?;
    super::fifo::flush(tx, None)?;
    Ok(report)
}
