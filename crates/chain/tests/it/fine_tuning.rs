//! Fine-tuning on a real anvil: service registration, deliverables, acknowledgement, and settlement that pays
//! the full fee and reveals the key only for acknowledged deliverables (the penalty otherwise), with exact
//! sub-account balances.

use alloy::{
    primitives::{Address, Bytes, U256},
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::{SolStruct, eip712_domain},
};
use zg_chain::{
    Amount, Error, FineTuningQuota, FineTuningServiceParams, FineTuningServingContract, ServiceKind,
    TaskSettlement,
};

alloy::sol! {
    struct VerifierMessage { string id; bytes encryptedSecret; bytes modelRootHash; uint256 nonce; uint256 taskFee; address user; }
}

fn zg(s: &str) -> Amount {
    s.parse().unwrap()
}

/// A settlement of task `id` signed by `tee` over the contract's EIP-712 `VerifierMessage`.
#[allow(clippy::too_many_arguments, reason = "mirrors the signed message's fields")]
pub(crate) fn settlement(
    tee: &PrivateKeySigner,
    contract: Address,
    user: Address,
    id: &str,
    root: &Bytes,
    secret: &Bytes,
    fee: Amount,
    nonce: u64,
) -> TaskSettlement {
    let msg = VerifierMessage {
        id: id.to_owned(),
        encryptedSecret: secret.clone(),
        modelRootHash: root.clone(),
        nonce: U256::from(nonce),
        taskFee: fee.0,
        user,
    };
    let domain = eip712_domain! { name: "0G Fine-Tuning Serving", version: "1", chain_id: 31337, verifying_contract: contract, };
    let sig = tee.sign_hash_sync(&msg.eip712_signing_hash(&domain)).unwrap();
    TaskSettlement {
        id: id.to_owned(),
        encrypted_secret: secret.clone(),
        model_root_hash: root.clone(),
        nonce: U256::from(nonce),
        signature: sig.as_bytes().to_vec().into(),
        task_fee: fee.0,
        user,
    }
}

pub(crate) fn params(tee: Address) -> FineTuningServiceParams {
    FineTuningServiceParams {
        url: "http://127.0.0.1:9".into(),
        quota: FineTuningQuota {
            cpu_count: U256::from(8),
            node_memory: U256::from(64),
            gpu_count: U256::from(1),
            node_storage: U256::from(500),
            gpu_type: "H100".into(),
        },
        price_per_token: U256::from(7),
        occupied: false,
        models: vec!["Qwen2.5-0.5B-Instruct".into(), "zg-demo".into()],
        tee_signer: tee,
    }
}

#[tokio::test]
async fn settlement_reveals_the_key_only_for_acknowledged_deliverables_and_charges_the_penalty_otherwise() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (customer_key, provider_key, tee) = (keys[1].clone(), keys[2].clone(), keys[3].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let ft = devnet.addresses().fine_tuning;
    let raw = FineTuningServingContract::new(ft, prov.provider().clone());

    // Registration: no service yet, then the TEE signer and every field are on chain.
    assert_eq!(customer.fine_tuning().tee_signer(provider).await.unwrap(), None);
    let p = params(tee.address());
    let err = prov
        .fine_tuning()
        .add_or_update_service(&p, Amount::ZERO)
        .await
        .unwrap_err();
    assert!(
        err.revert().is_some(),
        "a stake below the minimum must revert with a reason: {err}"
    );
    prov.fine_tuning()
        .add_or_update_service(&p, zg("1"))
        .await
        .unwrap();
    assert_eq!(
        customer.fine_tuning().tee_signer(provider).await.unwrap(),
        Some(tee.address())
    );
    let svc = raw.getService(provider).call().await.unwrap();
    assert_eq!(
        (svc.provider, svc.url.as_str(), svc.pricePerToken, svc.occupied),
        (provider, p.url.as_str(), U256::from(7), false)
    );
    assert_eq!(
        (svc.quota.cpuCount, svc.quota.nodeMemory, svc.quota.gpuCount),
        (U256::from(8), U256::from(64), U256::from(1))
    );
    assert_eq!(
        (svc.quota.nodeStorage, svc.quota.gpuType.as_str()),
        (U256::from(500), "H100")
    );
    assert_eq!(svc.models, p.models);
    // Updating takes no stake; without one it goes through.
    let err = prov
        .fine_tuning()
        .add_or_update_service(&p, zg("1"))
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "CannotAddStakeWhenUpdating");
    let busy = FineTuningServiceParams {
        occupied: true,
        ..p.clone()
    };
    prov.fine_tuning()
        .add_or_update_service(&busy, Amount::ZERO)
        .await
        .unwrap();
    assert!(raw.getService(provider).call().await.unwrap().occupied);

    // Customer funds a fine-tuning sub-account.
    assert_eq!(
        customer.fine_tuning().get_account(me, provider).await.unwrap(),
        None
    );
    customer.ledger().add_ledger(zg("10"), "").await.unwrap();
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::FineTuning, zg("5"))
        .await
        .unwrap();
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acct.balance, acct.nonce, acct.deliverables.len()),
        (zg("5"), U256::ZERO, 0)
    );
    // Settlement needs the owner's and the customer's acknowledgement of the TEE signer (issue 9; the
    // refusals themselves are tested in tee_signer_trust.rs).
    devnet
        .acknowledge_tee_signer(
            ServiceKind::FineTuning,
            provider,
            std::slice::from_ref(&customer_key),
        )
        .await
        .unwrap();

    // Provider delivers two models; the customer acknowledges the first.
    let (root_a, root_b) = (Bytes::from(vec![0xaa; 32]), Bytes::from(vec![0xbb; 32]));
    prov.fine_tuning()
        .add_deliverable(me, "task-a", root_a.clone())
        .await
        .unwrap();
    prov.fine_tuning()
        .add_deliverable(me, "task-b", root_b.clone())
        .await
        .unwrap();
    let err = prov
        .fine_tuning()
        .add_deliverable(me, "task-a", root_a.clone())
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "DeliverableAlreadyExists");
    customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-a")
        .await
        .unwrap();
    let ds = customer
        .fine_tuning()
        .get_deliverables(me, provider)
        .await
        .unwrap();
    let summary: Vec<_> = ds
        .iter()
        .map(|d| (d.id.as_str(), d.acknowledged, d.settled, d.encrypted_secret.len()))
        .collect();
    assert_eq!(
        summary,
        vec![("task-a", true, false, 0), ("task-b", false, false, 0)]
    );
    assert_eq!(ds[0].model_root_hash, root_a);

    // The digest we sign is the one the contract verifies.
    let secret = Bytes::from(vec![0x5e; 129]);
    let a = settlement(&tee, ft, me, "task-a", &root_a, &secret, zg("2"), 1);
    let on_chain = raw
        .verifierMessageDigest(
            a.id.clone(),
            secret.clone(),
            root_a.clone(),
            a.nonce,
            a.task_fee,
            me,
        )
        .call()
        .await
        .unwrap();
    let ours = VerifierMessage {
        id: a.id.clone(),
        encryptedSecret: secret.clone(),
        modelRootHash: root_a.clone(),
        nonce: a.nonce,
        taskFee: a.task_fee,
        user: me,
    }
    .eip712_signing_hash(&eip712_domain! { name: "0G Fine-Tuning Serving", version: "1", chain_id: 31337, verifying_contract: ft, });
    assert_eq!(on_chain, ours);

    // An acknowledged deliverable must reveal a secret; a forged signature pays nothing.
    let empty = settlement(&tee, ft, me, "task-a", &root_a, &Bytes::new(), zg("2"), 1);
    let err = prov.fine_tuning().settle_fees(&empty).await.unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "SecretShouldNotBeEmpty");
    let forged = settlement(&customer_key, ft, me, "task-a", &root_a, &secret, zg("2"), 1);
    let err = prov.fine_tuning().settle_fees(&forged).await.unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "InvalidVerifierInput");

    // Settle the acknowledged one: full fee, key revealed.
    let contract_before = customer.balance(ft).await.unwrap();
    prov.fine_tuning().settle_fees(&a).await.unwrap();
    let d = customer
        .fine_tuning()
        .get_deliverable(me, provider, "task-a")
        .await
        .unwrap();
    assert_eq!(
        (d.settled, d.acknowledged, &d.encrypted_secret),
        (true, true, &secret)
    );
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((acct.balance, acct.nonce), (zg("3"), U256::from(1)));

    // Settle the unacknowledged one: a secret is refused, then 30% of the fee is charged and nothing revealed.
    let leaky = settlement(&tee, ft, me, "task-b", &root_b, &secret, zg("1"), 2);
    let err = prov.fine_tuning().settle_fees(&leaky).await.unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "SecretShouldBeEmpty");
    let b = settlement(&tee, ft, me, "task-b", &root_b, &Bytes::new(), zg("1"), 2);
    prov.fine_tuning().settle_fees(&b).await.unwrap();
    let d = customer
        .fine_tuning()
        .get_deliverable(me, provider, "task-b")
        .await
        .unwrap();
    assert_eq!(
        (d.settled, d.acknowledged, d.encrypted_secret.len()),
        (true, false, 0)
    );
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acct.balance, acct.nonce, acct.pending_refund),
        (zg("2.7"), U256::from(2), Amount::ZERO)
    );
    assert_eq!(
        customer.balance(ft).await.unwrap().0,
        contract_before.0 - zg("2.3").0,
        "2 + 0.3 paid out"
    );
    let l = customer.ledger().get_ledger(me).await.unwrap().unwrap();
    assert_eq!((l.available, l.total), (zg("5"), zg("7.7")));

    // Settling again is refused with a decoded error, even with a fresh nonce, and charges nothing.
    let again = settlement(&tee, ft, me, "task-a", &root_a, &secret, zg("2"), 3);
    let err = prov.fine_tuning().settle_fees(&again).await.unwrap_err();
    assert!(matches!(err, Error::Reverted { .. }), "{err}");
    let r = err.revert().expect("decoded");
    assert_eq!(r.name, "DeliverableAlreadySettled");
    assert_eq!(
        r.args,
        vec![("id".to_owned(), "\"task-a\"".to_owned())],
        "string args are rendered quoted"
    );
    let err = customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-b")
        .await
        .unwrap_err();
    assert_eq!(
        err.revert().expect("decoded").name,
        "CannotAcknowledgeSettledDeliverable"
    );
    assert_eq!(
        customer
            .fine_tuning()
            .get_account(me, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        zg("2.7")
    );

    // Abandoning an unsettled, unacknowledged deliverable charges nothing and removes it; settled or acknowledged
    // ones cannot be abandoned.
    prov.fine_tuning()
        .add_deliverable(me, "task-c", root_a.clone())
        .await
        .unwrap();
    prov.fine_tuning()
        .add_deliverable(me, "task-d", root_b.clone())
        .await
        .unwrap();
    customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-d")
        .await
        .unwrap();
    prov.fine_tuning()
        .abandon_deliverable(me, "task-c")
        .await
        .unwrap();
    let err = customer
        .fine_tuning()
        .get_deliverable(me, provider, "task-c")
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "DeliverableNotExists");
    let err = prov
        .fine_tuning()
        .abandon_deliverable(me, "task-d")
        .await
        .unwrap_err();
    assert_eq!(
        err.revert().expect("decoded").name,
        "DeliverableAlreadyAcknowledged"
    );
    let err = prov
        .fine_tuning()
        .abandon_deliverable(me, "task-a")
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "DeliverableAlreadySettled");
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = acct.deliverables.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        (acct.balance, acct.nonce, ids),
        (zg("2.7"), U256::from(2), vec!["task-a", "task-b", "task-d"])
    );
    assert_eq!(
        customer.balance(ft).await.unwrap().0,
        contract_before.0 - zg("2.3").0
    );
}
