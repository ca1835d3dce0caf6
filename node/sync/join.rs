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

/// Joins the shop through `peer` with an invite code: redeem it, check it is for this device
/// (and of the role `opts` asks for), pin the shop's genesis, pull everything, and admit this
/// device; then offer the admission to `peer`, so it accepts this device from now on.
pub async fn join(
    local: &impl Joiner,
    peer: &impl SyncPeer,
    code: &str,
    opts: &JoinOptions,
) -> Result<Invite> {
    let role = opts.role;
    let invite = redeem(local, peer, code).await?;
    if invite.cert().genesis != invite.genesis {
        return Err(Error::Rejected(
            "the inviting device sent a certificate of another shop".into(),
        ));
    }
    if invite.admitted.device != local.device_public_key() {
        return Err(Error::Rejected(
            "the inviting device countersigned another key".into(),
        ));
    }
    if let Some(role) = role
        && invite.cert().role != role
    {
        return Err(Error::invalid(
            "invite",
            format!(
                "this invite is for a {:?} device, not a {role:?}: ask an owner for the right \
                 invite (this one is used up, nothing was admitted)",
                invite.cert().role
            )
            .to_lowercase(),
        ));
    }
    local
        .adopt_shop(
            automerge::ChangeHash(invite.genesis),
            invite.legacy_devices.clone(),
        )
        .await?;
    pull(local, peer).await?;
    local.admit_self(invite.clone()).await?;
    let me = local.device_public_key();
    let mine: Vec<Vec<u8>> = local
        .snapshot()?
        .doc_envelopes("members")?
        .into_iter()
        .filter(|b| Envelope::from_bytes(b).is_ok_and(|e| e.signer == me))
        .collect();
    match peer.request(SyncRequest::Offer(mine)).await? {
        SyncResponse::Accepted(n) if n > 0 => Ok(invite),
        SyncResponse::Refused(r) => Err(Error::Rejected(format!(
            "the shop refused the admission: {r}"
        ))),
        other => Err(unexpected(other)),
    }
}

/// Redeems `code` with `peer` by a key-exchange run (see [`crate::redeem`]): the code never
/// goes on the wire, and nothing more is sent to a peer that does not prove it knows it.
/// A peer that did not make the invite (or a wrong code): [`UNKNOWN_INVITE`].
///
/// [`UNKNOWN_INVITE`]: crate::docs::admission::UNKNOWN_INVITE
async fn redeem(local: &impl Joiner, peer: &impl SyncPeer, code: &str) -> Result<Invite> {
    let unknown = || Error::invalid("invite", crate::docs::admission::UNKNOWN_INVITE);
    let responder = peer.public_key().ok_or_else(|| {
        Error::Rejected("an invite is redeemed with an authenticated device".into())
    })?;
    let pake = crate::redeem::JoinerRun::start(code, local.device_public_key(), responder)?;
    let (run, offers) = match peer
        .request(SyncRequest::RedeemStart {
            pake: pake.message(),
        })
        .await?
    {
        SyncResponse::RedeemOffers { run, offers } => (run, offers),
        SyncResponse::NoInvites => return Err(unknown()),
        // Not proven to be the inviter yet: what it says is no reason to stop looking.
        other => return Err(unexpected(other)),
    };
    let (offer, confirm) = match pake.matching(&run, &offers) {
        None => return Err(unknown()),
        Some((offer, state, confirm)) => match state.refusal() {
            Some(why) => return Err(Error::invalid("invite", why)),
            None => (offer, confirm),
        },
    };
    match peer
        .request(SyncRequest::RedeemFinish {
            run,
            offer,
            confirm,
        })
        .await?
    {
        SyncResponse::Invite(bytes) => postcard::from_bytes(&bytes)
            .map_err(|_| Error::Rejected("the peer sent a damaged invite".into())),
        SyncResponse::Refused(r) => Err(r.into_error("invite")),
        other => Err(unexpected(other)),
    }
}
