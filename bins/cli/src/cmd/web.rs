//! `zg web`: the local dashboard (zg-web) for this customer key. The keystore is unlocked once here; the page
//! never sees the key. Prints the URL to open (it carries the session token) and serves until Ctrl-C.

use super::{GlobalOpts, inference::ClientOpts};
use crate::output;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

/// `zg web`
#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// Port on 127.0.0.1 (0 picks a free one). The dashboard never listens beyond loopback.
    #[arg(long, env = "ZG_WEB_PORT", default_value_t = 4000)]
    port: u16,
    /// A provider's metrics endpoint for the Provider view, e.g. http://127.0.0.1:8080/metrics.
    #[arg(long, env = "ZG_PROVIDER_METRICS", value_name = "URL")]
    provider_metrics: Option<String>,
    /// The fine-tuning broker's base URL for the Fine-tuning page.
    #[arg(long, env = "ZG_BROKER_URL", value_name = "URL")]
    broker: Option<String>,
    /// Seconds between samples of the metrics endpoint.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    metrics_every: u64,
    #[command(flatten)]
    client: ClientOpts,
}

impl WebArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.client.client().await?;
        let customer = client.address();
        let cfg = zg_web::WebConfig {
            port: self.port,
            provider_metrics: self.provider_metrics,
            broker_url: self.broker,
            metrics_every: Duration::from_secs(self.metrics_every.max(1)),
            ..zg_web::WebConfig::default()
        };
        let web = zg_web::Dashboard::bind(client, cfg).await?;
        if g.json {
            output::json(&serde_json::json!({"url": web.url(), "customer": customer}))?;
        } else {
            output::text(format!(
                "zg web: open {}\n(the link carries this session's token; signing as {customer}; Ctrl-C stops)",
                web.url()
            ))?;
        }
        web.serve(shutdown_signal()).await?;
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
