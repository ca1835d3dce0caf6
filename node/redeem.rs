//! Redeeming an invite code without showing it to anyone: SPAKE2 keyed by the code.
//!
//! A short code is typed on a device that does not know where the shop is: it asks every
//! tillmesh device that answers mDNS, any of which may be a rogue. So the code never goes on
//! the wire; the joiner proves it knows the code only to the device that made the invite,
//! and only after that device has proved it knows it too. The full invite string (with
//! addresses) takes the same path.
//!
//! 1. The joiner sends `RedeemStart` with its SPAKE2 message (side A). Identities: A = the
//!    joiner's device key, B = the key of the device it dialed. The responder uses the key
//!    its libp2p connection is authenticated with for A, and its own key for B — so a rogue
//!    that relays the joiner's messages to the inviter gets two runs with different
//!    transcripts (A = joiner, B = rogue at the joiner; A = rogue, B = inviter at the
//!    inviter), whose keys never agree.
//! 2. The responder runs SPAKE2 (side B) once per invite it holds (pending ones, and those
//!    used, expired or burned in the last day, so that a right code gets a clear answer; at
//!    most [`MAX_OFFERS`]), the code being the password, and answers `RedeemOffers`: per
//!    invite its message B, the invite's [`InviteState`] and a confirmation that it knows
//!    the code (`Confirmations`: HKDF of the SPAKE2 key over the whole transcript). It
//!    answers `NoInvites` when it holds none.
//! 3. The joiner checks each confirmation with its code. None matches: this device did not
//!    make the invite (or the code is wrong) — the joiner sends nothing more to it and tries
//!    the next device. One matches a pending invite: it sends `RedeemFinish` (the run, which
//!    offer, its own confirmation).
//! 4. The responder checks the joiner's confirmation and only then redeems the invite for the
//!    connection's key (`domain::commands::redeem_invite`, which countersigns it) and answers
//!    the invite.
//!
//! **Failed runs are capped.** SPAKE2 gives an active attacker one guess of the code per run
//! and nothing to test guesses offline with. Every run started against a pending invite
//! counts as a failure of that invite as it starts (persisted with the invite, so neither
//! leaving a run unfinished nor restarting the device undoes it); a valid `RedeemFinish`
//! uses the invite instead. After [`MAX_FAILED_RUNS`] the invite is burned: it is offered
//! no more runs, and the right code then gets "burned … ask for a new one". A stranger on
//! the LAN can burn pending invites this way (the owner makes a new one), but it cannot
//! learn or redeem one. A device that did not make the invite but holds another pending
//! invite also spends one of that invite's runs when a joiner asks it first.
//!
//! **Bounded state.** A responder keeps the SPAKE2 results of unfinished runs for at most
//! [`RUN_TTL`], at most [`MAX_RUNS_PER_PEER`] per device (a new one drops its oldest) and
//! [`MAX_RUNS`] in all (beyond that a new run is refused until one ends).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::error::{Error, Result};

/// Runs started against one invite and not finished with its code, before it is burned.
pub const MAX_FAILED_RUNS: u32 = 5;
/// How long a responder keeps an unfinished run.
pub const RUN_TTL: Duration = Duration::from_secs(60);
/// Unfinished runs kept per device.
pub const MAX_RUNS_PER_PEER: usize = 2;
/// Unfinished runs kept in all.
pub const MAX_RUNS: usize = 64;
/// Most invites one run is offered against.
pub const MAX_OFFERS: usize = 16;
/// How long after its expiry a used, expired or burned invite still gets offers (so a right
/// code is told why it no longer works).
pub const DEAD_INVITES_SHOWN_MS: i64 = 24 * 3600 * 1000;

/// Length of a SPAKE2 message on Ed25519 (a side byte and a point).
const PAKE_MESSAGE_LEN: usize = 33;

/// An unfinished run's id (random, chosen by the responder).
pub type RunId = [u8; 16];

/// Where an offered invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InviteState {
    /// Unused, not expired, not burned: it can be redeemed.
    Pending,
    /// Redeemed already.
    Used,
    /// Past its expiry.
    Expired,
    /// Burned after [`MAX_FAILED_RUNS`] failed runs.
    Burned,
}

impl InviteState {
    /// What a joiner whose code matched this invite is told (`None`: it can be redeemed).
    pub fn refusal(self) -> Option<String> {
        match self {
            InviteState::Pending => None,
            InviteState::Used => Some("this invite was already used; ask for a new one".into()),
            InviteState::Expired => Some("this invite has expired; ask for a new one".into()),
            InviteState::Burned => Some(format!(
                "this invite was burned after {MAX_FAILED_RUNS} failed attempts to redeem it \
                 (a wrong code, or someone guessing); ask for a new one"
            )),
        }
    }

    fn byte(self) -> u8 {
        match self {
            InviteState::Pending => 0,
            InviteState::Used => 1,
            InviteState::Expired => 2,
            InviteState::Burned => 3,
        }
    }
}

/// One invite a run is offered against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The responder's SPAKE2 message (side B) for this invite.
    pub pake: Vec<u8>,
    /// Where the invite stands (bound into the confirmation).
    pub state: InviteState,
    /// The responder's proof that it knows this invite's code.
    pub confirm: [u8; 32],
}

/// Both confirmations of one run against one invite: keys derived from the SPAKE2 key (which
/// binds the code, both identities and both messages) over the transcript (run id, both
/// identities and messages again, and the invite's state).
struct Confirmations {
    responder: [u8; 32],
    joiner: [u8; 32],
}

struct Transcript<'a> {
    run: &'a RunId,
    joiner: &'a [u8; 32],
    responder: &'a [u8; 32],
    msg_a: &'a [u8],
    msg_b: &'a [u8],
    state: InviteState,
}

impl Transcript<'_> {
    fn confirmations(&self, key: &[u8]) -> Confirmations {
        let mut h = Sha256::new();
        h.update(b"tillmesh/redeem/2\0");
        h.update(self.run);
        h.update(self.joiner);
        h.update(self.responder);
        h.update([self.msg_a.len() as u8]);
        h.update(self.msg_a);
        h.update([self.msg_b.len() as u8]);
        h.update(self.msg_b);
        h.update([self.state.byte()]);
        let salt = h.finalize();
        let hk = Hkdf::<Sha256>::new(Some(&salt), key);
        let mut c = Confirmations {
            responder: [0; 32],
            joiner: [0; 32],
        };
        hk.expand(b"responder knows the code", &mut c.responder)
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"joiner knows the code", &mut c.joiner)
            .expect("32 bytes is a valid HKDF length");
        c
    }
}

fn password(code: &str) -> Password {
    Password::new(code.as_bytes())
}

/// Compares in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The joiner's side of a run.
pub struct JoinerRun {
    code: String,
    me: [u8; 32],
    responder: [u8; 32],
    /// Side A is finished once per offer, and `Spake2` is consumed by finishing: the same
    /// secret scalar is made again from this seed for each offer.
    seed: [u8; 32],
    message: Vec<u8>,
}

impl JoinerRun {
    /// Starts a run for `code` (normalized) by the device `me` with the device `responder`
    /// (the key of the peer it dialed).
    pub fn start(code: &str, me: [u8; 32], responder: [u8; 32]) -> Result<JoinerRun> {
        let code = crate::docs::admission::normalize_code(code)?;
        let seed = crate::identity::random_bytes::<32>();
        let (_, message) = side_a(&code, &me, &responder, &seed);
        Ok(JoinerRun {
            code,
            me,
            responder,
            seed,
            message,
        })
    }

    /// The message to send in `RedeemStart`.
    pub fn message(&self) -> Vec<u8> {
        self.message.clone()
    }

    /// The offer (its index, its state, and the joiner's confirmation to send back) made by a
    /// device that knows this code; `None` if no offer proves that.
    pub fn matching(&self, run: &RunId, offers: &[Offer]) -> Option<(u32, InviteState, [u8; 32])> {
        offers
            .iter()
            .take(MAX_OFFERS)
            .enumerate()
            .find_map(|(i, offer)| {
                let (spake, _) = side_a(&self.code, &self.me, &self.responder, &self.seed);
                let key = spake.finish(&offer.pake).ok()?;
                let c = Transcript {
                    run,
                    joiner: &self.me,
                    responder: &self.responder,
                    msg_a: &self.message,
                    msg_b: &offer.pake,
                    state: offer.state,
                }
                .confirmations(&key);
                same(&c.responder, &offer.confirm).then_some((i as u32, offer.state, c.joiner))
            })
    }
}

fn side_a(
    code: &str,
    me: &[u8; 32],
    responder: &[u8; 32],
    seed: &[u8; 32],
) -> (Spake2<Ed25519Group>, Vec<u8>) {
    Spake2::<Ed25519Group>::start_a_with_rng(
        &password(code),
        &Identity::new(me),
        &Identity::new(responder),
        SeededRng {
            seed: *seed,
            block: 0,
        },
    )
}

/// A deterministic CSPRNG from a random seed (HKDF-SHA256 blocks), only to make the same
/// SPAKE2 side A again for each offer (the seed never leaves the joiner's run).
struct SeededRng {
    seed: [u8; 32],
    block: u64,
}

impl rand_core::TryRng for SeededRng {
    type Error = rand_core::Infallible;
    fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Self::Error> {
        for chunk in dst.chunks_mut(255 * 32) {
            Hkdf::<Sha256>::new(None, &self.seed)
                .expand(&self.block.to_le_bytes(), chunk)
                .expect("at most 255 blocks");
            self.block += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SeededRng {}

/// The responder's side: what it answers to a `RedeemStart` from `joiner` for the invites
/// `invites` (code and state), as `me`. Refuses a message that is not a SPAKE2 side-A message.
pub fn respond(
    run: &RunId,
    joiner: &[u8; 32],
    me: &[u8; 32],
    msg_a: &[u8],
    invites: &[(String, InviteState)],
) -> Result<(Vec<Offer>, Vec<Expected>)> {
    let mut offers = Vec::with_capacity(invites.len());
    let mut expected = Vec::new();
    for (code, state) in invites.iter().take(MAX_OFFERS) {
        let (spake, msg_b) = Spake2::<Ed25519Group>::start_b(
            &password(code),
            &Identity::new(joiner),
            &Identity::new(me),
        );
        let key = spake.finish(msg_a).map_err(|_| bad_message())?;
        let c = Transcript {
            run,
            joiner,
            responder: me,
            msg_a,
            msg_b: &msg_b,
            state: *state,
        }
        .confirmations(&key);
        if *state == InviteState::Pending {
            expected.push(Expected {
                offer: offers.len() as u32,
                code: code.clone(),
                confirm: c.joiner,
            });
        }
        offers.push(Offer {
            pake: msg_b,
            state: *state,
            confirm: c.responder,
        });
    }
    Ok((offers, expected))
}

/// Checks that `msg_a` can be a SPAKE2 side-A message (before any invite is charged a run).
pub fn check_message(msg_a: &[u8]) -> Result<()> {
    if msg_a.len() != PAKE_MESSAGE_LEN {
        return Err(bad_message());
    }
    let (spake, _) =
        Spake2::<Ed25519Group>::start_b(&password(""), &Identity::new(b""), &Identity::new(b""));
    spake.finish(msg_a).map(|_| ()).map_err(|_| bad_message())
}

fn bad_message() -> Error {
    Error::Rejected("not a key-exchange message".into())
}

/// What a pending invite's offer expects back from a joiner that knows its code.
#[derive(Clone)]
pub struct Expected {
    offer: u32,
    code: String,
    confirm: [u8; 32],
}

struct Run {
    peer: [u8; 32],
    started: Instant,
    expected: Vec<Expected>,
}

/// Drops expired runs, and `peer`'s oldest until it has room for one more.
fn make_room(runs: &mut HashMap<RunId, Run>, peer: &[u8; 32]) {
    runs.retain(|_, r| r.started.elapsed() < RUN_TTL);
    let mut mine: Vec<(Instant, RunId)> = runs
        .iter()
        .filter(|(_, r)| &r.peer == peer)
        .map(|(id, r)| (r.started, *id))
        .collect();
    mine.sort();
    let excess = (mine.len() + 1).saturating_sub(MAX_RUNS_PER_PEER);
    for (_, id) in mine.into_iter().take(excess) {
        runs.remove(&id);
    }
}

/// A responder's unfinished runs (bounded, see the module docs).
#[derive(Default)]
pub struct Runs(Mutex<HashMap<RunId, Run>>);

impl Runs {
    /// Makes room for a new run of `peer`: drops expired runs and `peer`'s oldest beyond its
    /// share; refuses when every slot is taken by runs still going.
    pub fn reserve(&self, peer: &[u8; 32]) -> Result<()> {
        let mut runs = self.0.lock().expect("runs lock");
        make_room(&mut runs, peer);
        if runs.len() >= MAX_RUNS {
            // Too many devices are joining through this one at once.
            return Err(Error::RateLimited(RUN_TTL.as_secs()));
        }
        Ok(())
    }

    /// Keeps a started run (nothing to keep when no offer can be redeemed).
    pub fn insert(&self, id: RunId, peer: [u8; 32], expected: Vec<Expected>) {
        if expected.is_empty() {
            return;
        }
        // Runs of one device started at once may all have passed `reserve`.
        let mut runs = self.0.lock().expect("runs lock");
        make_room(&mut runs, &peer);
        if runs.len() < MAX_RUNS {
            runs.insert(
                id,
                Run {
                    peer,
                    started: Instant::now(),
                    expected,
                },
            );
        }
    }

    /// Ends run `id` of `peer` (whatever the outcome: a run is finished once) and returns the
    /// code of offer `offer` if `confirm` proves the joiner knows it.
    pub fn finish(
        &self,
        id: &RunId,
        peer: &[u8; 32],
        offer: u32,
        confirm: &[u8; 32],
    ) -> Result<String> {
        let mut runs = self.0.lock().expect("runs lock");
        let no_run = || {
            Error::invalid(
                "invite",
                "no such redemption in progress here (it timed out, or was for another device); \
                 start again",
            )
        };
        match runs.get(id) {
            Some(r) if &r.peer == peer && r.started.elapsed() < RUN_TTL => {}
            _ => return Err(no_run()),
        }
        let run = runs.remove(id).ok_or_else(no_run)?;
        run.expected
            .into_iter()
            .find(|e| e.offer == offer && same(&e.confirm, confirm))
            .map(|e| e.code)
            .ok_or_else(|| Error::invalid("invite", crate::docs::admission::UNKNOWN_INVITE))
    }

    /// Unfinished runs kept now.
    pub fn len(&self) -> usize {
        self.0.lock().expect("runs lock").len()
    }

    /// Whether no run is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "ABCDE-FGHIJ";

    fn run(code: &str, responder_code: &str, state: InviteState) -> Option<(u32, InviteState)> {
        let (j, r) = ([1; 32], [2; 32]);
        let joiner = JoinerRun::start(code, j, r).unwrap();
        let id = [9; 16];
        let (offers, _) = respond(
            &id,
            &j,
            &r,
            &joiner.message(),
            &[
                ("ZZZZZ-ZZZZZ".into(), InviteState::Pending),
                (responder_code.into(), state),
            ],
        )
        .unwrap();
        joiner.matching(&id, &offers).map(|(i, s, _)| (i, s))
    }

    #[test]
    fn only_the_right_code_matches() {
        assert_eq!(
            run(CODE, CODE, InviteState::Pending),
            Some((1, InviteState::Pending))
        );
        assert_eq!(
            run(&CODE.to_lowercase(), CODE, InviteState::Used),
            Some((1, InviteState::Used))
        );
        assert_eq!(run("ABCDE-FGHIK", CODE, InviteState::Pending), None);
    }

    #[test]
    fn a_relayed_run_does_not_match() {
        // The joiner talks to a rogue (B = rogue); the inviter sees the rogue as A.
        let (j, rogue, inviter) = ([1; 32], [3; 32], [2; 32]);
        let joiner = JoinerRun::start(CODE, j, rogue).unwrap();
        let id = [9; 16];
        let (offers, expected) = respond(
            &id,
            &rogue,
            &inviter,
            &joiner.message(),
            &[(CODE.into(), InviteState::Pending)],
        )
        .unwrap();
        assert!(joiner.matching(&id, &offers).is_none());
        // Even a joiner fooled into answering would not have the confirmation expected.
        let honest = JoinerRun::start(CODE, j, inviter).unwrap();
        let (offers2, _) = respond(
            &id,
            &j,
            &inviter,
            &honest.message(),
            &[(CODE.into(), InviteState::Pending)],
        )
        .unwrap();
        let (_, _, confirm) = honest.matching(&id, &offers2).unwrap();
        assert!(!same(&confirm, &expected[0].confirm));
    }

    #[test]
    fn runs_are_bounded_and_finished_once() {
        let runs = Runs::default();
        let expected = |c: &str| {
            vec![Expected {
                offer: 0,
                code: c.into(),
                confirm: [5; 32],
            }]
        };
        let key = |i: u16| {
            let mut k = [0u8; 32];
            k[..2].copy_from_slice(&i.to_le_bytes());
            k
        };
        let id = |i: u16| {
            let mut k = [0u8; 16];
            k[..2].copy_from_slice(&i.to_le_bytes());
            k
        };
        for i in 0..5 {
            runs.reserve(&key(1)).unwrap();
            runs.insert(id(i), key(1), expected(CODE));
        }
        assert_eq!(
            runs.len(),
            MAX_RUNS_PER_PEER,
            "a device's oldest runs make room"
        );
        // Another device's run: a wrong confirmation ends it.
        runs.reserve(&key(2)).unwrap();
        runs.insert(id(7), key(2), expected(CODE));
        assert!(runs.finish(&id(7), &key(2), 0, &[6; 32]).is_err());
        assert!(runs.finish(&id(7), &key(2), 0, &[5; 32]).is_err(), "ended");
        // Only the device that started a run may finish it.
        assert!(runs.finish(&id(4), &key(2), 0, &[5; 32]).is_err());
        assert_eq!(runs.finish(&id(4), &key(1), 0, &[5; 32]).unwrap(), CODE);
        for i in 100..100 + MAX_RUNS as u16 {
            if runs.reserve(&key(i)).is_ok() {
                runs.insert(id(i), key(i), expected(CODE));
            }
        }
        assert_eq!(runs.len(), MAX_RUNS);
        assert!(matches!(
            runs.reserve(&key(1000)),
            Err(Error::RateLimited(_))
        ));
    }

    #[test]
    fn garbage_messages_are_refused() {
        assert!(check_message(&[]).is_err());
        let joiner = JoinerRun::start(CODE, [1; 32], [2; 32]).unwrap();
        assert!(check_message(&joiner.message()).is_ok());
        let mut b = joiner.message();
        b[0] = b'B';
        assert!(check_message(&b).is_err(), "side B");
    }
}
