//! Backups: one self-describing file holding everything needed to rebuild a shop on a new
//! device — every signed envelope this node stores and the document heads they make — and never
//! the device key.
//!
//! [`write()`] makes the file from one redb read transaction, so it is consistent while the node
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
//! `tillmesh backup`) is the plain file below [sealed] — encrypted as the relay's
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
//!
//! The code: writing (`writer`), reading and checking (`reader`), restoring (`restoring`); the
//! format's constants and types stay here.

mod reader;
mod restoring;
mod writer;

pub use reader::{inspect, sealed_kind, verify};
pub use restoring::{Progress, RestoreReport, restore};
pub use writer::{create_private, write, write_sealed};

use serde::{Deserialize, Serialize};

use crate::error::Error;
pub use crate::sealed::Unlock;
use crate::sealed::{self, RecipientKind, SealedHeader};

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
