//! The `zg` binary end to end: real process, real anvil devnet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a test failure"
)]

/// Adapter deployment: broker → provider, chat as the owner.
mod adapters;
/// `zg attest verify`: GPU evidence, allow-list.
mod attest;
mod decrypt_model;
mod fine_tuning;
/// `fine-tuning generate` on a decrypted LoRA adapter.
mod generate;
mod inference;
mod ledger;
mod official_cli;
mod owner;
mod web;

use std::process::Output;

/// Runs `zg` with `args` and extra environment; clears the ZG_* variables a developer's shell may set.
pub(crate) fn zg(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zg"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ZG_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("zg runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
