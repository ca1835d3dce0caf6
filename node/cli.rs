//! The `tillmesh` command line (DESIGN §1): run a node, create or join a shop, back it up and
//! restore it, run a relay, and talk to a running node. `main.rs` only calls [`main`].
//!
//! - `args`: the commands and flags (clap); they are a contract, checked from outside.
//! - this module: [`main`] and the dispatch of each command.
//! - `files`: backups, snapshots and audit exports as files (verify, decrypt, restore).
//! - `run`: running a node in the foreground until a signal, logging.
//! - `client`: the small HTTP client of a running node's API, and prompts.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{self, Config};
use crate::model::{NewShop, TaxMode};
use crate::snapshot::{SnapshotConfig, SnapshotTarget};
use crate::{Node, node};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

mod args;
mod client;
mod files;
mod run;

use args::*;
use client::*;
use files::*;
use run::*;

/// Parses the command line, runs the command and prints the error chain on failure.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and every cause under it (`source()`), each once: an error whose words already
/// include its cause's (`cannot write /data/peers: permission denied`) does not repeat them.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let words = cause.to_string();
        if out.contains(&words) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&words);
    }
    out
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.clone().or_else(config::default_config_file);
    let mut cfg = Config::load(file.as_deref(), cli.config.is_some())?;
    cfg.log_json |= cli.log_json;
    if let Some(f) = cli.log_format {
        cfg.log_format = f;
    }
    if let Some(Command::Config { reference, run }) = &cli.command {
        if *reference {
            print!("{}", config::reference());
        } else {
            print!("{}", toml::to_string(&apply(cfg, run))?);
        }
        return Ok(());
    }
    init_logging(cfg.json_logs());
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        None if cli.demo => rt.block_on(run(apply(cfg, &cli.run), true)),
        None => rt.block_on(run(apply(cfg, &cli.run), false)),
        Some(Command::Run(args)) => rt.block_on(run(apply(cfg, &args), false)),
        Some(Command::Demo(args)) => rt.block_on(run(apply(cfg, &args), true)),
        Some(Command::Init {
            data_dir,
            shop,
            owner,
            username,
            password_file,
            currency,
            timezone,
            tax_mode,
            device_name,
        }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir);
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string();
            let tax_mode = match tax_mode.as_str() {
                "inclusive" => TaxMode::Inclusive,
                "exclusive" => TaxMode::Exclusive,
                other => bail!("--tax-mode must be inclusive or exclusive, not {other:?}"),
            };
            rt.block_on(async {
                let node = Node::builder().data_dir(&dir).start().await?;
                let created = node
                    .handle()
                    .create_shop(NewShop {
                        shop_name: shop,
                        owner_name: owner,
                        username,
                        password,
                        currency: Some(currency),
                        timezone: Some(timezone),
                        tax_mode: Some(tax_mode),
                        device_name,
                    })
                    .await;
                node.shutdown().await;
                let created = created?;
                println!("Created shop {} in {}", created.shop_id, dir.display());
                println!();
                println!(
                    "RECOVERY KEY — write this down and keep it offline; it is shown only once:"
                );
                println!("  {}", created.recovery_key);
                println!();
                println!(
                    "Start the node with: tillmesh run --data-dir {}",
                    dir.display()
                );
                anyhow::Ok(())
            })
        }
        Some(Command::Invite {
            role,
            name,
            ttl_minutes,
            api,
        }) => rt.block_on(async {
            let client = ApiClient::connect(&cfg, api).await?;
            let body = serde_json::json!({"role": role, "name": name, "ttl_minutes": ttl_minutes});
            let created: serde_json::Value = client.post_json("/api/v1/invites", &body).await?;
            println!(
                "Invite for {} ({}), valid until {}:",
                created["name"].as_str().unwrap_or(""),
                created["role"].as_str().unwrap_or(""),
                created["expires_at"]
            );
            println!("  code:   {}", created["code"].as_str().unwrap_or(""));
            println!("  invite: {}", created["invite"].as_str().unwrap_or(""));
            println!("On the new device: tillmesh join --data-dir DIR '<invite or code>'");
            anyhow::Ok(())
        }),
        Some(Command::Status(api)) => rt.block_on(async {
            let client = ApiClient::connect(&cfg, api).await?;
            let status: serde_json::Value = client.get_json("/api/v1/status").await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            anyhow::Ok(())
        }),
        Some(Command::Export { out, api }) => rt.block_on(async {
            let client = ApiClient::connect(&cfg, api).await?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for (name, query) in [
                ("sales.csv", "?from=0"),
                ("movements.csv", "?from=0"),
                ("stock.csv", ""),
                ("profit.csv", "?from=1970-01-01"),
                ("shifts.csv", "?from=0"),
                ("products.csv", ""),
                ("sale-lines.csv", "?from=0"),
            ] {
                let body = client
                    .get_text(&format!("/api/v1/export/{name}{query}"))
                    .await?;
                let path = out.join(name);
                std::fs::write(&path, body)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            anyhow::Ok(())
        }),
        Some(Command::Join {
            data_dir,
            mdns,
            invite,
        }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir.clone());
            let mut cfg = cfg;
            mdns.apply(&mut cfg);
            let mdns = cfg.mdns.then_some(cfg.mdns_interfaces);
            rt.block_on(async {
                let joined =
                    crate::node::join(&dir, &invite, crate::mesh::JoinOptions { mdns, role: None })
                        .await?;
                println!(
                    "Joined shop {:?} as {:?} (receipt prefix {}).",
                    joined.shop_name, joined.device_name, joined.receipt_prefix
                );
                println!(
                    "Start the node with: tillmesh run --data-dir {}",
                    dir.display()
                );
                anyhow::Ok(())
            })
        }
        Some(Command::Config { .. }) => unreachable!("answered before logging starts"),
        Some(Command::Audit(AuditCommand::Verify { file })) => audit_verify(&file),
        Some(Command::Audit(AuditCommand::Export { out, api })) => rt.block_on(async {
            let client = ApiClient::connect(&cfg, api).await?;
            let mut resp = client.get("/api/v1/audit/export").await?;
            let mut f = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut bytes = 0usize;
            while let Some(chunk) = resp.chunk().await? {
                use std::io::Write;
                f.write_all(&chunk)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                bytes += chunk.len();
            }
            println!("wrote {} ({bytes} bytes)", out.display());
            anyhow::Ok(())
        }),
        Some(Command::Backup {
            action: Some(BackupAction::Verify { file, unlock }),
            ..
        }) => backup_verify(&file, unlock),
        Some(Command::Backup {
            action: None,
            out,
            api,
        }) => {
            let out = out.context("say where to write the backup: tillmesh backup --out FILE")?;
            rt.block_on(backup_to_file(&cfg, api, &out))
        }
        Some(Command::Restore {
            file,
            unlock,
            data_dir,
            invite,
            mdns,
        }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir.clone());
            let mut cfg = cfg;
            mdns.apply(&mut cfg);
            let mdns = cfg.mdns.then_some(cfg.mdns_interfaces);
            let sealed = crate::backup::sealed_kind(&file)
                .with_context(|| format!("cannot restore {}", file.display()))?
                .is_some();
            let unlock = unlock.unlock(sealed)?;
            if sealed && unlock.is_none() {
                bail!("cannot restore {}: {NEEDS_KEY}", file.display());
            }
            rt.block_on(restore_from_file(&file, unlock, &dir, invite, mdns))
        }
        Some(Command::Relay {
            action: Some(RelayAction::Enroll { data_dir, invite }),
            ..
        }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir);
            rt.block_on(async {
                let joined = crate::relay::enroll(&dir, &invite).await?;
                println!(
                    "This relay now serves shop {:?} ({}) as {:?}.",
                    joined.shop_name, joined.shop_id, joined.device_name
                );
                println!(
                    "Give the shop's devices its address: tillmesh run --peer <relay multiaddr>"
                );
                anyhow::Ok(())
            })
        }
        Some(Command::Relay {
            action: None,
            data_dir,
            listen,
            max_requests_per_shop,
            max_changes_per_shop,
            http,
            no_http,
            tls_cert,
            tls_key,
            snapshots,
        }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir.clone());
            let listen = if listen.is_empty() {
                vec![cfg.listen.clone()]
            } else {
                listen
            };
            let listen = listen
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("--listen {a:?} is not a multiaddr"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut rcfg = crate::relay::RelayConfig::new(&dir, listen);
            rcfg.max_requests_per_shop = max_requests_per_shop.max(1);
            rcfg.max_changes_per_shop = max_changes_per_shop;
            rcfg.http = (!no_http).then_some(http);
            rcfg.tls_cert = tls_cert;
            rcfg.tls_key = tls_key;
            rcfg.snapshots = snapshots.config(&dir)?;
            let snapshot_note = match &rcfg.snapshots {
                Some(s) => format!(
                    "snapshots: every {} s into {} (keeping {} hourly, {} daily)",
                    s.every.as_secs(),
                    s.target,
                    s.keep_hourly,
                    s.keep_daily
                ),
                None => "snapshots: off".to_string(),
            };
            rt.block_on(async {
                let relay = crate::relay::Relay::start(rcfg)
                    .await
                    .with_context(|| format!("cannot start the relay in {}", dir.display()))?;
                println!(
                    "tillmesh {} relay serving {} shops",
                    env!("CARGO_PKG_VERSION"),
                    relay.shops().len()
                );
                for a in relay.addrs() {
                    println!("relay listening on {a}");
                }
                if let (Some(addr), Some(tls)) = (relay.https_addr(), relay.tls()) {
                    println!("web UI and API: https://{addr}/ (TLS only)");
                    println!(
                        "TLS certificate {}{}",
                        tls.cert_path.display(),
                        if tls.generated {
                            " (self-signed, made now)"
                        } else {
                            ""
                        }
                    );
                    println!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint);
                }
                println!("data dir: {}", dir.display());
                println!("{snapshot_note}");
                shutdown_signal().await;
                eprintln!("shutting down…");
                relay.shutdown().await;
                anyhow::Ok(())
            })
        }
        Some(Command::Snapshot(SnapshotCommand::List {
            dir,
            url,
            data_dir,
            shop,
        })) => {
            let target = match (url, dir) {
                (Some(url), _) => SnapshotTarget::Url(url),
                (None, Some(dir)) => SnapshotTarget::Dir(dir),
                (None, None) => SnapshotTarget::Dir(
                    data_dir
                        .unwrap_or(cfg.data_dir)
                        .join(crate::relay::SNAPSHOTS_DIR),
                ),
            };
            if let SnapshotTarget::Dir(d) = &target
                && !d.is_dir()
            {
                bail!("{} is not a directory", d.display());
            }
            rt.block_on(async {
                let store = crate::snapshot::SnapshotStore::open(&target)?;
                let all = store.list(shop).await?;
                println!(
                    "{:<36}  {:<24}  {:>12}  name",
                    "shop", "taken (UTC)", "bytes"
                );
                for s in &all {
                    let when = chrono::DateTime::from_timestamp_millis(s.created_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    println!(
                        "{:<36}  {:<24}  {:>12}  {}",
                        s.shop_id, when, s.size, s.name
                    );
                }
                println!("{} snapshot(s) in {target}", all.len());
                anyhow::Ok(())
            })
        }
        Some(Command::Snapshot(SnapshotCommand::Decrypt {
            file,
            url,
            out,
            unlock,
        })) => {
            let Some(url) = url else {
                return snapshot_decrypt(&file, &out, unlock);
            };
            // Fetched next to OUT, decrypted, and removed whatever happens.
            let local = PathBuf::from(format!("{}.tmsnap", out.display()));
            let name = file.to_string_lossy().to_string();
            let fetched = rt.block_on(async {
                let store =
                    crate::snapshot::SnapshotStore::open(&SnapshotTarget::Url(url.clone()))?;
                store.download(&name, &local).await
            });
            if let Err(e) = fetched {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot fetch {name} from {url}"))
                );
            }
            let result = snapshot_decrypt(&local, &out, unlock);
            let _ = std::fs::remove_file(&local);
            result
        }
        Some(Command::Reindex { data_dir }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir);
            let path = dir.join(node::STORE_FILE);
            if !path.exists() {
                bail!("no store at {}", path.display());
            }
            let store = crate::store::Store::open(&path)?;
            let r = crate::domain::reindex::reindex(&store)?;
            println!(
                "reindexed {} documents: {} ledger entries, {} products",
                r.documents, r.entries, r.products
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `main` prints every cause once, in order.
    #[test]
    fn the_error_chain_is_printed_once_each() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = anyhow::Error::from(crate::Error::store("cannot write /data/peers", io))
            .context("joining the shop");
        assert_eq!(
            chain(&e),
            "joining the shop: storage error: cannot write /data/peers: denied"
        );
    }
}
