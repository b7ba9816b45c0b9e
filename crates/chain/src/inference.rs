//! Typed client for InferenceServing: services, sub-accounts, TEE signer acknowledgement, token revocation,
//! and both settlement paths (TEE-signed batches and customer-signed vouchers).

use crate::{
    Amount, Client, InferenceAccount, InferenceService, Refund, Result, ServiceParams, SettledItem,
    SettlementOutcome, SettlementPreview, SettlementStatus, SignedVoucher, TeeSettlement,
    TeeSignerAcknowledgements, TxOutcome,
    bindings::InferenceServing::{self, InferenceServingInstance},
    client::outcome,
};
use alloy::{
    primitives::{Address, B256, U256},
    providers::DynProvider,
    rpc::types::TransactionReceipt,
};

/// InferenceServing, bound to a [`Client`].
#[derive(Debug, Clone)]
pub struct Inference<'a> {
    client: &'a Client,
    contract: InferenceServingInstance<DynProvider>,
}

fn to_u64(v: U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn service(s: InferenceServing::Service) -> InferenceService {
    InferenceService {
        provider: s.provider,
        service_type: s.serviceType,
        url: s.url,
        input_price: s.inputPrice,
        output_price: s.outputPrice,
        updated_at: to_u64(s.updatedAt),
        model: s.model,
        verifiability: s.verifiability,
        additional_info: s.additionalInfo,
        tee_signer: s.teeSignerAddress,
        tee_signer_acknowledged: s.teeSignerAcknowledged,
    }
}

/// The revert both serving contracts use for a provider without a service (`ServiceNotExist`).
pub(crate) fn is_no_service(error: &str) -> bool {
    error.starts_with("ServiceNot")
}

fn tee_item(s: &TeeSettlement) -> InferenceServing::TEESettlementData {
    InferenceServing::TEESettlementData {
        user: s.user,
        provider: s.provider,
        totalFee: s.total_fee,
        requestsHash: s.requests_hash,
        nonce: s.nonce,
        signature: s.signature.clone(),
    }
}

fn voucher_item(v: &SignedVoucher) -> InferenceServing::Voucher {
    InferenceServing::Voucher {
        user: v.user,
        provider: v.provider,
        cumulativeAmount: v.cumulative_amount,
        nonce: v.nonce,
        signature: v.signature.clone(),
    }
}

impl<'a> Inference<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Self {
            client,
            contract: InferenceServing::new(client.addresses().inference, client.provider().clone()),
        }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// One provider's service, or `None` if it has none.
    pub async fn get_service(&self, provider: Address) -> Result<Option<InferenceService>> {
        let r = self.contract.getService(provider).call().await;
        Ok(self
            .client
            .none_if_absent("InferenceServing.getService", r, is_no_service)?
            .map(service))
    }

    /// All services (paged by 50 internally).
    pub async fn list_services(&self) -> Result<Vec<InferenceService>> {
        let mut out = Vec::new();
        let page = U256::from(50);
        loop {
            let r = self
                .contract
                .getAllServices(U256::from(out.len()), page)
                .call()
                .await
                .map_err(|e| self.client.contract_error("InferenceServing.getAllServices", e))?;
            let got = r.services.len();
            out.extend(r.services.into_iter().map(service));
            if got == 0 || U256::from(out.len()) >= r.total {
                return Ok(out);
            }
        }
    }

    /// A sub-account, or `None` if the customer has none with this provider.
    pub async fn get_account(&self, user: Address, provider: Address) -> Result<Option<InferenceAccount>> {
        let exists = self
            .contract
            .accountExists(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("InferenceServing.accountExists", e))?;
        if !exists {
            return Ok(None);
        }
        let a = self
            .contract
            .getAccount(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("InferenceServing.getAccount", e))?;
        Ok(Some(InferenceAccount {
            user: a.user,
            provider: a.provider,
            nonce: a.nonce,
            balance: Amount(a.balance),
            pending_refund: Amount(a.pendingRefund),
            refunds: a
                .refunds
                .into_iter()
                .map(|r| Refund {
                    index: r.index,
                    amount: Amount(r.amount),
                    created_at: to_u64(r.createdAt),
                    processed: r.processed,
                })
                .collect(),
            additional_info: a.additionalInfo,
            acknowledged: a.acknowledged,
            generation: a.generation,
            revoked_bitmap: a.revokedBitmap,
        }))
    }

    /// Seconds a refund stays locked.
    pub async fn lock_time(&self) -> Result<u64> {
        self.contract
            .lockTime()
            .call()
            .await
            .map(to_u64)
            .map_err(|e| self.client.contract_error("InferenceServing.lockTime", e))
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
                    .contract_error("InferenceServing.teeSignerProvider", e)
            })?;
        Ok((!p.is_zero()).then_some(p))
    }

    /// Registers or updates the sender's service, staking `stake` (the first registration needs the minimum).
    pub async fn add_or_update_service(&self, params: &ServiceParams, stake: Amount) -> Result<TxOutcome> {
        let p = InferenceServing::ServiceParams {
            serviceType: params.service_type.clone(),
            url: params.url.clone(),
            model: params.model.clone(),
            verifiability: params.verifiability.clone(),
            inputPrice: params.input_price,
            outputPrice: params.output_price,
            additionalInfo: params.additional_info.clone(),
            teeSignerAddress: params.tee_signer,
        };
        let call = self.contract.addOrUpdateService(p).value(stake.0);
        self.client
            .send_outcome(call, "InferenceServing.addOrUpdateService")
            .await
    }

    /// Removes the sender's service and returns its stake.
    pub async fn remove_service(&self) -> Result<TxOutcome> {
        self.client
            .send_outcome(self.contract.removeService(), "InferenceServing.removeService")
            .await
    }

    /// Contract owner: acknowledges a provider's TEE signer.
    pub async fn acknowledge_tee_signer_by_owner(&self, provider: Address) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerByOwner(provider);
        self.client
            .send_outcome(call, "InferenceServing.acknowledgeTEESignerByOwner")
            .await
    }

    /// Contract owner: acknowledges `signer` as the provider's TEE signer, only if it still is
    /// (`TEESignerChanged` otherwise): name the signer whose attestation was checked, so a signer swapped in
    /// meanwhile is never acknowledged.
    pub async fn acknowledge_tee_signer_address_by_owner(
        &self,
        provider: Address,
        signer: Address,
    ) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerAddressByOwner(provider, signer);
        self.client
            .send_outcome(call, "InferenceServing.acknowledgeTEESignerAddressByOwner")
            .await
    }

    /// Customer: acknowledges `signer` as the provider's TEE signer for this sub-account, only if it still is
    /// (`TEESignerChanged` otherwise). A client that verified the attestation of `signer` should use this rather
    /// than [`Inference::acknowledge_tee_signer`], which records whatever signer is current when the
    /// transaction runs.
    pub async fn acknowledge_tee_signer_address(
        &self,
        provider: Address,
        signer: Address,
    ) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESignerAddress(provider, signer);
        self.client
            .send_outcome(call, "InferenceServing.acknowledgeTEESignerAddress")
            .await
    }

    /// Contract owner: withdraws the acknowledgement of a provider's TEE signer. TEE-signed settlements of
    /// that provider are refused (status [`SettlementStatus::SignerNotAcknowledgedByOwner`]) until the owner
    /// acknowledges a signer again.
    pub async fn revoke_tee_signer_acknowledgement(&self, provider: Address) -> Result<TxOutcome> {
        let call = self.contract.revokeTEESignerAcknowledgement(provider);
        self.client
            .send_outcome(call, "InferenceServing.revokeTEESignerAcknowledgement")
            .await
    }

    /// The contract owner (who acknowledges providers' TEE signers).
    pub async fn owner(&self) -> Result<Address> {
        self.contract
            .owner()
            .call()
            .await
            .map_err(|e| self.client.contract_error("InferenceServing.owner", e))
    }

    /// Who vouches for `provider`'s current TEE signer, as seen for `user`'s sub-account: the signer, the
    /// owner's acknowledgement, the signer `user` acknowledged, and whether a TEE batch could charge `user`.
    /// Long-running clients poll this to notice a signer swap.
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
                    .contract_error("InferenceServing.getTEESignerAcknowledgements", e)
            })?;
        Ok(TeeSignerAcknowledgements {
            signer: r.teeSigner,
            owner_acknowledged: r.ownerAcknowledged,
            user_acknowledged_signer: r.userAcknowledgedSigner,
            settleable: r.settleable,
        })
    }

    /// Customer: acknowledges the provider's current TEE signer (`true`: its address is recorded, and TEE
    /// batches may charge this sub-account while it stays the provider's owner-acknowledged signer), or
    /// withdraws the acknowledgement (`false`; refused with `CannotRevokeWithNonZeroBalance` while the
    /// acknowledged signer is still current and the sub-account holds funds).
    pub async fn acknowledge_tee_signer(&self, provider: Address, acknowledged: bool) -> Result<TxOutcome> {
        let call = self.contract.acknowledgeTEESigner(provider, acknowledged);
        self.client
            .send_outcome(call, "InferenceServing.acknowledgeTEESigner")
            .await
    }

    /// Customer: revokes one session-token id.
    pub async fn revoke_token(&self, provider: Address, token_id: u8) -> Result<TxOutcome> {
        let call = self.contract.revokeToken(provider, token_id);
        self.client
            .send_outcome(call, "InferenceServing.revokeToken")
            .await
    }

    /// Customer: revokes all session tokens (bumps the generation).
    pub async fn revoke_all_tokens(&self, provider: Address) -> Result<TxOutcome> {
        let call = self.contract.revokeAllTokens(provider);
        self.client
            .send_outcome(call, "InferenceServing.revokeAllTokens")
            .await
    }

    /// What `settleFeesWithTEE` would do with `items`, without sending anything.
    pub async fn preview_settlement_results(&self, items: &[TeeSettlement]) -> Result<SettlementPreview> {
        let r = self
            .contract
            .previewSettlementResults(items.iter().map(tee_item).collect())
            .call()
            .await
            .map_err(|e| {
                self.client
                    .contract_error("InferenceServing.previewSettlementResults", e)
            })?;
        Ok(SettlementPreview {
            failed: r
                .failedUsers
                .into_iter()
                .zip(r.failureReasons.into_iter().map(SettlementStatus::from_code))
                .collect(),
            partial: r.partialUsers.into_iter().zip(r.partialAmounts).collect(),
        })
    }

    /// Sends a `settleFeesWithTEE` batch without waiting; pair with [`Inference::settlement_outcome`].
    pub async fn submit_settle_fees_with_tee(&self, items: &[TeeSettlement]) -> Result<B256> {
        let call = self
            .contract
            .settleFeesWithTEE(items.iter().map(tee_item).collect());
        self.client
            .submit(call, "InferenceServing.settleFeesWithTEE")
            .await
    }

    /// Settles a TEE-signed batch and waits for it.
    pub async fn settle_fees_with_tee(&self, items: &[TeeSettlement]) -> Result<SettlementOutcome> {
        let tx = self.submit_settle_fees_with_tee(items).await?;
        self.settlement_outcome(tx).await
    }

    /// Sends a `settleVouchers` batch without waiting; pair with [`Inference::settlement_outcome`].
    pub async fn submit_settle_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<B256> {
        let call = self
            .contract
            .settleVouchers(vouchers.iter().map(voucher_item).collect());
        self.client.submit(call, "InferenceServing.settleVouchers").await
    }

    /// Settles customer-signed vouchers and waits for it.
    pub async fn settle_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<SettlementOutcome> {
        let tx = self.submit_settle_vouchers(vouchers).await?;
        self.settlement_outcome(tx).await
    }

    /// Waits for a settlement transaction (sent now or before a restart) and reads its per-user results.
    pub async fn settlement_outcome(&self, tx: B256) -> Result<SettlementOutcome> {
        let receipt = self.client.wait_for(tx, "InferenceServing settlement").await?;
        Ok(settlement_results(&receipt))
    }

    /// Finds the result of the `settleFeesWithTEE` item for (`user`, `nonce`) that the chain accepted (status
    /// success or partial), searching from block `from_block` (the block the settlement was prepared at: it
    /// cannot have landed earlier) to the latest, in windows of [`Inference::MAX_LOG_RANGE`] blocks, since public
    /// RPC nodes cap the range of `eth_getLogs`: what a settler needs after a crash lost the transaction hash.
    ///
    /// `TEESettlementResult` does not carry the nonce, so this reads the user's result events, decodes the
    /// inputs of the transactions that emitted them, and pairs items with events in order (one event per item).
    pub async fn find_tee_settlement(
        &self,
        user: Address,
        nonce: U256,
        from_block: u64,
    ) -> Result<Option<SettledItem>> {
        use alloy::{
            consensus::Transaction as _,
            providers::Provider as _,
            rpc::types::Filter,
            sol_types::{SolCall, SolEvent},
        };
        let rpc = self.client.provider();
        let latest = rpc
            .get_block_number()
            .await
            .map_err(|e| self.client.rpc("eth_blockNumber", e))?;
        let mut start = from_block;
        while start <= latest {
            let end = start.saturating_add(Self::MAX_LOG_RANGE - 1).min(latest);
            let filter = Filter::new()
                .address(self.address())
                .event_signature(InferenceServing::TEESettlementResult::SIGNATURE_HASH)
                .topic1(user.into_word())
                .from_block(start)
                .to_block(end);
            let mut txs: Vec<B256> = rpc
                .get_logs(&filter)
                .await
                .map_err(|e| self.client.rpc("eth_getLogs", e))?
                .iter()
                .filter_map(|l| l.transaction_hash)
                .collect();
            txs.dedup();
            for tx in txs {
                let t = rpc
                    .get_transaction_by_hash(tx)
                    .await
                    .map_err(|e| self.client.rpc("eth_getTransactionByHash", e))?;
                let (Some(t), Some(receipt)) = (t, self.client.receipt(tx).await?) else {
                    continue;
                };
                let Ok(call) = InferenceServing::settleFeesWithTEECall::abi_decode(t.input()) else {
                    continue;
                };
                let events = receipt
                    .inner
                    .logs()
                    .iter()
                    .filter_map(|l| l.log_decode::<InferenceServing::TEESettlementResult>().ok());
                for (item, ev) in call.settlements.iter().zip(events) {
                    let ev = ev.inner.data;
                    let status = SettlementStatus::from_code(ev.status);
                    if item.user == user && item.nonce == nonce && status.paid() {
                        return Ok(Some(SettledItem {
                            user,
                            status,
                            unsettled: Some(ev.unsettledAmount),
                            paid: None,
                        }));
                    }
                }
            }
            if end == u64::MAX {
                break;
            }
            start = end + 1;
        }
        Ok(None)
    }

    /// Most blocks one `eth_getLogs` call of [`Inference::find_tee_settlement`] spans (public RPC nodes commonly
    /// cap ranges at 10 000 blocks).
    pub const MAX_LOG_RANGE: u64 = 10_000;

    /// `(paid so far, last accepted voucher nonce)` for a (customer, provider) pair.
    pub async fn voucher_state(&self, user: Address, provider: Address) -> Result<(U256, U256)> {
        let r = self
            .contract
            .getVoucherState(user, provider)
            .call()
            .await
            .map_err(|e| self.client.contract_error("InferenceServing.getVoucherState", e))?;
        Ok((r.paid, r.nonce))
    }
}

/// Per-user results from the settlement events in a receipt.
pub(crate) fn settlement_results(receipt: &TransactionReceipt) -> SettlementOutcome {
    let mut results = Vec::new();
    for log in receipt.inner.logs() {
        if let Ok(e) = log.log_decode::<InferenceServing::TEESettlementResult>() {
            let d = e.inner.data;
            results.push(SettledItem {
                user: d.user,
                status: SettlementStatus::from_code(d.status),
                unsettled: Some(d.unsettledAmount),
                paid: None,
            });
        } else if let Ok(e) = log.log_decode::<InferenceServing::VoucherSettled>() {
            let d = e.inner.data;
            results.push(SettledItem {
                user: d.user,
                status: SettlementStatus::from_code(d.status),
                unsettled: None,
                paid: Some(d.paid),
            });
        }
    }
    let o = outcome(receipt);
    SettlementOutcome {
        tx: o.tx,
        block: o.block,
        gas_used: o.gas_used,
        results,
    }
}
