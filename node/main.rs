//! The `tillmesh` command line: run a node, create a shop, and talk to a running node.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tillmesh::config::{self, Config};
use tillmesh::domain::model::{NewShop, TaxMode};
use tillmesh::snapshot::{SnapshotConfig, SnapshotTarget};
use tillmesh::{Node, node};

#[derive(Parser)]
#[command(
    name = "tillmesh",
    version,
    about = "Peer-to-peer sync node for small shops"
)]
struct Cli {
    /// TOML config file (default: ~/.config/tillmesh/config.toml if it exists).
    #[arg(long, env = "TILLMESH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines (same as `--log-format json`).
    #[arg(long, env = "TILLMESH_LOG_JSON", global = true)]
    log_json: bool,
    /// Log format: human (default) or json.
    #[arg(long, env = "TILLMESH_LOG_FORMAT", global = true)]
    log_format: Option<config::LogFormat>,
    /// Start with a demo shop (products and sales) in a fresh data dir.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Data directory.
    #[arg(long, env = "TILLMESH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the web UI and API (default 127.0.0.1:7878).
    #[arg(long, env = "TILLMESH_HTTP")]
    http: Option<SocketAddr>,
    /// Mesh listen address (multiaddr; default /ip4/0.0.0.0/tcp/7879).
    #[arg(long, env = "TILLMESH_LISTEN")]
    listen: Option<String>,
    /// A peer to dial (multiaddr, repeatable).
    #[arg(long = "peer", env = "TILLMESH_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// A host name the web UI answers to besides IP addresses, localhost and this machine's
    /// names (repeatable).
    #[arg(
        long = "allowed-host",
        env = "TILLMESH_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    #[command(flatten)]
    mdns: MdnsArgs,
}

/// mDNS flags of `run` and `join` (`join` looks a short code up by mDNS).
#[derive(Args, Clone, Default)]
struct MdnsArgs {
    /// Do not use mDNS discovery (`join`: a short code then cannot be used).
    #[arg(long, env = "TILLMESH_NO_MDNS")]
    no_mdns: bool,
    /// Interface for mDNS (repeatable; default every non-loopback interface).
    #[arg(
        long = "mdns-interface",
        env = "TILLMESH_MDNS_INTERFACES",
        value_delimiter = ','
    )]
    mdns_interfaces: Vec<String>,
}

impl MdnsArgs {
    fn apply(&self, cfg: &mut Config) {
        if self.no_mdns {
            cfg.mdns = false;
        }
        if !self.mdns_interfaces.is_empty() {
            cfg.mdns_interfaces = self.mdns_interfaces.clone();
        }
    }
}

#[derive(Args, Clone)]
struct ApiArgs {
    /// URL of the running node (default: the node configured on this machine).
    #[arg(long, env = "TILLMESH_API")]
    api: Option<String>,
    /// Bearer token from `POST /api/v1/login` (else asks for username and password).
    #[arg(long, env = "TILLMESH_TOKEN")]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default).
    Run(RunArgs),
    /// Join a shop with an invite (the full invite string, or a short code found by mDNS).
    Join {
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        mdns: MdnsArgs,
        /// The invite.
        invite: String,
    },
    /// Create a shop in a data dir; prints the recovery key once.
    Init {
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Shop name.
        #[arg(long)]
        shop: String,
        /// Owner's display name.
        #[arg(long)]
        owner: String,
        /// Owner's login name.
        #[arg(long)]
        username: String,
        /// File holding the owner's password (at least 10 characters).
        #[arg(long)]
        password_file: PathBuf,
        /// ISO 4217 currency.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Prices include tax (`inclusive`) or not (`exclusive`).
        #[arg(long, default_value = "inclusive")]
        tax_mode: String,
        /// Name of this device.
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Ask the running node for an invite for a new device (owner or manager login).
    Invite {
        /// Role of the new device: till (or relay, owners only).
        #[arg(long, default_value = "till")]
        role: String,
        /// Name of the new device.
        #[arg(long)]
        name: String,
        /// Minutes the invite stays valid.
        #[arg(long, default_value_t = 15)]
        ttl_minutes: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show the running node's shop, device and store.
    Status(ApiArgs),
    /// Write sales.csv, movements.csv, stock.csv, profit.csv, shifts.csv, products.csv and
    /// sale-lines.csv from the running node.
    Export {
        /// Directory to write into (created).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Rebuild every projection from the stored documents (node must be stopped).
    Reindex {
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run a node with a demo shop (products and a week of sales).
    Demo(RunArgs),
    /// Print the configuration this command line, the environment and the file make, as TOML.
    Config {
        /// Print the reference of every setting (Markdown) instead.
        #[arg(long)]
        reference: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The audit trail: export it from the running node, or verify an export offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back up the running node into one file (owner or manager login), encrypted to the
    /// shop's owners and recovery key; `backup verify FILE` checks a backup file offline.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        action: Option<BackupAction>,
        /// File to write (must not exist yet).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Rebuild a data dir from a backup file (node stopped; the data dir new or empty). An
    /// encrypted backup opens with the recovery key or an owner's password (asked for on a
    /// terminal). The device gets a new key and must be admitted again: pass `--invite`, or run
    /// `join` later.
    Restore {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// An invite from a device of the shop (owner or manager): rejoin right after restoring.
        #[arg(long)]
        invite: Option<String>,
        #[command(flatten)]
        mdns: MdnsArgs,
    },
    /// Run a relay: a replica of every shop that enrolled it, synced with each shop's devices
    /// (`relay enroll INVITE` enrolls it in a shop).
    #[command(args_conflicts_with_subcommands = true)]
    Relay {
        #[command(subcommand)]
        action: Option<RelayAction>,
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Listen address (multiaddr, repeatable; default /ip4/0.0.0.0/tcp/7879).
        #[arg(long, env = "TILLMESH_LISTEN")]
        listen: Vec<String>,
        /// Requests of one shop served at once.
        #[arg(long, default_value_t = 8)]
        max_requests_per_shop: usize,
        /// Changes one shop's replica may hold before the relay refuses more.
        #[arg(long, default_value_t = 20_000_000)]
        max_changes_per_shop: u64,
        /// Where the web UI and API listen, over TLS only (owners and managers log in naming
        /// their shop).
        #[arg(long, default_value = "0.0.0.0:8443", conflicts_with = "no_http")]
        http: std::net::SocketAddr,
        /// Serve no web UI or API.
        #[arg(long)]
        no_http: bool,
        /// The TLS certificate (PEM, with its chain); without it the relay makes a
        /// self-signed one in DATA_DIR/tls/ on first start.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        snapshots: SnapshotArgs,
    },
    /// Encrypted snapshots a relay takes of its shops: list them, or decrypt one into a backup
    /// file (then `backup verify` / `restore` it).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// The relay's snapshot flags.
#[derive(Args, Clone)]
struct SnapshotArgs {
    /// Directory for snapshots (default DATA_DIR/snapshots).
    #[arg(long, conflicts_with = "snapshot_url")]
    snapshot_dir: Option<PathBuf>,
    /// S3-compatible storage instead, `s3://bucket/prefix`; credentials and endpoint from the
    /// AWS_* environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for a plain-HTTP test endpoint).
    #[arg(long)]
    snapshot_url: Option<String>,
    /// How often each shop is looked at; a snapshot is taken only if it changed (30s, 15m, 1h …).
    #[arg(long, default_value = "1h")]
    snapshot_every: String,
    /// Hours that keep their newest snapshot.
    #[arg(long, default_value_t = 24)]
    keep_hourly: u32,
    /// Days that keep their newest snapshot.
    #[arg(long, default_value_t = 31)]
    keep_daily: u32,
    /// Take no snapshots.
    #[arg(long, conflicts_with_all = ["snapshot_dir", "snapshot_url"])]
    no_snapshots: bool,
}

impl SnapshotArgs {
    fn config(&self, data_dir: &std::path::Path) -> anyhow::Result<Option<SnapshotConfig>> {
        if self.no_snapshots {
            return Ok(None);
        }
        let every =
            tillmesh::snapshot::parse_duration(&self.snapshot_every).context("--snapshot-every")?;
        let target = match (&self.snapshot_url, &self.snapshot_dir) {
            (Some(url), _) => SnapshotTarget::Url(url.clone()),
            (None, Some(dir)) => SnapshotTarget::Dir(dir.clone()),
            (None, None) => SnapshotTarget::Dir(data_dir.join(tillmesh::relay::SNAPSHOTS_DIR)),
        };
        Ok(Some(SnapshotConfig {
            target,
            every,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
        }))
    }
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// List snapshots (shop, time, size) without decrypting them.
    List {
        /// Snapshot directory (default DATA_DIR/snapshots).
        #[arg(long, conflicts_with = "url")]
        dir: Option<PathBuf>,
        /// Or S3-compatible storage, `s3://bucket/prefix` (AWS_* environment variables).
        #[arg(long)]
        url: Option<String>,
        /// The relay's data dir (for the default directory).
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Only this shop.
        #[arg(long)]
        shop: Option<uuid::Uuid>,
    },
    /// Decrypt a snapshot file into a backup file (checked, then named OUT) with the shop's
    /// recovery key or an owner's password.
    Decrypt {
        /// The snapshot file (with `--url`: its name in the store, `<shop id>/<time>.tmsnap`,
        /// as `snapshot list` prints it).
        file: PathBuf,
        /// Fetch it from S3-compatible storage, `s3://bucket/prefix` (AWS_* environment
        /// variables).
        #[arg(long)]
        url: Option<String>,
        /// The backup file to write (must not exist yet).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

/// How to open an encrypted backup or snapshot: the shop's recovery key or an owner's
/// password (a manager's opens nothing).
#[derive(Args, Clone, Default)]
struct UnlockArgs {
    /// File holding the recovery key as `init` printed it.
    #[arg(long, conflicts_with = "password_file")]
    recovery_key_file: Option<PathBuf>,
    /// The recovery key itself (prefer a file or the environment to the command line).
    #[arg(long, env = "TILLMESH_RECOVERY_KEY", hide_env_values = true)]
    recovery_key: Option<String>,
    /// File holding an owner's password (opens that owner's key carried in the file).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

impl UnlockArgs {
    /// The key given, if any; with none and `ask` on a terminal, asks for an owner's password.
    fn unlock(self, ask: bool) -> anyhow::Result<Option<tillmesh::sealed::Unlock>> {
        use tillmesh::sealed::Unlock;
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        };
        Ok(
            match (
                self.recovery_key_file,
                self.password_file,
                self.recovery_key,
            ) {
                (Some(f), _, _) => Some(Unlock::Key(tillmesh::identity::parse_recovery_key(
                    &read(&f)?,
                )?)),
                (None, Some(f), _) => Some(Unlock::Password(read(&f)?)),
                (None, None, Some(k)) => {
                    Some(Unlock::Key(tillmesh::identity::parse_recovery_key(&k)?))
                }
                (None, None, None) if ask && std::io::stdin().is_terminal() => Some(
                    Unlock::Password(rpassword::prompt_password("An owner's password: ")?),
                ),
                (None, None, None) => None,
            },
        )
    }
}

/// What to say when an encrypted file came without a key.
const NEEDS_KEY: &str = "it is encrypted for the shop's owners and recovery key: pass \
     --recovery-key-file F (or TILLMESH_RECOVERY_KEY) or --password-file F with an owner's password";

#[derive(Subcommand)]
enum RelayAction {
    /// Enroll this relay in a shop with an invite of role relay (made by an owner:
    /// `tillmesh invite --role relay --name NAME`). The relay may be running.
    Enroll {
        #[arg(long, env = "TILLMESH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The full invite string.
        invite: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write the running node's audit export (JSON lines with every signed change and the
    /// daily checkpoints) to a file.
    Export {
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check an audit export offline: every signature and hash, the chain of changes, and the
    /// checkpoints. Exits non-zero if anything is wrong.
    Verify {
        /// The export (from `tillmesh audit export` or GET /api/v1/audit/export).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Check a backup file offline: structure, every record and the checksum. An encrypted
    /// backup is opened with the recovery key or an owner's password; without one only its
    /// layout and checksum are checked (a cut or a flipped byte shows), not its content.
    Verify {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
                let joined = tillmesh::mesh::join(&dir, &invite, mdns).await?;
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
            let sealed = tillmesh::backup::sealed_kind(&file)
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
                let joined = tillmesh::relay::enroll(&dir, &invite).await?;
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
            let mut rcfg = tillmesh::relay::RelayConfig::new(&dir, listen);
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
                let relay = tillmesh::relay::Relay::start(rcfg)
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
                        .join(tillmesh::relay::SNAPSHOTS_DIR),
                ),
            };
            if let SnapshotTarget::Dir(d) = &target
                && !d.is_dir()
            {
                bail!("{} is not a directory", d.display());
            }
            rt.block_on(async {
                let store = tillmesh::snapshot::SnapshotStore::open(&target)?;
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
                    tillmesh::snapshot::SnapshotStore::open(&SnapshotTarget::Url(url.clone()))?;
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
            let store = tillmesh::store::Store::open(&path)?;
            let r = tillmesh::domain::reindex::reindex(&store)?;
            println!(
                "reindexed {} documents: {} ledger entries, {} products",
                r.documents, r.entries, r.products
            );
            Ok(())
        }
    }
}

/// `tillmesh snapshot decrypt FILE --out BACKUP`: with the recovery key (a file, or the
/// environment) or an owner's password; the backup is verified before it is named `BACKUP`.
fn snapshot_decrypt(
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
    let d = tillmesh::snapshot::decrypt_file(file, &unlock, out)
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
fn audit_verify(file: &std::path::Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let r = tillmesh::domain::audit::verify_export(std::io::BufReader::new(f))
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
async fn backup_to_file(cfg: &Config, api: ApiArgs, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    if out.exists() {
        bail!("{} already exists: choose a new file name", out.display());
    }
    let client = ApiClient::connect(cfg, api).await?;
    let started = std::time::Instant::now();
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = async {
        let mut resp = client.get("/api/v1/backup").await?;
        let mut f = tillmesh::private_fs::create_private(&partial)
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
        let v = tillmesh::backup::inspect(&partial)
            .context("the backup the node sent does not verify")?;
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
fn backup_verify(file: &std::path::Path, unlock: UnlockArgs) -> anyhow::Result<()> {
    match unlock.unlock(false)? {
        Some(unlock) => {
            let v = tillmesh::backup::verify(file, Some(&unlock))
                .with_context(|| format!("{} is not a usable backup", file.display()))?;
            print_backup_summary(file, &v);
        }
        None => {
            let v = tillmesh::backup::inspect(file)
                .with_context(|| format!("{} is not a usable backup", file.display()))?;
            print_inspection(file, &v);
        }
    }
    Ok(())
}

/// What a check without a key found.
fn print_inspection(file: &std::path::Path, v: &tillmesh::backup::Inspection) {
    use tillmesh::backup::Inspection;
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

fn print_backup_summary(file: &std::path::Path, v: &tillmesh::backup::Verified) {
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
const UNENCRYPTED: &str = "this backup file is NOT encrypted (written before tillmesh encrypted \
     backups, or decrypted): it holds the owners' sealed keys, the shop secret and staff PIN \
     hashes in the clear — keep it as safe as the recovery key, or delete it";

fn opened_by(kind: tillmesh::sealed::RecipientKind) -> &'static str {
    match kind {
        tillmesh::sealed::RecipientKind::Owner => "an owner's key",
        tillmesh::sealed::RecipientKind::Recovery => "the recovery key",
    }
}

/// Draws restore progress: a bar on a terminal, a line every 10 % otherwise.
fn restore_progress() -> impl FnMut(tillmesh::backup::Progress) + Send {
    let tty = std::io::stderr().is_terminal();
    let mut last_step = None;
    move |p: tillmesh::backup::Progress| {
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
async fn restore_from_file(
    file: &std::path::Path,
    unlock: Option<tillmesh::sealed::Unlock>,
    dir: &std::path::Path,
    invite: Option<String>,
    mdns: Option<Vec<String>>,
) -> anyhow::Result<()> {
    if let Some(i) = &invite {
        tillmesh::docs::admission::Ticket::parse(i)?;
    }
    let started = std::time::Instant::now();
    let r = tillmesh::backup::restore(file, unlock.as_ref(), dir, restore_progress())
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
            let joined = tillmesh::mesh::join(dir, &invite, mdns).await.context(
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

fn apply(mut cfg: Config, args: &RunArgs) -> Config {
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(h) = args.http {
        cfg.http = h;
    }
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    cfg.peers.extend(args.peers.iter().cloned());
    cfg.allowed_hosts.extend(args.allowed_hosts.iter().cloned());
    args.mdns.apply(&mut cfg);
    cfg
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TILLMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // No colour codes in files and journald, only on a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cfg: Config, demo: bool) -> anyhow::Result<()> {
    let mut builder = Node::builder()
        .data_dir(&cfg.data_dir)
        .http(cfg.http)
        .api_options(tillmesh::api::ApiOptions {
            allowed_hosts: cfg.allowed_hosts.clone(),
            ..Default::default()
        })
        .listen(cfg.listen.clone());
    for p in cfg
        .peers
        .iter()
        .chain(tillmesh::node::remembered_peers(&cfg.data_dir).iter())
    {
        builder = builder.peer(p.clone());
    }
    if cfg.mdns {
        builder = builder.mdns(cfg.mdns_interfaces.clone());
    }
    let node = builder
        .start()
        .await
        .with_context(|| format!("cannot start the node in {}", cfg.data_dir.display()))?;
    let h = node.handle();
    if demo && !h.status()?.has_shop {
        let owner = tillmesh::node::demo::populate(&h).await?;
        println!(
            "Demo shop created: log in as {:?} with password {:?}",
            owner.0, owner.1
        );
    }
    let addr = node.http_addr().expect("the node serves HTTP");
    let status = h.status()?;
    match &status.shop_name {
        Some(name) => println!(
            "tillmesh {} serving shop {name:?} at http://{addr}",
            status.version
        ),
        None => {
            println!(
                "tillmesh {}: no shop yet — open http://{addr} to create or join one",
                status.version
            );
            // From another device the first-start page asks for this; on this device it does
            // not (see `api::guard`).
            if let Some(token) = h.setup_token() {
                println!("setup token (for setting up from another device): {token}");
            }
        }
    }
    println!("data dir: {}", cfg.data_dir.display());
    tracing::info!(
        version = %status.version,
        http = %addr,
        data_dir = %cfg.data_dir.display(),
        shop = status.shop_name.as_deref().unwrap_or(""),
        "node started"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests and queued writes");
    drop(h);
    node.shutdown().await;
    tracing::info!("node stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A client of a running node's HTTP API.
struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    async fn connect(cfg: &Config, args: ApiArgs) -> anyhow::Result<ApiClient> {
        let base = args
            .api
            .unwrap_or_else(|| format!("http://{}", local_addr(cfg.http)))
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::new();
        let token = match args.token {
            Some(t) => t,
            None => {
                if !std::io::stdin().is_terminal() {
                    bail!(
                        "no token: pass --token or set TILLMESH_TOKEN (get one from POST /api/v1/login)"
                    );
                }
                let username = prompt("Username: ")?;
                let password = rpassword::prompt_password("Password: ")?;
                let resp = http
                    .post(format!("{base}/api/v1/login"))
                    .json(&serde_json::json!({"username": username, "password": password}))
                    .send()
                    .await
                    .with_context(|| format!("cannot reach the node at {base}"))?;
                let body: serde_json::Value = check(resp).await?.json().await?;
                body["token"]
                    .as_str()
                    .context("the login answer has no token")?
                    .to_string()
            }
        };
        Ok(ApiClient { base, token, http })
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        check(resp).await
    }

    async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        Ok(check(resp).await?.json().await?)
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.get(path).await?.json().await?)
    }

    async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.get(path).await?.text().await?)
    }
}

/// Turns an API error body into a readable error.
async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let msg = body["error"]["message"].as_str().unwrap_or("no details");
    bail!("the node answered {status}: {msg}")
}

/// A wildcard listen address is reached on loopback.
fn local_addr(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
    } else {
        a
    }
}

fn prompt(label: &str) -> anyhow::Result<String> {
    use std::io::Write;
    print!("{label}");
    std::io::stdout().flush()?;
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim().to_string())
}
