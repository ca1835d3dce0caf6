//! The commands and flags.

use super::*;

#[derive(Parser)]
#[command(
    name = "tillmesh",
    version,
    about = "Peer-to-peer sync node for small shops"
)]
pub(super) struct Cli {
    /// TOML config file (default: ~/.config/tillmesh/config.toml if it exists).
    #[arg(long, env = "TILLMESH_CONFIG", global = true)]
    pub(super) config: Option<PathBuf>,
    /// Log as JSON lines (same as `--log-format json`).
    #[arg(long, env = "TILLMESH_LOG_JSON", global = true)]
    pub(super) log_json: bool,
    /// Log format: human (default) or json.
    #[arg(long, env = "TILLMESH_LOG_FORMAT", global = true)]
    pub(super) log_format: Option<config::LogFormat>,
    /// Start with a demo shop (products and sales) in a fresh data dir.
    #[arg(long)]
    pub(super) demo: bool,
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(subcommand)]
    pub(super) command: Option<Command>,
}

#[derive(Args, Clone, Default)]
pub(super) struct RunArgs {
    /// Data directory.
    #[arg(long, env = "TILLMESH_DATA_DIR")]
    pub(super) data_dir: Option<PathBuf>,
    /// Address of the web UI and API (default 127.0.0.1:7878).
    #[arg(long, env = "TILLMESH_HTTP")]
    pub(super) http: Option<SocketAddr>,
    /// Mesh listen address (multiaddr; default /ip4/0.0.0.0/tcp/7879).
    #[arg(long, env = "TILLMESH_LISTEN")]
    pub(super) listen: Option<String>,
    /// A peer to dial (multiaddr, repeatable).
    #[arg(long = "peer", env = "TILLMESH_PEERS", value_delimiter = ',')]
    pub(super) peers: Vec<String>,
    /// A host name the web UI answers to besides IP addresses, localhost and this machine's
    /// names (repeatable).
    #[arg(
        long = "allowed-host",
        env = "TILLMESH_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub(super) allowed_hosts: Vec<String>,
    #[command(flatten)]
    pub(super) mdns: MdnsArgs,
}

/// mDNS flags of `run` and `join` (`join` looks a short code up by mDNS).
#[derive(Args, Clone, Default)]
pub(super) struct MdnsArgs {
    /// Do not use mDNS discovery (`join`: a short code then cannot be used).
    #[arg(long, env = "TILLMESH_NO_MDNS")]
    pub(super) no_mdns: bool,
    /// Interface for mDNS (repeatable; default every non-loopback interface).
    #[arg(
        long = "mdns-interface",
        env = "TILLMESH_MDNS_INTERFACES",
        value_delimiter = ','
    )]
    pub(super) mdns_interfaces: Vec<String>,
}

impl MdnsArgs {
    pub(super) fn apply(&self, cfg: &mut Config) {
        if self.no_mdns {
            cfg.mdns = false;
        }
        if !self.mdns_interfaces.is_empty() {
            cfg.mdns_interfaces = self.mdns_interfaces.clone();
        }
    }
}

#[derive(Args, Clone)]
pub(super) struct ApiArgs {
    /// URL of the running node (default: the node configured on this machine).
    #[arg(long, env = "TILLMESH_API")]
    pub(super) api: Option<String>,
    /// Bearer token from `POST /api/v1/login` (else asks for username and password).
    #[arg(long, env = "TILLMESH_TOKEN")]
    pub(super) token: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum Command {
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
pub(super) struct SnapshotArgs {
    /// Directory for snapshots (default DATA_DIR/snapshots).
    #[arg(long, conflicts_with = "snapshot_url")]
    pub(super) snapshot_dir: Option<PathBuf>,
    /// S3-compatible storage instead, `s3://bucket/prefix`; credentials and endpoint from the
    /// AWS_* environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for a plain-HTTP test endpoint).
    #[arg(long)]
    pub(super) snapshot_url: Option<String>,
    /// How often each shop is looked at; a snapshot is taken only if it changed (30s, 15m, 1h …).
    #[arg(long, default_value = "1h")]
    pub(super) snapshot_every: String,
    /// Hours that keep their newest snapshot.
    #[arg(long, default_value_t = 24)]
    pub(super) keep_hourly: u32,
    /// Days that keep their newest snapshot.
    #[arg(long, default_value_t = 31)]
    pub(super) keep_daily: u32,
    /// Take no snapshots.
    #[arg(long, conflicts_with_all = ["snapshot_dir", "snapshot_url"])]
    pub(super) no_snapshots: bool,
}

impl SnapshotArgs {
    pub(super) fn config(
        &self,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Option<SnapshotConfig>> {
        if self.no_snapshots {
            return Ok(None);
        }
        let every =
            crate::snapshot::parse_duration(&self.snapshot_every).context("--snapshot-every")?;
        let target = match (&self.snapshot_url, &self.snapshot_dir) {
            (Some(url), _) => SnapshotTarget::Url(url.clone()),
            (None, Some(dir)) => SnapshotTarget::Dir(dir.clone()),
            (None, None) => SnapshotTarget::Dir(data_dir.join(crate::relay::SNAPSHOTS_DIR)),
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
pub(super) enum SnapshotCommand {
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
pub(super) struct UnlockArgs {
    /// File holding the recovery key as `init` printed it.
    #[arg(long, conflicts_with = "password_file")]
    pub(super) recovery_key_file: Option<PathBuf>,
    /// The recovery key itself (prefer a file or the environment to the command line).
    #[arg(long, env = "TILLMESH_RECOVERY_KEY", hide_env_values = true)]
    pub(super) recovery_key: Option<String>,
    /// File holding an owner's password (opens that owner's key carried in the file).
    #[arg(long)]
    pub(super) password_file: Option<PathBuf>,
}

impl UnlockArgs {
    /// The key given, if any; with none and `ask` on a terminal, asks for an owner's password.
    pub(super) fn unlock(self, ask: bool) -> anyhow::Result<Option<crate::sealed::Unlock>> {
        use crate::sealed::Unlock;
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
                (Some(f), _, _) => Some(Unlock::Key(crate::identity::parse_recovery_key(&read(
                    &f,
                )?)?)),
                (None, Some(f), _) => Some(Unlock::Password(read(&f)?)),
                (None, None, Some(k)) => {
                    Some(Unlock::Key(crate::identity::parse_recovery_key(&k)?))
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
pub(super) const NEEDS_KEY: &str = "it is encrypted for the shop's owners and recovery key: pass \
     --recovery-key-file F (or TILLMESH_RECOVERY_KEY) or --password-file F with an owner's password";

#[derive(Subcommand)]
pub(super) enum RelayAction {
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
pub(super) enum AuditCommand {
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
pub(super) enum BackupAction {
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
