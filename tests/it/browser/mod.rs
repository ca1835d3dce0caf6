//! A small Chrome DevTools Protocol client for the browser tests: starts the system Chromium
//! headless (never a downloaded browser), opens pages in separate browser contexts (separate
//! cookie jars, so two nodes on 127.0.0.1 keep separate sessions), and drives them the way a
//! person does — typing with `Input.insertText`, pressing Enter with real key events, clicking —
//! then waits on DOM conditions with a timeout and saves screenshots.
//!
//! Chromium is found at `$TILLMESH_CHROMIUM`, else `chromium` / `chromium-browser` /
//! `google-chrome` on the `PATH`. Without one the tests fail and say how to install it.
//!
//! The browser tests are this module's children (`browser::ui::…`, `browser::ui_audit::…`), so
//! they sort before most tests of the binary and libtest starts them early: they take turns on
//! one Chromium ([`one_at_a_time`]), and that chain is the longest thing in `cargo test`.
#![allow(dead_code)]

mod ui;
mod ui_audit;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a condition may take before a test fails (generous: CI has 2 cores).
pub const WAIT: Duration = Duration::from_secs(30);

/// One browser test at a time: several Chromiums at once on a 2-core machine make every one
/// of them slow. Hold the guard for the whole test.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A running headless Chromium and the DevTools connection to it.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    tx: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    /// Console messages and uncaught exceptions of every page, by session id.
    logs: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

/// The Chromium binary to run.
fn chromium_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TILLMESH_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser tests need Chromium, and none was found (looked for $TILLMESH_CHROMIUM, then \
         chromium, chromium-browser and google-chrome on the PATH). Install it: \
         `apt-get install -y chromium` (.ci/run does this)."
    );
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and connects to it.
    pub async fn launch() -> Browser {
        Browser::launch_with(&[]).await
    }

    /// [`Browser::launch`] that also accepts self-signed TLS certificates (a relay's).
    pub async fn launch_accepting_self_signed() -> Browser {
        Browser::launch_with(&["--ignore-certificate-errors"]).await
    }

    /// Starts Chromium headless with a fresh profile and `extra` flags, and connects to it.
    pub async fn launch_with(extra: &[&str]) -> Browser {
        let exe = chromium_path();
        let profile = tempfile::tempdir().expect("a temp dir for the Chromium profile");
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--lang=en-US",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {} ({e}); install Chromium: `apt-get install -y chromium`",
                    exe.display()
                )
            });
        // Chromium writes the port and the browser target's path once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "Chromium ({}) did not open its DevTools port within 30 s",
                exe.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("connect to Chromium's DevTools socket");
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let logs: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let (p, l) = (pending.clone(), logs.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let reply = match v.get("error") {
                        Some(e) => Err(e.to_string()),
                        None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(reply);
                    }
                } else if let Some(line) = log_line(&v) {
                    let session = v["sessionId"].as_str().unwrap_or_default().to_owned();
                    l.lock().unwrap().entry(session).or_default().push(line);
                }
            }
        });
        Browser {
            child,
            _profile: profile,
            tx,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            logs,
        }
    }

    async fn send(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.tx
            .send(msg.to_string())
            .map_err(|_| "the DevTools connection is closed".to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err("the DevTools connection closed".into()),
            Err(_) => Err(format!("{method} got no answer within 30 s")),
        }
    }

    /// A new tab in a browser context of its own (own cookies and storage).
    pub async fn new_page(&self, width: u32, height: u32) -> Page<'_> {
        let ctx = self
            .send(None, "Target.createBrowserContext", json!({}))
            .await
            .expect("create a browser context");
        let target = self
            .send(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": ctx["browserContextId"]}),
            )
            .await
            .expect("create a tab");
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await
            .expect("attach to the tab");
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let page = Page {
            browser: self,
            session,
        };
        for method in ["Page.enable", "Runtime.enable"] {
            page.cmd(method, json!({})).await;
        }
        page.viewport(width, height).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A console message or uncaught exception as one line, if `v` is one.
fn log_line(v: &Value) -> Option<String> {
    match v["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = v["params"]["args"]
                .as_array()?
                .iter()
                .map(|a| {
                    a.get("value")
                        .map(|x| x.to_string())
                        .or_else(|| a.get("description").map(|x| x.to_string()))
                        .unwrap_or_default()
                })
                .collect();
            Some(format!(
                "console.{}: {}",
                v["params"]["type"].as_str()?,
                args.join(" ")
            ))
        }
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            v["params"]["exceptionDetails"]["exception"]["description"]
                .as_str()
                .or(v["params"]["exceptionDetails"]["text"].as_str())
                .unwrap_or("?")
        )),
        _ => None,
    }
}

/// Where screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target dir")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/ui-screenshots");
    dir
}

/// One tab.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    async fn cmd(&self, method: &str, params: Value) -> Value {
        match self.browser.send(Some(&self.session), method, params).await {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{method} failed: {e}")).await,
        }
    }

    /// Fails the test with `what`, the page's console output and a screenshot.
    pub async fn fail(&self, what: &str) -> ! {
        let shot = self.try_screenshot("FAILED").await;
        let logs = self
            .browser
            .logs
            .lock()
            .unwrap()
            .get(&self.session)
            .cloned()
            .unwrap_or_default();
        let url = self.try_eval("location.href").await.unwrap_or_default();
        panic!(
            "{what}\n  page: {url}\n  screenshot: {}\n  console:\n    {}",
            shot.map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into()),
            logs.join("\n    ")
        );
    }

    /// Fails if the page threw an uncaught exception or logged an error.
    pub async fn assert_no_errors(&self) {
        let logs = self
            .browser
            .logs
            .lock()
            .unwrap()
            .get(&self.session)
            .cloned()
            .unwrap_or_default();
        let errors: Vec<&String> = logs
            .iter()
            .filter(|l| l.starts_with("exception") || l.starts_with("console.error"))
            .collect();
        if !errors.is_empty() {
            self.fail(&format!("the page logged errors: {errors:?}"))
                .await;
        }
    }

    /// Renders the page as for printing (`@media print`) or back to the screen.
    pub async fn print_media(&self, on: bool) {
        self.cmd(
            "Emulation.setEmulatedMedia",
            json!({"media": if on { "print" } else { "" }}),
        )
        .await;
    }

    pub async fn viewport(&self, width: u32, height: u32) {
        self.cmd(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700}),
        )
        .await;
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn goto(&self, url: &str) {
        self.cmd("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "document.readyState === 'complete'",
            &format!("{url} loads"),
        )
        .await;
    }

    async fn try_eval(&self, js: &str) -> Result<Value, String> {
        let res = self
            .browser
            .send(
                Some(&self.session),
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = res.get("exceptionDetails") {
            return Err(ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("exception")
                .to_owned());
        }
        Ok(res["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates `js` in the page; its value as JSON.
    pub async fn eval(&self, js: &str) -> Value {
        match self.try_eval(js).await {
            Ok(v) => v,
            Err(e) => self.fail(&format!("evaluating `{js}` threw: {e}")).await,
        }
    }

    /// Waits until `js` is truthy.
    pub async fn wait_for(&self, js: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(v) = self.try_eval(js).await
                && truthy(&v)
            {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "timed out after {WAIT:?} waiting for: {what} (`{js}`)"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element matching `selector` is shown.
    pub async fn wait_visible(&self, selector: &str) {
        self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({}); return !!e && e.getClientRects().length > 0; }})()",
                js_str(selector)
            ),
            &format!("{selector} is shown"),
        )
        .await;
    }

    /// Waits until the text of `selector` equals `text` (trimmed).
    pub async fn wait_text(&self, selector: &str, text: &str) {
        self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({}); return !!e && e.textContent.trim() === {}; }})()",
                js_str(selector),
                js_str(text)
            ),
            &format!("{selector} reads {text:?}"),
        )
        .await;
    }

    /// The trimmed text of `selector`.
    pub async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.textContent.trim() : null; }})()",
            js_str(selector)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub async fn exists(&self, selector: &str) -> bool {
        truthy(
            &self
                .eval(&format!("!!document.querySelector({})", js_str(selector)))
                .await,
        )
    }

    /// Clicks the element matching `selector` once it is shown and enabled.
    pub async fn click(&self, selector: &str) {
        self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({}); return !!e && e.getClientRects().length > 0 && !e.disabled; }})()",
                js_str(selector)
            ),
            &format!("{selector} can be clicked"),
        )
        .await;
        self.eval(&format!(
            "document.querySelector({}).click()",
            js_str(selector)
        ))
        .await;
    }

    /// Focuses `selector`, clears it and types `text` as keyboard input.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.wait_visible(selector).await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.focus(); if ('value' in e) {{ e.value = ''; }} }})()",
            js_str(selector)
        ))
        .await;
        self.type_text(text).await;
    }

    /// Types `text` into whatever has the focus.
    pub async fn type_text(&self, text: &str) {
        self.cmd("Input.insertText", json!({"text": text})).await;
    }

    /// Presses and releases a key (`Enter`, `Backspace`, or a digit).
    pub async fn press(&self, key: &str) {
        let (code, vk, text) = match key {
            "Enter" => ("Enter".to_string(), 13, Some("\r".to_string())),
            "Backspace" => ("Backspace".to_string(), 8, None),
            "Escape" => ("Escape".to_string(), 27, None),
            d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => (
                format!("Digit{d}"),
                u32::from(d.as_bytes()[0]),
                Some(d.to_string()),
            ),
            other => panic!("press: unsupported key {other}"),
        };
        let mut down =
            json!({"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk});
        if let Some(t) = &text {
            down["text"] = json!(t);
        }
        self.cmd("Input.dispatchKeyEvent", down).await;
        self.cmd(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk}),
        )
        .await;
    }

    async fn try_screenshot(&self, name: &str) -> Option<PathBuf> {
        let shot = self
            .browser
            .send(
                Some(&self.session),
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": false}),
            )
            .await
            .ok()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str()?)
            .ok()?;
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, bytes).ok()?;
        Some(path)
    }

    /// Saves a screenshot of the viewport as `target/ui-screenshots/<name>.png`, after fonts
    /// have loaded and animations have had time to settle.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.wait_for("document.fonts.status === 'loaded'", "fonts load")
            .await;
        // Let transitions and the flash highlight finish (a frame-timed settle, not a wait
        // for a condition: nothing to poll for).
        self.eval("new Promise(r => setTimeout(r, 400))").await;
        match self.try_screenshot(name).await {
            Some(p) => p,
            None => {
                self.fail(&format!("could not save screenshot {name}"))
                    .await
            }
        }
    }
}

/// A Rust string as a JavaScript string literal.
pub fn js_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}
