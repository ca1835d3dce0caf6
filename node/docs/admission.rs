//! Joining a shop: admission certificates and invites (protocol 2).
//!
//! An owner or manager (logged in) creates an invite: an [`AdmissionCert`] signed by their
//! person key (shop and its genesis, device role — managers admit tills only —, name, receipt
//! prefix, expiry, and the device that will countersign it: the one the invite is made on),
//! kept as a pending invite on that device only and shown as a short code (for typing) and a
//! full invite string (for a QR: the code plus addresses).
//!
//! The new device redeems the code with that device (single use, before expiry — judged by
//! the inviting device's clock only), which **countersigns** the new device's key (the one its
//! libp2p connection is authenticated with) and the shop's genesis. The code itself never goes
//! on the wire: a short code is tried on whatever device answers mDNS, so it is redeemed by a
//! SPAKE2 exchange keyed by the code, in which the inviting device proves it knows the code
//! before the new device does, and failed runs per invite are capped (see [`crate::redeem`]). The new device pulls the
//! shop and admits itself: one `members` change signed by its own key that adds only its
//! `device:<id>` entry, carrying the [`AdmittedCertificate`] (certificate + countersignature).
//! Every peer checks that change (`trust::verify`): the certificate's signature and its issuer's
//! role at the named heads, the countersigning device a member at those heads, the
//! countersignature binding exactly the signer's key and this shop's genesis, and that the
//! change touches nothing else. No secret ever enters a shared document, and a certificate
//! admits only the one key it was countersigned for: a copy of `members` (a disk, a backup)
//! admits nobody new, and an owner of another shop who lists this shop's device keys admits
//! nobody (see [`super::members`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::DeviceRole;

/// What a joiner is told when a device does not prove it made the code (a short code is tried
/// on every device found on the LAN until the one that made it proves so; see
/// [`crate::redeem`]), and what this device answers for a code it does not hold.
pub const UNKNOWN_INVITE: &str = "unknown invite code (check it, or ask for a new invite)";

/// A signed permission for one device to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionCert {
    /// Certificate id.
    pub id: Uuid,
    /// The shop.
    pub shop_id: Uuid,
    /// Hash of the shop's first `members` change: a certificate is for one shop only.
    pub genesis: [u8; 32],
    /// Role the device gets.
    pub role: DeviceRole,
    /// Device name.
    pub name: String,
    /// Receipt prefix the device gets (`T2` …).
    pub receipt_prefix: String,
    /// Last moment to redeem it (ms since epoch; judged by the countersigning device only).
    pub expires_at: i64,
    /// The device that countersigns the new device's key (where the invite was made).
    pub countersigner: [u8; 32],
    /// Issuer's person key.
    pub issuer: [u8; 32],
    /// Issuer's signature over the fields above.
    pub signature: Vec<u8>,
}

impl AdmissionCert {
    fn message(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.signature = Vec::new();
        let mut h = Sha256::new();
        h.update(b"tillmesh/admission/2\0");
        h.update(postcard::to_allocvec(&c).expect("a certificate serializes"));
        h.finalize().to_vec()
    }

    /// Signs the certificate with the issuer's person key.
    pub fn sign(mut self, key: &ed25519_dalek::SigningKey) -> AdmissionCert {
        use ed25519_dalek::Signer;
        self.issuer = key.verifying_key().to_bytes();
        self.signature = key.sign(&self.message()).to_bytes().to_vec();
        self
    }

    /// Checks the issuer's signature (not the issuer's rights).
    pub fn verify_signature(&self) -> bool {
        verify_with(&self.issuer, &self.message(), &self.signature)
    }

    /// What the countersigning device signs to admit `device`.
    fn countersign_message(&self, device: &[u8; 32]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"tillmesh/countersign/2\0");
        h.update(self.message());
        h.update(device);
        h.update(self.genesis);
        h.finalize().to_vec()
    }

    /// The countersignature admitting `device` (made by the device named in the certificate).
    pub fn countersign(
        &self,
        device: &[u8; 32],
        key: &ed25519_dalek::SigningKey,
    ) -> AdmittedCertificate {
        use ed25519_dalek::Signer;
        AdmittedCertificate {
            cert: self.clone(),
            device: *device,
            countersignature: key
                .sign(&self.countersign_message(device))
                .to_bytes()
                .to_vec(),
        }
    }
}

fn verify_with(key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (
        ed25519_dalek::VerifyingKey::from_bytes(key),
        <[u8; 64]>::try_from(signature),
    ) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// A certificate countersigned for one device: what an admitted device writes into its
/// `device:<id>` entry (field `certificate`, JSON) and what peers check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmittedCertificate {
    /// The certificate.
    pub cert: AdmissionCert,
    /// The admitted device's key.
    pub device: [u8; 32],
    /// The countersigning device's signature over the certificate, the key and the genesis.
    pub countersignature: Vec<u8>,
}

impl AdmittedCertificate {
    /// Whether this admits `device` into the shop with `genesis` (and `shop_id`, when known):
    /// both signatures hold and everything is bound. The issuer's and countersigner's rights
    /// are checked by `trust::verify` against `members` at the admission's heads.
    pub fn admits(
        &self,
        device: &[u8; 32],
        genesis: automerge::ChangeHash,
        shop_id: Option<Uuid>,
    ) -> bool {
        &self.device == device
            && self.cert.genesis == genesis.0
            && shop_id.is_none_or(|s| s == self.cert.shop_id)
            && self.cert.verify_signature()
            && verify_with(
                &self.cert.countersigner,
                &self.cert.countersign_message(device),
                &self.countersignature,
            )
    }
}

/// What a redeemed invite gives the new device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The certificate, countersigned for the redeeming device.
    pub admitted: AdmittedCertificate,
    /// Hash of the shop's first `members` change.
    pub genesis: [u8; 32],
    /// The devices admitted before protocol 2 that the inviting device pinned (see
    /// [`super::members::Anchor`]).
    pub legacy_devices: Vec<[u8; 32]>,
    /// For a till: the keys of the shop's current gossip key rotations (record id, key; see
    /// [`super::gossip_keys`]), so it reads the shop's gossip from its first moment as a
    /// member (the rotations were wrapped to the tills there were before it).
    pub gossip_keys: Vec<(String, [u8; 32])>,
}

impl Invite {
    /// The certificate.
    pub fn cert(&self) -> &AdmissionCert {
        &self.admitted.cert
    }
}

/// The full invite string (for a QR code): the short code and where to redeem it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The short code.
    pub code: String,
    /// Addresses of the issuing node (multiaddrs).
    pub addrs: Vec<String>,
    /// Hex hash of the shop id (to find the shop by mDNS).
    pub shop_hash: String,
}

const TICKET_PREFIX: &str = "tillmesh-invite:";

impl Ticket {
    /// `tillmesh-invite:<base32>`.
    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self).expect("a ticket serializes");
        format!(
            "{TICKET_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&bytes)
        )
    }

    /// Parses a full invite string, or a bare short code (then without addresses).
    pub fn parse(s: &str) -> Result<Ticket> {
        let s = s.trim();
        if let Some(body) = s.strip_prefix(TICKET_PREFIX) {
            let bytes = data_encoding::BASE32_NOPAD
                .decode(body.to_ascii_uppercase().as_bytes())
                .map_err(|_| Error::invalid("invite", "the invite is damaged (not base32)"))?;
            if bytes.len() > 4096 {
                return Err(Error::invalid("invite", "the invite is too long"));
            }
            let t: Ticket = postcard::from_bytes(&bytes)
                .map_err(|_| Error::invalid("invite", "the invite is damaged"))?;
            normalize_code(&t.code)?;
            return Ok(t);
        }
        Ok(Ticket {
            code: normalize_code(s)?,
            addrs: Vec::new(),
            shop_hash: String::new(),
        })
    }
}

/// Length of a short code in base32 characters (50 bits).
pub const CODE_LEN: usize = 10;

/// A fresh short code, `ABCDE-FGHIJ`.
pub fn new_code() -> String {
    let raw = crate::identity::random_bytes::<8>();
    let s = data_encoding::BASE32_NOPAD.encode(&raw);
    format!("{}-{}", &s[..5], &s[5..CODE_LEN])
}

/// Canonical form of a typed code: upper case, dash after 5 characters.
pub fn normalize_code(s: &str) -> Result<String> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if clean.len() != CODE_LEN
        || !clean
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(Error::invalid(
            "invite",
            "not an invite: expected a code like ABCDE-FGHIJ or a full invite string",
        ));
    }
    Ok(format!("{}-{}", &clean[..5], &clean[5..]))
}

/// Hex hash of a shop id, as advertised for discovery.
pub fn shop_hash(shop_id: Uuid) -> String {
    hex::encode(&Sha256::digest(format!("tillmesh/shop/{shop_id}"))[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_signature_binds_every_field() {
        let key = crate::identity::new_signing_key();
        let till = crate::identity::new_signing_key();
        let cert = AdmissionCert {
            id: Uuid::new_v4(),
            shop_id: Uuid::new_v4(),
            role: DeviceRole::Till,
            name: "Till 2".into(),
            receipt_prefix: "T2".into(),
            genesis: [3; 32],
            expires_at: 1,
            countersigner: till.verifying_key().to_bytes(),
            issuer: [0; 32],
            signature: vec![],
        }
        .sign(&key);
        assert!(cert.verify_signature());
        let mut forged = cert.clone();
        forged.role = DeviceRole::Relay;
        assert!(!forged.verify_signature());

        // The countersignature binds the device key and the genesis.
        let new = crate::identity::new_signing_key()
            .verifying_key()
            .to_bytes();
        let other = crate::identity::new_signing_key()
            .verifying_key()
            .to_bytes();
        let genesis = automerge::ChangeHash([3; 32]);
        let admitted = cert.countersign(&new, &till);
        assert!(admitted.admits(&new, genesis, Some(cert.shop_id)));
        assert!(!admitted.admits(&other, genesis, None), "another key");
        assert!(
            !admitted.admits(&new, automerge::ChangeHash([4; 32]), None),
            "another shop"
        );
        assert!(
            !admitted.admits(&new, genesis, Some(Uuid::new_v4())),
            "another shop id"
        );
        let mut moved = admitted.clone();
        moved.device = other;
        assert!(
            !moved.admits(&other, genesis, None),
            "countersigned for another key"
        );
        // Only the device the certificate names can countersign.
        let rogue = cert.countersign(&new, &key);
        assert!(!rogue.admits(&new, genesis, None));
    }

    #[test]
    fn tickets_and_codes_parse() {
        let code = new_code();
        assert_eq!(normalize_code(&code.to_lowercase()).unwrap(), code);
        let t = Ticket {
            code: code.clone(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            shop_hash: "ab".into(),
        };
        assert_eq!(Ticket::parse(&t.encode()).unwrap(), t);
        assert_eq!(Ticket::parse(&code).unwrap().code, code);
        assert!(Ticket::parse("hello").is_err());
        assert!(Ticket::parse("tillmesh-invite:!!!").is_err());
        assert!(Ticket::parse("tillmesh-invite:AAAA").is_err());
    }
}
