//! `zg owner …`: the contract owner's step in 0G's onboarding of a provider — vouch for its TEE signer after
//! checking the attestation, or withdraw that vouch. Signed with the owner's key.
//!
//! Who can call it: anyone can run it, but the contracts accept it only from their owner (`NotOwner`); the
//! command checks that first and names the owner. Worst case with the owner's key: vouching for a signer that
//! was not checked, which lets that signer settle for customers who also acknowledged it. The acknowledgement
//! names the signer that was checked (`acknowledgeTEESignerAddressByOwner`), so a provider that swaps its signer
//! between the check and the transaction gets nothing acknowledged.

use super::{
    GlobalOpts,
    account::Service,
    opts::{RpcOpts, WalletOpts},
};
use crate::output;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use zg_chain::{Address, Client, ServiceKind, TxOutcome};

/// The contract owner's verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum OwnerCommand {
    /// Vouch for a provider's TEE signer (after checking its attestation), so TEE-signed settlements can pay.
    ///
    /// A TEE-signed settlement (inference `settleFeesWithTEE`, fine-tuning `settleFees`) pays only while the
    /// provider's current TEE signer is acknowledged by the contract owner and by the customer. Providers log
    /// this command while their signer waits for it. Changing the signer clears the acknowledgement.
    ///
    /// The signer acknowledged is the one named by --signer (default: the current one, read just before
    /// sending); the transaction fails if the provider registered another signer meanwhile.
    #[command(after_help = "\
Example (on the devnet, account 0 deployed the contracts and owns them):
  zg inference verify --provider 0xPROVIDER --allow-simulated        # prints the attested signer
  ZG_PRIVATE_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 \\
    zg owner acknowledge-tee-signer --provider 0xPROVIDER --service inference --signer 0xSIGNER

On a real network, sign with the owner's keystore: --keystore FILE (or ZG_KEYSTORE).")]
    AcknowledgeTeeSigner(AcknowledgeArgs),
    /// Withdraw the acknowledgement of a provider's TEE signer: its TEE-signed settlements are refused until
    /// the owner acknowledges a signer again. Vouchers (signed by customers) still settle.
    #[command(
        visible_alias = "revoke-tee-signer-acknowledgement",
        after_help = "\
Example:
  zg owner revoke-tee-signer --provider 0xPROVIDER --service fine-tuning --keystore owner.json"
    )]
    RevokeTeeSigner(RevokeArgs),
}

/// `zg owner acknowledge-tee-signer`
#[derive(Debug, Args)]
pub(crate) struct AcknowledgeArgs {
    /// Provider whose TEE signer to acknowledge.
    #[arg(long, value_name = "ADDRESS")]
    provider: Address,
    /// Which serving contract: the provider's inference or fine-tuning service.
    #[arg(long, value_enum)]
    service: Service,
    /// The TEE signer you checked (e.g. from `zg inference verify`); refused if the provider's current signer
    /// is another one. Default: the current signer.
    #[arg(long, value_name = "ADDRESS")]
    signer: Option<Address>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

/// `zg owner revoke-tee-signer`
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// Provider whose TEE signer to stop vouching for.
    #[arg(long, value_name = "ADDRESS")]
    provider: Address,
    /// Which serving contract: the provider's inference or fine-tuning service.
    #[arg(long, value_enum)]
    service: Service,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

/// What both verbs print.
#[derive(Debug, Serialize)]
struct Report {
    action: &'static str,
    service: ServiceKind,
    contract: Address,
    provider: Address,
    tee_signer: Address,
    owner_acknowledged: bool,
    /// None when nothing had to be sent (already in the asked state).
    tx: Option<TxOutcome>,
}

impl OwnerCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        match self {
            Self::AcknowledgeTeeSigner(a) => a.run(g).await,
            Self::RevokeTeeSigner(a) => a.run(g).await,
        }
    }
}

/// Connects with the wallet's key and checks that it is the owner of `kind`'s contract.
async fn owner_client(rpc: &RpcOpts, wallet: &WalletOpts, kind: ServiceKind) -> anyhow::Result<Client> {
    let client = rpc.connect(Some(wallet.signer()?)).await?;
    let me = client.signer_address()?;
    let owner = match kind {
        ServiceKind::Inference => client.inference().owner().await?,
        ServiceKind::FineTuning => client.fine_tuning().owner().await?,
    };
    if me != owner {
        anyhow::bail!(
            "{me} is not the owner of the {kind} contract {}: its owner is {owner}. Sign with the owner's key \
             (--keystore FILE / ZG_KEYSTORE, or ZG_PRIVATE_KEY)",
            kind.address(client.addresses())
        );
    }
    Ok(client)
}

/// The provider's current TEE signer and whether the owner acknowledges it; an error names a missing service
/// or signer.
async fn current_signer(
    client: &Client,
    kind: ServiceKind,
    provider: Address,
) -> anyhow::Result<(Address, bool)> {
    let signer = match kind {
        ServiceKind::Inference => client
            .inference()
            .get_service(provider)
            .await?
            .map(|s| s.tee_signer),
        ServiceKind::FineTuning => client.fine_tuning().tee_signer(provider).await?,
    };
    let Some(signer) = signer else {
        anyhow::bail!(
            "provider {provider} has no {kind} service on {}: nothing to acknowledge (check --provider and --service)",
            kind.address(client.addresses())
        );
    };
    if signer.is_zero() {
        anyhow::bail!("provider {provider} registered no TEE signer for {kind}: nothing to acknowledge");
    }
    let trust = match kind {
        ServiceKind::Inference => {
            client
                .inference()
                .tee_signer_acknowledgements(Address::ZERO, provider)
                .await?
        }
        ServiceKind::FineTuning => {
            client
                .fine_tuning()
                .tee_signer_acknowledgements(Address::ZERO, provider)
                .await?
        }
    };
    Ok((signer, trust.owner_acknowledged && trust.signer == signer))
}

fn print(g: &GlobalOpts, r: &Report) -> anyhow::Result<()> {
    if g.json {
        return output::json(r);
    }
    let state = if r.owner_acknowledged {
        "acknowledged by the owner"
    } else {
        "not acknowledged by the owner"
    };
    let tx = match &r.tx {
        Some(tx) => format!("ok (tx {}, block {}, gas {})", tx.tx, tx.block, tx.gas_used),
        None => "nothing to do".into(),
    };
    output::text(format!(
        "{}: {tx}\n  provider  {}\n  service  {} ({})\n  TEE signer  {} — {state}",
        r.action, r.provider, r.service, r.contract, r.tee_signer
    ))
}

impl AcknowledgeArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let kind = ServiceKind::from(self.service);
        let client = owner_client(&self.rpc, &self.wallet, kind).await?;
        let (current, acknowledged) = current_signer(&client, kind, self.provider).await?;
        let signer = self.signer.unwrap_or(current);
        if signer != current {
            anyhow::bail!(
                "provider {}'s current TEE signer is {current}, not the {signer} you checked: verify the attestation \
                 of {current} (zg inference verify --provider {}) before acknowledging it",
                self.provider,
                self.provider
            );
        }
        let tx = if acknowledged {
            tracing::info!(%signer, "already acknowledged: nothing sent");
            None
        } else {
            Some(match kind {
                ServiceKind::Inference => {
                    client
                        .inference()
                        .acknowledge_tee_signer_address_by_owner(self.provider, signer)
                        .await?
                }
                ServiceKind::FineTuning => {
                    client
                        .fine_tuning()
                        .acknowledge_tee_signer_address_by_owner(self.provider, signer)
                        .await?
                }
            })
        };
        print(
            g,
            &Report {
                action: "acknowledge-tee-signer",
                service: kind,
                contract: kind.address(client.addresses()),
                provider: self.provider,
                tee_signer: signer,
                owner_acknowledged: true,
                tx,
            },
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

impl RevokeArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let kind = ServiceKind::from(self.service);
        let client = owner_client(&self.rpc, &self.wallet, kind).await?;
        let (signer, acknowledged) = current_signer(&client, kind, self.provider).await?;
        let tx = if acknowledged {
            Some(match kind {
                ServiceKind::Inference => {
                    client
                        .inference()
                        .revoke_tee_signer_acknowledgement(self.provider)
                        .await?
                }
                ServiceKind::FineTuning => {
                    client
                        .fine_tuning()
                        .revoke_tee_signer_acknowledgement(self.provider)
                        .await?
                }
            })
        } else {
            tracing::info!(%signer, "not acknowledged: nothing sent");
            None
        };
        print(
            g,
            &Report {
                action: "revoke-tee-signer",
                service: kind,
                contract: kind.address(client.addresses()),
                provider: self.provider,
                tee_signer: signer,
                owner_acknowledged: false,
                tx,
            },
        )?;
        Ok(ExitCode::SUCCESS)
    }
}
