//! Anti-entropy (`/tillmesh/sync/3`): find and fetch the signed envelopes another replica has
//! and this one lacks, without trusting anything it sends.
//!
//! **Every exchange is about one shop.** On the wire each request and each answer is a
//! [`Frame`] naming the shop's genesis (the hash of its first `members` change): a node answers
//! only about its own shop ([`SyncResponse::OtherShop`], a typed refusal that is not counted
//! against the asker), and a puller refuses an answer that names another shop before it looks
//! at anything in it. Only redeeming an invite (a device that has no shop yet) names none.
//!
//! Replicas compare set digests (XOR of change hashes) top-down: sync buckets (one per
//! document; one per month of ledger documents), then the documents of differing buckets, then
//! the change hashes of differing documents, and finally fetch the missing envelopes in bounded
//! batches. Every fetched envelope goes through the replica's verify-and-apply path;
//! Automerge's own sync protocol is not used, so nothing is applied unverified.
//!
//! **No IO here.** [`answer`] answers a request from a [`ReplicaRead`] (a read snapshot of the
//! store); [`PullSession`] is a pull's state, fed answers and says what to ask or apply next;
//! [`pull`] and [`join`] drive them over any [`SyncPeer`] (the mesh's libp2p requests, or an
//! in-process peer) for any [`LocalReplica`] / [`Joiner`]. This module knows no node, mesh or
//! network: the simulator in `sync::sim` runs replicas on a seeded in-memory network that
//! drops, duplicates, reorders and partitions, and a property test checks they converge.
//!
//! **Joining** ([`join`]): a device with no shop redeems an invite with `RedeemStart` /
//! `RedeemFinish`, a SPAKE2 run keyed by the invite code ([`crate::redeem`] has the protocol
//! and its limits): the code is never sent, and the joiner sends its proof only to a device
//! that proved it knows the code first. Then it pins the shop's genesis from the countersigned
//! invite, pulls, admits itself and `Offer`s its admission.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The sync protocol's version: in its libp2p protocol name and in every [`Frame`]. Version 2
/// (this one) frames every message with the shop's genesis and admits devices by
/// countersigned certificates; a node of version 1 and one of version 2 do not talk.
pub const PROTOCOL_VERSION: u16 = 3;
/// The libp2p protocol name.
pub const PROTOCOL: &str = "/tillmesh/sync/3";

/// Largest encoded request or response.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most envelopes asked for (and applied) in one batch.
pub const ENVELOPE_BATCH: usize = 512;
/// Longest a pull waits for the node's pull turn (pulls take turns on a node) before it goes
/// on beside the pull holding it: pulls take turns so that a till coming back fetches the
/// changes every peer has once, not once per peer, but a peer stalled in the middle of a pull
/// must not hold up the others for its requests' timeouts.
pub const PULL_TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Most documents whose hashes are asked for at once.
const DOC_BATCH: usize = 64;

mod answer;
mod join;
mod pull;
#[cfg(test)]
mod sim;

pub use answer::{ReplicaRead, answer};
pub use join::{JoinOptions, JoinSession, JoinStep, Joiner, join};
pub use pull::{LocalReplica, PullReport, PullSession, Step, pull, pull_on};

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
    /// Start redeeming an invite: the joiner's SPAKE2 message (side A, keyed by the code; see
    /// [`crate::redeem`]). A device that is not yet a member may send this, `RedeemFinish`
    /// and `Offer`.
    RedeemStart {
        /// SPAKE2 message A.
        pake: Vec<u8>,
    },
    /// Finish redeeming: the offer of run `run` whose confirmation matched the joiner's code,
    /// and the joiner's own confirmation.
    RedeemFinish {
        /// The run (from [`SyncResponse::RedeemOffers`]).
        run: crate::redeem::RunId,
        /// Which offer of the run.
        offer: u32,
        /// The joiner's proof that it knows that invite's code.
        confirm: [u8; 32],
    },
    /// Envelopes the sender made and wants this node to have (at most [`ENVELOPE_BATCH`]); a
    /// newly admitted device offers its admission this way. Verified like everything else.
    Offer(Vec<Vec<u8>>),
    /// A relay's last snapshot of the sender's shop (answered by relays only, see
    /// [`crate::snapshot`]).
    SnapshotStatus,
    /// The keys of the shop's current gossip key rotations (see
    /// [`crate::docs::gossip_keys`]): a till admitted after a rotation asks a member peer.
    GossipKeys,
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
    /// Encoded envelopes (see [`crate::docs::Envelope::to_bytes`]); unknown hashes are left out.
    Envelopes(Vec<Vec<u8>>),
    /// A redeemed invite (postcard [`crate::docs::admission::Invite`]), the answer to a valid
    /// `RedeemFinish`.
    Invite(Vec<u8>),
    /// The answer to `RedeemStart`: one offer per invite this device holds.
    RedeemOffers {
        /// The run, to name in `RedeemFinish`.
        run: crate::redeem::RunId,
        /// The offers.
        offers: Vec<crate::redeem::Offer>,
    },
    /// The answer to `RedeemStart` of a device that holds no invite.
    NoInvites,
    /// How many offered envelopes were applied (new or already known).
    Accepted(u32),
    /// The request was refused: a kind the asker decides on, and words for people.
    Refused(Refusal),
    /// When the relay last took a snapshot of the shop (ms since the Unix epoch; `None`: not
    /// yet, or snapshots are off).
    SnapshotStatus(Option<i64>),
    /// The request named another shop than the answering node's: nothing is answered about
    /// it. Not a strike against the asker.
    OtherShop,
    /// (rotation record id, its key), answered to an unrevoked till of the shop only.
    GossipKeys(Vec<(String, Hash32)>),
}

/// Why a peer refused a request. The asker decides by the [`RefusalKind`], never by the
/// words (which are for people, and which a peer may word as it likes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// Why, in words.
    pub message: String,
}

/// The kinds of [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The request, or what it carries, is not valid (a wrong, expired or used-up invite; an
    /// undecodable request).
    Invalid,
    /// The asker may not ask this: not a member of the shop, not authenticated, or not a
    /// device of any shop a relay serves.
    Forbidden,
    /// Busy now: ask again later.
    Busy,
    /// Out of space for this shop.
    Full,
    /// The answering node is joining a shop and answers nothing yet.
    Joining,
    /// Something failed on the answering node.
    Internal,
}

impl Refusal {
    /// A refusal of `kind`, for `message`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    /// The refusal for an error the answering node met: its kind follows the error's.
    pub fn of(e: &Error) -> Refusal {
        let kind = match e {
            Error::Invalid { .. } | Error::Conflict(_) | Error::NotFound(_) => RefusalKind::Invalid,
            Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::Rejected(_)
            | Error::OtherShop(_) => RefusalKind::Forbidden,
            Error::RateLimited(_) => RefusalKind::Busy,
            _ => RefusalKind::Internal,
        };
        Refusal::new(kind, e.to_string())
    }

    /// The error the asker reports: an invalid `field` for [`RefusalKind::Invalid`], a refusal
    /// otherwise.
    pub fn into_error(self, field: &str) -> Error {
        match self.kind {
            RefusalKind::Invalid => Error::invalid(field, self.message),
            RefusalKind::Busy | RefusalKind::Joining => {
                Error::Unreachable(format!("the peer cannot answer now: {}", self.message))
            }
            _ => Error::Rejected(format!("peer refused: {}", self.message)),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One message on the wire: the protocol version, the shop (its genesis) it is about, and the
/// request or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame<T> {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The shop's genesis; `None` only for redeeming by a device with no shop yet.
    pub shop: Option<Hash32>,
    /// The request or the answer.
    pub body: T,
}

/// Encodes a request about `shop`.
pub fn encode_request(shop: Option<Hash32>, req: &SyncRequest) -> Vec<u8> {
    postcard::to_allocvec(&Frame {
        version: PROTOCOL_VERSION,
        shop,
        body: req,
    })
    .expect("a sync request serializes")
}

/// Encodes an answer about `shop`.
pub fn encode_response(shop: Option<Hash32>, resp: &SyncResponse) -> Vec<u8> {
    postcard::to_allocvec(&Frame {
        version: PROTOCOL_VERSION,
        shop,
        body: resp,
    })
    .expect("a sync response serializes")
}

fn decode_frame<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> Result<Frame<T>> {
    if b.len() > MAX_MESSAGE_BYTES {
        return Err(Error::Rejected(format!("sync {what} too large")));
    }
    let frame: Frame<T> =
        postcard::from_bytes(b).map_err(|e| Error::Rejected(format!("bad sync {what}: {e}")))?;
    if frame.version != PROTOCOL_VERSION {
        return Err(Error::UpdateNeeded(format!(
            "sync {what} of protocol version {} (this node speaks {PROTOCOL_VERSION})",
            frame.version
        )));
    }
    Ok(frame)
}

/// Decodes a request: the shop it names, and the request.
pub fn decode_request(b: &[u8]) -> Result<(Option<Hash32>, SyncRequest)> {
    decode_frame(b, "request").map(|f| (f.shop, f.body))
}

/// Decodes the answer to a request about `shop`: an answer about any other shop, or a
/// refusal because the peer belongs to another shop, is an [`Error::OtherShop`] and nothing of
/// it is used.
pub fn decode_response(b: &[u8], shop: Option<Hash32>) -> Result<SyncResponse> {
    let frame: Frame<SyncResponse> = decode_frame(b, "response")?;
    match (frame.body, shop) {
        (SyncResponse::OtherShop, _) => Err(other_shop()),
        (body, Some(ours)) if frame.shop != Some(ours) => {
            tracing::warn!("a peer answered about another shop; ignored");
            let _ = body;
            Err(other_shop())
        }
        (body, _) => Ok(body),
    }
}

fn other_shop() -> Error {
    Error::OtherShop("that device belongs to another shop".into())
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

/// Something that can carry a request to a peer and bring its answer back.
pub trait SyncPeer {
    /// Sends `req` and waits for the answer.
    fn request(
        &self,
        req: SyncRequest,
    ) -> impl std::future::Future<Output = Result<SyncResponse>> + Send;

    /// Who this peer is (its peer id), for the caps on what it may leave held here; `""` for
    /// an in-process peer.
    fn id(&self) -> String {
        String::new()
    }

    /// The peer's device key as the transport authenticated it (what an invite is redeemed
    /// with); `None` if unknown.
    fn public_key(&self) -> Option<[u8; 32]> {
        None
    }
}

fn unexpected(r: SyncResponse) -> Error {
    match r {
        SyncResponse::Refused(r) => r.into_error("request"),
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
        SyncResponse::RedeemOffers { .. } => "redeem offers",
        SyncResponse::NoInvites => "no invites",
        SyncResponse::Accepted(_) => "accepted",
        SyncResponse::Refused(_) => "refused",
        SyncResponse::SnapshotStatus(_) => "snapshot status",
        SyncResponse::OtherShop => "other shop",
        SyncResponse::GossipKeys(_) => "gossip keys",
    }
}

/// Every wire decoder survives arbitrary bytes: random input and mutations of valid messages
/// (sync frames, envelopes, invites, countersigned certificates, sealed gossip) give an error
/// or a value, never a panic, and a valid frame never decodes as another shop's.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::docs::Envelope;
    use crate::docs::admission::{AdmittedCertificate, Ticket};

    fn decode_everything(bytes: &[u8]) {
        // The key exchange runs on whatever a decoded message carries, as a responder and a
        // joiner would.
        if let Ok((_, SyncRequest::RedeemStart { pake })) = decode_request(bytes)
            && crate::redeem::check_message(&pake).is_ok()
        {
            let invites = [("ABCDE-FGHIJ".into(), crate::redeem::InviteState::Pending)];
            let _ = crate::redeem::respond(&[3; 16], &[1; 32], &[2; 32], &pake, &invites);
        }
        if let Ok(SyncResponse::RedeemOffers { run, offers }) = decode_response(bytes, None) {
            let joiner = crate::redeem::JoinerRun::start("ABCDE-FGHIJ", [1; 32], [2; 32]).unwrap();
            assert!(
                joiner.matching(&run, &offers).is_none(),
                "another run's offers"
            );
        }
        let _ = decode_request(bytes);
        let _ = decode_response(bytes, Some([1; 32]));
        let _ = decode_response(bytes, None);
        let _ = SyncRequest::from_bytes(bytes);
        let _ = SyncResponse::from_bytes(bytes);
        if let Ok(env) = Envelope::from_bytes(bytes) {
            let _ = env.decode_change();
        }
        let text = String::from_utf8_lossy(bytes);
        let _ = Ticket::parse(&text);
        let _ = Ticket::parse(&format!("tillmesh-invite:{text}"));
        let _ = serde_json::from_str::<AdmittedCertificate>(&text);
        let _ = postcard::from_bytes::<crate::docs::admission::Invite>(bytes);
        let _ = crate::docs::gossip_keys::open_gossip(&[7; 32], bytes);
    }

    /// A real key-exchange start, and a responder's real offers to it.
    fn redeem_start() -> SyncRequest {
        let run = crate::redeem::JoinerRun::start("ABCDE-FGHIJ", [1; 32], [2; 32]).unwrap();
        SyncRequest::RedeemStart {
            pake: run.message(),
        }
    }

    fn redeem_offers() -> SyncResponse {
        let SyncRequest::RedeemStart { pake } = redeem_start() else {
            unreachable!()
        };
        let (offers, _) = crate::redeem::respond(
            &[3; 16],
            &[1; 32],
            &[2; 32],
            &pake,
            &[
                ("ABCDE-FGHIJ".into(), crate::redeem::InviteState::Pending),
                ("KLMNO-PQRST".into(), crate::redeem::InviteState::Used),
            ],
        )
        .unwrap();
        SyncResponse::RedeemOffers {
            run: [3; 16],
            offers,
        }
    }

    fn valid_messages() -> Vec<Vec<u8>> {
        let key = crate::identity::new_signing_key();
        let mut doc = automerge::AutoCommit::new();
        automerge::transaction::Transactable::put(&mut doc, automerge::ROOT, "k", "v")
            .expect("a put on a new document");
        doc.commit();
        let change = doc.get_last_local_change().expect("a change");
        let env = Envelope::sign(&key, "catalog", &change, 1, &[]);
        let shop = Some([1; 32]);
        vec![
            encode_request(shop, &SyncRequest::Buckets),
            encode_request(shop, &SyncRequest::Hashes(vec!["catalog".into()])),
            encode_request(shop, &SyncRequest::Offer(vec![env.to_bytes()])),
            encode_request(None, &redeem_start()),
            encode_request(
                None,
                &SyncRequest::RedeemFinish {
                    run: [3; 16],
                    offer: 1,
                    confirm: [4; 32],
                },
            ),
            encode_response(None, &redeem_offers()),
            encode_response(None, &SyncResponse::NoInvites),
            encode_response(shop, &SyncResponse::Envelopes(vec![env.to_bytes()])),
            encode_response(shop, &SyncResponse::Buckets(vec![("b".into(), [2; 32])])),
            env.to_bytes(),
            crate::docs::gossip_keys::seal_gossip(&[7; 32], &env.to_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            decode_everything(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            which in any::<usize>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let all = valid_messages();
            let mut bytes = all[which % all.len()].clone();
            for (at, byte, kind) in edits {
                let at = at % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] ^= byte | 1,
                    1 => bytes.insert(at, byte),
                    _ => bytes.truncate(at),
                }
            }
            decode_everything(&bytes);
        }
    }

    #[test]
    fn an_answer_about_another_shop_is_refused() {
        let answer = encode_response(Some([2; 32]), &SyncResponse::Buckets(vec![]));
        assert!(matches!(
            decode_response(&answer, Some([1; 32])),
            Err(Error::OtherShop(_))
        ));
        assert_eq!(
            decode_response(&answer, Some([2; 32])).unwrap(),
            SyncResponse::Buckets(vec![])
        );
        let refusal = encode_response(Some([1; 32]), &SyncResponse::OtherShop);
        assert!(matches!(
            decode_response(&refusal, Some([1; 32])),
            Err(Error::OtherShop(_))
        ));
        // A frame of another protocol version is refused, not misread.
        let mut old = encode_request(Some([1; 32]), &SyncRequest::Buckets);
        old[0] = 1;
        assert!(decode_request(&old).is_err());
    }
}
