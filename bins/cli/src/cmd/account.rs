//! The customer's ledger verbs, named as in the official 0G CLI: get-account, add-account, deposit, refund,
//! transfer-fund, retrieve-fund, get-sub-account.

use super::{
    GlobalOpts,
    opts::{RpcOpts, WalletOpts},
};
use crate::output;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::process::ExitCode;
use zg_chain::{Address, Amount, Client, ServiceKind, TxOutcome};

/// Which serving contract a sub-account belongs to.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub(crate) enum Service {
    /// Inference (`inference-v1.0`).
    #[default]
    Inference,
    /// Fine-tuning (`fine-tuning-v1.0`).
    FineTuning,
}

impl From<Service> for ServiceKind {
    fn from(s: Service) -> Self {
        match s {
            Service::Inference => ServiceKind::Inference,
            Service::FineTuning => ServiceKind::FineTuning,
        }
    }
}

/// An amount argument: `1.5` or `1.5 0G` (0G), or `1500000000000000000 neuron`.
fn amount(s: &str) -> Result<Amount, String> {
    s.parse::<Amount>().map_err(|e| e.to_string())
}

/// What a transaction command prints.
#[derive(Debug, Serialize)]
struct TxReport<T: Serialize> {
    action: &'static str,
    tx: TxOutcome,
    #[serde(flatten)]
    after: T,
}

/// The ledger as printed.
#[derive(Debug, Serialize)]
struct LedgerView {
    user: Address,
    available: Amount,
    total: Amount,
    /// In provider sub-accounts.
    locked_in_sub_accounts: Amount,
}

async fn ledger_view(client: &Client, user: Address) -> anyhow::Result<Option<LedgerView>> {
    Ok(client.ledger().get_ledger(user).await?.map(|l| LedgerView {
        user,
        available: l.available,
        total: l.total,
        locked_in_sub_accounts: Amount(l.total.0.saturating_sub(l.available.0)),
    }))
}

fn ledger_lines(v: &LedgerView) -> String {
    format!(
        "ledger of {}\n  available  {}\n  in sub-accounts  {}\n  total  {}",
        v.user,
        v.available.both(),
        v.locked_in_sub_accounts.both(),
        v.total.both()
    )
}

async fn report_tx(
    g: &GlobalOpts,
    client: &Client,
    action: &'static str,
    tx: TxOutcome,
) -> anyhow::Result<ExitCode> {
    let me = client.signer_address()?;
    let after = ledger_view(client, me).await?;
    if g.json {
        output::json(&TxReport {
            action,
            tx,
            after: serde_json::json!({ "ledger": after }),
        })?;
    } else {
        output::text(format!(
            "{action}: ok (tx {}, block {}, gas {})",
            tx.tx, tx.block, tx.gas_used
        ))?;
        if let Some(v) = after {
            output::text(ledger_lines(&v))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `zg get-account`
#[derive(Debug, Args)]
pub(crate) struct GetAccountArgs {
    /// Whose ledger (default: the configured key's address).
    #[arg(long, value_name = "ADDRESS")]
    user: Option<Address>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

#[derive(Debug, Serialize)]
struct SubAccountRow {
    service: ServiceKind,
    provider: Address,
    balance: Amount,
    pending_refund: Amount,
}

impl GetAccountArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let user = match self.user {
            Some(u) => u,
            None => self.wallet.signer()?.address(),
        };
        let client = self.rpc.connect(None).await?;
        let Some(ledger) = ledger_view(&client, user).await? else {
            anyhow::bail!("{user} has no ledger yet: create one with `zg add-account --amount 3`");
        };
        let mut rows = Vec::new();
        for kind in [ServiceKind::Inference, ServiceKind::FineTuning] {
            for provider in client.ledger().providers(user, kind).await? {
                let (balance, pending_refund) = match kind {
                    ServiceKind::Inference => client
                        .inference()
                        .get_account(user, provider)
                        .await?
                        .map(|a| (a.balance, a.pending_refund))
                        .unwrap_or_default(),
                    ServiceKind::FineTuning => client
                        .fine_tuning()
                        .get_account(user, provider)
                        .await?
                        .map(|a| (a.balance, a.pending_refund))
                        .unwrap_or_default(),
                };
                rows.push(SubAccountRow {
                    service: kind,
                    provider,
                    balance,
                    pending_refund,
                });
            }
        }
        if g.json {
            output::json(&serde_json::json!({ "ledger": ledger, "sub_accounts": rows }))?;
        } else {
            output::text(ledger_lines(&ledger))?;
            if rows.is_empty() {
                output::text(
                    "no sub-accounts (fund one with `zg transfer-fund --provider ADDRESS --amount 1`)",
                )?;
            }
            for r in rows {
                output::text(format!(
                    "  {} {}: balance {}, pending refund {}",
                    r.service, r.provider, r.balance, r.pending_refund
                ))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `zg add-account`
#[derive(Debug, Args)]
pub(crate) struct AddAccountArgs {
    /// First deposit, e.g. `3` (0G) or `3000000000000000000 neuron`. At least the ledger minimum (3 0G by default).
    #[arg(long, value_parser = amount, value_name = "AMOUNT")]
    amount: Amount,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl AddAccountArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.rpc.connect(Some(self.wallet.signer()?)).await?;
        let tx = client.ledger().add_ledger(self.amount, "").await?;
        report_tx(g, &client, "add-account", tx).await
    }
}

/// `zg deposit`
#[derive(Debug, Args)]
pub(crate) struct DepositArgs {
    /// Amount to add, e.g. `1.5` (0G) or `1500000000000000000 neuron`.
    #[arg(long, value_parser = amount, value_name = "AMOUNT")]
    amount: Amount,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl DepositArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.rpc.connect(Some(self.wallet.signer()?)).await?;
        let tx = client.ledger().deposit(self.amount).await?;
        report_tx(g, &client, "deposit", tx).await
    }
}

/// `zg refund`
#[derive(Debug, Args)]
pub(crate) struct RefundArgs {
    /// Amount to withdraw from the available balance.
    #[arg(long, value_parser = amount, value_name = "AMOUNT")]
    amount: Amount,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl RefundArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.rpc.connect(Some(self.wallet.signer()?)).await?;
        let me = client.signer_address()?;
        client.ledger().ensure_available(me, self.amount).await.map_err(|e| match e {
            zg_chain::Error::InsufficientLedgerBalance { available, .. } => anyhow::anyhow!(
                "cannot refund {}: only {} is available (funds in sub-accounts come back with `zg retrieve-fund`)",
                self.amount,
                available
            ),
            other => other.into(),
        })?;
        let tx = client.ledger().refund(self.amount).await?;
        report_tx(g, &client, "refund", tx).await
    }
}

/// `zg transfer-fund`
#[derive(Debug, Args)]
pub(crate) struct TransferFundArgs {
    /// Provider address to fund.
    #[arg(long, value_name = "ADDRESS")]
    provider: Address,
    /// Amount to move from the ledger into the provider's sub-account.
    #[arg(long, value_parser = amount, value_name = "AMOUNT")]
    amount: Amount,
    /// Which service's sub-account.
    #[arg(long, value_enum, default_value_t)]
    service: Service,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl TransferFundArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.rpc.connect(Some(self.wallet.signer()?)).await?;
        let me = client.signer_address()?;
        client.ledger().ensure_available(me, self.amount).await?;
        let tx = client
            .ledger()
            .transfer_fund(self.provider, self.service.into(), self.amount)
            .await?;
        report_tx(g, &client, "transfer-fund", tx).await
    }
}

/// `zg retrieve-fund`
#[derive(Debug, Args)]
pub(crate) struct RetrieveFundArgs {
    /// Providers to retrieve from (repeatable; default: every provider of the service you funded).
    #[arg(long = "provider", value_name = "ADDRESS")]
    providers: Vec<Address>,
    /// Which service's sub-accounts.
    #[arg(long, value_enum, default_value_t)]
    service: Service,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl RetrieveFundArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let client = self.rpc.connect(Some(self.wallet.signer()?)).await?;
        let me = client.signer_address()?;
        let kind: ServiceKind = self.service.into();
        let providers = if self.providers.is_empty() {
            client.ledger().providers(me, kind).await?
        } else {
            self.providers
        };
        if providers.is_empty() {
            anyhow::bail!("you have no {kind} sub-accounts to retrieve from");
        }
        let tx = client.ledger().retrieve_fund(providers, kind).await?;
        if !g.json {
            let lock = match kind {
                ServiceKind::Inference => client.inference().lock_time().await.ok(),
                ServiceKind::FineTuning => None,
            };
            if let Some(secs) = lock {
                tracing::warn!(
                    "refunds requested now unlock after {secs} s: run retrieve-fund again then to collect them"
                );
            }
        }
        report_tx(g, &client, "retrieve-fund", tx).await
    }
}

/// `zg get-sub-account`
#[derive(Debug, Args)]
pub(crate) struct GetSubAccountArgs {
    /// Provider address.
    #[arg(long, value_name = "ADDRESS")]
    provider: Address,
    /// Which service's sub-account.
    #[arg(long, value_enum, default_value_t)]
    service: Service,
    /// Whose sub-account (default: the configured key's address).
    #[arg(long, value_name = "ADDRESS")]
    user: Option<Address>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl GetSubAccountArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let user = match self.user {
            Some(u) => u,
            None => self.wallet.signer()?.address(),
        };
        let client = self.rpc.connect(None).await?;
        let missing = || {
            anyhow::anyhow!(
                "{user} has no {} sub-account with {}: fund one with `zg transfer-fund --provider {} --amount 1`",
                ServiceKind::from(self.service),
                self.provider,
                self.provider
            )
        };
        match self.service {
            Service::Inference => {
                let a = client
                    .inference()
                    .get_account(user, self.provider)
                    .await?
                    .ok_or_else(missing)?;
                if g.json {
                    output::json(&a)?;
                } else {
                    output::text(format!(
                        "sub-account {} → {} (inference)\n  balance  {}\n  pending refund  {}\n  nonce  {}\n  signer acknowledged  {}\n  token generation  {}",
                        a.user,
                        a.provider,
                        a.balance.both(),
                        a.pending_refund.both(),
                        a.nonce,
                        a.acknowledged,
                        a.generation
                    ))?;
                    for r in &a.refunds {
                        output::text(format!(
                            "  refund #{}: {} requested at {}{}",
                            r.index,
                            r.amount,
                            r.created_at,
                            if r.processed { " (processed)" } else { "" }
                        ))?;
                    }
                }
            }
            Service::FineTuning => {
                let a = client
                    .fine_tuning()
                    .get_account(user, self.provider)
                    .await?
                    .ok_or_else(missing)?;
                if g.json {
                    output::json(&a)?;
                } else {
                    output::text(format!(
                        "sub-account {} → {} (fine-tuning)\n  balance  {}\n  pending refund  {}\n  nonce  {}\n  deliverables  {}",
                        a.user,
                        a.provider,
                        a.balance.both(),
                        a.pending_refund.both(),
                        a.nonce,
                        a.deliverables.len()
                    ))?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
