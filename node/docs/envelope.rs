//! The signed envelope around every Automerge change, and its wire/storage encoding.

use automerge::{Change, ChangeHash};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest change an envelope may carry (a ledger entry is a few hundred bytes).
pub const MAX_CHANGE_BYTES: usize = 1 << 20;
/// Most `members` heads an envelope may name.
const MAX_MEMBERS_HEADS: usize = 64;
/// Most bytes a compressed change may inflate to. Automerge inflates a compressed change chunk
/// without any limit (a 1 MiB chunk of zeros becomes gigabytes), so [`check_chunk`] inflates it
/// first under this cap. Our own nodes never send compressed changes (they sign
/// `Change::raw_bytes`), so only a hand-made chunk comes near it.
pub const MAX_INFLATED_BYTES: usize = 2 << 20;

/// The magic bytes every Automerge chunk starts with.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Automerge chunk types (automerge `storage::chunk::ChunkType`).
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// A signed Automerge change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Document id (see [`super::DocId`]).
    pub doc: String,
    /// The change, as Automerge encodes it.
    pub change: Vec<u8>,
    /// Signer's ed25519 public key.
    pub signer: [u8; 32],
    /// Signature over a digest of the document id, change hash, schema and members heads.
    pub signature: Vec<u8>,
    /// Schema version the signer wrote with.
    pub schema: u32,
    /// `members` heads the signer saw when signing: its authority is checked there.
    pub members_heads: Vec<[u8; 32]>,
}

impl Envelope {
    /// Signs `change` for document `doc`.
    pub fn sign(
        key: &SigningKey,
        doc: &str,
        change: &Change,
        schema: u32,
        members_heads: &[ChangeHash],
    ) -> Envelope {
        let members_heads: Vec<[u8; 32]> = members_heads.iter().map(|h| h.0).collect();
        let msg = signing_message(doc, &change.hash(), schema, &members_heads);
        Envelope {
            doc: doc.to_string(),
            change: change.raw_bytes().to_vec(),
            signer: key.verifying_key().to_bytes(),
            signature: key.sign(&msg).to_bytes().to_vec(),
            schema,
            members_heads,
        }
    }

    /// Decodes the change (which also computes its hash) and checks the sizes.
    pub fn decode_change(&self) -> Result<Change> {
        if self.change.len() > MAX_CHANGE_BYTES {
            return Err(Error::Rejected("change too large".into()));
        }
        if self.members_heads.len() > MAX_MEMBERS_HEADS {
            return Err(Error::Rejected("too many members heads".into()));
        }
        check_chunk(&self.change)?;
        Change::from_bytes(self.change.clone())
            .map_err(|e| Error::Rejected(format!("undecodable change: {e}")))
    }

    /// Checks the signature against the change's hash. Says nothing about the signer's rights.
    pub fn verify_signature(&self, hash: &ChangeHash) -> Result<()> {
        let key = VerifyingKey::from_bytes(&self.signer)
            .map_err(|_| Error::Rejected("signer is not a valid ed25519 key".into()))?;
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::Rejected("signature has the wrong length".into()))?;
        let msg = signing_message(&self.doc, hash, self.schema, &self.members_heads);
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| Error::Rejected("bad signature".into()))
    }

    /// The `members` heads as Automerge hashes.
    pub fn members_heads(&self) -> Vec<ChangeHash> {
        self.members_heads.iter().map(|h| ChangeHash(*h)).collect()
    }

    /// Storage and wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an envelope always serializes")
    }

    /// Decodes [`Envelope::to_bytes`]; never panics on garbage.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope> {
        if bytes.len() > MAX_CHANGE_BYTES + 64 * 1024 {
            return Err(Error::Rejected("envelope too large".into()));
        }
        postcard::from_bytes(bytes).map_err(|e| Error::Rejected(format!("bad envelope: {e}")))
    }
}

/// The guard in front of every Automerge call on bytes from elsewhere (peers, relays, backups):
/// [`Envelope::decode_change`] is the one place such bytes become a `Change`, and it calls this
/// first. The bytes must be one change chunk (`magic, checksum, type, uLEB128 length, data`):
/// a plain change (type 1), or a DEFLATE-compressed change (type 2) that inflates to at most
/// [`MAX_INFLATED_BYTES`] — inflated here through a reader that stops one byte past the cap, so
/// a bomb costs at most that much memory before it is refused. Documents and bundles (whose
/// columns may be compressed too) are refused. Change chunks with compressed columns are
/// refused by Automerge itself, before inflating anything.
pub fn check_chunk(bytes: &[u8]) -> Result<()> {
    use std::io::Read;
    let bad = |why: &str| Error::Rejected(format!("undecodable change: {why}"));
    if bytes.len() < 9 || bytes[..4] != CHUNK_MAGIC {
        return Err(bad("not an Automerge chunk"));
    }
    let kind = bytes[8];
    let (len, used) = uleb128(&bytes[9..]).ok_or_else(|| bad("bad chunk length"))?;
    let data = &bytes[9 + used..];
    if usize::try_from(len).ok() != Some(data.len()) {
        return Err(bad("the chunk length does not match its bytes"));
    }
    match kind {
        CHUNK_CHANGE => Ok(()),
        CHUNK_COMPRESSED_CHANGE => {
            let mut inflated = Vec::new();
            flate2::bufread::DeflateDecoder::new(data)
                .take(MAX_INFLATED_BYTES as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|_| bad("the compressed change does not inflate"))?;
            if inflated.len() > MAX_INFLATED_BYTES {
                return Err(bad(&format!(
                    "a compressed change inflating to more than {MAX_INFLATED_BYTES} bytes"
                )));
            }
            Ok(())
        }
        _ => Err(bad("not a change chunk")),
    }
}

/// An unsigned LEB128 number at the start of `bytes`, and how many bytes it took.
fn uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// What the signature covers: a domain tag, the document, the change hash, the schema and the
/// members heads — so an envelope cannot be re-labelled for another document or authority.
fn signing_message(
    doc: &str,
    hash: &ChangeHash,
    schema: u32,
    members_heads: &[[u8; 32]],
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"tillmesh/envelope/1\0");
    h.update((doc.len() as u32).to_le_bytes());
    h.update(doc.as_bytes());
    h.update(hash.0);
    h.update(schema.to_le_bytes());
    let mut heads = members_heads.to_vec();
    heads.sort();
    h.update((heads.len() as u32).to_le_bytes());
    for head in &heads {
        h.update(head);
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    fn a_change() -> Change {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "x", 1).unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    #[test]
    fn signed_envelope_verifies_and_tampering_is_caught() {
        let key = crate::identity::new_signing_key();
        let change = a_change();
        let env = Envelope::sign(&key, "catalog", &change, 1, &[]);
        let decoded = Envelope::from_bytes(&env.to_bytes()).unwrap();
        let c = decoded.decode_change().unwrap();
        decoded.verify_signature(&c.hash()).unwrap();

        let mut other_doc = decoded.clone();
        other_doc.doc = "settings".into();
        assert!(other_doc.verify_signature(&c.hash()).is_err());

        let mut forged = decoded.clone();
        forged.signer = crate::identity::new_signing_key()
            .verifying_key()
            .to_bytes();
        assert!(forged.verify_signature(&c.hash()).is_err());

        assert!(Envelope::from_bytes(b"garbage").is_err());
    }

    /// `change` as a compressed chunk (type 2) with `data` (raw DEFLATE of a change body).
    fn compressed_chunk(change: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = change[..8].to_vec();
        out.push(CHUNK_COMPRESSED_CHANGE);
        let mut len = data.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(data);
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_small_compressed_change_decodes_and_a_bomb_is_refused() {
        // A real change, compressed as Automerge compresses it, still decodes (same hash).
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "x", "y".repeat(2000)).unwrap();
        doc.commit();
        let mut change = doc.get_last_local_change().unwrap();
        let compressed = change.bytes().to_vec();
        assert_eq!(
            compressed[8], CHUNK_COMPRESSED_CHANGE,
            "automerge compressed it"
        );
        check_chunk(&compressed).unwrap();
        assert_eq!(
            Change::from_bytes(compressed).unwrap().hash(),
            change.hash()
        );

        // 64 MiB of zeros deflate to ~64 KiB: refused, having inflated at most the cap.
        let raw = change.raw_bytes().to_vec();
        let bomb = compressed_chunk(&raw, &deflate(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < MAX_CHANGE_BYTES);
        let err = check_chunk(&bomb).unwrap_err().to_string();
        assert!(err.contains("inflating to more than"), "{err}");
        let env = Envelope {
            change: bomb,
            ..Envelope::sign(
                &crate::identity::new_signing_key(),
                "catalog",
                &change,
                1,
                &[],
            )
        };
        assert!(env.decode_change().is_err());

        // Not a chunk, a truncated one, a document chunk: refused before Automerge.
        assert!(check_chunk(b"junk").is_err());
        assert!(check_chunk(&raw[..raw.len() - 1]).is_err());
        let saved = doc.save();
        assert!(check_chunk(&saved).is_err());
    }
}
