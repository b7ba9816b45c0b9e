//! Fixtures and an in-memory chain that enforces the contract's settlement rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, Signature, U256, address, keccak256};
use zg_billing::{
    BoxError, ChainAccount, Domains, EthSigner, Ledger, LedgerConfig, SettlementChain, SignedVoucher,
    TeeItem, TeeItemResult, TxResult, VoucherState,
};

pub const SERVING: Address = address!("0x0165878A594ca255338adfa4d48449f69242Eb8F");
pub const CHAIN_ID: u64 = 31337;

pub fn domains() -> Domains {
    Domains::new(CHAIN_ID, SERVING)
}

pub fn open_ledger(path: &std::path::Path, provider: Address) -> Ledger {
    Ledger::open(LedgerConfig::new(path.join("ledger.sqlite"), provider, domains())).unwrap()
}

/// Where the next chain interaction fails (one shot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `submit_*` fails and nothing reaches the chain.
    BeforeSend,
    /// `submit_*` reaches the chain, then the answer (tx hash) is lost.
    AfterSendLost,
    /// The tx is mined but waiting for its receipt fails.
    BeforeReceipt,
    /// The receipt arrives; the next state read (before the local commit) fails.
    AfterReceiptBeforeCommit,
}

#[derive(Debug, Default)]
pub struct MockState {
    pub accounts: HashMap<Address, ChainAccount>,
    pub vouchers: HashMap<Address, VoucherState>,
    pub provider_earned: U256,
    pub txs: HashMap<B256, TxResult>,
    pub tee_applied: Vec<(Address, U256, TeeItemResult)>,
    pub fault: Option<Fault>,
    pub reads_armed: bool,
    pub submissions: u64,
    /// `find_tee_result` finds nothing (an RPC node without the logs).
    pub hide_events: bool,
    /// Sets a customer's balance just before the next `submit_tee` applies (a refund landing between
    /// preview and inclusion), so the item pays only part.
    pub balance_at_submit: Option<(Address, U256)>,
    /// The `from_block` of every `find_tee_result` search.
    pub searched_from: Vec<u64>,
}

/// In-memory InferenceServing: verifies signatures, nonces and balances like the contract.
#[derive(Debug, Clone)]
pub struct MockChain {
    pub state: Arc<Mutex<MockState>>,
    pub provider: Address,
    pub tee_signer: Address,
    pub domains: Domains,
}

fn err(msg: &str) -> BoxError {
    msg.to_owned().into()
}

impl MockChain {
    pub fn new(provider: Address, tee_signer: Address) -> Self {
        Self {
            state: Arc::default(),
            provider,
            tee_signer,
            domains: domains(),
        }
    }

    pub fn deposit(&self, user: Address, amount: U256) {
        let mut s = self.state.lock().unwrap();
        let a = s.accounts.entry(user).or_default();
        a.balance += amount;
        a.tee_signer_acknowledged = true;
    }

    pub fn arm(&self, fault: Fault) {
        self.state.lock().unwrap().fault = Some(fault);
    }

    fn take_fault(&self, at: Fault) -> bool {
        let mut s = self.state.lock().unwrap();
        if s.fault == Some(at) {
            s.fault = None;
            if at == Fault::AfterReceiptBeforeCommit {
                return true;
            }
            return true;
        }
        false
    }

    fn apply_tee(&self, s: &mut MockState, it: &TeeItem) -> TeeItemResult {
        if it.provider != self.provider {
            return TeeItemResult {
                status: 2,
                unsettled: it.total_fee,
            };
        }
        let msg = zg_billing::TEESettlement {
            requestsHash: it.requests_hash,
            nonce: it.nonce,
            provider: it.provider,
            user: it.user,
            totalFee: it.total_fee,
        };
        let ok = Signature::from_raw(&it.signature).ok().and_then(|sig| {
            sig.recover_address_from_prehash(&self.domains.settlement_hash(&msg))
                .ok()
        }) == Some(self.tee_signer);
        if !ok {
            return TeeItemResult {
                status: 5,
                unsettled: it.total_fee,
            };
        }
        let acct = s.accounts.entry(it.user).or_default();
        if it.nonce <= acct.nonce {
            return TeeItemResult {
                status: 4,
                unsettled: it.total_fee,
            };
        }
        acct.nonce = it.nonce;
        let paid = it.total_fee.min(acct.balance);
        acct.balance -= paid;
        s.provider_earned += paid;
        let r = TeeItemResult {
            status: u8::from(paid < it.total_fee),
            unsettled: it.total_fee - paid,
        };
        s.tee_applied.push((it.user, it.nonce, r));
        r
    }

    fn preview(&self, s: &MockState, it: &TeeItem) -> TeeItemResult {
        let mut copy = MockState {
            accounts: s.accounts.clone(),
            ..MockState::default()
        };
        self.apply_tee(&mut copy, it)
    }

    fn new_tx(s: &mut MockState, r: TxResult) -> B256 {
        s.submissions += 1;
        let h = keccak256(s.submissions.to_be_bytes());
        s.txs.insert(h, r);
        h
    }
}

impl SettlementChain for MockChain {
    async fn account(&self, user: Address) -> Result<ChainAccount, BoxError> {
        let mut s = self.state.lock().unwrap();
        if s.reads_armed {
            s.reads_armed = false;
            return Err(err("injected: crash after receipt, before local commit"));
        }
        s.accounts.get(&user).copied().ok_or_else(|| err("no account"))
    }

    async fn voucher_state(&self, user: Address) -> Result<VoucherState, BoxError> {
        let mut s = self.state.lock().unwrap();
        if s.reads_armed {
            s.reads_armed = false;
            return Err(err("injected: crash after receipt, before local commit"));
        }
        Ok(s.vouchers.get(&user).copied().unwrap_or_default())
    }

    async fn preview_tee(&self, items: &[TeeItem]) -> Result<Vec<TeeItemResult>, BoxError> {
        let s = self.state.lock().unwrap();
        Ok(items.iter().map(|i| self.preview(&s, i)).collect())
    }

    async fn submit_tee(&self, items: &[TeeItem]) -> Result<B256, BoxError> {
        if self.take_fault(Fault::BeforeSend) {
            return Err(err("injected: crash before send"));
        }
        let mut s = self.state.lock().unwrap();
        if let Some((user, balance)) = s.balance_at_submit.take() {
            s.accounts.entry(user).or_default().balance = balance;
        }
        let results = items
            .iter()
            .map(|i| (i.user, self.apply_tee(&mut s, i)))
            .collect();
        let h = Self::new_tx(
            &mut s,
            TxResult {
                success: true,
                tee_results: results,
            },
        );
        drop(s);
        if self.take_fault(Fault::AfterSendLost) {
            return Err(err("injected: crash after send, hash lost"));
        }
        Ok(h)
    }

    async fn submit_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<B256, BoxError> {
        if self.take_fault(Fault::BeforeSend) {
            return Err(err("injected: crash before send"));
        }
        let mut s = self.state.lock().unwrap();
        for v in vouchers {
            let vv = &v.voucher;
            let signer = v
                .signature
                .recover_address_from_prehash(&self.domains.voucher_hash(vv))
                .ok();
            let st = s.vouchers.get(&vv.user).copied().unwrap_or_default();
            // Like the contract: no high-s signatures, no nonce above 2^128 - 1.
            if signer != Some(vv.user)
                || v.signature.normalize_s().is_some()
                || vv.provider != self.provider
                || vv.nonce <= st.nonce
                || vv.nonce > U256::from(u128::MAX)
            {
                continue;
            }
            let owed = vv.cumulativeAmount.saturating_sub(st.paid);
            let acct = s.accounts.entry(vv.user).or_default();
            let pay = owed.min(acct.balance);
            acct.balance -= pay;
            s.provider_earned += pay;
            s.vouchers.insert(
                vv.user,
                VoucherState {
                    paid: st.paid + pay,
                    nonce: vv.nonce,
                },
            );
        }
        let h = Self::new_tx(
            &mut s,
            TxResult {
                success: true,
                tee_results: vec![],
            },
        );
        drop(s);
        if self.take_fault(Fault::AfterSendLost) {
            return Err(err("injected: crash after send, hash lost"));
        }
        Ok(h)
    }

    async fn wait_receipt(&self, tx_hash: B256) -> Result<TxResult, BoxError> {
        if self.take_fault(Fault::BeforeReceipt) {
            return Err(err("injected: crash before receipt"));
        }
        if self.take_fault(Fault::AfterReceiptBeforeCommit) {
            self.state.lock().unwrap().reads_armed = true;
        }
        self.state
            .lock()
            .unwrap()
            .txs
            .get(&tx_hash)
            .cloned()
            .ok_or_else(|| err("unknown tx"))
    }

    async fn find_tee_result(
        &self,
        user: Address,
        nonce: U256,
        from_block: u64,
    ) -> Result<Option<TeeItemResult>, BoxError> {
        let mut s = self.state.lock().unwrap();
        s.searched_from.push(from_block);
        if s.hide_events {
            return Ok(None);
        }
        Ok(s.tee_applied
            .iter()
            .find(|(u, n, _)| *u == user && *n == nonce)
            .map(|(_, _, r)| *r))
    }

    async fn block_number(&self) -> Result<u64, BoxError> {
        // One block per transaction.
        Ok(self.state.lock().unwrap().submissions)
    }
}

pub fn signer(i: u8) -> EthSigner {
    EthSigner::from_bytes(&B256::repeat_byte(i)).unwrap()
}
