//! The redb store: one file holds every envelope, each document's state and the projections.
//!
//! Reads open their own read transaction from any thread (redb is MVCC). Writes go through one
//! writer thread (`crate::replica`) that groups concurrent commands into one durable commit.

pub mod migrations;
pub mod tables;

use std::path::Path;
use std::sync::Arc;

use automerge::{AutoCommit, ChangeHash};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use tables::*;

/// Keys of the `meta` table.
pub mod meta {
    /// u64 LE: the last migration applied.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// UUID string of the shop this node belongs to.
    pub const SHOP_ID: &str = "shop_id";
    /// 32 bytes: hash of the shop's first `members` change.
    pub const GENESIS: &str = "genesis";
    /// i64 LE: the hybrid logical clock's last time.
    pub const HLC: &str = "hlc";
    /// postcard `LedgerCursor`: this device's current ledger document.
    pub const LEDGER_CURSOR: &str = "ledger_cursor";
    /// u64 LE: this device's last receipt number.
    pub const RECEIPT_COUNTER: &str = "receipt_counter";
    /// postcard `Vec<[u8; 32]>`: device keys admitted before protocol 2, pinned at the upgrade,
    /// at join (from the inviting device) or at restore (see `docs::members::Anchor`).
    pub const LEGACY_DEVICES: &str = "legacy_devices";
    /// Present while a migration's rebuild of what the layers above keep is due (see
    /// [`super::Rebuild`]); the key is this prefix and the rebuild's name.
    pub const REBUILD_PREFIX: &str = "rebuild:";
}

/// What a migration cannot do itself, because it belongs to a layer above the store: it
/// marks the store (in the migration's own transaction), and the replica does it when it opens
/// the store ([`crate::replica::Engine::new`]), then clears the mark in the same transaction as
/// the rebuild. A crash in between leaves the mark, and the next start does it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rebuild {
    /// Every projection, from the stored documents (migration 4 added tables to fill).
    Projections,
    /// The audit trail's secondary indexes, from its rows (migration 5).
    AuditIndexes,
    /// Pin the devices admitted before protocol 2, read from `members` (migration 6).
    LegacyDevices,
}

impl Rebuild {
    /// In the order they run.
    pub const ALL: [Rebuild; 3] = [
        Rebuild::Projections,
        Rebuild::AuditIndexes,
        Rebuild::LegacyDevices,
    ];

    fn key(self) -> String {
        let name = match self {
            Rebuild::Projections => "projections",
            Rebuild::AuditIndexes => "audit_indexes",
            Rebuild::LegacyDevices => "legacy_devices",
        };
        format!("{}{name}", meta::REBUILD_PREFIX)
    }

    /// Marks the rebuild as due, in a migration's transaction.
    pub fn mark(self, tx: &redb::WriteTransaction) -> Result<()> {
        tx.open_table(META)?
            .insert(self.key().as_str(), &[1u8][..])?;
        Ok(())
    }

    /// Clears the mark, in the rebuild's transaction.
    pub fn done(self, tx: &redb::WriteTransaction) -> Result<()> {
        tx.open_table(META)?.remove(self.key().as_str())?;
        Ok(())
    }
}

/// What the store knows about one document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocMeta {
    /// Current heads.
    pub heads: Vec<[u8; 32]>,
    /// Changes applied (also the next `DOC_CHANGES` sequence number).
    pub changes: u64,
    /// Number of the first chunk (chunks below it were compacted away).
    pub first_chunk: u64,
    /// Number the next chunk gets.
    pub next_chunk: u64,
}

impl DocMeta {
    /// Chunks to load the document from.
    pub fn chunk_count(&self) -> u64 {
        self.next_chunk - self.first_chunk
    }
}

/// The redb database behind a cloneable handle.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (creating if needed) the store file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        crate::private_fs::ensure_private_file(path)
            .map_err(|e| Error::store(format!("cannot create {}", path.display()), e))?;
        let db = Database::builder()
            .create(path)
            .map_err(|e| Error::store(format!("cannot open {}", path.display()), e))?;
        Self::init(db)
    }

    /// A store in memory (tests, demos).
    pub fn memory() -> Result<Store> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    /// A store on any redb backend (the sync simulator starts replicas from a copied image).
    pub fn with_backend(backend: impl redb::StorageBackend) -> Result<Store> {
        Self::init(Database::builder().create_with_backend(backend)?)
    }

    fn init(db: Database) -> Result<Store> {
        migrations::run(&db)?;
        Ok(Store { db: Arc::new(db) })
    }

    /// The database, for transactions.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// A read transaction.
    pub fn read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// The rebuilds migrations marked as due, in the order they run (one read; usually none).
    pub fn rebuilds_due(&self) -> Result<Vec<Rebuild>> {
        let rtx = self.read()?;
        let t = rtx.open_table(META)?;
        let mut due = Vec::new();
        for what in Rebuild::ALL {
            if t.get(what.key().as_str())?.is_some() {
                due.push(what);
            }
        }
        Ok(due)
    }

    /// A value from `meta`.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let rtx = self.read()?;
        let t = rtx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The document's metadata, if stored.
    pub fn doc_meta(&self, doc: &str) -> Result<Option<DocMeta>> {
        let rtx = self.read()?;
        read_doc_meta(&rtx.open_table(DOCS)?, doc)
    }

    /// Loads a document from its chunks.
    pub fn load_doc(&self, doc: &str) -> Result<Option<AutoCommit>> {
        let rtx = self.read()?;
        load_doc(&rtx.open_table(DOCS)?, &rtx.open_table(DOC_CHUNKS)?, doc)
    }

    /// Every stored document id with its metadata.
    pub fn docs(&self) -> Result<Vec<(String, DocMeta)>> {
        let rtx = self.read()?;
        let t = rtx.open_table(DOCS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), decode_meta(v.value())?));
        }
        Ok(out)
    }

    /// Number of stored envelopes.
    pub fn envelope_count(&self) -> Result<u64> {
        let rtx = self.read()?;
        Ok(rtx.open_table(ENVELOPES)?.len()?)
    }
}

/// The sync bucket of a document: `ledger/<YYYY-MM>` for ledger documents, else its id.
pub fn bucket_of(doc: &str) -> String {
    match doc.strip_prefix("ledger/") {
        Some(rest) if rest.len() >= 7 => format!("ledger/{}", &rest[..7]),
        _ => doc.to_string(),
    }
}

/// XORs `hash` into the digest stored at `key`.
pub fn xor_digest(
    t: &mut redb::Table<&'static str, &'static [u8; 32]>,
    key: &str,
    hash: &[u8; 32],
) -> Result<()> {
    let mut d = t.get(key)?.map(|v| *v.value()).unwrap_or([0; 32]);
    for (a, b) in d.iter_mut().zip(hash) {
        *a ^= b;
    }
    t.insert(key, &d)?;
    Ok(())
}

fn decode_meta(bytes: &[u8]) -> Result<DocMeta> {
    postcard::from_bytes(bytes).map_err(|e| Error::store("corrupt document metadata", e))
}

/// Reads a document's metadata from an open `DOCS` table.
pub fn read_doc_meta(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    doc: &str,
) -> Result<Option<DocMeta>> {
    t.get(doc)?.map(|v| decode_meta(v.value())).transpose()
}

/// Loads a document from open `DOCS` and `DOC_CHUNKS` tables.
pub fn load_doc(
    docs: &impl ReadableTable<&'static str, &'static [u8]>,
    chunks: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    doc: &str,
) -> Result<Option<AutoCommit>> {
    let Some(meta) = read_doc_meta(docs, doc)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    for row in chunks.range((doc, meta.first_chunk)..(doc, meta.next_chunk))? {
        bytes.extend_from_slice(row?.1.value());
    }
    let mut am =
        AutoCommit::load(&bytes).map_err(|e| Error::store("document {doc} does not load", e))?;
    let heads: Vec<ChangeHash> = meta.heads.iter().map(|h| ChangeHash(*h)).collect();
    let mut have = am.get_heads();
    have.sort();
    let mut want = heads;
    want.sort();
    if have != want {
        return Err(Error::damaged(format!("document {doc} is missing changes")));
    }
    Ok(Some(am))
}
