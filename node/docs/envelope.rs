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
}
