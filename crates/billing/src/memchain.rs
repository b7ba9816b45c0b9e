//! An in-memory InferenceServing for examples, demos and tests: a [`SettlementChain`] that checks
//! settlements the way the contract does (TEE signature, provider, strictly increasing nonce, balance cap;
//! voucher signature, nonce and cumulative amount) without any node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use alloy_primitives::{Address, B256, Signature, U256, keccak256};

use crate::error::BoxError;
use crate::ledger::ChainAccount;
use crate::native::{Domains, SignedVoucher, TEESettlement};
use crate::settle::{SettlementChain, TeeItem, TeeItemResult, TxResult, VoucherState};

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<Address, ChainAccount>,
    vouchers: HashMap<Address, VoucherState>,
    earned: U256,
    txs: HashMap<B256, TxResult>,
    applied: Vec<(Address, U256, TeeItemResult)>,
    sent: u64,
}

/// An in-memory stand-in for the InferenceServing contract of one provider. Cheap to clone (shared state).
///
/// Not a chain: there are no blocks, gas or reverts, and every transaction is mined at once.
#[derive(Debug, Clone)]
pub struct MemoryChain {
    state: Arc<Mutex<State>>,
    provider: Address,
    tee_signer: Address,
    domains: Domains,
}

impl MemoryChain {
    /// A contract where `provider` settles, TEE items must be signed by `tee_signer`, under `domains`.
    pub fn new(provider: Address, tee_signer: Address, domains: Domains) -> Self {
        Self {
            state: Arc::default(),
            provider,
            tee_signer,
            domains,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every await point, so a panicked holder leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Credits `amount` to `user`'s sub-account with this provider, as a customer onboarded the 0G way (funded and
    /// acknowledged the TEE signer; see [`MemoryChain::set_acknowledged`]).
    pub fn deposit(&self, user: Address, amount: U256) {
        let mut s = self.state();
        let a = s.accounts.entry(user).or_default();
        a.balance = a.balance.saturating_add(amount);
        a.tee_signer_acknowledged = true;
    }

    /// Sets whether `user` acknowledged the TEE signer (`Account.acknowledged`); TEE items of a customer who did
    /// not are refused with status 8, as the contract does.
    pub fn set_acknowledged(&self, user: Address, acknowledged: bool) {
        self.state()
            .accounts
            .entry(user)
            .or_default()
            .tee_signer_acknowledged = acknowledged;
    }

    /// Everything paid to the provider so far.
    pub fn provider_earned(&self) -> U256 {
        self.state().earned
    }

    fn apply_tee(&self, s: &mut State, it: &TeeItem) -> TeeItemResult {
        let refuse = |status| TeeItemResult {
            status,
            unsettled: it.total_fee,
        };
        if it.provider != self.provider {
            return refuse(2);
        }
        let msg = TEESettlement {
            requestsHash: it.requests_hash,
            nonce: it.nonce,
            provider: it.provider,
            user: it.user,
            totalFee: it.total_fee,
        };
        let signer = Signature::from_raw(&it.signature).ok().and_then(|sig| {
            sig.recover_address_from_prehash(&self.domains.settlement_hash(&msg))
                .ok()
        });
        if signer != Some(self.tee_signer) {
            return refuse(5);
        }
        let acct = s.accounts.entry(it.user).or_default();
        if !acct.tee_signer_acknowledged {
            return refuse(8);
        }
        if it.nonce <= acct.nonce {
            return refuse(4);
        }
        acct.nonce = it.nonce;
        let paid = it.total_fee.min(acct.balance);
        acct.balance = acct.balance.saturating_sub(paid);
        s.earned = s.earned.saturating_add(paid);
        let r = TeeItemResult {
            status: u8::from(paid < it.total_fee),
            unsettled: it.total_fee.saturating_sub(paid),
        };
        s.applied.push((it.user, it.nonce, r));
        r
    }

    fn mine(s: &mut State, r: TxResult) -> B256 {
        s.sent = s.sent.saturating_add(1);
        let h = keccak256(s.sent.to_be_bytes());
        s.txs.insert(h, r);
        h
    }
}

impl SettlementChain for MemoryChain {
    async fn account(&self, user: Address) -> Result<ChainAccount, BoxError> {
        self.state()
            .accounts
            .get(&user)
            .copied()
            .ok_or_else(|| format!("{user} has no sub-account").into())
    }

    async fn voucher_state(&self, user: Address) -> Result<VoucherState, BoxError> {
        Ok(self.state().vouchers.get(&user).copied().unwrap_or_default())
    }

    async fn preview_tee(&self, items: &[TeeItem]) -> Result<Vec<TeeItemResult>, BoxError> {
        let s = self.state();
        Ok(items
            .iter()
            .map(|i| {
                // Each item alone against the current state, like `previewSettlementResults`.
                let mut copy = State {
                    accounts: s.accounts.clone(),
                    ..State::default()
                };
                self.apply_tee(&mut copy, i)
            })
            .collect())
    }

    async fn submit_tee(&self, items: &[TeeItem]) -> Result<B256, BoxError> {
        let mut s = self.state();
        let tee_results = items
            .iter()
            .map(|i| (i.user, self.apply_tee(&mut s, i)))
            .collect();
        Ok(Self::mine(
            &mut s,
            TxResult {
                success: true,
                tee_results,
            },
        ))
    }

    async fn submit_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<B256, BoxError> {
        let mut s = self.state();
        for v in vouchers {
            let vv = &v.voucher;
            let signer = v
                .signature
                .recover_address_from_prehash(&self.domains.voucher_hash(vv))
                .ok();
            let st = s.vouchers.get(&vv.user).copied().unwrap_or_default();
            // The contract's OpenZeppelin-style recovery refuses high-s signatures, and nonces above 2^128 - 1.
            let high_s = v.signature.normalize_s().is_some();
            if signer != Some(vv.user)
                || high_s
                || vv.provider != self.provider
                || vv.nonce <= st.nonce
                || vv.nonce > U256::from(u128::MAX)
                || vv.cumulativeAmount < st.paid
            {
                continue;
            }
            let owed = vv.cumulativeAmount.saturating_sub(st.paid);
            let acct = s.accounts.entry(vv.user).or_default();
            let pay = owed.min(acct.balance);
            acct.balance = acct.balance.saturating_sub(pay);
            s.earned = s.earned.saturating_add(pay);
            s.vouchers.insert(
                vv.user,
                VoucherState {
                    paid: st.paid.saturating_add(pay),
                    nonce: vv.nonce,
                },
            );
        }
        Ok(Self::mine(
            &mut s,
            TxResult {
                success: true,
                tee_results: Vec::new(),
            },
        ))
    }

    async fn wait_receipt(&self, tx_hash: B256) -> Result<TxResult, BoxError> {
        self.state()
            .txs
            .get(&tx_hash)
            .cloned()
            .ok_or_else(|| format!("unknown transaction {tx_hash}").into())
    }

    async fn find_tee_result(
        &self,
        user: Address,
        nonce: U256,
        _from_block: u64,
    ) -> Result<Option<TeeItemResult>, BoxError> {
        Ok(self
            .state()
            .applied
            .iter()
            .find(|(u, n, _)| *u == user && *n == nonce)
            .map(|(_, _, r)| *r))
    }

    async fn block_number(&self) -> Result<u64, BoxError> {
        // One "block" per transaction mined.
        Ok(self.state().sent)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ledger::PendingRequest;
    use crate::meter::Usage;
    use crate::settle::requests_hash;
    use crate::sig::EthSigner;
    use alloy_primitives::Bytes;

    fn item(
        signer: &EthSigner,
        d: &Domains,
        provider: Address,
        user: Address,
        fee: u64,
        nonce: u64,
    ) -> TeeItem {
        let rows = [PendingRequest {
            id: 1,
            request_hash: B256::repeat_byte(1),
            response_hash: B256::repeat_byte(2),
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
            fee: U256::from(fee),
            created_ms: 1,
        }];
        let rh = requests_hash(&rows);
        let msg = TEESettlement {
            requestsHash: rh,
            nonce: U256::from(nonce),
            provider,
            user,
            totalFee: U256::from(fee),
        };
        let sig = signer.sign_hash(&d.settlement_hash(&msg)).unwrap();
        TeeItem {
            user,
            provider,
            total_fee: U256::from(fee),
            requests_hash: rh,
            nonce: U256::from(nonce),
            signature: Bytes::from(sig.as_bytes().to_vec()),
        }
    }

    #[tokio::test]
    async fn tee_items_follow_the_contract_rules() {
        let (tee, other) = (EthSigner::random(), EthSigner::random());
        let (provider, user) = (Address::repeat_byte(9), Address::repeat_byte(1));
        let d = Domains::new(31337, Address::repeat_byte(0x42));
        let chain = MemoryChain::new(provider, tee.address(), d.clone());
        chain.deposit(user, U256::from(150));
        let ok = item(&tee, &d, provider, user, 100, 1);
        let forged = item(&other, &d, provider, user, 100, 2);
        let preview = chain.preview_tee(&[ok.clone(), forged.clone()]).await.unwrap();
        assert_eq!((preview[0].status, preview[1].status), (0, 5));
        assert_eq!(chain.provider_earned(), U256::ZERO, "a preview changes nothing");
        let tx = chain.submit_tee(&[ok.clone(), forged]).await.unwrap();
        let r = chain.wait_receipt(tx).await.unwrap();
        assert_eq!((r.tee_results[0].1.status, r.tee_results[1].1.status), (0, 5));
        // Replay: refused, pays nothing. A later nonce pays what the balance allows (partial).
        let tx = chain.submit_tee(&[ok]).await.unwrap();
        assert_eq!(chain.wait_receipt(tx).await.unwrap().tee_results[0].1.status, 4);
        let tx = chain
            .submit_tee(&[item(&tee, &d, provider, user, 100, 3)])
            .await
            .unwrap();
        let partial = chain.wait_receipt(tx).await.unwrap().tee_results[0].1;
        assert_eq!((partial.status, partial.unsettled), (1, U256::from(50)));
        assert_eq!(
            chain.find_tee_result(user, U256::from(3), 0).await.unwrap(),
            Some(partial)
        );
        assert_eq!(chain.find_tee_result(user, U256::from(2), 0).await.unwrap(), None);
        assert_eq!(chain.provider_earned(), U256::from(150));
        let a = chain.account(user).await.unwrap();
        assert_eq!((a.balance, a.nonce), (U256::ZERO, U256::from(3)));
    }
}
