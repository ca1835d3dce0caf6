//! The relay's scheduled encrypted snapshots of the shops it serves.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{Replica, SNAPSHOTS_AT_ONCE, Shops};
use crate::snapshot::{Snapshots, TickOutcome};

/// Looks at each served shop as soon as it is served and then every
/// [`SnapshotConfig::every`](crate::snapshot::SnapshotConfig::every), and takes a snapshot if
/// it changed (each shop in its own task, at most [`SNAPSHOTS_AT_ONCE`] at a time so the relay
/// keeps CPU for sync; a shop still being snapshotted is skipped). On stop, waits for the
/// snapshots under way.
pub(super) async fn snapshot_loop(
    snapshots: Snapshots,
    shops: Shops,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = snapshots.config().every;
    // Often enough to pick a newly enrolled shop up soon (the rescan runs every 2 s).
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(SNAPSHOTS_AT_ONCE));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        while running.try_join_next().is_some() {}
        let replicas: Vec<(Uuid, Arc<Replica>)> = shops
            .read()
            .expect("shops lock")
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        for (shop, r) in replicas {
            {
                let mut checked = r.snapshot_checked.lock().expect("snapshot lock");
                if checked.is_some_and(|t| t.elapsed() < every) {
                    continue;
                }
                *checked = Some(std::time::Instant::now());
            }
            if r.snapshotting.swap(true, Ordering::SeqCst) {
                continue;
            }
            let snapshots = snapshots.clone();
            let slots = slots.clone();
            running.spawn(async move {
                let _slot = slots.acquire_owned().await;
                match snapshots.tick(&r.handle, &r.dir).await {
                    Ok(TickOutcome::Taken { taken, pruned }) => {
                        tracing::info!(%shop, name = %taken.name, bytes = taken.bytes, recipients = taken.recipients, pruned = pruned.len(), "snapshot taken");
                        *r.last_snapshot.lock().expect("snapshot lock") = Some(taken.created_at);
                    }
                    Ok(TickOutcome::Unchanged) => {}
                    Err(e) => tracing::error!(%shop, "snapshot failed: {e}"),
                }
                r.snapshotting.store(false, Ordering::SeqCst);
            });
        }
    }
    while running.join_next().await.is_some() {}
}
