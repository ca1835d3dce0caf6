//! Every example runs here and prints what it should.
//!
//! The Rust examples are included as modules and their `run` called with a buffer for their
//! output; the HTTP ones (`http_client`, `python/client.py`) drive a real `tillmesh run`
//! process on 127.0.0.1 (port 0, mDNS off) with a shop made by `tillmesh init`.

#[path = "../../examples/embedded_till.rs"]
mod embedded_till;
#[path = "../../examples/http_client.rs"]
mod http_client;
#[path = "../../examples/two_nodes.rs"]
mod two_nodes;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tillmesh");
const OWNER: &str = "olive";
const PASSWORD: &str = "correct horse battery staple";

fn lines(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("examples print UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_till_sells_and_prints_a_peers_events() {
    let mut out = Vec::new();
    embedded_till::run(&mut out)
        .await
        .expect("the example runs");
    let out = lines(out);
    assert!(out.contains("sold T1-000001 here: total 560"), "{out}");
    assert!(out.contains("sold T2-000001 on Till 2"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("event: change to ledger/") && l.ends_with(" by a peer")),
        "the peer's ledger change is printed: {out}"
    );
    assert!(out.contains("event: sale T2-000001: 2.80 EUR"), "{out}");
    // 50 in stock, 2 sold here, 1 on the other till.
    assert!(out.contains("coffee on hand here: 47"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sync_both_ways() {
    let mut out = Vec::new();
    two_nodes::run(&mut out).await.expect("the example runs");
    let out = lines(out);
    assert!(
        out.contains("joined \"Corner Shop\" as \"Till 1\""),
        "{out}"
    );
    assert!(out.contains("till sees the new price: 270"), "{out}");
    assert!(out.contains("till sold T2-000001: total 810"), "{out}");
    assert!(out.contains("bread on hand 17"), "{out}");
    assert!(
        out.contains("back office peer: Till 1 (till) connected=true"),
        "{out}"
    );
    assert!(out.contains("in sync:"), "{out}");
}

/// `http_client` with no arguments: its own node, set up over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_on_its_own_node() {
    let (node, base) = http_client::start_own_node("hana", "a long password")
        .await
        .unwrap();
    let mut out = Vec::new();
    http_client::run_against(&base, "hana", "a long password", &mut out)
        .await
        .expect("the example runs");
    node.shutdown().await;
    let out = lines(out);
    assert!(out.contains("logged in as Hana (owner)"), "{out}");
    check_http_client_output(&out);
}

fn check_http_client_output(out: &str) {
    for sku in ["TEA", "CKE", "WTR"] {
        assert!(out.contains(&format!("imported {sku} ")), "{out}");
    }
    // 2 × 3.50 + 4.20.
    assert!(out.contains(": total 1120, tax 73, change 880"), "{out}");
    assert!(
        out.contains("report ") && out.contains(": 1 sales, total 1120"),
        "{out}"
    );
    assert!(out.contains("stock TEA: 38"), "{out}");
    assert!(out.contains("stock CKE: 11"), "{out}");
    assert!(out.contains("stock WTR: 60"), "{out}");
}

/// A `tillmesh` child, killed and reaped on drop.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tillmesh(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TILLMESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .stdin(Stdio::null());
    cmd
}

/// `tillmesh init` then `tillmesh run` on 127.0.0.1:0 with mDNS off; the node and its URL.
fn start_node(dir: &Path) -> (Proc, String) {
    let data = dir.join("data");
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let init = tillmesh(dir)
        .arg("init")
        .arg("--data-dir")
        .arg(&data)
        .args(["--shop", "Example Shop", "--owner", "Olive"])
        .args(["--username", OWNER, "--password-file"])
        .arg(&pw)
        .output()
        .expect("tillmesh init runs");
    assert!(
        init.status.success(),
        "tillmesh init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let log = dir.join("run.log");
    let mut child = tillmesh(dir)
        .arg("run")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--no-mdns")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("tillmesh run starts");
    let stdout = child.stdout.take().unwrap();
    let p = Proc { child, log };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                if let Ok(a) = addr.parse::<SocketAddr>() {
                    let _ = tx.send(a);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "tillmesh run printed no address; stderr:\n{}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            )
        });
    (p, format!("http://{addr}"))
}

/// Both HTTP examples against one real node: the Rust client, then the Python script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_drive_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let (node, base) = start_node(dir.path());
    let health = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the node never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut out = Vec::new();
    http_client::run_against(&base, OWNER, PASSWORD, &mut out)
        .await
        .expect("http_client runs");
    let out = lines(out);
    assert!(out.contains("logged in as Olive (owner)"), "{out}");
    check_http_client_output(&out);

    // The same import again finds the products by SKU instead of failing.
    let mut again = Vec::new();
    http_client::run_against(&base, OWNER, PASSWORD, &mut again)
        .await
        .expect("http_client runs twice");
    assert!(lines(again).contains("stock TEA: 76"), "40 + 40 − 2 − 2");

    let python = Command::new("python3")
        .arg("examples/python/client.py")
        .args(["--api", &base, "--username", OWNER, "--password", PASSWORD])
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("python3 is needed for this test (apt-get install python3)");
    let stdout = String::from_utf8_lossy(&python.stdout);
    let stderr = String::from_utf8_lossy(&python.stderr);
    assert!(
        python.status.success(),
        "client.py failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        std::fs::read_to_string(&node.log).unwrap_or_default()
    );
    assert!(stdout.contains("OpenAPI: tillmesh"), "{stdout}");
    assert!(stdout.contains("logged in as Olive (owner)"), "{stdout}");
    // 8.99 + 2 × 0.20.
    assert!(stdout.contains(": total 939, tax "), "{stdout}");
    // Three sales today: two from http_client, one from Python.
    assert!(stdout.contains(": 3 sales, total 3179"), "{stdout}");
    assert!(stdout.contains("stock PY-MUG: 24"), "{stdout}");
    assert!(stdout.contains("stock PY-BAG: 23"), "{stdout}");
    assert!(stdout.contains("document catalog (catalog)"), "{stdout}");
    assert!(!stdout.contains("document vault"), "{stdout}");

    // Bad credentials: a clear error and a failing exit status.
    let bad = Command::new("python3")
        .arg("examples/python/client.py")
        .args([
            "--api",
            &base,
            "--username",
            OWNER,
            "--password",
            "wrong password",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("401 unauthorized"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    drop(node);
}
