//! The shop's gossip key: what live gossip is sealed with (see `mesh`), and how it rotates so
//! that a revoked device — or anyone holding an old backup or a copy of a till's disk — stops
//! reading the shop's live sales.
//!
//! ## Records
//! A rotation is a `gossip:<id>` entry of `members` (`id`: 16 random bytes, hex), a JSON string
//! [`GossipRecord`]: a fresh random 32-byte key, wrapped to each device that should read gossip
//! (every unrevoked till of the shop when it was written: relays are in no gossip topic) with
//! `sealed::wrap_key` (X25519 from the device's ed25519 key, HKDF with
//! [`WRAP_INFO`]), and the ids of the records it **supersedes** (the current ones when it was
//! written). Only owners write `members` entries other than staff people (`trust::verify`), so
//! only an owner rotates. A rotation is written
//! - in the same change as the revocation of a device, an owner or a manager
//!   (`domain::commands::revoke_member`), wrapped to every remaining till;
//! - at shop creation, and once for a shop created before rotations existed, when an owner
//!   next signs in (until then the shop uses the legacy key below).
//!
//! ## The current key, and concurrent rotations
//! The **current records** are those no other record supersedes. Two owners revoking on two
//! devices at the same time each write a record superseding the same old one: after they merge
//! both are current. The gossip key is then derived from **all** current records together
//! ([`effective_key`]: SHA-256 over the shop id and each current record's id and key, in id
//! order), so a device needs every one of them to read gossip. A device revoked by either
//! rotation is missing from that record's recipients, so it cannot derive the key — whichever
//! order the records arrive in, every node ends at the same key, with no tie to break. The next
//! rotation supersedes them all.
//!
//! A till admitted after a record was written is not among its recipients: the device that
//! admits it hands it the current records' keys with its invite (`Invite::gossip_keys`, over
//! the connection the key exchange authenticated), and it keeps them in `meta` ([`meta_key`]).
//! One that still misses a key (admitted while another owner rotated elsewhere) asks a member
//! peer (`SyncRequest::GossipKeys`, answered only to an unrevoked till of the shop over the
//! authenticated connection).
//!
//! With no record at all the key is the **legacy** one, derived from the `vault`'s
//! `shop_secret` ([`legacy_key`]), as before rotations existed.
//!
//! ## The topic
//! The gossipsub topic is derived from the key ([`topic`]), so after a rotation gossip moves to
//! a topic whose messages a revoked device could not open anyway. For
//! `mesh::OLD_KEY_GRACE` after a node switches, it still accepts messages sealed with the key
//! before (devices that had not learnt the rotation yet); it publishes only with the new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::Result;

/// HKDF info for a gossip key wrapped to a device (never accepted as a backup's file key).
pub const WRAP_INFO: &[u8] = b"tillmesh-gossip-key-1";

/// Prefix of rotation entries in `members`.
pub const PREFIX: &str = "gossip:";

/// Longest id accepted (hex of 16 bytes is 32).
const MAX_ID: usize = 64;

/// A gossip key wrapped to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The device id.
    pub device: String,
    /// Ephemeral X25519 public key (hex).
    pub ephemeral: String,
    /// The key, wrapped (hex, 48 bytes).
    pub key: String,
}

/// One rotation (a `gossip:<id>` entry of `members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipRecord {
    /// Ids of the records that were current when this one was written.
    pub supersedes: Vec<String>,
    /// Who rotated (person id).
    pub by: String,
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// Why: `revoked <id>`, `created`, `upgrade`.
    pub reason: String,
    /// The key, once per device that may read gossip.
    pub wrapped: Vec<WrappedKey>,
}

impl GossipRecord {
    /// Parses an entry's JSON; `None` if malformed (a malformed record is ignored, and so
    /// supersedes nothing).
    pub fn parse(json: &str) -> Option<GossipRecord> {
        serde_json::from_str(json).ok()
    }

    /// The key wrapped for `device_id`, opened with that device's key.
    pub fn open(&self, device_id: &str, key: &SigningKey) -> Option<[u8; 32]> {
        let w = self.wrapped.iter().find(|w| w.device == device_id)?;
        let ephemeral: [u8; 32] = hex::decode(&w.ephemeral).ok()?.try_into().ok()?;
        let wrapped = hex::decode(&w.key).ok()?;
        crate::sealed::unwrap_key(&ephemeral, &wrapped, key, WRAP_INFO)
    }
}

/// A new rotation superseding `current`, wrapped to `recipients` (device id, key). Returns the
/// record's id, the record and the fresh key.
pub fn rotate(
    current: &[String],
    recipients: &[(String, VerifyingKey)],
    by: Uuid,
    at: i64,
    reason: &str,
) -> Result<(String, GossipRecord, [u8; 32])> {
    let key = crate::identity::random_bytes::<32>();
    let id = hex::encode(crate::identity::random_bytes::<16>());
    let mut wrapped = Vec::with_capacity(recipients.len());
    for (device, pk) in recipients {
        let (ephemeral, sealed) = crate::sealed::wrap_key(&key, pk, WRAP_INFO)?;
        wrapped.push(WrappedKey {
            device: device.clone(),
            ephemeral: hex::encode(ephemeral),
            key: hex::encode(sealed),
        });
    }
    let record = GossipRecord {
        supersedes: current.to_vec(),
        by: by.to_string(),
        at,
        reason: reason.to_string(),
        wrapped,
    };
    Ok((id, record, key))
}

/// Whether `id` is a well-formed record id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The current records (superseded by no other), by id.
pub fn current(records: &BTreeMap<String, GossipRecord>) -> Vec<String> {
    let superseded: BTreeSet<&String> = records.values().flat_map(|r| &r.supersedes).collect();
    records
        .keys()
        .filter(|id| !superseded.contains(id))
        .cloned()
        .collect()
}

/// The gossip key of a shop whose current records have these keys (each id once; the order
/// does not matter).
pub fn effective_key(shop_id: Uuid, keys: &[(String, [u8; 32])]) -> [u8; 32] {
    let mut sorted: Vec<&(String, [u8; 32])> = keys.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new()
        .chain_update(b"tillmesh/gossip-key/2/")
        .chain_update(shop_id.as_bytes());
    for (id, key) in sorted {
        h.update((id.len() as u32).to_le_bytes());
        h.update(id.as_bytes());
        h.update(key);
    }
    h.finalize().into()
}

/// The gossip key of a shop that never rotated: from the `vault`'s shop secret.
pub fn legacy_key(shop_id: Uuid, secret: &str) -> [u8; 32] {
    Sha256::digest(format!("tillmesh/gossip-key/{shop_id}/{secret}")).into()
}

/// The gossipsub topic for a key: a hash of it, so the name reveals nothing.
pub fn topic(key: &[u8; 32]) -> String {
    let h = Sha256::new()
        .chain_update(b"tillmesh/topic/2/")
        .chain_update(key)
        .finalize();
    hex::encode(&h[..16])
}

/// The `meta` key a record's key is kept under when a peer handed it over.
pub fn meta_key(id: &str) -> String {
    format!("gossip_key:{id}")
}

/// What a node needs to seal and open gossip: the key and its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipKey {
    /// The key.
    pub key: [u8; 32],
}

impl GossipKey {
    /// The topic for this key.
    pub fn topic(&self) -> String {
        topic(&self.key)
    }
}

/// The current key of a shop, if this device can derive it: `records` from `members`,
/// `known` the record keys a peer handed over (by id), `secret` the legacy shop secret.
/// `Err(missing)` lists the current records this device can open neither way.
pub fn derive(
    shop_id: Uuid,
    records: &BTreeMap<String, GossipRecord>,
    secret: Option<&str>,
    device_id: &str,
    device_key: &SigningKey,
    known: &HashMap<String, [u8; 32]>,
) -> std::result::Result<Option<GossipKey>, Vec<String>> {
    let ids = current(records);
    if ids.is_empty() {
        return Ok(secret.map(|s| GossipKey {
            key: legacy_key(shop_id, s),
        }));
    }
    let mut keys = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        let found = known
            .get(&id)
            .copied()
            .or_else(|| records[&id].open(device_id, device_key));
        match found {
            Some(k) => keys.push((id, k)),
            None => missing.push(id),
        }
    }
    if missing.is_empty() {
        Ok(Some(GossipKey {
            key: effective_key(shop_id, &keys),
        }))
    } else {
        Err(missing)
    }
}

/// Bytes a sealed gossip message adds to the envelope: the nonce and the tag.
pub const GOSSIP_SEAL_BYTES: usize = 24 + 16;

/// Seals an envelope for the shop's gossip: XChaCha20-Poly1305 under the shop's gossip key
/// (from the shop secret, which only member devices hold), so a peer that connects without
/// being a member — on the LAN, or through a relay's circuit — and subscribes to the topic
/// reads nothing. The nonce is derived from the key and the envelope, so the same envelope
/// published by two devices is the same message (gossipsub's message id is its hash).
pub fn seal_gossip(key: &[u8; 32], envelope: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"tillmesh/gossip-nonce/")
        .chain_update(key)
        .chain_update(envelope)
        .finalize();
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&digest[..24]);
    let sealed = chacha20poly1305::XChaCha20Poly1305::new(key.into())
        .encrypt(&nonce.into(), envelope)
        .expect("sealing in memory does not fail");
    let mut out = Vec::with_capacity(nonce.len() + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a sealed gossip message with `key` (what [`seal_gossip`] made): the envelope bytes,
/// or an error if it was not sealed with that key or was altered.
pub fn open_gossip(key: &[u8; 32], data: &[u8]) -> crate::Result<Vec<u8>> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    if data.len() < GOSSIP_SEAL_BYTES {
        return Err(crate::Error::invalid(
            "gossip",
            "too short to be a sealed envelope",
        ));
    }
    let (nonce, sealed) = data.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().expect("24 bytes");
    chacha20poly1305::XChaCha20Poly1305::new(key.into())
        .decrypt(&nonce.into(), sealed)
        .map_err(|_| crate::Error::invalid("gossip", "not sealed with this shop's key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{device_id, new_signing_key};

    fn dev() -> (String, SigningKey) {
        let k = new_signing_key();
        (device_id(&k.verifying_key()), k)
    }

    fn to(devs: &[&(String, SigningKey)]) -> Vec<(String, VerifyingKey)> {
        devs.iter()
            .map(|(id, k)| (id.clone(), k.verifying_key()))
            .collect()
    }

    fn key_of(
        shop: Uuid,
        records: &BTreeMap<String, GossipRecord>,
        d: &(String, SigningKey),
    ) -> Option<[u8; 32]> {
        derive(shop, records, Some("s"), &d.0, &d.1, &HashMap::new())
            .ok()
            .flatten()
            .map(|k| k.key)
    }

    /// A rotation reaches its recipients only; the legacy key is the shop secret's; every
    /// recipient derives the same key and the topic changes with it.
    #[test]
    fn a_rotation_leaves_the_revoked_device_out() {
        let shop = Uuid::new_v4();
        let (a, b, revoked) = (dev(), dev(), dev());
        let mut records = BTreeMap::new();
        let legacy = key_of(shop, &records, &a).unwrap();
        assert_eq!(legacy, legacy_key(shop, "s"));
        assert_eq!(key_of(shop, &records, &revoked), Some(legacy));
        let (id, r, _) = rotate(&[], &to(&[&a, &b]), Uuid::nil(), 1, "revoked x").unwrap();
        records.insert(id, r);
        let ka = key_of(shop, &records, &a).unwrap();
        assert_ne!(ka, legacy);
        assert_ne!(topic(&ka), topic(&legacy));
        assert_eq!(key_of(shop, &records, &b), Some(ka));
        assert_eq!(key_of(shop, &records, &revoked), None);
        // A peer handing the record's key over lets a later device in.
        let missing = derive(
            shop,
            &records,
            None,
            &revoked.0,
            &revoked.1,
            &HashMap::new(),
        );
        let ids = missing.unwrap_err();
        assert_eq!(ids.len(), 1);
        let handed: HashMap<String, [u8; 32]> = ids
            .iter()
            .map(|id| (id.clone(), records[id].open(&a.0, &a.1).unwrap()))
            .collect();
        let k = derive(shop, &records, None, &revoked.0, &revoked.1, &handed).unwrap();
        assert_eq!(k.map(|k| k.key), Some(ka));
    }

    /// Two owners rotate at once, each revoking a different device: both records are current,
    /// the key needs both, so neither revoked device can derive it, whatever order the records
    /// arrive in; a later rotation supersedes both.
    #[test]
    fn concurrent_rotations_need_every_current_record() {
        let shop = Uuid::new_v4();
        let (a, x, w) = (dev(), dev(), dev());
        let mut records = BTreeMap::new();
        let (first, r, _) = rotate(&[], &to(&[&a, &x, &w]), Uuid::nil(), 1, "created").unwrap();
        records.insert(first.clone(), r);
        let before = key_of(shop, &records, &x).unwrap();
        // One owner revokes x, another w, neither seeing the other.
        let (r1, rec1, _) = rotate(
            std::slice::from_ref(&first),
            &to(&[&a, &w]),
            Uuid::nil(),
            2,
            "revoked x",
        )
        .unwrap();
        let (r2, rec2, _) = rotate(
            std::slice::from_ref(&first),
            &to(&[&a, &x]),
            Uuid::nil(),
            2,
            "revoked w",
        )
        .unwrap();
        let mut one = records.clone();
        one.insert(r1.clone(), rec1.clone());
        let mut both = one.clone();
        both.insert(r2.clone(), rec2.clone());
        let mut other_order = records.clone();
        other_order.insert(r2.clone(), rec2);
        other_order.insert(r1.clone(), rec1);
        assert_eq!(current(&both).len(), 2);
        let k = key_of(shop, &both, &a).unwrap();
        assert_eq!(key_of(shop, &other_order, &a), Some(k));
        assert_ne!(Some(k), key_of(shop, &one, &a));
        assert_ne!(k, before);
        assert_eq!(key_of(shop, &both, &x), None);
        assert_eq!(key_of(shop, &both, &w), None);
        // The next rotation supersedes both.
        let (r3, rec3, _) = rotate(&current(&both), &to(&[&a]), Uuid::nil(), 3, "x").unwrap();
        both.insert(r3.clone(), rec3);
        assert_eq!(current(&both), vec![r3]);
        assert!(key_of(shop, &both, &a).is_some());
    }

    /// A wrapped key opens only for its device, and a gossip key is not a file key.
    #[test]
    fn wrapped_keys_open_for_their_device_only() {
        let (a, b) = (dev(), dev());
        let (_, r, key) = rotate(&[], &to(&[&a]), Uuid::nil(), 1, "t").unwrap();
        assert_eq!(r.open(&a.0, &a.1), Some(key));
        assert_eq!(r.open(&a.0, &b.1), None);
        assert_eq!(r.open(&b.0, &b.1), None);
        let w = &r.wrapped[0];
        let e: [u8; 32] = hex::decode(&w.ephemeral).unwrap().try_into().unwrap();
        let sealed = hex::decode(&w.key).unwrap();
        assert_eq!(
            crate::sealed::unwrap_key(&e, &sealed, &a.1, b"tillmesh-snapshot-1 file key"),
            None
        );
        assert!(GossipRecord::parse("{").is_none());
        assert!(valid_id(&"ab".repeat(16)) && !valid_id("x") && !valid_id(""));
    }

    #[test]
    fn sealed_gossip_opens_only_with_the_shop_key_and_is_deterministic() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let envelope = b"an encoded envelope".to_vec();
        let sealed = seal_gossip(&key, &envelope);
        assert_eq!(sealed.len(), envelope.len() + GOSSIP_SEAL_BYTES);
        assert!(
            !sealed
                .windows(envelope.len())
                .any(|w| w == envelope.as_slice()),
            "the envelope is not readable in the message"
        );
        assert_eq!(open_gossip(&key, &sealed).unwrap(), envelope);
        // The same envelope sealed twice is the same message (one gossipsub message id).
        assert_eq!(seal_gossip(&key, &envelope), sealed);
        assert_ne!(seal_gossip(&key, b"another envelope"), sealed);
        // Another shop's key, a flipped bit, a cut message, nothing at all: refused.
        assert!(open_gossip(&other, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open_gossip(&key, &flipped).is_err());
        assert!(open_gossip(&key, &sealed[..sealed.len() - 1]).is_err());
        assert!(open_gossip(&key, &[]).is_err());
        assert!(
            open_gossip(&key, &envelope).is_err(),
            "an unsealed envelope"
        );
    }
}
