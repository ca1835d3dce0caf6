//! Scheduled, encrypted snapshots of the shops a relay serves (DESIGN §6).
//!
//! A snapshot is an ordinary encrypted [backup](crate::backup) of one shop's replica — one read
//! transaction, every document and envelope, the same [sealed](crate::sealed) format — so that a leaked file reveals nothing
//! but its size, the shop id and when it was taken. It is readable by the shop's **owners**
//! (their person keys, the `person:<id>` entries of `members` with role owner) and by the
//! shop's **recovery key** (the `recovery` entry of `members`, printed once by `init`). Owners
//! added later are recipients of later snapshots; a revoked owner is not a recipient of any
//! later one.
//!
//! - **Schedule** ([`Snapshots::tick`], run by the relay every `--snapshot-every`, 1 h by
//!   default): a shop gets a snapshot only if it changed since its last one (the set digests of
//!   its stored changes and the number of held envelopes differ — see [`state_fingerprint`]).
//!   The relay remembers the last snapshot per shop in `shops/<id>/snapshot-state.json`.
//! - **Names**: `<shop id>/<UTC time, ISO 8601 basic, ms>.tmsnap`, e.g.
//!   `6f1c…/20250301T140000.000Z.tmsnap`, in a local directory (default
//!   `DATA_DIR/snapshots`) or under an S3-compatible URL (`s3://bucket/prefix`), both through
//!   the `object_store` crate, so one code path writes, lists and prunes them.
//! - **Retention** ([`retained`]): after each new snapshot, the newest snapshot of each of the
//!   last `keep_hourly` (24) hours that have one, and of each of the last `keep_daily` (31) UTC
//!   days that have one, are kept; the rest are deleted. The newest snapshot is always kept, and
//!   a shop that stops changing keeps its last ones.
//! - **Never blocks sync**: the backup is written and encrypted on a blocking thread and
//!   streamed to the store by its own task.
//!
//! ## The file
//! A snapshot is a [sealed](crate::sealed) file — the one encryption format backups share —
//! with the magic `tillmesh-snap\n`: the recipients, the chunking and the trade-off of carrying
//! owners' password-sealed keys are described there.
//!
//! [`decrypt`] / [`decrypt_file`] (`tillmesh snapshot decrypt FILE --out BACKUP`) turn a
//! snapshot (or an encrypted backup) back into the plain backup file, which `tillmesh backup
//! verify` and `tillmesh restore` take as usual; a wrong key, a flipped byte or a truncated file
//! is an error, and [`decrypt_file`] writes to `BACKUP.partial` (mode 0600: it holds the vault)
//! and names it `BACKUP` only once it verifies. `tillmesh restore` also opens a snapshot
//! directly, with the same keys, leaving no plaintext copy.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::handle::NodeHandle;

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 14] = crate::sealed::Kind::Snapshot.magic();
/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = crate::sealed::FORMAT;
/// Plaintext bytes per encrypted chunk.
pub const CHUNK: usize = crate::sealed::CHUNK;
/// Snapshot file name extension.
pub const EXTENSION: &str = "tmsnap";
/// The per-shop state file inside a replica's data dir.
pub const STATE_FILE: &str = "snapshot-state.json";
/// Time format of snapshot names (ISO 8601 basic, UTC, milliseconds).
const NAME_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

pub use crate::sealed::{
    Encryptor, Recipient, RecipientKind, RecipientStanza, SealedHeader as SnapshotHeader, Unlock,
    decrypt, fingerprint, read_header,
};

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("snapshot", message)
}

fn corrupted(what: impl std::fmt::Display) -> Error {
    invalid(format!(
        "the snapshot is corrupted or truncated ({what}); nothing was written"
    ))
}

/// What [`decrypt_file`] made.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// The backup file it held, verified.
    pub backup: crate::backup::Verified,
}

/// Decrypts the snapshot `input` into the backup file `out` (which must not exist): written to
/// `out.partial`, checked with [`crate::backup::verify`], and only then renamed to `out`. On
/// any error nothing is left at either name.
pub fn decrypt_file(input: &Path, unlock: &Unlock, out: &Path) -> Result<Decrypted> {
    if out.exists() {
        return Err(Error::invalid(
            "out",
            format!("{} already exists: choose a new file name", out.display()),
        ));
    }
    let f = std::fs::File::open(input)
        .map_err(|e| invalid(format!("cannot open {}: {e}", input.display())))?;
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = (|| {
        let w = crate::private_fs::create_private(&partial)
            .map_err(|e| Error::store(format!("cannot create {}", partial.display()), e))?;
        let mut w = io::BufWriter::new(w);
        let header = decrypt(io::BufReader::new(f), unlock, &mut w)?;
        let w = w
            .into_inner()
            .map_err(|e| Error::store(format!("cannot write {}", partial.display()), e))?;
        w.sync_all()
            .map_err(|e| Error::store(format!("cannot write {}", partial.display()), e))?;
        let backup = crate::backup::verify(&partial, None)?;
        if backup.header.shop_id != Some(header.shop_id) {
            return Err(corrupted("the backup inside is of another shop"));
        }
        std::fs::rename(&partial, out).map_err(|e| {
            Error::store(
                format!("cannot rename {} to {}", partial.display(), out.display()),
                e,
            )
        })?;
        Ok(Decrypted { header, backup })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

// ----------------------------------------------------------------------------------------
// Retention

/// The snapshots retention keeps, of those taken at `times` (ms since the Unix epoch): the
/// newest of each of the last `keep_hourly` UTC hours that have a snapshot, the newest of each
/// of the last `keep_daily` UTC days that have one, and always the newest overall. Depends on
/// nothing but its input, so every run over the same snapshots deletes the same ones.
pub fn retained(times: &[i64], keep_hourly: u32, keep_daily: u32) -> BTreeSet<i64> {
    let mut sorted: Vec<i64> = times.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    let mut keep = BTreeSet::new();
    if let Some(newest) = sorted.first() {
        keep.insert(*newest);
    }
    for (period, count) in [(3_600_000i64, keep_hourly), (86_400_000i64, keep_daily)] {
        let mut seen = BTreeSet::new();
        for t in &sorted {
            let bucket = t.div_euclid(period);
            if seen.contains(&bucket) {
                continue;
            }
            if seen.len() as u64 >= u64::from(count) {
                break;
            }
            seen.insert(bucket);
            keep.insert(*t);
        }
    }
    keep
}

// ----------------------------------------------------------------------------------------
// Names, durations, change detection

/// A snapshot's object name: `<shop id>/<UTC time>.tmsnap`.
pub fn object_name(shop: Uuid, created_at: i64) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(created_at)
        .unwrap_or_default()
        .format(NAME_TIME);
    format!("{shop}/{t}.{EXTENSION}")
}

/// The shop and time an object name stands for (`None`: not a snapshot name).
pub fn parse_object_name(name: &str) -> Option<(Uuid, i64)> {
    let mut parts = name.rsplit('/');
    let file = parts.next()?;
    let shop = Uuid::parse_str(parts.next()?).ok()?;
    let stem = file.strip_suffix(&format!(".{EXTENSION}"))?;
    let t = chrono::NaiveDateTime::parse_from_str(stem, NAME_TIME).ok()?;
    Some((shop, t.and_utc().timestamp_millis()))
}

/// Parses a humane duration: `90s`, `15m`, `1h`, `1h30m`, `2d` (a bare number is seconds).
/// At least one second.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "duration",
            format!("{s:?} is not a duration like 30s, 15m, 1h or 1d"),
        )
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return (secs >= 1)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(bad);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A digest of everything a backup of the node would hold: the set digests of every sync
/// bucket (XOR of stored change hashes) and the number of held envelopes. Equal fingerprints
/// mean nothing changed.
pub fn state_fingerprint(handle: &NodeHandle) -> Result<[u8; 32]> {
    let mut buckets = handle.bucket_digests()?;
    buckets.sort();
    let mut h = Sha256::new();
    for (name, digest) in &buckets {
        h.update((name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        h.update(digest);
    }
    h.update(handle.held_count()?.to_le_bytes());
    Ok(h.finalize().into())
}

// ----------------------------------------------------------------------------------------
// Storage

/// Where snapshots go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotTarget {
    /// A local directory.
    Dir(PathBuf),
    /// S3-compatible object storage, `s3://bucket/prefix`; credentials and endpoint from the
    /// standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` …).
    Url(String),
}

impl std::fmt::Display for SnapshotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotTarget::Dir(d) => write!(f, "{}", d.display()),
            SnapshotTarget::Url(u) => f.write_str(u),
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The shop.
    pub shop_id: Uuid,
    /// When it was taken (ms since the Unix epoch).
    pub created_at: i64,
    /// Bytes.
    pub size: u64,
    /// Its name in the store (`<shop id>/<time>.tmsnap`).
    pub name: String,
}

/// A snapshot store: a local directory or an S3 bucket (prefix), through `object_store`.
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<dyn ObjectStore>,
    target: SnapshotTarget,
}

fn store_err(e: object_store::Error) -> Error {
    Error::store("snapshot store", e)
}

impl SnapshotStore {
    /// Opens a target (creating a local directory).
    pub fn open(target: &SnapshotTarget) -> Result<SnapshotStore> {
        let inner: Arc<dyn ObjectStore> = match target {
            SnapshotTarget::Dir(dir) => {
                crate::private_fs::private_dir(dir)
                    .map_err(|e| Error::store(format!("cannot create {}", dir.display()), e))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .map_err(store_err)?,
                )
            }
            SnapshotTarget::Url(url) => {
                let rest = url.strip_prefix("s3://").ok_or_else(|| {
                    Error::invalid(
                        "snapshot_url",
                        format!("{url:?} is not an s3://bucket/prefix URL"),
                    )
                })?;
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::invalid("snapshot_url", "the URL names no bucket"));
                }
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(store_err)?;
                let prefix = prefix.trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(
                        s3,
                        ObjectPath::from(prefix),
                    ))
                }
            }
        };
        Ok(SnapshotStore {
            inner,
            target: target.clone(),
        })
    }

    /// Where it writes.
    pub fn target(&self) -> &SnapshotTarget {
        &self.target
    }

    /// The snapshots of one shop (or of all), oldest first.
    pub async fn list(&self, shop: Option<Uuid>) -> Result<Vec<SnapshotInfo>> {
        let prefix = shop.map(|s| ObjectPath::from(s.to_string()));
        let mut stream = self.inner.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = match meta {
                Ok(m) => m,
                // A local directory that was never written to is an empty store.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            };
            let name = meta.location.to_string();
            if let Some((shop_id, created_at)) = parse_object_name(&name) {
                out.push(SnapshotInfo {
                    shop_id,
                    created_at,
                    size: meta.size,
                    name,
                });
            }
        }
        out.sort_by_key(|s| (s.shop_id, s.created_at));
        Ok(out)
    }

    /// Reads a whole snapshot into memory (tests, small shops).
    pub async fn read(&self, name: &str) -> Result<Vec<u8>> {
        let got = self
            .inner
            .get(&ObjectPath::from(name))
            .await
            .map_err(store_err)?;
        Ok(got.bytes().await.map_err(store_err)?.to_vec())
    }

    /// Copies a snapshot from the store into the local file `path` (which must not exist):
    /// written to `path.partial` and renamed once complete. Returns its size.
    pub async fn download(&self, name: &str, path: &Path) -> Result<u64> {
        if path.exists() {
            return Err(Error::invalid(
                "out",
                format!("{} already exists", path.display()),
            ));
        }
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        let result = async {
            let io = |e: io::Error| Error::store(format!("cannot write {}", partial.display()), e);
            let mut f = crate::private_fs::create_private(&partial).map_err(io)?;
            let got = self
                .inner
                .get(&ObjectPath::from(name))
                .await
                .map_err(store_err)?;
            let mut stream = got.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(store_err)?;
                f.write_all(&chunk).map_err(io)?;
                n += chunk.len() as u64;
            }
            f.sync_all().map_err(io)?;
            std::fs::rename(&partial, path).map_err(io)?;
            Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    /// Deletes one snapshot.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.inner
            .delete(&ObjectPath::from(name))
            .await
            .map_err(store_err)
    }

    /// Applies [`retained`] to a shop's snapshots; returns the names deleted.
    pub async fn prune(
        &self,
        shop: Uuid,
        keep_hourly: u32,
        keep_daily: u32,
    ) -> Result<Vec<String>> {
        let all = self.list(Some(shop)).await?;
        let times: Vec<i64> = all.iter().map(|s| s.created_at).collect();
        let keep = retained(&times, keep_hourly, keep_daily);
        let mut deleted = Vec::new();
        for s in all {
            if !keep.contains(&s.created_at) {
                self.delete(&s.name).await?;
                deleted.push(s.name);
            }
        }
        Ok(deleted)
    }

    /// Streams what `produce` writes (on a blocking thread) into the object `name`. The object
    /// appears only if `produce` and the upload both succeed; otherwise the upload is aborted.
    async fn put_streaming<T: Send + 'static>(
        &self,
        name: &str,
        produce: impl FnOnce(&mut ChannelWriter) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let job = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(ChannelWriter::SEND_AT),
            };
            let out = produce(&mut w)?;
            w.send()
                .map_err(|e| Error::Internal(format!("writing the snapshot failed: {e}")))?;
            Ok::<T, Error>(out)
        });
        let mut up =
            object_store::buffered::BufWriter::new(self.inner.clone(), ObjectPath::from(name));
        let mut upload_err = None;
        while let Some(bytes) = rx.recv().await {
            if let Err(e) = up.write_all(&bytes).await {
                upload_err = Some(e);
                break;
            }
        }
        // Dropping the receiver stops the producer if the upload failed.
        drop(rx);
        let produced = job
            .await
            .map_err(|e| Error::Internal(format!("the snapshot task failed: {e}")))?;
        match (produced, upload_err) {
            (Ok(out), None) => {
                up.shutdown()
                    .await
                    .map_err(|e| Error::store("snapshot store", e))?;
                Ok(out)
            }
            (produced, upload_err) => {
                let _ = up.abort().await;
                match upload_err {
                    Some(e) => Err(Error::store("snapshot store", e)),
                    None => Err(produced.err().expect("the other arms handled Ok")),
                }
            }
        }
    }
}

/// A `Write` on a blocking thread that hands ~1 MiB pieces to an async uploader.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const SEND_AT: usize = 1 << 20;

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::SEND_AT));
        self.tx
            .blocking_send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the snapshot upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::SEND_AT {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------
// Taking snapshots

/// A snapshot just written.
#[derive(Debug, Clone)]
pub struct Taken {
    /// Its name in the store.
    pub name: String,
    /// When it was taken (ms).
    pub created_at: i64,
    /// Encrypted bytes.
    pub bytes: u64,
    /// Recipients it was encrypted to.
    pub recipients: usize,
}

/// Takes a snapshot of the shop `handle` holds into `store`, now: a backup from one read
/// transaction, encrypted to the shop's [backup recipients](crate::docs::shop::ShopView::backup_recipients) as it is written.
pub async fn take(store: &SnapshotStore, handle: &NodeHandle, created_at: i64) -> Result<Taken> {
    let shop = handle
        .shop_view()
        .shop_id
        .ok_or_else(|| Error::NoShop("this node has no shop to snapshot".into()))?;
    let name = object_name(shop, created_at);
    let h = handle.clone();
    let written = store
        .put_streaming(&name, move |w| {
            h.write_sealed(crate::sealed::Kind::Snapshot, created_at, w, |_| {})
        })
        .await?;
    Ok(Taken {
        name,
        created_at,
        bytes: written.bytes,
        recipients: written.recipients,
    })
}

/// How a relay takes snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Where they go.
    pub target: SnapshotTarget,
    /// How often each shop is looked at (a snapshot is taken only if it changed).
    pub every: Duration,
    /// Hours that keep their newest snapshot.
    pub keep_hourly: u32,
    /// Days that keep their newest snapshot.
    pub keep_daily: u32,
}

impl SnapshotConfig {
    /// Hourly snapshots into `dir`, 24 hourly and 31 daily kept.
    pub fn local(dir: impl Into<PathBuf>) -> SnapshotConfig {
        SnapshotConfig {
            target: SnapshotTarget::Dir(dir.into()),
            every: Duration::from_secs(3600),
            keep_hourly: 24,
            keep_daily: 31,
        }
    }
}

/// What the relay remembers of a shop's last snapshot (`shops/<id>/snapshot-state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// The target it went to.
    pub target: String,
    /// Its name.
    pub name: String,
    /// When (ms).
    pub created_at: i64,
    /// [`state_fingerprint`] of the shop then (hex).
    pub fingerprint: String,
}

impl SnapshotState {
    /// Reads a shop's state file (`None` if absent or unreadable).
    pub fn load(replica_dir: &Path) -> Option<SnapshotState> {
        let bytes = std::fs::read(replica_dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, replica_dir: &Path) -> Result<()> {
        let path = replica_dir.join(STATE_FILE);
        let tmp = replica_dir.join(format!("{STATE_FILE}.tmp"));
        let io = |e: io::Error| Error::store(format!("cannot write {}", path.display()), e);
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("state serializes"),
        )
        .map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// What [`Snapshots::tick`] did for a shop.
#[derive(Debug, Clone)]
pub enum TickOutcome {
    /// Nothing changed since the last snapshot.
    Unchanged,
    /// A snapshot was taken; older ones that retention drops were deleted.
    Taken {
        /// The new snapshot.
        taken: Taken,
        /// Names deleted by retention.
        pruned: Vec<String>,
    },
}

/// A relay's snapshot service: the store and the schedule's settings.
#[derive(Clone)]
pub struct Snapshots {
    store: SnapshotStore,
    cfg: SnapshotConfig,
}

impl Snapshots {
    /// Opens the target.
    pub fn open(cfg: SnapshotConfig) -> Result<Snapshots> {
        Ok(Snapshots {
            store: SnapshotStore::open(&cfg.target)?,
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SnapshotConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// The last snapshot of the shop whose replica is in `replica_dir`, if it went to this
    /// target (ms).
    pub fn last_snapshot(&self, replica_dir: &Path) -> Option<i64> {
        SnapshotState::load(replica_dir)
            .filter(|s| s.target == self.store.target.to_string())
            .map(|s| s.created_at)
    }

    /// One scheduled look at a shop: a snapshot if it changed since the last one (or has
    /// none at this target), then retention.
    pub async fn tick(&self, handle: &NodeHandle, replica_dir: &Path) -> Result<TickOutcome> {
        let shop = handle
            .shop_view()
            .shop_id
            .ok_or_else(|| Error::NoShop("this replica has no shop".into()))?;
        // Taken before the backup's read transaction: a change in between only makes the next
        // tick take another snapshot, it is never missed.
        let fp = hex::encode(state_fingerprint(handle)?);
        let target = self.store.target.to_string();
        if SnapshotState::load(replica_dir)
            .is_some_and(|s| s.target == target && s.fingerprint == fp)
        {
            return Ok(TickOutcome::Unchanged);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let taken = take(&self.store, handle, now).await?;
        SnapshotState {
            target,
            name: taken.name.clone(),
            created_at: taken.created_at,
            fingerprint: fp,
        }
        .save(replica_dir)?;
        let pruned = self
            .store
            .prune(shop, self.cfg.keep_hourly, self.cfg.keep_daily)
            .await?;
        Ok(TickOutcome::Taken { taken, pruned })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    #[test]
    fn retention_keeps_the_newest_per_hour_and_per_day() {
        let base = 1_700_006_400_000; // 2023-11-15T00:00:00Z, a day boundary
        assert_eq!(base % D, 0);
        // Every 15 minutes for three days.
        let times: Vec<i64> = (0..(3 * 24 * 4)).map(|i| base + i * 15 * 60_000).collect();
        let newest = *times.last().unwrap();
        let kept = retained(&times, 4, 2);
        let expected: BTreeSet<i64> = [
            // The newest of each of the last 4 hours (xx:45).
            newest,
            newest - H,
            newest - 2 * H,
            newest - 3 * H,
            // The newest of the last 2 days: day 3's is the newest overall, day 2's 23:45.
            base + 2 * D - 15 * 60_000,
        ]
        .into_iter()
        .collect();
        assert_eq!(kept, expected);
        // The newest is kept even with nothing configured; an empty list keeps nothing.
        assert_eq!(retained(&times, 0, 0), [newest].into_iter().collect());
        assert!(retained(&[], 24, 31).is_empty());
        // A shop that stopped changing keeps its last snapshots, however old (one per day: the
        // two of 60 days ago share a day).
        let old = [base - 90 * D, base - 60 * D, base - 60 * D + H];
        assert_eq!(
            retained(&old, 1, 31),
            [old[0], old[2]].into_iter().collect::<BTreeSet<_>>()
        );
        // Deterministic whatever the order.
        let mut shuffled = times.clone();
        shuffled.reverse();
        shuffled.rotate_left(17);
        assert_eq!(retained(&shuffled, 4, 2), expected);
    }

    #[test]
    fn names_and_durations() {
        let shop = Uuid::new_v4();
        let name = object_name(shop, 1_700_006_400_123);
        assert_eq!(name, format!("{shop}/20231115T000000.123Z.tmsnap"));
        assert_eq!(parse_object_name(&name), Some((shop, 1_700_006_400_123)));
        assert_eq!(
            parse_object_name(&format!("prefix/{name}")),
            Some((shop, 1_700_006_400_123))
        );
        assert_eq!(parse_object_name(&format!("{shop}/x.tmsnap")), None);
        assert_eq!(parse_object_name("nope/20231115T000000.123Z.tmsnap"), None);
        for (s, secs) in [
            ("1s", 1),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("90", 90),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_secs(secs), "{s}");
        }
        for bad in ["", "0", "0s", "1x", "h", "1h30", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
