//! The mesh as the handle sees it: peers, addresses, gossip keys, who is a member.

use super::*;

impl NodeHandle {
    /// Peers of the mesh with their status (empty when the node does not sync).
    pub async fn peers(&self) -> Vec<crate::mesh::PeerView> {
        match self.inner.mesh.read().await.clone() {
            Some(m) => m.peers(self).await,
            None => Vec::new(),
        }
    }

    /// Dials a peer by address and keeps it as a static peer (managers and owners).
    pub async fn add_peer(&self, by: &Principal, addr: &str) -> Result<()> {
        access::require(by, Access::AddPeer)?;
        let addr: crate::net::Multiaddr = addr
            .parse()
            .map_err(|e| Error::invalid("addr", format!("{addr:?} is not a multiaddr: {e}")))?;
        match self.inner.mesh.read().await.clone() {
            Some(m) => m.add_peer(addr).await,
            None => Err(Error::Conflict(
                "this node does not sync yet (no shop, or no --listen address)".into(),
            )),
        }
    }

    /// This node's peer id on the mesh (derived from the device key).
    pub fn peer_id(&self) -> String {
        crate::net::peer_id_from_public_key(&self.device_public_key())
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    /// Stops syncing with a peer (by peer id) until [`Self::unblock_peer`]: its connections
    /// close and it is refused both ways. Revoked devices are blocked by the mesh itself.
    pub async fn block_peer(&self, peer: &str) -> Result<()> {
        let (mesh, peer) = self.mesh_and_peer(peer).await?;
        mesh.net().block(peer).await;
        Ok(())
    }

    /// Syncs with a blocked peer again.
    pub async fn unblock_peer(&self, peer: &str) -> Result<()> {
        let (mesh, peer) = self.mesh_and_peer(peer).await?;
        mesh.net().unblock(peer).await;
        Ok(())
    }

    async fn mesh_and_peer(
        &self,
        peer: &str,
    ) -> Result<(Arc<crate::mesh::Mesh>, crate::net::PeerId)> {
        let peer = peer
            .parse()
            .map_err(|e| Error::invalid("peer", format!("{peer:?} is not a peer id: {e}")))?;
        let mesh = self.inner.mesh.read().await.clone().ok_or_else(|| {
            Error::Conflict("this node does not sync yet (no shop, or no --listen address)".into())
        })?;
        Ok((mesh, peer))
    }

    /// Re-reads the addresses the mesh listens on: a wildcard listen address (`0.0.0.0`) is
    /// bound on every interface one by one, and the mesh starts once the first is known.
    pub(super) async fn refresh_addrs(&self) {
        let Some(mesh) = self.inner.mesh.read().await.clone() else {
            return;
        };
        let me = mesh.net().local_peer_id();
        let addrs: Vec<String> = mesh
            .net()
            .listen_addrs()
            .await
            .into_iter()
            .map(|a| crate::mesh::own_addr(a, me))
            .collect();
        if !addrs.is_empty() {
            self.set_addrs(addrs);
        }
    }

    /// Whether the mesh runs, with mDNS or not, and the addresses peers can add this node by.
    pub async fn mesh_info(&self) -> crate::mesh::MeshInfo {
        self.refresh_addrs().await;
        let addrs = self.addrs();
        match self.inner.mesh.read().await.clone() {
            Some(m) => crate::mesh::MeshInfo {
                running: true,
                mdns: m.mdns_enabled(),
                peer_id: Some(m.net().local_peer_id().to_string()),
                addrs,
            },
            None => crate::mesh::MeshInfo {
                running: false,
                mdns: false,
                peer_id: None,
                addrs,
            },
        }
    }

    pub(crate) async fn set_mesh(&self, mesh: Option<Arc<crate::mesh::Mesh>>) {
        *self.inner.mesh.write().await = mesh;
    }

    /// Addresses peers can reach this node at.
    pub fn addrs(&self) -> Vec<String> {
        self.inner
            .addrs
            .read()
            .expect("addrs lock is never poisoned")
            .clone()
    }

    /// Sets the addresses peers can reach this node at (the mesh does, once listening).
    pub fn set_addrs(&self, addrs: Vec<String>) {
        *self
            .inner
            .addrs
            .write()
            .expect("addrs lock is never poisoned") = addrs;
    }

    /// The shop's gossip topic, once the node belongs to a shop and holds its gossip key.
    pub fn topic(&self) -> Option<String> {
        self.gossip_key().ok().flatten().map(|k| k.topic())
    }

    /// The key the shop's gossip is sealed with now (see [`crate::docs::gossip_keys`]):
    /// `Ok(None)` before the node has a shop; `Err(ids)`: the current rotation records this
    /// device can open neither with its own key nor with a key a peer handed over.
    pub fn gossip_key(&self) -> std::result::Result<Option<GossipKey>, Vec<String>> {
        use crate::docs::gossip_keys;
        let view = self.view();
        let Some(shop_id) = view.shop_id else {
            return Ok(None);
        };
        let memo_key = (gossip_keys::current(&view.gossip), view.shop_secret.clone());
        let mut memo = self
            .inner
            .gossip_memo
            .lock()
            .expect("gossip memo lock is never poisoned");
        if let Some(m) = memo.as_ref()
            && m.0 == memo_key
        {
            return m.1.clone();
        }
        let known = memo_key
            .0
            .iter()
            .filter_map(|id| {
                let bytes = self.inner.store.meta(&gossip_keys::meta_key(id)).ok()??;
                Some((id.clone(), <[u8; 32]>::try_from(bytes.as_slice()).ok()?))
            })
            .collect();
        let derived = gossip_keys::derive(
            shop_id,
            &view.gossip,
            view.shop_secret.as_deref(),
            self.device_id(),
            &self.inner.device_key,
            &known,
        );
        *memo = Some((memo_key, derived.clone()));
        derived
    }

    /// The keys of the current rotation records this node holds, for a member peer that asks
    /// (`SyncRequest::GossipKeys`): only if it is an unrevoked till of the shop.
    pub(crate) fn gossip_keys_for(&self, peer: &[u8; 32]) -> Result<Vec<(String, [u8; 32])>> {
        let view = self.view();
        let hex_key = hex::encode(peer);
        if !view
            .devices
            .iter()
            .any(|d| d.public_key == hex_key && !d.revoked && d.role == DeviceRole::Till)
        {
            return Err(Error::Forbidden(
                "only a till of the shop gets its gossip key".into(),
            ));
        }
        self.held_gossip_keys()
    }

    /// Keeps record keys a member peer handed over (only for current records this device
    /// cannot open itself; a key that does not belong is harmless: the derived key would not
    /// open any gossip, and the next rotation replaces it).
    pub(crate) async fn store_gossip_keys(&self, keys: Vec<(String, [u8; 32])>) -> Result<()> {
        use crate::docs::gossip_keys;
        let view = self.view();
        let current = gossip_keys::current(&view.gossip);
        let keep: Vec<(String, [u8; 32])> = keys
            .into_iter()
            .filter(|(id, _)| current.contains(id))
            .collect();
        if keep.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .write(move |ctx| {
                for (id, key) in &keep {
                    ctx.set_meta(&gossip_keys::meta_key(id), key)?;
                }
                Ok(())
            })
            .await?;
        self.forget_gossip_key();
        Ok(())
    }

    /// Whether `public_key` is a device of the shop that is not revoked.
    pub fn is_member_device(&self, public_key: &[u8; 32]) -> bool {
        self.device_revoked(public_key) == Some(false)
    }

    /// Whether `public_key` is a device of the shop that an owner revoked.
    pub fn is_revoked_device(&self, public_key: &[u8; 32]) -> bool {
        self.device_revoked(public_key) == Some(true)
    }

    /// Whether an owner revoked this device.
    pub fn is_revoked(&self) -> bool {
        self.view().this_device.as_ref().is_some_and(|d| d.revoked)
    }
}

/// The mesh runs for a node through this (it names no node: see [`crate::mesh::Host`]).
impl crate::mesh::Host for NodeHandle {
    fn genesis(&self) -> Result<Option<automerge::ChangeHash>> {
        NodeHandle::genesis(self)
    }
    fn status(&self) -> Result<Status> {
        NodeHandle::status(self)
    }
    fn device_id(&self) -> &str {
        NodeHandle::device_id(self)
    }
    fn device_secret(&self) -> [u8; 32] {
        NodeHandle::device_secret(self)
    }
    fn gossip_key(&self) -> std::result::Result<Option<GossipKey>, Vec<String>> {
        NodeHandle::gossip_key(self)
    }
    fn store_gossip_keys(
        &self,
        keys: Vec<(String, [u8; 32])>,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        NodeHandle::store_gossip_keys(self, keys)
    }
    fn devices(&self) -> Result<Vec<Device>> {
        NodeHandle::devices(self)
    }
    fn device_role(&self, public_key: &[u8; 32]) -> Option<(DeviceRole, bool)> {
        self.view()
            .device_by_key(public_key)
            .map(|d| (d.role, d.revoked))
    }
    fn is_revoked(&self) -> bool {
        NodeHandle::is_revoked(self)
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        NodeHandle::subscribe(self)
    }
    fn outbox(&self) -> broadcast::Receiver<Arc<Vec<u8>>> {
        NodeHandle::outbox(self)
    }
    fn doc_envelopes(&self, doc: &str) -> Result<Vec<Vec<u8>>> {
        NodeHandle::doc_envelopes(self, doc)
    }
    fn pull_from<P: crate::sync::SyncPeer + Sync>(
        &self,
        peer: &P,
    ) -> impl std::future::Future<Output = Result<crate::sync::PullReport>> + Send {
        NodeHandle::pull_from(self, peer)
    }
    fn answer_framed(
        &self,
        ours: Option<crate::sync::Hash32>,
        from: &[u8; 32],
        member: bool,
        request: (Option<crate::sync::Hash32>, crate::sync::SyncRequest),
    ) -> impl std::future::Future<Output = crate::sync::SyncResponse> + Send {
        NodeHandle::answer_framed(self, ours, from, member, request)
    }
    fn note_update_needed(&self, why: String) {
        NodeHandle::note_update_needed(self, why)
    }
    fn metrics(&self) -> &crate::metrics::Metrics {
        NodeHandle::metrics(self)
    }
    fn addrs(&self) -> Vec<String> {
        NodeHandle::addrs(self)
    }
    fn set_addrs(&self, addrs: Vec<String>) {
        NodeHandle::set_addrs(self, addrs)
    }
    fn after_join(&self) -> impl std::future::Future<Output = Vec<crate::net::Multiaddr>> + Send {
        NodeHandle::after_join(self)
    }
    fn set_mesh(
        &self,
        mesh: Option<Arc<crate::mesh::Mesh>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        NodeHandle::set_mesh(self, mesh)
    }
}
