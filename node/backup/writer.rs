//! Writing a backup: the plain file from one read transaction, sealed to the shop's owners and
//! recovery key, and a running node's way to write one.

use std::io::{self, Write};
use std::path::Path;

use redb::{ReadTransaction, ReadableTable};
use sha2::{Digest, Sha256};

use super::{
    BackupHeader, DocRecord, FORMAT, MAGIC, SECTIONS, SectionInfo, Source, TRAILER, Written,
};
use crate::error::{Error, Result};
use crate::sealed::{self, Kind, Recipient};
use crate::store::tables::*;
use crate::store::{meta, read_doc_meta};

fn doc_rank(id: &str) -> u8 {
    match id {
        "members" => 0,
        "settings" => 1,
        "vault" => 2,
        "catalog" => 3,
        "orders" => 4,
        _ => 5,
    }
}

/// Counts bytes and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(e: io::Error) -> Error {
    Error::Internal(format!("writing the backup failed: {e}"))
}

fn put_record(w: &mut impl Write, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| Error::Internal("record too large".into()))?;
    w.write_all(&len.to_le_bytes()).map_err(io_err)?;
    w.write_all(bytes).map_err(io_err)
}

/// Writes a backup of the store seen by `rtx` to `out`. `on_header` is called once the sizes
/// are known and before the first byte is written (the API answers errors until then).
pub fn write(
    rtx: &ReadTransaction,
    source: Source,
    out: impl Write,
    on_header: impl FnOnce(&BackupHeader),
) -> Result<BackupHeader> {
    let docs_t = rtx.open_table(DOCS)?;
    let changes_t = rtx.open_table(DOC_CHANGES)?;
    let envs_t = rtx.open_table(ENVELOPES)?;
    let genesis = rtx
        .open_table(META)?
        .get(meta::GENESIS)?
        .map(|v| hex::encode(v.value()))
        .ok_or_else(|| Error::NoShop("this node has no shop to back up".into()))?;
    let legacy_devices = crate::docs::members::Anchor::in_tx(&rtx.open_table(META)?)?
        .legacy_devices
        .iter()
        .map(hex::encode)
        .collect();

    // Pass 1: the documents and the size of every section.
    let mut ids: Vec<String> = Vec::new();
    for row in docs_t.iter()? {
        ids.push(row?.0.value().to_string());
    }
    ids.sort_by(|a, b| (doc_rank(a), a).cmp(&(doc_rank(b), b)));
    let mut doc_records = Vec::with_capacity(ids.len());
    let mut doc_bytes = 0u64;
    let (mut env_records, mut env_bytes) = (0u64, 0u64);
    for id in &ids {
        let meta = read_doc_meta(&docs_t, id)?
            .ok_or_else(|| Error::damaged(format!("document {id} vanished")))?;
        let mut heads = meta.heads.clone();
        heads.sort_unstable();
        let rec = postcard::to_allocvec(&DocRecord {
            id: id.clone(),
            heads,
            changes: meta.changes,
        })
        .expect("a document record serializes");
        doc_bytes += 4 + rec.len() as u64;
        doc_records.push(rec);
        for row in changes_t.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))? {
            let hash = *row?.1.value();
            let env = envs_t.get(&hash)?.ok_or_else(|| {
                Error::damaged(format!(
                    "envelope {} of {id} is missing from the store",
                    hex::encode(hash)
                ))
            })?;
            env_records += 1;
            env_bytes += 4 + env.value().len() as u64;
        }
    }
    // Held envelopes are left out: nothing unverified travels in a backup.
    let (held_records, held_bytes) = (0u64, 0u64);
    let header = BackupHeader {
        format: FORMAT,
        shop_id: source.shop_id,
        shop_name: source.shop_name,
        genesis,
        created_at: chrono::Utc::now().timestamp_millis(),
        device_id: source.device_id,
        tillmesh_version: env!("CARGO_PKG_VERSION").to_string(),
        legacy_devices: Some(legacy_devices),
        sections: vec![
            SectionInfo {
                name: SECTIONS[0].into(),
                records: doc_records.len() as u64,
                bytes: doc_bytes,
            },
            SectionInfo {
                name: SECTIONS[1].into(),
                records: env_records,
                bytes: env_bytes,
            },
            SectionInfo {
                name: SECTIONS[2].into(),
                records: held_records,
                bytes: held_bytes,
            },
        ],
    };
    on_header(&header);

    // Pass 2, in the same read transaction: the content.
    let mut w = Hashing {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    w.write_all(MAGIC).map_err(io_err)?;
    w.write_all(&FORMAT.to_le_bytes()).map_err(io_err)?;
    let json = serde_json::to_vec(&header).expect("a backup header serializes");
    put_record(&mut w, &json)?;
    for rec in &doc_records {
        put_record(&mut w, rec)?;
    }
    for id in &ids {
        for row in changes_t.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))? {
            let hash = *row?.1.value();
            let env = envs_t
                .get(&hash)?
                .ok_or_else(|| Error::damaged("an envelope vanished"))?;
            put_record(&mut w, env.value())?;
        }
    }
    let digest = w.hasher.finalize_reset();
    let mut out = w.inner;
    out.write_all(TRAILER).map_err(io_err)?;
    out.write_all(&digest).map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(header)
}

/// Writes a backup of the store seen by `rtx`, encrypted to `to` (see [`crate::sealed`]) as a
/// file of `kind` made at `created_at`. Fails before writing anything if the node has no shop
/// or there is no recipient.
#[allow(clippy::too_many_arguments)]
pub fn write_sealed(
    rtx: &ReadTransaction,
    source: Source,
    to: &[Recipient],
    kind: Kind,
    created_at: i64,
    out: impl Write,
    on_header: impl FnOnce(&BackupHeader),
) -> Result<Written> {
    let shop = source
        .shop_id
        .ok_or_else(|| Error::NoShop("this node has no shop to back up".into()))?;
    let mut enc = sealed::Encryptor::new(kind, out, shop, created_at, to)?;
    let header = write(rtx, source, &mut enc, on_header)?;
    let (_, bytes) = enc.finish()?;
    Ok(Written {
        header,
        bytes,
        recipients: to.len(),
    })
}

/// Creates (or truncates) a file only its owner may read: decrypted backups hold the vault.
pub fn create_private(path: &Path) -> Result<std::fs::File> {
    crate::private_fs::create_private(path)
        .map_err(|e| Error::store(format!("cannot create {}", path.display()), e))
}

/// Backups of a running node.
impl crate::NodeHandle {
    /// Writes a backup of this node (see [`crate::backup`]) for `by` (managers and owners) to
    /// `out`, from one read transaction, encrypted to the shop's owners and recovery key;
    /// `on_header` runs before the first byte of the backup inside is encrypted. Returns that
    /// backup's header.
    pub fn write_backup(
        &self,
        by: &crate::model::Principal,
        out: impl std::io::Write,
        on_header: impl FnOnce(&BackupHeader),
    ) -> Result<BackupHeader> {
        crate::domain::access::require(by, crate::domain::access::Access::Backup)?;
        let now = chrono::Utc::now().timestamp_millis();
        Ok(self
            .write_sealed(crate::sealed::Kind::Backup, now, out, on_header)?
            .header)
    }

    /// Writes a backup of this node as an encrypted file of `kind` (a backup or a relay's
    /// snapshot) made at `created_at`, to the shop's current owners and recovery key.
    /// The device's own path (a relay's snapshots, which no person asks for): only the
    /// owners' keys and the recovery key open what it writes; a person asks through
    /// [`Self::write_backup`].
    pub fn write_sealed(
        &self,
        kind: crate::sealed::Kind,
        created_at: i64,
        out: impl std::io::Write,
        on_header: impl FnOnce(&BackupHeader),
    ) -> Result<Written> {
        let v = self.view();
        let source = Source {
            shop_id: v.shop_id,
            shop_name: v.settings.as_ref().map(|s| s.shop_name.clone()),
            device_id: self.device_id().to_string(),
        };
        let to = v.backup_recipients();
        write_sealed(&self.read()?, source, &to, kind, created_at, out, on_header)
    }
}
