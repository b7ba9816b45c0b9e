//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through chromedriver.
//!
//! Why not fantoccini/thirtyfour: both bring a second HTTP stack and the `webdriver` crate (with ICU text
//! segmentation) to do what these ~200 lines do over the reqwest the workspace already builds.
//! Chromium and chromedriver come from `scripts/setup.sh --test` (`apt-get install chromium chromium-driver`); a
//! missing browser fails the test with that fix, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C element key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        p.is_file(),
        "{} is missing: install Debian's chromium and chromium-driver (`just setup-test`, or `apt-get install \
         chromium chromium-driver`), or point {env} at it",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One headless Chromium session. Dropping it ends the session's process group (chromedriver and its browser).
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// An element handle.
#[derive(Debug, Clone)]
pub(crate) struct El(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and a new headless Chromium session with an empty profile.
    pub(crate) async fn start() -> Browser {
        Self::start_with(&[]).await
    }

    /// Like [`Browser::start`] with extra Chromium flags (e.g. `--host-resolver-rules=...`).
    pub(crate) async fn start_with(extra: &[&str]) -> Browser {
        use std::os::unix::process::CommandExt as _;
        let chromium = tool("ZG_CHROMIUM", "/usr/bin/chromium");
        let driver_bin = tool("ZG_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let log = std::env::temp_dir().join(format!("zg-web-chromedriver-{port}.log"));
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so Drop can end chromedriver and the browser it started, and nothing else.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            http,
            base,
            driver,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = b.http.get(format!("{}/status", b.base)).send().await
                && let Ok(t) = r.text().await
                && let Ok(v) = serde_json::from_str::<Value>(&t)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-breakpad".to_owned(),
            "--disable-crash-reporter".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let r: Value = b
            .http
            .post(format!("{}/session", b.base))
            .header("content-type", "application/json")
            .body(caps.to_string())
            .send()
            .await
            .expect("new session")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
            .expect("session JSON");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start: {r}"))
            .to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let text = r.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!("{}: {}", v["value"]["error"], v["value"]["message"]))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("webdriver POST {path}: {e}"))
    }

    /// Navigates and waits for the load.
    pub(crate) async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub(crate) async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The first element matching `css`, waiting up to `timeout` for it to exist.
    pub(crate) async fn find(&self, css: &str, timeout: Duration) -> El {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await
            {
                Ok(v) => return El(v[ELEMENT_KEY].as_str().unwrap_or_default().to_owned()),
                Err(e) if Instant::now() >= deadline => {
                    let page = self.body_text().await;
                    panic!("no element {css:?} after {timeout:?} ({e}); the page says:\n{page}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Whether an element matching `css` exists now.
    pub(crate) async fn exists(&self, css: &str) -> bool {
        self.exec(
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(css)],
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// Waits until the text of `css` contains `needle`; returns that text.
    pub(crate) async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self
                .exec(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
                    vec![json!(css)],
                )
                .await;
            if let Some(t) = t.as_str()
                && t.contains(needle)
            {
                return t.to_owned();
            }
            if Instant::now() >= deadline {
                let page = self.body_text().await;
                panic!(
                    "{css:?} never contained {needle:?} within {timeout:?} (now {t}); the page says:\n{page}"
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// The page's visible text.
    pub(crate) async fn body_text(&self) -> String {
        self.exec("return document.body ? document.body.innerText : ''", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks an element.
    pub(crate) async fn click(&self, el: &El) {
        self.post(&format!("/element/{}/click", el.0), json!({})).await;
    }

    /// Replaces an input's value by typing `text`.
    pub(crate) async fn type_into(&self, el: &El, text: &str) {
        self.post(&format!("/element/{}/clear", el.0), json!({})).await;
        self.post(&format!("/element/{}/value", el.0), json!({"text": text}))
            .await;
    }

    /// Presses a chord on the focused element: every key down in order, then up in reverse (WebDriver key codes,
    /// e.g. `"\u{E004}"` = Tab, `"\u{E009}\u{E007}"` = Ctrl+Enter).
    pub(crate) async fn keys(&self, chord: &str) {
        let down = chord
            .chars()
            .map(|c| json!({"type": "keyDown", "value": c.to_string()}));
        let up = chord
            .chars()
            .rev()
            .map(|c| json!({"type": "keyUp", "value": c.to_string()}));
        let actions: Vec<Value> = down.chain(up).collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "kb", "actions": actions}]}),
        )
        .await;
        let _ = self.cmd(reqwest::Method::DELETE, "/actions", None).await;
    }

    /// Selects the `<option>` with `value` in a `<select>` and fires `change`.
    pub(crate) async fn select(&self, css: &str, value: &str) {
        let ok = self
            .exec(
                "const s = document.querySelector(arguments[0]); if (!s) return false; s.value = arguments[1]; \
                 s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];",
                vec![json!(css), json!(value)],
            )
            .await;
        assert_eq!(ok, json!(true), "select {css} = {value}");
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (the browser exits); Drop then ends chromedriver.
    pub(crate) async fn quit(self) {
        let _ = self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group we created in `start`: chromedriver and the Chromium it launched. Nothing else.
        let pgid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}
