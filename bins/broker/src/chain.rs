//! The adapter between zg-finetune and zg-chain ([`FineTuningChain`] over FineTuningServing), service
//! registration, and the crash points the kill -9 tests use.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256};
use zg_chain::{Amount, Client, FineTuningService, FineTuningServiceParams, ServiceKind, TaskSettlement};
use zg_finetune::{
    ChainFailure, DeliverableState, FineTuningChain, Settlement, SettlementDomain, SubAccount,
};

use crate::error::{Error, Result};

/// Where the broker kills itself (SIGKILL, as `kill -9`) for crash tests: `ZG_BROKER_TEST_CRASH_AT` =
/// `add-deliverable-sent` (mined, not recorded), `settle-sent` (mined, not recorded), `accepted` (task
/// stored, not answered) or `state:<State>` (right after the transition into that state is durable).
/// Testing only; unset in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashPoints(Option<String>);

impl CrashPoints {
    /// Reads `ZG_BROKER_TEST_CRASH_AT`.
    pub fn from_env() -> Self {
        let v = std::env::var("ZG_BROKER_TEST_CRASH_AT")
            .ok()
            .filter(|v| !v.is_empty());
        if let Some(v) = &v {
            tracing::warn!(point = %v, "TEST CRASH POINT ARMED: this broker kills itself there (ZG_BROKER_TEST_CRASH_AT)");
        }
        Self(v)
    }

    /// Dies here when armed for `point`.
    pub fn hit(&self, point: &str) {
        if self.0.as_deref() == Some(point) {
            tracing::warn!(point, "test crash point reached: SIGKILL");
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            // SIGKILL cannot be caught; should it fail to send, never continue past the point.
            std::process::abort();
        }
    }
}

/// FineTuningServing for one provider (the broker's wallet), over a zg-chain [`Client`] that signs as it.
#[derive(Debug, Clone)]
pub struct ChainAdapter {
    client: Client,
    provider: Address,
    domain: SettlementDomain,
    /// One transaction at a time from the wallet: alloy reads the nonce from the node for each send, so two
    /// concurrent sends would race for it.
    send: Arc<tokio::sync::Mutex<()>>,
    crash: CrashPoints,
}

fn failure(e: zg_chain::Error) -> ChainFailure {
    if let Some(r) = e.revert() {
        return ChainFailure::Reverted {
            name: r.name.clone(),
            message: e.to_string(),
        };
    }
    match e {
        zg_chain::Error::RevealWindowClosed { .. } => ChainFailure::RevealWindowClosed(e.to_string()),
        zg_chain::Error::Unreachable { .. }
        | zg_chain::Error::ReceiptTimeout { .. }
        | zg_chain::Error::Rpc { .. } => ChainFailure::Transient(e.to_string()),
        other => ChainFailure::Other(other.to_string()),
    }
}

impl ChainAdapter {
    /// An adapter signing as `client`'s signer.
    pub fn new(client: Client, crash: CrashPoints) -> Result<Self> {
        let provider = client.signer_address().map_err(|e| Error::Chain {
            op: "wallet",
            source: Box::new(e),
        })?;
        let domain = SettlementDomain {
            chain_id: client.chain_id(),
            contract: client.addresses().fine_tuning,
        };
        Ok(Self {
            client,
            provider,
            domain,
            send: Arc::default(),
            crash,
        })
    }

    /// The chain client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The crash points.
    pub fn crash(&self) -> &CrashPoints {
        &self.crash
    }

    /// Makes sure the LedgerManager knows FineTuningServing (customers fund sub-accounts through it). When it
    /// does not and the wallet owns the ledger (a devnet, a private deployment), registers it as
    /// `fine-tuning-v1.0`; otherwise says who must.
    pub async fn ensure_ledger_registration(&self) -> Result<()> {
        let ledger = self.client.ledger();
        let ft = self.client.addresses().fine_tuning;
        match ledger.service_info(ft).await {
            Ok(i) if i.full_name == ServiceKind::FineTuning.full_name() => return Ok(()),
            Ok(i) if !i.full_name.is_empty() => {
                return Err(Error::Config {
                    field: "chain.fine_tuning",
                    value: format!("{ft:#x}"),
                    fix: format!(
                        "LedgerManager registered this contract as {:?}, not fine-tuning-v1.0: check --fine-tuning-ca",
                        i.full_name
                    ),
                });
            }
            Ok(_) | Err(_) => {}
        }
        let owner = ledger.owner().await.map_err(|e| Error::Chain {
            op: "LedgerManager.owner",
            source: Box::new(e),
        })?;
        if owner != self.provider {
            return Err(Error::Config {
                field: "chain.fine_tuning",
                value: format!("{ft:#x}"),
                fix: format!(
                    "the LedgerManager does not list FineTuningServing; its owner {owner} must call \
                     registerService(\"fine-tuning\", \"v1.0\", {ft:#x}, …)"
                ),
            });
        }
        let _guard = self.send.lock().await;
        let tx = ledger
            .register_service("fine-tuning", "v1.0", ft, "fine-tuning")
            .await
            .map_err(|e| Error::Chain {
                op: "LedgerManager.registerService",
                source: Box::new(e),
            })?;
        tracing::info!(tx = %tx.tx, "registered FineTuningServing with the LedgerManager");
        Ok(())
    }

    /// Refuses to serve with a TEE signer the contract owner already bound to another provider: the contract
    /// rejects every settlement it signs here (`TEESignerBoundToOtherProvider`), so tasks would run and never be
    /// paid. Who meets this: a provider that copied another's data dir or sealed key; the fix is a key of its own.
    pub async fn check_signer_binding(&self, signer: Address) -> Result<()> {
        let bound = self
            .client
            .fine_tuning()
            .tee_signer_provider(signer)
            .await
            .map_err(|e| Error::Chain {
                op: "FineTuningServing.teeSignerProvider",
                source: Box::new(e),
            })?;
        match bound {
            Some(p) if p != self.provider => Err(Error::Config {
                field: "tee",
                value: signer.to_checksum(None),
                fix: format!(
                    "TEE signer {} already serves provider {} on FineTuningServing (one signer serves one \
                     provider for good); this broker (provider {}) needs its own TEE key: a fresh data dir \
                     (simulated) or its own dstack app",
                    signer.to_checksum(None),
                    p.to_checksum(None),
                    self.provider.to_checksum(None)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Registers or updates the service (`addOrUpdateService`), paying `stake` when it is new. Returns the
    /// service as the chain now holds it.
    pub async fn register(
        &self,
        params: &FineTuningServiceParams,
        stake: Amount,
    ) -> zg_chain::Result<FineTuningService> {
        let ft = self.client.fine_tuning();
        let existing = ft.get_service(self.provider).await?;
        let unchanged = existing.as_ref().is_some_and(|s| {
            s.url == params.url
                && s.quota == params.quota
                && s.price_per_token == params.price_per_token
                && s.occupied == params.occupied
                && s.models == params.models
                && s.tee_signer == params.tee_signer
        });
        if unchanged {
            tracing::info!("fine-tuning service already registered with these settings");
        } else {
            let stake = if existing.is_some() {
                Amount(U256::ZERO)
            } else {
                stake
            };
            let _guard = self.send.lock().await;
            let tx = ft.add_or_update_service(params, stake).await?;
            tracing::info!(tx = %tx.tx, "addOrUpdateService");
        }
        ft.get_service(self.provider)
            .await?
            .ok_or_else(|| zg_chain::Error::Rpc {
                call: "FineTuningServing.getService".into(),
                reason: "no service right after a successful addOrUpdateService".into(),
            })
    }
}

impl FineTuningChain for ChainAdapter {
    fn provider(&self) -> Address {
        self.provider
    }

    fn domain(&self) -> SettlementDomain {
        self.domain
    }

    async fn account(&self, user: Address) -> Result<Option<SubAccount>, ChainFailure> {
        let a = self
            .client
            .fine_tuning()
            .get_account(user, self.provider)
            .await
            .map_err(failure)?;
        Ok(a.map(|a| SubAccount {
            balance: a.balance.0,
            pending_refund: a.pending_refund.0,
            nonce: a.nonce,
            acknowledged: a.acknowledged,
        }))
    }

    async fn deliverable(&self, user: Address, id: &str) -> Result<Option<DeliverableState>, ChainFailure> {
        match self
            .client
            .fine_tuning()
            .get_deliverable(user, self.provider, id)
            .await
        {
            Ok(d) => Ok(Some(DeliverableState {
                model_root_hash: d.model_root_hash,
                acknowledged: d.acknowledged,
                settled: d.settled,
                secret_revealed: !d.encrypted_secret.is_empty(),
            })),
            Err(e) => match e.revert() {
                Some(r) if r.name == "DeliverableNotExists" || r.name == "AccountNotExists" => Ok(None),
                _ => Err(failure(e)),
            },
        }
    }

    async fn add_deliverable(&self, user: Address, id: &str, root: &Bytes) -> Result<B256, ChainFailure> {
        let _guard = self.send.lock().await;
        let r = self
            .client
            .fine_tuning()
            .add_deliverable(user, id, root.clone())
            .await
            .map_err(failure)?;
        self.crash.hit("add-deliverable-sent");
        Ok(r.tx)
    }

    async fn settle(&self, s: &Settlement) -> Result<B256, ChainFailure> {
        let _guard = self.send.lock().await;
        let r = self
            .client
            .fine_tuning()
            .settle_fees(&TaskSettlement {
                id: s.id.clone(),
                encrypted_secret: s.encrypted_secret.clone(),
                model_root_hash: s.model_root_hash.clone(),
                nonce: s.nonce,
                signature: s.signature.clone(),
                task_fee: s.task_fee,
                user: s.user,
            })
            .await
            .map_err(failure)?;
        self.crash.hit("settle-sent");
        Ok(r.tx)
    }

    async fn penalty_percentage(&self) -> Result<u64, ChainFailure> {
        let p = self
            .client
            .fine_tuning()
            .penalty_percentage()
            .await
            .map_err(failure)?;
        Ok(u64::try_from(p).unwrap_or(100))
    }
}
