//! The node as a replica of the sync protocol: the local side of a pull and a join
//! ([`crate::sync::LocalReplica`], [`crate::sync::Joiner`]), and the answers to a peer's
//! requests — reads from a snapshot of the store ([`crate::sync::answer`]), and those that go
//! through the writer (redeeming an invite, an offer).

use std::future::Future;

use super::NodeHandle;
use crate::docs::Envelope;
use crate::docs::admission::Invite;
use crate::error::Result;
use crate::replica::Applied;
use crate::sync::{self, ENVELOPE_BATCH, ReplicaRead, SyncRequest, SyncResponse};

impl sync::LocalReplica for NodeHandle {
    type Read = redb::ReadTransaction;

    fn snapshot(&self) -> Result<redb::ReadTransaction> {
        self.read()
    }

    fn import(
        &self,
        peer: &str,
        envelopes: Vec<Envelope>,
    ) -> impl Future<Output = Result<Vec<Result<Applied>>>> + Send {
        self.import_envelopes_from(peer, None, envelopes)
    }

    fn malformed(&self, n: usize) {
        for _ in 0..n {
            self.metrics().rejected_with("malformed");
        }
    }
}

impl sync::Joiner for NodeHandle {
    fn device_public_key(&self) -> [u8; 32] {
        NodeHandle::device_public_key(self)
    }

    fn adopt_shop(
        &self,
        genesis: automerge::ChangeHash,
        legacy_devices: Vec<[u8; 32]>,
    ) -> impl Future<Output = Result<()>> + Send {
        NodeHandle::adopt_shop(self, genesis, legacy_devices)
    }

    fn admit_self(&self, invite: Invite) -> impl Future<Output = Result<()>> + Send {
        NodeHandle::admit_self(self, invite)
    }
}

impl NodeHandle {
    /// Pulls from `peer` ([`sync::pull`]), one pull at a time on this node once the peer has
    /// answered its first request: a till coming back connects to every peer at once, and they
    /// all have the same changes to give; after the first pull the others find little or
    /// nothing. The first request is asked before the turn is taken, so a peer that does not
    /// answer (gone, or a black hole) holds up nobody else's pull while its request times out;
    /// and the turn is waited for at most [`sync::PULL_TURN_WAIT`], so neither does a peer
    /// that stalls in the middle of its pull (this one then goes on beside it).
    pub async fn pull_from(&self, peer: &impl sync::SyncPeer) -> Result<sync::PullReport> {
        let (session, first) = sync::PullSession::start();
        let answer = peer.request(first).await?;
        let _turn = tokio::time::timeout(sync::PULL_TURN_WAIT, self.pull_gate().lock())
            .await
            .ok();
        sync::pull_on(self, peer, session, answer).await
    }

    /// Answers a member's read request from this node's store (see [`sync::answer`]). The
    /// transport hands only members' requests here.
    pub fn answer_sync(&self, req: SyncRequest) -> SyncResponse {
        match self.read() {
            Ok(snapshot) => sync::answer(req, &snapshot),
            Err(e) => SyncResponse::Refused(sync::Refusal::of(&e)),
        }
    }

    /// Answers any request, redeeming invites through the writer for the device `from` (its
    /// key as the transport authenticated it; without one, no invite is redeemed).
    pub async fn answer_sync_from(
        &self,
        from: Option<&[u8; 32]>,
        req: SyncRequest,
    ) -> SyncResponse {
        match (req, from) {
            (SyncRequest::RedeemStart { .. } | SyncRequest::RedeemFinish { .. }, None) => {
                SyncResponse::Refused(sync::Refusal::new(
                    sync::RefusalKind::Forbidden,
                    "an invite is redeemed for an authenticated device",
                ))
            }
            (SyncRequest::RedeemStart { pake }, Some(from)) => {
                match self.redeem_start(*from, pake).await {
                    Ok(Some((run, offers))) => SyncResponse::RedeemOffers { run, offers },
                    Ok(None) => SyncResponse::NoInvites,
                    Err(e) => SyncResponse::Refused(sync::Refusal::of(&e)),
                }
            }
            (
                SyncRequest::RedeemFinish {
                    run,
                    offer,
                    confirm,
                },
                Some(from),
            ) => match self.redeem_finish(*from, run, offer, confirm).await {
                Ok(invite) => SyncResponse::Invite(
                    postcard::to_allocvec(&invite).expect("an invite serializes"),
                ),
                Err(e) => SyncResponse::Refused(sync::Refusal::of(&e)),
            },
            (SyncRequest::Offer(envs), _) if envs.len() <= ENVELOPE_BATCH => {
                let decoded: Vec<Envelope> = envs
                    .iter()
                    .filter_map(|b| Envelope::from_bytes(b).ok())
                    .collect();
                match self.import_envelopes(None, decoded).await {
                    Ok(results) => SyncResponse::Accepted(
                        results
                            .iter()
                            .filter(|r| matches!(r, Ok(Applied::New(_) | Applied::Duplicate(_))))
                            .count() as u32,
                    ),
                    Err(e) => SyncResponse::Refused(sync::Refusal::of(&e)),
                }
            }
            (other, _) => self.answer_sync(other),
        }
    }
    /// Answers a request from the wire (decoded by [`sync::decode_request`]) about the shop it
    /// names, `shop`, on a node whose shop is `ours`: a request about another shop gets
    /// [`SyncResponse::OtherShop`]; only `RedeemStart` and `RedeemFinish` may name none.
    /// `member`: the transport authenticated `from` as a device of this shop.
    pub async fn answer_framed(
        &self,
        ours: Option<sync::Hash32>,
        from: &[u8; 32],
        member: bool,
        (shop, req): (Option<sync::Hash32>, SyncRequest),
    ) -> SyncResponse {
        match req {
            SyncRequest::RedeemStart { .. } | SyncRequest::RedeemFinish { .. }
                if shop.is_none() || shop == ours =>
            {
                self.answer_sync_from(Some(from), req).await
            }
            _ if shop.is_none() || shop != ours => SyncResponse::OtherShop,
            SyncRequest::Offer(_) if member => self.answer_sync_from(Some(from), req).await,
            SyncRequest::GossipKeys if member => match self.gossip_keys_for(from) {
                Ok(keys) => SyncResponse::GossipKeys(keys),
                Err(e) => SyncResponse::Refused(sync::Refusal::of(&e)),
            },
            req if member => {
                let n = self.clone();
                tokio::task::spawn_blocking(move || n.answer_sync(req))
                    .await
                    .unwrap_or_else(|e| {
                        SyncResponse::Refused(sync::Refusal::new(
                            sync::RefusalKind::Internal,
                            e.to_string(),
                        ))
                    })
            }
            _ => SyncResponse::Refused(sync::Refusal::new(
                sync::RefusalKind::Forbidden,
                "not a member of this shop",
            )),
        }
    }
}

/// The sync surface: digests, envelopes by hash, imports (what [`crate::sync`] and backups use).
impl NodeHandle {
    /// Re-offers what an older version kept (documents of kinds it did not know) to this one,
    /// at start: the kinds this version knows are verified in full and applied; the rest stay
    /// kept, and the node says an update is needed.
    pub(crate) async fn reoffer_kept(&self) -> Result<()> {
        if self.view().genesis.is_none() {
            return Ok(());
        }
        let unknown = self.inner.writer.write(|ctx| ctx.reoffer_kept()).await?;
        if !unknown.is_empty() {
            self.note_unknown_kinds(&unknown);
        }
        Ok(())
    }

    pub(crate) fn pull_gate(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.pull_gate
    }

    /// (sync bucket, digest) of every bucket (see [`crate::sync::ReplicaRead`]).
    pub fn bucket_digests(&self) -> Result<Vec<(String, [u8; 32])>> {
        self.read()?.bucket_digests()
    }

    /// Digests of the documents in these sync buckets.
    pub fn doc_digests(&self, buckets: &[String]) -> Result<Vec<(String, [u8; 32])>> {
        self.read()?.doc_digests(buckets)
    }

    /// Every stored change hash of these documents.
    pub fn doc_hashes(&self, docs: &[String]) -> Result<Vec<(String, Vec<[u8; 32]>)>> {
        self.read()?.doc_hashes(docs)
    }

    /// Encoded envelopes by change hash (unknown hashes are skipped).
    pub fn envelope_bytes(&self, hashes: &[[u8; 32]]) -> Result<Vec<Vec<u8>>> {
        self.read()?.envelope_bytes(hashes)
    }

    /// The hashes this node has neither stored, held nor in quarantine.
    pub fn missing_hashes(&self, hashes: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        self.read()?.missing_hashes(hashes)
    }

    /// The pinned hash of the shop's first `members` change (from the shop view: every sync
    /// message names it, so it is not read from the store each time).
    pub fn genesis(&self) -> Result<Option<automerge::ChangeHash>> {
        Ok(self.view().genesis)
    }

    /// Applies envelopes from elsewhere (a peer, a backup) through the verify-and-apply path;
    /// `genesis` pins the shop on a node that has none yet. Envelopes waiting for others are
    /// held and retried as the rest arrive.
    pub async fn import_envelopes(
        &self,
        genesis: Option<automerge::ChangeHash>,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Applied>>> {
        self.import_envelopes_from("", genesis, envelopes).await
    }

    /// [`import_envelopes`](Self::import_envelopes) of envelopes that `peer` (a peer id)
    /// forwarded: those held count against that peer's share (see [`crate::replica::MAX_HELD`]).
    pub async fn import_envelopes_from(
        &self,
        peer: &str,
        genesis: Option<automerge::ChangeHash>,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Applied>>> {
        let peer = peer.to_string();
        let kinds: Vec<String> = envelopes
            .iter()
            .map(|e| crate::docs::trust::kind_of(&e.doc).to_string())
            .collect();
        let results = self
            .inner
            .writer
            .write(move |ctx| {
                ctx.forwarded_by(&peer);
                match genesis {
                    Some(g) => ctx.adopt_genesis(g, None)?,
                    None => ctx.relaxed(),
                }
                ctx.apply_all(envelopes)
            })
            .await?;
        let kept: std::collections::BTreeSet<String> = kinds
            .into_iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Ok(Applied::Kept(..))))
            .map(|(k, _)| k)
            .collect();
        if !kept.is_empty() {
            self.note_unknown_kinds(&kept);
        }
        Ok(results).inspect(|results: &Vec<Result<Applied>>| {
            let metrics = &self.inner.shared.metrics;
            for r in results {
                match r {
                    Ok(Applied::Held(..)) => metrics.change_held(),
                    Err(e) => metrics.change_rejected(e),
                    Ok(_) => {}
                }
            }
        })
    }

    /// Pins the shop this node is joining or restoring: its genesis and, from the inviting
    /// device or the backup, the devices admitted before protocol 2 (see
    /// [`crate::docs::members::Anchor`]). Refuses another shop's genesis.
    pub async fn adopt_shop(
        &self,
        genesis: automerge::ChangeHash,
        legacy_devices: Vec<[u8; 32]>,
    ) -> Result<()> {
        self.inner
            .writer
            .write(move |ctx| ctx.adopt_genesis(genesis, Some(&legacy_devices)))
            .await
    }
}
