//! Quarantine: sales of revoked tills and documents of unknown kinds, kept but not applied.

use super::*;

/// Most envelopes in quarantine (sales of revoked tills, documents of unknown kinds) from all
/// signers together. Only envelopes signed by a device or person of this shop get there (see
/// `Ctx::quarantine`), so the per-signer caps below bound what each key costs, and these
/// bound the shop's few keys together. Beyond a cap nothing more is kept: a revoked till's
/// further sales are refused as before (and stay on the till's disk).
pub const MAX_QUARANTINED: usize = 50_000;
/// Most bytes in quarantine.
pub const MAX_QUARANTINED_BYTES: u64 = 64 << 20;
/// Most envelopes in quarantine signed by one key.
pub const MAX_QUARANTINED_PER_SIGNER: usize = 10_000;
/// Most bytes in quarantine signed by one key.
pub const MAX_QUARANTINED_BYTES_PER_SIGNER: u64 = 16 << 20;

/// Why an envelope is in quarantine (the `QUARANTINE` table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QuarantineReason {
    /// A sale signed by this till after an owner revoked it (`docs::trust::revoked_sale`).
    RevokedSale {
        /// The revoked till's device id.
        device: String,
    },
    /// A document of a kind this build does not know, signed by a member.
    UnknownKind {
        /// The kind (the document name's first segment).
        kind: String,
    },
}

/// An envelope in quarantine, with why and where from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Why it is kept.
    pub reason: QuarantineReason,
    /// The peer it came from (`""`: a local import, or a change this node had applied before
    /// the revocation reached it).
    pub from: String,
    /// When it was kept (ms since the Unix epoch).
    pub kept_at: i64,
    /// The envelope ([`Envelope::to_bytes`]).
    pub envelope: Vec<u8>,
}

/// Envelopes in quarantine counted for the caps (see [`MAX_QUARANTINED`]).
#[derive(Default)]
pub(super) struct QuarantineCounts {
    pub(super) total: usize,
    pub(super) bytes: u64,
    pub(super) by_signer: HashMap<[u8; 32], (usize, u64)>,
}

impl QuarantineCounts {
    pub(super) fn add(&mut self, signer: &[u8; 32], bytes: u64, sign: i64) {
        let n = |v: usize| v.saturating_add_signed(sign as isize);
        let b = |v: u64| v.saturating_add_signed(sign * bytes as i64);
        self.total = n(self.total);
        self.bytes = b(self.bytes);
        let s = self.by_signer.entry(*signer).or_default();
        *s = (n(s.0), b(s.1));
        if s.0 == 0 {
            self.by_signer.remove(signer);
        }
    }

    pub(super) fn full(&self, signer: &[u8; 32], bytes: u64) -> Option<&'static str> {
        let (n, b) = self.by_signer.get(signer).copied().unwrap_or_default();
        if self.total >= MAX_QUARANTINED || self.bytes + bytes > MAX_QUARANTINED_BYTES {
            Some("the quarantine is full")
        } else if n >= MAX_QUARANTINED_PER_SIGNER || b + bytes > MAX_QUARANTINED_BYTES_PER_SIGNER {
            Some("the quarantine holds as much from this signer as it keeps")
        } else {
            None
        }
    }
}

impl Ctx<'_> {
    /// The envelope in quarantine with this change hash, if any.
    pub fn quarantined(&self, hash: &[u8; 32]) -> Result<Option<Quarantined>> {
        let t = self.tx.open_table(QUARANTINE)?;
        let Some(v) = t.get(hash)? else {
            return Ok(None);
        };
        Ok(postcard::from_bytes(v.value()).ok())
    }

    /// Every envelope in quarantine, by change hash.
    pub fn quarantine_all(&self) -> Result<Vec<([u8; 32], Quarantined)>> {
        let mut out = Vec::new();
        for row in self.tx.open_table(QUARANTINE)?.iter()? {
            let (h, v) = row?;
            if let Ok(q) = postcard::from_bytes::<Quarantined>(v.value()) {
                out.push((*h.value(), q));
            }
        }
        Ok(out)
    }

    /// The device id if `env` is a sale of a till revoked since (see
    /// [`crate::docs::trust::revoked_sale`]).
    pub(super) fn revoked_sale(
        &mut self,
        env: &Envelope,
        change: &Change,
        genesis: ChangeHash,
    ) -> Option<String> {
        self.load("members").ok()?;
        let members = self.engine.docs.get_mut("members")?;
        let mut vctx = VerifyContext {
            members,
            anchor: &self.engine.anchor,
            genesis,
            cache: &mut self.engine.trust_cache,
        };
        crate::docs::trust::revoked_sale(env, change, &mut vctx)
    }

    pub(super) fn quarantine_counts(&mut self) -> Result<&mut QuarantineCounts> {
        if self.engine.quarantined.is_none() {
            let mut counts = QuarantineCounts::default();
            for row in self.tx.open_table(QUARANTINE_BY_SIGNER)?.iter()? {
                let (k, v) = row?;
                counts.add(k.value().0, v.value(), 1);
            }
            self.engine.quarantined = Some(counts);
        }
        Ok(self.engine.quarantined.as_mut().expect("just loaded"))
    }

    /// Keeps a verified envelope in quarantine (see [`QuarantineReason`]) within the caps
    /// ([`MAX_QUARANTINED`]). A revoked till's sale is still refused (`Err`): it counts against
    /// the device that sent it, which stays out. A document of an unknown kind is
    /// [`Applied::Kept`].
    pub(super) fn quarantine(
        &mut self,
        env: &Envelope,
        reason: QuarantineReason,
    ) -> Result<Applied> {
        let hash = env.decode_change()?.hash();
        let bytes = env.to_bytes();
        let full = self
            .quarantine_counts()?
            .full(&env.signer, bytes.len() as u64);
        if full.is_none() {
            let q = Quarantined {
                reason: reason.clone(),
                from: self.from.clone(),
                kept_at: chrono::Utc::now().timestamp_millis(),
                envelope: bytes.clone(),
            };
            let value = postcard::to_allocvec(&q).expect("a quarantined envelope serializes");
            self.tx
                .open_table(QUARANTINE)?
                .insert(&hash.0, value.as_slice())?;
            self.tx
                .open_table(QUARANTINE_BY_SIGNER)?
                .insert((&env.signer, &hash.0), bytes.len() as u64)?;
            self.quarantine_counts()?
                .add(&env.signer, bytes.len() as u64, 1);
            self.unhold(&hash.0)?;
        }
        let not_kept = full.map(|f| format!("; not kept: {f}")).unwrap_or_default();
        match reason {
            QuarantineReason::RevokedSale { device } => {
                tracing::warn!(%device, %hash, "a revoked till's sale{not_kept}");
                if full.is_none() {
                    self.emit(Event::RevokedSaleKept {
                        device,
                        hash: hash.to_string(),
                    });
                }
                Err(Error::Rejected(format!(
                    "signer has been revoked; its sale is kept for the owners to review{not_kept}"
                )))
            }
            QuarantineReason::UnknownKind { kind } => Ok(Applied::Kept(
                hash,
                format!("a document of kind {kind:?}, which this version does not know{not_kept}"),
            )),
        }
    }

    /// Takes an envelope out of quarantine (accepted, dismissed, or re-offered).
    pub fn unquarantine(&mut self, hash: &[u8; 32]) -> Result<Option<Quarantined>> {
        let Some(q) = self.quarantined(hash)? else {
            return Ok(None);
        };
        self.tx.open_table(QUARANTINE)?.remove(hash)?;
        if let Ok(env) = Envelope::from_bytes(&q.envelope) {
            let removed = self
                .tx
                .open_table(QUARANTINE_BY_SIGNER)?
                .remove((&env.signer, hash))?
                .map(|v| v.value());
            if let (Some(bytes), Some(counts)) = (removed, self.engine.quarantined.as_mut()) {
                counts.add(&env.signer, bytes, -1);
            }
        }
        Ok(Some(q))
    }

    /// An envelope for a document kind this build does not know, with a well-formed name:
    /// checked as far as it can be (signature; signer a member of this shop), then kept or held.
    pub(super) fn apply_unknown_kind(
        &mut self,
        env: Envelope,
        change: Change,
        hash: ChangeHash,
        genesis: ChangeHash,
    ) -> Result<Applied> {
        if let Err(why) = self.may_hold(&env, &change, hash, genesis) {
            tracing::warn!(doc = %env.doc, %hash, "refused a change: {why}");
            return Err(Error::Rejected(why));
        }
        // The Automerge author of an actor's later changes is in its document, which this
        // build does not keep: only the first change's is checked here; the version that knows
        // the kind verifies the kept envelope in full.
        let author = match change.seq() {
            1 => change.author().map(|a| a.as_bytes().to_vec()),
            _ => Some(env.signer.to_vec()),
        };
        self.load("members")?;
        let mut scratch = AutoCommit::new();
        let members = self.engine.docs.get_mut("members").unwrap_or(&mut scratch);
        let mut vctx = VerifyContext {
            members,
            anchor: &self.engine.anchor,
            genesis,
            cache: &mut self.engine.trust_cache,
        };
        match verify(&env, &change, author.as_deref(), &mut vctx) {
            Verdict::Keep(_) => {
                let kind = crate::docs::trust::kind_of(&env.doc).to_string();
                self.quarantine(&env, QuarantineReason::UnknownKind { kind })
            }
            Verdict::Hold(why) => {
                let waits = env
                    .members_heads
                    .iter()
                    .filter(|h| vctx.members.get_change_by_hash(&ChangeHash(**h)).is_none())
                    .copied()
                    .collect();
                self.hold(&env, hash, why, waits)
            }
            Verdict::Reject(why) | Verdict::Quarantine(why) => Err(Error::Rejected(why)),
            Verdict::Accept(_) => Err(Error::Rejected(format!("unknown document {:?}", env.doc))),
        }
    }

    /// Re-offers the kept envelopes of document kinds this build knows (kept by an older
    /// version): each goes through the full verify-and-apply path, as if it had just arrived.
    /// Returns the kinds still unknown, whose envelopes stay kept. Run at every start, so
    /// replacing the binary by one that knows a kind is all an upgrade needs.
    pub fn reoffer_kept(&mut self) -> Result<std::collections::BTreeSet<String>> {
        let mut unknown = std::collections::BTreeSet::new();
        let mut known = Vec::new();
        for (h, q) in self.quarantine_all()? {
            if let QuarantineReason::UnknownKind { kind } = &q.reason {
                match Envelope::from_bytes(&q.envelope) {
                    Ok(env) if DocId::parse(&env.doc).is_ok() => known.push((h, env)),
                    Ok(_) => {
                        unknown.insert(kind.clone());
                    }
                    Err(_) => {
                        self.unquarantine(&h)?;
                    }
                }
            }
        }
        for (h, env) in known {
            self.unquarantine(&h)?;
            if let Err(e) = self.apply_envelope(env) {
                tracing::warn!(hash = %hex::encode(h), "a kept change was refused: {e}");
            }
        }
        self.retry_held()?;
        Ok(unknown)
    }
}
