//! `zg decrypt-model --provider P --task-id T`: the fine-tuning key-for-payment exchange end to end. The provider
//! seals a model under a fresh key, wraps the key for the customer, and reveals it on chain in the settlement
//! the customer's acknowledgement allows; the binary reads it from chain and recovers the exact bytes.

use crate::{stderr, stdout, zg};
use zg_chain::{
    Amount, Bytes, Devnet, DevnetConfig, FineTuningQuota, FineTuningServiceParams, FineTuningServingContract,
    PrivateKeySigner, ServiceKind, TaskSettlement, U256,
};
use zg_sealing::{Sealer, SealingKey, k256};

fn zg_amount(s: &str) -> Amount {
    s.parse().unwrap()
}

fn k256_signing_key(key: &PrivateKeySigner) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(key.to_bytes().as_slice()).unwrap()
}

#[tokio::test]
async fn decrypt_model_reads_the_revealed_key_from_chain_after_settlement() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keys = devnet.keys();
    let (customer_key, provider_key, tee_key) = (keys[1].clone(), keys[2].clone(), keys[3].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let ft = devnet.addresses().fine_tuning;

    // The provider registers its fine-tuning service with its TEE signer; the customer funds a sub-account.
    let params = FineTuningServiceParams {
        url: "http://127.0.0.1:9".into(),
        quota: FineTuningQuota {
            gpu_count: U256::from(1),
            gpu_type: "H100".into(),
            ..Default::default()
        },
        price_per_token: U256::from(1),
        occupied: false,
        models: vec!["zg-demo".into()],
        tee_signer: tee_key.address(),
    };
    prov.fine_tuning()
        .add_or_update_service(&params, zg_amount("1"))
        .await
        .unwrap();
    customer.ledger().add_ledger(zg_amount("10"), "").await.unwrap();
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::FineTuning, zg_amount("5"))
        .await
        .unwrap();
    // As 0G's onboarding: the owner and the customer acknowledge the TEE signer (settleFees needs both: issue 9).
    devnet
        .acknowledge_tee_signer(
            ServiceKind::FineTuning,
            provider,
            std::slice::from_ref(&customer_key),
        )
        .await
        .unwrap();

    // Inside the TEE: seal the model under a fresh key and wrap that key for the customer.
    let dir = tempfile::tempdir().unwrap();
    let (model, sealed, out) = (
        dir.path().join("model.bin"),
        dir.path().join("model.sealed"),
        dir.path().join("out.bin"),
    );
    let weights: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&model, &weights).unwrap();
    let tee = k256_signing_key(&tee_key);
    let key = SealingKey::generate().unwrap();
    Sealer::new(&key).seal_file(&tee, &model, &sealed).unwrap();
    assert_ne!(
        std::fs::read(&sealed).unwrap(),
        weights,
        "the sealed file is not the plaintext"
    );
    let customer_sk = k256::SecretKey::from_slice(customer_key.to_bytes().as_slice()).unwrap();
    let encrypted_secret = Bytes::from(
        key.wrap_for(&customer_sk.public_key())
            .unwrap()
            .as_bytes()
            .to_vec(),
    );
    let root = Bytes::from(vec![0x42; 32]);
    prov.fine_tuning()
        .add_deliverable(me, "task-1", root.clone())
        .await
        .unwrap();

    let rpc = devnet.rpc_url();
    let customer_hex = format!("0x{}", hex::encode(customer_key.to_bytes()));
    let env = [
        ("ZG_RPC_URL", rpc.as_str()),
        ("ZG_PRIVATE_KEY", customer_hex.as_str()),
    ];
    let (sealed_arg, out_arg, provider_arg) = (
        sealed.to_str().unwrap(),
        out.to_str().unwrap(),
        provider.to_string(),
    );
    let decrypt = |extra: &[&str]| {
        let mut args = vec![
            "decrypt-model",
            "--encrypted-model",
            sealed_arg,
            "--output",
            out_arg,
            "--provider",
            &provider_arg,
            "--task-id",
            "task-1",
        ];
        args.extend_from_slice(extra);
        zg(&args, &env)
    };

    // Before acknowledgement and before settlement, no key is on chain: the command says which step is missing.
    let o = decrypt(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no key revealed yet: acknowledge the deliverable first"),
        "{}",
        stderr(&o)
    );
    customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-1")
        .await
        .unwrap();
    let o = decrypt(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no key revealed yet"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("revealed when the provider settles"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing is written without the key");

    // The TEE signs the settlement (digest as the contract computes it); settling pays and reveals the key.
    let (fee, nonce) = (zg_amount("2"), U256::from(1));
    let digest = FineTuningServingContract::new(ft, prov.provider().clone())
        .verifierMessageDigest(
            "task-1".into(),
            encrypted_secret.clone(),
            root.clone(),
            nonce,
            fee.0,
            me,
        )
        .call()
        .await
        .unwrap();
    let (sig, recid) = tee.sign_prehash_recoverable(digest.as_slice()).unwrap();
    let mut signature = sig.to_bytes().to_vec();
    signature.push(27 + recid.to_byte());
    let settlement = TaskSettlement {
        id: "task-1".into(),
        encrypted_secret: encrypted_secret.clone(),
        model_root_hash: root,
        nonce,
        signature: signature.into(),
        task_fee: fee.0,
        user: me,
    };
    prov.fine_tuning().settle_fees(&settlement).await.unwrap();
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acct.balance, zg_amount("3"));

    // A wrong --signer is refused (the sealed file's tags were signed by the TEE), and nothing is written.
    let o = decrypt(&["--signer", &me.to_string()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&tee_key.address().to_string()) && err.contains(&me.to_string()),
        "names both signers: {err}"
    );
    assert!(
        !std::fs::read(&out).is_ok_and(|b| b == weights),
        "a wrong signer must not yield the model"
    );

    // The signer comes from chain; the key from the revealed encryptedSecret and ZG_PRIVATE_KEY.
    let o = decrypt(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["bytes"], weights.len());
    assert_eq!(v["signer"], tee_key.address().to_string());
    assert_eq!(std::fs::read(&out).unwrap(), weights);

    // The same with the customer's encrypted keystore instead of a raw key in the environment (issue 9): the
    // key flags every other verb takes. A wrong password is refused and writes nothing.
    let keystore = zg_chain::save_keystore(&customer_key, dir.path(), "customer.json", "pw").unwrap();
    std::fs::remove_file(&out).unwrap();
    let with_keystore = |password: &str| {
        zg(
            &[
                "decrypt-model",
                "--encrypted-model",
                sealed_arg,
                "--output",
                out_arg,
                "--provider",
                &provider_arg,
                "--task-id",
                "task-1",
                "--keystore",
                keystore.to_str().unwrap(),
            ],
            &[("ZG_RPC_URL", rpc.as_str()), ("ZG_KEYSTORE_PASSWORD", password)],
        )
    };
    let o = with_keystore("wrong");
    assert!(!o.status.success());
    assert!(!out.exists());
    let o = with_keystore("pw");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), weights);

    // The key was revealed to this customer's task only: another key has no such task.
    let other_hex = format!("0x{}", hex::encode(keys[4].to_bytes()));
    std::fs::remove_file(&out).unwrap();
    let o = zg(
        &[
            "decrypt-model",
            "--encrypted-model",
            sealed_arg,
            "--output",
            out_arg,
            "--provider",
            &provider_arg,
            "--task-id",
            "task-1",
        ],
        &[
            ("ZG_RPC_URL", rpc.as_str()),
            ("ZG_PRIVATE_KEY", other_hex.as_str()),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("DeliverableNotExists"), "{}", stderr(&o));
    assert!(!out.exists());
}
