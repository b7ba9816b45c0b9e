//! `zg inference …`: the customer's inference verbs, named as in the official 0G CLI — list-providers, verify,
//! acknowledge-provider, chat, get-secret, revoke-token — plus `balance`. Every answer `chat` prints has had its
//! signed receipt checked against the exact bytes received.

use super::{
    GlobalOpts,
    opts::{RpcOpts, WalletOpts},
};
use crate::output;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use zg_chain::{Address, Amount, B256, U256};
use zg_client::{Client, ClientConfig, StreamEvent, TopUpPolicy};

/// The customer's inference verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum InferenceCommand {
    /// List the inference services registered on chain: provider, model, URL, prices, TEE signer.
    ListProviders(ListProvidersArgs),
    /// Verify a provider's TEE: fetch fresh evidence for a random nonce, check quote, TCB, measurements,
    /// event log, the nonce, and that the bound signer is the on-chain teeSignerAddress. Prints the report.
    ///
    /// Exits 1 if any required check fails. Simulated TEEs are refused unless --allow-simulated is given.
    Verify(ProviderArgs),
    /// Verify a provider, then acknowledge its TEE signer on chain for your sub-account (creating the
    /// sub-account if needed).
    AcknowledgeProvider(ProviderArgs),
    /// Send a chat message; prints the answer only after its signed receipt verified.
    ///
    /// Pays with a signed request bound to the body, a fresh nonce and a fee cap, plus a voucher over what
    /// you owe; tops the sub-account up when needed. Example:
    /// `zg inference chat --provider 0x… --allow-simulated "how are fees settled?"`
    Chat(ChatArgs),
    /// Create a 0G session secret (`app-sk-…`) for the official 0G SDK, curl or any OpenAI client sent
    /// straight to the provider (`Authorization: Bearer app-sk-…`).
    GetSecret(GetSecretArgs),
    /// Revoke one session-token id on chain (secrets with that id stop working at once).
    RevokeToken(RevokeTokenArgs),
    /// What you owe a provider: verified receipts, vouched, paid on chain, unsettled, sub-account balance.
    Balance(ProviderArgs),
    /// Send the provider a voucher over every verified receipt so far, so it can settle all of it.
    ///
    /// Vouchers ride on requests: the fee of your latest answer is vouched by your next request. This sends
    /// one unbilled request (an empty chat, which the model refuses) that carries the newest voucher.
    FlushVoucher(ProviderArgs),
    /// Your LoRA adapters deployed on a provider (`zg fine-tuning deploy-adapter`): name, base model, task.
    ///
    /// Signed with your wallet (a list request bound to this provider, valid 5 minutes); the provider answers
    /// with yours only. Example: `zg inference list-adapters --provider 0x…`
    ListAdapters(AdapterOwnerArgs),
    /// Remove one of your adapters from a provider: it is no longer served and its files are deleted.
    ///
    /// Example: `zg inference remove-adapter --provider 0x… --model ft-smollm2-135m-instruct-0d4c6a52-9f7`
    RemoveAdapter(RemoveAdapterArgs),
}

/// A provider's adapter service, as the adapters' owner.
#[derive(Debug, Args)]
pub(crate) struct AdapterOwnerArgs {
    /// The inference provider's address.
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    provider: Address,
    /// Reach the provider's gRPC API at this URL instead of the one its service advertises (`grpc` in
    /// additionalInfo).
    #[arg(long, env = "ZG_PROVIDER_GRPC_URL", value_name = "URL")]
    provider_grpc_url: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

/// `zg inference remove-adapter`
#[derive(Debug, Args)]
pub(crate) struct RemoveAdapterArgs {
    /// The adapter's model name (`ft-…`, see `zg inference list-adapters`).
    #[arg(long, alias = "adapter-name", value_name = "NAME")]
    model: String,
    #[command(flatten)]
    owner: AdapterOwnerArgs,
}

/// Flags every client verb shares: chain, wallet, data dir and trust settings.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientOpts {
    #[command(flatten)]
    pub(crate) rpc: RpcOpts,
    #[command(flatten)]
    pub(crate) wallet: WalletOpts,
    /// Where nonces, vouchers, verified provider keys and receipts are kept (default ~/.zg/client).
    #[arg(long, env = "ZG_DATA_DIR", value_name = "DIR", help_heading = "Client")]
    pub(crate) data_dir: Option<PathBuf>,
    /// DANGEROUS: accept providers running the SIMULATED TEE (no hardware protection). Local development only.
    #[arg(long, env = "ZG_ALLOW_SIMULATED", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, help_heading = "Client")]
    pub(crate) allow_simulated: bool,
    /// Attestation policy (TOML or JSON: allowed images, compose hashes, minimum TCB status, ...).
    #[arg(
        long,
        env = "ZG_ATTESTATION_POLICY",
        value_name = "FILE",
        help_heading = "Client"
    )]
    pub(crate) policy: Option<PathBuf>,
    /// Intel collateral JSON for real TDX quotes (from a PCCS or `zg attest`).
    #[arg(long, env = "ZG_COLLATERAL", value_name = "FILE", help_heading = "Client")]
    pub(crate) collateral: Option<PathBuf>,
    /// Reach the provider at this base URL instead of the one registered on chain (tunnels, tests). The
    /// attestation is still checked against the on-chain signer.
    #[arg(long, env = "ZG_PROVIDER_URL", value_name = "URL", help_heading = "Client")]
    pub(crate) provider_url: Option<String>,
    /// How paid requests reach the provider: `auto` (its gRPC API when its service advertises one, else
    /// HTTP), `http` or `grpc`. Attestation always uses HTTP.
    #[arg(
        long,
        env = "ZG_TRANSPORT",
        value_name = "auto|http|grpc",
        default_value = "auto",
        help_heading = "Client"
    )]
    pub(crate) transport: zg_client::Transport,
    /// Reach the provider's gRPC API at this URL (`http://host:port`) instead of the one its service advertises.
    #[arg(
        long,
        env = "ZG_PROVIDER_GRPC_URL",
        value_name = "URL",
        help_heading = "Client"
    )]
    pub(crate) provider_grpc_url: Option<String>,
    /// Never move funds automatically; fail with the `zg transfer-fund` to run instead.
    #[arg(long, help_heading = "Client")]
    pub(crate) no_top_up: bool,
    /// Amount moved into the sub-account per automatic top-up.
    #[arg(long, value_name = "0G", default_value = "2", value_parser = amount, help_heading = "Client")]
    pub(crate) top_up: Amount,
}

fn amount(s: &str) -> Result<Amount, String> {
    s.parse::<Amount>().map_err(|e| e.to_string())
}

impl ClientOpts {
    fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".zg")
            .join("client")
    }

    /// Builds the client: signer from the wallet flags, chain connection, config from the flags.
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        Ok(self.client_and_key().await?.0)
    }

    /// The client and the raw key it signs with (for `zg web`'s fine-tuning signatures): the keystore is
    /// unlocked once.
    pub(crate) async fn client_and_key(&self) -> anyhow::Result<(Client, [u8; 32])> {
        let signer = self.wallet.signer()?;
        let raw: [u8; 32] = signer.to_bytes().into();
        let key = zg_billing::EthSigner::from_bytes(&B256::from(signer.to_bytes()))?;
        let chain = self.rpc.connect(Some(signer)).await?;
        let mut cfg = ClientConfig::new(self.data_dir());
        if let Some(p) = &self.policy {
            cfg.policy = zg_attestation::AttestationPolicy::from_file(p)
                .with_context(|| format!("loading the attestation policy {} (--policy)", p.display()))?;
        }
        cfg = cfg.dangerous_allow_simulated(self.allow_simulated);
        if let Some(c) = &self.collateral {
            let col = zg_attestation::Collateral::from_file(c)
                .with_context(|| format!("loading collateral {} (--collateral)", c.display()))?;
            cfg.collateral = Some(Arc::new(col));
        }
        cfg.url_override = self.provider_url.clone();
        cfg.transport = self.transport;
        cfg.grpc_url_override = self.provider_grpc_url.clone();
        cfg.top_up = TopUpPolicy {
            enabled: !self.no_top_up,
            refill: self.top_up.0,
            ..TopUpPolicy::default()
        };
        Ok((Client::new(chain, key, cfg)?, raw))
    }
}

/// `zg inference list-providers`
#[derive(Debug, Args)]
pub(crate) struct ListProvidersArgs {
    #[command(flatten)]
    rpc: RpcOpts,
}

/// A verb that names one provider.
#[derive(Debug, Args)]
pub(crate) struct ProviderArgs {
    /// The provider's address (see `zg inference list-providers`).
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    provider: Address,
    #[command(flatten)]
    client: ClientOpts,
}

/// `zg inference chat`
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The provider's address.
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    pub(crate) provider: Address,
    /// The model to ask: one of your LoRA adapters deployed on this provider (`ft-…`, see `zg inference
    /// list-adapters`), served to you only and billed at the service's prices; the receipt must name it.
    /// Default: the service's model.
    #[arg(long, value_name = "NAME")]
    pub(crate) model: Option<String>,
    /// Stream the answer (shown live on stderr; the verified answer is printed on stdout at the end).
    #[arg(long)]
    pub(crate) stream: bool,
    /// Most completion tokens to generate (bounds the fee cap you sign).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub(crate) max_tokens: u64,
    /// Sampling temperature (0 = deterministic).
    #[arg(long, value_name = "T")]
    pub(crate) temperature: Option<f64>,
    /// A system message sent before yours.
    #[arg(long, value_name = "TEXT")]
    pub(crate) system: Option<String>,
    /// Your message.
    pub(crate) message: String,
    #[command(flatten)]
    pub(crate) client: ClientOpts,
}

/// `zg inference get-secret`
#[derive(Debug, Args)]
pub(crate) struct GetSecretArgs {
    /// The provider's address.
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    provider: Address,
    /// Token id: 255 = ephemeral (at most 24 h), 0-254 = API keys you can revoke one by one.
    #[arg(long, default_value_t = 255, value_name = "ID")]
    token_id: u8,
    /// Lifetime in seconds (default: 24 h for id 255, never expiring for 0-254).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Fail instead of acknowledging the provider's TEE signer when this account has not yet. Session tokens are
    /// settled by TEE-signed batches, which pay only for customers who acknowledged the signer, so providers
    /// refuse tokens of anyone else; by default get-secret verifies the provider and acknowledges it first.
    #[arg(long)]
    no_acknowledge: bool,
    #[command(flatten)]
    client: ClientOpts,
}

/// `zg inference revoke-token`
#[derive(Debug, Args)]
pub(crate) struct RevokeTokenArgs {
    /// The provider's address.
    #[arg(long, env = "ZG_PROVIDER", value_name = "ADDRESS")]
    provider: Address,
    /// The token id to revoke (0-255).
    #[arg(long, value_name = "ID")]
    token_id: u8,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Debug, Serialize)]
struct ServiceRow {
    provider: Address,
    model: String,
    url: String,
    service_type: String,
    input_price_per_token: Amount,
    output_price_per_token: Amount,
    verifiability: String,
    tee_signer: Address,
    tee_signer_acknowledged: bool,
}

fn neuron(v: U256) -> String {
    format!("{v} neuron ({} 0G)", Amount(v).to_zg_string())
}

impl InferenceCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        match self {
            Self::ListProviders(a) => a.run(g).await,
            Self::Verify(a) => verify(a, g).await,
            Self::AcknowledgeProvider(a) => acknowledge(a, g).await,
            Self::Chat(a) => a.run(g).await,
            Self::GetSecret(a) => a.run(g).await,
            Self::RevokeToken(a) => a.run(g).await,
            Self::Balance(a) => balance(a, g).await,
            Self::FlushVoucher(a) => flush(a, g).await,
            Self::ListAdapters(a) => list_adapters(a, g).await,
            Self::RemoveAdapter(a) => remove_adapter(a, g).await,
        }
    }
}

impl ListProvidersArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let chain = self.rpc.connect(None).await?;
        let rows: Vec<ServiceRow> = chain
            .inference()
            .list_services()
            .await?
            .into_iter()
            .map(|s| ServiceRow {
                provider: s.provider,
                model: s.model,
                url: s.url,
                service_type: s.service_type,
                input_price_per_token: Amount(s.input_price),
                output_price_per_token: Amount(s.output_price),
                verifiability: s.verifiability,
                tee_signer: s.tee_signer,
                tee_signer_acknowledged: s.tee_signer_acknowledged,
            })
            .collect();
        if g.json {
            output::json(&rows)?;
        } else if rows.is_empty() {
            output::text("no inference services registered")?;
        } else {
            for r in &rows {
                output::text(format!(
                    "{}  {}  {}\n  type {}  verifiability {}  price in/out {} / {} neuron per token\n  TEE signer {}{}",
                    r.provider,
                    r.model,
                    r.url,
                    r.service_type,
                    r.verifiability,
                    r.input_price_per_token.0,
                    r.output_price_per_token.0,
                    r.tee_signer,
                    if r.tee_signer_acknowledged {
                        " (acknowledged by the contract owner)"
                    } else {
                        ""
                    }
                ))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Prints a verification (or a failed one's report) and returns the exit code.
fn print_verification(g: &GlobalOpts, v: &zg_client::ProviderVerification) -> anyhow::Result<()> {
    if g.json {
        return output::json(v);
    }
    if v.simulated {
        output::text(format!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!  {}: accepted only because --allow-simulated  !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            zg_attestation::SIMULATED_BANNER
        ))?;
    }
    output::text(format!(
        "provider {}  model {}  url {}\nbound signer {} = on-chain teeSignerAddress\nresponse key {}\nnonce {}",
        v.provider, v.service.model, v.service.url, v.signer, v.response_key, v.nonce
    ))?;
    // Which allow-list entry the evidence matched, and the GPUs it covered (their gpu.* checks follow).
    let matched = if v.report.allowlist_matches.is_empty() {
        "none".to_owned()
    } else {
        v.report.allowlist_matches.join("; ")
    };
    let gpus = match v.report.gpus.len() {
        0 => "none (no GPU evidence)".to_owned(),
        n => format!("{n} verified with NVIDIA-format evidence (gpu.* checks below)"),
    };
    output::text(format!("allow-list match {matched}\nGPUs {gpus}"))?;
    output::text(&v.report)
}

async fn verify(a: ProviderArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let client = a.client.client().await?;
    match client.verify_provider(a.provider).await {
        Ok(v) => {
            print_verification(g, &v)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(zg_client::Error::AttestationFailed { report, check, .. }) => {
            if g.json {
                output::json(&report)?;
            } else {
                output::text(&report)?;
            }
            anyhow::bail!("provider {} failed verification: {check}", a.provider)
        }
        Err(e) => Err(e.into()),
    }
}

async fn acknowledge(a: ProviderArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let client = a.client.client().await?;
    let (v, tx) = client.acknowledge_provider(a.provider).await?;
    if g.json {
        output::json(&serde_json::json!({"action": "acknowledge-provider", "verification": v, "tx": tx}))?;
    } else {
        print_verification(g, &v)?;
        output::text(format!(
            "acknowledged TEE signer {} of {} (tx {}, block {})",
            v.signer, a.provider, tx.tx, tx.block
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn balance(a: ProviderArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let client = a.client.client().await?;
    let b = client.balance(a.provider).await?;
    if g.json {
        output::json(
            &serde_json::json!({"provider": a.provider, "customer": client.address(), "balance": b}),
        )?;
    } else {
        output::text(format!(
            "{} with provider {}\n  sub-account     {}\n  pending refund  {}\n  owed (receipts) {}  over {} verified receipts\n  vouched         {}\n  paid on chain   {}\n  unsettled       {}",
            client.address(),
            a.provider,
            neuron(b.sub_account),
            neuron(b.pending_refund),
            neuron(b.owed),
            b.receipts,
            neuron(b.vouched),
            neuron(b.paid),
            neuron(b.unsettled)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn flush(a: ProviderArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let client = a.client.client().await?;
    let vouched = client.flush_voucher(a.provider).await?;
    if g.json {
        output::json(
            &serde_json::json!({"action": "flush-voucher", "provider": a.provider, "vouched": vouched.to_string()}),
        )?;
    } else {
        output::text(format!(
            "voucher over {} delivered to {}",
            neuron(vouched),
            a.provider
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ChatOut<'a> {
    provider: Address,
    /// The model that answered, as its receipt names it.
    model: String,
    answer: String,
    verified: bool,
    /// `grpc` or `http`: the API the paid request went over.
    transport: String,
    receipt: &'a zg_client::VerifiedReceipt,
}

impl ChatArgs {
    fn body(&self) -> String {
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(serde_json::json!({"role": "system", "content": s}));
        }
        messages.push(serde_json::json!({"role": "user", "content": self.message}));
        let mut body =
            serde_json::json!({"messages": messages, "max_tokens": self.max_tokens, "stream": self.stream});
        if let Some(t) = self.temperature {
            body["temperature"] = serde_json::json!(t);
        }
        if let Some(m) = &self.model {
            body["model"] = serde_json::json!(m);
        }
        body.to_string()
    }

    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.client.client().await?;
        let body = self.body();
        let adapter = self.model.as_deref().filter(|m| zg_adapters::is_adapter_name(m));
        let hint = |e: zg_client::Error| -> anyhow::Error {
            match (adapter, &e) {
                (Some(m), zg_client::Error::Provider { status: 403 | 404, .. }) => {
                    anyhow::Error::new(e).context(format!(
                        "the provider does not serve {m} to you: is it deployed (zg fine-tuning deploy-adapter) and are \
                         you its owner? See `zg inference list-adapters --provider {}`",
                        self.provider
                    ))
                }
                _ => e.into(),
            }
        };
        let (answer, receipt, transport) = if self.stream {
            let mut s = client.chat_stream(self.provider, body).await.map_err(hint)?;
            let transport = s.transport();
            let live = !g.json && std::io::stderr().is_terminal();
            let mut text = String::new();
            let mut receipt = None;
            while let Some(ev) = s.next().await {
                match ev? {
                    d @ StreamEvent::Data(_) => {
                        if let Some(t) = d.delta_text() {
                            if live {
                                // Progress, not the result: the verified answer goes to stdout below.
                                let mut err = std::io::stderr().lock();
                                let _ = err.write_all(t.as_bytes());
                                let _ = err.flush();
                            }
                            text.push_str(&t);
                        }
                    }
                    StreamEvent::Receipt(r) => receipt = Some(*r),
                }
            }
            if live {
                let _ = std::io::stderr().write_all(b"\n");
            }
            (
                text,
                receipt.ok_or(zg_client::Error::StreamIncomplete("no receipt".into()))?,
                transport,
            )
        } else {
            let r = client.chat(self.provider, body).await.map_err(hint)?;
            (r.text().unwrap_or_default(), r.receipt, r.transport)
        };
        if g.json {
            output::json(&ChatOut {
                provider: self.provider,
                model: receipt.receipt.model.clone(),
                answer,
                verified: true,
                transport: transport.to_string(),
                receipt: &receipt,
            })?;
        } else {
            output::text(&answer)?;
            let u = receipt.receipt.usage;
            output::text(format!(
                "-- receipt verified (over {}): model {}  key {}  tokens {}+{}  fee {}  owed to provider {}",
                if transport == zg_client::Transport::Grpc {
                    "gRPC"
                } else {
                    "HTTP"
                },
                receipt.receipt.model,
                receipt.receipt.key,
                u.prompt_tokens,
                u.completion_tokens,
                neuron(receipt.fee),
                neuron(receipt.owed_after)
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl GetSecretArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        if self.token_id == 255 && self.duration.is_some_and(|d| d > 24 * 3600) {
            anyhow::bail!(
                "token id 255 is ephemeral and lives at most 24 h (86400 s): lower --duration or pick --token-id 0-254"
            );
        }
        let client = self.client.client().await?;
        if self.no_acknowledge {
            if !client.acknowledged(self.provider).await? {
                anyhow::bail!(
                    "you have not acknowledged {}'s TEE signer, so it refuses session tokens: run `zg inference \
                     acknowledge-provider --provider {}` (or drop --no-acknowledge)",
                    self.provider,
                    self.provider
                );
            }
        } else if let Some((v, tx)) = client.ensure_acknowledged(self.provider).await? {
            // A chain write the user did not spell out: always said, at the default log level.
            tracing::warn!(
                provider = %self.provider, signer = %v.signer, tx = %tx.tx,
                "verified the provider and acknowledged its TEE signer: session tokens are settled by batches it signs"
            );
        }
        let secret = client
            .session_token(
                self.provider,
                self.token_id,
                self.duration.map(Duration::from_secs),
            )
            .await?;
        if g.json {
            output::json(&serde_json::json!({
                "provider": self.provider, "token_id": self.token_id, "duration_secs": self.duration, "secret": secret,
            }))?;
        } else {
            output::text(&secret)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl RevokeTokenArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.client.client().await?;
        let tx = client.revoke_token(self.provider, self.token_id).await?;
        if g.json {
            output::json(
                &serde_json::json!({"action": "revoke-token", "provider": self.provider, "token_id": self.token_id, "tx": tx}),
            )?;
        } else {
            output::text(format!(
                "revoked token id {} for {} (tx {}, block {})",
                self.token_id, self.provider, tx.tx, tx.block
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

// ------------------------------------------------------------------------------------------------ adapters

#[derive(Debug, Serialize)]
struct AdapterRow {
    name: String,
    base_model: String,
    owner: String,
    task_id: String,
    broker: String,
    deployed_at: u64,
    state: String,
}

fn adapter_row(a: zg_proto::v1::AdapterInfo) -> AdapterRow {
    AdapterRow {
        name: a.name,
        base_model: a.base_model,
        owner: a.owner,
        task_id: a.task_id,
        broker: a.broker,
        deployed_at: a.deployed_at,
        state: a.state,
    }
}

/// The provider's `zg.v1.Adapters` client and a signed owner request for `action`. No attestation is needed:
/// the request is bound to this provider, chain and action, valid 5 minutes, and carries no secret.
async fn owner_request(
    a: &AdapterOwnerArgs,
    action: zg_adapters::OwnerAction,
) -> anyhow::Result<(
    zg_proto::v1::adapters_client::AdaptersClient<tonic::transport::Channel>,
    zg_proto::v1::OwnerAuth,
)> {
    let signer = a.wallet.signer()?;
    let sk = zg_finetune::SigningKey::from_slice(signer.to_bytes().as_slice())
        .context("the wallet key is not secp256k1")?;
    let chain = a.rpc.connect(None).await?;
    let url = match &a.provider_grpc_url {
        Some(u) => u.clone(),
        None => {
            let service = chain
                .inference()
                .get_service(a.provider)
                .await?
                .with_context(|| {
                    format!(
                        "{} has no inference service on chain (zg inference list-providers)",
                        a.provider
                    )
                })?;
            service.advertised_grpc_url().with_context(|| {
                format!(
                    "{} advertises no gRPC API (`grpc` in its additionalInfo), so it takes no adapters; pass \
                     --provider-grpc-url if you know it",
                    a.provider
                )
            })?
        }
    };
    let timestamp = u64::try_from(zg_finetune::now_ms() / 1000).unwrap_or(0);
    let req = zg_adapters::OwnerRequest {
        chain_id: chain.chain_id(),
        provider: a.provider,
        user: signer.address(),
        action,
        timestamp,
    };
    let signature = req.sign(&sk)?;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("{url:?} is not a gRPC URL"))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("connecting to the provider's gRPC API at {url} (--provider-grpc-url)"))?;
    let client =
        zg_proto::v1::adapters_client::AdaptersClient::new(channel).max_decoding_message_size(4 << 20);
    Ok((
        client,
        zg_proto::v1::OwnerAuth {
            user: signer.address().to_checksum(None),
            timestamp,
            signature: signature.to_vec(),
        },
    ))
}

fn provider_status(provider: Address, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("provider {provider}: {:?}: {}", s.code(), s.message())
}

async fn list_adapters(a: AdapterOwnerArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let (mut c, auth) = owner_request(&a, zg_adapters::OwnerAction::List).await?;
    let rows: Vec<AdapterRow> = c
        .list(zg_proto::v1::ListAdaptersRequest { auth: Some(auth) })
        .await
        .map_err(|s| provider_status(a.provider, s))?
        .into_inner()
        .adapters
        .into_iter()
        .map(adapter_row)
        .collect();
    if g.json {
        output::json(&rows)?;
    } else if rows.is_empty() {
        output::text(format!("you have no adapters on {}", a.provider))?;
    } else {
        for r in &rows {
            output::text(format!(
                "{}  {}  base {}  task {}  trained by {}",
                r.name, r.state, r.base_model, r.task_id, r.broker
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove_adapter(a: RemoveAdapterArgs, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
    zg_adapters::check_name(&a.model).context("--model must be an adapter name (ft-…)")?;
    let (mut c, auth) = owner_request(&a.owner, zg_adapters::OwnerAction::Remove(a.model.clone())).await?;
    let removed = c
        .remove(zg_proto::v1::RemoveAdapterRequest {
            auth: Some(auth),
            name: a.model.clone(),
        })
        .await
        .map_err(|s| provider_status(a.owner.provider, s))?
        .into_inner()
        .removed;
    if !removed {
        anyhow::bail!(
            "you have no adapter {} on {} (zg inference list-adapters --provider {})",
            a.model,
            a.owner.provider,
            a.owner.provider
        );
    }
    if g.json {
        output::json(&serde_json::json!({
            "action": "remove-adapter", "provider": a.owner.provider, "model": a.model, "removed": true,
        }))?;
    } else {
        output::text(format!("removed {} from {}", a.model, a.owner.provider))?;
    }
    Ok(ExitCode::SUCCESS)
}
