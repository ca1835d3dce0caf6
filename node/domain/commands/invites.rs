//! Invites and admission: issuing an invite, redemption runs, redeeming, admitting this device.

use automerge::{ROOT, transaction::Transactable};
use redb::ReadableTable;
use uuid::Uuid;

use super::person_key;
use crate::docs::DocId;
use crate::docs::shop::{self, non_empty};
use crate::domain::access;
use crate::error::{Error, Result};
use crate::model::*;
use crate::replica::Ctx;
use crate::store::meta;
use crate::store::tables::*;

/// An invite this node issued, waiting to be redeemed. It stays on this device: the
/// certificate is countersigned here, for the key of the device that redeems it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingInvite {
    /// The certificate (signed by the person who made the invite).
    pub cert: crate::docs::admission::AdmissionCert,
    /// Redeemed already (single use).
    pub used: bool,
    /// Key-exchange runs started against it and not finished with its code (see
    /// [`crate::redeem`]); at [`crate::redeem::MAX_FAILED_RUNS`] it is burned.
    pub failures: u32,
}

/// A pending invite as stored before failed runs were counted.
#[derive(serde::Deserialize)]
struct PendingInviteV1 {
    cert: crate::docs::admission::AdmissionCert,
    used: bool,
}

impl PendingInvite {
    /// Decodes a row of the invites table, rows written before `failures` existed included
    /// (postcard has no optional trailing fields; as a newer row read as an old one would
    /// also decode, the newer form is tried first).
    pub fn decode(bytes: &[u8]) -> Option<PendingInvite> {
        postcard::from_bytes::<PendingInvite>(bytes)
            .ok()
            .or_else(|| {
                let old = postcard::from_bytes::<PendingInviteV1>(bytes).ok()?;
                Some(PendingInvite {
                    cert: old.cert,
                    used: old.used,
                    failures: 0,
                })
            })
    }

    /// Where it stands at `now` (ms since the epoch).
    pub fn state(&self, now: i64) -> crate::redeem::InviteState {
        use crate::redeem::{InviteState, MAX_FAILED_RUNS};
        if self.used {
            InviteState::Used
        } else if now > self.cert.expires_at {
            InviteState::Expired
        } else if self.failures >= MAX_FAILED_RUNS {
            InviteState::Burned
        } else {
            InviteState::Pending
        }
    }

    fn put(&self, ctx: &mut Ctx<'_>, code: &str) -> Result<()> {
        ctx.tx.open_table(INVITES)?.insert(
            code,
            postcard::to_allocvec(self)
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_slice(),
        )?;
        Ok(())
    }
}

/// Default lifetime of an invite.
pub const INVITE_TTL_MS: i64 = 15 * 60 * 1000;

/// Creates an invite (owner: any device role; manager: tills). This device will countersign
/// the redeeming device's key.
pub fn create_invite(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    role: DeviceRole,
    name: &str,
    ttl_ms: i64,
) -> Result<(String, crate::docs::admission::AdmissionCert)> {
    use crate::docs::admission::{AdmissionCert, new_code};
    access::require_invite(by, role)?;
    let key = person_key(by)?.clone();
    let name = non_empty("name", name, 100)?;
    if !(60_000..=7 * 24 * 3600 * 1000).contains(&ttl_ms) {
        return Err(Error::invalid("ttl_minutes", "between 1 minute and 7 days"));
    }
    let shop = ctx.shop();
    let shop_id = shop
        .shop_id
        .ok_or_else(|| Error::NoShop("no shop".into()))?;
    if shop.this_device.as_ref().is_none_or(|d| d.revoked) {
        return Err(Error::Forbidden(
            "this device is not an admitted device of the shop: make the invite on another".into(),
        ));
    }
    // Receipt prefixes: T1, T2 … — one past every prefix in use or promised.
    let mut highest = shop
        .devices
        .iter()
        .filter_map(|d| d.receipt_prefix.strip_prefix('T')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    for row in ctx.tx.open_table(INVITES)?.iter()? {
        if let Some(p) = PendingInvite::decode(row?.1.value())
            && let Some(n) = p
                .cert
                .receipt_prefix
                .strip_prefix('T')
                .and_then(|n| n.parse::<u32>().ok())
        {
            highest = highest.max(n);
        }
    }
    let genesis: [u8; 32] = ctx
        .meta(meta::GENESIS)?
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::NoShop("no shop".into()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let cert = AdmissionCert {
        id: Uuid::new_v4(),
        shop_id,
        genesis,
        role,
        name,
        receipt_prefix: format!("T{}", highest + 1),
        expires_at: now + ttl_ms,
        countersigner: ctx.device_key().verifying_key().to_bytes(),
        issuer: [0; 32],
        signature: Vec::new(),
    }
    .sign(&key);
    let code = new_code();
    PendingInvite {
        cert: cert.clone(),
        used: false,
        failures: 0,
    }
    .put(ctx, &code)?;
    Ok((code, cert))
}

pub use crate::docs::admission::UNKNOWN_INVITE;

/// Starts a key-exchange run (see [`crate::redeem`]) against this device's invites: the codes
/// and states of those to offer — pending ones first, each charged one failed run now (a run
/// that redeems it uses it instead), then those used, expired or burned within
/// [`crate::redeem::DEAD_INVITES_SHOWN_MS`]; at most [`crate::redeem::MAX_OFFERS`].
pub fn start_redeem_run(ctx: &mut Ctx<'_>) -> Result<Vec<(String, crate::redeem::InviteState)>> {
    use crate::redeem::{DEAD_INVITES_SHOWN_MS, InviteState, MAX_OFFERS};
    let now = chrono::Utc::now().timestamp_millis();
    let mut invites: Vec<(String, PendingInvite)> = Vec::new();
    for row in ctx.tx.open_table(INVITES)?.iter()? {
        let (code, value) = row?;
        if let Some(p) = PendingInvite::decode(value.value())
            && (p.state(now) == InviteState::Pending
                || p.cert.expires_at + DEAD_INVITES_SHOWN_MS > now)
        {
            invites.push((code.value().to_string(), p));
        }
    }
    // Pending first, then the newest.
    invites.sort_by_key(|(_, p)| (p.state(now) != InviteState::Pending, -p.cert.expires_at));
    invites.truncate(MAX_OFFERS);
    let mut offered = Vec::with_capacity(invites.len());
    for (code, mut p) in invites {
        let state = p.state(now);
        if state == InviteState::Pending {
            p.failures += 1;
            p.put(ctx, &code)?;
            if p.failures == crate::redeem::MAX_FAILED_RUNS {
                // Someone may be guessing: the owner learns why the invite stopped working.
                tracing::warn!(
                    device = %p.cert.name,
                    "an invite had its last redemption attempt: burned unless that one succeeds"
                );
            }
        }
        offered.push((code, state));
    }
    Ok(offered)
}

/// Redeems a short code for the device with key `device` (the key its connection is
/// authenticated with): single use, before it expires by this device's clock; countersigns
/// the certificate for that key. Over the network only once the device proved it knows the
/// code (see [`crate::redeem`]).
pub fn redeem_invite(
    ctx: &mut Ctx<'_>,
    code: &str,
    device: &[u8; 32],
) -> Result<crate::docs::admission::Invite> {
    use crate::redeem::InviteState;
    let code = crate::docs::admission::normalize_code(code)?;
    let unknown = || Error::NotFound(UNKNOWN_INVITE.into());
    let mut pending: PendingInvite = match ctx.tx.open_table(INVITES)?.get(code.as_str())? {
        Some(v) => PendingInvite::decode(v.value()).ok_or_else(unknown)?,
        None => return Err(unknown()),
    };
    // Not judged burned here: the run now finishing was counted when it started, and it
    // started while the invite was pending.
    match pending.state(chrono::Utc::now().timestamp_millis()) {
        state @ (InviteState::Used | InviteState::Expired) => {
            return Err(Error::Conflict(state.refusal().unwrap_or_default()));
        }
        InviteState::Pending | InviteState::Burned => {}
    }
    let shop = ctx.shop();
    if shop
        .devices
        .iter()
        .any(|d| d.public_key == hex::encode(device))
    {
        return Err(Error::Conflict(
            "that device is already a device of the shop".into(),
        ));
    }
    if shop.this_device.as_ref().is_none_or(|d| d.revoked) {
        return Err(Error::Forbidden(
            "this device was revoked: it can no longer admit devices".into(),
        ));
    }
    let genesis = pending.cert.genesis;
    let legacy_devices = ctx
        .meta(meta::LEGACY_DEVICES)?
        .and_then(|b| postcard::from_bytes::<Vec<[u8; 32]>>(&b).ok())
        .unwrap_or_default();
    let admitted = pending.cert.countersign(device, ctx.device_key());
    pending.used = true;
    pending.put(ctx, &code)?;
    Ok(crate::docs::admission::Invite {
        admitted,
        genesis,
        legacy_devices,
        gossip_keys: Vec::new(),
    })
}

/// Admits this device into the shop with a redeemed invite (after pulling `members`).
pub fn admit_self(ctx: &mut Ctx<'_>, invite: &crate::docs::admission::Invite) -> Result<()> {
    if ctx.shop().this_device.is_some() {
        return Err(Error::Conflict("this device is already a member".into()));
    }
    if ctx.doc("members")?.is_none() {
        return Err(Error::NoShop(
            "the shop's members have not arrived yet".into(),
        ));
    }
    let key = ctx.device_key().clone();
    let device_id = ctx.device_id().to_string();
    let public_key = hex::encode(key.verifying_key().as_bytes());
    if invite.admitted.device != key.verifying_key().to_bytes() {
        return Err(Error::invalid(
            "invite",
            "the invite was countersigned for another device",
        ));
    }
    let cert = invite.cert().clone();
    let json =
        serde_json::to_string(&invite.admitted).map_err(|e| Error::Internal(e.to_string()))?;
    ctx.change(&DocId::Members, &key, |doc| {
        shop::put_device(
            doc,
            &Device {
                id: device_id.clone(),
                name: cert.name.clone(),
                role: cert.role,
                public_key: public_key.clone(),
                receipt_prefix: cert.receipt_prefix.clone(),
                revoked: false,
            },
        )?;
        let obj = crate::docs::am::map(doc, &ROOT, &format!("device:{device_id}"), None)
            .expect("the device entry was just written");
        doc.put(&obj, "admission", cert.id.to_string())?;
        doc.put(&obj, "certificate", json.as_str())?;
        Ok(())
    })?;
    ctx.set_meta(meta::SHOP_ID, cert.shop_id.to_string().as_bytes())?;
    for (id, key) in &invite.gossip_keys {
        if crate::docs::gossip_keys::valid_id(id) {
            ctx.set_meta(&crate::docs::gossip_keys::meta_key(id), key)?;
        }
    }
    Ok(())
}
