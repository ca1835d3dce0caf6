//! People commands: adding people, revoking people and devices, the gossip key upgrade.

use automerge::{ROOT, transaction::Transactable};
use redb::ReadableTable;
use uuid::Uuid;

use super::{hlc_now, person_key};
use crate::docs::DocId;
use crate::docs::shop;
use crate::domain::access::{self, Access};
use crate::error::{Error, Result};
use crate::identity::SealedKey;
use crate::model::*;
use crate::replica::Ctx;
use crate::store::tables::*;

/// A person to add, prepared outside the writer (key sealing and PIN hashing are slow).
pub struct PreparedPerson {
    /// The person.
    pub person: Person,
    /// Staff PIN hash.
    pub pin_hash: Option<String>,
    /// Sealed person key (owners and managers).
    pub sealed: Option<SealedKey>,
}

/// Adds a person: owners anyone, managers staff only.
pub fn add_person(ctx: &mut Ctx<'_>, by: &Principal, p: PreparedPerson) -> Result<Person> {
    check_add_person(&ctx.shop(), by, &p.person.username, p.person.role)?;
    // Adding writes the whole entry: over an existing person it would change their role or
    // take back their revocation, which only owners may do (`docs::trust` refuses it from a
    // manager too).
    if p.person.revoked || ctx.shop().person(p.person.id).is_some() {
        return Err(Error::Conflict(format!(
            "person {} already exists: add a new person instead",
            p.person.id
        )));
    }
    let key = person_key(by)?.clone();
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_person(doc, &p.person, p.pin_hash.as_deref())
    })?;
    if let Some(sealed) = &p.sealed {
        let json = serde_json::to_string(sealed).map_err(|e| Error::Internal(e.to_string()))?;
        ctx.change(&DocId::Vault, &key, |doc| {
            doc.put(ROOT, format!("key:{}", p.person.id), json.as_str())?;
            Ok(())
        })?;
    }
    Ok(p.person)
}

/// The checks of [`add_person`] that need no secrets (run before hashing too).
pub fn check_add_person(
    shop: &shop::ShopView,
    by: &Principal,
    username: &str,
    role: Role,
) -> Result<()> {
    access::require_add_person(by, role)?;
    if shop
        .people
        .iter()
        .any(|p| !p.person.revoked && p.person.username.eq_ignore_ascii_case(username))
    {
        return Err(Error::invalid(
            "username",
            format!("{username:?} is already taken"),
        ));
    }
    let max_staff = shop.settings()?.max_staff as usize;
    if role == Role::Staff
        && shop
            .people
            .iter()
            .filter(|p| !p.person.revoked && p.person.role == Role::Staff)
            .count()
            >= max_staff
    {
        return Err(Error::Conflict(format!(
            "the shop already has {max_staff} staff (the max_staff setting)"
        )));
    }
    Ok(())
}

/// The shop's first gossip key rotation, for a shop created before rotations existed (an owner
/// signing in writes it once; until then gossip uses the legacy key from the shop secret,
/// which old backups hold). Does nothing if the shop has a rotation already.
pub fn rotate_legacy_gossip_key(ctx: &mut Ctx<'_>, by: &Principal) -> Result<bool> {
    access::require(by, Access::RotateGossipKey)?;
    let shop = ctx.shop();
    if !shop.gossip.is_empty() || shop.shop_id.is_none() {
        return Ok(false);
    }
    let key = person_key(by)?.clone();
    let recipients = shop::gossip_recipients(&shop, None);
    let at = hlc_now(ctx)?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_rotation(doc, &shop, &recipients, by.person_id, at, "upgrade")
    })?;
    Ok(true)
}

/// Revokes a person (by uuid) or a device (by id) (owner). The revocation names the changes
/// accepted from the key so far; anything else signed by it is refused from now on.
pub fn revoke_member(ctx: &mut Ctx<'_>, by: &Principal, id: &str) -> Result<()> {
    access::require(by, Access::Revoke)?;
    let key = person_key(by)?.clone();
    let shop = ctx.shop();
    // Revoking a device, an owner or a manager rotates the gossip key (staff hold no key: they
    // sign in on tills, which keep theirs); `leaving` is the device that loses it.
    let (root_key, public_key, rotate, leaving) = if let Ok(pid) = Uuid::parse_str(id) {
        let p = shop
            .person(pid)
            .ok_or_else(|| Error::NotFound(format!("no person {id}")))?;
        if pid == by.person_id {
            return Err(Error::Conflict("you cannot revoke yourself".into()));
        }
        (
            format!("person:{pid}"),
            p.person.public_key.clone(),
            p.person.role >= Role::Manager,
            None,
        )
    } else {
        let d = shop
            .devices
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| Error::NotFound(format!("no member {id}")))?;
        if d.id == ctx.device_id() {
            return Err(Error::Conflict("a device cannot revoke itself".into()));
        }
        (
            format!("device:{id}"),
            Some(d.public_key.clone()),
            true,
            Some(d.id.clone()),
        )
    };
    let revocation = match &public_key {
        Some(pk) => {
            let pk_bytes: [u8; 32] = hex::decode(pk)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::Internal("a member key is malformed".into()))?;
            let mut accepted = Vec::new();
            for row in ctx.tx.open_table(ENVELOPES)?.iter()? {
                let (h, v) = row?;
                if let Ok(env) = crate::docs::Envelope::from_bytes(v.value())
                    && env.signer == pk_bytes
                {
                    accepted.push(hex::encode(h.value()));
                }
            }
            Some(crate::docs::members::RevocationRecord {
                accepted,
                by: by.person_id.to_string(),
                time: hlc_now(ctx)?,
            })
        }
        None => None,
    };
    let recipients = shop::gossip_recipients(&shop, leaving.as_deref());
    let at = hlc_now(ctx)?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_revoked(doc, &root_key)?;
        if let (Some(pk), Some(r)) = (&public_key, &revocation) {
            let json = serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?;
            doc.put(ROOT, format!("revocation:{pk}"), json.as_str())?;
        }
        if rotate {
            shop::put_rotation(
                doc,
                &shop,
                &recipients,
                by.person_id,
                at,
                &format!("revoked {id}"),
            )?;
        }
        Ok(())
    })?;
    Ok(())
}
