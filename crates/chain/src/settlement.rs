//! The settlement adapter (feature `billing`): zg-billing's [`SettlementChain`] over InferenceServing for one
//! provider. It lives here, not in the provider binary, so that zg-billing's own anvil tests run the same
//! adapter the provider runs, without a library depending on a binary; and not in zg-billing, which stays free
//! of any RPC stack.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use zg_billing::{
    BoxError, ChainAccount, SettlementChain, SignedVoucher, TeeItem, TeeItemResult, TokenState, TxResult,
    VoucherState,
};

use crate::{Client, Error, Result, TeeSettlement};

/// InferenceServing for one provider, over a [`Client`] that signs as that provider.
#[derive(Debug, Clone)]
pub struct SettlementAdapter {
    client: Client,
    provider: Address,
}

fn boxed(e: Error) -> BoxError {
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

impl SettlementAdapter {
    /// An adapter for `provider` (the client's signer must be that provider to send settlements).
    pub fn new(client: Client, provider: Address) -> Self {
        Self { client, provider }
    }

    /// The chain client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The provider this adapter settles for.
    pub fn provider(&self) -> Address {
        self.provider
    }

    /// `getAccount(user, provider)` as zg-billing sees it; `None` when the customer has no sub-account.
    pub async fn get_account(&self, user: Address) -> Result<Option<ChainAccount>> {
        let a = self.client.inference().get_account(user, self.provider).await?;
        Ok(a.map(|a| ChainAccount {
            balance: a.balance.0,
            pending_refund: a.pending_refund.0,
            nonce: a.nonce,
            tokens: TokenState {
                generation: a.generation,
                revoked_bitmap: a.revoked_bitmap,
            },
            tee_signer_acknowledged: a.acknowledged,
        }))
    }
}

impl SettlementChain for SettlementAdapter {
    async fn account(&self, user: Address) -> std::result::Result<ChainAccount, BoxError> {
        Ok(self.get_account(user).await.map_err(boxed)?.unwrap_or_default())
    }

    async fn voucher_state(&self, user: Address) -> std::result::Result<VoucherState, BoxError> {
        let (paid, nonce) = self
            .client
            .inference()
            .voucher_state(user, self.provider)
            .await
            .map_err(boxed)?;
        Ok(VoucherState { paid, nonce })
    }

    async fn preview_tee(&self, items: &[TeeItem]) -> std::result::Result<Vec<TeeItemResult>, BoxError> {
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

    async fn submit_tee(&self, items: &[TeeItem]) -> std::result::Result<B256, BoxError> {
        let converted: Vec<_> = items.iter().map(tee_item).collect();
        self.client
            .inference()
            .submit_settle_fees_with_tee(&converted)
            .await
            .map_err(boxed)
    }

    async fn submit_vouchers(&self, vouchers: &[SignedVoucher]) -> std::result::Result<B256, BoxError> {
        let converted: Vec<_> = vouchers
            .iter()
            .map(|v| crate::SignedVoucher {
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

    async fn wait_receipt(&self, tx_hash: B256) -> std::result::Result<TxResult, BoxError> {
        let o = match self.client.inference().settlement_outcome(tx_hash).await {
            Ok(o) => o,
            // A mined, reverted settlement paid nothing: the settler re-plans it.
            Err(Error::TransactionFailed { .. }) => {
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

    async fn find_tee_result(
        &self,
        user: Address,
        nonce: U256,
        from_block: u64,
    ) -> std::result::Result<Option<TeeItemResult>, BoxError> {
        // Only needed after a crash that lost the transaction hash; searched from the prepared block on.
        let found = self
            .client
            .inference()
            .find_tee_settlement(user, nonce, from_block)
            .await
            .map_err(boxed)?;
        Ok(found.map(|r| TeeItemResult {
            status: r.status.code(),
            unsettled: r.unsettled.unwrap_or_default(),
        }))
    }

    async fn block_number(&self) -> std::result::Result<u64, BoxError> {
        self.client
            .provider()
            .get_block_number()
            .await
            .map_err(|e| boxed(self.client.rpc("eth_blockNumber", e)))
    }
}
