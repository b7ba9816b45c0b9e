//! Typed client for FineTuningServing: deliverables and their settlement (the key is revealed in the same
//! transaction that pays the provider).

use crate::{
    Amount, Client, Deliverable, Result, TeeSignerAcknowledgements, TxOutcome,
    bindings::FineTuningServing::{self, FineTuningServingInstance},
};
use alloy::{
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider as _},
};

/// FineTuningServing, bound to a [`Client`].
#[derive(Debug, Clone)]
pub struct FineTuning<'a> {
    client: &'a Client,
    contract: FineTuningServingInstance<DynProvider>,
}

/// What the provider's TEE signs to settle one task (EIP-712 `VerifierMessage`), plus the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSettlement {
    /// Task id.
    pub id: String,
    /// ECIES-wrapped AES key of the sealed model (revealed only if the customer acknowledged).
    pub encrypted_secret: Bytes,
    /// Storage root of the sealed model.
    pub model_root_hash: Bytes,
    /// Must exceed the account's nonce.
    pub nonce: U256,
    /// 65-byte TEE signature.
    pub signature: Bytes,
    /// Fee, neuron.
    pub task_fee: U256,
    /// Customer.
    pub user: Address,
}

/// A sub-account's refund freeze (`getRefundFreeze`): while `acknowledged_unsettled` is non-zero and the chain's
/// time is before `until`, matured refunds stay in the sub-account, so a settlement that reveals a key cannot
/// be made to revert by the customer's refund.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefundFreeze {
    /// End of the freeze (Unix seconds): `lockTime` after the customer's latest acknowledgement.
    pub until: u64,
    /// Deliverables the customer acknowledged that are not settled yet.
    pub acknowledged_unsettled: u64,
}

/// Seconds a reveal must leave before the freeze ends, at most: `min(REVEAL_MARGIN_SECS, lockTime / 4)`.
pub const REVEAL_MARGIN_SECS: u64 = 120;

/// The machine a fine-tuning provider offers (the contract's `Quota`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FineTuningQuota {
    /// CPU cores.
    pub cpu_count: U256,
    /// Memory, in the unit the provider publishes (0G providers use GB).
    pub node_memory: U256,
    /// GPUs.
    pub gpu_count: U256,
    /// Storage, in the unit the provider publishes (0G providers use GB).
    pub node_storage: U256,
    /// GPU model, e.g. `H100`.
    pub gpu_type: String,
}

/// What a fine-tuning provider registers with `addOrUpdateService`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FineTuningServiceParams {
    /// Base URL of the provider's fine-tuning API.
    pub url: String,
    /// The machine offered.
    pub quota: FineTuningQuota,
    /// Neuron per training token.
    pub price_per_token: U256,
    /// Whether the provider is busy (clients skip occupied providers).
    pub occupied: bool,
    /// Model names the provider fine-tunes (at most the contract's `MAX_MODELS`, 32).
    pub models: Vec<String>,
    /// The TEE's settlement signer (`settleFees` signatures and sealed files' tags recover to it).
    pub tee_signer: Address,
}

/// A customer's sub-account with one fine-tuning provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FineTuningAccount {
    /// Customer.
    pub user: Address,
    /// Provider.
    pub provider: Address,
    /// Last settlement nonce.
    pub nonce: U256,
    /// Balance.
    pub balance: Amount,
    /// Sum of unprocessed refunds.
    pub pending_refund: Amount,
    /// Whether the customer acknowledged the provider's current TEE signer (false again after the provider
    /// registers another signer).
    pub acknowledged: bool,
    /// Deliverables held for this customer.
    pub deliverables: Vec<Deliverable>,
}

/// A fine-tuning provider's service as the chain holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FineTuningService {
    /// Provider address.
    pub provider: Address,
    /// Base URL of the provider's fine-tuning API.
    pub url: String,
    /// The machine offered.
    pub quota: FineTuningQuota,
    /// Neuron per training token (0G's CLI labels it "Price Per Byte in Dataset").
    pub price_per_token: U256,
    /// Whether the provider is busy.
    pub occupied: bool,
    /// Model names the provider fine-tunes.
    pub models: Vec<String>,
    /// The TEE's settlement signer.
    pub tee_signer: Address,
    /// Whether the contract owner acknowledged that signer.
    pub tee_signer_acknowledged: bool,
}

fn ft_service(s: FineTuningServing::Service) -> FineTuningService {
    FineTuningService {
        provider: s.provider,
        url: s.url,
        quota: FineTuningQuota {
            cpu_count: s.quota.cpuCount,
            node_memory: s.quota.nodeMemory,
            gpu_count: s.quota.gpuCount,
            node_storage: s.quota.nodeStorage,
            gpu_type: s.quota.gpuType,
        },
        price_per_token: s.pricePerToken,
        occupied: s.occupied,
        models: s.models,
        tee_signer: s.teeSignerAddress,
        tee_signer_acknowledged: s.teeSignerAcknowledged,
    }
}

fn deliverable(d: FineTuningServing::Deliverable) -> Deliverable {
    Deliverable {
        id: d.id,
        model_root_hash: d.modelRootHash,
        encrypted_secret: d.encryptedSecret,
        acknowledged: d.acknowledged,
        timestamp: u64::try_from(d.timestamp).unwrap_or(u64::MAX),
        settled: d.settled,
    }
}

impl<'a> FineTuning<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Self {
            client,
            contract: FineTuningServing::new(client.addresses().fine_tuning, client.provider().clone()),
        }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// A customer's fine-tuning sub-account with a provider, or `None` if there is none.
    pub async fn get_account(&self, user: Address, provider: Address) -> Result<Option<FineTuningAccount>> {
        let exists = self
            .contract
            .accountExists(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("FineTuningServing.accountExists", e))?;
        if !exists {
            return Ok(None);
        }
        let a = self
            .contract
            .getAccount(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("FineTuningServing.getAccount", e))?;
        Ok(Some(FineTuningAccount {
            user: a.user,
            provider: a.provider,
            nonce: a.nonce,
            balance: Amount(a.balance),
            pending_refund: Amount(a.pendingRefund),
            acknowledged: a.acknowledged,
            deliverables: a.deliverables.into_iter().map(deliverable).collect(),
        }))
    }

    /// One provider's fine-tuning service, or `None` if it has none.
    pub async fn get_service(&self, provider: Address) -> Result<Option<FineTuningService>> {
        let r = self.contract.getService(provider).call().await;
        Ok(self
            .client
            .none_if_absent("FineTuningServing.getService", r, crate::inference::is_no_service)?
            .map(ft_service))
    }

    /// Every fine-tuning service.
    pub async fn list_services(&self) -> Result<Vec<FineTuningService>> {
        self.contract
            .getAllServices()
            .call()
            .await
            .map(|v| v.into_iter().map(ft_service).collect())
            .map_err(|e| self.client.contract_error("FineTuningServing.getAllServices", e))
    }

    /// Percentage of the task fee charged when a deliverable was never acknowledged.
    pub async fn penalty_percentage(&self) -> Result<U256> {
        self.contract.penaltyPercentage().call().await.map_err(|e| {
            self.client
                .contract_error("FineTuningServing.penaltyPercentage", e)
        })
    }

    /// Contract owner: acknowledges a provider's current TEE signer (after checking its attestation).
    /// `settleFees` needs it (`TEESignerNotAcknowledgedByOwner` otherwise).
    pub async fn acknowledge_tee_signer_by_owner(&self, provider: Address) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerByOwner(provider);
        self.client
            .send_outcome(call, "FineTuningServing.acknowledgeTEESignerByOwner")
            .await
    }

    /// Contract owner: acknowledges `signer` as the provider's TEE signer, only if it still is
    /// (`TEESignerChanged` otherwise).
    pub async fn acknowledge_tee_signer_address_by_owner(
        &self,
        provider: Address,
        signer: Address,
    ) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerAddressByOwner(provider, signer);
        self.client
            .send_outcome(call, "FineTuningServing.acknowledgeTEESignerAddressByOwner")
            .await
    }

    /// Customer: acknowledges `signer` as the provider's TEE signer for this sub-account, only if it still is
    /// (`TEESignerChanged` otherwise); use it after verifying `signer`'s attestation.
    pub async fn acknowledge_tee_signer_address(
        &self,
        provider: Address,
        signer: Address,
    ) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerAddress(provider, signer);
        self.client
            .send_outcome(call, "FineTuningServing.acknowledgeTEESignerAddress")
            .await
    }

    /// Contract owner: withdraws the acknowledgement of a provider's TEE signer; `settleFees` is refused
    /// until the owner acknowledges a signer again.
    pub async fn revoke_tee_signer_acknowledgement(&self, provider: Address) -> Result<TxOutcome> {
        let call = self.contract.revokeTEESignerAcknowledgement(provider);
        self.client
            .send_outcome(call, "FineTuningServing.revokeTEESignerAcknowledgement")
            .await
    }

    /// Customer: acknowledges the provider's current TEE signer (`true`; its address is recorded and
    /// `settleFees` may charge this sub-account while it stays the provider's owner-acknowledged signer), or
    /// withdraws the acknowledgement (`false`; refused with `CannotRevokeWithNonZeroBalance` while that
    /// signer is still current and the sub-account holds funds).
    pub async fn acknowledge_tee_signer(&self, provider: Address, acknowledged: bool) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESigner(provider, acknowledged);
        self.client
            .send_outcome(call, "FineTuningServing.acknowledgeTEESigner")
            .await
    }

    /// The contract owner (who acknowledges providers' TEE signers).
    pub async fn owner(&self) -> Result<Address> {
        self.contract
            .owner()
            .call()
            .await
            .map_err(|e| self.client.contract_error("FineTuningServing.owner", e))
    }

    /// Who vouches for `provider`'s current TEE signer, as seen for `user`'s sub-account (see
    /// [`TeeSignerAcknowledgements`]); `settleFees` charges `user` only when it is `settleable`.
    pub async fn tee_signer_acknowledgements(
        &self,
        user: Address,
        provider: Address,
    ) -> Result<TeeSignerAcknowledgements> {
        let r = self
            .contract
            .getTEESignerAcknowledgements(user, provider)
            .call()
            .await
            .map_err(|e| {
                self.client
                    .contract_error("FineTuningServing.getTEESignerAcknowledgements", e)
            })?;
        Ok(TeeSignerAcknowledgements {
            signer: r.teeSigner,
            owner_acknowledged: r.ownerAcknowledged,
            user_acknowledged_signer: r.userAcknowledgedSigner,
            settleable: r.settleable,
        })
    }

    /// The TEE signer a fine-tuning provider registered (its sealed files' tags must recover to it), or `None`
    /// if it has no service.
    pub async fn tee_signer(&self, provider: Address) -> Result<Option<Address>> {
        let r = self.contract.getService(provider).call().await;
        Ok(self
            .client
            .none_if_absent("FineTuningServing.getService", r, crate::inference::is_no_service)?
            .map(|s| s.teeSignerAddress))
    }

    /// Provider: creates its service, paying `stake` (at least the contract's `MIN_PROVIDER_STAKE`), or updates
    /// it (then `stake` must be zero: `CannotAddStakeWhenUpdating`). Changing the TEE signer clears the owner's
    /// acknowledgement of it.
    pub async fn add_or_update_service(
        &self,
        params: &FineTuningServiceParams,
        stake: Amount,
    ) -> Result<TxOutcome> {
        let q = &params.quota;
        let quota = FineTuningServing::Quota {
            cpuCount: q.cpu_count,
            nodeMemory: q.node_memory,
            gpuCount: q.gpu_count,
            nodeStorage: q.node_storage,
            gpuType: q.gpu_type.clone(),
        };
        let call = self
            .contract
            .addOrUpdateService(
                params.url.clone(),
                quota,
                params.price_per_token,
                params.occupied,
                params.models.clone(),
                params.tee_signer,
            )
            .value(stake.0);
        self.client
            .send_outcome(call, "FineTuningServing.addOrUpdateService")
            .await
    }

    /// One deliverable.
    pub async fn get_deliverable(&self, user: Address, provider: Address, id: &str) -> Result<Deliverable> {
        self.contract
            .getDeliverable(user, provider, id.to_owned())
            .call()
            .await
            .map(deliverable)
            .map_err(|e| self.client.contract_error("FineTuningServing.getDeliverable", e))
    }

    /// All deliverables of a (customer, provider) pair.
    pub async fn get_deliverables(&self, user: Address, provider: Address) -> Result<Vec<Deliverable>> {
        self.contract
            .getDeliverables(user, provider)
            .call()
            .await
            .map(|v| v.into_iter().map(deliverable).collect())
            .map_err(|e| self.client.contract_error("FineTuningServing.getDeliverables", e))
    }

    /// Provider: records a deliverable for a customer's task.
    pub async fn add_deliverable(
        &self,
        user: Address,
        id: &str,
        model_root_hash: Bytes,
    ) -> Result<TxOutcome> {
        let call = self.contract.addDeliverable(user, id.to_owned(), model_root_hash);
        self.client
            .send_outcome(call, "FineTuningServing.addDeliverable")
            .await
    }

    /// Customer: acknowledges a deliverable after checking it, so settlement reveals its key.
    pub async fn acknowledge_deliverable(&self, provider: Address, id: &str) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeDeliverable(provider, id.to_owned());
        self.client
            .send_outcome(call, "FineTuningServing.acknowledgeDeliverable")
            .await
    }

    /// Provider: drops an unacknowledged, unsettled deliverable without charging.
    pub async fn abandon_deliverable(&self, user: Address, id: &str) -> Result<TxOutcome> {
        let call = self.contract.abandonDeliverable(user, id.to_owned());
        self.client
            .send_outcome(call, "FineTuningServing.abandonDeliverable")
            .await
    }

    /// The refund lock time in seconds (also the length of a refund freeze).
    pub async fn lock_time(&self) -> Result<u64> {
        self.contract
            .lockTime()
            .call()
            .await
            .map(|v| u64::try_from(v).unwrap_or(u64::MAX))
            .map_err(|e| self.client.contract_error("FineTuningServing.lockTime", e))
    }

    /// The refund freeze of `user`'s sub-account with `provider` (see [`RefundFreeze`]).
    pub async fn refund_freeze(&self, user: Address, provider: Address) -> Result<RefundFreeze> {
        let r = self
            .contract
            .getRefundFreeze(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("FineTuningServing.getRefundFreeze", e))?;
        Ok(RefundFreeze {
            until: u64::try_from(r.until).unwrap_or(u64::MAX),
            acknowledged_unsettled: u64::try_from(r.acknowledgedUnsettled).unwrap_or(u64::MAX),
        })
    }

    /// The provider `signer` serves on this contract (the first the owner acknowledged it for), or `None`.
    pub async fn tee_signer_provider(&self, signer: Address) -> Result<Option<Address>> {
        let p = self
            .contract
            .teeSignerProvider(signer)
            .call()
            .await
            .map_err(|e| {
                self.client
                    .contract_error("FineTuningServing.teeSignerProvider", e)
            })?;
        Ok((!p.is_zero()).then_some(p))
    }

    /// Provider: settles a task (pays the provider; reveals the key if the customer acknowledged).
    ///
    /// A settlement that carries a key is sent only while the customer's refund freeze has at least
    /// `min(REVEAL_MARGIN_SECS, lockTime / 4)` seconds left ([`Error::RevealWindowClosed`] otherwise): the
    /// calldata makes the key public even if the transaction reverts, and only inside the freeze can the
    /// customer not make it revert by processing a matured refund first. (If the transaction waits in the
    /// mempool past the freeze that can still happen: the margin is for inclusion.)
    pub async fn settle_fees(&self, s: &TaskSettlement) -> Result<TxOutcome> {
        if !s.encrypted_secret.is_empty() {
            self.check_reveal_window(s.user).await?;
        }
        let input = FineTuningServing::VerifierInput {
            id: s.id.clone(),
            encryptedSecret: s.encrypted_secret.clone(),
            modelRootHash: s.model_root_hash.clone(),
            nonce: s.nonce,
            signature: s.signature.clone(),
            taskFee: s.task_fee,
            user: s.user,
        };
        self.client
            .send_outcome(self.contract.settleFees(input), "FineTuningServing.settleFees")
            .await
    }

    /// Refuses a reveal to `user` unless its refund freeze still has the margin left (see [`Self::settle_fees`]).
    async fn check_reveal_window(&self, user: Address) -> Result<()> {
        let provider = self.client.signer_address()?;
        let freeze = self.refund_freeze(user, provider).await?;
        let lock = self.lock_time().await?;
        let margin = REVEAL_MARGIN_SECS.min(lock / 4);
        let block = self
            .client
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| self.client.rpc("eth_getBlockByNumber(latest)", e))?
            .ok_or_else(|| self.client.rpc("eth_getBlockByNumber(latest)", "no latest block"))?;
        let now = block.header.timestamp;
        // With nothing acknowledged the contract refuses a secret itself (`SecretShouldBeEmpty`) when the
        // transaction is estimated, before anything is broadcast.
        if freeze.acknowledged_unsettled != 0 && now.saturating_add(margin) >= freeze.until {
            return Err(crate::Error::RevealWindowClosed {
                user,
                provider,
                until: freeze.until,
                now,
                margin,
            });
        }
        Ok(())
    }
}
