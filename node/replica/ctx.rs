//! A job's view of the writer ([`Ctx`]): the open transaction, the loaded documents, metadata,
//! and making a local change.

use super::*;

/// Documents kept loaded besides `members`, `settings`, `catalog` and `vault`.
pub(super) const DOC_CACHE: usize = 64;

/// One job's view of the writer: the open write transaction and the loaded documents.
pub struct Ctx<'a> {
    pub(super) engine: &'a mut Engine,
    /// The batch's write transaction.
    pub tx: &'a WriteTransaction,
    pub(super) events: Vec<Event>,
    pub(super) outbox: Vec<Vec<u8>>,
    pub(super) touched: HashSet<String>,
    pub(super) poisoned: Option<String>,
    pub(super) shop_changed: bool,
    pub(super) durable: bool,
    /// The peer the job's envelopes came from (`""`: a backup or a local import).
    pub(super) from: String,
}

impl Ctx<'_> {
    /// The envelopes this job applies were forwarded by `peer` (held ones count against it).
    pub fn forwarded_by(&mut self, peer: &str) {
        self.from = peer.to_string();
    }

    /// This job only applies changes from peers: its batch may commit without syncing to disk
    /// (unless another job of the batch needs it). A crash may then lose what it applied, which
    /// costs nothing: the peers still have it and anti-entropy fetches it again. The writer
    /// syncs within [`MAX_UNSYNCED`], by itself if no job comes; local changes are always synced
    /// before they are answered.
    pub fn relaxed(&mut self) {
        self.durable = false;
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.engine.device_id
    }

    /// This device's key.
    pub fn device_key(&self) -> &SigningKey {
        &self.engine.device_key
    }

    /// Queues an event, sent once the batch commits.
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The readers' shop view as of the last commit (members and settings).
    pub fn shop(&self) -> Arc<crate::docs::shop::ShopView> {
        self.engine
            .shared
            .shop
            .read()
            .expect("shop view lock is never poisoned")
            .clone()
    }

    /// A loaded document, if it exists.
    pub fn doc(&mut self, id: &str) -> Result<Option<&mut AutoCommit>> {
        self.load(id)?;
        self.engine.flush_pending(id)?;
        Ok(self.engine.docs.get_mut(id))
    }

    pub(super) fn load(&mut self, id: &str) -> Result<()> {
        if self.engine.docs.contains_key(id) {
            return Ok(());
        }
        let docs = self.tx.open_table(DOCS)?;
        let chunks = self.tx.open_table(DOC_CHUNKS)?;
        if let Some(mut doc) = load_doc(&docs, &chunks, id)? {
            doc.set_actor(self.engine.actor.clone());
            if self.engine.docs.len() >= DOC_CACHE + 4 {
                let evict: Vec<String> = self
                    .engine
                    .docs
                    .keys()
                    .filter(|k| k.starts_with("ledger/") && !self.engine.pending.contains_key(*k))
                    .take(DOC_CACHE / 2)
                    .cloned()
                    .collect();
                for k in evict {
                    self.engine.docs.remove(&k);
                }
            }
            self.engine.docs.insert(id.to_string(), doc);
        }
        Ok(())
    }

    /// Reads a `meta` value in this transaction.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let t = self.tx.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes a `meta` value in this transaction.
    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.tx.open_table(META)?.insert(key, value)?;
        Ok(())
    }

    /// Pins the shop's genesis (first `members` change) before applying it.
    pub fn set_genesis(&mut self, hash: ChangeHash) -> Result<()> {
        self.set_meta(meta::GENESIS, &hash.0)?;
        self.engine.anchor.genesis = Some(hash);
        self.engine.trust_cache.clear();
        self.shop_changed = true;
        Ok(())
    }

    /// Pins the genesis of a shop this node is joining (refuses a different shop), and, when
    /// the inviting device (or the backup) says which, the devices admitted before protocol 2.
    pub fn adopt_genesis(
        &mut self,
        hash: ChangeHash,
        legacy_devices: Option<&[[u8; 32]]>,
    ) -> Result<()> {
        match self.engine.anchor.genesis {
            Some(g) if g == hash => {}
            Some(_) => return Err(Error::Conflict("this node belongs to another shop".into())),
            None => self.set_genesis(hash)?,
        }
        if let Some(legacy) = legacy_devices
            && self.meta(meta::LEGACY_DEVICES)?.is_none()
        {
            let bytes = postcard::to_allocvec(&legacy.to_vec()).expect("a list of keys serializes");
            self.set_meta(meta::LEGACY_DEVICES, &bytes)?;
            self.engine.anchor.legacy_devices = legacy.iter().copied().collect();
            self.engine.trust_cache.clear();
            self.shop_changed = true;
        }
        Ok(())
    }

    /// Makes a change on `doc` with `edit`, signs it with `key` and applies it like any
    /// envelope. `edit` must validate before it writes: an error rolls the edit back.
    pub fn change(
        &mut self,
        doc: &DocId,
        key: &SigningKey,
        edit: impl FnOnce(&mut AutoCommit) -> Result<()>,
    ) -> Result<ChangeHash> {
        if self.shop().this_device.as_ref().is_some_and(|d| d.revoked) {
            return Err(Error::Forbidden(
                "this device was revoked by an owner of the shop: nothing recorded here would \
                 count. Ask an owner to invite it again."
                    .into(),
            ));
        }
        if key.verifying_key() == self.engine.device_key.verifying_key()
            && self
                .shop()
                .this_device
                .as_ref()
                .is_some_and(|d| d.role == crate::model::DeviceRole::Relay)
        {
            // Only tills write on a device's own account (DESIGN §6): a relay's replica takes
            // changes signed by a person's key, never its own.
            return Err(Error::Forbidden(RELAY_REFUSES.into()));
        }
        let id = doc.to_string();
        let members_heads = match self.doc("members")? {
            Some(m) => m.get_heads(),
            None => Vec::new(),
        };
        self.load(&id)?;
        self.engine.flush_pending(&id)?;
        let actor = self.engine.actor.clone();
        let am = self
            .engine
            .docs
            .entry(id.clone())
            .or_insert_with(|| AutoCommit::new().with_actor(actor));
        let fresh = am.get_heads().is_empty();
        am.set_author(Some(Author::from(key.verifying_key().to_bytes().to_vec())));
        if fresh {
            am.put(ROOT, "schema", SCHEMA_VERSION as u64)?;
        }
        if let Err(e) = edit(am) {
            am.rollback();
            if fresh {
                self.engine.docs.remove(&id);
            }
            return Err(e);
        }
        // The change carries its time and the device that made it (signed with it): the audit
        // trail reads both (domain::audit).
        let options = automerge::transaction::CommitOptions::default()
            .with_time(chrono::Utc::now().timestamp_millis())
            .with_message(format!("{{\"device\":\"{}\"}}", self.engine.device_id));
        if am.commit_with(options).is_none() {
            return Err(Error::Internal(format!("an edit of {id} changed nothing")));
        }
        let change = am
            .get_last_local_change()
            .expect("a change was just committed");
        self.touched.insert(id.clone());
        if fresh && *doc == DocId::Members && self.engine.anchor.genesis.is_none() {
            // The shop's first change: pin it as the genesis that vouches for itself.
            self.set_genesis(change.hash())?;
        }
        let env = Envelope::sign(key, &id, &change, SCHEMA_VERSION, &members_heads);
        let bytes = env.to_bytes();
        match self.apply(env, change, Origin::Local) {
            Ok(Applied::New(h)) => {
                self.outbox.push(bytes);
                Ok(h)
            }
            Ok(other) => {
                self.engine.docs.remove(&id);
                Err(Error::Internal(format!(
                    "a local change was not applied: {other:?}"
                )))
            }
            Err(e) => {
                self.engine.docs.remove(&id);
                Err(e)
            }
        }
    }

    /// Reads the signer's role at the current `members` (for entry-level rules).
    pub fn signer_is_person(signer: &Signer) -> bool {
        signer.person_role().is_some()
    }
}
