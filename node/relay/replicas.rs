//! The shops' replicas on disk: the relay's key, each `shops/<shop id>` directory opened as a
//! [`Node`], the scan for newly enrolled shops, and which shops a peer is a device of.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{RELAY_KEY_FILE, RelayConfig, Replica, SHOPS_DIR, Shops};
use crate::Node;
use crate::error::{Error, Result};
use crate::net::{self, PeerId};
use crate::snapshot::Snapshots;

pub(super) fn shops_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SHOPS_DIR)
}

pub(super) fn relay_key(data_dir: &Path) -> Result<ed25519_dalek::SigningKey> {
    crate::private_fs::private_dir(data_dir)
        .map_err(|e| Error::store(format!("cannot create data dir {}", data_dir.display()), e))?;
    crate::identity::load_or_create_device_key(&data_dir.join(RELAY_KEY_FILE))
}

/// Opens the replica in `dir` (a `shops/<uuid>` directory), if this relay was admitted there.
pub(super) async fn open_replica(
    dir: &Path,
    cfg: &RelayConfig,
    snapshots: Option<&Snapshots>,
) -> Result<Option<(Uuid, Replica)>> {
    let node = Node::builder().data_dir(dir).start().await?;
    let handle = node.handle();
    let status = handle.status()?;
    let admitted = status
        .device
        .as_ref()
        .is_some_and(|d| d.role == crate::model::DeviceRole::Relay && !d.revoked);
    let genesis = handle.genesis()?.map(|g| g.0);
    let (Some(shop), Some(genesis)) = (status.shop_id.filter(|_| admitted), genesis) else {
        tracing::warn!(dir = %dir.display(), "not an admitted relay replica; skipped");
        drop(handle);
        node.shutdown().await;
        return Ok(None);
    };
    Ok(Some((
        shop,
        Replica {
            node: tokio::sync::Mutex::new(Some(node)),
            handle,
            genesis,
            busy: Arc::new(Semaphore::new(cfg.max_requests_per_shop)),
            dir: dir.to_path_buf(),
            snapshotting: AtomicBool::new(false),
            last_snapshot: Mutex::new(snapshots.and_then(|s| s.last_snapshot(dir))),
            snapshot_checked: Mutex::new(None),
        },
    )))
}

/// Opens every replica in `shops/` not open yet.
pub(super) async fn scan_shops(
    cfg: &RelayConfig,
    snapshots: Option<&Snapshots>,
    shops: &Shops,
    known: &mut Vec<PathBuf>,
) -> Result<Vec<(Uuid, Arc<Replica>)>> {
    let dir = shops_dir(&cfg.data_dir);
    let mut opened = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(opened);
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_shop = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| Uuid::parse_str(n).is_ok());
        if !is_shop || !path.is_dir() || known.contains(&path) {
            continue;
        }
        known.push(path.clone());
        match open_replica(&path, cfg, snapshots).await {
            Ok(Some((id, replica))) => {
                tracing::info!(shop = %id, "serving shop");
                let replica = Arc::new(replica);
                shops
                    .write()
                    .expect("shops lock")
                    .insert(id, replica.clone());
                opened.push((id, replica));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(dir = %path.display(), "cannot open a shop replica: {e}"),
        }
    }
    Ok(opened)
}

/// The shops in which `peer` is an admitted, unrevoked device (by the one membership rule,
/// `docs::members`: a key some owner merely listed is a member of nothing).
pub(super) fn shops_of(shops: &Shops, peer: &PeerId) -> Vec<(Uuid, Arc<Replica>)> {
    let Some(pk) = net::public_key_of(peer) else {
        return Vec::new();
    };
    shops
        .read()
        .expect("shops lock")
        .iter()
        .filter(|(_, r)| r.handle.is_member_device(&pk) && r.handle.device_public_key() != pk)
        .map(|(id, r)| (*id, r.clone()))
        .collect()
}
