//! Numbered migrations, each in its own write transaction. Migration `n` runs when the stored
//! `schema_version` is below `n`; a new store gets the current layout in one transaction; a
//! store newer than this build is refused.

use redb::{Database, ReadableTable};

use super::Rebuild;
use super::meta;
use super::tables::*;
use crate::error::{Error, Result};

type Migration = fn(&redb::WriteTransaction) -> Result<()>;

/// In order; the index + 1 is the version a migration brings the store to. 3: pending invites
/// (`create_tables` creates the tables a version adds).
/// 4: the books (orders, deliveries, shifts, tickets, refunds, FIFO cost) and the report
/// aggregates (`domain::reports`), projected from the documents already stored.
/// It also fills alerts, dismissals, product times, stock episodes and the audit index.
/// 5: the audit index by person and by kind, filled from the audit rows.
/// 7: held envelopes with their metadata and an index by what they wait for; the old `held-1`
/// is dropped (its envelopes were kept before their signature was checked; anti-entropy fetches
/// again whatever of it was real).
/// 8: the quarantine (sales of revoked tills, documents of kinds this build does not know).
const MIGRATIONS: &[Migration] = &[
    create_tables_v1,
    sync_digests_v2,
    create_tables,
    books_and_reports_v4,
    audit_indexes_v5,
    legacy_devices_v6,
    held_v7,
    create_tables,
];

/// 1: create every table, so readers never meet a missing one.
fn create_tables_v1(tx: &redb::WriteTransaction) -> Result<()> {
    create_tables(tx)
}

/// 2: per-document and per-bucket digests of stored change hashes, backfilled.
fn sync_digests_v2(tx: &redb::WriteTransaction) -> Result<()> {
    create_tables(tx)?;
    let changes = tx.open_table(DOC_CHANGES)?;
    let mut docs = tx.open_table(DOC_DIGESTS)?;
    let mut buckets = tx.open_table(BUCKET_DIGESTS)?;
    for row in changes.iter()? {
        let (k, v) = row?;
        let (doc, _) = k.value();
        crate::store::xor_digest(&mut docs, doc, v.value())?;
        crate::store::xor_digest(&mut buckets, &crate::store::bucket_of(doc), v.value())?;
    }
    Ok(())
}

/// 4: new projection tables, filled by a reindex when the replica opens the store.
fn books_and_reports_v4(tx: &redb::WriteTransaction) -> Result<()> {
    create_tables(tx)?;
    Rebuild::Projections.mark(tx)
}

/// 5: secondary audit indexes, filled from `AUDIT` when the replica opens the store.
fn audit_indexes_v5(tx: &redb::WriteTransaction) -> Result<()> {
    create_tables(tx)?;
    Rebuild::AuditIndexes.mark(tx)
}

/// 6: protocol 2 — pin the devices this store's shop admitted so far (under protocol 1's
/// secret-bearing admission records, which admit nobody new from now on), and drop the pending
/// invites of protocol 1 (their certificates carry no countersigner).
/// The pinning reads `members`, so the replica does it when it opens the store.
fn legacy_devices_v6(tx: &redb::WriteTransaction) -> Result<()> {
    create_tables(tx)?;
    tx.delete_table(INVITES_V1)?;
    Rebuild::LegacyDevices.mark(tx)
}

/// 7: drop `held-1`, create the new held tables.
fn held_v7(tx: &redb::WriteTransaction) -> Result<()> {
    const HELD_V1: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("held-1");
    tx.delete_table(HELD_V1)?;
    create_tables(tx)
}

/// Opens (creating) every table of the current layout.
pub fn create_tables(tx: &redb::WriteTransaction) -> Result<()> {
    tx.open_table(META)?;
    tx.open_table(ENVELOPES)?;
    tx.open_table(DOC_CHANGES)?;
    tx.open_table(DOC_CHUNKS)?;
    tx.open_table(DOCS)?;
    tx.open_table(HELD)?;
    tx.open_table(HELD_META)?;
    tx.open_multimap_table(HELD_WAITING)?;
    tx.open_table(HELD_EXPIRY)?;
    tx.open_table(DOC_DIGESTS)?;
    tx.open_table(QUARANTINE)?;
    tx.open_table(QUARANTINE_BY_SIGNER)?;
    tx.open_table(INVITES)?;
    tx.open_table(BUCKET_DIGESTS)?;
    tx.open_table(ENTRIES)?;
    tx.open_table(PRODUCTS)?;
    tx.open_multimap_table(SKUS)?;
    tx.open_table(STOCK)?;
    tx.open_table(MOVEMENTS)?;
    tx.open_table(MOVEMENTS_BY_TIME)?;
    tx.open_table(SALES)?;
    tx.open_table(SALES_BY_TIME)?;
    tx.open_table(VOIDS)?;
    tx.open_table(RETURNS)?;
    tx.open_table(DAILY)?;
    tx.open_table(RECEIPTS)?;
    tx.open_table(SUPPLIERS)?;
    tx.open_table(PURCHASE_ORDERS)?;
    tx.open_table(DELIVERIES)?;
    tx.open_multimap_table(PO_DELIVERIES)?;
    tx.open_table(SHIFTS)?;
    tx.open_table(SHIFTS_BY_TIME)?;
    tx.open_table(TICKETS)?;
    tx.open_table(REFUNDS)?;
    tx.open_table(REFUNDS_BY_TIME)?;
    tx.open_table(FIFO_DIRTY)?;
    tx.open_table(FIFO_STATE)?;
    tx.open_table(FIFO_COST)?;
    tx.open_table(PRODUCT_DAYS)?;
    tx.open_table(DAY_COSTS)?;
    tx.open_table(PERIODS)?;
    tx.open_table(REPORT_DAYS)?;
    tx.open_table(REPORT_ITEMS)?;
    tx.open_table(REPORT_ITEMS_MONTHS)?;
    tx.open_table(REPORT_TAX)?;
    tx.open_table(REPORT_STAFF)?;
    tx.open_table(REPORT_TILLS)?;
    tx.open_table(REPORT_PAYMENTS)?;
    tx.open_table(REPORT_MOVES)?;
    tx.open_table(ALERTS)?;
    tx.open_table(ALERTS_UNSENT)?;
    tx.open_table(ALERT_DISMISSALS)?;
    tx.open_table(PRODUCT_TIMES)?;
    tx.open_table(AUDIT)?;
    tx.open_table(AUDIT_BY_PERSON)?;
    tx.open_table(AUDIT_BY_KIND)?;
    tx.open_table(STOCK_EPISODES)?;
    Ok(())
}

/// Brings the store to the newest version.
pub fn run(db: &Database) -> Result<()> {
    let current = {
        let tx = db.begin_write()?;
        let v = {
            let t = tx.open_table(META)?;
            t.get(meta::SCHEMA_VERSION)?
                .map(|v| u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])))
                .unwrap_or(0)
        };
        tx.commit()?;
        v
    };
    if current > MIGRATIONS.len() as u64 {
        return Err(Error::UpdateNeeded(format!(
            "this data dir was written by a newer tillmesh (store version {current}); update tillmesh"
        )));
    }
    if current == 0 {
        // A new store: the current layout at once. Stepping through the migrations would mark
        // rebuilds of data it does not have, done (and logged) at every first start.
        let tx = db.begin_write()?;
        create_tables(&tx)?;
        tx.open_table(META)?.insert(
            meta::SCHEMA_VERSION,
            (MIGRATIONS.len() as u64).to_le_bytes().as_slice(),
        )?;
        tx.commit()?;
        return Ok(());
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = db.begin_write()?;
        migration(&tx)?;
        tx.open_table(META)?.insert(
            meta::SCHEMA_VERSION,
            ((i + 1) as u64).to_le_bytes().as_slice(),
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;

    /// A new store is at the newest version with every table and nothing to rebuild; a store
    /// written by a newer build is refused, as needing an update.
    #[test]
    fn a_new_store_needs_no_rebuild_and_a_newer_one_is_refused() {
        let store = crate::store::Store::memory().unwrap();
        assert_eq!(store.rebuilds_due().unwrap(), vec![]);
        let db = store.db();
        let tx = db.begin_read().unwrap();
        let version = tx
            .open_table(META)
            .unwrap()
            .get(meta::SCHEMA_VERSION)
            .unwrap()
            .map(|v| u64::from_le_bytes(v.value().try_into().unwrap()));
        assert_eq!(version, Some(MIGRATIONS.len() as u64));
        tx.open_table(STOCK_EPISODES)
            .expect("the newest tables exist");
        drop(tx);
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(
                meta::SCHEMA_VERSION,
                (MIGRATIONS.len() as u64 + 1).to_le_bytes().as_slice(),
            )
            .unwrap();
        tx.commit().unwrap();
        assert!(matches!(run(db), Err(Error::UpdateNeeded(_))));
    }
}
