//! Held envelopes: those waiting for changes this node lacks, within their caps.

use super::*;

/// Most envelopes held at once (waiting for changes this node lacks), from all peers together;
/// beyond any cap below new ones are not kept (not the sender's fault: anti-entropy brings them
/// again once what they wait for is here). The global caps are what bounds a flood: fresh peer
/// ids and signer keys cost an attacker nothing.
pub const MAX_HELD: usize = 10_000;
/// Most bytes of envelopes held at once.
pub const MAX_HELD_BYTES: u64 = 64 << 20;
/// Most envelopes held from one forwarding peer (its peer id; imports from a backup or the API
/// count as one source).
pub const MAX_HELD_PER_PEER: usize = 1_000;
/// Most bytes of envelopes held from one forwarding peer.
pub const MAX_HELD_BYTES_PER_PEER: u64 = 16 << 20;
/// Most envelopes held for one document.
pub const MAX_HELD_PER_DOC: usize = 1_000;
/// How long an envelope stays held. What a real peer sends waits seconds (a gossiped change
/// overtaking an earlier one, a new device's change before its admission) until the gap pull
/// fetches what it lacks; an hour is ample. Dropping one costs nothing: no longer held, its hash
/// counts as missing again and the next anti-entropy pull fetches it from whoever has it.
pub const HELD_TTL_MS: i64 = 60 * 60 * 1000;
/// What is known of a held envelope besides its bytes (the `HELD_META` table).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HeldMeta {
    /// Its document.
    pub doc: String,
    /// The peer it came from (`""`: a backup or a local import).
    pub from: String,
    /// Size of the stored envelope.
    pub bytes: u64,
    /// When it is dropped (ms since the Unix epoch).
    pub expires: i64,
    /// The change hashes it waits for (missing dependencies or `members` heads).
    pub waits: Vec<[u8; 32]>,
}

/// Held envelopes counted for the caps (see [`MAX_HELD`]).
#[derive(Default)]
pub(super) struct HeldCounts {
    pub(super) total: usize,
    pub(super) bytes: u64,
    pub(super) by_doc: HashMap<String, usize>,
    pub(super) by_peer: HashMap<String, (usize, u64)>,
}

impl HeldCounts {
    pub(super) fn add(&mut self, m: &HeldMeta, sign: i64) {
        let n = |v: usize| v.saturating_add_signed(sign as isize);
        let b = |v: u64| v.saturating_add_signed(sign * m.bytes as i64);
        self.total = n(self.total);
        self.bytes = b(self.bytes);
        let d = self.by_doc.entry(m.doc.clone()).or_default();
        *d = n(*d);
        if *d == 0 {
            self.by_doc.remove(&m.doc);
        }
        let p = self.by_peer.entry(m.from.clone()).or_default();
        *p = (n(p.0), b(p.1));
        if p.0 == 0 {
            self.by_peer.remove(&m.from);
        }
    }

    /// Why one more envelope of `bytes` for `doc` from `from` may not be held, if so.
    pub(super) fn full(&self, doc: &str, from: &str, bytes: u64) -> Option<&'static str> {
        let (peer_n, peer_b) = self.by_peer.get(from).copied().unwrap_or_default();
        if self.total >= MAX_HELD || self.bytes + bytes > MAX_HELD_BYTES {
            Some("this node holds as many waiting changes as it keeps")
        } else if peer_n >= MAX_HELD_PER_PEER || peer_b + bytes > MAX_HELD_BYTES_PER_PEER {
            Some("this node holds as many waiting changes from this peer as it keeps")
        } else if self.by_doc.get(doc).copied().unwrap_or(0) >= MAX_HELD_PER_DOC {
            Some("this node holds as many waiting changes of this document as it keeps")
        } else {
            None
        }
    }
}

impl Ctx<'_> {
    /// Applies the held envelopes waiting for changes stored since the last retry (and what
    /// those unblock in turn), found by the hashes they wait for: nothing else held is read.
    pub fn retry_held(&mut self) -> Result<usize> {
        let mut applied = 0;
        self.expire_held(chrono::Utc::now().timestamp_millis())?;
        while let Some(arrived) = self.engine.arrived.pop() {
            let waiting: Vec<[u8; 32]> = {
                let mut t = self.tx.open_multimap_table(HELD_WAITING)?;
                let mut v = Vec::new();
                for row in t.remove_all(&arrived)? {
                    v.push(*row?.value());
                }
                v
            };
            for h in waiting {
                let env = {
                    let t = self.tx.open_table(HELD)?;
                    let Some(v) = t.get(&h)? else { continue };
                    Envelope::from_bytes(v.value())
                };
                match env.map(|env| self.apply_envelope(env)) {
                    Ok(Ok(Applied::New(_))) => applied += 1,
                    // Still waiting (for something else now): `hold` noted what for.
                    Ok(Ok(Applied::Held(..))) => {}
                    Ok(Ok(Applied::Duplicate(_))) => {}
                    Ok(Ok(Applied::Kept(..))) => self.unhold(&h)?,
                    // Refused now that it could be checked in full, or unreadable: dropped.
                    Ok(Err(_)) | Err(_) => self.unhold(&h)?,
                }
            }
        }
        Ok(applied)
    }

    /// The held-envelope counts, loaded on first use.
    pub(super) fn held_counts(&mut self) -> Result<&mut HeldCounts> {
        if self.engine.held.is_none() {
            let mut counts = HeldCounts::default();
            for row in self.tx.open_table(HELD_META)?.iter()? {
                if let Ok(m) = postcard::from_bytes::<HeldMeta>(row?.1.value()) {
                    counts.add(&m, 1);
                }
            }
            self.engine.held = Some(counts);
        }
        Ok(self.engine.held.as_mut().expect("just loaded"))
    }

    /// Drops held envelopes whose time ran out by `now` (ms); returns how many.
    pub fn expire_held(&mut self, now: i64) -> Result<u64> {
        let expired: Vec<[u8; 32]> = {
            let t = self.tx.open_table(HELD_EXPIRY)?;
            let mut v = Vec::new();
            for row in t.range((i64::MIN, &[0u8; 32])..=(now, &[0xffu8; 32]))? {
                v.push(*row?.0.value().1);
            }
            v
        };
        for h in &expired {
            self.unhold(h)?;
        }
        Ok(expired.len() as u64)
    }

    /// Forgets a held envelope (applied, duplicate, refused or expired) and what it waited for.
    pub(super) fn unhold(&mut self, hash: &[u8; 32]) -> Result<()> {
        let Some(meta) = self.tx.open_table(HELD_META)?.remove(hash)?.map(|v| {
            postcard::from_bytes::<HeldMeta>(v.value())
                .map_err(|e| Error::store("held envelope metadata does not decode", e))
        }) else {
            self.tx.open_table(HELD)?.remove(hash)?;
            return Ok(());
        };
        let meta = meta?;
        self.tx.open_table(HELD)?.remove(hash)?;
        self.tx
            .open_table(HELD_EXPIRY)?
            .remove((meta.expires, hash))?;
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        for w in &meta.waits {
            waiting.remove(w, hash)?;
        }
        if let Some(counts) = self.engine.held.as_mut() {
            counts.add(&meta, -1);
        }
        Ok(())
    }

    /// What an envelope from elsewhere must show before it may be held (or checked further):
    /// a valid signature over its change hash by its signer, who is the change's author where
    /// the change names one, and who is plausible as a writer. "Plausible" (the full check is
    /// [`verify`], once nothing is missing): when this node has every `members` head the
    /// envelope names, the signer is a member at those heads and not revoked there — or the
    /// change is to `members` and may be a device admitting itself, which can only be judged
    /// with its dependencies; when a head is missing, only the signature can be checked, and
    /// the caps on holding (see [`MAX_HELD`]) bound what such envelopes cost.
    pub(super) fn may_hold(
        &mut self,
        env: &Envelope,
        change: &Change,
        hash: ChangeHash,
        genesis: ChangeHash,
    ) -> std::result::Result<(), String> {
        env.verify_signature(&hash).map_err(|e| e.to_string())?;
        if change.seq() == 1
            && change.author().map(|a| a.as_bytes().to_vec()) != Some(env.signer.to_vec())
        {
            return Err("change author is not the signer".into());
        }
        let mut heads = env.members_heads();
        if heads.is_empty() {
            // Only the genesis names no members heads (see `trust::verify`).
            return if hash == genesis {
                Ok(())
            } else {
                Err("a change naming no members heads that is not the shop's genesis".into())
            };
        }
        heads.sort();
        let trust = match self.engine.trust_cache.get(&heads) {
            Some(t) => t.clone(),
            None => {
                let Some(members) = self.engine.docs.get_mut("members") else {
                    return Ok(());
                };
                if heads
                    .iter()
                    .any(|h| members.get_change_by_hash(h).is_none())
                {
                    return Ok(());
                }
                let t = Arc::new(Trust::read(members, Some(&heads), &self.engine.anchor));
                if self.engine.trust_cache.len() > 256 {
                    self.engine.trust_cache.clear();
                }
                self.engine.trust_cache.insert(heads, t.clone());
                t
            }
        };
        match trust.signer(&env.signer) {
            Some((_, false)) => Ok(()),
            Some((_, true)) => Err("signer was revoked at the heads it names".into()),
            None if env.doc == "members" => Ok(()),
            None => Err("signer is not a member at the heads it names".into()),
        }
    }

    /// Keeps a verified-so-far envelope until the changes it waits for (`waits`: change hashes)
    /// arrive, within the caps (see [`MAX_HELD`]); it expires after [`HELD_TTL_MS`].
    pub(super) fn hold(
        &mut self,
        env: &Envelope,
        hash: ChangeHash,
        why: String,
        waits: Vec<[u8; 32]>,
    ) -> Result<Applied> {
        let now = chrono::Utc::now().timestamp_millis();
        self.expire_held(now)?;
        let held = self
            .tx
            .open_table(HELD_META)?
            .get(&hash.0)?
            .map(|v| postcard::from_bytes::<HeldMeta>(v.value()));
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        if let Some(Ok(mut meta)) = held {
            // Retried and still waiting, maybe for something else now.
            for w in &meta.waits {
                waiting.remove(w, &hash.0)?;
            }
            for w in &waits {
                waiting.insert(w, &hash.0)?;
            }
            meta.waits = waits;
            self.put_held_meta(&hash.0, &meta)?;
            return Ok(Applied::Held(hash, why));
        }
        drop(waiting);
        let bytes = env.to_bytes();
        let meta = HeldMeta {
            doc: env.doc.clone(),
            from: self.from.clone(),
            bytes: bytes.len() as u64,
            expires: now + HELD_TTL_MS,
            waits,
        };
        if let Some(full) = self.held_counts()?.full(&meta.doc, &meta.from, meta.bytes) {
            return Ok(Applied::Held(hash, format!("{why}; not kept: {full}")));
        }
        self.held_counts()?.add(&meta, 1);
        self.tx
            .open_table(HELD)?
            .insert(&hash.0, bytes.as_slice())?;
        self.put_held_meta(&hash.0, &meta)?;
        self.tx
            .open_table(HELD_EXPIRY)?
            .insert((meta.expires, &hash.0), ())?;
        let mut waiting = self.tx.open_multimap_table(HELD_WAITING)?;
        for w in &meta.waits {
            waiting.insert(w, &hash.0)?;
        }
        Ok(Applied::Held(hash, why))
    }

    pub(super) fn put_held_meta(&mut self, hash: &[u8; 32], meta: &HeldMeta) -> Result<()> {
        let bytes = postcard::to_allocvec(meta).expect("held metadata serializes");
        self.tx
            .open_table(HELD_META)?
            .insert(hash, bytes.as_slice())?;
        Ok(())
    }
}
