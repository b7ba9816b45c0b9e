//! The per-customer serialisation point under hundreds of concurrent tasks, and durability.

use std::sync::Arc;

use alloy_primitives::{B256, U256};
use zg_billing::{
    ChainAccount, Completion, Domains, Error, EthSigner, Request, SignedRequest, Usage, Voucher, body_hash,
};

use crate::common::{domains, open_ledger, signer};

pub fn native(
    d: &Domains,
    user: &EthSigner,
    provider: alloy_primitives::Address,
    nonce: u64,
    cap: u64,
) -> SignedRequest {
    let req = Request {
        user: user.address(),
        provider,
        service: "chat".into(),
        nonce: U256::from(nonce),
        bodyHash: body_hash(format!("body-{nonce}").as_bytes()),
        feeCap: U256::from(cap),
    };
    d.sign_request(user, req).unwrap()
}

fn completion(fee: u64) -> Completion {
    Completion {
        request_hash: B256::repeat_byte(1),
        response_hash: B256::repeat_byte(2),
        model: "demo".into(),
        usage: Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        }),
        fee: U256::from(fee),
        receipt_signature: vec![0; 64],
        receipt: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_concurrent_requests_never_double_reserve_or_reuse_a_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let user = Arc::new(signer(1));
    // Balance for exactly 100 fee caps of 1000.
    ledger
        .set_chain_account(
            user.address(),
            ChainAccount {
                balance: U256::from(100_000),
                tee_signer_acknowledged: true,
                ..Default::default()
            },
        )
        .unwrap();
    let d = domains();
    let mut tasks = Vec::new();
    // 300 distinct nonces, each sent twice (600 tasks): only one copy of a nonce may pass.
    for copy in 0..2 {
        for n in 1..=300u64 {
            let (l, u, d) = (ledger.clone(), Arc::clone(&user), d.clone());
            tasks.push(tokio::spawn(async move {
                let r = native(&d, &u, provider, n, 1000);
                let body = format!("body-{n}");
                (n, copy, l.admit_native(&r, body.as_bytes(), U256::ZERO, 1).await)
            }));
        }
    }
    let mut admitted = Vec::new();
    let (mut replays, mut broke) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (n, _, Ok(a)) => admitted.push((n, a)),
            (_, _, Err(Error::NonceReplayed { .. })) => replays += 1,
            (_, _, Err(Error::InsufficientBalance { .. })) => broke += 1,
            (_, _, Err(e)) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(
        admitted.len(),
        100,
        "exactly the balance's worth of fee caps is reserved"
    );
    let mut nonces: Vec<u64> = admitted.iter().map(|(n, _)| *n).collect();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(nonces.len(), 100, "no nonce admitted twice");
    assert_eq!(replays + broke, 500);
    assert_eq!(ledger.available(user.address()), Some(U256::ZERO));

    // Complete all at half the cap: half the balance is unsettled, the rest available again.
    let mut done = Vec::new();
    for (_, a) in admitted {
        let l = ledger.clone();
        done.push(tokio::spawn(
            async move { l.complete(a, completion(500), 2).await },
        ));
    }
    for t in done {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(ledger.unsettled_fee(user.address()), U256::from(50_000));
    assert_eq!(ledger.available(user.address()), Some(U256::from(50_000)));

    // Durable: after a reopen, used nonces stay used and the unsettled fee is intact.
    ledger.close();
    drop(ledger);
    let ledger = open_ledger(dir.path(), provider);
    ledger
        .set_chain_account(
            user.address(),
            ChainAccount {
                balance: U256::from(100_000),
                tee_signer_acknowledged: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(ledger.unsettled_fee(user.address()), U256::from(50_000));
    let n = nonces[0];
    let again = native(&d, &user, provider, n, 1);
    assert!(matches!(
        ledger
            .admit_native(&again, format!("body-{n}").as_bytes(), U256::ZERO, 3)
            .await,
        Err(Error::NonceReplayed { .. })
    ));
}

#[tokio::test]
async fn rejections_leave_the_ledger_untouched_and_vouchers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let user = signer(1);
    let d = domains();
    let r = native(&d, &user, provider, 1, 10);
    // Unknown account: refused before anything is recorded.
    assert!(matches!(
        ledger.admit_native(&r, b"body-1", U256::ZERO, 0).await,
        Err(Error::UnknownAccount { .. })
    ));
    ledger
        .set_chain_account(
            user.address(),
            ChainAccount {
                balance: U256::from(100),
                tee_signer_acknowledged: true,
                ..Default::default()
            },
        )
        .unwrap();
    // Wrong body, wrong provider, bad signature.
    assert!(matches!(
        ledger.admit_native(&r, b"other", U256::ZERO, 0).await,
        Err(Error::BodyMismatch { .. })
    ));
    let wrong = native(&d, &user, signer(8).address(), 1, 10);
    assert!(matches!(
        ledger.admit_native(&wrong, b"body-1", U256::ZERO, 0).await,
        Err(Error::WrongProvider { .. })
    ));
    let mut forged = r.clone();
    forged.request.feeCap = U256::from(1);
    assert!(matches!(
        ledger.admit_native(&forged, b"body-1", U256::ZERO, 0).await,
        Err(Error::BadSignature { .. })
    ));
    // The nonce was not consumed by any rejection.
    let a = ledger.admit_native(&r, b"body-1", U256::ZERO, 0).await.unwrap();
    ledger.complete(a, completion(10), 1).await.unwrap();

    // Owed 10 with no voucher; credit limit is larger, so fine. Voucher regressions are refused.
    let v = |amount: u64, nonce: u64| {
        d.sign_voucher(
            &user,
            Voucher {
                user: user.address(),
                provider,
                cumulativeAmount: U256::from(amount),
                nonce: U256::from(nonce),
            },
        )
        .unwrap()
    };
    let r2 = native(&d, &user, provider, 2, 10).with_voucher(v(10, 5));
    let a = ledger.admit_native(&r2, b"body-2", U256::ZERO, 2).await.unwrap();
    ledger.release(a).await.unwrap();
    assert_eq!(
        ledger
            .latest_voucher(user.address())
            .unwrap()
            .voucher
            .cumulativeAmount,
        U256::from(10)
    );
    let r3 = native(&d, &user, provider, 3, 10).with_voucher(v(9, 6));
    assert!(matches!(
        ledger.admit_native(&r3, b"body-3", U256::ZERO, 3).await,
        Err(Error::VoucherRegressed { .. })
    ));
    let mut bad = v(20, 7);
    bad.voucher.cumulativeAmount = U256::from(21);
    let r4 = native(&d, &user, provider, 4, 10).with_voucher(bad);
    assert!(matches!(
        ledger.admit_native(&r4, b"body-4", U256::ZERO, 4).await,
        Err(Error::BadSignature { .. })
    ));
    assert_eq!(
        ledger.latest_voucher(user.address()).unwrap().voucher.nonce,
        U256::from(5)
    );
    // Insufficient balance (100 − 10 unsettled = 90 < 95).
    let big = native(&d, &user, provider, 5, 95);
    assert!(matches!(
        ledger.admit_native(&big, b"body-5", U256::ZERO, 5).await,
        Err(Error::InsufficientBalance { available, .. }) if available == U256::from(90)
    ));
}
