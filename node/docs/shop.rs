//! The `members`, `settings` and `vault` documents: their layout, how commands write them, and
//! [`ShopView`], the read-only picture of them readers use between commits.
//!
//! `settings` layout: root scalars named like the fields of [`Settings`] (each its own
//! last-writer-wins register), plus `schema`. `vault` layout: `key:<person id>` → JSON string of
//! a [`SealedKey`]. `members` layout: see `docs::trust`.

use std::collections::HashMap;

use automerge::{AutoCommit, ROOT, ReadDoc, transaction::Transactable};
use uuid::Uuid;

use crate::docs::am;
use crate::error::{Error, Result};
use crate::identity::SealedKey;
use crate::model::*;

/// A person as stored in `members`, with the PIN hash readers need to log staff in.
#[derive(Debug, Clone)]
pub struct PersonRecord {
    /// The public view.
    pub person: Person,
    /// Staff PIN hash.
    pub pin_hash: Option<String>,
}

/// `members`, `settings` and `vault` as of the last commit.
#[derive(Debug, Clone, Default)]
pub struct ShopView {
    /// Shop id (absent before a shop exists).
    pub shop_id: Option<Uuid>,
    /// Settings (absent before a shop exists).
    pub settings: Option<Settings>,
    /// People by id.
    pub people: Vec<PersonRecord>,
    /// Devices.
    pub devices: Vec<Device>,
    /// Index into `devices` by public key: who a peer is, looked up once per message by the
    /// mesh, without a scan; rebuilt with the view whenever `members` changes.
    pub device_index: HashMap<[u8; 32], usize>,
    /// This device, once it is a member.
    pub this_device: Option<Device>,
    /// Sealed person keys by person id.
    pub vault: HashMap<Uuid, SealedKey>,
    /// The shop secret (from `vault`): the legacy gossip key, before any rotation.
    pub shop_secret: Option<String>,
    /// Gossip key rotations (from `members`, see [`crate::docs::gossip_keys`]).
    pub gossip: std::collections::BTreeMap<String, crate::docs::gossip_keys::GossipRecord>,
    /// The recovery key's public half (hex, from `members`): a recipient of every snapshot.
    pub recovery_public: Option<String>,
    /// The shop's genesis as this node pinned it (what every sync message names).
    pub genesis: Option<automerge::ChangeHash>,
}

impl ShopView {
    /// Who a shop's backups and snapshots are encrypted to: every unrevoked owner with a person
    /// key (with their sealed key from the vault) and the recovery key. Managers never are: they
    /// may make a backup, not read the owners' and staff's secrets in it.
    pub fn backup_recipients(&self) -> Vec<crate::sealed::Recipient> {
        let view = self;
        let mut out: Vec<crate::sealed::Recipient> = Vec::new();
        for p in &view.people {
            let person = &p.person;
            if person.revoked || person.role != crate::model::Role::Owner {
                continue;
            }
            let Some(pk) = person
                .public_key
                .as_deref()
                .and_then(crate::sealed::parse_public_key)
            else {
                continue;
            };
            let sealed = view
                .vault
                .get(&person.id)
                .filter(|s| s.public_key == hex::encode(pk.as_bytes()))
                .cloned();
            out.push(crate::sealed::Recipient {
                kind: crate::sealed::RecipientKind::Owner,
                public_key: pk,
                sealed,
            });
        }
        if let Some(pk) = view
            .recovery_public
            .as_deref()
            .and_then(crate::sealed::parse_public_key)
        {
            out.push(crate::sealed::Recipient {
                kind: crate::sealed::RecipientKind::Recovery,
                public_key: pk,
                sealed: None,
            });
        }
        out.dedup_by(|a, b| a.public_key == b.public_key);
        out
    }

    /// Reads the documents (any may be missing); `members` through the one reader
    /// ([`crate::docs::members::Members`]), so only admitted devices are listed.
    pub fn read(
        members: Option<&AutoCommit>,
        settings: Option<&AutoCommit>,
        vault: Option<&AutoCommit>,
        device_id: &str,
        anchor: &crate::docs::members::Anchor,
    ) -> ShopView {
        let mut v = ShopView {
            genesis: anchor.genesis,
            ..ShopView::default()
        };
        if let Some(m) = members {
            let read = crate::docs::members::Members::read(m, None, anchor);
            v.shop_id = read.shop_id;
            v.recovery_public = read.recovery.map(hex::encode);
            v.gossip = read.gossip;
            v.people = read
                .people
                .into_iter()
                .map(|p| PersonRecord {
                    person: Person {
                        id: p.id,
                        name: p.name,
                        username: p.username,
                        role: p.role,
                        public_key: p.public_key.map(hex::encode),
                        revoked: p.revoked,
                    },
                    pin_hash: p.pin_hash,
                })
                .collect();
            v.devices = read
                .devices
                .into_iter()
                .map(|d| Device {
                    id: d.id,
                    name: d.name,
                    role: d.role,
                    public_key: hex::encode(d.public_key),
                    receipt_prefix: d.receipt_prefix,
                    revoked: d.revoked,
                })
                .collect();
            v.device_index = v
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let pk = <[u8; 32]>::try_from(hex::decode(&d.public_key).ok()?).ok()?;
                    Some((pk, i))
                })
                .collect();
            v.this_device = v.devices.iter().find(|d| d.id == device_id).cloned();
        }
        if let Some(s) = settings {
            v.settings = read_settings(s);
        }
        if let Some(vd) = vault {
            v.shop_secret = am::string(vd, &ROOT, "shop_secret", None);
            for key in vd.keys(ROOT) {
                if let (Some(id), Some(json)) = (
                    key.strip_prefix("key:")
                        .and_then(|i| Uuid::parse_str(i).ok()),
                    am::string(vd, &ROOT, &key, None),
                ) && let Ok(sealed) = serde_json::from_str::<SealedKey>(&json)
                {
                    v.vault.insert(id, sealed);
                }
            }
        }
        v
    }

    /// The settings, or "no shop".
    pub fn settings(&self) -> Result<&Settings> {
        self.settings
            .as_ref()
            .ok_or_else(|| Error::NoShop("this node has no shop yet: create or join one".into()))
    }

    /// A person by login name (case-insensitive).
    pub fn person_by_username(&self, username: &str) -> Option<&PersonRecord> {
        self.people
            .iter()
            .find(|p| p.person.username.eq_ignore_ascii_case(username))
    }

    /// The device with `public_key`, if it is one of the shop's (revoked or not).
    pub fn device_by_key(&self, public_key: &[u8; 32]) -> Option<&Device> {
        self.device_index.get(public_key).map(|&i| &self.devices[i])
    }

    /// A person by id.
    pub fn person(&self, id: Uuid) -> Option<&PersonRecord> {
        self.people.iter().find(|p| p.person.id == id)
    }
}

fn read_settings(doc: &AutoCommit) -> Option<Settings> {
    let s = |k: &str| am::string(doc, &ROOT, k, None);
    let i = |k: &str| am::int(doc, &ROOT, k, None);
    Some(Settings {
        shop_name: s("shop_name")?,
        currency: s("currency")?,
        currency_exponent: i("currency_exponent")? as u8,
        timezone: s("timezone")?,
        tax_mode: enum_field(doc, "tax_mode").unwrap_or(TaxMode::Inclusive),
        rounding: enum_field(doc, "rounding").unwrap_or(Rounding::HalfUp),
        cash_rounding: i("cash_rounding").unwrap_or(1).max(1),
        receipt_text: s("receipt_text").unwrap_or_default(),
        low_stock_default: i("low_stock_default").unwrap_or(0),
        oversell: enum_field(doc, "oversell").unwrap_or(OversellPolicy::Warn),
        max_staff: i("max_staff").unwrap_or(5) as u32,
    })
}

fn enum_field<T: serde::de::DeserializeOwned>(doc: &AutoCommit, k: &str) -> Option<T> {
    let v = am::string(doc, &ROOT, k, None)?;
    serde_json::from_value(serde_json::Value::String(v)).ok()
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("settings enums serialize as strings"),
    }
}

/// Writes every settings field (the first `settings` change, and patches).
pub fn write_settings(doc: &mut AutoCommit, s: &Settings, old: Option<&Settings>) -> Result<()> {
    let changed = |f: fn(&Settings) -> String| old.is_none_or(|o| f(o) != f(s));
    if changed(|x| x.shop_name.clone()) {
        doc.put(ROOT, "shop_name", s.shop_name.as_str())?;
    }
    if changed(|x| x.currency.clone()) {
        doc.put(ROOT, "currency", s.currency.as_str())?;
        doc.put(ROOT, "currency_exponent", s.currency_exponent as i64)?;
    }
    if changed(|x| x.timezone.clone()) {
        doc.put(ROOT, "timezone", s.timezone.as_str())?;
    }
    if changed(|x| enum_str(&x.tax_mode)) {
        doc.put(ROOT, "tax_mode", enum_str(&s.tax_mode))?;
    }
    if changed(|x| enum_str(&x.rounding)) {
        doc.put(ROOT, "rounding", enum_str(&s.rounding))?;
    }
    if changed(|x| x.cash_rounding.to_string()) {
        doc.put(ROOT, "cash_rounding", s.cash_rounding)?;
    }
    if changed(|x| x.receipt_text.clone()) {
        doc.put(ROOT, "receipt_text", s.receipt_text.as_str())?;
    }
    if changed(|x| x.low_stock_default.to_string()) {
        doc.put(ROOT, "low_stock_default", s.low_stock_default)?;
    }
    if changed(|x| enum_str(&x.oversell)) {
        doc.put(ROOT, "oversell", enum_str(&s.oversell))?;
    }
    if changed(|x| x.max_staff.to_string()) {
        doc.put(ROOT, "max_staff", s.max_staff as i64)?;
    }
    Ok(())
}

/// Checks an IANA time zone name.
pub fn check_timezone(field: &str, tz: &str) -> Result<chrono_tz::Tz> {
    tz.parse::<chrono_tz::Tz>().map_err(|_| {
        Error::invalid(
            field,
            format!("unknown time zone {tz:?} (use an IANA name like Europe/Paris)"),
        )
    })
}

/// A trimmed, non-empty string of bounded length.
pub fn non_empty(field: &str, v: &str, max: usize) -> Result<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    if t.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(t.to_string())
}

/// Writes a person entry into `members`.
pub fn put_person(doc: &mut AutoCommit, p: &Person, pin_hash: Option<&str>) -> Result<()> {
    let obj = doc.put_object(ROOT, format!("person:{}", p.id), automerge::ObjType::Map)?;
    doc.put(&obj, "name", p.name.as_str())?;
    doc.put(&obj, "username", p.username.as_str())?;
    doc.put(&obj, "role", p.role.as_str())?;
    if let Some(pk) = &p.public_key {
        doc.put(&obj, "public_key", pk.as_str())?;
    }
    if let Some(h) = pin_hash {
        doc.put(&obj, "pin_hash", h)?;
    }
    Ok(())
}

/// Writes a device entry into `members`.
pub fn put_device(doc: &mut AutoCommit, d: &Device) -> Result<()> {
    let obj = doc.put_object(ROOT, format!("device:{}", d.id), automerge::ObjType::Map)?;
    doc.put(&obj, "name", d.name.as_str())?;
    doc.put(
        &obj,
        "role",
        match d.role {
            DeviceRole::Till => "till",
            DeviceRole::Relay => "relay",
        },
    )?;
    doc.put(&obj, "public_key", d.public_key.as_str())?;
    doc.put(&obj, "receipt_prefix", d.receipt_prefix.as_str())?;
    Ok(())
}

/// Who a gossip key rotation is wrapped to: every unrevoked till of the shop but `leaving`
/// (relays are in no gossip topic).
pub fn gossip_recipients(
    shop: &ShopView,
    leaving: Option<&str>,
) -> Vec<(String, ed25519_dalek::VerifyingKey)> {
    shop.devices
        .iter()
        .filter(|d| !d.revoked && d.role == DeviceRole::Till && Some(d.id.as_str()) != leaving)
        .filter_map(|d| {
            let bytes: [u8; 32] = hex::decode(&d.public_key).ok()?.try_into().ok()?;
            Some((
                d.id.clone(),
                ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?,
            ))
        })
        .collect()
}

/// Writes a gossip key rotation (see [`crate::docs::gossip_keys`]) superseding the current
/// records of `shop`, wrapped to `recipients`.
pub fn put_rotation(
    doc: &mut AutoCommit,
    shop: &ShopView,
    recipients: &[(String, ed25519_dalek::VerifyingKey)],
    by: Uuid,
    at: i64,
    reason: &str,
) -> Result<()> {
    use crate::docs::gossip_keys;
    let current = gossip_keys::current(&shop.gossip);
    let (id, record, _) = gossip_keys::rotate(&current, recipients, by, at, reason)?;
    let json = serde_json::to_string(&record).map_err(|e| Error::Internal(e.to_string()))?;
    doc.put(ROOT, format!("{}{id}", gossip_keys::PREFIX), json.as_str())?;
    Ok(())
}

/// Marks a `person:` or `device:` entry revoked.
pub fn put_revoked(doc: &mut AutoCommit, root_key: &str) -> Result<()> {
    let obj = am::map(doc, &ROOT, root_key, None)
        .ok_or_else(|| Error::NotFound(format!("no member {root_key}")))?;
    doc.put(&obj, "revoked", true)?;
    Ok(())
}
