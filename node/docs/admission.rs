//! Joining a shop: admission certificates and invites.
//!
//! An owner or manager (logged in) creates an invite: an [`AdmissionCert`] signed by their
//! person key (shop, device role — managers admit tills only —, name, receipt prefix, expiry,
//! hash of a one-time secret), kept as a pending invite on the node that made it and shown as a
//! short code (for typing) and a full invite string (for a QR: the code plus addresses).
//! The new device redeems the code with that node (single use, before expiry), receives the
//! certificate and the secret, pulls the shop, and admits itself: one `members` change signed by
//! its own device key that adds `device:<id>` and `admission:<cert id>` (the certificate and the
//! secret). Every peer checks that change (see `trust::verify`): the certificate's signature,
//! its issuer's role at the named heads, the secret, that the change touches nothing else and
//! that the certificate was not used before.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::model::DeviceRole;
use crate::error::{Error, Result};

/// A signed permission for one device to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionCert {
    /// Certificate id (single use).
    pub id: Uuid,
    /// The shop.
    pub shop_id: Uuid,
    /// Role the device gets.
    pub role: DeviceRole,
    /// Device name.
    pub name: String,
    /// Receipt prefix the device gets (`T2` …).
    pub receipt_prefix: String,
    /// Last moment to redeem it (ms since epoch; checked by the issuing node).
    pub expires_at: i64,
    /// SHA-256 of the one-time secret.
    pub secret_hash: [u8; 32],
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
        h.update(b"tillmesh/admission/1\0");
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
        let (Ok(key), Ok(sig)) = (
            ed25519_dalek::VerifyingKey::from_bytes(&self.issuer),
            <[u8; 64]>::try_from(self.signature.as_slice()),
        ) else {
            return false;
        };
        key.verify_strict(&self.message(), &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok()
    }
}

/// SHA-256 of a secret.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// What a redeemed invite gives the new device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The certificate.
    pub cert: AdmissionCert,
    /// The one-time secret (its hash is in the certificate).
    pub secret: Vec<u8>,
    /// Hash of the shop's first `members` change.
    pub genesis: [u8; 32],
}

/// What the new device writes into `members` next to its `device:<id>` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionRecord {
    /// The certificate.
    pub cert: AdmissionCert,
    /// The secret, revealed (the certificate is used up).
    pub secret: String,
    /// The admitted device's id.
    pub device_id: String,
    /// Its public key (hex).
    pub public_key: String,
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
        let cert = AdmissionCert {
            id: Uuid::new_v4(),
            shop_id: Uuid::new_v4(),
            role: DeviceRole::Till,
            name: "Till 2".into(),
            receipt_prefix: "T2".into(),
            expires_at: 1,
            secret_hash: secret_hash(b"s"),
            issuer: [0; 32],
            signature: vec![],
        }
        .sign(&key);
        assert!(cert.verify_signature());
        let mut forged = cert.clone();
        forged.role = DeviceRole::Relay;
        assert!(!forged.verify_signature());
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
