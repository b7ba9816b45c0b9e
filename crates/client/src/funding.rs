//! Money on chain for one customer: the balance with a provider (sub-account, amounts owed and paid) and
//! the top-ups that keep the sub-account ahead of the next request ([`crate::TopUpPolicy`]).
//!
//! Callers check the provider's signer first ([`crate::Client::ensure_funded`] does): this module moves
//! funds, it does not decide whom to trust.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy_primitives::{Address, U256};
use serde::Serialize;
use zg_chain::{Amount, ServiceKind, TxOutcome};

use crate::config::TopUpPolicy;
use crate::error::{Error, Result};
use crate::store::Store;

/// What the customer owes a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Sub-account balance on chain, neuron.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub sub_account: U256,
    /// Pending refunds on chain, neuron.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub pending_refund: U256,
    /// Sum of verified receipts (cumulative), neuron.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub owed: U256,
    /// Largest voucher signed so far, neuron.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub vouched: U256,
    /// Paid on chain through vouchers, neuron.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub paid: U256,
    /// `owed − paid`: what the provider may still collect.
    #[serde(serialize_with = "crate::dec::ser_dec")]
    pub unsettled: U256,
    /// Verified receipts counted.
    pub receipts: u64,
}

/// Funding view cached between chain reads: the available amount at the last check and `owed` then.
#[derive(Debug, Clone, Copy)]
struct Funding {
    available: U256,
    owed_at_check: U256,
}

/// Reads balances and tops up sub-accounts for one customer.
pub(crate) struct Funder {
    chain: zg_chain::Client,
    store: Store,
    me: Address,
    policy: TopUpPolicy,
    funding: Mutex<HashMap<Address, Funding>>,
    /// Serialises top-ups (two requests must not both transfer).
    topping: tokio::sync::Mutex<()>,
}

impl Funder {
    pub(crate) fn new(chain: zg_chain::Client, store: Store, me: Address, policy: TopUpPolicy) -> Self {
        Self {
            chain,
            store,
            me,
            policy,
            funding: Mutex::new(HashMap::new()),
            topping: tokio::sync::Mutex::new(()),
        }
    }

    /// Drops the cached view of the sub-account (the next check reads the chain).
    pub(crate) fn forget(&self, provider: Address) {
        if let Ok(mut m) = self.funding.lock() {
            m.remove(&provider);
        }
    }

    /// Creates the sub-account with one refill if there is none (top-up off: [`Error::NoSubAccount`]).
    pub(crate) async fn ensure_sub_account(&self, provider: Address) -> Result<()> {
        let acct = self
            .chain
            .inference()
            .get_account(self.me, provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        if acct.is_none() {
            if !self.policy.enabled {
                return Err(Error::NoSubAccount { provider });
            }
            self.transfer(provider, self.policy.refill).await?;
        }
        Ok(())
    }

    async fn transfer(&self, provider: Address, amount: U256) -> Result<TxOutcome> {
        let ledger = self
            .chain
            .ledger()
            .get_ledger(self.me)
            .await
            .map_err(Error::chain("getLedger"))?;
        let available = ledger.map(|l| l.available.0).unwrap_or_default();
        if available < amount {
            return Err(Error::InsufficientFunds {
                provider,
                needed: amount,
                available,
            });
        }
        tracing::info!(%provider, amount = %Amount(amount), "topping up the sub-account");
        self.chain
            .ledger()
            .transfer_fund(provider, ServiceKind::Inference, Amount(amount))
            .await
            .map_err(Error::chain("transferFund"))
    }

    /// The customer's balance with a provider: on-chain sub-account, and the amounts owed and paid.
    pub(crate) async fn balance(&self, provider: Address) -> Result<Balance> {
        let st = self.store.load(provider).await?;
        let inf = self.chain.inference();
        let acct = inf
            .get_account(self.me, provider)
            .await
            .map_err(Error::chain("getAccount"))?;
        let (paid, _) = inf
            .voucher_state(self.me, provider)
            .await
            .map_err(Error::chain("getVoucherState"))?;
        let (sub_account, pending_refund) = acct
            .map(|a| (a.balance.0, a.pending_refund.0))
            .unwrap_or_default();
        Ok(Balance {
            sub_account,
            pending_refund,
            owed: st.owed,
            vouched: st.vouched,
            paid,
            unsettled: st.owed.saturating_sub(paid),
            receipts: st.receipts,
        })
    }

    /// Makes sure the sub-account covers `fee_cap` on top of what is owed (see [`TopUpPolicy`]).
    /// Reads the chain only when the locally tracked headroom runs low. Returns whether it transferred.
    pub(crate) async fn ensure_funded(&self, provider: Address, fee_cap: U256) -> Result<bool> {
        let policy = self.policy;
        let need = fee_cap.saturating_add(policy.min_headroom);
        let owed = self.store.load(provider).await?.owed;
        let estimate = self.funding.lock().ok().and_then(|m| m.get(&provider).copied());
        if let Some(f) = estimate
            && f.available.saturating_sub(owed.saturating_sub(f.owed_at_check)) >= need
        {
            return Ok(false);
        }
        let _one = self.topping.lock().await;
        let b = self.balance(provider).await?;
        let available = b
            .sub_account
            .saturating_sub(b.pending_refund)
            .saturating_sub(b.unsettled);
        let mut transferred = false;
        let available = if available < need {
            if !policy.enabled {
                return Err(if b.sub_account.is_zero() {
                    Error::NoSubAccount { provider }
                } else {
                    Error::Provider {
                        status: 402,
                        kind: "insufficient_balance".into(),
                        message: format!(
                            "sub-account has {available} neuron free, the request may cost {fee_cap}: \
                             `zg transfer-fund --provider {provider} --amount <0G>`"
                        ),
                    }
                });
            }
            let amount = policy.refill.max(need.saturating_sub(available));
            self.transfer(provider, amount).await?;
            transferred = true;
            available.saturating_add(amount)
        } else {
            available
        };
        if let Ok(mut m) = self.funding.lock() {
            m.insert(
                provider,
                Funding {
                    available,
                    owed_at_check: b.owed,
                },
            );
        }
        Ok(transferred)
    }
}
