//! The `tillmesh` command line: run a node, create a shop, and talk to a running node.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tillmesh::config::{self, Config};
use tillmesh::domain::model::{NewShop, TaxMode};
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
        Some(Command::Reindex { data_dir }) => {
            let dir = data_dir.unwrap_or(cfg.data_dir);
            let path = dir.join(node::STORE_FILE);
            if !path.exists() {
                bail!("no store at {}", path.display());
            }
            let store = tillmesh::store::Store::open(&path)?;
            let r = tillmesh::engine::reindex(&store)?;
            println!(
                "reindexed {} documents: {} ledger entries, {} products",
                r.documents, r.entries, r.products
            );
            Ok(())
        }
    }
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
        let owner = tillmesh::domain::demo::populate(&h).await?;
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
        None => println!(
            "tillmesh {}: no shop yet — open http://{addr} to create or join one",
            status.version
        ),
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
