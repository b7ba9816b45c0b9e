//! The whole money path on a real anvil: ledger → sub-account → settlement (TEE batch and customer voucher)
//! → refund request → lock time → refund, with exact balances at every step.

use alloy::{
    primitives::{Address, B256, U256, keccak256},
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::{SolStruct, eip712_domain},
};
use zg_chain::{Amount, Error, ServiceKind, ServiceParams, SettlementStatus, SignedVoucher, TeeSettlement};

alloy::sol! {
    struct TEESettlement { bytes32 requestsHash; uint256 nonce; address provider; address user; uint256 totalFee; }
    struct Voucher { address user; address provider; uint256 cumulativeAmount; uint256 nonce; }
}

fn zg(s: &str) -> Amount {
    s.parse().unwrap()
}

pub(crate) fn tee_settlement(
    tee: &PrivateKeySigner,
    contract: Address,
    user: Address,
    provider: Address,
    fee: Amount,
    nonce: u64,
) -> TeeSettlement {
    let requests_hash = keccak256(format!("requests up to {nonce}"));
    let msg = TEESettlement {
        requestsHash: requests_hash,
        nonce: U256::from(nonce),
        provider,
        user,
        totalFee: fee.0,
    };
    let domain = eip712_domain! { name: "0G Inference Serving", version: "1", chain_id: 31337, verifying_contract: contract, };
    let sig = tee.sign_hash_sync(&msg.eip712_signing_hash(&domain)).unwrap();
    TeeSettlement {
        user,
        provider,
        total_fee: fee.0,
        requests_hash,
        nonce: U256::from(nonce),
        signature: sig.as_bytes().to_vec().into(),
    }
}

fn voucher(
    customer: &PrivateKeySigner,
    contract: Address,
    provider: Address,
    cumulative: Amount,
    nonce: u64,
) -> SignedVoucher {
    let user = customer.address();
    let msg = Voucher {
        user,
        provider,
        cumulativeAmount: cumulative.0,
        nonce: U256::from(nonce),
    };
    let domain = eip712_domain! { name: "zg-compute Vouchers", version: "1", chain_id: 31337, verifying_contract: contract, };
    let sig = customer
        .sign_hash_sync(&msg.eip712_signing_hash(&domain))
        .unwrap();
    SignedVoucher {
        user,
        provider,
        cumulative_amount: cumulative.0,
        nonce: U256::from(nonce),
        signature: sig.as_bytes().to_vec().into(),
    }
}

#[tokio::test]
async fn deposit_transfer_settle_both_ways_refund_after_lock_time() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (owner, customer_key, provider_key, tee) =
        (keys[0].clone(), keys[1].clone(), keys[2].clone(), keys[3].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let admin = devnet.client(Some(owner)).await.unwrap();
    let inference_addr = devnet.addresses().inference;

    // Ledger.
    assert_eq!(customer.ledger().get_ledger(me).await.unwrap(), None);
    let err = customer.ledger().add_ledger(zg("0.5"), "").await.unwrap_err();
    let revert = err.revert().expect("a decoded revert");
    assert_eq!(revert.name, "MinimumDepositRequired");
    assert!(err.to_string().contains("deposit at least 2.5 0G more"), "{err}");
    customer.ledger().add_ledger(zg("10"), "").await.unwrap();
    customer.ledger().deposit(zg("2")).await.unwrap();
    let l = customer.ledger().get_ledger(me).await.unwrap().unwrap();
    assert_eq!((l.available, l.total), (zg("12"), zg("12")));

    // Provider registers, owner acknowledges the TEE signer.
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
    prov.inference()
        .add_or_update_service(&params, zg("1"))
        .await
        .unwrap();
    admin
        .inference()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap();
    let svc = customer.inference().get_service(provider).await.unwrap().unwrap();
    assert_eq!(
        (svc.tee_signer, svc.tee_signer_acknowledged, svc.model.as_str()),
        (tee.address(), true, "zg-demo")
    );

    // Transfer to the provider's sub-account.
    let err = customer
        .ledger()
        .transfer_fund(provider, ServiceKind::Inference, zg("100"))
        .await
        .unwrap_err();
    assert!(
        err.revert().is_some(),
        "over-transfer must revert with a reason: {err}"
    );

    // Regression: a reverted send must not burn a nonce (alloy's cached nonce manager did, stalling this).
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::Inference, zg("4"))
        .await
        .unwrap();
    assert_eq!(
        customer.ledger().get_ledger(me).await.unwrap().unwrap().available,
        zg("8")
    );
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acct.balance, acct.pending_refund, acct.nonce),
        (zg("4"), Amount::ZERO, U256::ZERO)
    );
    assert_eq!(
        customer
            .ledger()
            .providers(me, ServiceKind::Inference)
            .await
            .unwrap(),
        vec![provider]
    );

    // Issue 9: until the customer acknowledges the provider's TEE signer, a TEE batch cannot charge it.
    let item = tee_settlement(&tee, inference_addr, me, provider, zg("1"), 1);
    assert!(!acct.acknowledged);
    let preview = prov
        .inference()
        .preview_settlement_results(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(
        preview.failed,
        vec![(me, SettlementStatus::SignerNotAcknowledgedByUser)]
    );
    let out = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(
        out.results[0].status,
        SettlementStatus::SignerNotAcknowledgedByUser
    );
    assert_eq!(out.results[0].unsettled, Some(zg("1").0), "nothing collected");
    customer
        .inference()
        .acknowledge_tee_signer(provider, true)
        .await
        .unwrap();
    assert!(
        customer
            .inference()
            .get_account(me, provider)
            .await
            .unwrap()
            .unwrap()
            .acknowledged
    );

    // TEE batch settlement: preview, settle, replay is refused and pays nothing.
    let contract_before = customer.balance(inference_addr).await.unwrap();
    let preview = prov
        .inference()
        .preview_settlement_results(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert!(
        preview.failed.is_empty() && preview.partial.is_empty(),
        "{preview:?}"
    );
    let out = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(out.results.len(), 1);
    assert_eq!(
        (out.results[0].user, out.results[0].status),
        (me, SettlementStatus::Success)
    );
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((acct.balance, acct.nonce), (zg("3"), U256::from(1)));
    assert_eq!(
        customer.balance(inference_addr).await.unwrap().0,
        contract_before.0 - zg("1").0
    );
    let replay = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(replay.results[0].status, SettlementStatus::InvalidNonce);
    assert_eq!(
        customer
            .inference()
            .get_account(me, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        zg("3")
    );
    // A forged signature (signed by the customer, not the TEE) pays nothing.
    let forged = tee_settlement(&customer_key, inference_addr, me, provider, zg("1"), 2);
    let out = prov.inference().settle_fees_with_tee(&[forged]).await.unwrap();
    assert_eq!(out.results[0].status, SettlementStatus::InvalidSignature);

    // Voucher settlement: pays the cumulative difference, once.
    let v1 = voucher(&customer_key, inference_addr, provider, zg("0.5"), 1);
    let out = prov
        .inference()
        .settle_vouchers(std::slice::from_ref(&v1))
        .await
        .unwrap();
    assert_eq!(
        (out.results[0].status, out.results[0].paid),
        (SettlementStatus::Success, Some(zg("0.5").0))
    );
    let v2 = voucher(&customer_key, inference_addr, provider, zg("1.2"), 2);
    let out = prov
        .inference()
        .settle_vouchers(std::slice::from_ref(&v2))
        .await
        .unwrap();
    assert_eq!(out.results[0].paid, Some(zg("0.7").0));
    assert_eq!(
        prov.inference().voucher_state(me, provider).await.unwrap(),
        (zg("1.2").0, U256::from(2))
    );
    let out = prov.inference().settle_vouchers(&[v2]).await.unwrap();
    assert_eq!(out.results[0].status, SettlementStatus::InvalidNonce);
    assert_eq!(
        customer
            .inference()
            .get_account(me, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        zg("1.8")
    );

    // Retrieve: the refund is requested now and unlocks only after the lock time.
    customer
        .ledger()
        .retrieve_fund(vec![provider], ServiceKind::Inference)
        .await
        .unwrap();
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acct.pending_refund, zg("1.8"));
    assert_eq!(
        customer.ledger().get_ledger(me).await.unwrap().unwrap().available,
        zg("8")
    );
    let lock = customer.inference().lock_time().await.unwrap();
    devnet.advance_time(lock + 1).await.unwrap();
    customer
        .ledger()
        .retrieve_fund(vec![provider], ServiceKind::Inference)
        .await
        .unwrap();
    let l = customer.ledger().get_ledger(me).await.unwrap().unwrap();
    assert_eq!(l.available, zg("9.8"), "12 deposited - 1 (TEE) - 1.2 (vouchers)");

    // Refund to the wallet.
    let wallet_before = customer.balance(me).await.unwrap();
    let tx = customer.ledger().refund(zg("9.8")).await.unwrap();
    let wallet_after = customer.balance(me).await.unwrap();
    assert!(wallet_after > wallet_before, "refund reached the wallet");
    assert!(wallet_after.0 - wallet_before.0 <= zg("9.8").0 && tx.gas_used > 0);
    assert_eq!(
        customer.ledger().get_ledger(me).await.unwrap().unwrap().available,
        Amount::ZERO
    );
    let err = customer.ledger().refund(zg("1")).await.unwrap_err();
    assert!(matches!(err, Error::Reverted { .. }), "{err}");
}

#[tokio::test]
async fn sending_without_a_key_says_how_to_give_one() {
    let devnet = crate::devnet().await;
    let client = devnet.client(None).await.unwrap();
    let err = client.ledger().deposit(zg("1")).await.unwrap_err();
    assert!(matches!(err, Error::NoSigner));
    assert!(err.to_string().contains("ZG_PRIVATE_KEY"));
    let _ = B256::ZERO;
}
