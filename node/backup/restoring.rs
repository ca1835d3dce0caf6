//! Restoring a data dir from a backup: verified in full first, then every envelope imported
//! through the node's verify-and-apply path, and every document checked against its heads.

use std::io::Read;
use std::path::Path;

use super::reader::{Opened, open_with, scan, verify_opened};
use super::{RESTORE_BATCH, SECTIONS, Unlock, Verified, corrupted, invalid};
use crate::docs::Envelope;
use crate::error::{Error, Result};
use crate::replica::Applied;
use crate::sealed::RecipientKind;

/// How far a restore is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Envelopes imported so far.
    pub done: u64,
    /// Envelopes in the backup.
    pub total: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Documents restored (each at the heads the backup names).
    pub documents: u64,
    /// Envelopes applied.
    pub applied: u64,
    /// Envelopes still held (waiting for changes the backup did not have either).
    pub held: u64,
    /// The new device's id (not yet a member: it needs an invite).
    pub device_id: String,
    /// The shop.
    pub shop_id: Option<uuid::Uuid>,
    /// Its name.
    pub shop_name: Option<String>,
    /// Whose key opened the encrypted file; `None`: it was a plain (unencrypted, old) backup.
    pub opened_by: Option<RecipientKind>,
}

/// Rebuilds a data dir from a backup file; an encrypted one is opened with `unlock` (the
/// recovery key or an owner's password). `data_dir` must not exist or be empty; the file is
/// verified in full before anything is created, and on any failure what was created is removed.
/// The restored device has a new key and is not a member of the shop yet (see the module docs).
pub async fn restore(
    file: &Path,
    unlock: Option<&Unlock>,
    data_dir: &Path,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<RestoreReport> {
    let (verified, key) = {
        let file = file.to_path_buf();
        let unlock = unlock.cloned();
        tokio::task::spawn_blocking(move || verify_opened(&file, unlock.as_ref()))
            .await
            .map_err(|e| Error::Internal(format!("verify task failed: {e}")))??
    };
    let unlock = key.map(Unlock::Key);
    let existed = data_dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(data_dir).map_err(|e| {
            Error::invalid(
                "data_dir",
                format!("cannot read {}: {e}", data_dir.display()),
            )
        })?;
        if entries.next().is_some() {
            return Err(Error::invalid(
                "data_dir",
                format!(
                    "{} is not empty: restore only into a new or empty data dir",
                    data_dir.display()
                ),
            ));
        }
    }
    let outcome = restore_verified(file, unlock, data_dir, &verified, &mut progress).await;
    if outcome.is_err() {
        // Leave the data dir as it was: absent, or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(data_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(data_dir);
        }
    }
    outcome
}

async fn restore_verified(
    file: &Path,
    unlock: Option<Unlock>,
    data_dir: &Path,
    verified: &Verified,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<RestoreReport> {
    let genesis: [u8; 32] = hex::decode(&verified.header.genesis)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupted("the genesis in the header is not a hash"))?;
    let node = crate::Node::builder().data_dir(data_dir).start().await?;
    let h = node.handle();
    let result = import(
        &h,
        file,
        unlock,
        automerge::ChangeHash(genesis),
        verified,
        progress,
    )
    .await;
    drop(h);
    node.shutdown().await;
    result
}

/// The keys that signed a `members` change in a backup (one read of the file).
fn members_signers(file: &Path, unlock: Option<&Unlock>) -> Result<Vec<[u8; 32]>> {
    let input: Box<dyn Read> = match open_with(file, unlock)? {
        Opened::Plain(r) => Box::new(r),
        Opened::Sealed(o) => Box::new(o.reader),
    };
    let mut signers = std::collections::BTreeSet::new();
    scan(input, |_, section, rec| {
        if section != 0
            && let Ok(env) = Envelope::from_bytes(&rec)
            && env.doc == "members"
        {
            signers.insert(env.signer);
        }
        Ok(())
    })?;
    Ok(signers.into_iter().collect())
}

async fn import(
    h: &crate::NodeHandle,
    file: &Path,
    unlock: Option<Unlock>,
    genesis: automerge::ChangeHash,
    verified: &Verified,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<RestoreReport> {
    let legacy = match &verified.header.legacy_devices {
        Some(keys) => keys
            .iter()
            .map(|k| {
                hex::decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupted("a pinned device key in the header is not a key"))
            })
            .collect::<Result<Vec<[u8; 32]>>>()?,
        // Made before protocol 2: every device that signed a `members` change then was
        // admitted under protocol 1's rules.
        None => {
            let file = file.to_path_buf();
            let unlock = unlock.clone();
            tokio::task::spawn_blocking(move || members_signers(&file, unlock.as_ref()))
                .await
                .map_err(|e| Error::Internal(format!("the backup reader failed: {e}")))??
        }
    };
    h.adopt_shop(genesis, legacy).await?;
    let total = verified.header.records(SECTIONS[1]) + verified.header.records(SECTIONS[2]);
    // The file is read again (and its checksum and chunks checked again) on a blocking thread
    // that hands batches to the writer; nothing is kept in memory but a few batches, and no
    // plaintext of an encrypted file is written anywhere but into the store.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Envelope>>(4);
    let reader = {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let input: Box<dyn Read> = match open_with(&file, unlock.as_ref())? {
                Opened::Plain(r) => Box::new(r),
                Opened::Sealed(o) => Box::new(o.reader),
            };
            let mut batch = Vec::with_capacity(RESTORE_BATCH);
            scan(input, |_, section, rec| {
                if section == 0 {
                    return Ok(());
                }
                batch.push(
                    Envelope::from_bytes(&rec)
                        .map_err(|_| corrupted("a record is not an envelope"))?,
                );
                if batch.len() == RESTORE_BATCH {
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| Error::Internal("the restore stopped".into()))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch)
                    .map_err(|_| Error::Internal("the restore stopped".into()))?;
            }
            Ok(())
        })
    };
    let mut report = RestoreReport::default();
    let mut done = 0u64;
    let mut rejected = Vec::new();
    progress(Progress { done, total });
    while let Some(batch) = rx.recv().await {
        done += batch.len() as u64;
        for r in h.import_envelopes(None, batch).await? {
            match r {
                Ok(Applied::New(_)) => report.applied += 1,
                Ok(Applied::Duplicate(_)) | Ok(Applied::Held(..)) | Ok(Applied::Kept(..)) => {}
                Err(e) => rejected.push(e.to_string()),
            }
        }
        progress(Progress { done, total });
    }
    reader
        .await
        .map_err(|e| Error::Internal(format!("the backup reader failed: {e}")))??;
    if !rejected.is_empty() {
        return Err(invalid(format!(
            "{} changes in the backup were refused (first: {}); nothing was restored",
            rejected.len(),
            rejected[0]
        )));
    }
    let restored: std::collections::HashMap<String, Vec<String>> = h
        .stored_documents()?
        .into_iter()
        .map(|x| {
            let mut heads = x.heads;
            heads.sort();
            (x.id, heads)
        })
        .collect();
    for d in &verified.documents {
        let have = restored.get(&d.id).cloned().unwrap_or_default();
        let want: Vec<String> = d.heads.iter().map(hex::encode).collect();
        if have != want {
            return Err(Error::damaged(format!(
                "document {} did not come back as it was backed up (heads differ); nothing was \
                 restored",
                d.id
            )));
        }
    }
    let status = h.status()?;
    report.documents = verified.documents.len() as u64;
    report.held = h.held_count()?;
    report.device_id = h.device_id().to_string();
    report.shop_id = status.shop_id;
    report.shop_name = status.shop_name;
    report.opened_by = verified.sealed.as_ref().map(|s| s.opened_by);
    Ok(report)
}
