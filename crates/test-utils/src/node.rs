//! Running the pinned JavaScript tools from the repository's `node_modules/` (installed by `just setup` from
//! `package-lock.json`): the official 0G CLI/SDK 0.9.0 (`@0gfoundation/0g-compute-ts-sdk`), `eciesjs` and
//! `ethers`, against which the compatibility tests run.
//!
//! A missing `node` or package **fails** the test with the fix (`just setup`); it never skips, because a
//! compatibility claim that was not checked is not a compatibility claim.
//!
//! [`OfficialCli`] is the harness for the official `0g-compute-cli`: it writes the CLI's config
//! (`$HOME/.0g-compute-cli/config.json`, with `HOME` pointed at a directory the test owns), runs one verb
//! with a timeout, and returns stdout, stderr and the exit code. The inference compatibility test
//! (`bins/cli/tests/it/official_cli.rs`) uses it; the fine-tuning verbs reuse it the same way.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The official SDK/CLI package name and the version the compatibility tests pin.
pub const SDK_PACKAGE: &str = "@0gfoundation/0g-compute-ts-sdk";
/// The pinned SDK version (`package.json`).
pub const SDK_VERSION: &str = "0.9.0";

/// The repository's `node_modules/` (it may not exist yet; [`package_dir`] checks).
pub fn node_modules() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../node_modules"))
}

/// The `node` binary: `$ZG_NODE`, else `node` on `PATH`. Panics (fails the test) when it does not run.
#[allow(
    clippy::panic,
    reason = "test helper: a missing tool fails the test loudly, never skips"
)]
pub fn node() -> PathBuf {
    let bin = std::env::var_os("ZG_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => bin,
        Ok(o) => panic!(
            "`{} --version` failed ({}): install Node.js 20+ (the compatibility tests run the official 0G SDK)",
            bin.display(),
            o.status
        ),
        Err(e) => panic!(
            "cannot run `{}` ({e}): install Node.js 20+ (apt-get install nodejs npm) or set ZG_NODE; the \
             compatibility tests run the official 0G SDK and do not skip",
            bin.display()
        ),
    }
}

/// `node_modules/<name>`, after checking that the installed `package.json` has `version` (when given).
/// Panics (fails the test) with the fix when the package is missing or another version.
#[allow(
    clippy::panic,
    reason = "test helper: a missing package fails the test loudly, never skips"
)]
pub fn package_dir(name: &str, version: Option<&str>) -> PathBuf {
    let dir = node_modules().join(name);
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!(
            "npm package {name} is not installed ({}: {e}): run `just setup` (npm ci) in the repository root",
            manifest.display()
        )
    });
    if let Some(want) = version {
        // `"version": "x.y.z"` without a JSON parser (this crate has no dependencies).
        let found = text
            .split("\"version\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("?");
        if found != want {
            panic!("npm package {name} is {found}, the tests pin {want}: run `just setup` (npm ci)");
        }
    }
    dir
}

/// What a child process did: its output as text and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code (`None` when killed by a signal, including our timeout).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// True when the timeout expired and the process was killed.
    pub timed_out: bool,
}

impl Run {
    /// Exit code 0 and no timeout.
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Panics with both streams unless the run succeeded; returns stdout.
    #[allow(clippy::panic, reason = "test helper")]
    pub fn expect_ok(&self, what: &str) -> &str {
        if !self.ok() {
            panic!(
                "{what}: exit {:?}{}\n--- stdout\n{}\n--- stderr\n{}",
                self.code,
                if self.timed_out {
                    " (timed out, killed)"
                } else {
                    ""
                },
                self.stdout,
                self.stderr
            );
        }
        &self.stdout
    }

    /// Stdout and stderr together (the official CLI prints errors to either).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion or until `timeout`, capturing both streams (read on their own threads, so a
/// chatty child never blocks on a full pipe). stdin is closed: an interactive prompt ends at once instead
/// of hanging.
#[allow(
    clippy::panic,
    reason = "test helper: a process that cannot start fails the test"
)]
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let err = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    Run {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    }
}

/// Runs the JavaScript file `script` with `node`, with `node_modules/` on its module path, so
/// `require('eciesjs')` and `require('@0gfoundation/0g-compute-ts-sdk')` resolve to the pinned packages.
pub fn run_js(script: &Path, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(node());
    cmd.arg(script)
        .args(args)
        .env("NODE_PATH", node_modules())
        .env("NO_UPDATE_NOTIFIER", "1")
        .current_dir(node_modules().join(".."));
    run_with_timeout(cmd, timeout)
}

/// The JSON document a script printed on its line starting with `RESULT ` (the SDK logs to stdout too, so
/// scripts mark their result). Panics with the whole output when there is none.
#[allow(clippy::panic, reason = "test helper")]
pub fn result_line(run: &Run) -> &str {
    run.stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no RESULT line (exit {:?})\n--- stdout\n{}\n--- stderr\n{}",
                run.code, run.stdout, run.stderr
            )
        })
}

/// `s` without ANSI escape sequences (CSI `ESC [ … final byte`): the CLI's tables are colored by
/// cli-table3 even when stdout is not a terminal.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in 0x40..=0x7e.
            for f in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&f) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The official `0g-compute-cli` (SDK 0.9.0) run as a customer would, isolated from the developer's machine.
///
/// `HOME` is a directory the test owns, holding `.0g-compute-cli/config.json` with the private key and RPC
/// endpoint (the CLI reads its key only from there); `ZG_RPC_ENDPOINT` is set too. The npm update check the
/// CLI does on every start is disabled and pointed at a closed port, so runs never reach the network.
#[derive(Debug, Clone)]
pub struct OfficialCli {
    home: PathBuf,
    rpc: String,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl OfficialCli {
    /// Checks `node` and the pinned package, and writes the CLI config under `home` for `private_key`
    /// (hex, with or without `0x`) and `rpc`.
    #[allow(clippy::panic, reason = "test helper")]
    pub fn new(home: &Path, rpc: &str, private_key: &str) -> Self {
        node();
        package_dir(SDK_PACKAGE, Some(SDK_VERSION));
        let key = format!("0x{}", private_key.trim_start_matches("0x"));
        let dir = home.join(".0g-compute-cli");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // The shape the CLI's own `saveConfig` writes (cli.commonjs/cli/config.js).
        let config = format!(
            "{{\n  \"privateKey\": \"{key}\",\n  \"rpcEndpoint\": \"{rpc}\",\n  \"network\": \"custom\"\n}}\n"
        );
        let path = dir.join("config.json");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        Self {
            home: home.to_owned(),
            rpc: rpc.to_owned(),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds an environment variable to every run (e.g. `LEDGER_CA`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Per-run timeout (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `HOME` the CLI runs with.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The CLI's entry point inside `node_modules` (`bin.0g-compute-cli` of the package).
    pub fn entry_point() -> PathBuf {
        node_modules().join(SDK_PACKAGE).join("cli.commonjs/cli/index.js")
    }

    /// The command that runs `0g-compute-cli args…`, for callers that need to adjust it further.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(node());
        cmd.arg(Self::entry_point())
            .args(args)
            .current_dir(&self.home)
            .env("HOME", &self.home)
            .env("ZG_RPC_ENDPOINT", &self.rpc)
            // cli.js races an npm "latest version" lookup against a 2 s timer on every start: make it fail
            // at once, offline.
            .env("NO_UPDATE_NOTIFIER", "1")
            .env("npm_config_registry", "http://127.0.0.1:9/")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env_remove("RPC_ENDPOINT")
            .env_remove("LEDGER_CA")
            .env_remove("INFERENCE_CA")
            .env_remove("FINE_TUNING_CA")
            .env_remove("ZG_DEV_MODE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs `0g-compute-cli args…` with the configured timeout; the output comes back without color codes.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut r = run_with_timeout(self.command(args), self.timeout);
        r.stdout = strip_ansi(&r.stdout);
        r.stderr = strip_ansi(&r.stderr);
        r
    }

    /// Starts a long-running verb (e.g. `inference serve`) in the background; it is killed when the returned
    /// handle is dropped.
    #[allow(
        clippy::panic,
        reason = "test helper: a process that cannot start fails the test"
    )]
    pub fn spawn(&self, args: &[&str]) -> Background {
        let mut cmd = self.command(args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
            let output = std::sync::Arc::clone(&output);
            std::thread::spawn(move || {
                let Some(mut r) = r else { return };
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
                        break;
                    };
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&strip_ansi(&String::from_utf8_lossy(bytes)));
                    }
                }
            });
        };
        pipe(child.stdout.take().map(|s| Box::new(s) as _));
        pipe(child.stderr.take().map(|s| Box::new(s) as _));
        Background { child, output }
    }

    /// Runs a verb and panics with its output unless it exits 0; returns stdout and stderr together.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        r.expect_ok(&format!("0g-compute-cli {}", args.join(" ")));
        r.all()
    }
}

/// A background official CLI process ([`OfficialCli::spawn`]); killed on drop.
#[derive(Debug)]
pub struct Background {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Background {
    /// Everything it printed so far (stdout and stderr interleaved, without color codes).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until its output contains `needle`; panics with the output when it exits first or `timeout`
    /// passes.
    #[allow(clippy::panic, reason = "test helper")]
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                panic!("exited ({status}) before printing {needle:?}:\n{}", self.output());
            }
            if Instant::now() >= deadline {
                panic!("no {needle:?} within {timeout:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_color_codes_only() {
        let colored = "\u{1b}[90m│\u{1b}[39m Total \u{1b}[1;34m12.5\u{1b}[0m ✅";
        assert_eq!(strip_ansi(colored), "│ Total 12.5 ✅");
        assert_eq!(strip_ansi("plain [x]"), "plain [x]");
    }

    #[test]
    fn a_hung_process_is_killed_at_the_timeout() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let t = Instant::now();
        let r = run_with_timeout(cmd, Duration::from_millis(200));
        assert!(r.timed_out && !r.ok());
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
