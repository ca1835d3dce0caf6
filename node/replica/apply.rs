//! The one verify-and-apply path: local changes and envelopes from elsewhere alike; stored,
//! projected, and revocations enforced in the batch's transaction.

use super::*;

/// A document is re-saved as one chunk once it has this many chunks.
pub(super) const COMPACT_AFTER_CHUNKS: u64 = 128;

impl Ctx<'_> {
    /// Applies envelopes from elsewhere, in order, then what was held waiting for them: one
    /// result per envelope.
    pub fn apply_all(&mut self, envelopes: Vec<Envelope>) -> Result<Vec<Result<Applied>>> {
        let results = envelopes
            .into_iter()
            .map(|e| self.apply_envelope(e))
            .collect();
        self.retry_held()?;
        Ok(results)
    }

    /// Applies an envelope from elsewhere (a peer, a backup, a test) through the same path as
    /// local changes.
    pub fn apply_envelope(&mut self, env: Envelope) -> Result<Applied> {
        let change = env.decode_change()?;
        self.apply(env, change, Origin::Remote)
    }

    pub(super) fn apply(
        &mut self,
        env: Envelope,
        change: Change,
        origin: Origin,
    ) -> Result<Applied> {
        let hash = change.hash();
        if self.tx.open_table(ENVELOPES)?.get(&hash.0)?.is_some() {
            self.unhold(&hash.0)?;
            return Ok(Applied::Duplicate(hash));
        }
        if origin == Origin::Remote
            && let Some(q) = self.quarantined(&hash.0)?
        {
            return match q.reason {
                QuarantineReason::UnknownKind { .. } => Ok(Applied::Kept(
                    hash,
                    "already kept for a later version".into(),
                )),
                QuarantineReason::RevokedSale { .. } => Err(Error::Rejected(
                    "signer has been revoked; this sale is already kept for the owners to review"
                        .into(),
                )),
            };
        }
        let Some(genesis) = self.engine.anchor.genesis else {
            return Err(Error::NoShop("this node has no shop yet".into()));
        };
        let doc_id = match DocId::parse(&env.doc) {
            Ok(d) => d,
            Err(_)
                if crate::docs::is_well_formed_doc_name(&env.doc) && origin == Origin::Remote =>
            {
                return self.apply_unknown_kind(env, change, hash, genesis);
            }
            Err(_) => return Err(Error::Rejected(format!("unknown document {:?}", env.doc))),
        };
        let id = env.doc.clone();

        // 1. verify, against `members` as this node has it.
        self.load(&id)?;
        let deferred = origin == Origin::Remote && matches!(doc_id, DocId::Ledger { .. });
        if !deferred {
            self.engine.flush_pending(&id)?;
        }
        if origin == Origin::Remote {
            // Nothing is held, or looked at further, before this.
            if let Err(why) = self.may_hold(&env, &change, hash, genesis) {
                tracing::warn!(doc = %id, hash = %hash, "refused a change: {why}");
                return Err(Error::Rejected(why));
            }
            // A revoked till's sale is judged before its dependencies: they are its own earlier
            // sales, in quarantine too, and would never arrive.
            if deferred && let Some(device) = self.revoked_sale(&env, &change, genesis) {
                return self.quarantine(&env, QuarantineReason::RevokedSale { device });
            }
            let pending = self.engine.pending.get(&id);
            let missing: Vec<[u8; 32]> = match self.engine.docs.get_mut(&id) {
                Some(doc) => change
                    .deps()
                    .iter()
                    .filter(|d| {
                        doc.get_change_by_hash(d).is_none()
                            && !pending.is_some_and(|p| p.hashes.contains(d))
                    })
                    .map(|d| d.0)
                    .collect(),
                None => change.deps().iter().map(|d| d.0).collect(),
            };
            if !missing.is_empty() {
                return self.hold(&env, hash, "waiting for earlier changes".into(), missing);
            }
        }
        let author: Option<Vec<u8>> = if change.seq() == 1 {
            change.author().map(|a| a.as_bytes().to_vec())
        } else {
            let pending = self
                .engine
                .pending
                .get(&id)
                .and_then(|p| p.authors.get(change.actor_id()).cloned());
            match self.engine.docs.get(&id) {
                _ if pending.is_some() => pending,
                Some(doc) if doc.get_author_for_actor(change.actor_id()).is_some() => doc
                    .get_author_for_actor(change.actor_id())
                    .map(|a| a.as_bytes().to_vec()),
                // Its dependencies are all here, and an actor's earlier changes are always
                // among the dependencies of its later ones: this change lies about its actor.
                _ => {
                    return Err(Error::Rejected(
                        "change author unknown: its actor has no earlier change among its \
                         dependencies"
                            .into(),
                    ));
                }
            }
        };
        self.load("members")?;
        let signer = {
            let mut scratch = AutoCommit::new();
            let members = self.engine.docs.get_mut("members").unwrap_or(&mut scratch);
            let mut vctx = VerifyContext {
                members,
                anchor: &self.engine.anchor,
                genesis,
                cache: &mut self.engine.trust_cache,
            };
            match verify(&env, &change, author.as_deref(), &mut vctx) {
                Verdict::Accept(s) => s,
                Verdict::Hold(why) => {
                    let waits = env
                        .members_heads
                        .iter()
                        .filter(|h| vctx.members.get_change_by_hash(&ChangeHash(**h)).is_none())
                        .copied()
                        .collect();
                    return self.hold(&env, hash, why, waits);
                }
                Verdict::Reject(why) | Verdict::Keep(why) => {
                    tracing::warn!(doc = %id, hash = %hash, "refused a change: {why}");
                    return Err(Error::Rejected(why));
                }
                Verdict::Quarantine(why) => {
                    let DocId::Ledger { device, .. } = &doc_id else {
                        return Err(Error::Rejected(why));
                    };
                    let device = device.clone();
                    return self.quarantine(&env, QuarantineReason::RevokedSale { device });
                }
            }
        };

        // 2. apply to the document (a local change is already in it).
        self.load(&id)?;
        let actor = self.engine.actor.clone();
        let am = self
            .engine
            .docs
            .entry(id.clone())
            .or_insert_with(|| AutoCommit::new().with_actor(actor));
        let (before, after): (Vec<ChangeHash>, Vec<ChangeHash>) = match origin {
            Origin::Local => (change.deps().to_vec(), am.get_heads()),
            Origin::Remote if deferred => {
                // Stored now, applied to the document with the others of this batch.
                let p = self.engine.pending.entry(id.clone()).or_default();
                if p.changes.is_empty() {
                    p.heads = am.get_heads();
                }
                let before = p.heads.clone();
                let mut after: Vec<ChangeHash> = before
                    .iter()
                    .filter(|h| !change.deps().contains(h))
                    .copied()
                    .collect();
                after.push(hash);
                after.sort_unstable();
                if let Some(a) = &author
                    && change.seq() == 1
                {
                    p.authors.insert(change.actor_id().clone(), a.clone());
                }
                p.heads = after.clone();
                p.hashes.insert(hash);
                p.changes.push(change.clone());
                self.touched.insert(id.clone());
                (before, after)
            }
            Origin::Remote => {
                let missing: Vec<[u8; 32]> = change
                    .deps()
                    .iter()
                    .filter(|d| am.get_change_by_hash(d).is_none())
                    .map(|d| d.0)
                    .collect();
                if !missing.is_empty() {
                    return self.hold(&env, hash, "waiting for earlier changes".into(), missing);
                }
                let before = am.get_heads();
                self.touched.insert(id.clone());
                am.apply_changes([change.clone()])?;
                (before, am.get_heads())
            }
        };

        // 3. store: from here on a failure poisons the batch.
        let stored = self.store_change(&id, &env, &change, &after);
        if let Err(e) = stored {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        let projector = self.engine.projector.clone();
        let projected = Projected {
            doc: &doc_id,
            id: &id,
            change: &change,
            signer: &signer,
            before: &before,
            after: &after,
            local: origin == Origin::Local,
        };
        if let Err(e) = projector.project(self, &projected) {
            if !matches!(e, Error::Store(_)) {
                // A projection refusing an entry is a bug or hostile data; the change itself is
                // valid and stays, so log it rather than failing the batch.
                tracing::warn!(doc = %id, "projection skipped an entry: {e}");
            } else {
                self.poisoned = Some(e.to_string());
                return Err(e);
            }
        }
        // The audit row and the alerts of this change (domain::audit, domain::alerts).
        if let Err(e) = projector.record(self, &projected) {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        if matches!(doc_id, DocId::Members | DocId::Settings | DocId::Vault) {
            self.shop_changed = true;
            if doc_id == DocId::Members {
                self.engine.trust_cache.clear();
                if let Err(e) = self.enforce_revocations(&change) {
                    self.poisoned = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        self.emit(Event::ChangeApplied {
            doc: id,
            hash: hash.to_string(),
            local: origin == Origin::Local,
        });
        Ok(Applied::New(hash))
    }

    /// A members change that revokes a key invalidates every change by that key outside the
    /// revocation's accepted set — including ones this node applied before the revocation
    /// arrived. Those documents are rebuilt from their remaining valid envelopes (dropping also
    /// what depended on an invalid change) and the projections are rebuilt.
    pub(super) fn enforce_revocations(&mut self, change: &Change) -> Result<()> {
        self.engine.flush_all_pending()?;
        let members = self
            .engine
            .docs
            .get_mut("members")
            .expect("members was just applied");
        let revoked: Vec<[u8; 32]> = crate::docs::am::root_keys_touched(members, change)
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix("revocation:")
                    .and_then(|h| hex::decode(h).ok())
            })
            .filter_map(|b| b.try_into().ok())
            .collect();
        if revoked.is_empty() {
            return Ok(());
        }
        let trust = Trust::read(
            self.engine.docs.get("members").expect("loaded"),
            None,
            &self.engine.anchor,
        );
        let mut invalid: HashMap<String, HashSet<[u8; 32]>> = HashMap::new();
        for row in self.tx.open_table(ENVELOPES)?.iter()? {
            let (h, v) = row?;
            let Ok(env) = Envelope::from_bytes(v.value()) else {
                continue;
            };
            if revoked.contains(&env.signer)
                && !trust.accepted_after_revocation(&env.signer, h.value())
            {
                invalid
                    .entry(env.doc.clone())
                    .or_default()
                    .insert(*h.value());
            }
        }
        if invalid.is_empty() {
            return Ok(());
        }
        for (doc, bad) in invalid {
            self.rebuild_without(&doc, bad)?;
        }
        self.engine.projector.clone().reindex(self.tx)?;
        Ok(())
    }

    pub(super) fn rebuild_without(
        &mut self,
        id: &str,
        mut dropped: HashSet<[u8; 32]>,
    ) -> Result<()> {
        let hashes: Vec<[u8; 32]> = {
            let t = self.tx.open_table(DOC_CHANGES)?;
            let mut v = Vec::new();
            for row in t.range((id, 0)..=(id, u64::MAX))? {
                v.push(*row?.1.value());
            }
            v
        };
        let mut kept = Vec::new();
        {
            let envs = self.tx.open_table(ENVELOPES)?;
            for h in &hashes {
                let env = match envs.get(h)? {
                    Some(v) => Envelope::from_bytes(v.value())?,
                    None => continue,
                };
                let change = env.decode_change()?;
                if dropped.contains(h) || change.deps().iter().any(|d| dropped.contains(&d.0)) {
                    dropped.insert(*h);
                } else {
                    kept.push((*h, change, env.change));
                }
            }
        }
        let mut doc = AutoCommit::new().with_actor(self.engine.actor.clone());
        doc.apply_changes(kept.iter().map(|(_, c, _)| c.clone()))?;
        let mut changes = self.tx.open_table(DOC_CHANGES)?;
        let mut chunks = self.tx.open_table(DOC_CHUNKS)?;
        let mut docs = self.tx.open_table(DOCS)?;
        let old = read_doc_meta(&docs, id)?.unwrap_or_default();
        for n in 0..old.changes {
            changes.remove((id, n))?;
        }
        for n in old.first_chunk..old.next_chunk {
            chunks.remove((id, n))?;
        }
        for (n, (h, _, _)) in kept.iter().enumerate() {
            changes.insert((id, n as u64), h)?;
        }
        let saved = doc.save();
        chunks.insert((id, 0), saved.as_slice())?;
        let meta = DocMeta {
            heads: doc.get_heads().iter().map(|h| h.0).collect(),
            changes: kept.len() as u64,
            first_chunk: 0,
            next_chunk: 1,
        };
        docs.insert(
            id,
            postcard::to_allocvec(&meta)
                .expect("DocMeta serializes")
                .as_slice(),
        )?;
        let mut removed = Vec::new();
        {
            let mut envs = self.tx.open_table(ENVELOPES)?;
            let mut doc_digests = self.tx.open_table(DOC_DIGESTS)?;
            let mut bucket_digests = self.tx.open_table(BUCKET_DIGESTS)?;
            for h in &dropped {
                if let Some(v) = envs.remove(h)? {
                    removed.push(v.value().to_vec());
                    crate::store::xor_digest(&mut doc_digests, id, h)?;
                    crate::store::xor_digest(&mut bucket_digests, &crate::store::bucket_of(id), h)?;
                }
            }
        }
        drop((changes, chunks, docs));
        // A revoked till's sales that this node had applied before the revocation reached it
        // are not lost either: they go to quarantine, as if they had arrived after it.
        if let Some(genesis) = self.engine.anchor.genesis {
            for bytes in removed {
                let Ok(env) = Envelope::from_bytes(&bytes) else {
                    continue;
                };
                let Ok(change) = env.decode_change() else {
                    continue;
                };
                if let Some(device) = self.revoked_sale(&env, &change, genesis) {
                    let from = std::mem::take(&mut self.from);
                    let kept = self.quarantine(&env, QuarantineReason::RevokedSale { device });
                    self.from = from;
                    match kept {
                        Err(Error::Rejected(_)) | Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        tracing::warn!(doc = %id, dropped = dropped.len(), "dropped changes made invalid by a revocation");
        self.emit(Event::ChangesDropped {
            doc: id.to_string(),
            hashes: dropped.iter().map(hex::encode).collect(),
        });
        self.touched.insert(id.to_string());
        self.engine.docs.insert(id.to_string(), doc);
        Ok(())
    }

    pub(super) fn store_change(
        &mut self,
        id: &str,
        env: &Envelope,
        change: &Change,
        after: &[ChangeHash],
    ) -> Result<()> {
        let hash = change.hash();
        self.tx
            .open_table(ENVELOPES)?
            .insert(&hash.0, env.to_bytes().as_slice())?;
        self.unhold(&hash.0)?;
        self.engine.arrived.push(hash.0);
        crate::store::xor_digest(&mut self.tx.open_table(DOC_DIGESTS)?, id, &hash.0)?;
        crate::store::xor_digest(
            &mut self.tx.open_table(BUCKET_DIGESTS)?,
            &crate::store::bucket_of(id),
            &hash.0,
        )?;
        let mut docs = self.tx.open_table(DOCS)?;
        let mut meta = read_doc_meta(&docs, id)?.unwrap_or_default();
        self.tx
            .open_table(DOC_CHANGES)?
            .insert((id, meta.changes), &hash.0)?;
        meta.changes += 1;
        meta.heads = after.iter().map(|h| h.0).collect();
        let mut chunks = self.tx.open_table(DOC_CHUNKS)?;
        if meta.chunk_count() + 1 >= COMPACT_AFTER_CHUNKS {
            // Compact: one saved document replaces the chunks (history is kept in it). Saved
            // without compression: it is rewritten often and deflate dominated the writer.
            self.engine.flush_pending(id)?;
            let saved = self
                .engine
                .docs
                .get_mut(id)
                .expect("the document was loaded to apply the change")
                .save_nocompress();
            for n in meta.first_chunk..meta.next_chunk {
                chunks.remove((id, n))?;
            }
            meta.first_chunk = meta.next_chunk;
            chunks.insert((id, meta.next_chunk), saved.as_slice())?;
        } else {
            chunks.insert((id, meta.next_chunk), env.change.as_slice())?;
        }
        meta.next_chunk += 1;
        docs.insert(
            id,
            postcard::to_allocvec(&meta)
                .expect("DocMeta serializes")
                .as_slice(),
        )?;
        Ok(())
    }
}
