//! Shop set-up commands: the shop's genesis and its settings.

use automerge::{ROOT, transaction::Transactable};
use ed25519_dalek::SigningKey;
use uuid::Uuid;

use super::{hlc_now, person_key};
use crate::docs::DocId;
use crate::docs::shop;
use crate::domain::access::{self, Access};
use crate::error::{Error, Result};
use crate::identity::SealedKey;
use crate::model::*;
use crate::replica::Ctx;
use crate::store::meta;

/// Everything `create_shop` needs, prepared outside the writer (key sealing is slow).
pub struct ShopGenesis {
    /// Shop id.
    pub shop_id: Uuid,
    /// Settings.
    pub settings: Settings,
    /// The owner.
    pub owner: Person,
    /// The owner's person key.
    pub owner_key: SigningKey,
    /// The owner's key sealed under their password.
    pub owner_sealed: SealedKey,
    /// Public recovery key (hex).
    pub recovery_public: String,
    /// This device's name.
    pub device_name: String,
}

/// Creates the shop's documents: `members` (its genesis), `settings`, `vault`, `catalog`.
pub fn create_shop(ctx: &mut Ctx<'_>, g: ShopGenesis) -> Result<()> {
    if ctx.meta(meta::SHOP_ID)?.is_some() {
        return Err(Error::HasShop("this node already belongs to a shop".into()));
    }
    let device = Device {
        id: ctx.device_id().to_string(),
        name: g.device_name.clone(),
        role: DeviceRole::Till,
        public_key: hex::encode(ctx.device_key().verifying_key().as_bytes()),
        receipt_prefix: "T1".into(),
        revoked: false,
    };
    let key = g.owner_key.clone();
    // The shop's first gossip key, wrapped to this device (the shop's only one so far).
    let at = hlc_now(ctx)?;
    let first = vec![(device.id.clone(), ctx.device_key().verifying_key())];
    ctx.change(&DocId::Members, &key, |doc| {
        doc.put(ROOT, "shop_id", g.shop_id.to_string())?;
        doc.put(ROOT, "recovery", g.recovery_public.as_str())?;
        shop::put_person(doc, &g.owner, None)?;
        shop::put_device(doc, &device)?;
        let none = shop::ShopView::default();
        shop::put_rotation(doc, &none, &first, g.owner.id, at, "created")
    })?;
    ctx.change(&DocId::Settings, &key, |doc| {
        shop::write_settings(doc, &g.settings, None)
    })?;
    let sealed =
        serde_json::to_string(&g.owner_sealed).map_err(|e| Error::Internal(e.to_string()))?;
    let shop_secret = hex::encode(crate::identity::random_bytes::<32>());
    ctx.change(&DocId::Vault, &key, |doc| {
        doc.put(ROOT, "shop_secret", shop_secret.as_str())?;
        doc.put(ROOT, format!("key:{}", g.owner.id), sealed.as_str())?;
        Ok(())
    })?;
    ctx.change(&DocId::Catalog, &key, |_| Ok(()))?;
    ctx.set_meta(meta::SHOP_ID, g.shop_id.to_string().as_bytes())?;
    Ok(())
}

/// Changes settings (owner).
pub fn update_settings(
    ctx: &mut Ctx<'_>,
    by: &Principal,
    patch: SettingsPatch,
) -> Result<Settings> {
    access::require(by, Access::Settings)?;
    let key = person_key(by)?.clone();
    let old = ctx.shop().settings()?.clone();
    let new = patched_settings(&old, patch)?;
    if new != old {
        ctx.change(&DocId::Settings, &key, |doc| {
            shop::write_settings(doc, &new, Some(&old))
        })?;
    }
    Ok(new)
}

/// Applies a patch to settings, validating it.
pub fn patched_settings(old: &Settings, p: SettingsPatch) -> Result<Settings> {
    let mut s = old.clone();
    if let Some(v) = p.shop_name {
        s.shop_name = shop::non_empty("shop_name", &v, 100)?;
    }
    if let Some(v) = p.currency {
        s.currency_exponent = crate::domain::money::currency_exponent("currency", &v)?;
        s.currency = v.to_ascii_uppercase();
    }
    if let Some(v) = p.timezone {
        shop::check_timezone("timezone", &v)?;
        s.timezone = v;
    }
    if let Some(v) = p.tax_mode {
        s.tax_mode = v;
    }
    if let Some(v) = p.rounding {
        s.rounding = v;
    }
    if let Some(v) = p.cash_rounding {
        if !(1..=100_000).contains(&v) {
            return Err(Error::invalid(
                "cash_rounding",
                "must be between 1 and 100000",
            ));
        }
        s.cash_rounding = v;
    }
    if let Some(v) = p.receipt_text {
        if v.len() > 1000 {
            return Err(Error::invalid("receipt_text", "at most 1000 characters"));
        }
        s.receipt_text = v;
    }
    if let Some(v) = p.low_stock_default {
        if v < 0 {
            return Err(Error::invalid("low_stock_default", "must not be negative"));
        }
        s.low_stock_default = v;
    }
    if let Some(v) = p.oversell {
        s.oversell = v;
    }
    if let Some(v) = p.max_staff {
        if v > 1000 {
            return Err(Error::invalid("max_staff", "at most 1000"));
        }
        s.max_staff = v;
    }
    Ok(s)
}
