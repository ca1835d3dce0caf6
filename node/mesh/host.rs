//! [`Host`]: what the mesh needs of the node it runs for. The mesh sits below the handle
//! ([`crate::handle::NodeHandle`] implements this), so it names no node: it reaches the
//! replica through the sync traits ([`sync::LocalReplica`], [`sync::Joiner`]) and the few
//! facts and hooks below.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::Mesh;
use crate::docs::gossip_keys::GossipKey;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::{Device, DeviceRole, Event, Status};
use crate::net::Multiaddr;
use crate::sync::{self, SyncPeer, SyncRequest, SyncResponse};

/// The node as the mesh sees it. Cheap to clone (the mesh hands a clone to each task).
pub trait Host: sync::Joiner + Clone + Send + Sync + 'static {
    /// The genesis of the node's shop (`None` before it has one).
    fn genesis(&self) -> Result<Option<automerge::ChangeHash>>;
    /// Shop, device and store facts.
    fn status(&self) -> Result<Status>;
    /// This device's id.
    fn device_id(&self) -> &str;
    /// The device's secret key bytes (the network identity derives from them).
    fn device_secret(&self) -> [u8; 32];
    /// The key the shop's gossip is sealed with now (see [`crate::docs::gossip_keys`]).
    fn gossip_key(&self) -> std::result::Result<Option<GossipKey>, Vec<String>>;
    /// Stores gossip keys a member peer handed over (those this device can check).
    fn store_gossip_keys(
        &self,
        keys: Vec<(String, [u8; 32])>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The shop's devices.
    fn devices(&self) -> Result<Vec<Device>>;
    /// The shop's device with `public_key`, if it is one: its role and whether it is
    /// revoked. Asked for every message, so a lookup, not a scan (the shop's view keeps an
    /// index by key, rebuilt whenever `members` changes).
    fn device_role(&self, public_key: &[u8; 32]) -> Option<(DeviceRole, bool)>;
    /// Whether `public_key` is a device of the shop, not revoked.
    fn is_member_device(&self, public_key: &[u8; 32]) -> bool {
        self.device_role(public_key)
            .is_some_and(|(_, revoked)| !revoked)
    }
    /// Whether this device was revoked.
    fn is_revoked(&self) -> bool;
    /// The node's events (the mesh watches `members` change).
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// Every envelope this node commits, as bytes, to publish.
    fn outbox(&self) -> broadcast::Receiver<Arc<Vec<u8>>>;
    /// The envelopes of one document (the mesh offers `members` to relays).
    fn doc_envelopes(&self, doc: &str) -> Result<Vec<Vec<u8>>>;
    /// Pulls what `peer` has and this node lacks ([`sync::pull`]).
    fn pull_from<P: SyncPeer + Sync>(
        &self,
        peer: &P,
    ) -> impl Future<Output = Result<sync::PullReport>> + Send;
    /// Answers a request from the wire about the shop it names (see
    /// [`sync::decode_request`]); `member`: the transport authenticated `from` as a device of
    /// this shop.
    fn answer_framed(
        &self,
        ours: Option<sync::Hash32>,
        from: &[u8; 32],
        member: bool,
        request: (Option<sync::Hash32>, SyncRequest),
    ) -> impl Future<Output = SyncResponse> + Send;
    /// Notes that a device of the shop speaks another sync protocol version.
    fn note_update_needed(&self, why: String);
    /// The node's metrics.
    fn metrics(&self) -> &Metrics;
    /// Addresses peers can reach this node at.
    fn addrs(&self) -> Vec<String>;
    /// Sets them (the mesh does, once listening).
    fn set_addrs(&self, addrs: Vec<String>);
    /// Waits for a join in progress and takes the addresses joined through.
    fn after_join(&self) -> impl Future<Output = Vec<Multiaddr>> + Send;
    /// Tells the node which mesh runs for it now (`None`: none).
    fn set_mesh(&self, mesh: Option<Arc<Mesh>>) -> impl Future<Output = ()> + Send;
}
