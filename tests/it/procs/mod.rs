//! Helpers for tests that run the `tillmesh` binary as processes: a guard that kills a child
//! on drop, `init`, `run`, `join`, and a small JSON client of a node's API. Nothing sleeps to
//! synchronise: startup, health and exits are polled with deadlines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tillmesh");
pub const OWNER: &str = "olive";
pub const OWNER_PASSWORD: &str = "correct horse battery staple";
/// Generous: a debug build on a busy 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Mesh flags of the tests: the mesh on loopback and mDNS off the real interfaces.
pub const LOOPBACK_NO_MDNS: [&str; 3] = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];

/// A `tillmesh` child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the process wrote to its log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -TERM failed");
        let status = self
            .wait_exit(EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("did not stop on SIGTERM:\n{}", self.log_tail()));
        assert!(
            status.success(),
            "unclean stop {status}:\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `tillmesh` with a private home (no config file of this machine applies) and none of the
/// parent's `TILLMESH_*` settings.
pub fn tillmesh(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TILLMESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .stdin(Stdio::null());
    cmd
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails the test, showing both outputs, unless the command succeeded; `what` names it.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed: {}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `tillmesh ARGS` in `home` to the end (output to files, so no pipe can fill).
pub fn tillmesh_cmd(home: &Path, name: &str, args: &[&str]) -> Output {
    finish(tillmesh(home), home, name, args)
}

/// Runs `cmd ARGS` to the end, its output in files `home/name.{out,err}`.
pub fn finish(mut cmd: Command, home: &Path, name: &str, args: &[&str]) -> Output {
    let out = home.join(format!("{name}.out"));
    let err = home.join(format!("{name}.err"));
    let child = cmd
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("tillmesh starts");
    let mut p = Proc {
        child,
        log: err.clone(),
    };
    let status = p
        .wait_exit(START_TIMEOUT)
        .unwrap_or_else(|| panic!("tillmesh {args:?} did not finish:\n{}", p.log_tail()));
    Output {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// `tillmesh init` of a shop in `dir/data`, which must print the recovery key. The password file
/// is written the way `echo … > file` writes it: the trailing newline is not part of it.
pub fn init(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let pw = dir.join("owner.password");
    std::fs::write(&pw, format!("{OWNER_PASSWORD}\n")).unwrap();
    let o = tillmesh_cmd(
        dir,
        "init",
        &[
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--shop",
            "Backup Shop",
            "--owner",
            "Olive Owner",
            "--username",
            OWNER,
            "--password-file",
            pw.to_str().unwrap(),
            "--currency",
            "EUR",
            "--timezone",
            "Europe/Paris",
        ],
    );
    assert!(
        o.status.success(),
        "init failed: {}\n{}",
        o.stdout,
        o.stderr
    );
    assert!(
        o.stdout.to_lowercase().contains("recovery"),
        "init prints the recovery key; stdout:\n{}",
        o.stdout
    );
    data
}

/// Starts `tillmesh run` with the tests' mesh flags (loopback, no mDNS): the process and the
/// address it printed.
pub fn run(data: &Path, log: &Path) -> (Proc, SocketAddr) {
    run_with(data, log, &LOOPBACK_NO_MDNS)
}

/// Starts `tillmesh run` with these extra flags and returns it with the address it printed.
pub fn run_with(data: &Path, log: &Path, flags: &[&str]) -> (Proc, SocketAddr) {
    let home = data.parent().expect("the data dir is in the test's dir");
    let mut cmd = tillmesh(home);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(data)
        .args(["--http", "127.0.0.1:0"])
        .args(flags);
    spawn_until(cmd, log, http_addr_in)
}

fn http_addr_in(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("http://")? + "http://".len()..];
    let end = rest
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A JSON client of one node.
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            c: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
            token: None,
        }
    }

    /// Sends `req` (with the token, if any): status and JSON body (`null` if none), or the
    /// transport's error (a node killed mid-request).
    pub async fn try_send(&self, req: reqwest::RequestBuilder) -> reqwest::Result<(u16, Value)> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req.send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// [`Api::try_send`] to a node that must answer.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        self.try_send(req).await.expect("the node answers")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.c.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.c.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.c.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// `GET path`, which must answer 200.
    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Logs in with a password and keeps the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> Api {
        self.login_with(username, "password", password).await
    }

    /// Logs in with `{"username", secret_field: secret}` (`"pin"` for staff).
    pub async fn login_with(&self, username: &str, secret_field: &str, secret: &str) -> Api {
        let (status, body) = self
            .post(
                "/api/v1/login",
                json!({"username": username, secret_field: secret}),
            )
            .await;
        assert_eq!(status, 200, "login as {username}: {body}");
        Api {
            token: Some(body["token"].as_str().expect("a token").to_string()),
            ..self.clone()
        }
    }

    pub async fn wait_healthy(&self, p: &Proc) {
        let url = format!("{}/health", self.base);
        wait_for("GET /health answers 200", START_TIMEOUT, || async {
            match self.c.get(&url).send().await {
                Ok(r) if r.status().as_u16() == 200 => Some(()),
                _ => None,
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", p.log_tail()));
    }

    /// `on_hand` of a product in `GET /stock`.
    pub async fn on_hand(&self, product_id: &str) -> i64 {
        let (status, stock) = self.get("/api/v1/stock").await;
        assert_eq!(status, 200, "GET /stock: {stock}");
        stock
            .as_array()
            .expect("a stock list")
            .iter()
            .find(|s| s["product_id"] == product_id)
            .unwrap_or_else(|| panic!("no stock line for {product_id}: {stock}"))["on_hand"]
            .as_i64()
            .expect("on_hand")
    }

    pub async fn create_product(&self, sku: &str, price: i64) -> String {
        let (status, p) = self
            .post(
                "/api/v1/products",
                json!({"sku": sku, "name": format!("Product {sku}"), "price": price, "tax_rate": 2000}),
            )
            .await;
        assert_eq!(status, 201, "POST /products: {p}");
        p["id"].as_str().expect("a product id").to_string()
    }

    pub async fn stock_in(&self, product_id: &str, qty: i64) {
        let (status, m) = self
            .post(
                "/api/v1/stock/in",
                json!({"product_id": product_id, "qty": qty, "unit_cost": 100}),
            )
            .await;
        assert_eq!(status, 201, "POST /stock/in: {m}");
    }

    pub async fn sell(&self, product_id: &str, qty: i64) -> Value {
        let (status, s) = self.post("/api/v1/sales", sale(product_id, qty)).await;
        assert_eq!(status, 201, "POST /sales: {s}");
        s
    }

    /// A till invite's full string.
    pub async fn invite(&self, role: &str, name: &str) -> String {
        let (status, inv) = self
            .post("/api/v1/invites", json!({"role": role, "name": name}))
            .await;
        assert_eq!(status, 201, "POST /invites: {inv}");
        inv["invite"].as_str().expect("an invite").to_string()
    }
}

pub fn sale(product_id: &str, qty: i64) -> Value {
    json!({"lines": [{"product_id": product_id, "qty": qty}], "payments": [{"method": "card"}]})
}

/// Polls `f` every 20 ms until it gives a value or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `tillmesh` inside the named network namespace `ns` (`ip netns exec`, which execs, so the
/// child's pid is tillmesh's), with the same clean environment as [`tillmesh`].
pub fn tillmesh_in(ns: &str, home: &Path) -> Command {
    let mut cmd = Command::new("ip");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TILLMESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["netns", "exec", ns, BIN])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .stdin(Stdio::null());
    cmd
}

/// Spawns `cmd` (stdout piped, stderr to `log`) and waits for the first stdout line `find`
/// picks something out of.
pub fn spawn_until<T: Send + 'static>(
    mut cmd: Command,
    log: &Path,
    find: fn(&str) -> Option<T>,
) -> (Proc, T) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the command starts");
    let mut p = Proc {
        child,
        log: log.to_path_buf(),
    };
    let stdout = p.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(found) = find(&line) {
                let _ = tx.send(found);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(found) => (p, found),
        Err(e) => {
            let status = p.child.try_wait().ok().flatten();
            panic!(
                "the process printed nothing expected ({e:?}; {status:?}):\n{}",
                p.log_tail()
            )
        }
    }
}

/// `tillmesh run` in network namespace `ns`, HTTP on `http_ip`: the process and its address.
pub fn run_in(
    ns: &str,
    data: &Path,
    log: &Path,
    http_ip: &str,
    flags: &[&str],
) -> (Proc, SocketAddr) {
    let home = data.parent().expect("the data dir is in the test's dir");
    let mut cmd = tillmesh_in(ns, home);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(data)
        .args(["--http", &format!("{http_ip}:0")])
        .args(flags);
    let (p, addr) = spawn_until(cmd, log, |l| http_addr_in(l).map(|a| a.to_string()));
    (p, addr.parse().unwrap())
}
