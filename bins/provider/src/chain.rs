//! The adapter between zg-billing and zg-chain: customers' accounts for admission
//! ([`AccountSource`]) and the settler's chain calls ([`SettlementChain`]), plus service registration.

use alloy_primitives::{Address, B256, U256};
use futures::future::BoxFuture;
use zg_billing::{
    BoxError, ChainAccount, SettlementChain, SignedVoucher, TeeItem, TeeItemResult, TokenState, TxResult,
    VoucherState,
};
use zg_chain::{Amount, Client, InferenceService, ServiceParams, TeeSettlement};

use crate::core::AccountSource;

/// InferenceServing for one provider, over a zg-chain [`Client`] that signs as the provider.
#[derive(Debug, Clone)]
pub struct ChainAdapter {
    client: Client,
    provider: Address,
}

fn boxed(e: zg_chain::Error) -> BoxError {
    Box::new(e)
}

fn tee_item(i: &TeeItem) -> TeeSettlement {
    TeeSettlement {
        user: i.user,
        provider: i.provider,
        total_fee: i.total_fee,
        requests_hash: i.requests_hash,
        nonce: i.nonce,
        signature: i.signature.clone(),
    }
}

impl ChainAdapter {
    /// An adapter for `provider` (the client's signer must be that provider).
    pub fn new(client: Client, provider: Address) -> Self {
        Self { client, provider }
    }

    /// The chain client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get_account(&self, user: Address) -> Result<Option<ChainAccount>, BoxError> {
        let a = self
            .client
            .inference()
            .get_account(user, self.provider)
            .await
            .map_err(boxed)?;
        Ok(a.map(|a| ChainAccount {
            balance: a.balance.0,
            pending_refund: a.pending_refund.0,
            nonce: a.nonce,
            tokens: TokenState {
                generation: a.generation,
                revoked_bitmap: a.revoked_bitmap,
            },
        }))
    }

    /// Registers or updates the service (`addOrUpdateService`), paying `stake` when it is new.
    /// Returns the service as the chain now holds it.
    pub async fn register(
        &self,
        params: &ServiceParams,
        stake: Amount,
    ) -> zg_chain::Result<InferenceService> {
        let inf = self.client.inference();
        let existing = inf.get_service(self.provider).await?;
        let unchanged = existing.as_ref().is_some_and(|s| {
            s.url == params.url
                && s.model == params.model
                && s.service_type == params.service_type
                && s.verifiability == params.verifiability
                && s.input_price == params.input_price
                && s.output_price == params.output_price
                && s.additional_info == params.additional_info
                && s.tee_signer == params.tee_signer
        });
        if unchanged {
            tracing::info!("service already registered with these settings");
        } else {
            let stake = if existing.is_some() {
                Amount(U256::ZERO)
            } else {
                stake
            };
            let tx = inf.add_or_update_service(params, stake).await?;
            tracing::info!(tx = %tx.tx, "addOrUpdateService");
        }
        inf.get_service(self.provider)
            .await?
            .ok_or_else(|| zg_chain::Error::Rpc {
                call: "InferenceServing.getService".into(),
                reason: "no service right after a successful addOrUpdateService".into(),
            })
    }
}

impl ChainAdapter {
    /// Whether the contract owner acknowledges this provider's current TEE signer. While it does not, logs a
    /// warning with the exact command the owner runs: until then 0G clients refuse the provider and TEE-signed
    /// settlements are refused on chain (status 7; issue 9). A failed read is logged and counts as "not yet".
    pub async fn warn_unless_owner_acknowledged(&self) -> bool {
        match self.client.inference().get_service(self.provider).await {
            Ok(Some(s)) if s.tee_signer_acknowledged => true,
            Ok(Some(s)) => {
                let command = self
                    .client
                    .owner_acknowledge_command(zg_chain::ServiceKind::Inference, self.provider);
                tracing::warn!(signer = %s.tee_signer, %command, "the TEE signer waits for the contract owner's acknowledgement: TEE-signed settlements are refused and 0G clients refuse this provider until the owner runs the command");
                false
            }
            Ok(None) => {
                tracing::warn!(provider = %self.provider, "no inference service registered for this provider");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read whether the owner acknowledged the TEE signer");
                false
            }
        }
    }
}

impl AccountSource for ChainAdapter {
    fn account(&self, user: Address) -> BoxFuture<'_, Result<Option<ChainAccount>, BoxError>> {
        Box::pin(self.get_account(user))
    }
}

impl SettlementChain for ChainAdapter {
    async fn account(&self, user: Address) -> Result<ChainAccount, BoxError> {
        Ok(self.get_account(user).await?.unwrap_or_default())
    }

    async fn voucher_state(&self, user: Address) -> Result<VoucherState, BoxError> {
        let (paid, nonce) = self
            .client
            .inference()
            .voucher_state(user, self.provider)
            .await
            .map_err(boxed)?;
        Ok(VoucherState { paid, nonce })
    }

    async fn preview_tee(&self, items: &[TeeItem]) -> Result<Vec<TeeItemResult>, BoxError> {
        let converted: Vec<_> = items.iter().map(tee_item).collect();
        let p = self
            .client
            .inference()
            .preview_settlement_results(&converted)
            .await
            .map_err(boxed)?;
        Ok(items
            .iter()
            .map(|i| {
                if let Some((_, s)) = p.failed.iter().find(|(u, _)| *u == i.user) {
                    TeeItemResult {
                        status: s.code(),
                        unsettled: i.total_fee,
                    }
                } else if let Some((_, amount)) = p.partial.iter().find(|(u, _)| *u == i.user) {
                    TeeItemResult {
                        status: 1,
                        unsettled: *amount,
                    }
                } else {
                    TeeItemResult {
                        status: 0,
                        unsettled: U256::ZERO,
                    }
                }
            })
            .collect())
    }

    async fn submit_tee(&self, items: &[TeeItem]) -> Result<B256, BoxError> {
        let converted: Vec<_> = items.iter().map(tee_item).collect();
        self.client
            .inference()
            .submit_settle_fees_with_tee(&converted)
            .await
            .map_err(boxed)
    }

    async fn submit_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<B256, BoxError> {
        let converted: Vec<_> = vouchers
            .iter()
            .map(|v| zg_chain::SignedVoucher {
                user: v.voucher.user,
                provider: v.voucher.provider,
                cumulative_amount: v.voucher.cumulativeAmount,
                nonce: v.voucher.nonce,
                signature: v.signature_bytes(),
            })
            .collect();
        self.client
            .inference()
            .submit_settle_vouchers(&converted)
            .await
            .map_err(boxed)
    }

    async fn wait_receipt(&self, tx_hash: B256) -> Result<TxResult, BoxError> {
        let o = match self.client.inference().settlement_outcome(tx_hash).await {
            Ok(o) => o,
            // A mined, reverted settlement paid nothing: the settler re-plans it.
            Err(zg_chain::Error::TransactionFailed { .. }) => {
                return Ok(TxResult {
                    success: false,
                    tee_results: vec![],
                });
            }
            Err(e) => return Err(boxed(e)),
        };
        Ok(TxResult {
            success: true,
            tee_results: o
                .results
                .iter()
                .filter_map(|r| {
                    r.unsettled.map(|u| {
                        (
                            r.user,
                            TeeItemResult {
                                status: r.status.code(),
                                unsettled: u,
                            },
                        )
                    })
                })
                .collect(),
        })
    }

    async fn find_tee_result(&self, user: Address, nonce: U256) -> Result<Option<TeeItemResult>, BoxError> {
        // Only needed after a crash that lost the transaction hash. Searching from genesis is fine on a devnet;
        // on a long chain, bound it by the block the settlement was prepared at (a follow-up).
        let found = self
            .client
            .inference()
            .find_tee_settlement(user, nonce, 0)
            .await
            .map_err(boxed)?;
        Ok(found.map(|r| TeeItemResult {
            status: r.status.code(),
            unsettled: r.unsettled.unwrap_or_default(),
        }))
    }
}
