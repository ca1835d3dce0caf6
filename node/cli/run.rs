//! Running a node in the foreground.

use super::*;

pub(super) fn apply(mut cfg: Config, args: &RunArgs) -> Config {
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

pub(super) fn init_logging(json: bool) {
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

pub(super) async fn run(cfg: Config, demo: bool) -> anyhow::Result<()> {
    let mut builder = Node::builder()
        .data_dir(&cfg.data_dir)
        .http(cfg.http)
        .api_options(crate::api::ApiOptions {
            allowed_hosts: cfg.allowed_hosts.clone(),
            ..Default::default()
        })
        .listen(cfg.listen.clone());
    for p in cfg
        .peers
        .iter()
        .chain(crate::node::remembered_peers(&cfg.data_dir).iter())
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
        let owner = crate::handle::demo::populate(&h).await?;
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
pub(super) async fn shutdown_signal() {
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
