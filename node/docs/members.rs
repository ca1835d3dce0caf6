//! The one reader of `members`: who belongs to the shop, as [`trust::verify`](super::trust),
//! the network gate, the device list, the UI and the relay all see it.
//!
//! `members` layout (all at the root, so no container is ever created on two devices):
//! - `schema`: 1, `shop_id`: uuid string, `recovery`: the recovery key (hex, acts as owner);
//! - `device:<id>` → map `{public_key, name, role: "till"|"relay", receipt_prefix, revoked,
//!   admission?, certificate?}`;
//! - `person:<uuid>` → map `{name, username, role, public_key?, pin_hash?, revoked}`;
//! - `revocation:<public key hex>` → JSON string `{accepted: [change hash hex], by, time}`:
//!   changes by that key outside `accepted` are invalid everywhere;
//! - `admission:<cert id>` → the JSON record of an admission made before protocol 2 (it carried
//!   the invite's secret; such records admit nobody any more, see [`Anchor::legacy_devices`]);
//! - `gossip:<id>` → the JSON [`GossipRecord`](super::gossip_keys::GossipRecord) of a gossip
//!   key rotation (see [`super::gossip_keys`]).
//!
//! **A device entry counts only if** (checked here, on every read):
//! - its `certificate` is an [`AdmittedCertificate`](super::admission::AdmittedCertificate):
//!   an admission certificate for *this* shop's genesis, signed by its issuer, and countersigned
//!   by the inviting device for exactly this device key — an owner who lists someone else's key
//!   (peer ids are public) admits nobody, and a certificate of another shop admits nobody here;
//! - or it is the shop's first device, written by the genesis change itself;
//! - or its key is one of the [`Anchor::legacy_devices`]: the devices a node already had when it
//!   was upgraded to protocol 2 (pinned locally, handed to joiners with their invite).
//!
//! The entry's id must be the id of its key, and a key with a `revocation:` record is revoked
//! whatever the entry's flag says (a concurrent re-creation of the entry cannot un-revoke it).
//! Whether the issuer had the right to admit is judged by `verify` when the admission change is
//! applied (against `members` at the heads it names); this reader judges what no later edit can
//! forge.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{AutoCommit, ChangeHash, ROOT};
use uuid::Uuid;

use super::am;
use crate::model::{DeviceRole, Role};

/// What a node pinned locally about its shop: the genesis (the hash of the shop's first
/// `members` change, pinned at creation, join or restore) and the devices admitted before
/// protocol 2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchor {
    /// Hash of the shop's first `members` change.
    pub genesis: Option<ChangeHash>,
    /// Device keys admitted under protocol 1 (by a certificate and a secret kept in `members`),
    /// pinned when the node first ran protocol 2: they stay members (unless revoked); no other
    /// key can be admitted by a protocol-1 record any more.
    pub legacy_devices: BTreeSet<[u8; 32]>,
}

impl Anchor {
    /// From the `meta` values `genesis` (32 bytes) and `legacy_devices` (postcard list of keys;
    /// absent: none).
    pub fn from_meta(genesis: Option<&[u8]>, legacy: Option<&[u8]>) -> Anchor {
        Anchor {
            genesis: genesis
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(ChangeHash),
            legacy_devices: legacy
                .and_then(|b| postcard::from_bytes::<Vec<[u8; 32]>>(b).ok())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    /// Read from a transaction's `meta` table.
    pub fn in_tx(
        meta: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    ) -> crate::Result<Anchor> {
        let genesis = meta
            .get(crate::store::meta::GENESIS)?
            .map(|v| v.value().to_vec());
        let legacy = meta
            .get(crate::store::meta::LEGACY_DEVICES)?
            .map(|v| v.value().to_vec());
        Ok(Anchor::from_meta(genesis.as_deref(), legacy.as_deref()))
    }
}

/// Every key any `device:` entry of `members` names, admitted or not: what a node pins as
/// [`Anchor::legacy_devices`] when it is upgraded to protocol 2 (every device it had then was
/// admitted under protocol 1's rules).
pub fn listed_device_keys(doc: &AutoCommit) -> Vec<[u8; 32]> {
    am::keys(doc, &ROOT, None)
        .iter()
        .filter(|k| k.starts_with("device:"))
        .filter_map(|k| am::map(doc, &ROOT, k, None))
        .filter_map(|obj| am::string(doc, &obj, "public_key", None))
        .filter_map(|k| parse_key(&k))
        .collect()
}

/// A device that belongs to the shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDevice {
    /// Short device id (the first 8 bytes of its key, hex).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: DeviceRole,
    /// Its key.
    pub public_key: [u8; 32],
    /// Receipt prefix (`T2` …).
    pub receipt_prefix: String,
    /// Revoked by an owner.
    pub revoked: bool,
}

/// A person entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPerson {
    /// Person id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Person key (owners and managers).
    pub public_key: Option<[u8; 32]>,
    /// Staff PIN hash.
    pub pin_hash: Option<String>,
    /// Revoked.
    pub revoked: bool,
}

/// `members` as read at some heads.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The shop id.
    pub shop_id: Option<Uuid>,
    /// The recovery key.
    pub recovery: Option<[u8; 32]>,
    /// Devices that belong to the shop (revoked ones included, flagged), by id.
    pub devices: Vec<MemberDevice>,
    /// People, by username.
    pub people: Vec<MemberPerson>,
    /// Revoked keys → the change hashes accepted from them before.
    pub revocations: HashMap<[u8; 32], HashSet<[u8; 32]>>,
    /// Gossip key rotations, by id (malformed ones left out).
    pub gossip: std::collections::BTreeMap<String, super::gossip_keys::GossipRecord>,
}

impl Members {
    /// Reads `members` at `heads` (the current state if `None`).
    pub fn read(doc: &AutoCommit, heads: Option<&[ChangeHash]>, anchor: &Anchor) -> Members {
        let mut m = Members {
            shop_id: am::string(doc, &ROOT, "shop_id", heads)
                .and_then(|s| Uuid::parse_str(&s).ok()),
            recovery: am::string(doc, &ROOT, "recovery", heads).and_then(|s| parse_key(&s)),
            ..Members::default()
        };
        let keys = am::keys(doc, &ROOT, heads);
        for key in keys.iter().filter(|k| k.starts_with("revocation:")) {
            if let Some(pk) = key.strip_prefix("revocation:").and_then(parse_key) {
                let accepted = am::string(doc, &ROOT, key, heads)
                    .and_then(|s| serde_json::from_str::<RevocationRecord>(&s).ok())
                    .map(|r| r.accepted.iter().filter_map(|h| parse_key(h)).collect())
                    .unwrap_or_default();
                m.revocations.insert(pk, accepted);
            }
        }
        for key in &keys {
            if let Some(id) = key.strip_prefix(super::gossip_keys::PREFIX) {
                if let Some(r) = super::gossip_keys::valid_id(id)
                    .then(|| am::string(doc, &ROOT, key, heads))
                    .flatten()
                    .and_then(|json| super::gossip_keys::GossipRecord::parse(&json))
                {
                    m.gossip.insert(id.to_string(), r);
                }
            } else if let Some(id) = key.strip_prefix("device:") {
                // An entry without a valid admission is trusted by none and listed nowhere.
                if let Some(mut d) = read_device(doc, heads, key, id, anchor, m.shop_id) {
                    d.revoked |= m.revocations.contains_key(&d.public_key);
                    m.devices.push(d);
                }
            } else if let Some(id) = key.strip_prefix("person:") {
                let (Ok(id), Some(obj)) = (Uuid::parse_str(id), am::map(doc, &ROOT, key, heads))
                else {
                    continue;
                };
                let s = |f: &str| am::string(doc, &obj, f, heads);
                let Some(role) = s("role").and_then(|r| Role::parse(&r)) else {
                    continue;
                };
                let public_key = s("public_key").and_then(|k| parse_key(&k));
                let revoked = am::flag(doc, &obj, "revoked", heads)
                    || public_key.is_some_and(|k| m.revocations.contains_key(&k));
                m.people.push(MemberPerson {
                    id,
                    name: s("name").unwrap_or_default(),
                    username: s("username").unwrap_or_default(),
                    role,
                    public_key,
                    pin_hash: s("pin_hash"),
                    revoked,
                });
            }
        }
        m.devices.sort_by(|a, b| a.id.cmp(&b.id));
        m.people.sort_by(|a, b| a.username.cmp(&b.username));
        m
    }

    /// The device with this key.
    pub fn device_by_key(&self, key: &[u8; 32]) -> Option<&MemberDevice> {
        self.devices.iter().find(|d| &d.public_key == key)
    }

    /// Whether `key` is a device of the shop that is not revoked.
    pub fn is_member_device(&self, key: &[u8; 32]) -> bool {
        self.device_by_key(key).is_some_and(|d| !d.revoked)
    }
}

/// One `device:<id>` entry, if it counts (see the module docs).
fn read_device(
    doc: &AutoCommit,
    heads: Option<&[ChangeHash]>,
    key: &str,
    id: &str,
    anchor: &Anchor,
    shop_id: Option<Uuid>,
) -> Option<MemberDevice> {
    let obj = am::map(doc, &ROOT, key, heads)?;
    let s = |f: &str| am::string(doc, &obj, f, heads);
    let role = match s("role").as_deref() {
        Some("till") => DeviceRole::Till,
        Some("relay") => DeviceRole::Relay,
        _ => return None,
    };
    let public_key = parse_key(&s("public_key")?)?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public_key).ok()?;
    if crate::identity::device_id(&verifying) != id {
        return None;
    }
    let receipt_prefix = s("receipt_prefix").unwrap_or_default();
    let admitted = if let Some(json) = s("certificate") {
        let genesis = anchor.genesis?;
        serde_json::from_str::<super::admission::AdmittedCertificate>(&json)
            .ok()
            .is_some_and(|c| {
                c.admits(&public_key, genesis, shop_id)
                    && c.cert.role == role
                    && c.cert.receipt_prefix == receipt_prefix
            })
    } else {
        anchor.legacy_devices.contains(&public_key)
            || anchor
                .genesis
                .is_some_and(|g| in_genesis(doc, key, &public_key, g))
    };
    admitted.then(|| MemberDevice {
        id: id.to_string(),
        name: s("name").unwrap_or_default(),
        role,
        public_key,
        receipt_prefix,
        revoked: am::flag(doc, &obj, "revoked", heads),
    })
}

/// Whether the genesis change itself wrote this device entry with this key (the shop's first
/// device, written at creation).
fn in_genesis(doc: &AutoCommit, key: &str, public_key: &[u8; 32], genesis: ChangeHash) -> bool {
    // Automerge reads at heads it does not have as at an empty document: nothing.
    let at = [genesis];
    am::map(doc, &ROOT, key, Some(&at[..]))
        .and_then(|obj| am::string(doc, &obj, "public_key", Some(&at[..])))
        .and_then(|k| parse_key(&k))
        .is_some_and(|k| &k == public_key)
}

/// What a revocation records (stored as a JSON string in `members`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RevocationRecord {
    /// Changes accepted from the key before it was revoked (hex hashes).
    pub accepted: Vec<String>,
    /// Who revoked it (person id or `recovery`).
    pub by: String,
    /// When (ms).
    pub time: i64,
}

pub(crate) fn parse_key(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;
    use crate::docs::admission::AdmissionCert;

    fn put_device(doc: &mut AutoCommit, key: &ed25519_dalek::SigningKey, prefix: &str) -> String {
        let id = crate::identity::device_id(&key.verifying_key());
        let obj = doc
            .put_object(ROOT, format!("device:{id}"), automerge::ObjType::Map)
            .unwrap();
        doc.put(&obj, "role", "till").unwrap();
        doc.put(
            &obj,
            "public_key",
            hex::encode(key.verifying_key().as_bytes()),
        )
        .unwrap();
        doc.put(&obj, "receipt_prefix", prefix).unwrap();
        id
    }

    /// The one membership rule: the genesis device, a countersigned certificate for this shop,
    /// or a key pinned at the upgrade — an entry an owner merely wrote admits nobody.
    #[test]
    fn only_admitted_devices_count() {
        let shop = Uuid::new_v4();
        let (first, legacy, listed, admitted) = (
            crate::identity::new_signing_key(),
            crate::identity::new_signing_key(),
            crate::identity::new_signing_key(),
            crate::identity::new_signing_key(),
        );
        let owner = crate::identity::new_signing_key();
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "shop_id", shop.to_string()).unwrap();
        put_device(&mut doc, &first, "T1");
        doc.commit();
        let genesis = doc.get_heads()[0];
        // Protocol 1: an admission record beside the entry.
        let id = put_device(&mut doc, &legacy, "T2");
        let obj = am::map(&doc, &ROOT, &format!("device:{id}"), None).unwrap();
        doc.put(&obj, "admission", "c1").unwrap();
        doc.put(ROOT, "admission:c1", "{}").unwrap();
        // An owner listing a key it has no certificate for.
        put_device(&mut doc, &listed, "T3");
        // Protocol 2: countersigned by the first device.
        let cert = AdmissionCert {
            id: Uuid::new_v4(),
            shop_id: shop,
            genesis: genesis.0,
            role: DeviceRole::Till,
            name: "Till 4".into(),
            receipt_prefix: "T4".into(),
            expires_at: 0,
            countersigner: first.verifying_key().to_bytes(),
            issuer: [0; 32],
            signature: vec![],
        }
        .sign(&owner);
        let admitted_pk = admitted.verifying_key().to_bytes();
        let json = serde_json::to_string(&cert.countersign(&admitted_pk, &first)).unwrap();
        let id = put_device(&mut doc, &admitted, "T4");
        let obj = am::map(&doc, &ROOT, &format!("device:{id}"), None).unwrap();
        doc.put(&obj, "certificate", json.as_str()).unwrap();
        doc.commit();

        let keys = |m: &Members| -> Vec<[u8; 32]> {
            let mut k: Vec<_> = m.devices.iter().map(|d| d.public_key).collect();
            k.sort();
            k
        };
        let sorted = |mut v: Vec<[u8; 32]>| {
            v.sort();
            v
        };
        let pk = |k: &ed25519_dalek::SigningKey| k.verifying_key().to_bytes();
        let anchor = Anchor {
            genesis: Some(genesis),
            legacy_devices: Default::default(),
        };
        let m = Members::read(&doc, None, &anchor);
        assert_eq!(keys(&m), sorted(vec![pk(&first), admitted_pk]));

        // A node upgraded with this members pins every device it had: the legacy one counts.
        let upgraded = Anchor {
            genesis: Some(genesis),
            legacy_devices: listed_device_keys(&doc).into_iter().collect(),
        };
        assert_eq!(keys(&Members::read(&doc, None, &upgraded)).len(), 4);

        // Another shop's genesis: only its own first device would count, and the certificate
        // for this shop admits nobody there.
        let elsewhere = Anchor {
            genesis: Some(ChangeHash([9; 32])),
            legacy_devices: Default::default(),
        };
        assert!(Members::read(&doc, None, &elsewhere).devices.is_empty());

        // A revocation record revokes the key, whatever the entry's flag says.
        doc.put(
            ROOT,
            format!("revocation:{}", hex::encode(admitted_pk)),
            r#"{"accepted":[],"by":"recovery","time":0}"#,
        )
        .unwrap();
        doc.commit();
        let m = Members::read(&doc, None, &anchor);
        assert!(m.device_by_key(&admitted_pk).unwrap().revoked);
        assert!(!m.is_member_device(&admitted_pk) && m.is_member_device(&pk(&first)));
    }
}
