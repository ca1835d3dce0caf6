//! Answering a peer's request, without IO: [`answer`] reads a [`ReplicaRead`] (a read
//! snapshot of the store, or the simulator's replica) and nothing else.

use redb::ReadableTable;

use super::{DOC_BATCH, ENVELOPE_BATCH, Hash32, SyncRequest, SyncResponse};
use crate::error::{Error, Result};
use crate::store::tables::{BUCKET_DIGESTS, DOC_CHANGES, DOC_DIGESTS, ENVELOPES, HELD, QUARANTINE};

/// What the sync protocol reads of a replica, as of one moment: set digests (XOR of change
/// hashes) per sync bucket and per document, change hashes per document, and envelopes.
pub trait ReplicaRead {
    /// (bucket, digest) of every sync bucket: one per document, one per month of ledger
    /// documents.
    fn bucket_digests(&self) -> Result<Vec<(String, Hash32)>>;
    /// (document, digest) of the documents in these buckets.
    fn doc_digests(&self, buckets: &[String]) -> Result<Vec<(String, Hash32)>>;
    /// Every stored change hash of these documents.
    fn doc_hashes(&self, docs: &[String]) -> Result<Vec<(String, Vec<Hash32>)>>;
    /// Encoded envelopes by change hash (unknown hashes are skipped).
    fn envelope_bytes(&self, hashes: &[Hash32]) -> Result<Vec<Vec<u8>>>;
    /// The hashes this replica has neither stored, held nor in quarantine (quarantined
    /// envelopes are not fetched again on every pull).
    fn missing_hashes(&self, hashes: &[Hash32]) -> Result<Vec<Hash32>>;

    /// The stored envelopes of one document (encoded), in applied order.
    fn doc_envelopes(&self, doc: &str) -> Result<Vec<Vec<u8>>> {
        let hashes: Vec<Hash32> = self
            .doc_hashes(&[doc.to_string()])?
            .into_iter()
            .flat_map(|(_, h)| h)
            .collect();
        self.envelope_bytes(&hashes)
    }
}

/// Answers a member's request from `replica`. Only member devices' requests reach this (the
/// transport checks): it serves `vault` like every document. Requests that need more than a
/// read (redeeming an invite, an offer, gossip keys, a relay's snapshot status) are answered
/// by the node, not here.
pub fn answer(req: SyncRequest, replica: &impl ReplicaRead) -> SyncResponse {
    let answer = match req {
        SyncRequest::Buckets => replica.bucket_digests().map(SyncResponse::Buckets),
        SyncRequest::Docs(buckets) if buckets.len() <= 4096 => {
            replica.doc_digests(&buckets).map(SyncResponse::Docs)
        }
        SyncRequest::Hashes(docs) if docs.len() <= DOC_BATCH => {
            replica.doc_hashes(&docs).map(SyncResponse::Hashes)
        }
        SyncRequest::Envelopes(hashes) if hashes.len() <= ENVELOPE_BATCH => {
            replica.envelope_bytes(&hashes).map(SyncResponse::Envelopes)
        }
        SyncRequest::RedeemStart { .. }
        | SyncRequest::RedeemFinish { .. }
        | SyncRequest::Offer(_) => Err(Error::Rejected(
            "answered by the node, not from a read".into(),
        )),
        SyncRequest::SnapshotStatus => Err(Error::Rejected("only a relay takes snapshots".into())),
        SyncRequest::GossipKeys => Err(Error::Rejected(
            "gossip keys are handed to an authenticated till only".into(),
        )),
        _ => Err(Error::invalid("request", "request over its size limit")),
    };
    answer.unwrap_or_else(|e| SyncResponse::Refused(super::Refusal::of(&e)))
}

/// The store's sync tables, read in one transaction.
impl ReplicaRead for redb::ReadTransaction {
    fn bucket_digests(&self) -> Result<Vec<(String, Hash32)>> {
        let mut out = Vec::new();
        for row in self.open_table(BUCKET_DIGESTS)?.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), *v.value()));
        }
        Ok(out)
    }

    fn doc_digests(&self, buckets: &[String]) -> Result<Vec<(String, Hash32)>> {
        let t = self.open_table(DOC_DIGESTS)?;
        let mut out = Vec::new();
        for b in buckets {
            if b.starts_with("ledger/") {
                let from = format!("{b}-");
                let to = format!("{b}.");
                for row in t.range(from.as_str()..to.as_str())? {
                    let (k, v) = row?;
                    out.push((k.value().to_string(), *v.value()));
                }
            } else if let Some(v) = t.get(b.as_str())? {
                out.push((b.clone(), *v.value()));
            }
        }
        Ok(out)
    }

    fn doc_hashes(&self, docs: &[String]) -> Result<Vec<(String, Vec<Hash32>)>> {
        let t = self.open_table(DOC_CHANGES)?;
        let mut out = Vec::new();
        for d in docs {
            let mut hashes = Vec::new();
            for row in t.range((d.as_str(), 0)..=(d.as_str(), u64::MAX))? {
                hashes.push(*row?.1.value());
            }
            out.push((d.clone(), hashes));
        }
        Ok(out)
    }

    fn envelope_bytes(&self, hashes: &[Hash32]) -> Result<Vec<Vec<u8>>> {
        let t = self.open_table(ENVELOPES)?;
        let mut out = Vec::new();
        for h in hashes {
            if let Some(v) = t.get(h)? {
                out.push(v.value().to_vec());
            }
        }
        Ok(out)
    }

    fn missing_hashes(&self, hashes: &[Hash32]) -> Result<Vec<Hash32>> {
        let stored = self.open_table(ENVELOPES)?;
        let held = self.open_table(HELD)?;
        let kept = self.open_table(QUARANTINE)?;
        let mut out = Vec::new();
        for h in hashes {
            if stored.get(h)?.is_none() && held.get(h)?.is_none() && kept.get(h)?.is_none() {
                out.push(*h);
            }
        }
        Ok(out)
    }
}
