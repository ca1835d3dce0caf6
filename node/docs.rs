//! Documents and signed envelopes.
//!
//! Every change to every document travels and is stored as an [`Envelope`]: the Automerge change
//! bytes, the signer's public key, a signature over the change hash (bound to the document id,
//! the schema version and the `members` heads the signer saw), and those heads. [`DocId`] names
//! a document and says which kind of writer it accepts (see `trust`).

pub mod admission;
pub mod am;
pub mod envelope;
pub mod gossip_keys;
pub mod members;
pub mod trust;

pub use envelope::Envelope;

use std::fmt;

use crate::error::{Error, Result};

/// Schema major version this build writes into every document root (`schema` field).
pub const SCHEMA_VERSION: u32 = 1;

/// Entries per ledger document before the device rolls over to the next `<n>`.
pub const LEDGER_ROLLOVER: u64 = 250;

/// The id of a document: its kind decides who may write it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocId {
    /// Devices, people, admissions, revocations.
    Members,
    /// Sealed person keys.
    Vault,
    /// Shop settings.
    Settings,
    /// Products, variants, categories.
    Catalog,
    /// Purchase orders.
    Orders,
    /// One device's ledger entries of one shop-local day.
    Ledger {
        /// `YYYY-MM-DD`.
        day: String,
        /// Device id (16 hex).
        device: String,
        /// Rollover number.
        n: u64,
    },
}

impl DocId {
    /// Parses `members`, `catalog`, `ledger/2026-11-22/0123456789abcdef/0` …
    pub fn parse(s: &str) -> Result<DocId> {
        let bad = || Error::invalid("id", format!("not a document id: {s:?}"));
        Ok(match s {
            "members" => DocId::Members,
            "vault" => DocId::Vault,
            "settings" => DocId::Settings,
            "catalog" => DocId::Catalog,
            "orders" => DocId::Orders,
            _ => {
                let mut parts = s.split('/');
                let (Some("ledger"), Some(day), Some(device), Some(n), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(bad());
                };
                if chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err()
                    || day.len() != 10
                    || device.len() != 16
                    || !device
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad());
                }
                let n: u64 = n.parse().map_err(|_| bad())?;
                if n.to_string() != parts_n(s) {
                    return Err(bad());
                }
                DocId::Ledger {
                    day: day.to_string(),
                    device: device.to_string(),
                    n,
                }
            }
        })
    }

    /// The kind name: `members`, `vault`, `settings`, `catalog`, `orders` or `ledger`.
    pub fn kind(&self) -> &'static str {
        match self {
            DocId::Members => "members",
            DocId::Vault => "vault",
            DocId::Settings => "settings",
            DocId::Catalog => "catalog",
            DocId::Orders => "orders",
            DocId::Ledger { .. } => "ledger",
        }
    }
}

/// The last path segment, to reject `ledger/…/007` (ids must be canonical).
fn parts_n(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or("")
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::Ledger { day, device, n } => write!(f, "ledger/{day}/{device}/{n}"),
            other => f.write_str(other.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_round_trip_and_reject_junk() {
        for s in [
            "members",
            "catalog",
            "ledger/2026-11-22/0123456789abcdef/0",
            "ledger/2026-01-01/0123456789abcdef/12",
        ] {
            assert_eq!(DocId::parse(s).unwrap().to_string(), s);
        }
        for s in [
            "",
            "ledger",
            "ledger/2026-13-01/0123456789abcdef/0",
            "ledger/2026-11-22/0123456789ABCDEF/0",
            "ledger/2026-11-22/0123456789abcdef/007",
            "ledger/2026-11-22/0123456789abcdef/0/x",
            "../etc/passwd",
        ] {
            assert!(DocId::parse(s).is_err(), "{s}");
        }
    }
}
