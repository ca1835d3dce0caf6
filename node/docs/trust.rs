//! Who may write what: the `members` document read at given heads (through the one reader,
//! [`super::members`]), and [`verify`], the one check every envelope passes before it is applied
//! — local changes and peers' alike.

use std::collections::{HashMap, HashSet};

use automerge::{AutoCommit, Change, ChangeHash, ROOT};
use uuid::Uuid;

use super::members::{Anchor, Members};
use super::{DocId, Envelope, am};
use crate::model::{DeviceRole, Role};

pub use super::members::RevocationRecord;

/// Who signed a change, as `members` knew them at the envelope's heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A device key.
    Device {
        /// Device id.
        id: String,
        /// Role.
        role: DeviceRole,
    },
    /// An owner's or manager's person key.
    Person {
        /// Person id.
        id: Uuid,
        /// Role.
        role: Role,
    },
    /// The shop's offline recovery key (acts as an owner).
    Recovery,
    /// The owner who signed the shop's first `members` change.
    Genesis,
}

impl Signer {
    /// The person role the signer carries (devices: none).
    pub fn person_role(&self) -> Option<Role> {
        match self {
            Signer::Person { role, .. } => Some(*role),
            Signer::Recovery | Signer::Genesis => Some(Role::Owner),
            Signer::Device { .. } => None,
        }
    }
}

/// The keys `members` lists at some heads.
#[derive(Debug, Default, Clone)]
pub struct Trust {
    signers: HashMap<[u8; 32], (Signer, bool)>,
    revocations: HashMap<[u8; 32], HashSet<[u8; 32]>>,
}

impl Trust {
    /// Reads `members` at `heads` (current state if `None`), through [`Members::read`].
    pub fn read(doc: &AutoCommit, heads: Option<&[ChangeHash]>, anchor: &Anchor) -> Trust {
        let m = Members::read(doc, heads, anchor);
        let mut t = Trust::default();
        if let Some(pk) = m.recovery {
            t.signers.insert(pk, (Signer::Recovery, false));
        }
        for d in m.devices {
            let signer = Signer::Device {
                id: d.id,
                role: d.role,
            };
            t.signers.insert(d.public_key, (signer, d.revoked));
        }
        for p in m.people {
            // Staff have no key.
            if let (Some(pk), true) = (p.public_key, p.role != Role::Staff) {
                let signer = Signer::Person {
                    id: p.id,
                    role: p.role,
                };
                t.signers.insert(pk, (signer, p.revoked));
            }
        }
        t.revocations = m.revocations;
        t
    }

    /// Whether a change by `key` stays valid: the key is not revoked, or the revocation
    /// accepted this change.
    pub fn accepted_after_revocation(&self, key: &[u8; 32], hash: &[u8; 32]) -> bool {
        self.revocations.get(key).is_none_or(|a| a.contains(hash))
    }

    /// The signer behind `key`, and whether it was revoked.
    pub fn signer(&self, key: &[u8; 32]) -> Option<&(Signer, bool)> {
        self.signers.get(key)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: apply it.
    Accept(Signer),
    /// Not decidable yet (the named `members` heads or the change's dependencies are missing):
    /// keep it and check again when `members` advances.
    Hold(String),
    /// Never valid: drop it and count it against whoever sent it.
    Reject(String),
    /// Never valid as it is, but not to be lost: a sale a till of this shop signed after an
    /// owner revoked it (see [`revoked_sale`]). Kept in quarantine for the owners to review;
    /// it still counts as refused (the device stays out).
    Quarantine(String),
    /// A document kind this build does not know, signed by a member of this shop: kept (not
    /// applied, not counted against anyone) for a later version that knows it.
    Keep(String),
}

/// What [`verify`] needs besides the envelope.
pub struct VerifyContext<'a> {
    /// The `members` document as this node has it.
    pub members: &'a mut AutoCommit,
    /// What this node pinned about its shop: the genesis (the hash of the shop's first
    /// `members` change) and the devices admitted before protocol 2.
    pub anchor: &'a Anchor,
    /// The genesis (the anchor's, which a shop node always has).
    pub genesis: ChangeHash,
    /// Cache of `Trust` by members heads (most envelopes name the current heads).
    pub cache: &'a mut HashMap<Vec<ChangeHash>, std::sync::Arc<Trust>>,
}

/// Whether this node has every `members` change among `heads` (heads already in the trust
/// cache are known; only new ones need a look in the document).
fn has_heads(ctx: &mut VerifyContext<'_>, heads: &[ChangeHash]) -> bool {
    let mut sorted = heads.to_vec();
    sorted.sort();
    ctx.cache.contains_key(&sorted)
        || heads
            .iter()
            .all(|h| ctx.members.get_change_by_hash(h).is_some())
}

/// Checks an envelope: signature over the change hash; the change's author is the signer;
/// the signer may write this kind of document at the `members` heads it names; not revoked.
///
/// `author` is the author Automerge recorded for the change's actor: Automerge writes it into
/// the first change of an actor only, so for later changes the caller looks it up in the
/// document (which holds that first change, since an actor's changes apply in order).
pub fn verify(
    env: &Envelope,
    change: &Change,
    author: Option<&[u8]>,
    ctx: &mut VerifyContext<'_>,
) -> Verdict {
    let hash = change.hash();
    if let Err(e) = env.verify_signature(&hash) {
        return Verdict::Reject(e.to_string());
    }
    if author != Some(env.signer.as_slice()) {
        return Verdict::Reject("change author is not the signer".into());
    }
    let doc = match DocId::parse(&env.doc) {
        Ok(d) => Some(d),
        Err(_) if super::is_well_formed_doc_name(&env.doc) => None,
        Err(_) => return Verdict::Reject(format!("unknown document {:?}", env.doc)),
    };
    let heads = env.members_heads();
    let Some(doc) = doc else {
        return unknown_kind(env, heads, ctx);
    };

    // The shop's first change: its hash is pinned, so it vouches for itself.
    if doc == DocId::Members && heads.is_empty() {
        return if hash == ctx.genesis {
            Verdict::Accept(Signer::Genesis)
        } else {
            Verdict::Reject(
                "a members change naming no members heads that is not the shop's genesis".into(),
            )
        };
    }
    if !has_heads(ctx, &heads) {
        return Verdict::Hold("names members heads this node does not have yet".into());
    }
    let trust = trust_at(ctx.cache, ctx.members, ctx.anchor, heads);
    // Revoked since: only the changes the revocation accepted stay valid — whatever path the
    // change would otherwise be accepted by (a revoked device replaying its own admission on a
    // branch from before it was admitted included).
    let current = ctx.members.get_heads();
    let now = trust_at(ctx.cache, ctx.members, ctx.anchor, current);
    if let Some(accepted) = now.revocations.get(&env.signer)
        && !accepted.contains(&hash.0)
    {
        if let Some(device) = sale_of_revoked_till(env, change, &doc, &trust) {
            return Verdict::Quarantine(format!(
                "device {device} has been revoked: its sale is kept for the owners to review"
            ));
        }
        return Verdict::Reject("signer has been revoked".into());
    }
    let Some((signer, revoked_then)) = trust.signer(&env.signer).cloned() else {
        if doc == DocId::Members {
            return match self_admission(&env.signer, change, ctx, &trust) {
                Ok(signer) => Verdict::Accept(signer),
                Err(why) => {
                    Verdict::Reject(format!("not a member, and not a valid admission: {why}"))
                }
            };
        }
        return Verdict::Reject("signer is not a member at the heads it names".into());
    };
    if revoked_then {
        return Verdict::Reject("signer was revoked at the heads it names".into());
    }
    if let Some((_, true)) = now.signer(&env.signer)
        && !now.revocations.contains_key(&env.signer)
    {
        return Verdict::Reject("signer has been revoked".into());
    }

    let role = signer.person_role();
    let allowed = match &doc {
        DocId::Members | DocId::Vault => match role {
            Some(Role::Owner) => true,
            Some(Role::Manager) => within_manager_scope(&doc, &signer, change, ctx.members),
            _ => false,
        },
        DocId::Settings => role == Some(Role::Owner),
        DocId::Catalog | DocId::Orders => role >= Some(Role::Manager),
        DocId::Ledger { device, .. } => match &signer {
            Signer::Device { id, role } => id == device && *role == DeviceRole::Till,
            _ => role >= Some(Role::Manager),
        },
    };
    if allowed {
        Verdict::Accept(signer)
    } else {
        Verdict::Reject(format!("{signer:?} may not write {}", doc.kind()))
    }
}

/// Whether an envelope is a sale that a till of this shop made after an owner revoked it —
/// typically while it was switched off — and so must not be lost: its signature verifies, it
/// names `members` heads this node has at which the signer was an unrevoked till (a stranger,
/// another shop's device or a key revoked at those heads never qualifies), the signer has been
/// revoked since and the revocation did not accept this change, and the change writes sale
/// entries into that till's own ledger. Returns the till's device id.
///
/// The change's dependencies and Automerge author are not needed: a quarantined change is never
/// applied as it is; an owner who accepts a sale records it anew (`domain::revoked_sales`).
pub fn revoked_sale(
    env: &Envelope,
    change: &Change,
    ctx: &mut VerifyContext<'_>,
) -> Option<String> {
    let hash = change.hash();
    let doc = DocId::parse(&env.doc).ok()?;
    let heads = env.members_heads();
    if heads.is_empty() || !has_heads(ctx, &heads) {
        return None;
    }
    let current = ctx.members.get_heads();
    let now = trust_at(ctx.cache, ctx.members, ctx.anchor, current);
    if now
        .revocations
        .get(&env.signer)
        .is_none_or(|accepted| accepted.contains(&hash.0))
    {
        return None;
    }
    // Checked last: every peer's ledger change passes here, and only a revoked signer's gets
    // this far.
    env.verify_signature(&hash).ok()?;
    let then = trust_at(ctx.cache, ctx.members, ctx.anchor, heads);
    sale_of_revoked_till(env, change, &doc, &then)
}

/// The device id if `change` writes sale entries into the ledger of the till that signed it,
/// an unrevoked till at the heads it names (`then`).
fn sale_of_revoked_till(
    env: &Envelope,
    change: &Change,
    doc: &DocId,
    then: &Trust,
) -> Option<String> {
    let DocId::Ledger { device, .. } = doc else {
        return None;
    };
    match then.signer(&env.signer)? {
        (
            Signer::Device {
                id,
                role: DeviceRole::Till,
            },
            false,
        ) if id == device => {}
        _ => return None,
    }
    let has_sale = am::root_puts(change).into_iter().any(|(k, v)| {
        k.starts_with("entry:")
            && matches!(v, automerge::ScalarValue::Str(json)
                if serde_json::from_str::<crate::model::ledger::LedgerEntry>(&json)
                    .is_ok_and(|e| matches!(e.body, crate::model::ledger::EntryBody::Sale { .. })))
    });
    has_sale.then(|| device.clone())
}

/// A document kind this build does not know (its name well-formed): kept for a later version
/// when its signer is a member of this shop — a device or an owner's or manager's key — at the
/// `members` heads it names, unrevoked then and now. Who may write that kind is for the version
/// that knows it to judge: the kept envelope goes through [`verify`] in full once this node
/// runs such a version (`replica::Ctx::reoffer_kept`). Anyone else's is refused.
fn unknown_kind(env: &Envelope, heads: Vec<ChangeHash>, ctx: &mut VerifyContext<'_>) -> Verdict {
    if heads.is_empty() {
        return Verdict::Reject(format!(
            "unknown document {:?} naming no members heads",
            env.doc
        ));
    }
    if !has_heads(ctx, &heads) {
        return Verdict::Hold("names members heads this node does not have yet".into());
    }
    let then = trust_at(ctx.cache, ctx.members, ctx.anchor, heads);
    let current = ctx.members.get_heads();
    let now = trust_at(ctx.cache, ctx.members, ctx.anchor, current);
    let member = matches!(then.signer(&env.signer), Some((_, false)))
        && matches!(now.signer(&env.signer), Some((_, false)))
        && !now.revocations.contains_key(&env.signer);
    if member {
        Verdict::Keep(format!(
            "a document of kind {:?}, which this version of tillmesh does not know",
            kind_of(&env.doc)
        ))
    } else {
        Verdict::Reject(format!(
            "unknown document {:?} from a signer who is not a member",
            env.doc
        ))
    }
}

/// The kind of a document name: its first path segment (`giftcards/2026` → `giftcards`).
pub fn kind_of(doc: &str) -> &str {
    doc.split('/').next().unwrap_or(doc)
}

/// A device admitting itself: the change may add only its own `device:<id>` entry (id and key
/// its own, not there before), carrying a certificate for this shop's genesis whose issuer was
/// an owner (or a manager, for a till) and whose countersigner a member device, unrevoked, as
/// `members` stood at the envelope's heads, countersigned for exactly the signer's key.
///
/// Admissions made before protocol 2 (an `admission:<cert id>` record holding the invite's
/// secret) are accepted only from the devices pinned as admitted then
/// ([`Anchor::legacy_devices`]): such a record, readable by anyone with a copy of `members`,
/// admits no new key.
fn self_admission(
    signer_pk: &[u8; 32],
    change: &Change,
    ctx: &mut VerifyContext<'_>,
    trust: &Trust,
) -> Result<Signer, String> {
    let deps = change.deps().to_vec();
    let mut fork = ctx
        .members
        .fork_at(&deps)
        .map_err(|e| format!("unknown dependencies: {e}"))?;
    fork.apply_changes([change.clone()])
        .map_err(|e| format!("does not apply: {e}"))?;
    let touched = am::root_keys_touched(&fork, change);
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(signer_pk).map_err(|_| "bad key".to_string())?;
    let device_id = crate::identity::device_id(&key);
    let device_key = format!("device:{device_id}");
    if am::map(&fork, &ROOT, &device_key, Some(&deps)).is_some() {
        return Err("the device is already a member".into());
    }
    let obj = am::map(&fork, &ROOT, &device_key, None).ok_or("no device entry")?;
    let field = |k: &str| am::string(&fork, &obj, k, None);
    let role = match field("role").as_deref() {
        Some("till") => DeviceRole::Till,
        Some("relay") => DeviceRole::Relay,
        _ => return Err("the device entry has no role".into()),
    };
    if field("public_key").as_deref() != Some(hex::encode(signer_pk).as_str()) {
        return Err("the device entry names another key".into());
    }
    let legacy = touched.len() == 2
        && touched.contains(&device_key)
        && touched.iter().any(|k| k.starts_with("admission:"));
    if legacy {
        return if ctx.anchor.legacy_devices.contains(signer_pk) {
            Ok(Signer::Device {
                id: device_id,
                role,
            })
        } else {
            Err(
                "an invite made before protocol 2 can no longer admit a device: ask for a new \
                 invite"
                    .into(),
            )
        };
    }
    if touched.len() != 1 || !touched.contains(&device_key) {
        return Err("an admission may add only the device's own entry".into());
    }
    let admitted: super::admission::AdmittedCertificate = field("certificate")
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or("no readable certificate")?;
    let shop = am::string(&fork, &ROOT, "shop_id", None).and_then(|s| Uuid::parse_str(&s).ok());
    if !admitted.admits(signer_pk, ctx.genesis, shop) {
        return Err("the certificate is not countersigned for this device and this shop".into());
    }
    let cert = &admitted.cert;
    if cert.role != role
        || field("receipt_prefix").as_deref() != Some(cert.receipt_prefix.as_str())
        || field("admission").as_deref() != Some(cert.id.to_string().as_str())
    {
        return Err("the device entry does not match the certificate".into());
    }
    match trust.signer(&cert.issuer) {
        Some((s, false)) => match s.person_role() {
            Some(Role::Owner) => {}
            Some(Role::Manager) if cert.role == DeviceRole::Till => {}
            _ => return Err("the issuer may not admit this role".into()),
        },
        _ => return Err("the issuer is not an owner or manager".into()),
    }
    match trust.signer(&cert.countersigner) {
        Some((
            Signer::Device {
                role: DeviceRole::Till,
                ..
            },
            false,
        )) => {}
        _ => return Err("the countersigning device is not a device of the shop".into()),
    }
    Ok(Signer::Device {
        id: device_id,
        role: cert.role,
    })
}

/// `members` read at `heads`, cached.
fn trust_at(
    cache: &mut HashMap<Vec<ChangeHash>, std::sync::Arc<Trust>>,
    members: &AutoCommit,
    anchor: &Anchor,
    mut heads: Vec<ChangeHash>,
) -> std::sync::Arc<Trust> {
    heads.sort();
    if let Some(t) = cache.get(&heads) {
        return t.clone();
    }
    if cache.len() > 256 {
        cache.clear();
    }
    let t = std::sync::Arc::new(Trust::read(members, Some(&heads), anchor));
    cache.insert(heads, t.clone());
    t
}

/// A manager may add and edit staff in `members`, and only their own entry in `vault`: check
/// what the change touches by applying it to a fork at its dependencies.
///
/// In `members` every touched key must be a `person:` entry that is staff and not revoked
/// before (at the change's dependencies, and in `members` as this node has it now — so a
/// change made on purpose at old dependencies cannot write over a person created or revoked
/// since) and after, or absent before and new staff after: only owners change a person's role
/// or revoked state, in either direction.
fn within_manager_scope(
    doc: &DocId,
    signer: &Signer,
    change: &Change,
    members: &mut AutoCommit,
) -> bool {
    let Signer::Person { id: me, .. } = signer else {
        return false;
    };
    if *doc == DocId::Vault {
        // Vault entries are JSON strings at `key:<person id>`: every op must be a root op on
        // the manager's own entry.
        let own = format!("key:{me}");
        return change.decode().operations.iter().all(|op| {
            matches!((&op.obj, &op.key),
                (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(k)) if k.as_str() == own)
        });
    }
    let deps = change.deps().to_vec();
    let now = members.get_heads();
    // A change this node made itself may be in `members` already; then its dependencies say
    // how `members` stood (the command checked it as it was).
    let made_here = members.get_change_by_hash(&change.hash()).is_some();
    let Ok(mut fork) = members.fork_at(&deps) else {
        return false;
    };
    if fork.apply_changes([change.clone()]).is_err() {
        return false;
    }
    let touched = am::root_keys_touched(&fork, change);
    // (role, revoked) of a person entry at some heads of a document; `None`: no entry.
    let person_at = |doc: &AutoCommit, key: &str, h: Option<&[ChangeHash]>| {
        am::map(doc, &ROOT, key, h).map(|o| {
            (
                am::string(doc, &o, "role", h),
                am::flag(doc, &o, "revoked", h),
            )
        })
    };
    let active_staff = |p: &Option<(Option<String>, bool)>| matches!(p, Some((Some(role), false)) if role == "staff");
    touched.iter().all(|k| {
        if !k.starts_with("person:") {
            return false;
        }
        let before = person_at(&fork, k, Some(&deps));
        let current = if made_here {
            before.clone()
        } else {
            person_at(&*members, k, Some(&now))
        };
        let after = person_at(&fork, k, None);
        let before_ok = match &before {
            None => current.is_none(),
            Some(_) => active_staff(&before) && active_staff(&current),
        };
        before_ok && active_staff(&after)
    })
}
