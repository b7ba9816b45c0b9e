//! `zg serve`: a local OpenAI-compatible endpoint for one provider. It signs, pays for, verifies and
//! forwards every request, so the official `openai` Python and JS clients work unchanged; receipts come
//! back in `ZG-Receipt` / `ZG-Fee` / `ZG-Res-Key` headers (streams: `GET /zg/v1/receipts/{res_key}`).

use super::{GlobalOpts, inference::ClientOpts};
use crate::output;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use zg_chain::Address;

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
    #[command(flatten)]
    client: ClientOpts,
}

impl ServeArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
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
        if g.json {
            output::json(&serde_json::json!({
                "url": base, "provider": self.provider, "model": v.service.model, "customer": client.address(),
                "simulated": v.simulated, "tee_signer": v.signer,
            }))?;
        } else {
            output::text(format!(
                "zg serve: OpenAI-compatible endpoint {base} → provider {} (model {}, TEE signer {} verified{})\n\
                 try: OPENAI_BASE_URL={base} OPENAI_API_KEY=unused python -c 'import openai; print(openai.OpenAI().chat.completions.create(model=\"{}\", messages=[{{\"role\":\"user\",\"content\":\"hi\"}}]).choices[0].message.content)'",
                self.provider,
                v.service.model,
                v.signer,
                if v.simulated { ", SIMULATED" } else { "" },
                v.service.model
            ))?;
        }
        if !self.host.is_loopback() {
            tracing::warn!(%local, "zg serve listens beyond loopback: anyone who reaches it spends your funds");
        }
        let app = zg_client::gateway_router(client, self.provider);
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
