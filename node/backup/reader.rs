//! Reading a backup: the checking scanner, plain and encrypted files told apart and opened,
//! [`verify`] with a key and [`inspect`] without one.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    BackupHeader, DocRecord, FORMAT, Inspection, MAGIC, MAX_HEADER, MAX_RECORD, SECTIONS,
    SealedInfo, TRAILER, Unlock, Verified, corrupted, invalid,
};
use crate::docs::Envelope;
use crate::error::{Error, Result};
use crate::sealed::{self, Kind};

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

pub(super) fn scan(
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

pub(super) enum Opened {
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
pub(super) fn open_with(path: &Path, unlock: Option<&Unlock>) -> Result<Opened> {
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
pub(super) fn verify_opened(
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
