//! The one encryption format of tillmesh's files that hold a shop: encrypted backups
//! (`GET /api/v1/backup`, `tillmesh backup`, see [`crate::backup`]) and the relay's scheduled
//! snapshots (see [`crate::snapshot`]). Both are a plain backup file (the inner format of
//! [`crate::backup`]) encrypted so that a leaked file reveals nothing but its size, the shop id,
//! when it was made and how many keys open it. It opens with the shop's **owners'** person keys
//! (the `person:<id>` entries of `members` with role owner, unrevoked) and the shop's
//! **recovery key** (the `recovery` entry of `members`, printed once by `init`) — never with a
//! manager's or a device's key.
//!
//! ## The file
//! ```text
//! magic                   14 bytes: "tillmesh-seal\n" (a backup) or "tillmesh-snap\n" (a
//!                         relay snapshot); the layout that follows is the same
//! format                  u32 LE (2; format 1, written by tillmesh before encrypted backups,
//!                         is read too: it has no trailer)
//! header                  u32 LE length + JSON SealedHeader: shop id, time, chunk size,
//!                         nonce prefix, recipients, owners' password-sealed keys
//! chunks                  the plain backup encrypted with XChaCha20-Poly1305 under a random
//!                         32-byte file key, in chunks of `chunk_size` (64 KiB) plaintext bytes,
//!                         each followed by its 16-byte tag; the last chunk is shorter (maybe
//!                         empty)
//! "END!" + SHA-256        (format 2) the hash of every byte before "END!"
//! ```
//! - Chunk `i`'s nonce is `nonce_prefix (15 bytes) ‖ i (u64 BE) ‖ last (1 byte: 1 for the last
//!   chunk, else 0)`, so reordered, dropped or duplicated chunks and a file cut at a chunk
//!   boundary fail to authenticate. Every chunk's associated data is the SHA-256 of the bytes
//!   before the first chunk (magic, format, header), so a changed header is detected too.
//! - The **trailer** lets anyone check a file without a key ([`check`], `tillmesh backup
//!   verify FILE` with no key): a cut or a flipped byte anywhere shows. It is not a secret nor a
//!   signature — whoever changes the file can recompute it — so only the chunks' tags, checked
//!   with a key, say the content is what the shop wrote.
//! - **Recipients**: an ed25519 public key `A` becomes the X25519 key `A.to_montgomery()`. Per
//!   recipient a fresh ephemeral X25519 key `e` is made; `s = X25519(e, A)`, the wrapping key is
//!   `HKDF-SHA256(salt = E ‖ A_x25519, ikm = s, info = "tillmesh-snapshot-1 file key")` and the
//!   header holds `E` and the file key sealed with XChaCha20-Poly1305 under it (zero nonce: the
//!   wrapping key is used once). A recipient is listed by the fingerprint of its ed25519 public
//!   key (first 8 bytes of its SHA-256, hex) and its kind (`owner` or `recovery`); the secret
//!   side uses `SigningKey::to_scalar_bytes()`.
//! - **Owners' passwords**: an owner's person key is kept in the `vault` sealed under their
//!   password (argon2id 64 MiB, 3 passes; passwords of at least 10 characters), and the vault is
//!   inside the file. So that an owner can open the file with their password alone, the header
//!   also carries each owner recipient's sealed key exactly as the vault holds it. This is the
//!   one thing a leaked file offers an attacker: an offline guess of an owner's password at
//!   argon2id's cost per guess. The recovery key opens every file without it. A manager's sealed
//!   key is never in a header, so a manager's password opens nothing.

use std::io::{self, Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity::{self, SealedKey};

/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = 2;
/// Plaintext bytes per encrypted chunk.
pub const CHUNK: usize = 64 * 1024;
/// Length of either magic.
pub const MAGIC_LEN: usize = 14;
/// Largest header accepted.
const MAX_HEADER: usize = 1 << 20;
/// AEAD tag length.
const TAG: usize = 16;
/// Marks the trailer (format 2): the SHA-256 of everything before it follows.
const TRAILER: &[u8; 4] = b"END!";
/// Trailer length (format 2).
const TRAILER_LEN: usize = 36;
/// HKDF info of the key that wraps a file key (named after the snapshots that came first; the
/// same for backups, so one unwrap serves both).
const WRAP_INFO: &[u8] = b"tillmesh-snapshot-1 file key";

/// What an encrypted file is for. The magic says it; everything after it is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A backup (`GET /api/v1/backup`, `tillmesh backup`).
    Backup,
    /// A relay's scheduled snapshot.
    Snapshot,
}

impl Kind {
    /// The first bytes of a file of this kind.
    pub const fn magic(self) -> &'static [u8; MAGIC_LEN] {
        match self {
            Kind::Backup => b"tillmesh-seal\n",
            Kind::Snapshot => b"tillmesh-snap\n",
        }
    }

    /// The kind whose magic `bytes` are.
    pub fn from_magic(bytes: &[u8]) -> Option<Kind> {
        [Kind::Backup, Kind::Snapshot]
            .into_iter()
            .find(|k| k.magic().as_slice() == bytes)
    }

    /// `backup` or `snapshot`, for messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Snapshot => "snapshot",
        }
    }
}

fn invalid(kind: Kind, message: impl Into<String>) -> Error {
    Error::invalid(kind.noun(), message)
}

/// A damaged, changed or cut file.
fn corrupted(kind: Kind, what: impl std::fmt::Display) -> Error {
    invalid(
        kind,
        format!(
            "the {} is corrupted or truncated ({what}); nothing was written",
            kind.noun()
        ),
    )
}

/// Carries a crate [`Error`] through `io::Read`/`io::Write`.
fn to_io(e: Error) -> io::Error {
    io::Error::other(e)
}

/// The crate [`Error`] an I/O error carries (from [`Decryptor`]), or `other(e)`.
pub fn from_io(e: io::Error, other: impl FnOnce(io::Error) -> Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    other(e)
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

/// One key a file is encrypted to.
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

pub(crate) fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
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

/// What an encrypted file's header says (in the clear, authenticated by every chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHeader {
    /// The format of the file.
    pub format: u32,
    /// The shop.
    pub shop_id: Uuid,
    /// When the file was made (ms since the Unix epoch).
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

impl SealedHeader {
    /// The recipients, as `owner 1a2b…, recovery 3c4d…`.
    pub fn recipient_list(&self) -> String {
        self.recipients
            .iter()
            .map(|s| format!("{:?} {}", s.kind, s.fingerprint).to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn wrapping_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    info: &[u8],
) -> [u8; 32] {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt[..]), shared);
    let mut okm = [0u8; 32];
    hk.expand(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// Wraps a 32-byte key to an ed25519 public key (see the module docs: a fresh ephemeral
/// X25519 key, HKDF with `info`, XChaCha20-Poly1305 with a zero nonce). Returns the ephemeral
/// public key and the wrapped key (48 bytes). `info` separates the uses (file keys, gossip
/// keys), so a wrapped key of one is never accepted as the other.
pub(crate) fn wrap_key(
    key: &[u8; 32],
    to: &VerifyingKey,
    info: &[u8],
) -> Result<([u8; 32], Vec<u8>)> {
    let their = to.to_montgomery().to_bytes();
    let secret = identity::random_bytes::<32>();
    let ephemeral = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    let shared = x25519_dalek::x25519(secret, their);
    if shared == [0u8; 32] {
        return Err(Error::Internal(format!(
            "recipient {} is not a usable key",
            fingerprint(to)
        )));
    }
    let k = wrapping_key(&shared, &ephemeral, &their, info);
    let wrapped = XChaCha20Poly1305::new(&k.into())
        .encrypt(&XNonce::default(), key.as_slice())
        .map_err(|_| Error::Internal("wrapping a key failed".into()))?;
    Ok((ephemeral, wrapped))
}

/// Opens what [`wrap_key`] made for `key`'s public half; `None` if it was not made for it (or
/// for another `info`), or was altered.
pub(crate) fn unwrap_key(
    ephemeral: &[u8; 32],
    wrapped: &[u8],
    key: &SigningKey,
    info: &[u8],
) -> Option<[u8; 32]> {
    let mine = key.verifying_key().to_montgomery().to_bytes();
    let shared = x25519_dalek::x25519(key.to_scalar_bytes(), *ephemeral);
    let k = wrapping_key(&shared, ephemeral, &mine, info);
    XChaCha20Poly1305::new(&k.into())
        .decrypt(&XNonce::default(), wrapped)
        .ok()?
        .try_into()
        .ok()
}

fn wrap_file_key(file_key: &[u8; 32], to: &Recipient) -> Result<RecipientStanza> {
    let (ephemeral, wrapped) = wrap_key(file_key, &to.public_key, WRAP_INFO)?;
    Ok(RecipientStanza {
        kind: to.kind,
        fingerprint: fingerprint(&to.public_key),
        ephemeral: hex::encode(ephemeral),
        wrapped_key: hex::encode(wrapped),
    })
}

fn unwrap_file_key(kind: Kind, stanza: &RecipientStanza, key: &SigningKey) -> Result<[u8; 32]> {
    let bad = || corrupted(kind, "a recipient entry is malformed");
    let ephemeral: [u8; 32] = hex::decode(&stanza.ephemeral)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let wrapped = hex::decode(&stanza.wrapped_key).map_err(|_| bad())?;
    unwrap_key(&ephemeral, &wrapped, key, WRAP_INFO)
        .ok_or_else(|| corrupted(kind, "the file key for this recipient does not open"))
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

/// The bytes before the first chunk.
fn preamble(kind: Kind, header: &SealedHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a sealed header serializes");
    let mut out = Vec::with_capacity(MAGIC_LEN + 8 + json.len());
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&header.format.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Encrypts what is written to it into a sealed file on `out`; [`finish`](Self::finish)
/// writes the last chunk and the trailer (a file without them does not decrypt).
pub struct Encryptor<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    aad: [u8; 32],
    prefix: [u8; 15],
    counter: u64,
    buf: Vec<u8>,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Encryptor<W> {
    /// Writes the header for `recipients` and returns the encryptor. Fails, having written
    /// nothing, if there is no recipient (the file could never be opened).
    pub fn new(
        kind: Kind,
        mut out: W,
        shop_id: Uuid,
        created_at: i64,
        recipients: &[Recipient],
    ) -> Result<Encryptor<W>> {
        if recipients.is_empty() {
            return Err(Error::invalid(
                "recipients",
                format!(
                    "the shop has neither an owner key nor a recovery key to encrypt a {} to",
                    kind.noun()
                ),
            ));
        }
        let file_key = identity::random_bytes::<32>();
        let prefix = identity::random_bytes::<15>();
        let header = SealedHeader {
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
        let pre = preamble(kind, &header);
        out.write_all(&pre).map_err(write_err)?;
        let mut hasher = Sha256::new();
        hasher.update(&pre);
        Ok(Encryptor {
            out,
            cipher: XChaCha20Poly1305::new(&file_key.into()),
            aad: Sha256::digest(&pre).into(),
            prefix,
            counter: 0,
            buf: Vec::with_capacity(2 * CHUNK),
            hasher,
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
            .map_err(|_| io::Error::other("encrypting a chunk failed"))?;
        self.out.write_all(&ct)?;
        self.hasher.update(&ct);
        self.written += ct.len() as u64;
        self.counter += 1;
        self.buf.drain(..len);
        Ok(())
    }

    /// Encrypts the rest as the last chunk and writes the trailer; returns the sink and the
    /// bytes written.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let len = self.buf.len();
        self.seal(len, true).map_err(write_err)?;
        let digest = self.hasher.finalize_reset();
        self.out.write_all(TRAILER).map_err(write_err)?;
        self.out.write_all(&digest).map_err(write_err)?;
        self.out.flush().map_err(write_err)?;
        Ok((self.out, self.written + TRAILER_LEN as u64))
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
    from_io(e, |e| {
        Error::Internal(format!("writing an encrypted file failed: {e}"))
    })
}

// ----------------------------------------------------------------------------------------
// Decryption

/// A key that may open a sealed file.
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

/// What the bytes before the first chunk said.
struct Preamble {
    kind: Kind,
    header: SealedHeader,
    aad: [u8; 32],
    hasher: Sha256,
    bytes: u64,
}

fn read_exact_or(kind: Kind, r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupted(kind, format!("it ends inside the {what}")),
        _ => invalid(kind, format!("cannot read the {}: {e}", kind.noun())),
    })
}

/// Reads the magic and the header. `expect` names the kind an unknown magic is reported as.
fn read_preamble(r: &mut impl Read, expect: Kind) -> Result<Preamble> {
    let mut magic = [0u8; MAGIC_LEN];
    read_exact_or(expect, r, &mut magic, "file signature")?;
    let kind = Kind::from_magic(&magic).ok_or_else(|| {
        invalid(
            expect,
            "this is not an encrypted tillmesh backup or snapshot (no tillmesh-seal or \
             tillmesh-snap signature)",
        )
    })?;
    let mut word = [0u8; 4];
    read_exact_or(kind, r, &mut word, "header")?;
    let format = u32::from_le_bytes(word);
    if format == 0 || format > FORMAT {
        return Err(invalid(
            kind,
            format!(
                "{} format {format} is not known to this tillmesh (it reads formats 1 to \
                 {FORMAT}); update tillmesh",
                kind.noun()
            ),
        ));
    }
    read_exact_or(kind, r, &mut word, "header")?;
    let len = u32::from_le_bytes(word) as usize;
    if len > MAX_HEADER {
        return Err(corrupted(kind, "the header length is implausible"));
    }
    let mut json = vec![0u8; len];
    read_exact_or(kind, r, &mut json, "header")?;
    let header: SealedHeader =
        serde_json::from_slice(&json).map_err(|e| corrupted(kind, format!("bad header: {e}")))?;
    if header.format != format || header.chunk_size == 0 || header.chunk_size > 16 << 20 {
        return Err(corrupted(
            kind,
            "the header's format or chunk size is wrong",
        ));
    }
    let mut pre = Vec::with_capacity(MAGIC_LEN + 8 + len);
    pre.extend_from_slice(&magic);
    pre.extend_from_slice(&format.to_le_bytes());
    pre.extend_from_slice(&(len as u32).to_le_bytes());
    pre.extend_from_slice(&json);
    let mut hasher = Sha256::new();
    hasher.update(&pre);
    Ok(Preamble {
        kind,
        header,
        aad: Sha256::digest(&pre).into(),
        hasher,
        bytes: pre.len() as u64,
    })
}

/// Reads a sealed file's header (no key needed).
pub fn read_header(r: &mut impl Read) -> Result<SealedHeader> {
    Ok(read_preamble(r, Kind::Snapshot)?.header)
}

/// The signing key `unlock` stands for, if it can open `header` (a password is tried on every
/// owner's sealed key in the header).
fn key_for(kind: Kind, header: &SealedHeader, unlock: &Unlock) -> Result<SigningKey> {
    match unlock {
        Unlock::Key(k) => Ok(k.clone()),
        Unlock::Password(password) => {
            for sealed in &header.owner_keys {
                if let Some(k) = identity::unseal_key(sealed, password)? {
                    return Ok(k);
                }
            }
            Err(Error::Unauthorized(if header.owner_keys.is_empty() {
                format!(
                    "this {} carries no owner's password-sealed key: use the recovery key",
                    kind.noun()
                )
            } else {
                format!(
                    "the password opens none of the owners' keys in this {} (only an owner's \
                     password or the recovery key opens it)",
                    kind.noun()
                )
            }))
        }
    }
}

/// Reads up to `n` bytes (fewer only at the end of the input).
fn read_up_to(kind: Kind, r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> Result<()> {
    buf.clear();
    r.take(n as u64)
        .read_to_end(buf)
        .map_err(|e| invalid(kind, format!("cannot read the {}: {e}", kind.noun())))?;
    Ok(())
}

/// Splits a sealed file's body into its chunks and checks its trailer, without a key.
struct Chunks<R> {
    input: R,
    kind: Kind,
    trailer: usize,
    sealed_len: usize,
    hasher: Sha256,
    bytes: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> Chunks<R> {
    fn new(input: R, pre: &Preamble) -> Chunks<R> {
        let sealed_len = pre.header.chunk_size as usize + TAG;
        Chunks {
            input,
            kind: pre.kind,
            trailer: if pre.header.format >= 2 {
                TRAILER_LEN
            } else {
                0
            },
            sealed_len,
            hasher: pre.hasher.clone(),
            bytes: pre.bytes,
            buf: Vec::with_capacity(sealed_len + TRAILER_LEN + 1),
            done: false,
        }
    }

    /// The next chunk (ciphertext and tag) and whether it is the last; `None` after the last.
    /// The last chunk is handed out only once the trailer after it matched.
    fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, bool)>> {
        if self.done {
            return Ok(None);
        }
        // Enough to tell a full chunk that more follows from the last chunk and the trailer.
        let want = self.sealed_len + self.trailer + 1;
        if self.buf.len() < want {
            let mut more = Vec::new();
            read_up_to(self.kind, &mut self.input, &mut more, want - self.buf.len())?;
            self.buf.extend_from_slice(&more);
        }
        let last = self.buf.len() < want;
        let len = if last {
            if self.buf.len() < self.trailer + TAG {
                return Err(corrupted(self.kind, "the last chunk is cut short"));
            }
            self.buf.len() - self.trailer
        } else {
            self.sealed_len
        };
        let chunk: Vec<u8> = self.buf.drain(..len).collect();
        self.hasher.update(&chunk);
        self.bytes += chunk.len() as u64;
        if last {
            self.done = true;
            if self.trailer > 0 {
                let digest = self.hasher.clone().finalize();
                if &self.buf[..4] != TRAILER {
                    return Err(corrupted(
                        self.kind,
                        "no checksum where the file should end",
                    ));
                }
                if self.buf[4..] != digest[..] {
                    return Err(corrupted(self.kind, "its checksum does not match"));
                }
                self.bytes += self.trailer as u64;
            }
        }
        Ok(Some((chunk, last)))
    }
}

/// What [`check`] found in a sealed file it could not open.
#[derive(Debug, Clone)]
pub struct Intact {
    /// A backup or a snapshot.
    pub kind: Kind,
    /// Its header.
    pub header: SealedHeader,
    /// Chunks in it.
    pub chunks: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Whether a checksum covered the whole file (format 2; format 1 had none, so only its
    /// layout was checked).
    pub checksummed: bool,
}

/// Checks a sealed file without a key: its header, the layout of its chunks and (format 2)
/// the checksum over the whole file, so a cut or a flipped byte shows. Whether the content is
/// what the shop wrote only a key can tell ([`Decryptor`]).
pub fn check(mut input: impl Read, expect: Kind) -> Result<Intact> {
    let pre = read_preamble(&mut input, expect)?;
    let mut chunks = Chunks::new(input, &pre);
    let mut n = 0u64;
    while chunks.next_chunk()?.is_some() {
        n += 1;
    }
    Ok(Intact {
        kind: pre.kind,
        header: pre.header,
        chunks: n,
        bytes: chunks.bytes,
        checksummed: chunks.trailer > 0,
    })
}

/// A sealed file being read with a key: `Read` gives the plaintext (the backup inside).
/// Errors (an I/O error carrying a crate [`Error`], see [`from_io`]) come before any byte of a
/// chunk that does not authenticate, so a reader never sees changed, reordered or cut content.
pub struct Decryptor<R> {
    chunks: Chunks<R>,
    cipher: XChaCha20Poly1305,
    aad: [u8; 32],
    prefix: [u8; 15],
    counter: u64,
    plain: Vec<u8>,
    pos: usize,
}

impl<R: Read> Decryptor<R> {
    /// Bytes of the sealed file read so far (all of it once the plaintext has ended).
    pub fn bytes_read(&self) -> u64 {
        self.chunks.bytes
    }

    fn next_plain(&mut self) -> Result<bool> {
        let Some((chunk, last)) = self.chunks.next_chunk()? else {
            return Ok(false);
        };
        let kind = self.chunks.kind;
        self.plain = self
            .cipher
            .decrypt(
                &chunk_nonce(&self.prefix, self.counter, last),
                Payload {
                    msg: &chunk,
                    aad: &self.aad,
                },
            )
            .map_err(|_| {
                corrupted(
                    kind,
                    format!("chunk {} does not authenticate", self.counter),
                )
            })?;
        self.pos = 0;
        self.counter += 1;
        Ok(true)
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.next_plain().map_err(to_io)? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A sealed file opened with a key.
pub struct Opened<R> {
    /// A backup or a snapshot.
    pub kind: Kind,
    /// Its header.
    pub header: SealedHeader,
    /// The key that opened it (a password resolves to the owner's key, so a second pass over
    /// the file needs no second argon2id).
    pub key: SigningKey,
    /// Which recipient that key is.
    pub opened_by: RecipientKind,
    /// The plaintext.
    pub reader: Decryptor<R>,
}

/// Opens a sealed file from `input` with `unlock`. `expect` names the kind an unknown file
/// is reported as. Fails if `unlock` is not a recipient; the content is checked as it is read.
pub fn open<R: Read>(mut input: R, unlock: &Unlock, expect: Kind) -> Result<Opened<R>> {
    let pre = read_preamble(&mut input, expect)?;
    let kind = pre.kind;
    let key = key_for(kind, &pre.header, unlock)?;
    let fp = fingerprint(&key.verifying_key());
    let stanza = pre
        .header
        .recipients
        .iter()
        .find(|s| s.fingerprint == fp)
        .ok_or_else(|| {
            Error::Unauthorized(format!(
                "this key ({fp}) is not one of the {}'s recipients ({}); only an owner's key or \
                 the recovery key opens it",
                kind.noun(),
                pre.header.recipient_list()
            ))
        })?;
    let file_key = unwrap_file_key(kind, stanza, &key)?;
    let prefix: [u8; 15] = hex::decode(&pre.header.nonce_prefix)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupted(kind, "bad nonce prefix"))?;
    let opened_by = stanza.kind;
    let aad = pre.aad;
    let header = pre.header.clone();
    Ok(Opened {
        kind,
        header,
        key,
        opened_by,
        reader: Decryptor {
            chunks: Chunks::new(input, &pre),
            cipher: XChaCha20Poly1305::new(&file_key.into()),
            aad,
            prefix,
            counter: 0,
            plain: Vec::new(),
            pos: 0,
        },
    })
}

/// Decrypts a sealed file from `input` into `out`. Fails — having written only what
/// authenticated so far — if `unlock` is not a recipient or anything was changed, reordered or
/// cut off.
pub fn decrypt(input: impl Read, unlock: &Unlock, mut out: impl Write) -> Result<SealedHeader> {
    let mut opened = open(input, unlock, Kind::Snapshot)?;
    let kind = opened.kind;
    io::copy(&mut opened.reader, &mut out).map_err(|e| {
        from_io(e, |e| {
            Error::store(format!("cannot write the decrypted {}", kind.noun()), e)
        })
    })?;
    out.flush()
        .map_err(|e| Error::store(format!("cannot write the decrypted {}", kind.noun()), e))?;
    Ok(opened.header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: RecipientKind) -> (SigningKey, Recipient) {
        let k = identity::new_signing_key();
        let r = Recipient {
            kind,
            public_key: k.verifying_key(),
            sealed: None,
        };
        (k, r)
    }

    fn encrypt(kind: Kind, plain: &[u8], to: &[Recipient]) -> Vec<u8> {
        let mut enc = Encryptor::new(kind, Vec::new(), Uuid::nil(), 1_700_000_000_000, to).unwrap();
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
        for kind in [Kind::Backup, Kind::Snapshot] {
            for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let file = encrypt(kind, &plain, &[ro.clone(), rr.clone()]);
                assert_eq!(decrypt_vec(&file, &Unlock::Key(ko.clone())).unwrap(), plain);
                assert_eq!(decrypt_vec(&file, &Unlock::Key(kr.clone())).unwrap(), plain);
                let intact = check(file.as_slice(), kind).unwrap();
                assert_eq!(intact.kind, kind);
                assert_eq!(intact.bytes, file.len() as u64);
                assert_eq!(
                    intact.chunks,
                    (len / CHUNK + 1 - usize::from(len > 0 && len % CHUNK == 0)) as u64
                );
                let stranger = identity::new_signing_key();
                let err = decrypt_vec(&file, &Unlock::Key(stranger)).unwrap_err();
                assert!(
                    err.to_string()
                        .contains(&format!("not one of the {}'s recipients", kind.noun())),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn changed_reordered_or_cut_files_do_not_decrypt_nor_check() {
        let (k, r) = owner(RecipientKind::Recovery);
        let plain: Vec<u8> = (0..(3 * CHUNK + 100)).map(|i| (i % 256) as u8).collect();
        let file = encrypt(Kind::Backup, &plain, std::slice::from_ref(&r));
        let unlock = Unlock::Key(k);
        let body = file.len() - (3 * (CHUNK + TAG) + 100 + TAG) - TRAILER_LEN;
        // A flipped byte in the header, in a chunk, in the last tag, in the trailer.
        for at in [
            20,
            body + 5,
            body + CHUNK + TAG + 3,
            file.len() - TRAILER_LEN - 1,
            file.len() - 1,
        ] {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            assert!(
                decrypt_vec(&bad, &unlock).is_err(),
                "flip at {at} went unnoticed"
            );
            assert!(
                check(bad.as_slice(), Kind::Backup).is_err(),
                "flip at {at} checked"
            );
        }
        // Cut at a chunk boundary (the last full chunk was not sealed as the last one), inside
        // a chunk, inside the trailer, inside the header.
        for len in [
            body + 2 * (CHUNK + TAG),
            body + CHUNK,
            file.len() - 1,
            file.len() - TRAILER_LEN,
            30,
        ] {
            let err = decrypt_vec(&file[..len], &unlock).unwrap_err();
            assert!(
                err.to_string().contains("corrupted or truncated"),
                "{len}: {err}"
            );
            let err = check(&file[..len], Kind::Backup).unwrap_err();
            assert!(
                err.to_string().contains("corrupted or truncated"),
                "{len}: {err}"
            );
        }
        // Two chunks swapped (the checksum recomputed, as an attacker would).
        let mut swapped = file.clone();
        let (a, b) = (body, body + CHUNK + TAG);
        let first = file[a..b].to_vec();
        swapped.copy_within(b..b + CHUNK + TAG, a);
        swapped[b..b + CHUNK + TAG].copy_from_slice(&first);
        let end = swapped.len() - 32;
        let digest = Sha256::digest(&swapped[..end - 4]);
        swapped[end..].copy_from_slice(&digest);
        assert!(check(swapped.as_slice(), Kind::Backup).is_ok());
        assert!(decrypt_vec(&swapped, &unlock).is_err());
        // Not a sealed file at all.
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
        let file = encrypt(Kind::Backup, b"the backup", &[r]);
        let opened = decrypt_vec(&file, &Unlock::Password("owner password 1".into())).unwrap();
        assert_eq!(opened, b"the backup");
        let err = decrypt_vec(&file, &Unlock::Password("not the password".into())).unwrap_err();
        assert!(err.to_string().contains("opens none"), "{err}");
    }

    #[test]
    fn format_1_files_without_a_trailer_still_open() {
        // What tillmesh wrote before format 2: the same chunks, format 1, no trailer.
        let (k, r) = owner(RecipientKind::Recovery);
        let plain: Vec<u8> = (0..(CHUNK + 5)).map(|i| (i % 7) as u8).collect();
        let file = encrypt(Kind::Snapshot, &plain, std::slice::from_ref(&r));
        let pre = read_preamble(&mut file.as_slice(), Kind::Snapshot).unwrap();
        let mut header = pre.header.clone();
        header.format = 1;
        let old_pre = preamble(Kind::Snapshot, &header);
        // The chunks' associated data is the hash of the preamble: re-encrypt under it.
        let file_key = unwrap_file_key(Kind::Snapshot, &header.recipients[0], &k).unwrap();
        let cipher = XChaCha20Poly1305::new(&file_key.into());
        let aad: [u8; 32] = Sha256::digest(&old_pre).into();
        let prefix: [u8; 15] = hex::decode(&header.nonce_prefix)
            .unwrap()
            .try_into()
            .unwrap();
        let mut old = old_pre.clone();
        for (i, piece) in plain.chunks(CHUNK).enumerate() {
            let last = i == plain.len() / CHUNK;
            let ct = cipher
                .encrypt(
                    &chunk_nonce(&prefix, i as u64, last),
                    Payload {
                        msg: piece,
                        aad: &aad,
                    },
                )
                .unwrap();
            old.extend_from_slice(&ct);
        }
        assert_eq!(decrypt_vec(&old, &Unlock::Key(k)).unwrap(), plain);
        let intact = check(old.as_slice(), Kind::Snapshot).unwrap();
        assert!(!intact.checksummed);
    }

    mod arbitrary_bytes {
        use super::*;
        use proptest::prelude::*;

        fn sample() -> (SigningKey, Vec<u8>) {
            let (k, r) = owner(RecipientKind::Recovery);
            let plain: Vec<u8> = (0..(CHUNK + 300)).map(|i| (i % 253) as u8).collect();
            (k, encrypt(Kind::Backup, &plain, std::slice::from_ref(&r)))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// Random input, also behind a valid magic: an error, never a panic.
            #[test]
            fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                                        magic in any::<bool>()) {
                let mut input = if magic { Kind::Backup.magic().to_vec() } else { Vec::new() };
                input.extend_from_slice(&bytes);
                let key = identity::new_signing_key();
                prop_assert!(decrypt_vec(&input, &Unlock::Key(key)).is_err());
                prop_assert!(check(input.as_slice(), Kind::Backup).is_err());
            }

            /// A valid file with bytes changed, cut or added: never opens, never panics.
            #[test]
            fn mutated_files_are_refused(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                                         cut in proptest::option::of(any::<usize>()),
                                         extra in proptest::collection::vec(any::<u8>(), 0..3)) {
                let (k, file) = sample();
                let mut bad = file.clone();
                for (at, x) in &edits {
                    let at = at % bad.len();
                    bad[at] ^= x | 1;
                }
                if let Some(c) = cut {
                    bad.truncate(c % bad.len());
                }
                bad.extend_from_slice(&extra);
                // Two edits of one byte may cancel out.
                prop_assume!(bad != file);
                prop_assert!(decrypt_vec(&bad, &Unlock::Key(k)).is_err());
                prop_assert!(check(bad.as_slice(), Kind::Backup).is_err());
            }
        }
    }

    #[test]
    fn no_recipient_no_file() {
        let mut out = Vec::new();
        assert!(Encryptor::new(Kind::Backup, &mut out, Uuid::nil(), 0, &[]).is_err());
        assert!(out.is_empty());
    }
}
