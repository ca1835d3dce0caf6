//! Backups: one self-describing file holding everything needed to rebuild a shop on a new
//! device — every signed envelope this node stores and the document heads they make — and never
//! the device key.
//!
//! [`write`] makes the file from one redb read transaction, so it is consistent while the node
//! keeps selling (`GET /api/v1/backup`, `tillmesh backup --out FILE`). [`verify`] checks a file
//! offline (`tillmesh backup verify FILE`). [`restore`] rebuilds a data dir from it (`tillmesh
//! restore FILE --data-dir D`, node stopped): it verifies the whole file first — a corrupted or
//! truncated file is refused before anything is written — then imports every envelope through
//! the node's normal verify-and-apply path (so the projections are rebuilt by the same code
//! that built them), and checks that every document ends at the heads the backup names.
//!
//! A restored data dir gets a **new device key** (so a new device id, Automerge actor and, once
//! admitted, receipt prefix): the device the backup came from may still exist, and two devices
//! must never sign with one key or write one ledger. It therefore holds the shop's data but is not
//! a member until an owner or manager invites it again (`restore --invite`, or `tillmesh join`
//! afterwards). Rejoining duplicates nothing: envelopes are keyed by change hash and ledger
//! entries by UUID, so receiving again what the restored device already has is a no-op.
//!
//! ## Encryption: backups are the owners' secrets
//! A backup holds the `vault` (owners' and managers' person keys sealed under their
//! passwords, and the shop secret) and `members` (staff PIN hashes). So every backup this
//! build writes ([`write_sealed`]; `NodeHandle::write_backup`, behind `GET /api/v1/backup` and
//! `tillmesh backup`) is the plain file below [sealed](crate::sealed) — encrypted as the relay's
//! snapshots are, with the magic `tillmesh-seal\n` — to the shop's unrevoked owners and its
//! recovery key. A manager may make a backup (to hand to an owner) but cannot open it: their
//! key is not a recipient and their sealed key is not in the header. Opening one takes the
//! recovery key or an owner's password ([`Unlock`]); an owner's password works alone because
//! the owners' password-sealed keys travel in the header, so a leaked file allows offline
//! guessing of an owner's password at argon2id's cost per guess (and nothing else).
//!
//! - [`verify`] with a key decrypts and checks everything; [`inspect`] without one checks an
//!   encrypted file's layout and checksum (a cut or flipped byte shows) but cannot tell that
//!   the content is what the shop wrote, and says so.
//! - [`restore`] takes the key too; a plain file (format 1, as tillmesh wrote before backups
//!   were encrypted, or a decrypted snapshot) is still read, and the report says it was plain.
//!
//! ## The plain file inside (format 1)
//! ```text
//! "tillmesh-backup\n"     16 bytes
//! format                  u32 LE (1)
//! header                  u32 LE length + JSON BackupHeader: shop id and name, genesis, time,
//!                         source device, tillmesh version, and every section's record count
//!                         and byte length
//! section "documents"     records: postcard DocRecord (document id, heads, change count)
//! section "envelopes"     records: stored envelopes, document by document (members, settings,
//!                         vault, catalog, orders, then the ledger), each in applied order
//! section "held"          records: envelopes still waiting for dependencies or admissions;
//!                         written empty (what is held was never verified and must not travel),
//!                         still read from older files
//! "END!" + SHA-256        the hash of every byte before "END!"
//! ```
//! A record is a `u32 LE` length and that many bytes.

use std::io::{self, Read, Write};
use std::path::Path;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::docs::Envelope;
use crate::error::{Error, Result};
use crate::replica::Applied;
pub use crate::sealed::Unlock;
use crate::sealed::{self, Kind, Recipient, RecipientKind, SealedHeader};
use crate::store::tables::*;
use crate::store::{meta, read_doc_meta};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"tillmesh-backup\n";
/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = 1;
/// Marks the trailer: the SHA-256 of everything before it follows.
const TRAILER: &[u8; 4] = b"END!";
/// Largest header accepted.
const MAX_HEADER: usize = 1 << 20;
/// Largest record accepted (an envelope carries at most a 1 MiB change).
const MAX_RECORD: usize = 2 << 20;
/// Envelopes imported per write job while restoring.
const RESTORE_BATCH: usize = 512;

/// The sections of a backup, in file order.
pub const SECTIONS: [&str; 3] = ["documents", "envelopes", "held"];

/// What the header of a backup says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Format of the file ([`FORMAT`]).
    pub format: u32,
    /// The shop.
    pub shop_id: Option<uuid::Uuid>,
    /// Its name when the backup was made.
    pub shop_name: Option<String>,
    /// Hex hash of the shop's first `members` change (the shop's identity).
    pub genesis: String,
    /// When the backup was made (ms since the Unix epoch).
    pub created_at: i64,
    /// The device it was made on.
    pub device_id: String,
    /// The tillmesh version that made it.
    pub tillmesh_version: String,
    /// Every section, in file order.
    pub sections: Vec<SectionInfo>,
    /// The device keys (hex) the shop admitted before protocol 2, as the node pinned them
    /// (see `docs::members::Anchor`); absent in backups made before protocol 2, whose restore
    /// pins the signers of their `members` changes instead.
    #[serde(default)]
    pub legacy_devices: Option<Vec<String>>,
}

/// One section's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionInfo {
    /// `documents`, `envelopes` or `held`.
    pub name: String,
    /// Records in it.
    pub records: u64,
    /// Bytes, length prefixes included.
    pub bytes: u64,
}

impl BackupHeader {
    /// The records of a section (0 if absent).
    pub fn records(&self, name: &str) -> u64 {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.records)
            .unwrap_or(0)
    }
}

/// A document as the backup saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Document id.
    pub id: String,
    /// Its heads (sorted).
    pub heads: Vec<[u8; 32]>,
    /// Changes applied to it.
    pub changes: u64,
}

/// What [`verify`] found in a sound file.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The header.
    pub header: BackupHeader,
    /// Every document with its heads.
    pub documents: Vec<DocRecord>,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the content (as in the trailer).
    pub sha256: String,
    /// How the file was encrypted and who opened it; `None` for a plain (old) file.
    pub sealed: Option<SealedInfo>,
}

/// An encrypted backup that was opened.
#[derive(Debug, Clone)]
pub struct SealedInfo {
    /// Its header (shop, time, recipients).
    pub header: SealedHeader,
    /// Whose key opened it.
    pub opened_by: RecipientKind,
    /// Size of the encrypted file in bytes.
    pub bytes: u64,
}

/// What [`inspect`] found without a key.
#[derive(Debug, Clone)]
pub enum Inspection {
    /// A plain (old, unencrypted) backup: checked completely.
    Plain(Box<Verified>),
    /// An encrypted backup: its layout and checksum are sound; its content was not checked.
    Sealed(sealed::Intact),
}

/// What [`write_sealed`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The header of the backup inside.
    pub header: BackupHeader,
    /// Bytes of the encrypted file.
    pub bytes: u64,
    /// Keys it is encrypted to.
    pub recipients: usize,
}

/// Facts about the node a backup is made on.
#[derive(Debug, Clone)]
pub struct Source {
    /// The shop.
    pub shop_id: Option<uuid::Uuid>,
    /// Its name.
    pub shop_name: Option<String>,
    /// This device.
    pub device_id: String,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("backup", message)
}

fn corrupted(what: impl std::fmt::Display) -> Error {
    invalid(format!(
        "the backup file is corrupted ({what}); it was not used"
    ))
}

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

/// Reads a backup front to back, checking as it goes, and hands every record to `visit`
/// (section index into [`SECTIONS`], bytes). Returns once the trailer's checksum matched.
struct Scanner<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    /// The input failed (not ended): an encrypted file's chunk did not authenticate.
    read_failed: bool,
}

impl<R: Read> Scanner<R> {
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(invalid(format!(
                        "the backup file is truncated: it ends after {} bytes, inside {what}; \
                         it was not used",
                        self.bytes + got as u64
                    )));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_failed = true;
                    return Err(sealed::from_io(e, |e| {
                        invalid(format!("cannot read the backup file: {e}"))
                    }));
                }
            }
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn hashed(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.exact(buf, what)?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn record(&mut self, max: usize, what: &str) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.hashed(&mut len, what)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > max {
            return Err(corrupted(format!("{what} claims {len} bytes")));
        }
        let mut buf = vec![0u8; len];
        self.hashed(&mut buf, what)?;
        Ok(buf)
    }
}

fn scan(
    input: impl Read,
    mut visit: impl FnMut(&BackupHeader, usize, Vec<u8>) -> Result<()>,
) -> Result<(BackupHeader, u64, String)> {
    let mut s = Scanner {
        inner: io::BufReader::with_capacity(256 * 1024, input),
        hasher: Sha256::new(),
        bytes: 0,
        read_failed: false,
    };
    let mut magic = [0u8; 16];
    match s.exact(&mut magic, "the first bytes") {
        Ok(()) if &magic == MAGIC => {}
        // An encrypted file whose first chunk does not open: say so, not "not a backup".
        Err(e) if s.read_failed => return Err(e),
        _ => return Err(invalid("this is not a tillmesh backup file")),
    }
    s.hasher.update(magic);
    let mut format = [0u8; 4];
    s.hashed(&mut format, "the format number")?;
    let format = u32::from_le_bytes(format);
    if format > FORMAT {
        return Err(invalid(format!(
            "this backup was written by a newer tillmesh (format {format}); update tillmesh"
        )));
    }
    if format == 0 {
        return Err(corrupted("format 0"));
    }
    let header: BackupHeader = serde_json::from_slice(&s.record(MAX_HEADER, "the header")?)
        .map_err(|e| corrupted(format!("unreadable header: {e}")))?;
    for (i, name) in SECTIONS.iter().enumerate() {
        let info = header
            .sections
            .iter()
            .find(|x| x.name == *name)
            .ok_or_else(|| corrupted(format!("the header lists no {name} section")))?;
        let start = s.bytes;
        for n in 0..info.records {
            let what = format!("{name} record {} of {}", n + 1, info.records);
            let rec = s.record(MAX_RECORD, &what)?;
            visit(&header, i, rec)?;
        }
        if s.bytes - start != info.bytes {
            return Err(corrupted(format!(
                "the {name} section has {} bytes, its header says {}",
                s.bytes - start,
                info.bytes
            )));
        }
    }
    let digest = s.hasher.clone().finalize();
    let mut trailer = [0u8; 36];
    s.exact(&mut trailer, "the checksum at the end")?;
    if &trailer[..4] != TRAILER {
        return Err(corrupted("no checksum where the content should end"));
    }
    if trailer[4..] != digest[..] {
        return Err(corrupted(format!(
            "its checksum does not match: the file says {}, the content hashes to {}",
            hex::encode(&trailer[4..]),
            hex::encode(digest)
        )));
    }
    // Read to the very end: an encrypted file's last chunk and checksum are checked there.
    let mut extra = [0u8; 1];
    match s.inner.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(corrupted("bytes follow the checksum")),
        Err(e) => {
            return Err(sealed::from_io(e, |e| {
                invalid(format!("cannot read the backup file: {e}"))
            }));
        }
    }
    Ok((header, s.bytes, hex::encode(digest)))
}

/// A backup file opened for reading: plain, or encrypted and opened with a key.
type FileReader = io::Chain<io::Cursor<Vec<u8>>, io::BufReader<std::fs::File>>;

enum Opened {
    Plain(FileReader),
    Sealed(Box<sealed::Opened<FileReader>>),
}

/// Opens `path` and tells a plain backup from an encrypted one by its first bytes.
fn open(path: &Path) -> Result<(FileReader, Option<Kind>)> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    let mut r = io::BufReader::with_capacity(256 * 1024, file);
    let mut peek = Vec::with_capacity(sealed::MAGIC_LEN);
    (&mut r)
        .take(sealed::MAGIC_LEN as u64)
        .read_to_end(&mut peek)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let kind = Kind::from_magic(&peek);
    Ok((io::Cursor::new(peek).chain(r), kind))
}

/// Whether `path` is an encrypted file (and of which kind), by its first bytes.
pub fn sealed_kind(path: &Path) -> Result<Option<Kind>> {
    Ok(open(path)?.1)
}

/// Opens `path` for reading its backup: an encrypted file needs `unlock`.
fn open_with(path: &Path, unlock: Option<&Unlock>) -> Result<Opened> {
    let (r, kind) = open(path)?;
    let Some(kind) = kind else {
        return Ok(Opened::Plain(r));
    };
    let unlock = unlock.ok_or_else(|| {
        Error::Unauthorized(format!(
            "this {} is encrypted for the shop's owners and recovery key: give the recovery key \
             or an owner's password to open it",
            kind.noun()
        ))
    })?;
    Ok(Opened::Sealed(Box::new(sealed::open(
        r,
        unlock,
        Kind::Backup,
    )?)))
}

fn verify_records(input: impl Read) -> Result<Verified> {
    let mut documents = Vec::new();
    let mut n = 0u64;
    let (header, bytes, sha256) = scan(input, |_, section, rec| {
        n += 1;
        match section {
            0 => documents.push(
                postcard::from_bytes::<DocRecord>(&rec)
                    .map_err(|_| corrupted(format!("document record {n} does not decode")))?,
            ),
            _ => {
                Envelope::from_bytes(&rec)
                    .map_err(|_| corrupted(format!("record {n} is not an envelope")))?;
            }
        }
        Ok(())
    })?;
    Ok(Verified {
        header,
        documents,
        bytes,
        sha256,
        sealed: None,
    })
}

/// [`verify`], and the key that opened an encrypted file (so a second pass needs no argon2id).
fn verify_opened(
    path: &Path,
    unlock: Option<&Unlock>,
) -> Result<(Verified, Option<ed25519_dalek::SigningKey>)> {
    match open_with(path, unlock)? {
        Opened::Plain(r) => Ok((verify_records(r)?, None)),
        Opened::Sealed(mut o) => {
            let mut v = verify_records(&mut o.reader)?;
            if v.header.shop_id != Some(o.header.shop_id) {
                return Err(corrupted(
                    "the backup inside is of another shop than its envelope",
                ));
            }
            v.sealed = Some(SealedInfo {
                header: o.header,
                opened_by: o.opened_by,
                bytes: o.reader.bytes_read(),
            });
            Ok((v, Some(o.key)))
        }
    }
}

/// Checks a backup file offline: its structure, every record, and the checksum over the whole
/// content; an encrypted file is opened with `unlock` (the recovery key or an owner's
/// password) and every chunk authenticated. A damaged or truncated file gives an
/// [`Error::Invalid`] saying so; an encrypted file without a key, or with a key that is not a
/// recipient, an [`Error::Unauthorized`].
pub fn verify(path: &Path, unlock: Option<&Unlock>) -> Result<Verified> {
    Ok(verify_opened(path, unlock)?.0)
}

/// Checks a backup file without a key: a plain file completely; an encrypted one as far as
/// that is possible — its header, the layout of its chunks and its checksum (so a cut or a
/// flipped byte shows), not that its content is what the shop wrote (only a key tells).
pub fn inspect(path: &Path) -> Result<Inspection> {
    let (r, kind) = open(path)?;
    match kind {
        None => Ok(Inspection::Plain(Box::new(verify_records(r)?))),
        Some(_) => Ok(Inspection::Sealed(sealed::check(r, Kind::Backup)?)),
    }
}

/// How far a restore is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Envelopes imported so far.
    pub done: u64,
    /// Envelopes in the backup.
    pub total: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Documents restored (each at the heads the backup names).
    pub documents: u64,
    /// Envelopes applied.
    pub applied: u64,
    /// Envelopes still held (waiting for changes the backup did not have either).
    pub held: u64,
    /// The new device's id (not yet a member: it needs an invite).
    pub device_id: String,
    /// The shop.
    pub shop_id: Option<uuid::Uuid>,
    /// Its name.
    pub shop_name: Option<String>,
    /// Whose key opened the encrypted file; `None`: it was a plain (unencrypted, old) backup.
    pub opened_by: Option<RecipientKind>,
}

/// Rebuilds a data dir from a backup file; an encrypted one is opened with `unlock` (the
/// recovery key or an owner's password). `data_dir` must not exist or be empty; the file is
/// verified in full before anything is created, and on any failure what was created is removed.
/// The restored device has a new key and is not a member of the shop yet (see the module docs).
pub async fn restore(
    file: &Path,
    unlock: Option<&Unlock>,
    data_dir: &Path,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<RestoreReport> {
    let (verified, key) = {
        let file = file.to_path_buf();
        let unlock = unlock.cloned();
        tokio::task::spawn_blocking(move || verify_opened(&file, unlock.as_ref()))
            .await
            .map_err(|e| Error::Internal(format!("verify task failed: {e}")))??
    };
    let unlock = key.map(Unlock::Key);
    let existed = data_dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(data_dir).map_err(|e| {
            Error::invalid(
                "data_dir",
                format!("cannot read {}: {e}", data_dir.display()),
            )
        })?;
        if entries.next().is_some() {
            return Err(Error::invalid(
                "data_dir",
                format!(
                    "{} is not empty: restore only into a new or empty data dir",
                    data_dir.display()
                ),
            ));
        }
    }
    let outcome = restore_verified(file, unlock, data_dir, &verified, &mut progress).await;
    if outcome.is_err() {
        // Leave the data dir as it was: absent, or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(data_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(data_dir);
        }
    }
    outcome
}

async fn restore_verified(
    file: &Path,
    unlock: Option<Unlock>,
    data_dir: &Path,
    verified: &Verified,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<RestoreReport> {
    let genesis: [u8; 32] = hex::decode(&verified.header.genesis)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupted("the genesis in the header is not a hash"))?;
    let node = crate::Node::builder().data_dir(data_dir).start().await?;
    let h = node.handle();
    let result = import(
        &h,
        file,
        unlock,
        automerge::ChangeHash(genesis),
        verified,
        progress,
    )
    .await;
    drop(h);
    node.shutdown().await;
    result
}

/// The keys that signed a `members` change in a backup (one read of the file).
fn members_signers(file: &Path, unlock: Option<&Unlock>) -> Result<Vec<[u8; 32]>> {
    let input: Box<dyn Read> = match open_with(file, unlock)? {
        Opened::Plain(r) => Box::new(r),
        Opened::Sealed(o) => Box::new(o.reader),
    };
    let mut signers = std::collections::BTreeSet::new();
    scan(input, |_, section, rec| {
        if section != 0
            && let Ok(env) = Envelope::from_bytes(&rec)
            && env.doc == "members"
        {
            signers.insert(env.signer);
        }
        Ok(())
    })?;
    Ok(signers.into_iter().collect())
}

async fn import(
    h: &crate::NodeHandle,
    file: &Path,
    unlock: Option<Unlock>,
    genesis: automerge::ChangeHash,
    verified: &Verified,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<RestoreReport> {
    let legacy = match &verified.header.legacy_devices {
        Some(keys) => keys
            .iter()
            .map(|k| {
                hex::decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupted("a pinned device key in the header is not a key"))
            })
            .collect::<Result<Vec<[u8; 32]>>>()?,
        // Made before protocol 2: every device that signed a `members` change then was
        // admitted under protocol 1's rules.
        None => {
            let file = file.to_path_buf();
            let unlock = unlock.clone();
            tokio::task::spawn_blocking(move || members_signers(&file, unlock.as_ref()))
                .await
                .map_err(|e| Error::Internal(format!("the backup reader failed: {e}")))??
        }
    };
    h.adopt_shop(genesis, legacy).await?;
    let total = verified.header.records(SECTIONS[1]) + verified.header.records(SECTIONS[2]);
    // The file is read again (and its checksum and chunks checked again) on a blocking thread
    // that hands batches to the writer; nothing is kept in memory but a few batches, and no
    // plaintext of an encrypted file is written anywhere but into the store.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Envelope>>(4);
    let reader = {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let input: Box<dyn Read> = match open_with(&file, unlock.as_ref())? {
                Opened::Plain(r) => Box::new(r),
                Opened::Sealed(o) => Box::new(o.reader),
            };
            let mut batch = Vec::with_capacity(RESTORE_BATCH);
            scan(input, |_, section, rec| {
                if section == 0 {
                    return Ok(());
                }
                batch.push(
                    Envelope::from_bytes(&rec)
                        .map_err(|_| corrupted("a record is not an envelope"))?,
                );
                if batch.len() == RESTORE_BATCH {
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| Error::Internal("the restore stopped".into()))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch)
                    .map_err(|_| Error::Internal("the restore stopped".into()))?;
            }
            Ok(())
        })
    };
    let mut report = RestoreReport::default();
    let mut done = 0u64;
    let mut rejected = Vec::new();
    progress(Progress { done, total });
    while let Some(batch) = rx.recv().await {
        done += batch.len() as u64;
        for r in h.import_envelopes(None, batch).await? {
            match r {
                Ok(Applied::New(_)) => report.applied += 1,
                Ok(Applied::Duplicate(_)) | Ok(Applied::Held(..)) | Ok(Applied::Kept(..)) => {}
                Err(e) => rejected.push(e.to_string()),
            }
        }
        progress(Progress { done, total });
    }
    reader
        .await
        .map_err(|e| Error::Internal(format!("the backup reader failed: {e}")))??;
    if !rejected.is_empty() {
        return Err(invalid(format!(
            "{} changes in the backup were refused (first: {}); nothing was restored",
            rejected.len(),
            rejected[0]
        )));
    }
    let restored: std::collections::HashMap<String, Vec<String>> = h
        .stored_documents()?
        .into_iter()
        .map(|x| {
            let mut heads = x.heads;
            heads.sort();
            (x.id, heads)
        })
        .collect();
    for d in &verified.documents {
        let have = restored.get(&d.id).cloned().unwrap_or_default();
        let want: Vec<String> = d.heads.iter().map(hex::encode).collect();
        if have != want {
            return Err(Error::damaged(format!(
                "document {} did not come back as it was backed up (heads differ); nothing was \
                 restored",
                d.id
            )));
        }
    }
    let status = h.status()?;
    report.documents = verified.documents.len() as u64;
    report.held = h.held_count()?;
    report.device_id = h.device_id().to_string();
    report.shop_id = status.shop_id;
    report.shop_name = status.shop_name;
    report.opened_by = verified.sealed.as_ref().map(|s| s.opened_by);
    Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Random bytes, also behind the magic and a format number: an error, never a panic
        /// (nor an allocation beyond the record limits).
        #[test]
        fn random_plain_files_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                                          prefix in 0usize..3) {
            let mut input = Vec::new();
            if prefix >= 1 {
                input.extend_from_slice(MAGIC);
            }
            if prefix >= 2 {
                input.extend_from_slice(&FORMAT.to_le_bytes());
            }
            input.extend_from_slice(&bytes);
            prop_assert!(verify_records(input.as_slice()).is_err());
        }
    }
}
