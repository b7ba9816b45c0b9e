//! Issue 9 at the ledger: vouchers the contract would refuse, and a refund that appears on chain without traffic.

use alloy_primitives::{Address, Signature, U256};
use zg_billing::{ChainAccount, EthSigner, Settler, SettlerConfig, Voucher};

use crate::common::{MockChain, open_ledger, signer};
use crate::ledger_concurrency::native;

/// secp256k1's group order n.
pub fn secp256k1_n() -> U256 {
    "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        .parse()
        .unwrap()
}

/// The same signature with `s` replaced by `n − s` (and the parity flipped): valid for `ecrecover`
/// implementations that allow high s, refused by the contract's OpenZeppelin-style check.
pub fn high_s(sig: Signature) -> Signature {
    Signature::new(sig.r(), secp256k1_n() - sig.s(), !sig.v())
}

fn funded(ledger: &zg_billing::Ledger, user: Address) {
    ledger
        .set_chain_account(
            user,
            ChainAccount {
                balance: U256::from(10u64.pow(18)),
                tee_signer_acknowledged: true,
                ..Default::default()
            },
        )
        .unwrap();
}

#[tokio::test]
async fn a_voucher_nonce_the_contract_refuses_is_refused_at_admission() {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let user = signer(1);
    funded(&ledger, user.address());
    let d = ledger.domains().clone();
    let v = Voucher {
        user: user.address(),
        provider,
        cumulativeAmount: U256::ZERO,
        nonce: U256::from(1) << 200,
    };
    let r = native(&d, &user, provider, 1, 1000).with_voucher(d.sign_voucher(&user, v.clone()).unwrap());
    let e = ledger
        .admit_native(&r, b"body-1", U256::ZERO, 1)
        .await
        .expect_err("a voucher nonce >= 2^128 never settles");
    assert!(e.to_string().contains("2^128"), "{e}");
    assert!(ledger.latest_voucher(user.address()).is_none());
    // The largest nonce the contract takes is fine.
    let v = Voucher {
        nonce: U256::from(u128::MAX),
        ..v
    };
    let r = native(&d, &user, provider, 2, 1000).with_voucher(d.sign_voucher(&user, v).unwrap());
    let a = ledger.admit_native(&r, b"body-2", U256::ZERO, 1).await.unwrap();
    ledger.release(a).await.unwrap();
}

#[tokio::test]
async fn a_high_s_voucher_is_stored_in_the_low_s_form_the_contract_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let user = signer(1);
    funded(&ledger, user.address());
    let d = ledger.domains().clone();
    let v = Voucher {
        user: user.address(),
        provider,
        cumulativeAmount: U256::from(500),
        nonce: U256::from(1),
    };
    let mut signed = d.sign_voucher(&user, v.clone()).unwrap();
    let low = signed.signature;
    signed.signature = high_s(low);
    assert!(signed.signature.s() > secp256k1_n() >> 1);
    let r = native(&d, &user, provider, 1, 1000).with_voucher(signed);
    let a = ledger.admit_native(&r, b"body-1", U256::ZERO, 1).await.unwrap();
    ledger.release(a).await.unwrap();
    let stored = ledger.latest_voucher(user.address()).unwrap();
    assert_eq!(
        stored.signature, low,
        "stored low-s, byte for byte what the customer's key makes"
    );
    // Survives a reopen in the same form.
    ledger.close();
    drop(ledger);
    let ledger = open_ledger(dir.path(), provider);
    assert_eq!(ledger.latest_voucher(user.address()).unwrap().signature, low);
}

#[tokio::test]
async fn a_refund_requested_without_traffic_is_noticed_by_the_next_round() {
    let dir = tempfile::tempdir().unwrap();
    let tee = signer(7);
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let chain = MockChain::new(provider, tee.address());
    let user: EthSigner = signer(1);
    chain.deposit(user.address(), U256::from(1_000_000));
    ledger
        .set_chain_account(
            user.address(),
            chain.state.lock().unwrap().accounts[&user.address()],
        )
        .unwrap();
    // A little owed: far below the settlement threshold.
    let totals = crate::settlement_crash::serve(&ledger, std::slice::from_ref(&user), 1, true).await;
    let settler = Settler::new(ledger.clone(), chain.clone(), tee, SettlerConfig::default()).unwrap();
    let r = settler.settle_due(20, false).await.unwrap();
    assert!(r.items.is_empty(), "below threshold, no refund: nothing due");
    // The customer asks for a refund on chain; no request follows, so no account refresh either.
    chain
        .state
        .lock()
        .unwrap()
        .accounts
        .get_mut(&user.address())
        .unwrap()
        .pending_refund = U256::from(900_000);
    let r = settler.settle_due(21, false).await.unwrap();
    assert_eq!(r.total_paid(), U256::from(totals[0]), "{r:?}");
}

/// Attack (issue 9): a funded customer who never acknowledged the TEE signer pays with a session token. The TEE
/// batch would be refused (status 8), so the ledger refuses the request with a named error and reserves nothing.
#[tokio::test]
async fn a_session_token_of_a_customer_who_did_not_acknowledge_the_signer_is_refused() {
    use zg_billing::{Error, SessionClaims, SessionToken};
    let dir = tempfile::tempdir().unwrap();
    let provider = signer(9).address();
    let ledger = open_ledger(dir.path(), provider);
    let user = signer(1);
    let unacknowledged = ChainAccount {
        balance: U256::from(10u64.pow(18)),
        ..Default::default()
    };
    ledger.set_chain_account(user.address(), unacknowledged).unwrap();
    let claims = SessionClaims {
        address: user.address(),
        provider: provider.to_string(),
        timestamp: 1,
        expires_at: 2,
        nonce: "x".into(),
        generation: 0,
        token_id: 255,
    };
    let (tok, _) = SessionToken::create(&user, &claims).unwrap();
    let e = ledger
        .admit_session(&tok, U256::from(10_000), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::TeeSignerNotAcknowledged { user: u } if u == user.address()),
        "{e}"
    );
    assert!(e.to_string().contains("acknowledge-provider"), "{e}");
    assert_eq!(ledger.available(user.address()), Some(U256::from(10u64.pow(18))));
    // Once acknowledged, the same token is admitted.
    ledger
        .set_chain_account(
            user.address(),
            ChainAccount {
                tee_signer_acknowledged: true,
                ..unacknowledged
            },
        )
        .unwrap();
    let a = ledger.admit_session(&tok, U256::from(10_000), 1).await.unwrap();
    ledger.release(a).await.unwrap();
}
