//! The shop's documents and envelopes as stored, held and quarantined.

use super::*;

impl NodeHandle {
    /// Documents of kinds this version does not know, kept in quarantine: count per kind.
    pub fn kept_unknown_kinds(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        for (_, q) in self.quarantine()? {
            if let crate::replica::QuarantineReason::UnknownKind { kind } = q.reason {
                *out.entry(kind).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// The documents `by` may see (managers and owners): never `vault`, `members` to owners
    /// only (see [`access::require_document`]).
    pub fn documents(&self, by: &Principal) -> Result<Vec<DocumentInfo>> {
        access::require(by, Access::Documents)?;
        Ok(self
            .stored_documents()?
            .into_iter()
            .filter(|d| access::document_served(by, &d.id, &d.kind))
            .collect())
    }

    /// Every document this node stores, `vault` included: ids, heads, change counts and sizes,
    /// no contents. What the device itself compares (restores, replicas, tests); a person asks
    /// through [`Self::documents`].
    pub fn stored_documents(&self) -> Result<Vec<DocumentInfo>> {
        // One read transaction: sizes match the metadata even while the writer compacts.
        let tx = self.read()?;
        let chunks = tx.open_table(crate::store::tables::DOC_CHUNKS)?;
        let docs = tx.open_table(crate::store::tables::DOCS)?;
        let mut out = Vec::new();
        for row in docs.iter()? {
            let id = row?.0.value().to_string();
            let Some(m) = crate::store::read_doc_meta(&docs, &id)? else {
                continue;
            };
            let mut size = 0u64;
            for row in chunks.range((id.as_str(), m.first_chunk)..(id.as_str(), m.next_chunk))? {
                size += row?.1.value().len() as u64;
            }
            out.push(DocumentInfo {
                kind: crate::docs::DocId::parse(&id)
                    .map(|d| d.kind().to_string())
                    .unwrap_or_default(),
                heads: m.heads.iter().map(hex::encode).collect(),
                changes: m.changes,
                size,
                id,
            });
        }
        Ok(out)
    }

    /// A document saved as Automerge bytes (managers and owners; `members` owners only; `vault`
    /// never, answered as not found).
    pub fn document_bytes(&self, by: &Principal, id: &str) -> Result<Vec<u8>> {
        // A binary document cannot be filtered: `members` holds the staff's PIN hashes and
        // admission records, which managers must never read; the vault is never served.
        access::require_document(by, id, "")?;
        let doc = crate::docs::DocId::parse(id)?;
        access::require_document(by, id, doc.kind())?;
        let mut am = self
            .inner
            .store
            .load_doc(id)?
            .ok_or_else(|| Error::NotFound(format!("no document {id}")))?;
        Ok(am.save())
    }

    /// Every stored envelope (for sync, backups and tests), in no particular order.
    pub fn envelopes(&self) -> Result<Vec<Envelope>> {
        let tx = self.read()?;
        let mut out = Vec::new();
        for row in tx.open_table(crate::store::tables::ENVELOPES)?.iter()? {
            out.push(Envelope::from_bytes(row?.1.value())?);
        }
        Ok(out)
    }

    /// The stored envelopes of one document (encoded), in applied order.
    pub fn doc_envelopes(&self, doc: &str) -> Result<Vec<Vec<u8>>> {
        self.read()?.doc_envelopes(doc)
    }

    /// Envelopes held, waiting for their dependencies or the `members` changes they name.
    pub fn held_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        Ok(self.read()?.open_table(crate::store::tables::HELD)?.len()?)
    }

    /// Envelopes in quarantine (revoked tills' sales, documents of unknown kinds).
    pub fn quarantined_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        Ok(self
            .read()?
            .open_table(crate::store::tables::QUARANTINE)?
            .len()?)
    }

    /// Held envelopes by the peer that forwarded them (`""`: a backup or a local import).
    pub fn held_by_peer(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let tx = self.read()?;
        let mut out = std::collections::BTreeMap::new();
        for row in tx.open_table(crate::store::tables::HELD_META)?.iter()? {
            if let Ok(m) = postcard::from_bytes::<crate::replica::HeldMeta>(row?.1.value()) {
                *out.entry(m.from).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// Drops the held envelopes whose time ran out by `now` (ms since the Unix epoch; the
    /// writer does this with the real clock whenever it holds or retries) and returns how many.
    pub async fn expire_held(&self, now: i64) -> Result<u64> {
        self.inner
            .writer
            .write(move |ctx| ctx.expire_held(now))
            .await
    }
}
