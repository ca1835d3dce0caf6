//! Anti-entropy (`/tillmesh/sync/1`): find and fetch the signed envelopes another replica has
//! and this one lacks, without trusting anything it sends.
//!
//! Replicas compare set digests (XOR of change hashes) top-down: sync buckets (one per
//! document; one per month of ledger documents), then the documents of differing buckets, then
//! the change hashes of differing documents, and finally fetch the missing envelopes in bounded
//! batches. Every fetched envelope goes through the node's verify-and-apply path
//! ([`NodeHandle::import_envelopes`]); Automerge's own sync protocol is not used, so nothing is
//! applied unverified. The protocol logic is transport-free: [`serve`] answers a request from the
//! store, [`pull`] drives a conversation through any [`SyncPeer`].

use serde::{Deserialize, Serialize};

use crate::NodeHandle;
use crate::docs::Envelope;
use crate::error::{Error, Result};

/// Largest encoded request or response.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most envelopes asked for (and applied) in one batch.
pub const ENVELOPE_BATCH: usize = 512;
/// Most documents whose hashes are asked for at once.
const DOC_BATCH: usize = 64;

/// A 32-byte digest or change hash.
pub type Hash32 = [u8; 32];

/// What one replica asks another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// Digests of every sync bucket.
    Buckets,
    /// Digests of the documents in these buckets.
    Docs(Vec<String>),
    /// Every change hash of these documents.
    Hashes(Vec<String>),
    /// These envelopes (at most [`ENVELOPE_BATCH`]).
    Envelopes(Vec<Hash32>),
    /// Redeem an invite code (a device that is not yet a member may send this and `Offer`).
    Redeem(String),
    /// Envelopes the sender made and wants this node to have (at most [`ENVELOPE_BATCH`]); a
    /// newly admitted device offers its admission this way. Verified like everything else.
    Offer(Vec<Vec<u8>>),
    /// A relay's last snapshot of the sender's shop (answered by relays only, see
    /// [`crate::snapshot`]).
    SnapshotStatus,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// (bucket, digest).
    Buckets(Vec<(String, Hash32)>),
    /// (document id, digest).
    Docs(Vec<(String, Hash32)>),
    /// (document id, change hashes).
    Hashes(Vec<(String, Vec<Hash32>)>),
    /// Encoded envelopes (see [`Envelope::to_bytes`]); unknown hashes are left out.
    Envelopes(Vec<Vec<u8>>),
    /// A redeemed invite (postcard [`crate::docs::admission::Invite`]).
    Invite(Vec<u8>),
    /// How many offered envelopes were applied (new or already known).
    Accepted(u32),
    /// The request was refused.
    Error(String),
    /// When the relay last took a snapshot of the shop (ms since the Unix epoch; `None`: not
    /// yet, or snapshots are off).
    SnapshotStatus(Option<i64>),
}

impl SyncRequest {
    /// Wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a sync request serializes")
    }
    /// Decodes defensively.
    pub fn from_bytes(b: &[u8]) -> Result<SyncRequest> {
        if b.len() > MAX_MESSAGE_BYTES {
            return Err(Error::Rejected("sync request too large".into()));
        }
        postcard::from_bytes(b).map_err(|e| Error::Rejected(format!("bad sync request: {e}")))
    }
}

impl SyncResponse {
    /// Wire encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a sync response serializes")
    }
    /// Decodes defensively.
    pub fn from_bytes(b: &[u8]) -> Result<SyncResponse> {
        if b.len() > MAX_MESSAGE_BYTES {
            return Err(Error::Rejected("sync response too large".into()));
        }
        postcard::from_bytes(b).map_err(|e| Error::Rejected(format!("bad sync response: {e}")))
    }
}

/// Answers a peer's request from this node's store. Never serves `vault` to anyone but the
/// shop's member devices — the transport only hands requests of members to this function.
pub fn serve(node: &NodeHandle, req: SyncRequest) -> SyncResponse {
    let answer = match req {
        SyncRequest::Buckets => node.bucket_digests().map(SyncResponse::Buckets),
        SyncRequest::Docs(buckets) if buckets.len() <= 4096 => {
            node.doc_digests(&buckets).map(SyncResponse::Docs)
        }
        SyncRequest::Hashes(docs) if docs.len() <= DOC_BATCH => {
            node.doc_hashes(&docs).map(SyncResponse::Hashes)
        }
        SyncRequest::Envelopes(hashes) if hashes.len() <= ENVELOPE_BATCH => {
            node.envelope_bytes(&hashes).map(SyncResponse::Envelopes)
        }
        SyncRequest::Redeem(_) | SyncRequest::Offer(_) => {
            Err(Error::Rejected("answered by serve_async".into()))
        }
        SyncRequest::SnapshotStatus => Err(Error::Rejected("only a relay takes snapshots".into())),
        _ => Err(Error::Rejected("request over its size limit".into())),
    };
    answer.unwrap_or_else(|e| SyncResponse::Error(e.to_string()))
}

/// Answers any request, redeeming invites through the writer.
pub async fn serve_async(node: &NodeHandle, req: SyncRequest) -> SyncResponse {
    match req {
        SyncRequest::Redeem(code) => match node.redeem_invite(&code).await {
            Ok(invite) => {
                SyncResponse::Invite(postcard::to_allocvec(&invite).expect("an invite serializes"))
            }
            Err(e) => SyncResponse::Error(e.to_string()),
        },
        SyncRequest::Offer(envs) if envs.len() <= ENVELOPE_BATCH => {
            let decoded: Vec<Envelope> = envs
                .iter()
                .filter_map(|b| Envelope::from_bytes(b).ok())
                .collect();
            match node.import_envelopes(None, decoded).await {
                Ok(results) => SyncResponse::Accepted(
                    results
                        .iter()
                        .filter(|r| {
                            matches!(
                                r,
                                Ok(crate::engine::Applied::New(_))
                                    | Ok(crate::engine::Applied::Duplicate(_))
                            )
                        })
                        .count() as u32,
                ),
                Err(e) => SyncResponse::Error(e.to_string()),
            }
        }
        other => serve(node, other),
    }
}

/// Joins the shop through `peer` with an invite code: redeem it, pin the shop's genesis, pull
/// everything, and admit this device. The peer learns of the admission by its next pull (or
/// the mesh's push).
pub async fn join(
    node: &NodeHandle,
    peer: &impl SyncPeer,
    code: &str,
) -> Result<crate::docs::admission::Invite> {
    join_as(node, peer, code, None).await
}

/// [`join`], refusing (before this device is admitted) an invite for another role than `role`.
pub async fn join_as(
    node: &NodeHandle,
    peer: &impl SyncPeer,
    code: &str,
    role: Option<crate::domain::model::DeviceRole>,
) -> Result<crate::docs::admission::Invite> {
    let invite: crate::docs::admission::Invite =
        match peer.request(SyncRequest::Redeem(code.to_string())).await? {
            SyncResponse::Invite(bytes) => postcard::from_bytes(&bytes)
                .map_err(|_| Error::Rejected("the peer sent a damaged invite".into()))?,
            SyncResponse::Error(e) => return Err(Error::invalid("invite", e)),
            other => return Err(unexpected(other)),
        };
    if let Some(role) = role
        && invite.cert.role != role
    {
        return Err(Error::invalid(
            "invite",
            format!(
                "this invite is for a {:?} device, not a {role:?}: ask an owner for the right \
                 invite (this one is used up, nothing was admitted)",
                invite.cert.role
            )
            .to_lowercase(),
        ));
    }
    node.import_envelopes(Some(automerge::ChangeHash(invite.genesis)), vec![])
        .await?;
    pull(node, peer).await?;
    node.admit_self(invite.clone()).await?;
    // Hand the admission to the inviting node, so it accepts this device from now on.
    let mine: Vec<Vec<u8>> = node
        .envelopes()?
        .into_iter()
        .filter(|e| e.doc == "members" && e.signer == node.device_public_key())
        .map(|e| e.to_bytes())
        .collect();
    match peer.request(SyncRequest::Offer(mine)).await? {
        SyncResponse::Accepted(n) if n > 0 => Ok(invite),
        SyncResponse::Error(e) => Err(Error::Rejected(format!(
            "the shop refused the admission: {e}"
        ))),
        other => Err(unexpected(other)),
    }
}

/// Something that can carry a request to a peer and bring its answer back.
pub trait SyncPeer {
    /// Sends `req` and waits for the answer.
    fn request(
        &self,
        req: SyncRequest,
    ) -> impl std::future::Future<Output = Result<SyncResponse>> + Send;
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Envelopes fetched.
    pub fetched: usize,
    /// Newly applied.
    pub applied: usize,
    /// Refused (bad signature, signer not allowed …), counted against the peer.
    pub rejected: usize,
    /// Kept aside waiting for dependencies or admissions.
    pub held: usize,
}

fn unexpected(r: SyncResponse) -> Error {
    match r {
        SyncResponse::Error(e) => Error::Rejected(format!("peer refused: {e}")),
        other => Error::Rejected(format!("unexpected answer: {}", kind(&other))),
    }
}

fn kind(r: &SyncResponse) -> &'static str {
    match r {
        SyncResponse::Buckets(_) => "buckets",
        SyncResponse::Docs(_) => "docs",
        SyncResponse::Hashes(_) => "hashes",
        SyncResponse::Envelopes(_) => "envelopes",
        SyncResponse::Invite(_) => "invite",
        SyncResponse::Accepted(_) => "accepted",
        SyncResponse::Error(_) => "error",
        SyncResponse::SnapshotStatus(_) => "snapshot status",
    }
}

/// Fetches from `peer` every envelope it has that this node lacks, and applies them in
/// batches. Returns once the two stores' digests agree on what the peer had at the start.
pub async fn pull(node: &NodeHandle, peer: &impl SyncPeer) -> Result<PullReport> {
    // One pull at a time: a till coming back connects to every peer at once, and they all have
    // the same changes to give; after the first pull the others find little or nothing.
    let _one_at_a_time = node.pull_gate().lock().await;
    let mut report = PullReport::default();
    let theirs = match peer.request(SyncRequest::Buckets).await? {
        SyncResponse::Buckets(b) => b,
        other => return Err(unexpected(other)),
    };
    let ours: std::collections::HashMap<String, Hash32> =
        node.bucket_digests()?.into_iter().collect();
    let differing: Vec<String> = theirs
        .into_iter()
        .filter(|(b, d)| ours.get(b) != Some(d))
        .map(|(b, _)| b)
        .collect();
    if differing.is_empty() {
        return Ok(report);
    }
    let their_docs = match peer.request(SyncRequest::Docs(differing.clone())).await? {
        SyncResponse::Docs(d) => d,
        other => return Err(unexpected(other)),
    };
    let our_docs: std::collections::HashMap<String, Hash32> =
        node.doc_digests(&differing)?.into_iter().collect();
    let docs: Vec<String> = their_docs
        .into_iter()
        .filter(|(d, h)| our_docs.get(d) != Some(h))
        .map(|(d, _)| d)
        .collect();
    // Members first: the signers of everything else are admitted there.
    let mut docs = docs;
    docs.sort_by_key(|d| (d != "members", d != "settings", d.clone()));
    for chunk in docs.chunks(DOC_BATCH) {
        let hashes = match peer.request(SyncRequest::Hashes(chunk.to_vec())).await? {
            SyncResponse::Hashes(h) => h,
            other => return Err(unexpected(other)),
        };
        let all: Vec<Hash32> = hashes.into_iter().flat_map(|(_, h)| h).collect();
        let missing = node.missing_hashes(&all)?;
        // The next batch is on its way while this one is applied.
        let mut batches = missing.chunks(ENVELOPE_BATCH);
        let mut answer = match batches.next() {
            Some(b) => Some(peer.request(SyncRequest::Envelopes(b.to_vec())).await),
            None => None,
        };
        while let Some(a) = answer.take() {
            let envs = match a? {
                SyncResponse::Envelopes(e) => e,
                other => return Err(unexpected(other)),
            };
            report.fetched += envs.len();
            let mut decoded = Vec::with_capacity(envs.len());
            for bytes in envs {
                match Envelope::from_bytes(&bytes) {
                    Ok(e) => decoded.push(e),
                    Err(_) => {
                        report.rejected += 1;
                        node.metrics().rejected_with("malformed");
                    }
                }
            }
            let applied = match batches.next() {
                Some(b) => {
                    let (applied, next) = futures::join!(
                        node.import_envelopes(None, decoded),
                        peer.request(SyncRequest::Envelopes(b.to_vec()))
                    );
                    answer = Some(next);
                    applied
                }
                None => node.import_envelopes(None, decoded).await,
            };
            report.count(applied?);
        }
    }
    Ok(report)
}

impl PullReport {
    fn count(&mut self, results: Vec<Result<crate::engine::Applied>>) {
        for r in results {
            match r {
                Ok(crate::engine::Applied::New(_)) => self.applied += 1,
                Ok(crate::engine::Applied::Held(..)) => self.held += 1,
                Ok(crate::engine::Applied::Duplicate(_)) => {}
                Err(_) => self.rejected += 1,
            }
        }
    }
}
