//! Invites: making them, redeeming them for a joining device, and joining a shop.

use super::*;

impl NodeHandle {
    /// Creates an invite for a new device (owner; managers: tills).
    pub async fn create_invite(&self, by: &Principal, req: NewInvite) -> Result<InviteCreated> {
        let by = by.clone();
        let ttl = i64::from(req.ttl_minutes.unwrap_or(15)) * 60_000;
        let (code, cert) = self
            .inner
            .writer
            .write(move |ctx| commands::create_invite(ctx, &by, req.role, &req.name, ttl))
            .await?;
        let shop_hash = crate::docs::admission::shop_hash(cert.shop_id);
        self.refresh_addrs().await;
        let ticket = crate::docs::admission::Ticket {
            code: code.clone(),
            addrs: self.addrs(),
            shop_hash,
        };
        Ok(InviteCreated {
            code,
            invite: ticket.encode(),
            expires_at: cert.expires_at,
            role: cert.role,
            name: cert.name.clone(),
            receipt_prefix: cert.receipt_prefix.clone(),
        })
    }

    /// Redeems an invite code this node issued (single use) for the device with key `device`
    /// (as its connection authenticated it): countersigns the certificate for that key.
    pub async fn redeem_invite(
        &self,
        code: &str,
        device: [u8; 32],
    ) -> Result<crate::docs::admission::Invite> {
        let code = code.to_string();
        let mut invite = self
            .inner
            .writer
            .write(move |ctx| commands::redeem_invite(ctx, &code, &device))
            .await?;
        if invite.cert().role == DeviceRole::Till {
            invite.gossip_keys = self.held_gossip_keys()?;
        }
        Ok(invite)
    }

    /// Answers a device (key `from`, as its connection authenticated it) that starts
    /// redeeming an invite with the SPAKE2 message `pake`: a run against every invite made
    /// here (see [`crate::redeem`]); `None` when this device holds no invite to offer.
    pub async fn redeem_start(
        &self,
        from: [u8; 32],
        pake: Vec<u8>,
    ) -> Result<Option<(crate::redeem::RunId, Vec<crate::redeem::Offer>)>> {
        crate::redeem::check_message(&pake)?;
        self.inner.redeem_runs.reserve(&from)?;
        let invites = self.inner.writer.write(commands::start_redeem_run).await?;
        if invites.is_empty() {
            return Ok(None);
        }
        let run = crate::identity::random_bytes::<16>();
        let me = self.device_public_key();
        let (offers, expected) = tokio::task::spawn_blocking(move || {
            crate::redeem::respond(&run, &from, &me, &pake, &invites)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        self.inner.redeem_runs.insert(run, from, expected);
        Ok(Some((run, offers)))
    }

    /// Finishes run `run` of the device `from`: if `confirm` proves it knows the code of offer
    /// `offer`, redeems that invite for its key.
    pub async fn redeem_finish(
        &self,
        from: [u8; 32],
        run: crate::redeem::RunId,
        offer: u32,
        confirm: [u8; 32],
    ) -> Result<crate::docs::admission::Invite> {
        let code = self
            .inner
            .redeem_runs
            .finish(&run, &from, offer, &confirm)?;
        self.redeem_invite(&code, from).await
    }

    /// Admits this device with a redeemed invite (its `members` must have arrived).
    pub async fn admit_self(&self, invite: crate::docs::admission::Invite) -> Result<()> {
        self.inner
            .writer
            .write(move |ctx| commands::admit_self(ctx, &invite))
            .await?;
        // It may have brought the gossip keys.
        self.forget_gossip_key();
        Ok(())
    }

    /// Joins a shop with an invite (the full `tillmesh-invite:…` string, or a short code looked
    /// up by mDNS): redeems it with the inviting node, pulls the shop, admits this device and
    /// remembers the inviting node's address (in `DATA_DIR/peers`). The node must not belong to
    /// a shop yet. A running node starts syncing as soon as this returns.
    /// Short codes are looked up by mDNS where this node runs it.
    pub async fn join(&self, invite: &str) -> Result<crate::mesh::Joined> {
        let opts = crate::mesh::JoinOptions {
            mdns: self.inner.mdns.clone(),
            role: None,
        };
        self.join_with(invite, &opts).await
    }

    /// [`join`](Self::join) as `opts` say (where a short code is looked up; which device role
    /// the invite must be for).
    pub async fn join_with(
        &self,
        invite: &str,
        opts: &crate::mesh::JoinOptions,
    ) -> Result<crate::mesh::Joined> {
        let ticket = crate::docs::admission::Ticket::parse(invite)?;
        let _joining = self.inner.joining.lock().await;
        let (joined, addr) = crate::mesh::join(self, &ticket, opts).await?;
        if let Some(dir) = &self.inner.data_dir {
            crate::mesh::remember_peer(dir, &addr)?;
        }
        self.inner
            .joined_peers
            .lock()
            .expect("joined peers lock")
            .push(addr);
        Ok(joined)
    }

    /// Waits for a join in progress to finish and takes the addresses joined through.
    pub(crate) async fn after_join(&self) -> Vec<crate::net::Multiaddr> {
        let _joining = self.inner.joining.lock().await;
        std::mem::take(&mut *self.inner.joined_peers.lock().expect("joined peers lock"))
    }
}
