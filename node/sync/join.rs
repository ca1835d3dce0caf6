//! Joining a shop through one peer with an invite code: redeem it by SPAKE2 (the protocol and
//! its limits are in [`crate::redeem`]), check the invite, pin the shop's genesis, pull, admit
//! this device and offer the admission. The local side is a [`Joiner`]; nothing here knows a
//! node.

use std::future::Future;

use super::{LocalReplica, ReplicaRead, SyncPeer, SyncRequest, SyncResponse, pull, unexpected};
use crate::docs::Envelope;
use crate::docs::admission::Invite;
use crate::error::{Error, Result};
use crate::model::DeviceRole;

/// A device joining a shop: what [`join`] needs of it besides pulling.
pub trait Joiner: LocalReplica + Sync {
    /// This device's public key (the one the invite's admission is countersigned for).
    fn device_public_key(&self) -> [u8; 32];

    /// Pins the shop's genesis (refusing another shop) and the devices admitted before
    /// protocol 2.
    fn adopt_shop(
        &self,
        genesis: automerge::ChangeHash,
        legacy_devices: Vec<[u8; 32]>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Admits this device with the redeemed invite.
    fn admit_self(&self, invite: Invite) -> impl Future<Output = Result<()>> + Send;
}

/// How to join a shop: the one set of options every way in takes (`tillmesh join`, `tillmesh
/// relay enroll`, `POST /api/v1/join`, the library's join on a running node, the network join
/// above this layer, and [`join`] here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// Where a short code (an invite without an address) is looked up by mDNS: network
    /// interfaces (empty: every non-loopback one); `None`: mDNS off, a full invite string is
    /// needed.
    pub mdns: Option<Vec<String>>,
    /// Refuse an invite for another device role than this one, before this device is admitted
    /// (a relay enrolling refuses a till invite).
    pub role: Option<DeviceRole>,
}

impl JoinOptions {
    /// Short codes looked up by mDNS on `interfaces`.
    pub fn mdns(interfaces: Vec<String>) -> JoinOptions {
        JoinOptions {
            mdns: Some(interfaces),
            ..JoinOptions::default()
        }
    }

    /// Only an invite for a device of `role`.
    pub fn role(role: DeviceRole) -> JoinOptions {
        JoinOptions {
            role: Some(role),
            ..JoinOptions::default()
        }
    }
}

/// A join's state, without IO: fed the peer's answers (and told when the local steps are
/// done), it says what to do next ([`JoinStep`]). The order: redeem the code by a key exchange
/// (`RedeemStart`, `RedeemFinish`: the code never goes on the wire, and nothing more is sent to
/// a peer that does not prove it knows it), check the invite (this shop's certificate, this
/// device's key, the role asked for), pin the shop's genesis and pull everything, admit this
/// device, and offer the admission to the peer so it accepts this device from now on.
pub struct JoinSession {
    state: JoinState,
    me: [u8; 32],
    role: Option<DeviceRole>,
}

enum JoinState {
    /// `RedeemStart` asked.
    Started(crate::redeem::JoinerRun),
    /// `RedeemFinish` asked.
    Finishing,
    /// Waiting for the local side to pin the shop and pull.
    Pulling(Box<Invite>),
    /// Waiting for the local side to admit this device.
    Admitting(Box<Invite>),
    /// The admission offered to the peer.
    Offered(Box<Invite>),
    Done,
}

/// What a [`JoinSession`] asks for next.
#[derive(Debug)]
pub enum JoinStep {
    /// Send this request to the peer and hand its answer to [`JoinSession::on_answer`].
    Ask(SyncRequest),
    /// Pin the shop's genesis (and the devices admitted before protocol 2) and pull everything
    /// from the peer ([`super::pull`]), then call [`JoinSession::pulled`].
    AdoptAndPull {
        /// The shop's genesis.
        genesis: automerge::ChangeHash,
        /// Devices admitted before protocol 2.
        legacy_devices: Vec<[u8; 32]>,
    },
    /// Admit this device with the invite, then call [`JoinSession::admitted`] with this
    /// device's `members` changes (its admission), to offer them to the peer.
    Admit(Box<Invite>),
    /// Joined.
    Done(Box<Invite>),
}

impl JoinSession {
    /// Starts joining as the device `me` through the peer whose authenticated key is
    /// `responder`, with `code`; the first request to send.
    pub fn start(
        code: &str,
        me: [u8; 32],
        responder: [u8; 32],
        opts: &JoinOptions,
    ) -> Result<(JoinSession, SyncRequest)> {
        let pake = crate::redeem::JoinerRun::start(code, me, responder)?;
        let first = SyncRequest::RedeemStart {
            pake: pake.message(),
        };
        let session = JoinSession {
            state: JoinState::Started(pake),
            me,
            role: opts.role,
        };
        Ok((session, first))
    }

    /// The peer's answer to the last request.
    pub fn on_answer(&mut self, answer: SyncResponse) -> Result<JoinStep> {
        let unknown = || Error::invalid("invite", crate::docs::admission::UNKNOWN_INVITE);
        match (std::mem::replace(&mut self.state, JoinState::Done), answer) {
            (JoinState::Started(pake), SyncResponse::RedeemOffers { run, offers }) => {
                let (offer, confirm) = match pake.matching(&run, &offers) {
                    None => return Err(unknown()),
                    Some((offer, state, confirm)) => match state.refusal() {
                        Some(why) => return Err(Error::invalid("invite", why)),
                        None => (offer, confirm),
                    },
                };
                self.state = JoinState::Finishing;
                Ok(JoinStep::Ask(SyncRequest::RedeemFinish {
                    run,
                    offer,
                    confirm,
                }))
            }
            (JoinState::Started(_), SyncResponse::NoInvites) => Err(unknown()),
            (JoinState::Finishing, SyncResponse::Invite(bytes)) => {
                let invite: Invite = postcard::from_bytes(&bytes)
                    .map_err(|_| Error::Rejected("the peer sent a damaged invite".into()))?;
                self.check(&invite)?;
                let step = JoinStep::AdoptAndPull {
                    genesis: automerge::ChangeHash(invite.genesis),
                    legacy_devices: invite.legacy_devices.clone(),
                };
                self.state = JoinState::Pulling(Box::new(invite));
                Ok(step)
            }
            (JoinState::Finishing, SyncResponse::Refused(r)) => Err(r.into_error("invite")),
            (JoinState::Offered(invite), SyncResponse::Accepted(n)) if n > 0 => {
                Ok(JoinStep::Done(invite))
            }
            (JoinState::Offered(_), SyncResponse::Refused(r)) => Err(Error::Rejected(format!(
                "the shop refused the admission: {r}"
            ))),
            // Before the peer proved it made the code, what it says is no reason to trust it;
            // after, an answer of the wrong kind ends the join all the same.
            (_, other) => Err(unexpected(other)),
        }
    }

    /// The invite is for this shop, this device and the role asked for.
    fn check(&self, invite: &Invite) -> Result<()> {
        if invite.cert().genesis != invite.genesis {
            return Err(Error::Rejected(
                "the inviting device sent a certificate of another shop".into(),
            ));
        }
        if invite.admitted.device != self.me {
            return Err(Error::Rejected(
                "the inviting device countersigned another key".into(),
            ));
        }
        if let Some(role) = self.role
            && invite.cert().role != role
        {
            return Err(Error::invalid(
                "invite",
                format!(
                    "this invite is for a {:?} device, not a {role:?}: ask an owner for the \
                     right invite (this one is used up, nothing was admitted)",
                    invite.cert().role
                )
                .to_lowercase(),
            ));
        }
        Ok(())
    }

    /// The shop is pinned and pulled: admit this device next.
    pub fn pulled(&mut self) -> Result<JoinStep> {
        match std::mem::replace(&mut self.state, JoinState::Done) {
            JoinState::Pulling(invite) => {
                self.state = JoinState::Admitting(invite.clone());
                Ok(JoinStep::Admit(invite))
            }
            _ => Err(Error::Internal("a join pulled out of turn".into())),
        }
    }

    /// This device is admitted; `admission` is its `members` changes: offer them to the peer.
    pub fn admitted(&mut self, admission: Vec<Vec<u8>>) -> Result<JoinStep> {
        match std::mem::replace(&mut self.state, JoinState::Done) {
            JoinState::Admitting(invite) => {
                self.state = JoinState::Offered(invite);
                Ok(JoinStep::Ask(SyncRequest::Offer(admission)))
            }
            _ => Err(Error::Internal("a join admitted out of turn".into())),
        }
    }
}

/// Joins the shop through `peer` with an invite code, driving a [`JoinSession`]: redeem it,
/// check it is for this device (and of the role `opts` asks for), pin the shop's genesis, pull
/// everything, and admit this device; then offer the admission to `peer`, so it accepts this
/// device from now on. A peer that did not make the invite (or a wrong code):
/// [`UNKNOWN_INVITE`].
///
/// [`UNKNOWN_INVITE`]: crate::docs::admission::UNKNOWN_INVITE
pub async fn join(
    local: &impl Joiner,
    peer: &impl SyncPeer,
    code: &str,
    opts: &JoinOptions,
) -> Result<Invite> {
    let me = local.device_public_key();
    let responder = peer.public_key().ok_or_else(|| {
        Error::Rejected("an invite is redeemed with an authenticated device".into())
    })?;
    let (mut session, first) = JoinSession::start(code, me, responder, opts)?;
    let mut step = session.on_answer(peer.request(first).await?)?;
    loop {
        step = match step {
            JoinStep::Ask(req) => session.on_answer(peer.request(req).await?)?,
            JoinStep::AdoptAndPull {
                genesis,
                legacy_devices,
            } => {
                local.adopt_shop(genesis, legacy_devices).await?;
                pull(local, peer).await?;
                session.pulled()?
            }
            JoinStep::Admit(invite) => {
                local.admit_self(*invite).await?;
                let mine: Vec<Vec<u8>> = local
                    .snapshot()?
                    .doc_envelopes("members")?
                    .into_iter()
                    .filter(|b| Envelope::from_bytes(b).is_ok_and(|e| e.signer == me))
                    .collect();
                session.admitted(mine)?
            }
            JoinStep::Done(invite) => return Ok(*invite),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redeem::{InviteState, respond};
    use crate::sync::{Refusal, RefusalKind};

    const CODE: &str = "ABCDE-FGHIJ";
    const ME: [u8; 32] = [1; 32];
    const INVITER: [u8; 32] = [2; 32];

    /// A session started with `CODE`, and the inviter's offers for `invites`.
    fn offered(invites: &[(&str, InviteState)]) -> (JoinSession, SyncResponse) {
        let (session, first) =
            JoinSession::start(CODE, ME, INVITER, &JoinOptions::default()).unwrap();
        let SyncRequest::RedeemStart { pake } = first else {
            panic!("a join starts with RedeemStart, not {first:?}");
        };
        let run = [9; 16];
        let invites: Vec<(String, InviteState)> =
            invites.iter().map(|(c, s)| (c.to_string(), *s)).collect();
        let (offers, _) = respond(&run, &ME, &INVITER, &pake, &invites).unwrap();
        (session, SyncResponse::RedeemOffers { run, offers })
    }

    fn invalid_invite(e: Error) -> String {
        match e {
            Error::Invalid { field, message } if field.as_deref() == Some("invite") => message,
            other => panic!("an invalid invite, not {other:?}"),
        }
    }

    #[test]
    fn a_peer_without_the_code_gets_nothing_more() {
        // It holds no invite, or none for this code: the join stops before sending anything.
        let (mut s, _) = offered(&[]);
        let e = s.on_answer(SyncResponse::NoInvites).unwrap_err();
        assert_eq!(invalid_invite(e), crate::docs::admission::UNKNOWN_INVITE);
        let (mut s, offers) = offered(&[("ZZZZZ-ZZZZZ", InviteState::Pending)]);
        let e = s.on_answer(offers).unwrap_err();
        assert_eq!(invalid_invite(e), crate::docs::admission::UNKNOWN_INVITE);
        // An answer of another kind is no invite either.
        let (mut s, _) = offered(&[]);
        assert!(matches!(
            s.on_answer(SyncResponse::Buckets(vec![])),
            Err(Error::Rejected(_))
        ));
    }

    #[test]
    fn the_right_code_is_finished_and_a_used_invite_says_so() {
        let (mut s, offers) = offered(&[
            ("ZZZZZ-ZZZZZ", InviteState::Pending),
            (CODE, InviteState::Pending),
        ]);
        match s.on_answer(offers).unwrap() {
            JoinStep::Ask(SyncRequest::RedeemFinish { offer, .. }) => assert_eq!(offer, 1),
            other => panic!("RedeemFinish for the matching offer, not {other:?}"),
        }
        // The inviter refuses at the last step: its refusal's kind decides, not its words.
        let refused = Refusal::new(RefusalKind::Invalid, "this invite has expired");
        let e = s.on_answer(SyncResponse::Refused(refused)).unwrap_err();
        assert_eq!(invalid_invite(e), "this invite has expired");

        let (mut s, offers) = offered(&[(CODE, InviteState::Used)]);
        let e = s.on_answer(offers).unwrap_err();
        assert!(invalid_invite(e).contains("already used"));
    }

    #[test]
    fn local_steps_out_of_turn_are_refused() {
        let (mut s, _) = offered(&[]);
        assert!(matches!(s.pulled(), Err(Error::Internal(_))));
        let (mut s, _) = offered(&[]);
        assert!(matches!(s.admitted(vec![]), Err(Error::Internal(_))));
    }
}
