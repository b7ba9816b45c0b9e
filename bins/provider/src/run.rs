//! Lifecycle: `zg-provider init` and `zg-provider run` — TEE backend, keys, chain registration,
//! ledger, servers, settlement loop, graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zg_billing::{Domains, Ledger, LedgerConfig, Prices, SettleReport, Settler, SettlerConfig};
use zg_chain::{Amount, Client, ServiceParams, SettlementAdapter};

use crate::config::{CONFIG_TEMPLATE, Settings};
use crate::core::{CoreConfig, Provider, now_ms};
use crate::error::{Error, Result};
use crate::grpc::{ServiceInfo, grpc_service};
use crate::llm::LlmUpstream;
use crate::metrics::Metrics;
use crate::tee::Tee;
use crate::upstream::Upstream;

/// Writes the commented config to `path` (refuses to overwrite unless `force`).
pub fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Config {
            field: "path",
            value: path.display().to_string(),
            fix: "the file exists; pass --force to overwrite it".into(),
        });
    }
    std::fs::write(path, CONFIG_TEMPLATE).map_err(|source| Error::Io {
        op: "write",
        path: path.to_owned(),
        source,
    })
}

/// A running provider.
#[derive(Debug)]
pub struct Running {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The core.
    pub provider: Provider,
    /// The settler.
    pub settler: Arc<Settler<SettlementAdapter>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn chain_err(op: &'static str) -> impl FnOnce(zg_chain::Error) -> Error {
    move |e| Error::Chain {
        op,
        source: Box::new(e),
    }
}

fn corpus(dir: Option<&PathBuf>) -> Result<String> {
    let Some(dir) = dir else {
        return Ok(crate::demo::SHIPPED_CORPUS.to_owned());
    };
    let mut out = String::new();
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        op: "read corpus dir",
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "txt"))
        .collect();
    files.sort();
    for f in files {
        out.push_str(&std::fs::read_to_string(&f).map_err(|source| Error::Io {
            op: "read",
            path: f.clone(),
            source,
        })?);
        out.push_str("\n\n");
    }
    Ok(out)
}

/// Starts everything and returns once both servers listen.
pub async fn start(s: Settings) -> Result<Running> {
    std::fs::create_dir_all(&s.data_dir).map_err(|source| Error::Io {
        op: "create",
        path: s.data_dir.clone(),
        source,
    })?;
    let app_compose = match &s.app_compose {
        Some(p) => std::fs::read_to_string(p).map_err(|source| Error::Io { op: "read app compose", path: p.clone(), source })?,
        None => serde_json::json!({
            "upstream": if s.upstream == "builtin" { "builtin" } else { "http" },
            "model": s.model, "input_price": s.input_price.to_string(), "output_price": s.output_price.to_string(),
        })
        .to_string(),
    };
    // The upstream first: a missing model file fails before anything is registered on chain.
    let upstream = if s.upstream == "builtin" && s.model.eq_ignore_ascii_case(crate::llm::SMOLLM2_MODEL_ID) {
        let (path, id, streams, wait) = (
            s.model_path.clone(),
            s.model.clone(),
            s.max_streams,
            s.upstream_timeout,
        );
        // Loading reads and repacks ~100 MB: a blocking thread, not the executor.
        let llm = tokio::task::spawn_blocking(move || LlmUpstream::load(&path, &id, streams, wait))
            .await
            .map_err(|e| Error::Config {
                field: "upstream.model_path",
                value: s.model_path.display().to_string(),
                fix: format!("loading the model failed: {e}"),
            })??;
        tracing::info!(model = %s.model, path = %s.model_path.display(), streams = llm.max_streams(),
            "built-in SmolLM2 loaded");
        Upstream::Llm(llm)
    } else if s.upstream == "builtin" {
        Upstream::builtin(&corpus(s.corpus_dir.as_ref())?)
    } else {
        Upstream::http(&s.upstream, s.upstream_api_key.clone(), s.upstream_timeout)?
    };
    let tee = Arc::new(Tee::start_with_gpu(
        s.tee,
        s.gpu,
        &s.data_dir,
        s.dstack_socket.clone(),
        app_compose,
    )?);
    if tee.has_nvml_gpu() {
        // Staple NVIDIA's RIMs for these GPUs to the evidence, so clients verify them offline.
        let t = tee.clone();
        tokio::spawn(async move {
            match t.staple_rims(None).await {
                Ok(ids) => tracing::info!(?ids, "stapled NVIDIA RIMs to the GPU evidence"),
                Err(e) => {
                    tracing::warn!("could not fetch NVIDIA RIMs ({e}); clients need their own RIM source")
                }
            }
        });
    }
    let key = s.provider_key.as_deref().ok_or_else(|| Error::Config {
        field: "chain.key",
        value: String::new(),
        fix: "give the provider wallet key: env ZG_PROVIDER_KEY, --provider-key-file (chain.key_file) or \
              --provider-keystore (chain.keystore) with ZG_PROVIDER_KEYSTORE_PASSWORD"
            .into(),
    })?;
    let wallet = zg_chain::signer_from_hex(key).map_err(|e| Error::Config {
        field: "chain.key",
        value: "<hidden>".into(),
        fix: format!("not a hex private key ({e})"),
    })?;
    let provider = wallet.address();
    let client = Client::connect(&s.rpc_url, s.contracts, Some(wallet))
        .await
        .map_err(chain_err("connect"))?;
    let adapter = SettlementAdapter::new(client.clone(), provider);
    let stake: Amount = s.stake.parse().map_err(|e| Error::Config {
        field: "service.stake",
        value: s.stake.clone(),
        fix: format!("give an amount of 0G such as `1` or `0.5` ({e})"),
    })?;
    let params = ServiceParams {
        service_type: s.service_type.clone(),
        url: s.public_url.clone(),
        model: s.model.clone(),
        verifiability: "TeeML".into(),
        input_price: s.input_price,
        output_price: s.output_price,
        additional_info: s.additional_info.clone(),
        tee_signer: tee.signer(),
    };
    let service = crate::chain::register(&client, provider, &params, stake)
        .await
        .map_err(chain_err("addOrUpdateService"))?;
    crate::chain::warn_unless_owner_acknowledged(&client, provider).await;
    tracing::info!(%provider, signer = %tee.signer(), url = %s.public_url, model = %s.model, "service registered");
    let domains = Domains::new(client.chain_id(), s.contracts.inference);
    let ledger = Ledger::open(LedgerConfig::new(
        s.data_dir.join("ledger.sqlite"),
        provider,
        domains,
    ))?;
    let metrics = Arc::new(Metrics::default());
    let core = Provider::new(
        provider,
        CoreConfig {
            model: s.model.clone(),
            prices: Prices {
                input: s.input_price,
                output: s.output_price,
            },
            max_concurrency: s.max_concurrency,
            retry_after_secs: s.retry_after_secs,
            upstream_timeout: s.upstream_timeout,
            account_ttl: s.account_ttl,
            default_max_tokens: s.default_max_tokens,
            max_skew_ms: 60_000,
            limits: s.limits.clone(),
        },
        ledger.clone(),
        Arc::clone(&tee),
        upstream,
        Arc::new(adapter.clone()),
        Arc::clone(&metrics),
    );
    // Adapters deployed before a restart are served again; a broken one is logged and skipped.
    let adapters_served = crate::adapters::load_persisted(&core, &s.data_dir).await;
    if adapters_served > 0 {
        tracing::info!(adapters = adapters_served, "LoRA adapters loaded");
    }
    let policy = &s.adapters.policy.policy;
    if policy.dangerous_allow_simulated || policy.dangerous_any_image {
        tracing::warn!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!  ADAPTER DEPLOYMENT ACCEPTS {}{}{} brokers.   !!\n\
             !!  Devnet / demo only: an unattested broker can hand this provider adapters. !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            if policy.dangerous_allow_simulated {
                "SIMULATED-TEE"
            } else {
                ""
            },
            if policy.dangerous_allow_simulated && policy.dangerous_any_image {
                " and "
            } else {
                ""
            },
            if policy.dangerous_any_image {
                "ANY-IMAGE"
            } else {
                ""
            },
        );
    }
    let adapter_svc = crate::adapters::adapter_service(
        core.clone(),
        client.clone(),
        s.data_dir.clone(),
        s.adapters.clone(),
    );
    let owner_ack_watch = (client.clone(), provider);
    let settler = Arc::new(Settler::new(
        ledger,
        adapter,
        tee.keys().settlement.clone(),
        SettlerConfig {
            unsettled_threshold: s.settle_threshold,
            ..SettlerConfig::default()
        },
    )?);
    let rec = settler.reconcile(now_ms()).await?;
    if !rec.items.is_empty() {
        tracing::info!(settlements = rec.items.len(), paid = %rec.total_paid(), "reconciled settlements left open by the last run");
    }
    let (shutdown, rx) = watch::channel(false);
    let http = tokio::net::TcpListener::bind(s.http_addr)
        .await
        .map_err(|source| Error::Io {
            op: "bind HTTP (--http-addr)",
            path: PathBuf::from(s.http_addr.to_string()),
            source,
        })?;
    let grpc = tokio::net::TcpListener::bind(s.grpc_addr)
        .await
        .map_err(|source| Error::Io {
            op: "bind gRPC (--grpc-addr)",
            path: PathBuf::from(s.grpc_addr.to_string()),
            source,
        })?;
    let (http_addr, grpc_addr) = (local(&http)?, local(&grpc)?);
    let mut tasks = Vec::new();
    let app = core.clone();
    let mut r1 = rx.clone();
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            let _ = r1.wait_for(|v| *v).await;
        };
        if let Err(e) = crate::http::serve(http, app, stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    let info = ServiceInfo {
        chain_id: client.chain_id(),
        inference_contract: s.contracts.inference.to_checksum(None),
        url: s.public_url.clone(),
        service_type: s.service_type.clone(),
        additional_info: s.additional_info.clone(),
        tee_signer_acknowledged: service.tee_signer_acknowledged,
    };
    let svc = grpc_service(core.clone(), info);
    let mut r2 = rx.clone();
    tasks.push(tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        let stop = async move {
            let _ = r2.wait_for(|v| *v).await;
        };
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(adapter_svc)
            .serve_with_incoming_shutdown(incoming, stop)
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }));
    if !s.settle_interval.is_zero() {
        let (settler, metrics, mut r3, every) = (
            Arc::clone(&settler),
            Arc::clone(&metrics),
            rx.clone(),
            s.settle_interval,
        );
        let trust = owner_ack_watch;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                let stop = tokio::select! {
                    _ = tick.tick() => false,
                    r = r3.wait_for(|v| *v) => { drop(r); true }
                };
                if stop {
                    break;
                }
                crate::chain::warn_unless_owner_acknowledged(&trust.0, trust.1).await;
                settle_round(&settler, &metrics, false).await;
            }
        }));
    }
    tracing::info!(%http_addr, %grpc_addr, backend = ?tee.backend(), "zg-provider listening");
    Ok(Running {
        http_addr,
        grpc_addr,
        provider: core,
        settler,
        shutdown,
        tasks,
    })
}

fn local(l: &tokio::net::TcpListener) -> Result<SocketAddr> {
    l.local_addr().map_err(|source| Error::Io {
        op: "local address",
        path: PathBuf::new(),
        source,
    })
}

/// One settlement round, logged and counted.
pub async fn settle_round(
    settler: &Settler<SettlementAdapter>,
    metrics: &Metrics,
    force: bool,
) -> Option<SettleReport> {
    match settler.settle_due(now_ms(), force).await {
        Ok(r) => {
            metrics.settled(
                now_ms() / 1000,
                u128::try_from(r.total_paid()).unwrap_or(u128::MAX),
            );
            if !r.items.is_empty() {
                tracing::info!(customers = r.items.len(), paid = %r.total_paid(), txs = r.tx_hashes.len(), "settled");
            }
            Some(r)
        }
        Err(e) => {
            metrics.settlement_error();
            tracing::warn!(error = %e, "settlement round failed; will retry");
            None
        }
    }
}

impl Running {
    /// Settles now (every customer with unsettled fees when `force`).
    pub async fn settle(&self, force: bool) -> Result<SettleReport> {
        Ok(self.settler.settle_due(now_ms(), force).await?)
    }

    /// Graceful shutdown: stop accepting, drain open requests and streams, flush the ledger.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.provider.ledger().close();
        tracing::info!("zg-provider stopped; ledger flushed");
    }
}

/// `zg-provider run`: starts, then waits for Ctrl-C / SIGTERM and shuts down gracefully.
pub async fn run(s: Settings) -> Result<()> {
    let running = start(s).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: draining streams");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
