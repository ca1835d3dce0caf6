//! Backups, snapshots and audit exports as files.

use super::*;

/// `tillmesh snapshot decrypt FILE --out BACKUP`: with the recovery key (a file, or the
/// environment) or an owner's password; the backup is verified before it is named `BACKUP`.
pub(super) fn snapshot_decrypt(
    file: &std::path::Path,
    out: &std::path::Path,
    unlock: UnlockArgs,
) -> anyhow::Result<()> {
    let Some(unlock) = unlock.unlock(true)? else {
        bail!(
            "say how to open the snapshot: --recovery-key-file F (or TILLMESH_RECOVERY_KEY) or --password-file F"
        );
    };
    let started = std::time::Instant::now();
    let d = crate::snapshot::decrypt_file(file, &unlock, out)
        .with_context(|| format!("cannot decrypt {}", file.display()))?;
    let when = chrono::DateTime::from_timestamp_millis(d.header.created_at)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    println!(
        "decrypted the encrypted file of shop {} made {when} ({} recipients)",
        d.header.shop_id,
        d.header.recipients.len()
    );
    print_backup_summary(out, &d.backup);
    println!(
        "took {:.1} s; restore it with: tillmesh restore {} --data-dir DIR",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `tillmesh audit verify FILE`: prints a summary; an error (non-zero exit) if anything is wrong.
pub(super) fn audit_verify(file: &std::path::Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let r = crate::domain::audit::verify_export(std::io::BufReader::new(f))
        .with_context(|| format!("cannot verify {}", file.display()))?;
    let when = |ms: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    println!(
        "audit export of {}",
        r.shop_name.as_deref().unwrap_or("(unnamed shop)")
    );
    println!(
        "  {} changes in {} documents, signed by {} keys, {} to {}",
        r.changes,
        r.documents,
        r.signers,
        when(r.first_time),
        when(r.last_time)
    );
    println!(
        "  {} checkpoints by {} device(s)",
        r.checkpoints,
        r.checkpointing_devices.len()
    );
    if r.ok() {
        println!(
            "OK: every signature and hash verifies, no change is missing, every checkpoint is consistent"
        );
        return Ok(());
    }
    for p in &r.problems {
        eprintln!("  problem: {p}");
    }
    bail!(
        "{} problem(s): the export does not verify (altered, removed or truncated)",
        r.problems.len()
    )
}

/// `tillmesh backup --out FILE`: streams `GET /api/v1/backup` (encrypted by the node to the
/// shop's owners and recovery key) into `FILE.partial`, checks it as far as that is possible
/// without a key (layout and checksum), and only then names it `FILE`.
pub(super) async fn backup_to_file(
    cfg: &Config,
    api: ApiArgs,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    if out.exists() {
        bail!("{} already exists: choose a new file name", out.display());
    }
    let client = ApiClient::connect(cfg, api).await?;
    let started = std::time::Instant::now();
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = async {
        let mut resp = client.get("/api/v1/backup").await?;
        let mut f = crate::private_fs::create_private(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("the node stopped sending the backup")?
        {
            f.write_all(&chunk)
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        f.sync_all()?;
        let v =
            crate::backup::inspect(&partial).context("the backup the node sent does not verify")?;
        std::fs::rename(&partial, out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
        anyhow::Ok(v)
    }
    .await;
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    print_inspection(out, &v);
    println!("took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `tillmesh backup verify FILE [--recovery-key-file F | --password-file F]`.
pub(super) fn backup_verify(file: &std::path::Path, unlock: UnlockArgs) -> anyhow::Result<()> {
    match unlock.unlock(false)? {
        Some(unlock) => {
            let v = crate::backup::verify(file, Some(&unlock))
                .with_context(|| format!("{} is not a usable backup", file.display()))?;
            print_backup_summary(file, &v);
        }
        None => {
            let v = crate::backup::inspect(file)
                .with_context(|| format!("{} is not a usable backup", file.display()))?;
            print_inspection(file, &v);
        }
    }
    Ok(())
}

/// What a check without a key found.
pub(super) fn print_inspection(file: &std::path::Path, v: &crate::backup::Inspection) {
    use crate::backup::Inspection;
    match v {
        Inspection::Plain(v) => print_backup_summary(file, v),
        Inspection::Sealed(i) => {
            let when = chrono::DateTime::from_timestamp_millis(i.header.created_at)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            println!(
                "{}: OK — encrypted {} of shop {} made {when}, for {}",
                file.display(),
                i.kind.noun(),
                i.header.shop_id,
                i.header.recipient_list()
            );
            println!(
                "  {} bytes in {} chunks; {}",
                i.bytes,
                i.chunks,
                if i.checksummed {
                    "layout and checksum intact"
                } else {
                    "layout intact (this older format has no checksum)"
                }
            );
            println!(
                "  its content was not checked: that needs the recovery key or an owner's password \
                 (tillmesh backup verify {} --recovery-key-file F | --password-file F)",
                file.display()
            );
        }
    }
}

pub(super) fn print_backup_summary(file: &std::path::Path, v: &crate::backup::Verified) {
    let h = &v.header;
    let when = chrono::DateTime::from_timestamp_millis(h.created_at)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    println!(
        "{}: OK — backup of shop {:?} ({}) made {when} on device {} by tillmesh {}",
        file.display(),
        h.shop_name.as_deref().unwrap_or("?"),
        h.shop_id.map(|s| s.to_string()).unwrap_or_default(),
        h.device_id,
        h.tillmesh_version
    );
    println!(
        "  {} documents, {} changes, {} held; {} bytes, SHA-256 {}",
        h.records("documents"),
        h.records("envelopes"),
        h.records("held"),
        v.bytes,
        v.sha256
    );
    match &v.sealed {
        Some(s) => println!(
            "  encrypted ({} bytes) for {}; opened with {}",
            s.bytes,
            s.header.recipient_list(),
            opened_by(s.opened_by)
        ),
        None => println!("  {UNENCRYPTED}"),
    }
}

/// Said of a plain backup file.
pub(super) const UNENCRYPTED: &str = "this backup file is NOT encrypted (written before tillmesh encrypted \
     backups, or decrypted): it holds the owners' sealed keys, the shop secret and staff PIN \
     hashes in the clear — keep it as safe as the recovery key, or delete it";

pub(super) fn opened_by(kind: crate::sealed::RecipientKind) -> &'static str {
    match kind {
        crate::sealed::RecipientKind::Owner => "an owner's key",
        crate::sealed::RecipientKind::Recovery => "the recovery key",
    }
}

/// Draws restore progress: a bar on a terminal, a line every 10 % otherwise.
pub(super) fn restore_progress() -> impl FnMut(crate::backup::Progress) + Send {
    let tty = std::io::stderr().is_terminal();
    let mut last_step = None;
    move |p: crate::backup::Progress| {
        use std::io::Write;
        let pct = (p.done * 100).checked_div(p.total).unwrap_or(100);
        if tty {
            let filled = (pct / 4) as usize;
            eprint!(
                "\r[{}{}] {pct:3}% {}/{} changes",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                p.done,
                p.total
            );
            if p.done >= p.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else if last_step != Some(pct / 10) {
            last_step = Some(pct / 10);
            eprintln!("restored {} of {} changes ({pct}%)", p.done, p.total);
        }
    }
}

/// `tillmesh restore FILE --data-dir D [--invite I]`.
pub(super) async fn restore_from_file(
    file: &std::path::Path,
    unlock: Option<crate::sealed::Unlock>,
    dir: &std::path::Path,
    invite: Option<String>,
    mdns: Option<Vec<String>>,
) -> anyhow::Result<()> {
    if let Some(i) = &invite {
        crate::docs::admission::Ticket::parse(i)?;
    }
    let started = std::time::Instant::now();
    let r = crate::backup::restore(file, unlock.as_ref(), dir, restore_progress())
        .await
        .with_context(|| format!("cannot restore {}", file.display()))?;
    println!(
        "Restored shop {:?} into {}: {} documents, {} changes applied, {} held ({:.1} s).",
        r.shop_name.as_deref().unwrap_or("?"),
        dir.display(),
        r.documents,
        r.applied,
        r.held,
        started.elapsed().as_secs_f64()
    );
    match r.opened_by {
        Some(k) => println!("The backup was encrypted; {} opened it.", opened_by(k)),
        None => println!("Note: {UNENCRYPTED}."),
    }
    println!("This device has a new key (device {}).", r.device_id);
    match invite {
        Some(invite) => {
            let joined = crate::node::join(
                dir,
                &invite,
                crate::mesh::JoinOptions { mdns, role: None },
            )
            .await
            .context(
                "restored, but rejoining the shop failed (run `tillmesh join` with a new invite)",
            )?;
            println!(
                "Rejoined shop {:?} as {:?} (receipt prefix {}).",
                joined.shop_name, joined.device_name, joined.receipt_prefix
            );
            println!(
                "Start the node with: tillmesh run --data-dir {}",
                dir.display()
            );
        }
        None => {
            println!(
                "It is not a member of the shop yet: ask an owner or manager for an invite, then run"
            );
            println!("  tillmesh join --data-dir {} INVITE", dir.display());
        }
    }
    Ok(())
}
