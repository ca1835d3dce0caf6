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
pub mod shop;
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

/// Longest document name kept when this build does not know its kind.
pub const MAX_DOC_NAME: usize = 128;

/// Whether `name` could be a document of a kind a later version knows: at most
/// [`MAX_DOC_NAME`] bytes, 1 to 4 `/`-separated segments of lowercase ASCII letters, digits,
/// `-`, `_` and `.`, the first a kind name (a letter, then letters, digits, `-` or `_`), no
/// segment empty, `.` or `..`. Only such names are kept (see `trust::verify`); anything else
/// is junk and refused.
pub fn is_well_formed_doc_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_DOC_NAME {
        return false;
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() > 4 {
        return false;
    }
    let seg_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    let kind = segments[0];
    segments.iter().all(|s| seg_ok(s))
        && kind.as_bytes()[0].is_ascii_lowercase()
        && !kind.contains('.')
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

    #[test]
    fn only_well_formed_names_of_unknown_kinds_may_be_kept() {
        for s in ["giftcards", "giftcards/2026-12-07", "loyalty/a_b/c-d/1.2"] {
            assert!(is_well_formed_doc_name(s), "{s}");
        }
        let long = "x".repeat(MAX_DOC_NAME + 1);
        for s in [
            "",
            "Giftcards",
            "gift cards",
            "1giftcards",
            ".hidden",
            "giftcards/",
            "giftcards//x",
            "giftcards/..",
            "a/b/c/d/e",
            "giftcards\\x",
            "gïftcards",
            long.as_str(),
        ] {
            assert!(!is_well_formed_doc_name(s), "{s:?}");
        }
    }
}
