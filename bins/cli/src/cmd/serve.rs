//! `zg serve`: a local OpenAI-compatible endpoint for one provider. It signs, pays for, verifies and
//! forwards every request, so the official `openai` Python and JS clients work unchanged; receipts come
//! back in `ZG-Receipt` / `ZG-Fee` / `ZG-Res-Key` headers (streams: `GET /zg/v1/receipts/{res_key}`).
//!
//! # Who can call it, and the API key default
//!
//! Every request the gateway accepts is paid from the customer's sub-account, so it runs behind
//! [`zg_client::LocalGuard`]: the `Host` must be the bound address (DNS rebinding), a browser's foreign
//! `Origin` is refused (a web page spending the customer's funds with a no-cors POST), POSTs must be
//! `application/json`, and a bearer API key is required.
//!
//! The key is **on by default**, generated at start and printed once on stdout (as OpenAI shows a new key
//! once). The argument: the Host/Origin/Content-Type rules stop browsers, but loopback is not a user
//! boundary. Every process of every user on the machine, containers sharing the host network and SSH
//! port forwards reach `127.0.0.1`, and without a key any of them spends the customer's money and reads
//! the answers. The cost of the default is one environment variable in the OpenAI client
//! (`OPENAI_API_KEY`), which those clients require anyway. A stable key comes from `ZG_SERVE_API_KEY` or
//! `--api-key-file` (preferred: `--api-key` puts it in `ps` output for every local user);
//! `--dangerous-no-api-key` turns the key off, and is refused unless the gateway listens on loopback.

use super::{GlobalOpts, inference::ClientOpts};
use crate::output;
use anyhow::Context as _;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use zg_chain::Address;
use zg_client::{ApiKey, LocalGuard};

/// `zg serve`
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The provider to serve (see `zg inference list-providers`).
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    provider: Address,
    /// Local port (0 picks a free one; the URL is printed).
    #[arg(long, env = "ZG_SERVE_PORT", default_value_t = 3001)]
    port: u16,
    /// Address to listen on. Anyone who can reach it spends your funds: keep it on loopback.
    #[arg(long, env = "ZG_SERVE_HOST", default_value = "127.0.0.1", value_name = "IP")]
    host: IpAddr,
    /// The API key clients must send (`Authorization: Bearer KEY`, i.e. OPENAI_API_KEY). Prefer the env
    /// variable or --api-key-file: a flag is visible to every local user in `ps`. Default: a fresh random
    /// key, printed once at start.
    #[arg(
        long,
        env = "ZG_SERVE_API_KEY",
        value_name = "KEY",
        hide_env_values = true,
        value_parser = parse_api_key,
        conflicts_with_all = ["api_key_file", "dangerous_no_api_key"]
    )]
    api_key: Option<ApiKey>,
    /// Read the API key from this file (first line).
    #[arg(
        long,
        env = "ZG_SERVE_API_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "dangerous_no_api_key"
    )]
    api_key_file: Option<PathBuf>,
    /// DANGEROUS: require no API key, so every local process of every user can spend your funds. Only
    /// allowed on a loopback --host; browsers are still held off by the Host/Origin/Content-Type rules.
    #[arg(long)]
    dangerous_no_api_key: bool,
    /// Also accept this `Host` (`name:port`), e.g. when clients reach a non-loopback --host by name.
    #[arg(long, value_name = "HOST:PORT")]
    allow_host: Vec<String>,
    #[command(flatten)]
    client: ClientOpts,
}

/// `--api-key` / `ZG_SERVE_API_KEY`, validated at parse time (and redacted in `Debug`).
fn parse_api_key(s: &str) -> Result<ApiKey, String> {
    ApiKey::new(s)
}

/// Where the API key came from: the user (not printed) or generated here (printed once).
enum KeySource {
    User(ApiKey),
    Generated(ApiKey),
    None,
}

impl ServeArgs {
    fn api_key(&self) -> anyhow::Result<KeySource> {
        if self.dangerous_no_api_key {
            if !self.host.is_loopback() {
                anyhow::bail!(
                    "--dangerous-no-api-key is refused with --host {} (not loopback): anyone on the network could spend your funds",
                    self.host
                );
            }
            return Ok(KeySource::None);
        }
        if let Some(k) = &self.api_key {
            return Ok(KeySource::User(k.clone()));
        }
        if let Some(p) = &self.api_key_file {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the API key file {} (--api-key-file)", p.display()))?;
            let first = text.lines().next().unwrap_or_default();
            return ApiKey::new(first)
                .map(KeySource::User)
                .map_err(|e| anyhow::anyhow!("{e} (in {}, --api-key-file)", p.display()));
        }
        Ok(KeySource::Generated(ApiKey::generate()))
    }

    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let key = self.api_key()?;
        let client = self.client.client().await?;
        // Fail fast: verify the provider before accepting any request.
        let v = client.verify_provider(self.provider).await?;
        if v.simulated {
            tracing::warn!(
                "serving a provider on a SIMULATED TEE ({}): development only",
                zg_attestation::SIMULATED_BANNER
            );
        }
        let addr = SocketAddr::new(self.host, self.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e} (pick another --port / ZG_SERVE_PORT)")
        })?;
        let local = listener.local_addr()?;
        let base = format!("http://{local}/v1");
        let mut guard = LocalGuard::new(local);
        for h in &self.allow_host {
            guard = guard.allow_host(h);
        }
        if self.host.is_unspecified() && self.allow_host.is_empty() {
            tracing::warn!(
                %local,
                "listening on {} but only Host {local} is accepted: name the host clients use with --allow-host HOST:PORT",
                self.host
            );
        }
        let (shown, from) = match key {
            KeySource::User(k) => {
                guard = guard.with_api_key(k);
                (None, "yours (ZG_SERVE_API_KEY / --api-key / --api-key-file)")
            }
            KeySource::Generated(k) => {
                let shown = k.expose().to_owned();
                guard = guard.with_api_key(k);
                (Some(shown), "generated for this run; shown once")
            }
            KeySource::None => (None, "none (--dangerous-no-api-key)"),
        };
        if g.json {
            output::json(&serde_json::json!({
                "url": base, "provider": self.provider, "model": v.service.model, "customer": client.address(),
                "simulated": v.simulated, "tee_signer": v.signer, "api_key": shown, "api_key_source": from,
            }))?;
        } else {
            let key_line = match &shown {
                Some(k) => format!("API key ({from}): {k}"),
                None => format!("API key: {from}"),
            };
            output::text(format!(
                "zg serve: OpenAI-compatible endpoint {base} → provider {} (model {}, TEE signer {} verified{})\n\
                 {key_line}\n\
                 try: OPENAI_BASE_URL={base} OPENAI_API_KEY=<the key> python -c 'import openai; print(openai.OpenAI().chat.completions.create(model=\"{}\", messages=[{{\"role\":\"user\",\"content\":\"hi\"}}]).choices[0].message.content)'",
                self.provider,
                v.service.model,
                v.signer,
                if v.simulated { ", SIMULATED" } else { "" },
                v.service.model
            ))?;
        }
        if !self.host.is_loopback() {
            tracing::warn!(%local, "zg serve listens beyond loopback: anyone who reaches it with the key spends your funds");
        }
        let app = zg_client::gateway_router(client, self.provider, guard);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
