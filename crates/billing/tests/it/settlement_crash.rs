//! Both settlement modes with a crash injected before send, after send (hash lost), before the
//! receipt, and after the receipt before the local commit: after a restart and `reconcile`, every
//! fee is paid exactly once and balances are exact.

use alloy_primitives::{Address, B256, U256};
use zg_billing::{
    ChainAccount, Completion, EthSigner, Ledger, SessionClaims, SessionToken, SettlementState, Settler,
    SettlerConfig, Usage, Voucher,
};

use crate::common::{Fault, MockChain, open_ledger, signer};
use crate::ledger_concurrency::native;

const DEPOSIT: u64 = 1_000_000;

fn completion(fee: u64, i: u64) -> Completion {
    Completion {
        request_hash: B256::from(U256::from(i)),
        response_hash: B256::repeat_byte(2),
        model: "demo".into(),
        usage: Some(Usage {
            prompt_tokens: i,
            completion_tokens: 1,
        }),
        fee: U256::from(fee),
        receipt_signature: vec![1; 65],
        receipt: None,
    }
}

async fn sync_accounts(ledger: &Ledger, chain: &MockChain, users: &[Address]) {
    for u in users {
        let a = chain.state.lock().unwrap().accounts[u];
        ledger.set_chain_account(*u, a).unwrap();
    }
}

/// Serves `per_user` requests to each user in the given mode; returns the total fees per user.
pub(crate) async fn serve(ledger: &Ledger, users: &[EthSigner], per_user: u64, session: bool) -> Vec<u64> {
    let d = ledger.domains().clone();
    let provider = ledger.provider();
    let mut totals = Vec::new();
    for (ui, user) in users.iter().enumerate() {
        let mut owed = 0u64;
        for i in 1..=per_user {
            let fee = 100 * (ui as u64 + 1) + i;
            let a = if session {
                let claims = SessionClaims {
                    address: user.address(),
                    provider: provider.to_string(),
                    timestamp: 1,
                    expires_at: 2,
                    nonce: "x".into(),
                    generation: 0,
                    token_id: 255,
                };
                let (tok, _) = SessionToken::create(user, &claims).unwrap();
                ledger.admit_session(&tok, U256::from(10_000), 10).await.unwrap()
            } else {
                let mut r = native(&d, user, provider, i, 10_000);
                if owed > 0 {
                    let v = Voucher {
                        user: user.address(),
                        provider,
                        cumulativeAmount: U256::from(owed),
                        nonce: U256::from(i),
                    };
                    r = r.with_voucher(d.sign_voucher(user, v).unwrap());
                }
                ledger
                    .admit_native(&r, format!("body-{i}").as_bytes(), U256::ZERO, 10)
                    .await
                    .unwrap()
            };
            ledger.complete(a, completion(fee, i), 11).await.unwrap();
            owed += fee;
        }
        if !session {
            // The customer's next request carries the voucher for everything received so far.
            let n = per_user + 1;
            let v = Voucher {
                user: user.address(),
                provider,
                cumulativeAmount: U256::from(owed),
                nonce: U256::from(n),
            };
            let r = native(&d, user, provider, n, 1).with_voucher(d.sign_voucher(user, v).unwrap());
            let a = ledger
                .admit_native(&r, format!("body-{n}").as_bytes(), U256::ZERO, 12)
                .await
                .unwrap();
            ledger.release(a).await.unwrap();
        }
        totals.push(owed);
    }
    totals
}

async fn scenario(fault: Option<Fault>, session: bool) {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let tee = signer(7);
    let chain = MockChain::new(provider, tee.address());
    let users: Vec<EthSigner> = (1..=3).map(signer).collect();
    let addrs: Vec<Address> = users.iter().map(EthSigner::address).collect();
    for u in &addrs {
        chain.deposit(*u, U256::from(DEPOSIT));
    }
    let ledger = open_ledger(dir.path(), provider);
    sync_accounts(&ledger, &chain, &addrs).await;
    let totals = serve(&ledger, &users, 5, session).await;
    let all: u64 = totals.iter().sum();

    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    if let Some(f) = fault {
        chain.arm(f);
        let r = settler.settle_due(20, true).await;
        assert!(r.is_err(), "{f:?} must interrupt the round");
        // Crash: drop everything in memory, reopen from disk.
        drop(settler);
        ledger.close();
        drop(ledger);
        let ledger = open_ledger(dir.path(), provider);
        let settler = Settler::new(
            ledger.clone(),
            chain.clone(),
            tee.clone(),
            SettlerConfig::default(),
        )
        .unwrap();
        settler.reconcile(30).await.unwrap();
        sync_accounts(&ledger, &chain, &addrs).await;
        settler.settle_due(31, true).await.unwrap();
        check(&ledger, &chain, &addrs, &totals, all).await;
        // A further round finds nothing to do.
        let again = settler.settle_due(40, true).await.unwrap();
        assert!(again.tx_hashes.is_empty(), "{again:?}");
        check(&ledger, &chain, &addrs, &totals, all).await;
    } else {
        let report = settler.settle_due(20, true).await.unwrap();
        assert_eq!(report.total_paid(), U256::from(all));
        assert_eq!(report.tx_hashes.len(), 1);
        assert!(report.items.iter().all(|i| i.state == SettlementState::Done));
        check(&ledger, &chain, &addrs, &totals, all).await;
    }
}

async fn check(ledger: &Ledger, chain: &MockChain, addrs: &[Address], totals: &[u64], all: u64) {
    {
        let s = chain.state.lock().unwrap();
        assert_eq!(s.provider_earned, U256::from(all), "paid exactly once");
        for (u, t) in addrs.iter().zip(totals) {
            assert_eq!(
                s.accounts[u].balance,
                U256::from(DEPOSIT - t),
                "exact balance of {u}"
            );
            assert_eq!(ledger.unsettled_fee(*u), U256::ZERO);
        }
    }
    assert!(ledger.open_settlements().await.unwrap().is_empty());
}

#[tokio::test]
async fn tee_mode_no_crash() {
    scenario(None, true).await;
}
#[tokio::test]
async fn tee_mode_crash_before_send() {
    scenario(Some(Fault::BeforeSend), true).await;
}
#[tokio::test]
async fn tee_mode_crash_after_send_hash_lost() {
    scenario(Some(Fault::AfterSendLost), true).await;
}
#[tokio::test]
async fn tee_mode_crash_before_receipt() {
    scenario(Some(Fault::BeforeReceipt), true).await;
}
#[tokio::test]
async fn tee_mode_crash_after_receipt_before_commit() {
    scenario(Some(Fault::AfterReceiptBeforeCommit), true).await;
}
#[tokio::test]
async fn voucher_mode_no_crash() {
    scenario(None, false).await;
}
#[tokio::test]
async fn voucher_mode_crash_before_send() {
    scenario(Some(Fault::BeforeSend), false).await;
}
#[tokio::test]
async fn voucher_mode_crash_after_send_hash_lost() {
    scenario(Some(Fault::AfterSendLost), false).await;
}
#[tokio::test]
async fn voucher_mode_crash_before_receipt() {
    scenario(Some(Fault::BeforeReceipt), false).await;
}
#[tokio::test]
async fn voucher_mode_crash_after_receipt_before_commit() {
    scenario(Some(Fault::AfterReceiptBeforeCommit), false).await;
}

#[tokio::test]
async fn partial_balance_resigns_the_subset_that_fits_and_batches_cap_at_50_users() {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let tee = signer(7);
    let chain = MockChain::new(provider, tee.address());
    let ledger = open_ledger(dir.path(), provider);
    let user = signer(1);
    chain.deposit(user.address(), U256::from(100_000));
    sync_accounts(&ledger, &chain, &[user.address()]).await;
    // Fees 101..=105 (sum 515); then the on-chain balance drops to 250 behind the ledger's back
    // (a refund processed), so the preview reports a partial and the settler re-signs 101+102.
    serve(&ledger, std::slice::from_ref(&user), 5, true).await;
    chain
        .state
        .lock()
        .unwrap()
        .accounts
        .get_mut(&user.address())
        .unwrap()
        .balance = U256::from(250);
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    let r = settler.settle_due(1, true).await.unwrap();
    assert_eq!(r.total_paid(), U256::from(203));
    assert_eq!(ledger.unsettled_fee(user.address()), U256::from(515 - 203));
    assert_eq!(
        ledger
            .pending_session_requests(user.address())
            .await
            .unwrap()
            .len(),
        3
    );
    chain.deposit(user.address(), U256::from(1000));
    let r = settler.settle_due(2, true).await.unwrap();
    assert_eq!(r.total_paid(), U256::from(515 - 203));
    assert_eq!(chain.state.lock().unwrap().provider_earned, U256::from(515));

    // 120 customers → 3 transactions of at most 50.
    let many: Vec<EthSigner> = (10..130u8).map(signer).collect();
    let addrs: Vec<Address> = many.iter().map(EthSigner::address).collect();
    for a in &addrs {
        chain.deposit(*a, U256::from(DEPOSIT));
    }
    sync_accounts(&ledger, &chain, &addrs).await;
    serve(&ledger, &many, 1, true).await;
    let r = settler.settle_due(3, true).await.unwrap();
    assert_eq!(r.tx_hashes.len(), 3);
    assert_eq!(r.items.len(), 120);
    let _ = ChainAccount::default();
}

/// Regression: a TEE item that paid only part (the balance dropped between preview and inclusion) must be
/// booked at exactly what the chain moved, never as paid in full. `hash_lost`: the crash hid the tx hash, so
/// only the chain's events can tell; while they cannot be found the settlement stays open. Otherwise the
/// receipt of the recorded transaction resolves it even without events.
async fn partial_payment_after_crash(fault: Fault) {
    let hash_lost = fault == Fault::AfterSendLost;
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let tee = signer(7);
    let chain = MockChain::new(provider, tee.address());
    let user = signer(1);
    chain.deposit(user.address(), U256::from(100_000));
    let ledger = open_ledger(dir.path(), provider);
    sync_accounts(&ledger, &chain, &[user.address()]).await;
    serve(&ledger, std::slice::from_ref(&user), 5, true).await; // fees 101..=105, 515 in all
    {
        let mut s = chain.state.lock().unwrap();
        s.balance_at_submit = Some((user.address(), U256::from(300)));
        s.hide_events = true;
        s.submissions = 41; // the chain is at block 41 when the settlement is prepared
    }
    chain.arm(fault);
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    settler.settle_due(1, true).await.unwrap_err();
    assert_eq!(
        chain.state.lock().unwrap().provider_earned,
        U256::from(300),
        "the chain paid part"
    );

    drop(settler);
    ledger.close();
    drop(ledger);
    let ledger = open_ledger(dir.path(), provider);
    let settler = Settler::new(
        ledger.clone(),
        chain.clone(),
        tee.clone(),
        SettlerConfig::default(),
    )
    .unwrap();
    if hash_lost {
        let r = settler.reconcile(2).await.unwrap();
        assert!(r.items.is_empty(), "{r:?}");
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].1.contains("result event was not found"), "{r:?}");
        assert_eq!(ledger.open_settlements().await.unwrap().len(), 1, "stays open");
        assert_eq!(ledger.unsettled_fee(user.address()), U256::from(515));
        // Still open: a settlement round does not send a second claim for the same requests.
        let again = settler.settle_due(3, true).await.unwrap();
        assert!(again.tx_hashes.is_empty(), "{again:?}");
        chain.state.lock().unwrap().hide_events = false;
    }
    let r = settler.reconcile(4).await.unwrap();
    assert_eq!(r.items.len(), 1, "{r:?}");
    assert_eq!(
        (r.items[0].paid, r.items[0].state),
        (U256::from(300), SettlementState::Done)
    );
    assert!(r.tx_hashes.is_empty(), "nothing re-sent: {r:?}");
    assert!(ledger.open_settlements().await.unwrap().is_empty());
    if hash_lost {
        // The event search started at the block the settlement was prepared at, never at genesis.
        let from = chain.state.lock().unwrap().searched_from.clone();
        assert!(!from.is_empty() && from.iter().all(|b| *b == 41), "{from:?}");
    }
    assert_eq!(chain.state.lock().unwrap().provider_earned, U256::from(300));
    // The unpaid 215 frees the newest requests that fit in it (105 + 104); 101..=103 (306) were paid 300,
    // so the provider forgoes 6, less than one request, and the customer never pays twice.
    let pending: Vec<U256> = ledger
        .pending_session_requests(user.address())
        .await
        .unwrap()
        .iter()
        .map(|r| r.fee)
        .collect();
    assert_eq!(pending, [U256::from(104), U256::from(105)]);
    assert_eq!(ledger.unsettled_fee(user.address()), U256::from(209));
    chain.deposit(user.address(), U256::from(1000));
    sync_accounts(&ledger, &chain, &[user.address()]).await;
    let r = settler.settle_due(5, true).await.unwrap();
    assert_eq!(r.total_paid(), U256::from(209));
    assert_eq!(chain.state.lock().unwrap().provider_earned, U256::from(509));
    assert_eq!(ledger.unsettled_fee(user.address()), U256::ZERO);
    // Reopening reloads the same state from disk.
    ledger.close();
    drop((settler, ledger));
    let ledger = open_ledger(dir.path(), provider);
    assert_eq!(ledger.unsettled_fee(user.address()), U256::ZERO);
    assert!(
        ledger
            .pending_session_requests(user.address())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn partial_payment_with_lost_hash_stays_open_until_its_event_is_found() {
    partial_payment_after_crash(Fault::AfterSendLost).await;
}
#[tokio::test]
async fn partial_payment_before_receipt_is_booked_from_the_recorded_tx() {
    partial_payment_after_crash(Fault::BeforeReceipt).await;
}
#[tokio::test]
async fn partial_payment_after_receipt_is_booked_from_the_recorded_tx() {
    partial_payment_after_crash(Fault::AfterReceiptBeforeCommit).await;
}
