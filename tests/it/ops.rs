//! What operators and integrators rely on: `/metrics` and its values moving when a sale syncs
//! between two nodes, the Automerge documents served to integrators, the configuration
//! reference (generated, and equal to the README's copy), JSON logs, `--version`, and the
//! systemd unit's command line.
//!
//! Nodes run on 127.0.0.1 with mDNS off; processes of the built binary get a private home and
//! are killed if a test fails.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tillmesh::Node;
use tillmesh::domain::model::*;

const BIN: &str = env!("CARGO_BIN_EXE_tillmesh");
const T: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn metrics(addr: SocketAddr) -> String {
    let res = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus text format"
    );
    res.text().await.unwrap()
}

/// The value of one sample (`name{labels}` exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls an async condition every 50 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f().await
}

const APPLIED_PEER: &str = "tillmesh_changes_applied_total{origin=\"peer\"}";
const APPLIED_LOCAL: &str = "tillmesh_changes_applied_total{origin=\"local\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_series_and_move_when_a_sale_syncs() {
    let dir_a = tempfile::tempdir().unwrap();
    let a = Node::builder()
        .data_dir(dir_a.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .discovery(false)
        .api(true)
        .start()
        .await
        .unwrap();
    let ah = a.handle();
    ah.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = ah.login_password("olivia", OWNER_PW).await.unwrap();
    let p = ah
        .create_product(&owner, product("M1", 500, 2000))
        .await
        .unwrap();
    ah.stock_in(&owner, stock_in(p.id, 50, 200)).await.unwrap();
    assert!(wait_for(|| !ah.addrs().is_empty(), T).await, "A listens");
    let addr_a = ah.addrs()[0].clone();

    let dir_b = common::mesh::joined_dir(&ah, &owner, "Till 2").await;
    let b = Node::builder()
        .data_dir(dir_b.path())
        .listen("/ip4/127.0.0.1/tcp/0")
        .peer(addr_a)
        .api(true)
        .start()
        .await
        .unwrap();
    let bh = b.handle();
    let (http_a, http_b) = (a.http_addr().unwrap(), b.http_addr().unwrap());
    assert!(http_b.ip().is_loopback(), "api(true) serves on loopback");
    assert!(
        wait_for(|| bh.product(p.id).is_ok(), T).await,
        "B has A's catalog"
    );

    let text = metrics(http_b).await;
    for series in [
        "tillmesh_build_info",
        "tillmesh_peers_connected",
        "tillmesh_peers_known",
        APPLIED_LOCAL,
        APPLIED_PEER,
        "tillmesh_changes_rejected_total{reason=\"bad_signature\"}",
        "tillmesh_changes_rejected_total{reason=\"not_allowed\"}",
        "tillmesh_changes_held_total",
        "tillmesh_sync_lag_seconds",
        "tillmesh_commit_seconds_bucket{le=\"+Inf\"}",
        "tillmesh_commit_seconds_sum",
        "tillmesh_commit_seconds_count",
        "tillmesh_store_bytes",
        "tillmesh_documents",
        "tillmesh_envelopes",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "{series} missing:\n{text}"
        );
    }
    for name in [
        "tillmesh_commit_seconds",
        "tillmesh_http_request_seconds",
        "tillmesh_changes_applied_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} typed");
    }
    assert!(sample(&text, "tillmesh_store_bytes").unwrap() > 0.0);
    // `join` brought the shop before B started: B may have applied nothing yet.
    let peer_before = sample(&text, APPLIED_PEER).unwrap();
    let commits_before = sample(&text, "tillmesh_commit_seconds_count").unwrap();

    let text_a = metrics(http_a).await;
    let local_before = sample(&text_a, APPLIED_LOCAL).unwrap();
    assert!(local_before >= 3.0, "shop, product, stock-in: {text_a}");

    // A sale on A moves A's local count and B's peer count.
    let sale = ah.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    assert!(
        wait_for(|| bh.sale(sale.id).is_ok(), T).await,
        "the sale reached B"
    );
    assert!(
        eventually(T, || async {
            sample(&metrics(http_b).await, APPLIED_PEER).unwrap() > peer_before
        })
        .await,
        "B's applied-from-peers counter moved"
    );
    let text_a = metrics(http_a).await;
    assert!(sample(&text_a, APPLIED_LOCAL).unwrap() > local_before);
    // The scrape itself was timed, under its route.
    assert!(
        sample(
            &text_a,
            "tillmesh_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
        )
        .unwrap()
            >= 1.0,
        "{text_a}"
    );
    assert!(
        text_a.contains("tillmesh_http_request_seconds_count{method=\"GET\",route=\"/metrics\"}")
    );

    // Connected, synced recently, the sale committed, nothing rejected.
    let text = metrics(http_b).await;
    assert!(sample(&text, "tillmesh_commit_seconds_count").unwrap() > commits_before);
    assert!(
        sample(&text, "tillmesh_peers_connected").unwrap() >= 1.0,
        "{text}"
    );
    let lag = sample(&text, "tillmesh_sync_lag_seconds").unwrap();
    assert!((0.0..60.0).contains(&lag), "sync lag {lag}");
    for line in text
        .lines()
        .filter(|l| l.starts_with("tillmesh_changes_rejected_total{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
    drop((ah, bh));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_documents_load_in_automerge() {
    use automerge::{ReadDoc, ScalarValue, Value as AmValue};

    let node = Node::builder().memory().api(true).start().await.unwrap();
    let h = node.handle();
    h.create_shop(new_shop("EUR", TaxMode::Inclusive))
        .await
        .unwrap();
    let owner = h.login_password("olivia", OWNER_PW).await.unwrap();
    let p = h
        .create_product(&owner, product("AM1", 280, 1900))
        .await
        .unwrap();
    h.stock_in(&owner, stock_in(p.id, 5, 100)).await.unwrap();
    let sale = h.record_sale(&owner, sale_of(p.id, 2)).await.unwrap();
    let base = format!("http://{}", node.http_addr().unwrap());
    let c = client();
    let login: Value = c
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "olivia", "password": OWNER_PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let get = |path: String| {
        let req = c.get(format!("{base}{path}")).bearer_auth(&token);
        async move { req.send().await.unwrap() }
    };

    let list: Vec<Value> = get("/api/v1/documents".into()).await.json().await.unwrap();
    let kinds: Vec<&str> = list.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in ["members", "settings", "catalog", "ledger"] {
        assert!(kinds.contains(&kind), "{kind} listed: {list:?}");
    }
    assert!(!kinds.contains(&"vault"), "the vault is never listed");
    for d in &list {
        assert!(d["size"].as_u64().unwrap() > 0, "{d}");
        assert!(!d["heads"].as_array().unwrap().is_empty(), "{d}");
    }
    let load =
        |bytes: &[u8]| automerge::AutoCommit::load(bytes).expect("a saved Automerge document");
    let heads_hex = |doc: &mut automerge::AutoCommit| {
        let mut h: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
        h.sort();
        h
    };
    let listed_heads = |id: &str| {
        let mut h: Vec<String> = list.iter().find(|d| d["id"] == id).unwrap()["heads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        h.sort();
        h
    };

    // settings: fields at the root.
    let res = get("/api/v1/documents/settings".into()).await;
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let mut settings = load(&res.bytes().await.unwrap());
    assert_eq!(heads_hex(&mut settings), listed_heads("settings"));
    let (name, _) = settings
        .get(automerge::ROOT, "shop_name")
        .unwrap()
        .expect("shop_name");
    assert_eq!(name.as_str(), Some("Corner Shop"));
    let (schema, _) = settings.get(automerge::ROOT, "schema").unwrap().unwrap();
    assert!(matches!(schema, AmValue::Scalar(s) if *s == ScalarValue::Uint(1)));

    // catalog: `product:<uuid>` maps.
    let catalog = load(
        &get("/api/v1/documents/catalog".into())
            .await
            .bytes()
            .await
            .unwrap(),
    );
    let (_, obj) = catalog
        .get(automerge::ROOT, format!("product:{}", p.id))
        .unwrap()
        .expect("the product");
    let (sku, _) = catalog.get(&obj, "sku").unwrap().unwrap();
    assert_eq!(sku.as_str(), Some("AM1"));
    let (price, _) = catalog.get(&obj, "price").unwrap().unwrap();
    assert!(matches!(price, AmValue::Scalar(s) if *s == ScalarValue::Int(280)));

    // ledger: `entry:<uuid>` → the entry as a JSON string; the id's slashes plain in the path.
    let ledger_id = list
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .find(|id| id.starts_with("ledger/"))
        .unwrap()
        .to_string();
    let ledger = load(
        &get(format!("/api/v1/documents/{ledger_id}"))
            .await
            .bytes()
            .await
            .unwrap(),
    );
    let (entry, _) = ledger
        .get(automerge::ROOT, format!("entry:{}", sale.id))
        .unwrap()
        .expect("the sale entry");
    let entry: Value = serde_json::from_str(entry.as_str().unwrap()).unwrap();
    assert_eq!(entry["kind"], "sale");
    assert_eq!(entry["receipt"], sale.receipt);
    assert_eq!(entry["lines"][0]["qty"], 2);
    assert_eq!(entry["total"], sale.total);

    // The vault is not served.
    assert_eq!(get("/api/v1/documents/vault".into()).await.status(), 404);
    drop(h);
    node.shutdown().await;
}

/// The README's configuration table is `tillmesh config --reference`, and every flag in it is
/// one `tillmesh run` takes.
#[test]
fn the_readme_carries_the_generated_configuration_reference() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = "<!-- config-reference: generated by `tillmesh config --reference` -->\n";
    let end = "<!-- /config-reference -->";
    let from = readme.find(start).expect("start marker in README.md") + start.len();
    let to = from + readme[from..].find(end).expect("end marker in README.md");
    let generated = tillmesh::config::reference();
    assert_eq!(
        &readme[from..to],
        generated,
        "README.md's configuration reference is stale: paste `tillmesh config --reference`"
    );
    let out = Command::new(BIN)
        .args(["config", "--reference"])
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated);
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for s in tillmesh::config::SETTINGS {
        assert!(help.contains(s.flag), "`tillmesh run` takes {}", s.flag);
        assert!(
            help.contains(s.env),
            "`tillmesh run --help` names {}",
            s.env
        );
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("tillmesh {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The unit's `ExecStart` is a command line `tillmesh` accepts, with the data dir in the
/// unit's state directory, and the unit keeps the settings that make it a service.
#[test]
fn the_systemd_unit_runs_a_valid_command_line() {
    let unit = std::fs::read_to_string("packaging/tillmesh.service").unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    };
    assert_eq!(value("User"), ["tillmesh"]);
    assert_eq!(value("StateDirectory"), ["tillmesh"]);
    assert_eq!(value("Restart"), ["on-failure"]);
    assert_eq!(value("KillSignal"), ["SIGTERM"]);
    assert_eq!(value("WantedBy"), ["multi-user.target"]);
    let exec = value("ExecStart");
    let mut args = exec[0].split_whitespace();
    assert_eq!(args.next(), Some("/usr/local/bin/tillmesh"));
    let args: Vec<&str> = args.collect();
    assert_eq!(args[0], "run");
    // `tillmesh config <the same flags>` parses them and prints the configuration they make.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("config")
        .args(&args[1..])
        .env("HOME", home.path())
        .env_remove("TILLMESH_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8(out.stdout).unwrap();
    assert!(cfg.contains("data_dir = \"/var/lib/tillmesh\""), "{cfg}");
    assert!(cfg.contains("http = \"0.0.0.0:7878\""), "{cfg}");
    for env in value("Environment") {
        let (k, _) = env.split_once('=').unwrap();
        assert!(
            tillmesh::config::SETTINGS.iter().any(|s| s.env == k),
            "{k} is a documented setting"
        );
    }
}

/// A `tillmesh run` child, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a node without a shop with `extra` flags and environment, stops it with SIGTERM and
/// returns its stderr lines.
fn run_and_stop(home: &Path, name: &str, flags: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let log = home.join(format!("{name}.log"));
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TILLMESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .envs(env.iter().copied())
        .args(flags)
        .arg("run")
        .arg("--data-dir")
        .arg(home.join("data"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut p = Proc(cmd.spawn().expect("tillmesh run starts"));
    let stdout = BufReader::new(p.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.starts_with("data dir:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the node printed its data dir");
    let started_logged = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("node started")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started_logged() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn logs_are_human_by_default_and_json_by_flag_or_environment() {
    let home = tempfile::tempdir().unwrap();
    let human = run_and_stop(home.path(), "human", &[], &[]);
    let started = human
        .iter()
        .find(|l| l.contains("node started"))
        .expect("a start line");
    assert!(serde_json::from_str::<Value>(started).is_err(), "{started}");
    assert!(started.contains("INFO"), "{started}");
    assert!(
        human.iter().any(|l| l.contains("node stopped")),
        "{human:?}"
    );

    for (name, flags, env) in [
        ("flag", &["--log-format", "json"][..], &[][..]),
        ("env", &[][..], &[("TILLMESH_LOG_FORMAT", "json")][..]),
    ] {
        let lines = run_and_stop(home.path(), name, flags, env);
        assert!(!lines.is_empty());
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect();
        let started = parsed
            .iter()
            .find(|v| v["fields"]["message"] == "node started")
            .unwrap_or_else(|| panic!("no start line: {lines:?}"));
        assert_eq!(started["level"], "INFO");
        assert_eq!(started["fields"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            started["fields"]["http"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        assert!(
            parsed
                .iter()
                .any(|v| v["fields"]["message"] == "node stopped")
        );
    }

    let bad = Command::new(BIN)
        .args(["--log-format", "xml", "config"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("human or json"));
}

/// Peers' changes that fail verification are counted under a reason: what `/metrics` shows
/// comes from the same import path the mesh uses.
#[tokio::test]
async fn rejected_changes_are_counted_by_reason() {
    use tillmesh::docs::Envelope;

    let s = shop().await;
    let p =
        s.h.create_product(&s.owner, product("R1", 100, 0))
            .await
            .unwrap();
    let stranger = tillmesh::identity::new_signing_key();
    let change = {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        doc.set_author(Some(automerge::Author::from(
            stranger.verifying_key().to_bytes().to_vec(),
        )));
        doc.put(automerge::ROOT, format!("product:{}", p.id), "pwned")
            .unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    };
    let members_heads: Vec<automerge::ChangeHash> =
        s.h.stored_documents()
            .unwrap()
            .into_iter()
            .find(|d| d.id == "members")
            .unwrap()
            .heads
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
    let not_a_member = Envelope::sign(&stranger, "catalog", &change, 1, &members_heads);
    let mut forged = not_a_member.clone();
    forged.signature[0] ^= 0xff;
    let results =
        s.h.import_envelopes(None, vec![not_a_member, forged])
            .await
            .unwrap();
    assert!(results.iter().all(Result::is_err), "{results:?}");
    let text = s.h.metrics_text().await;
    let count = |reason: &str| {
        sample(
            &text,
            &format!("tillmesh_changes_rejected_total{{reason=\"{reason}\"}}"),
        )
        .unwrap()
    };
    assert_eq!(count("not_allowed"), 1.0, "{text}");
    assert_eq!(count("bad_signature"), 1.0, "{text}");
    assert_eq!(count("other"), 0.0, "{text}");
    assert_eq!(
        s.h.product(p.id).unwrap().name,
        "Product R1",
        "nothing applied"
    );
    drop(s.h);
    s.node.shutdown().await;
}
