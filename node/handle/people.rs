//! The shop and its people: first-start setup, logins, settings, people and devices.

use super::*;

impl NodeHandle {
    /// The one-time token that first-start setup and join over HTTP need from another device
    /// than this one, while the node has no shop (`None` once it has one). Made at start and
    /// kept in memory only: `tillmesh run` prints it with the UI's address.
    pub fn setup_token(&self) -> Option<&str> {
        self.view()
            .shop_id
            .is_none()
            .then_some(self.inner.setup_token.as_str())
    }

    /// Create the shop on a node that has none (first start / `tillmesh init`).
    pub async fn create_shop(&self, s: NewShop) -> Result<ShopCreated> {
        if self.view().shop_id.is_some() {
            return Err(Error::HasShop("this node already belongs to a shop".into()));
        }
        let shop_name = shop::non_empty("shop_name", &s.shop_name, 100)?;
        let owner_name = shop::non_empty("owner_name", &s.owner_name, 100)?;
        let username = check_username(&s.username)?;
        identity::check_password("password", &s.password)?;
        let currency = s.currency.unwrap_or_else(|| "EUR".into());
        let currency_exponent = crate::domain::money::currency_exponent("currency", &currency)?;
        let timezone = s.timezone.unwrap_or_else(|| "UTC".into());
        shop::check_timezone("timezone", &timezone)?;
        let device_name = s
            .device_name
            .map(|d| shop::non_empty("device_name", &d, 100))
            .transpose()?
            .unwrap_or_else(|| "Till 1".into());
        let owner_key = identity::new_signing_key();
        let recovery = identity::new_signing_key();
        let password = s.password;
        let sealing_key = owner_key.clone();
        let owner_sealed = blocking(move || {
            identity::seal_key(&sealing_key, &password, identity::KdfParams::PASSWORD)
        })
        .await?;
        let shop_id = Uuid::new_v4();
        let genesis = ShopGenesis {
            shop_id,
            settings: Settings {
                shop_name,
                currency: currency.to_ascii_uppercase(),
                currency_exponent,
                timezone,
                tax_mode: s.tax_mode.unwrap_or(TaxMode::Inclusive),
                rounding: Rounding::HalfUp,
                cash_rounding: 1,
                receipt_text: String::new(),
                low_stock_default: 0,
                oversell: OversellPolicy::Warn,
                max_staff: 5,
            },
            owner: Person {
                id: Uuid::new_v4(),
                name: owner_name,
                username,
                role: Role::Owner,
                public_key: Some(hex::encode(owner_key.verifying_key().as_bytes())),
                revoked: false,
            },
            owner_key,
            owner_sealed,
            recovery_public: hex::encode(recovery.verifying_key().as_bytes()),
            device_name,
        };
        self.inner
            .writer
            .write(move |ctx| commands::create_shop(ctx, genesis))
            .await?;
        Ok(ShopCreated {
            shop_id,
            recovery_key: identity::format_recovery_key(&recovery),
        })
    }

    /// Check an owner's or manager's password and unlock their person key.
    pub async fn login_password(&self, username: &str, password: &str) -> Result<Principal> {
        let view = self.view();
        let wrong = || Error::Unauthorized("wrong username or password".into());
        let found = view
            .person_by_username(username)
            .filter(|p| !p.person.revoked && p.person.role >= Role::Manager)
            .and_then(|p| {
                view.vault
                    .get(&p.person.id)
                    .map(|k| (p.person.clone(), k.clone()))
            });
        let password = password.to_string();
        let Some((person, sealed)) = found else {
            // Spend the same time as a real check, so timing does not reveal usernames.
            let _ = blocking(move || identity::unseal_key(dummy_sealed_key()?, &password)).await;
            return Err(wrong());
        };
        let key = blocking(move || identity::unseal_key(&sealed, &password))
            .await?
            .ok_or_else(wrong)?;
        let principal = Principal {
            person_id: person.id,
            name: person.name,
            username: person.username,
            role: person.role,
            key: Some(key),
        };
        if access::allows(&principal, Access::RotateGossipKey) && view.gossip.is_empty() {
            // A shop from before gossip keys rotated: its key comes from the shop secret, which
            // every old backup holds. The first owner to sign in rotates it once.
            let by = principal.clone();
            let rotated = self
                .inner
                .writer
                .write(move |ctx| commands::rotate_legacy_gossip_key(ctx, &by))
                .await;
            if let Err(e) = rotated {
                tracing::warn!("could not rotate the legacy gossip key: {e}");
            }
        }
        Ok(principal)
    }

    /// Check a staff PIN.
    pub async fn login_pin(&self, username: &str, pin: &str) -> Result<Principal> {
        let view = self.view();
        let wrong = || Error::Unauthorized("wrong username or PIN".into());
        let Some(rec) = view
            .person_by_username(username)
            .filter(|p| !p.person.revoked && p.person.role == Role::Staff)
            .cloned()
        else {
            let pin = pin.to_string();
            let _ = blocking(move || identity::verify_pin(&pin, dummy_pin_hash()?)).await;
            return Err(wrong());
        };
        let stored = rec.pin_hash.clone().unwrap_or_default();
        let pin = pin.to_string();
        if !blocking(move || identity::verify_pin(&pin, &stored)).await? {
            return Err(wrong());
        }
        Ok(Principal {
            person_id: rec.person.id,
            name: rec.person.name,
            username: rec.person.username,
            role: rec.person.role,
            key: None,
        })
    }

    /// Look up a principal again (for sessions): fails if the person was revoked or demoted.
    pub fn refresh_principal(&self, p: &Principal) -> Result<()> {
        match self.view().person(p.person_id) {
            Some(r) if !r.person.revoked && r.person.role == p.role => Ok(()),
            _ => Err(Error::Unauthorized("this login is no longer valid".into())),
        }
    }

    /// The shop's settings.
    pub fn settings(&self) -> Result<Settings> {
        self.view().settings().cloned()
    }

    /// Change settings (owner).
    pub async fn update_settings(&self, by: &Principal, patch: SettingsPatch) -> Result<Settings> {
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::update_settings(ctx, &by, patch))
            .await
    }

    /// People who may log in (not revoked), for the login screen: names, usernames and roles,
    /// nothing secret. No principal needed; the login itself still checks PIN or password.
    pub fn login_people(&self) -> Vec<Person> {
        self.view()
            .people
            .iter()
            .filter(|p| !p.person.revoked)
            .map(|p| p.person.clone())
            .collect()
    }

    /// People of the shop (manager and owner).
    pub fn people(&self, by: &Principal) -> Result<Vec<Person>> {
        access::require(by, Access::People)?;
        Ok(self
            .view()
            .people
            .iter()
            .map(|p| p.person.clone())
            .collect())
    }

    /// Add a person (owner: anyone; manager: staff).
    pub async fn add_person(&self, by: &Principal, p: NewPerson) -> Result<Person> {
        let username = check_username(&p.username)?;
        commands::check_add_person(&self.view(), by, &username, p.role)?;
        let person = Person {
            id: Uuid::new_v4(),
            name: shop::non_empty("name", &p.name, 100)?,
            username,
            role: p.role,
            public_key: None,
            revoked: false,
        };
        let prepared = match p.role {
            Role::Staff => {
                if p.password.is_some() {
                    return Err(Error::invalid(
                        "password",
                        "staff log in with a PIN, not a password",
                    ));
                }
                let pin = p
                    .pin
                    .ok_or_else(|| Error::invalid("pin", "staff need a PIN of 4–6 digits"))?;
                identity::check_pin("pin", &pin)?;
                let pin_hash = blocking(move || identity::hash_pin(&pin)).await?;
                PreparedPerson {
                    person,
                    pin_hash: Some(pin_hash),
                    sealed: None,
                }
            }
            Role::Manager | Role::Owner => {
                if p.pin.is_some() {
                    return Err(Error::invalid(
                        "pin",
                        "owners and managers log in with a password",
                    ));
                }
                let password = p.password.ok_or_else(|| {
                    Error::invalid("password", "owners and managers need a password")
                })?;
                identity::check_password("password", &password)?;
                let key = identity::new_signing_key();
                let mut person = person;
                person.public_key = Some(hex::encode(key.verifying_key().as_bytes()));
                let sealed = blocking(move || {
                    identity::seal_key(&key, &password, identity::KdfParams::PASSWORD)
                })
                .await?;
                PreparedPerson {
                    person,
                    pin_hash: None,
                    sealed: Some(sealed),
                }
            }
        };
        let by = by.clone();
        self.inner
            .writer
            .write(move |ctx| commands::add_person(ctx, &by, prepared))
            .await
    }

    /// Revoke a person (uuid) or a device (device id) (owner).
    pub async fn revoke_member(&self, by: &Principal, id: &str) -> Result<()> {
        let by = by.clone();
        let id = id.to_string();
        self.inner
            .writer
            .write(move |ctx| commands::revoke_member(ctx, &by, &id))
            .await
    }

    /// Devices of the shop.
    pub fn devices(&self) -> Result<Vec<Device>> {
        Ok(self.view().devices.clone())
    }
}

fn check_username(u: &str) -> Result<String> {
    let u = u.trim();
    if !(2..=32).contains(&u.len())
        || !u
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(Error::invalid(
            "username",
            "2–32 characters: letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(u.to_string())
}
