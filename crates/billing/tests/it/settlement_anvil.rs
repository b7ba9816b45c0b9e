//! Both settlement modes against the real contracts on an anvil devnet, through zg-chain, with a crash
//! injected before send, after send (hash lost), before the receipt and after the receipt before the local
//! commit. After a restart and `reconcile`, every fee is paid exactly once: sub-account balances, voucher
//! state, the provider's earnings and the contract's balance are exact. Items that land with status Success
//! also prove that our EIP-712 `Voucher` and `TEESettlement` encodings match the contract's.

use std::sync::Mutex;

use alloy::providers::Provider as _;

use alloy_primitives::{Address, B256, U256};
use zg_billing::{
    BoxError, ChainAccount, EthSigner, Ledger, LedgerConfig, SettlementChain, SettlementState, Settler,
    SettlerConfig, SignedVoucher, TeeItem, TeeItemResult, TxResult, VoucherState,
};
use zg_chain::{Amount, Client, Devnet, DevnetConfig, ServiceKind, ServiceParams, SettlementStatus};

use crate::common::Fault;
use crate::settlement_crash::serve;

// The adapter is the one the provider settles through: what runs in production is what is tested.
type ZgChain = zg_chain::SettlementAdapter;

// ---------------------------------------------------------------------------------------------
// Crash injection around any `SettlementChain`.

/// Wraps a chain and fails once at the armed step, like a process dying there.
#[derive(Debug)]
struct Crashing<C> {
    inner: C,
    fault: Mutex<Option<Fault>>,
    reads_fail: Mutex<bool>,
}

impl<C> Crashing<C> {
    fn new(inner: C, fault: Option<Fault>) -> Self {
        Self {
            inner,
            fault: Mutex::new(fault),
            reads_fail: Mutex::new(false),
        }
    }
    fn take(&self, at: Fault) -> bool {
        let mut f = self.fault.lock().unwrap();
        let hit = *f == Some(at);
        if hit {
            *f = None;
        }
        hit
    }
    fn read_fails(&self) -> bool {
        std::mem::take(&mut *self.reads_fail.lock().unwrap())
    }
}

fn crash(step: &str) -> BoxError {
    format!("injected crash: {step}").into()
}

impl<C: SettlementChain> SettlementChain for Crashing<C> {
    async fn account(&self, user: Address) -> Result<ChainAccount, BoxError> {
        if self.read_fails() {
            return Err(crash("after receipt, before local commit"));
        }
        self.inner.account(user).await
    }
    async fn voucher_state(&self, user: Address) -> Result<VoucherState, BoxError> {
        if self.read_fails() {
            return Err(crash("after receipt, before local commit"));
        }
        self.inner.voucher_state(user).await
    }
    async fn preview_tee(&self, items: &[TeeItem]) -> Result<Vec<TeeItemResult>, BoxError> {
        self.inner.preview_tee(items).await
    }
    async fn submit_tee(&self, items: &[TeeItem]) -> Result<B256, BoxError> {
        if self.take(Fault::BeforeSend) {
            return Err(crash("before send"));
        }
        let tx = self.inner.submit_tee(items).await?;
        if self.take(Fault::AfterSendLost) {
            return Err(crash("after send, hash lost"));
        }
        Ok(tx)
    }
    async fn submit_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<B256, BoxError> {
        if self.take(Fault::BeforeSend) {
            return Err(crash("before send"));
        }
        let tx = self.inner.submit_vouchers(vouchers).await?;
        if self.take(Fault::AfterSendLost) {
            return Err(crash("after send, hash lost"));
        }
        Ok(tx)
    }
    async fn wait_receipt(&self, tx_hash: B256) -> Result<TxResult, BoxError> {
        if self.take(Fault::BeforeReceipt) {
            return Err(crash("before receipt"));
        }
        let r = self.inner.wait_receipt(tx_hash).await?;
        if self.take(Fault::AfterReceiptBeforeCommit) {
            *self.reads_fail.lock().unwrap() = true;
        }
        Ok(r)
    }
    async fn find_tee_result(
        &self,
        user: Address,
        nonce: U256,
        from_block: u64,
    ) -> Result<Option<TeeItemResult>, BoxError> {
        self.inner.find_tee_result(user, nonce, from_block).await
    }
    async fn block_number(&self) -> Result<u64, BoxError> {
        self.inner.block_number().await
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario.

const SUB_ACCOUNT_ZG: &str = "4";

fn zg(s: &str) -> Amount {
    s.parse().unwrap()
}

struct World {
    devnet: Devnet,
    provider: Client,
    customers: Vec<EthSigner>,
    tee: EthSigner,
}

/// A devnet where keys[4] is a provider whose TEE signer the owner acknowledged, and keys[1..=3] are
/// customers that each funded a sub-account with it and acknowledged that signer too.
async fn world() -> World {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .expect("devnet starts (run `just setup` first)");
    let keys = devnet.keys().to_vec();
    let tee = EthSigner::random();
    let provider_key = keys[4].clone();
    let provider = devnet.client(Some(provider_key.clone())).await.unwrap();
    let params = ServiceParams {
        service_type: "chatbot".into(),
        url: "http://127.0.0.1:9".into(),
        model: "zg-demo".into(),
        verifiability: "TeeML".into(),
        input_price: U256::from(1),
        output_price: U256::from(2),
        additional_info: "{}".into(),
        tee_signer: tee.address(),
    };
    provider
        .inference()
        .add_or_update_service(&params, zg("1"))
        .await
        .unwrap();
    let mut customers = Vec::new();
    for k in &keys[1..=3] {
        let c = devnet.client(Some(k.clone())).await.unwrap();
        c.ledger().add_ledger(zg("10"), "").await.unwrap();
        c.ledger()
            .transfer_fund(provider_key.address(), ServiceKind::Inference, zg(SUB_ACCOUNT_ZG))
            .await
            .unwrap();
        customers.push(EthSigner::from_bytes(&k.to_bytes()).unwrap());
    }
    // TEE batches pay only for customers who, like the owner, acknowledged the signer (issue 9).
    devnet
        .acknowledge_tee_signer(ServiceKind::Inference, provider_key.address(), &keys[1..=3])
        .await
        .unwrap();
    World {
        devnet,
        provider,
        customers,
        tee,
    }
}

fn open_ledger(dir: &std::path::Path, w: &World) -> Ledger {
    let a = w.devnet.addresses();
    let domains = zg_billing::Domains::new(w.devnet.chain_id(), a.inference);
    Ledger::open(LedgerConfig::new(
        dir.join("fees.sqlite"),
        w.provider.signer_address().unwrap(),
        domains,
    ))
    .unwrap()
}

async fn sync_accounts(ledger: &Ledger, chain: &ZgChain, users: &[Address]) {
    for u in users {
        ledger
            .set_chain_account(*u, chain.account(*u).await.unwrap())
            .unwrap();
    }
}

/// Gas the provider paid in blocks after `from` (its wallet pays gas and receives the fees).
async fn provider_gas_since(client: &Client, who: Address, from: u64) -> U256 {
    let rpc = client.provider();
    let to = rpc.get_block_number().await.unwrap();
    let mut gas = U256::ZERO;
    for n in from + 1..=to {
        for r in rpc
            .get_block_receipts(n.into())
            .await
            .unwrap()
            .unwrap_or_default()
        {
            if r.from == who {
                gas += U256::from(r.gas_used) * U256::from(r.effective_gas_price);
            }
        }
    }
    gas
}

struct Before {
    block: u64,
    provider_wallet: U256,
    contract: U256,
}

async fn snapshot(w: &World) -> Before {
    let who = w.provider.signer_address().unwrap();
    Before {
        block: w.provider.provider().get_block_number().await.unwrap(),
        provider_wallet: w.provider.balance(who).await.unwrap().0,
        contract: w
            .provider
            .balance(w.devnet.addresses().inference)
            .await
            .unwrap()
            .0,
    }
}

/// Exact on-chain money after settlement: each customer paid its fees once, the provider earned their sum
/// (wallet delta plus the gas it spent), and the contract released exactly that.
async fn check_exactly_once(w: &World, ledger: &Ledger, before: &Before, totals: &[u64], session: bool) {
    let chain = ZgChain::new(w.provider.clone(), w.provider.signer_address().unwrap());
    let all: u64 = totals.iter().sum();
    let mut nonces = Vec::new();
    for (c, t) in w.customers.iter().zip(totals) {
        let a = chain.account(c.address()).await.unwrap();
        assert_eq!(
            a.balance,
            zg(SUB_ACCOUNT_ZG).0 - U256::from(*t),
            "sub-account of {}",
            c.address()
        );
        let v = chain.voucher_state(c.address()).await.unwrap();
        if session {
            nonces.push(a.nonce);
            assert_eq!(v, VoucherState::default());
        } else {
            assert_eq!(v.paid, U256::from(*t), "voucher paid total");
            assert_eq!(a.nonce, U256::ZERO);
        }
        assert_eq!(ledger.unsettled_fee(c.address()), U256::ZERO);
    }
    if session {
        // One batch took consecutive nonces from the persistent counter; a re-send reuses its payload's nonce.
        nonces.sort();
        assert_eq!(nonces, [1, 2, 3].map(U256::from));
    }
    let who = w.provider.signer_address().unwrap();
    let wallet = w.provider.balance(who).await.unwrap().0;
    let gas = provider_gas_since(&w.provider, who, before.block).await;
    assert_eq!(
        wallet + gas - before.provider_wallet,
        U256::from(all),
        "provider earned the fees once"
    );
    let contract = w
        .provider
        .balance(w.devnet.addresses().inference)
        .await
        .unwrap()
        .0;
    assert_eq!(
        before.contract - contract,
        U256::from(all),
        "contract released the fees once"
    );
    assert!(ledger.open_settlements().await.unwrap().is_empty());
}

async fn scenario(fault: Option<Fault>, session: bool) {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let chain = ZgChain::new(w.provider.clone(), w.provider.signer_address().unwrap());
    let addrs: Vec<Address> = w.customers.iter().map(EthSigner::address).collect();
    let ledger = open_ledger(dir.path(), &w);
    sync_accounts(&ledger, &chain, &addrs).await;
    let totals = serve(&ledger, &w.customers, 5, session).await;
    let all: u64 = totals.iter().sum();
    let before = snapshot(&w).await;

    let settler = Settler::new(
        ledger.clone(),
        Crashing::new(chain.clone(), fault),
        w.tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    let report = settler.settle_due(20, true).await;
    let ledger = match fault {
        None => {
            let report = report.unwrap();
            assert_eq!(report.tx_hashes.len(), 1, "{report:?}");
            assert_eq!(report.total_paid(), U256::from(all));
            assert!(
                report.items.iter().all(|i| i.state == SettlementState::Done),
                "{report:?}"
            );
            // The contract itself says Success for every item: our EIP-712 encodings match its own.
            let out = w
                .provider
                .inference()
                .settlement_outcome(report.tx_hashes[0])
                .await
                .unwrap();
            assert_eq!(out.results.len(), 3);
            assert!(
                out.results.iter().all(|r| r.status == SettlementStatus::Success),
                "{out:?}"
            );
            ledger
        }
        Some(f) => {
            assert!(report.is_err(), "{f:?} must interrupt the round");
            // Crash: drop everything in memory and reopen from disk.
            drop(settler);
            ledger.close();
            drop(ledger);
            let ledger = open_ledger(dir.path(), &w);
            let settler = Settler::new(
                ledger.clone(),
                chain.clone(),
                w.tee.clone(),
                SettlerConfig::default(),
            )
            .unwrap();
            settler.reconcile(30).await.unwrap();
            sync_accounts(&ledger, &chain, &addrs).await;
            settler.settle_due(31, true).await.unwrap();
            ledger
        }
    };
    check_exactly_once(&w, &ledger, &before, &totals, session).await;
    // A further round finds nothing to send.
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        w.tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    let again = settler.settle_due(40, true).await.unwrap();
    assert!(again.tx_hashes.is_empty(), "{again:?}");
    check_exactly_once(&w, &ledger, &before, &totals, session).await;
}

#[tokio::test]
async fn anvil_tee_mode_no_crash() {
    scenario(None, true).await;
}
#[tokio::test]
async fn anvil_tee_mode_crash_before_send() {
    scenario(Some(Fault::BeforeSend), true).await;
}
#[tokio::test]
async fn anvil_tee_mode_crash_after_send_hash_lost() {
    scenario(Some(Fault::AfterSendLost), true).await;
}
#[tokio::test]
async fn anvil_tee_mode_crash_before_receipt() {
    scenario(Some(Fault::BeforeReceipt), true).await;
}
#[tokio::test]
async fn anvil_tee_mode_crash_after_receipt_before_commit() {
    scenario(Some(Fault::AfterReceiptBeforeCommit), true).await;
}
#[tokio::test]
async fn anvil_voucher_mode_no_crash() {
    scenario(None, false).await;
}
#[tokio::test]
async fn anvil_voucher_mode_crash_before_send() {
    scenario(Some(Fault::BeforeSend), false).await;
}
#[tokio::test]
async fn anvil_voucher_mode_crash_after_send_hash_lost() {
    scenario(Some(Fault::AfterSendLost), false).await;
}
#[tokio::test]
async fn anvil_voucher_mode_crash_before_receipt() {
    scenario(Some(Fault::BeforeReceipt), false).await;
}
#[tokio::test]
async fn anvil_voucher_mode_crash_after_receipt_before_commit() {
    scenario(Some(Fault::AfterReceiptBeforeCommit), false).await;
}

/// High-s voucher signatures and voucher nonces ≥ 2^128 (both refused by the contract): each voucher either
/// ends in an on-chain `VoucherSettled` that pays its full amount, or is refused when the provider admits it.
#[tokio::test]
async fn anvil_vouchers_the_contract_refuses_never_get_past_admission() {
    use crate::admission_attacks::high_s;
    use zg_billing::{Completion, Usage, Voucher, body_hash};
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let chain = ZgChain::new(w.provider.clone(), w.provider.signer_address().unwrap());
    let provider = w.provider.signer_address().unwrap();
    let addrs: Vec<Address> = w.customers.iter().map(EthSigner::address).collect();
    let ledger = open_ledger(dir.path(), &w);
    sync_accounts(&ledger, &chain, &addrs).await;
    let d = ledger.domains().clone();
    let fee = U256::from(1_000_000u64);
    let mut admitted = Vec::new();
    for (i, (c, nonce)) in w.customers[..2]
        .iter()
        .zip([U256::from(2), U256::from(1) << 200])
        .enumerate()
    {
        // One request served and billed...
        let first = crate::ledger_concurrency::native(&d, c, provider, 1, 10_000_000);
        let a = ledger
            .admit_native(&first, b"body-1", U256::ZERO, 1)
            .await
            .unwrap();
        let done = Completion {
            request_hash: body_hash(b"body-1"),
            response_hash: body_hash(b"answer"),
            model: "zg-demo".into(),
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            }),
            fee,
            receipt_signature: vec![0; 64],
            receipt: None,
        };
        ledger.complete(a, done, 2).await.unwrap();
        // ...then the next request carries the voucher for it: high-s (customer 0) or a huge nonce (customer 1).
        let v = Voucher {
            user: c.address(),
            provider,
            cumulativeAmount: fee,
            nonce,
        };
        let mut v = d.sign_voucher(c, v).unwrap();
        if i == 0 {
            v.signature = high_s(v.signature);
        }
        let next = crate::ledger_concurrency::native(&d, c, provider, 2, 10_000_000).with_voucher(v);
        match ledger.admit_native(&next, b"body-2", U256::ZERO, 3).await {
            Ok(a) => {
                ledger.release(a).await.unwrap();
                admitted.push(c.address());
            }
            Err(e) => assert!(i == 1, "the high-s voucher is valid and must be admitted: {e}"),
        }
    }
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        w.tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    let report = settler.settle_due(10, true).await.unwrap();
    assert!(!admitted.is_empty());
    assert_eq!(report.tx_hashes.len(), 1, "{report:?}");
    let out = w
        .provider
        .inference()
        .settlement_outcome(report.tx_hashes[0])
        .await
        .unwrap();
    for user in admitted {
        let r = out
            .results
            .iter()
            .find(|r| r.user == user)
            .expect("a VoucherSettled event");
        assert_eq!(r.status, SettlementStatus::Success, "{user}: {out:?}");
        assert_eq!(r.paid, Some(fee), "{user} paid in full");
        assert_eq!(chain.voucher_state(user).await.unwrap().paid, fee);
    }
}

/// A customer who stops sending requests and calls `retrieveFund` must be settled before the refund unlocks,
/// though their unsettled fees are far below the threshold and the provider's cached account (refreshed only
/// on traffic) still shows no pending refund. Found by running the official 0G CLI's `retrieve-fund`
/// (bins/cli/tests/it/official_cli.rs); before the fix `settle_due` skipped them and the refund returned the
/// unpaid fees.
#[tokio::test]
async fn anvil_refund_requested_without_traffic_makes_the_customer_due() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let chain = ZgChain::new(w.provider.clone(), w.provider.signer_address().unwrap());
    let addrs: Vec<Address> = w.customers.iter().map(EthSigner::address).collect();
    let ledger = open_ledger(dir.path(), &w);
    sync_accounts(&ledger, &chain, &addrs).await;
    let totals = serve(&ledger, &w.customers, 2, true).await;
    let provider = w.provider.signer_address().unwrap();
    let leaver = w.devnet.client(Some(w.devnet.keys()[1].clone())).await.unwrap();
    leaver
        .ledger()
        .retrieve_fund(vec![provider], ServiceKind::Inference)
        .await
        .unwrap();
    assert!(
        ledger
            .chain_account(addrs[0])
            .is_some_and(|a| a.pending_refund.is_zero()),
        "the cached account has not seen the refund request"
    );
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        w.tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    let report = settler.settle_due(20, false).await.unwrap();
    assert_eq!(
        report.items.len(),
        1,
        "only the customer with a pending refund: {report:?}"
    );
    assert_eq!(report.items[0].user, addrs[0]);
    assert_eq!(report.total_paid(), U256::from(totals[0]));
    let a = chain.account(addrs[0]).await.unwrap();
    assert_eq!(a.balance, zg(SUB_ACCOUNT_ZG).0 - U256::from(totals[0]));
    assert_eq!(ledger.unsettled_fee(addrs[0]), U256::ZERO);
    assert_eq!(
        ledger.unsettled_fee(addrs[1]),
        U256::from(totals[1]),
        "below threshold, no refund: waits"
    );
}
