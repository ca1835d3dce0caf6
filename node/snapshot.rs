//! Scheduled, encrypted snapshots of the shops a relay serves (DESIGN §6).
//!
//! A snapshot is an ordinary [backup](crate::backup) of one shop's replica — one read
//! transaction, every document and envelope — encrypted so that a leaked file reveals nothing
//! but its size, the shop id and when it was taken. It is readable by the shop's **owners**
//! (their person keys, the `person:<id>` entries of `members` with role owner) and by the
//! shop's **recovery key** (the `recovery` entry of `members`, printed once by `init`). Owners
//! added later are recipients of later snapshots; a revoked owner is not a recipient of any
//! later one.
//!
//! - **Schedule** ([`Snapshots::tick`], run by the relay every `--snapshot-every`, 1 h by
//!   default): a shop gets a snapshot only if it changed since its last one (the set digests of
//!   its stored changes and the number of held envelopes differ — see [`state_fingerprint`]).
//!   The relay remembers the last snapshot per shop in `shops/<id>/snapshot-state.json`.
//! - **Names**: `<shop id>/<UTC time, ISO 8601 basic, ms>.tmsnap`, e.g.
//!   `6f1c…/20250301T140000.000Z.tmsnap`, in a local directory (default
//!   `DATA_DIR/snapshots`) or under an S3-compatible URL (`s3://bucket/prefix`), both through
//!   the `object_store` crate, so one code path writes, lists and prunes them.
//! - **Retention** ([`retained`]): after each new snapshot, the newest snapshot of each of the
//!   last `keep_hourly` (24) hours that have one, and of each of the last `keep_daily` (31) UTC
//!   days that have one, are kept; the rest are deleted. The newest snapshot is always kept, and
//!   a shop that stops changing keeps its last ones.
//! - **Never blocks sync**: the backup is written and encrypted on a blocking thread and
//!   streamed to the store by its own task.
//!
//! ## The file (format 1)
//! ```text
//! "tillmesh-snap\n"       14 bytes
//! format                  u32 LE (1)
//! header                  u32 LE length + JSON SnapshotHeader: shop id, time, chunk size,
//!                         nonce prefix, recipients, owners' password-sealed keys
//! chunks                  the backup file encrypted with XChaCha20-Poly1305 under a random
//!                         32-byte file key, in chunks of `chunk_size` (64 KiB) plaintext bytes,
//!                         each followed by its 16-byte tag; the last chunk is shorter (maybe
//!                         empty)
//! ```
//! - Chunk `i`'s nonce is `nonce_prefix (15 bytes) ‖ i (u64 BE) ‖ last (1 byte: 1 for the last
//!   chunk, else 0)`, so reordered, dropped or duplicated chunks and a file cut at a chunk
//!   boundary fail to authenticate. Every chunk's associated data is the SHA-256 of the bytes
//!   before the first chunk (magic, format, header), so a changed header is detected too.
//! - **Recipients**: an ed25519 public key `A` becomes the X25519 key `A.to_montgomery()`. Per
//!   recipient a fresh ephemeral X25519 key `e` is made; `s = X25519(e, A)`, the wrapping key is
//!   `HKDF-SHA256(salt = E ‖ A_x25519, ikm = s, info = "tillmesh-snapshot-1 file key")` and the
//!   header holds `E` and the file key sealed with XChaCha20-Poly1305 under it (zero nonce: the
//!   wrapping key is used once). A recipient is listed by the fingerprint of its ed25519 public
//!   key (first 8 bytes of its SHA-256, hex) and its kind (`owner` or `recovery`); the secret
//!   side uses `SigningKey::to_scalar_bytes()`.
//! - **Owners' passwords**: an owner's person key is kept in the `vault` sealed under their
//!   password (argon2id 64 MiB, 3 passes; passwords of at least 10 characters), and the vault is
//!   inside the snapshot. So that an owner can open a snapshot with their password alone, the
//!   header also carries each owner recipient's sealed key exactly as the vault holds it. This
//!   is the one thing a leaked snapshot offers an attacker: an offline guess of an owner's
//!   password at argon2id's cost per guess. The recovery key opens every snapshot without it.
//!
//! [`decrypt`] / [`decrypt_file`] (`tillmesh snapshot decrypt FILE --out BACKUP`) turn a
//! snapshot back into the backup file, which `tillmesh backup verify` and `tillmesh restore`
//! take as usual; a wrong key, a flipped byte or a truncated file is an error, and
//! [`decrypt_file`] writes to `BACKUP.partial` and names it `BACKUP` only once it verifies.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::shop::ShopView;
use crate::error::{Error, Result};
use crate::identity::{self, SealedKey};
use crate::node::NodeHandle;

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 14] = b"tillmesh-snap\n";
/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = 1;
/// Plaintext bytes per encrypted chunk.
pub const CHUNK: usize = 64 * 1024;
/// Snapshot file name extension.
pub const EXTENSION: &str = "tmsnap";
/// The per-shop state file inside a replica's data dir.
pub const STATE_FILE: &str = "snapshot-state.json";
/// Largest header accepted.
const MAX_HEADER: usize = 1 << 20;
/// AEAD tag length.
const TAG: usize = 16;
/// HKDF info of the key that wraps a file key.
const WRAP_INFO: &[u8] = b"tillmesh-snapshot-1 file key";
/// Time format of snapshot names (ISO 8601 basic, UTC, milliseconds).
const NAME_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("snapshot", message)
}

fn corrupted(what: impl std::fmt::Display) -> Error {
    invalid(format!(
        "the snapshot is corrupted or truncated ({what}); nothing was written"
    ))
}

// ----------------------------------------------------------------------------------------
// Recipients

/// Whose key a recipient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    /// An owner's person key.
    Owner,
    /// The shop's recovery key.
    Recovery,
}

/// One key a snapshot is encrypted to.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// Owner or recovery key.
    pub kind: RecipientKind,
    /// The ed25519 public key.
    pub public_key: VerifyingKey,
    /// An owner's key sealed under their password, as the vault holds it.
    pub sealed: Option<SealedKey>,
}

/// The fingerprint a recipient is listed by: the first 8 bytes of the SHA-256 of its ed25519
/// public key, hex.
pub fn fingerprint(public_key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public_key.as_bytes())[..8])
}

fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The recipients of a shop's next snapshot: every unrevoked owner with a person key (with
/// their sealed key from the vault) and the recovery key.
pub fn recipients(view: &ShopView) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for p in &view.people {
        let person = &p.person;
        if person.revoked || person.role != crate::domain::model::Role::Owner {
            continue;
        }
        let Some(pk) = person.public_key.as_deref().and_then(parse_public_key) else {
            continue;
        };
        let sealed = view
            .vault
            .get(&person.id)
            .filter(|s| s.public_key == hex::encode(pk.as_bytes()))
            .cloned();
        out.push(Recipient {
            kind: RecipientKind::Owner,
            public_key: pk,
            sealed,
        });
    }
    if let Some(pk) = view.recovery_public.as_deref().and_then(parse_public_key) {
        out.push(Recipient {
            kind: RecipientKind::Recovery,
            public_key: pk,
            sealed: None,
        });
    }
    out.dedup_by(|a, b| a.public_key == b.public_key);
    out
}

/// A recipient as the header lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStanza {
    /// `owner` or `recovery`.
    pub kind: RecipientKind,
    /// [`fingerprint`] of the recipient's ed25519 public key.
    pub fingerprint: String,
    /// The ephemeral X25519 public key (hex).
    pub ephemeral: String,
    /// The file key sealed under the wrapping key (hex, 48 bytes).
    pub wrapped_key: String,
}

/// What a snapshot's header says (in the clear, authenticated by every chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// [`FORMAT`].
    pub format: u32,
    /// The shop.
    pub shop_id: Uuid,
    /// When the snapshot was taken (ms since the Unix epoch).
    pub created_at: i64,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The first 15 bytes of every chunk nonce (hex).
    pub nonce_prefix: String,
    /// Who can open it.
    pub recipients: Vec<RecipientStanza>,
    /// Owner recipients' person keys sealed under their passwords (copied from the vault).
    pub owner_keys: Vec<SealedKey>,
}

fn wrapping_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt[..]), shared);
    let mut okm = [0u8; 32];
    hk.expand(WRAP_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

fn wrap_file_key(file_key: &[u8; 32], to: &Recipient) -> Result<RecipientStanza> {
    let their = to.public_key.to_montgomery().to_bytes();
    let secret = identity::random_bytes::<32>();
    let ephemeral = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    let shared = x25519_dalek::x25519(secret, their);
    if shared == [0u8; 32] {
        return Err(Error::Internal(format!(
            "recipient {} is not a usable key",
            fingerprint(&to.public_key)
        )));
    }
    let k = wrapping_key(&shared, &ephemeral, &their);
    let wrapped = XChaCha20Poly1305::new(&k.into())
        .encrypt(&XNonce::default(), file_key.as_slice())
        .map_err(|_| Error::Internal("wrapping a snapshot key failed".into()))?;
    Ok(RecipientStanza {
        kind: to.kind,
        fingerprint: fingerprint(&to.public_key),
        ephemeral: hex::encode(ephemeral),
        wrapped_key: hex::encode(wrapped),
    })
}

fn unwrap_file_key(stanza: &RecipientStanza, key: &SigningKey) -> Result<[u8; 32]> {
    let bad = || corrupted("a recipient entry is malformed");
    let ephemeral: [u8; 32] = hex::decode(&stanza.ephemeral)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let wrapped = hex::decode(&stanza.wrapped_key).map_err(|_| bad())?;
    let mine = key.verifying_key().to_montgomery().to_bytes();
    let shared = x25519_dalek::x25519(key.to_scalar_bytes(), ephemeral);
    let k = wrapping_key(&shared, &ephemeral, &mine);
    let opened = XChaCha20Poly1305::new(&k.into())
        .decrypt(&XNonce::default(), wrapped.as_slice())
        .map_err(|_| corrupted("the file key for this recipient does not open"))?;
    opened.try_into().map_err(|_| bad())
}

// ----------------------------------------------------------------------------------------
// Encryption

fn chunk_nonce(prefix: &[u8; 15], counter: u64, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..15].copy_from_slice(prefix);
    n[15..23].copy_from_slice(&counter.to_be_bytes());
    n[23] = u8::from(last);
    XNonce::from(n)
}

/// The bytes before the first chunk, and their SHA-256 (every chunk's associated data).
fn preamble(header: &SnapshotHeader) -> (Vec<u8>, [u8; 32]) {
    let json = serde_json::to_vec(header).expect("a snapshot header serializes");
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let aad: [u8; 32] = Sha256::digest(&out).into();
    (out, aad)
}

/// Encrypts what is written to it into a snapshot file on `out`; [`finish`](Self::finish)
/// writes the last chunk (a snapshot without it does not decrypt).
pub struct Encryptor<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    aad: [u8; 32],
    prefix: [u8; 15],
    counter: u64,
    buf: Vec<u8>,
    written: u64,
}

impl<W: Write> Encryptor<W> {
    /// Writes the header for `recipients` and returns the encryptor. Fails if there is no
    /// recipient (the snapshot could never be opened).
    pub fn new(
        mut out: W,
        shop_id: Uuid,
        created_at: i64,
        recipients: &[Recipient],
    ) -> Result<Encryptor<W>> {
        if recipients.is_empty() {
            return Err(Error::invalid(
                "recipients",
                "the shop has neither an owner key nor a recovery key to encrypt a snapshot to",
            ));
        }
        let file_key = identity::random_bytes::<32>();
        let prefix = identity::random_bytes::<15>();
        let header = SnapshotHeader {
            format: FORMAT,
            shop_id,
            created_at,
            chunk_size: CHUNK as u32,
            nonce_prefix: hex::encode(prefix),
            recipients: recipients
                .iter()
                .map(|r| wrap_file_key(&file_key, r))
                .collect::<Result<_>>()?,
            owner_keys: recipients.iter().filter_map(|r| r.sealed.clone()).collect(),
        };
        let (pre, aad) = preamble(&header);
        out.write_all(&pre).map_err(write_err)?;
        Ok(Encryptor {
            out,
            cipher: XChaCha20Poly1305::new(&file_key.into()),
            aad,
            prefix,
            counter: 0,
            buf: Vec::with_capacity(2 * CHUNK),
            written: pre.len() as u64,
        })
    }

    fn seal(&mut self, len: usize, last: bool) -> io::Result<()> {
        let nonce = chunk_nonce(&self.prefix, self.counter, last);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &self.buf[..len],
                    aad: &self.aad,
                },
            )
            .map_err(|_| io::Error::other("encrypting a snapshot chunk failed"))?;
        self.out.write_all(&ct)?;
        self.written += ct.len() as u64;
        self.counter += 1;
        self.buf.drain(..len);
        Ok(())
    }

    /// Encrypts the rest as the last chunk; returns the sink and the bytes written.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let len = self.buf.len();
        self.seal(len, true).map_err(write_err)?;
        self.out.flush().map_err(write_err)?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        // A full chunk is sealed only once more follows: the last chunk must carry the flag.
        while self.buf.len() > CHUNK {
            self.seal(CHUNK, false)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_err(e: io::Error) -> Error {
    Error::Internal(format!("writing the snapshot failed: {e}"))
}

// ----------------------------------------------------------------------------------------
// Decryption

/// A key that may open a snapshot.
#[derive(Clone)]
pub enum Unlock {
    /// The recovery key or an owner's person key.
    Key(SigningKey),
    /// An owner's password: opens their sealed key in the header.
    Password(String),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Key(k) => write!(f, "Unlock::Key({})", fingerprint(&k.verifying_key())),
            Unlock::Password(_) => write!(f, "Unlock::Password(…)"),
        }
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupted(format!("it ends inside the {what}")),
        _ => invalid(format!("cannot read the snapshot: {e}")),
    })
}

/// Reads a snapshot's header (no key needed).
pub fn read_header(r: &mut impl Read) -> Result<SnapshotHeader> {
    Ok(read_preamble(r)?.0)
}

fn read_preamble(r: &mut impl Read) -> Result<(SnapshotHeader, [u8; 32])> {
    let mut magic = [0u8; 14];
    read_exact_or(r, &mut magic, "file signature")?;
    if &magic != MAGIC {
        return Err(invalid(
            "this is not a tillmesh snapshot (no tillmesh-snap signature)",
        ));
    }
    let mut word = [0u8; 4];
    read_exact_or(r, &mut word, "header")?;
    let format = u32::from_le_bytes(word);
    if format != FORMAT {
        return Err(invalid(format!(
            "snapshot format {format} is not known to this tillmesh (it reads format {FORMAT})"
        )));
    }
    read_exact_or(r, &mut word, "header")?;
    let len = u32::from_le_bytes(word) as usize;
    if len > MAX_HEADER {
        return Err(corrupted("the header length is implausible"));
    }
    let mut json = vec![0u8; len];
    read_exact_or(r, &mut json, "header")?;
    let header: SnapshotHeader =
        serde_json::from_slice(&json).map_err(|e| corrupted(format!("bad header: {e}")))?;
    if header.format != FORMAT || header.chunk_size == 0 || header.chunk_size > 16 << 20 {
        return Err(corrupted("the header's format or chunk size is wrong"));
    }
    let mut pre = Vec::with_capacity(MAGIC.len() + 8 + len);
    pre.extend_from_slice(MAGIC);
    pre.extend_from_slice(&format.to_le_bytes());
    pre.extend_from_slice(&(len as u32).to_le_bytes());
    pre.extend_from_slice(&json);
    Ok((header, Sha256::digest(&pre).into()))
}

/// The signing key `unlock` stands for, if it is a recipient of `header` (a password is tried
/// on every owner's sealed key in the header).
fn key_for(header: &SnapshotHeader, unlock: &Unlock) -> Result<SigningKey> {
    match unlock {
        Unlock::Key(k) => Ok(k.clone()),
        Unlock::Password(password) => {
            for sealed in &header.owner_keys {
                if let Some(k) = identity::unseal_key(sealed, password)? {
                    return Ok(k);
                }
            }
            Err(Error::Unauthorized(if header.owner_keys.is_empty() {
                "this snapshot carries no owner's password-sealed key: use the recovery key".into()
            } else {
                "the password opens none of the owners' keys in this snapshot".into()
            }))
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> Result<()> {
    buf.clear();
    r.take(n as u64)
        .read_to_end(buf)
        .map_err(|e| invalid(format!("cannot read the snapshot: {e}")))?;
    Ok(())
}

/// Decrypts a snapshot from `input` into `out` (the backup file). Fails — having written
/// only what authenticated so far — if `unlock` is not a recipient or anything was changed,
/// reordered or cut off; [`decrypt_file`] makes sure nothing partial is left behind.
pub fn decrypt(
    mut input: impl Read,
    unlock: &Unlock,
    mut out: impl Write,
) -> Result<SnapshotHeader> {
    let (header, aad) = read_preamble(&mut input)?;
    let key = key_for(&header, unlock)?;
    let fp = fingerprint(&key.verifying_key());
    let stanza = header
        .recipients
        .iter()
        .find(|s| s.fingerprint == fp)
        .ok_or_else(|| {
            Error::Unauthorized(format!(
                "this key ({fp}) is not one of the snapshot's recipients ({})",
                header
                    .recipients
                    .iter()
                    .map(|s| format!("{:?} {}", s.kind, s.fingerprint).to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let file_key = unwrap_file_key(stanza, &key)?;
    let prefix: [u8; 15] = hex::decode(&header.nonce_prefix)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupted("bad nonce prefix"))?;
    let cipher = XChaCha20Poly1305::new(&file_key.into());
    let sealed_len = header.chunk_size as usize + TAG;
    let (mut cur, mut next) = (
        Vec::with_capacity(sealed_len),
        Vec::with_capacity(sealed_len),
    );
    read_up_to(&mut input, &mut cur, sealed_len)?;
    let mut counter = 0u64;
    loop {
        let last = if cur.len() < sealed_len {
            true
        } else {
            read_up_to(&mut input, &mut next, sealed_len)?;
            next.is_empty()
        };
        if cur.len() < TAG {
            return Err(corrupted(format!("chunk {counter} is cut short")));
        }
        let plain = cipher
            .decrypt(
                &chunk_nonce(&prefix, counter, last),
                Payload {
                    msg: &cur,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupted(format!("chunk {counter} does not authenticate")))?;
        out.write_all(&plain)
            .map_err(|e| Error::Store(format!("cannot write the backup: {e}")))?;
        if last {
            break;
        }
        counter += 1;
        std::mem::swap(&mut cur, &mut next);
    }
    out.flush()
        .map_err(|e| Error::Store(format!("cannot write the backup: {e}")))?;
    Ok(header)
}

/// What [`decrypt_file`] made.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// The backup file it held, verified.
    pub backup: crate::backup::Verified,
}

/// Decrypts the snapshot `input` into the backup file `out` (which must not exist): written to
/// `out.partial`, checked with [`crate::backup::verify`], and only then renamed to `out`. On
/// any error nothing is left at either name.
pub fn decrypt_file(input: &Path, unlock: &Unlock, out: &Path) -> Result<Decrypted> {
    if out.exists() {
        return Err(Error::invalid(
            "out",
            format!("{} already exists: choose a new file name", out.display()),
        ));
    }
    let f = std::fs::File::open(input)
        .map_err(|e| invalid(format!("cannot open {}: {e}", input.display())))?;
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = (|| {
        let w = crate::private_fs::create_private(&partial)
            .map_err(|e| Error::Store(format!("cannot create {}: {e}", partial.display())))?;
        let mut w = io::BufWriter::new(w);
        let header = decrypt(io::BufReader::new(f), unlock, &mut w)?;
        let w = w
            .into_inner()
            .map_err(|e| Error::Store(format!("cannot write {}: {e}", partial.display())))?;
        w.sync_all()
            .map_err(|e| Error::Store(format!("cannot write {}: {e}", partial.display())))?;
        let backup = crate::backup::verify(&partial)?;
        if backup.header.shop_id != Some(header.shop_id) {
            return Err(corrupted("the backup inside is of another shop"));
        }
        std::fs::rename(&partial, out).map_err(|e| {
            Error::Store(format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                out.display()
            ))
        })?;
        Ok(Decrypted { header, backup })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

// ----------------------------------------------------------------------------------------
// Retention

/// The snapshots retention keeps, of those taken at `times` (ms since the Unix epoch): the
/// newest of each of the last `keep_hourly` UTC hours that have a snapshot, the newest of each
/// of the last `keep_daily` UTC days that have one, and always the newest overall. Depends on
/// nothing but its input, so every run over the same snapshots deletes the same ones.
pub fn retained(times: &[i64], keep_hourly: u32, keep_daily: u32) -> BTreeSet<i64> {
    let mut sorted: Vec<i64> = times.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    let mut keep = BTreeSet::new();
    if let Some(newest) = sorted.first() {
        keep.insert(*newest);
    }
    for (period, count) in [(3_600_000i64, keep_hourly), (86_400_000i64, keep_daily)] {
        let mut seen = BTreeSet::new();
        for t in &sorted {
            let bucket = t.div_euclid(period);
            if seen.contains(&bucket) {
                continue;
            }
            if seen.len() as u64 >= u64::from(count) {
                break;
            }
            seen.insert(bucket);
            keep.insert(*t);
        }
    }
    keep
}

// ----------------------------------------------------------------------------------------
// Names, durations, change detection

/// A snapshot's object name: `<shop id>/<UTC time>.tmsnap`.
pub fn object_name(shop: Uuid, created_at: i64) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(created_at)
        .unwrap_or_default()
        .format(NAME_TIME);
    format!("{shop}/{t}.{EXTENSION}")
}

/// The shop and time an object name stands for (`None`: not a snapshot name).
pub fn parse_object_name(name: &str) -> Option<(Uuid, i64)> {
    let mut parts = name.rsplit('/');
    let file = parts.next()?;
    let shop = Uuid::parse_str(parts.next()?).ok()?;
    let stem = file.strip_suffix(&format!(".{EXTENSION}"))?;
    let t = chrono::NaiveDateTime::parse_from_str(stem, NAME_TIME).ok()?;
    Some((shop, t.and_utc().timestamp_millis()))
}

/// Parses a humane duration: `90s`, `15m`, `1h`, `1h30m`, `2d` (a bare number is seconds).
/// At least one second.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "duration",
            format!("{s:?} is not a duration like 30s, 15m, 1h or 1d"),
        )
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return (secs >= 1)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(bad);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A digest of everything a backup of the node would hold: the set digests of every sync
/// bucket (XOR of stored change hashes) and the number of held envelopes. Equal fingerprints
/// mean nothing changed.
pub fn state_fingerprint(handle: &NodeHandle) -> Result<[u8; 32]> {
    let mut buckets = handle.bucket_digests()?;
    buckets.sort();
    let mut h = Sha256::new();
    for (name, digest) in &buckets {
        h.update((name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        h.update(digest);
    }
    h.update(handle.held_count()?.to_le_bytes());
    Ok(h.finalize().into())
}

// ----------------------------------------------------------------------------------------
// Storage

/// Where snapshots go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotTarget {
    /// A local directory.
    Dir(PathBuf),
    /// S3-compatible object storage, `s3://bucket/prefix`; credentials and endpoint from the
    /// standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` …).
    Url(String),
}

impl std::fmt::Display for SnapshotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotTarget::Dir(d) => write!(f, "{}", d.display()),
            SnapshotTarget::Url(u) => f.write_str(u),
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The shop.
    pub shop_id: Uuid,
    /// When it was taken (ms since the Unix epoch).
    pub created_at: i64,
    /// Bytes.
    pub size: u64,
    /// Its name in the store (`<shop id>/<time>.tmsnap`).
    pub name: String,
}

/// A snapshot store: a local directory or an S3 bucket (prefix), through `object_store`.
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<dyn ObjectStore>,
    target: SnapshotTarget,
}

fn store_err(e: object_store::Error) -> Error {
    Error::Store(format!("snapshot store: {e}"))
}

impl SnapshotStore {
    /// Opens a target (creating a local directory).
    pub fn open(target: &SnapshotTarget) -> Result<SnapshotStore> {
        let inner: Arc<dyn ObjectStore> = match target {
            SnapshotTarget::Dir(dir) => {
                crate::private_fs::private_dir(dir)
                    .map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .map_err(store_err)?,
                )
            }
            SnapshotTarget::Url(url) => {
                let rest = url.strip_prefix("s3://").ok_or_else(|| {
                    Error::invalid(
                        "snapshot_url",
                        format!("{url:?} is not an s3://bucket/prefix URL"),
                    )
                })?;
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::invalid("snapshot_url", "the URL names no bucket"));
                }
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(store_err)?;
                let prefix = prefix.trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(
                        s3,
                        ObjectPath::from(prefix),
                    ))
                }
            }
        };
        Ok(SnapshotStore {
            inner,
            target: target.clone(),
        })
    }

    /// Where it writes.
    pub fn target(&self) -> &SnapshotTarget {
        &self.target
    }

    /// The snapshots of one shop (or of all), oldest first.
    pub async fn list(&self, shop: Option<Uuid>) -> Result<Vec<SnapshotInfo>> {
        let prefix = shop.map(|s| ObjectPath::from(s.to_string()));
        let mut stream = self.inner.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = match meta {
                Ok(m) => m,
                // A local directory that was never written to is an empty store.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            };
            let name = meta.location.to_string();
            if let Some((shop_id, created_at)) = parse_object_name(&name) {
                out.push(SnapshotInfo {
                    shop_id,
                    created_at,
                    size: meta.size,
                    name,
                });
            }
        }
        out.sort_by_key(|s| (s.shop_id, s.created_at));
        Ok(out)
    }

    /// Reads a whole snapshot into memory (tests, small shops).
    pub async fn read(&self, name: &str) -> Result<Vec<u8>> {
        let got = self
            .inner
            .get(&ObjectPath::from(name))
            .await
            .map_err(store_err)?;
        Ok(got.bytes().await.map_err(store_err)?.to_vec())
    }

    /// Copies a snapshot from the store into the local file `path` (which must not exist):
    /// written to `path.partial` and renamed once complete. Returns its size.
    pub async fn download(&self, name: &str, path: &Path) -> Result<u64> {
        if path.exists() {
            return Err(Error::invalid(
                "out",
                format!("{} already exists", path.display()),
            ));
        }
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        let result = async {
            let io =
                |e: io::Error| Error::Store(format!("cannot write {}: {e}", partial.display()));
            let mut f = crate::private_fs::create_private(&partial).map_err(io)?;
            let got = self
                .inner
                .get(&ObjectPath::from(name))
                .await
                .map_err(store_err)?;
            let mut stream = got.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(store_err)?;
                f.write_all(&chunk).map_err(io)?;
                n += chunk.len() as u64;
            }
            f.sync_all().map_err(io)?;
            std::fs::rename(&partial, path).map_err(io)?;
            Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    /// Deletes one snapshot.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.inner
            .delete(&ObjectPath::from(name))
            .await
            .map_err(store_err)
    }

    /// Applies [`retained`] to a shop's snapshots; returns the names deleted.
    pub async fn prune(
        &self,
        shop: Uuid,
        keep_hourly: u32,
        keep_daily: u32,
    ) -> Result<Vec<String>> {
        let all = self.list(Some(shop)).await?;
        let times: Vec<i64> = all.iter().map(|s| s.created_at).collect();
        let keep = retained(&times, keep_hourly, keep_daily);
        let mut deleted = Vec::new();
        for s in all {
            if !keep.contains(&s.created_at) {
                self.delete(&s.name).await?;
                deleted.push(s.name);
            }
        }
        Ok(deleted)
    }

    /// Streams what `produce` writes (on a blocking thread) into the object `name`. The object
    /// appears only if `produce` and the upload both succeed; otherwise the upload is aborted.
    async fn put_streaming<T: Send + 'static>(
        &self,
        name: &str,
        produce: impl FnOnce(&mut ChannelWriter) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let job = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(ChannelWriter::SEND_AT),
            };
            let out = produce(&mut w)?;
            w.send().map_err(write_err)?;
            Ok::<T, Error>(out)
        });
        let mut up =
            object_store::buffered::BufWriter::new(self.inner.clone(), ObjectPath::from(name));
        let mut upload_err = None;
        while let Some(bytes) = rx.recv().await {
            if let Err(e) = up.write_all(&bytes).await {
                upload_err = Some(e);
                break;
            }
        }
        // Dropping the receiver stops the producer if the upload failed.
        drop(rx);
        let produced = job
            .await
            .map_err(|e| Error::Internal(format!("the snapshot task failed: {e}")))?;
        match (produced, upload_err) {
            (Ok(out), None) => {
                up.shutdown()
                    .await
                    .map_err(|e| Error::Store(format!("snapshot store: {e}")))?;
                Ok(out)
            }
            (produced, upload_err) => {
                let _ = up.abort().await;
                match upload_err {
                    Some(e) => Err(Error::Store(format!("snapshot store: {e}"))),
                    None => Err(produced.err().expect("the other arms handled Ok")),
                }
            }
        }
    }
}

/// A `Write` on a blocking thread that hands ~1 MiB pieces to an async uploader.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const SEND_AT: usize = 1 << 20;

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::SEND_AT));
        self.tx
            .blocking_send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the snapshot upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::SEND_AT {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------
// Taking snapshots

/// A snapshot just written.
#[derive(Debug, Clone)]
pub struct Taken {
    /// Its name in the store.
    pub name: String,
    /// When it was taken (ms).
    pub created_at: i64,
    /// Encrypted bytes.
    pub bytes: u64,
    /// Recipients it was encrypted to.
    pub recipients: usize,
}

/// Takes a snapshot of the shop `handle` holds into `store`, now: a backup from one read
/// transaction, encrypted to the shop's [`recipients`] as it is written.
pub async fn take(store: &SnapshotStore, handle: &NodeHandle, created_at: i64) -> Result<Taken> {
    let view = handle.shop_view();
    let shop = view
        .shop_id
        .ok_or_else(|| Error::NoShop("this node has no shop to snapshot".into()))?;
    let to = recipients(&view);
    let count = to.len();
    let name = object_name(shop, created_at);
    let h = handle.clone();
    let bytes = store
        .put_streaming(&name, move |w| {
            let mut enc = Encryptor::new(w, shop, created_at, &to)?;
            h.write_backup(&mut enc, |_| {})?;
            Ok(enc.finish()?.1)
        })
        .await?;
    Ok(Taken {
        name,
        created_at,
        bytes,
        recipients: count,
    })
}

/// How a relay takes snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Where they go.
    pub target: SnapshotTarget,
    /// How often each shop is looked at (a snapshot is taken only if it changed).
    pub every: Duration,
    /// Hours that keep their newest snapshot.
    pub keep_hourly: u32,
    /// Days that keep their newest snapshot.
    pub keep_daily: u32,
}

impl SnapshotConfig {
    /// Hourly snapshots into `dir`, 24 hourly and 31 daily kept.
    pub fn local(dir: impl Into<PathBuf>) -> SnapshotConfig {
        SnapshotConfig {
            target: SnapshotTarget::Dir(dir.into()),
            every: Duration::from_secs(3600),
            keep_hourly: 24,
            keep_daily: 31,
        }
    }
}

/// What the relay remembers of a shop's last snapshot (`shops/<id>/snapshot-state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// The target it went to.
    pub target: String,
    /// Its name.
    pub name: String,
    /// When (ms).
    pub created_at: i64,
    /// [`state_fingerprint`] of the shop then (hex).
    pub fingerprint: String,
}

impl SnapshotState {
    /// Reads a shop's state file (`None` if absent or unreadable).
    pub fn load(replica_dir: &Path) -> Option<SnapshotState> {
        let bytes = std::fs::read(replica_dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, replica_dir: &Path) -> Result<()> {
        let path = replica_dir.join(STATE_FILE);
        let tmp = replica_dir.join(format!("{STATE_FILE}.tmp"));
        let io = |e: io::Error| Error::Store(format!("cannot write {}: {e}", path.display()));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("state serializes"),
        )
        .map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// What [`Snapshots::tick`] did for a shop.
#[derive(Debug, Clone)]
pub enum TickOutcome {
    /// Nothing changed since the last snapshot.
    Unchanged,
    /// A snapshot was taken; older ones that retention drops were deleted.
    Taken {
        /// The new snapshot.
        taken: Taken,
        /// Names deleted by retention.
        pruned: Vec<String>,
    },
}

/// A relay's snapshot service: the store and the schedule's settings.
#[derive(Clone)]
pub struct Snapshots {
    store: SnapshotStore,
    cfg: SnapshotConfig,
}

impl Snapshots {
    /// Opens the target.
    pub fn open(cfg: SnapshotConfig) -> Result<Snapshots> {
        Ok(Snapshots {
            store: SnapshotStore::open(&cfg.target)?,
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SnapshotConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// The last snapshot of the shop whose replica is in `replica_dir`, if it went to this
    /// target (ms).
    pub fn last_snapshot(&self, replica_dir: &Path) -> Option<i64> {
        SnapshotState::load(replica_dir)
            .filter(|s| s.target == self.store.target.to_string())
            .map(|s| s.created_at)
    }

    /// One scheduled look at a shop: a snapshot if it changed since the last one (or has
    /// none at this target), then retention.
    pub async fn tick(&self, handle: &NodeHandle, replica_dir: &Path) -> Result<TickOutcome> {
        let shop = handle
            .shop_view()
            .shop_id
            .ok_or_else(|| Error::NoShop("this replica has no shop".into()))?;
        // Taken before the backup's read transaction: a change in between only makes the next
        // tick take another snapshot, it is never missed.
        let fp = hex::encode(state_fingerprint(handle)?);
        let target = self.store.target.to_string();
        if SnapshotState::load(replica_dir)
            .is_some_and(|s| s.target == target && s.fingerprint == fp)
        {
            return Ok(TickOutcome::Unchanged);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let taken = take(&self.store, handle, now).await?;
        SnapshotState {
            target,
            name: taken.name.clone(),
            created_at: taken.created_at,
            fingerprint: fp,
        }
        .save(replica_dir)?;
        let pruned = self
            .store
            .prune(shop, self.cfg.keep_hourly, self.cfg.keep_daily)
            .await?;
        Ok(TickOutcome::Taken { taken, pruned })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    fn owner(kind: RecipientKind) -> (SigningKey, Recipient) {
        let k = identity::new_signing_key();
        let r = Recipient {
            kind,
            public_key: k.verifying_key(),
            sealed: None,
        };
        (k, r)
    }

    fn encrypt(plain: &[u8], to: &[Recipient]) -> Vec<u8> {
        let mut enc = Encryptor::new(Vec::new(), Uuid::nil(), 1_700_000_000_000, to).unwrap();
        // Uneven writes, to cross chunk boundaries in odd places.
        for piece in plain.chunks(10_007) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap().0
    }

    fn decrypt_vec(file: &[u8], unlock: &Unlock) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        decrypt(file, unlock, &mut out)?;
        Ok(out)
    }

    #[test]
    fn ed25519_keys_agree_as_x25519() {
        let a = identity::new_signing_key();
        let e = identity::random_bytes::<32>();
        let big_e = x25519_dalek::x25519(e, x25519_dalek::X25519_BASEPOINT_BYTES);
        let one = x25519_dalek::x25519(e, a.verifying_key().to_montgomery().to_bytes());
        let other = x25519_dalek::x25519(a.to_scalar_bytes(), big_e);
        assert_eq!(one, other);
    }

    #[test]
    fn every_recipient_opens_it_and_nobody_else() {
        let (ko, ro) = owner(RecipientKind::Owner);
        let (kr, rr) = owner(RecipientKind::Recovery);
        // Sizes around the chunk boundaries: empty, one byte, exactly one and two chunks.
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let file = encrypt(&plain, &[ro.clone(), rr.clone()]);
            assert_eq!(decrypt_vec(&file, &Unlock::Key(ko.clone())).unwrap(), plain);
            assert_eq!(decrypt_vec(&file, &Unlock::Key(kr.clone())).unwrap(), plain);
            let stranger = identity::new_signing_key();
            let err = decrypt_vec(&file, &Unlock::Key(stranger)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("not one of the snapshot's recipients"),
                "{err}"
            );
        }
    }

    #[test]
    fn changed_reordered_or_cut_files_do_not_decrypt() {
        let (k, r) = owner(RecipientKind::Recovery);
        let plain: Vec<u8> = (0..(3 * CHUNK + 100)).map(|i| (i % 256) as u8).collect();
        let file = encrypt(&plain, std::slice::from_ref(&r));
        let unlock = Unlock::Key(k);
        let body = file.len() - (3 * (CHUNK + TAG) + 100 + TAG);
        // A flipped byte in the header, in a chunk, in the last tag.
        for at in [20, body + 5, body + CHUNK + TAG + 3, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            assert!(
                decrypt_vec(&bad, &unlock).is_err(),
                "flip at {at} went unnoticed"
            );
        }
        // Cut at a chunk boundary (the last full chunk was not sealed as the last one), inside
        // a chunk, inside the header.
        for len in [body + 2 * (CHUNK + TAG), body + CHUNK, 30] {
            let err = decrypt_vec(&file[..len], &unlock).unwrap_err();
            assert!(err.to_string().contains("corrupted or truncated"), "{err}");
        }
        // Two chunks swapped.
        let mut swapped = file.clone();
        let (a, b) = (body, body + CHUNK + TAG);
        let first = file[a..b].to_vec();
        swapped.copy_within(b..b + CHUNK + TAG, a);
        swapped[b..b + CHUNK + TAG].copy_from_slice(&first);
        assert!(decrypt_vec(&swapped, &unlock).is_err());
        // Not a snapshot at all.
        assert!(decrypt_vec(b"tillmesh-backup\n....", &unlock).is_err());
    }

    #[test]
    fn an_owner_password_opens_it_through_the_sealed_key_in_the_header() {
        let k = identity::new_signing_key();
        let sealed = identity::seal_key(&k, "owner password 1", identity::KdfParams::PIN).unwrap();
        let r = Recipient {
            kind: RecipientKind::Owner,
            public_key: k.verifying_key(),
            sealed: Some(sealed),
        };
        let file = encrypt(b"the backup", &[r]);
        let opened = decrypt_vec(&file, &Unlock::Password("owner password 1".into())).unwrap();
        assert_eq!(opened, b"the backup");
        let err = decrypt_vec(&file, &Unlock::Password("not the password".into())).unwrap_err();
        assert!(err.to_string().contains("opens none"), "{err}");
    }

    #[test]
    fn no_recipient_no_snapshot() {
        assert!(Encryptor::new(Vec::new(), Uuid::nil(), 0, &[]).is_err());
    }

    #[test]
    fn retention_keeps_the_newest_per_hour_and_per_day() {
        let base = 1_700_006_400_000; // 2023-11-15T00:00:00Z, a day boundary
        assert_eq!(base % D, 0);
        // Every 15 minutes for three days.
        let times: Vec<i64> = (0..(3 * 24 * 4)).map(|i| base + i * 15 * 60_000).collect();
        let newest = *times.last().unwrap();
        let kept = retained(&times, 4, 2);
        let expected: BTreeSet<i64> = [
            // The newest of each of the last 4 hours (xx:45).
            newest,
            newest - H,
            newest - 2 * H,
            newest - 3 * H,
            // The newest of the last 2 days: day 3's is the newest overall, day 2's 23:45.
            base + 2 * D - 15 * 60_000,
        ]
        .into_iter()
        .collect();
        assert_eq!(kept, expected);
        // The newest is kept even with nothing configured; an empty list keeps nothing.
        assert_eq!(retained(&times, 0, 0), [newest].into_iter().collect());
        assert!(retained(&[], 24, 31).is_empty());
        // A shop that stopped changing keeps its last snapshots, however old (one per day: the
        // two of 60 days ago share a day).
        let old = [base - 90 * D, base - 60 * D, base - 60 * D + H];
        assert_eq!(
            retained(&old, 1, 31),
            [old[0], old[2]].into_iter().collect::<BTreeSet<_>>()
        );
        // Deterministic whatever the order.
        let mut shuffled = times.clone();
        shuffled.reverse();
        shuffled.rotate_left(17);
        assert_eq!(retained(&shuffled, 4, 2), expected);
    }

    #[test]
    fn names_and_durations() {
        let shop = Uuid::new_v4();
        let name = object_name(shop, 1_700_006_400_123);
        assert_eq!(name, format!("{shop}/20231115T000000.123Z.tmsnap"));
        assert_eq!(parse_object_name(&name), Some((shop, 1_700_006_400_123)));
        assert_eq!(
            parse_object_name(&format!("prefix/{name}")),
            Some((shop, 1_700_006_400_123))
        );
        assert_eq!(parse_object_name(&format!("{shop}/x.tmsnap")), None);
        assert_eq!(parse_object_name("nope/20231115T000000.123Z.tmsnap"), None);
        for (s, secs) in [
            ("1s", 1),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("90", 90),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_secs(secs), "{s}");
        }
        for bad in ["", "0", "0s", "1x", "h", "1h30", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
