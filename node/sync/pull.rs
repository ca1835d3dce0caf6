//! Pulling from one peer, without IO: [`PullSession`] is the protocol's state (what was asked,
//! what is left to ask), fed the peer's answers and a read snapshot of the local replica, and
//! saying what to do next ([`Step`]). [`pull`] drives a session over a [`SyncPeer`] and a
//! [`LocalReplica`]; the simulator (`sync::sim`) drives it over an in-memory network.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use super::{
    DOC_BATCH, ENVELOPE_BATCH, Hash32, ReplicaRead, SyncPeer, SyncRequest, SyncResponse, unexpected,
};
use crate::docs::Envelope;
use crate::error::Result;
use crate::replica::Applied;

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
    /// Documents of kinds this version does not know, signed by members: kept for a later
    /// version, not counted against the peer.
    pub kept: usize,
}

impl PullReport {
    /// Counts what applying a batch did.
    pub fn count(&mut self, results: &[Result<Applied>]) {
        for r in results {
            match r {
                Ok(Applied::New(_)) => self.applied += 1,
                Ok(Applied::Held(..)) => self.held += 1,
                Ok(Applied::Duplicate(_)) => {}
                Ok(Applied::Kept(..)) => self.kept += 1,
                Err(_) => self.rejected += 1,
            }
        }
    }
}

/// What the driver of a [`PullSession`] does next.
#[derive(Debug)]
pub enum Step {
    /// Send this request and hand its answer to [`PullSession::on_answer`].
    Ask(SyncRequest),
    /// Apply these envelopes through the verify-and-apply path and hand the results to
    /// [`PullSession::applied`]. Meanwhile send `next` if there is one (its answer goes to
    /// [`PullSession::on_answer`]); without one, call [`PullSession::resume`] once applied.
    Apply {
        /// The decoded envelopes of the answer.
        envelopes: Vec<Envelope>,
        /// Envelopes of the answer that did not decode (counted as rejected).
        malformed: usize,
        /// The next batch to ask for while this one is applied.
        next: Option<SyncRequest>,
    },
    /// The two replicas' digests agree on what the peer had at the start.
    Done(PullReport),
}

#[derive(Debug)]
enum State {
    Buckets,
    Docs(Vec<String>),
    Hashes,
    Envelopes(VecDeque<Vec<Hash32>>),
    /// Between two chunks of documents (after a last batch of envelopes was handed out).
    Between,
    Done,
}

/// One pull from one peer: compare set digests top-down (sync buckets, then the documents of
/// differing buckets, then the change hashes of differing documents), and fetch the missing
/// envelopes in batches of [`ENVELOPE_BATCH`]. Members' changes first: the signers of
/// everything else are admitted there. Nothing the peer sends is trusted: an answer of the
/// wrong kind ends the pull, and every envelope goes through the verify-and-apply path.
#[derive(Debug)]
pub struct PullSession {
    state: State,
    chunks: VecDeque<Vec<String>>,
    report: PullReport,
}

impl PullSession {
    /// A new session and its first request.
    pub fn start() -> (PullSession, SyncRequest) {
        let session = PullSession {
            state: State::Buckets,
            chunks: VecDeque::new(),
            report: PullReport::default(),
        };
        (session, SyncRequest::Buckets)
    }

    /// What the session counted so far.
    pub fn report(&self) -> &PullReport {
        &self.report
    }

    /// The peer's answer to the last request, and the local replica as it stands now.
    pub fn on_answer(&mut self, answer: SyncResponse, local: &impl ReplicaRead) -> Result<Step> {
        match (std::mem::replace(&mut self.state, State::Done), answer) {
            (State::Buckets, SyncResponse::Buckets(theirs)) => {
                let ours: HashMap<String, Hash32> = local.bucket_digests()?.into_iter().collect();
                let differing: Vec<String> = theirs
                    .into_iter()
                    .filter(|(b, d)| ours.get(b) != Some(d))
                    .map(|(b, _)| b)
                    .collect();
                if differing.is_empty() {
                    return Ok(Step::Done(self.report.clone()));
                }
                self.state = State::Docs(differing.clone());
                Ok(Step::Ask(SyncRequest::Docs(differing)))
            }
            (State::Docs(differing), SyncResponse::Docs(theirs)) => {
                let ours: HashMap<String, Hash32> =
                    local.doc_digests(&differing)?.into_iter().collect();
                let mut docs: Vec<String> = theirs
                    .into_iter()
                    .filter(|(d, h)| ours.get(d) != Some(h))
                    .map(|(d, _)| d)
                    .collect();
                docs.sort_by_key(|d| (d != "members", d != "settings", d.clone()));
                docs.dedup();
                self.chunks = docs.chunks(DOC_BATCH).map(<[String]>::to_vec).collect();
                Ok(self.next_chunk())
            }
            (State::Hashes, SyncResponse::Hashes(hashes)) => {
                let all: Vec<Hash32> = hashes.into_iter().flat_map(|(_, h)| h).collect();
                let missing = local.missing_hashes(&all)?;
                let mut batches: VecDeque<Vec<Hash32>> =
                    missing.chunks(ENVELOPE_BATCH).map(<[_]>::to_vec).collect();
                match batches.pop_front() {
                    Some(first) => {
                        self.state = State::Envelopes(batches);
                        Ok(Step::Ask(SyncRequest::Envelopes(first)))
                    }
                    None => Ok(self.next_chunk()),
                }
            }
            (State::Envelopes(mut batches), SyncResponse::Envelopes(envs)) => {
                self.report.fetched += envs.len();
                let mut envelopes = Vec::with_capacity(envs.len());
                let mut malformed = 0;
                for bytes in envs {
                    match Envelope::from_bytes(&bytes) {
                        Ok(e) => envelopes.push(e),
                        Err(_) => malformed += 1,
                    }
                }
                self.report.rejected += malformed;
                let next = batches.pop_front().map(SyncRequest::Envelopes);
                self.state = match next {
                    Some(_) => State::Envelopes(batches),
                    None => State::Between,
                };
                Ok(Step::Apply {
                    envelopes,
                    malformed,
                    next,
                })
            }
            (_, other) => Err(unexpected(other)),
        }
    }

    /// What applying the envelopes of a [`Step::Apply`] did.
    pub fn applied(&mut self, results: &[Result<Applied>]) {
        self.report.count(results);
    }

    /// The next step after the last batch of a chunk was applied ([`Step::Apply`] without
    /// `next`).
    pub fn resume(&mut self) -> Step {
        match self.state {
            State::Between => self.next_chunk(),
            State::Done => Step::Done(self.report.clone()),
            _ => unreachable!("resume is called after an Apply step without a next request"),
        }
    }

    fn next_chunk(&mut self) -> Step {
        match self.chunks.pop_front() {
            Some(docs) => {
                self.state = State::Hashes;
                Step::Ask(SyncRequest::Hashes(docs))
            }
            None => {
                self.state = State::Done;
                Step::Done(self.report.clone())
            }
        }
    }
}

/// The local side of a pull: a read snapshot to compare with, and the verify-and-apply path.
pub trait LocalReplica {
    /// A read snapshot of the replica.
    type Read: ReplicaRead;

    /// The replica as it stands now.
    fn snapshot(&self) -> Result<Self::Read>;

    /// Applies envelopes that `peer` (its peer id; `""` in process) sent, through the
    /// verify-and-apply path: one result per envelope.
    fn import(
        &self,
        peer: &str,
        envelopes: Vec<Envelope>,
    ) -> impl Future<Output = Result<Vec<Result<Applied>>>> + Send;

    /// `n` envelopes of a peer's answer did not decode.
    fn malformed(&self, n: usize) {
        let _ = n;
    }
}

/// Fetches from `peer` every envelope it has that `local` lacks, and applies them in batches,
/// the next batch on its way while one is applied. Returns once the two replicas' digests
/// agree on what the peer had at the start.
pub async fn pull(local: &impl LocalReplica, peer: &impl SyncPeer) -> Result<PullReport> {
    let (session, first) = PullSession::start();
    let answer = peer.request(first).await?;
    pull_on(local, peer, session, answer).await
}

/// Goes on with a pull whose first request (`Buckets`) `answer` answers: a caller may ask it
/// before taking a lock (the node's pull turn), so a peer that never answers holds nothing.
pub async fn pull_on(
    local: &impl LocalReplica,
    peer: &impl SyncPeer,
    mut session: PullSession,
    mut answer: SyncResponse,
) -> Result<PullReport> {
    let from = peer.id();
    loop {
        let mut step = session.on_answer(answer, &local.snapshot()?)?;
        loop {
            match step {
                Step::Ask(req) => {
                    answer = peer.request(req).await?;
                    break;
                }
                Step::Apply {
                    envelopes,
                    malformed,
                    next: Some(next),
                } => {
                    local.malformed(malformed);
                    let (applied, next) =
                        futures::join!(local.import(&from, envelopes), peer.request(next));
                    session.applied(&applied?);
                    answer = next?;
                    break;
                }
                Step::Apply {
                    envelopes,
                    malformed,
                    next: None,
                } => {
                    local.malformed(malformed);
                    session.applied(&local.import(&from, envelopes).await?);
                    step = session.resume();
                }
                Step::Done(report) => return Ok(report),
            }
        }
    }
}
