//! `zg owner acknowledge-tee-signer` / `revoke-tee-signer` through the binary on a devnet (issue 9): only the
//! contract owner's key works, and the error names the owner; the signer acknowledged is the one checked; both
//! serving contracts; idempotent; `--help` teaches with an example.

use crate::{stderr, stdout, zg};
use zg_chain::{Amount, Devnet, DevnetConfig, FineTuningQuota, FineTuningServiceParams, ServiceParams, U256};

fn hexkey(k: &zg_chain::PrivateKeySigner) -> String {
    format!("0x{}", hex::encode(k.to_bytes()))
}

#[tokio::test]
async fn owner_acknowledges_and_revokes_tee_signers_and_strangers_are_told_who_the_owner_is() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let keys = devnet.keys().to_vec();
    let (owner, stranger, provider_key, tee, other) = (&keys[0], &keys[1], &keys[2], &keys[3], &keys[4]);
    let provider = provider_key.address();
    let prov = devnet.client(Some(provider_key.clone())).await.unwrap();
    prov.inference()
        .add_or_update_service(
            &ServiceParams {
                service_type: "chatbot".into(),
                url: "http://127.0.0.1:9".into(),
                model: "zg-demo".into(),
                verifiability: "TeeML".into(),
                input_price: U256::from(1),
                output_price: U256::from(2),
                additional_info: "{}".into(),
                tee_signer: tee.address(),
            },
            Amount::from_zg(1),
        )
        .await
        .unwrap();
    let rpc = devnet.rpc_url();
    let (owner_hex, stranger_hex) = (hexkey(owner), hexkey(stranger));
    let as_owner = [
        ("ZG_RPC_URL", rpc.as_str()),
        ("ZG_PRIVATE_KEY", owner_hex.as_str()),
    ];
    let as_stranger = [
        ("ZG_RPC_URL", rpc.as_str()),
        ("ZG_PRIVATE_KEY", stranger_hex.as_str()),
    ];
    let p = provider.to_string();
    let acknowledged = || async {
        devnet
            .client(None)
            .await
            .unwrap()
            .inference()
            .get_service(provider)
            .await
            .unwrap()
            .unwrap()
            .tee_signer_acknowledged
    };

    // Help teaches, with a worked example.
    let o = zg(&["owner", "acknowledge-tee-signer", "--help"], &[]);
    assert!(o.status.success());
    let help = stdout(&o);
    for needle in [
        "--provider",
        "--service",
        "--signer",
        "Example",
        "zg owner acknowledge-tee-signer",
        "--keystore",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }

    // Not the owner: refused before sending, naming the owner.
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "inference",
        ],
        &as_stranger,
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{} is not the owner", stranger.address()))
            && err.contains(&format!("its owner is {}", owner.address()))
            && err.contains("--keystore"),
        "{err}"
    );
    assert!(!acknowledged().await);

    // A signer other than the current one (the owner checked another attestation): refused.
    let wrong = other.address().to_string();
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "inference",
            "--signer",
            &wrong,
        ],
        &as_owner,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("current TEE signer is {}", tee.address())),
        "{}",
        stderr(&o)
    );
    assert!(!acknowledged().await);

    // The owner, naming the signer it checked.
    let signer = tee.address().to_string();
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "inference",
            "--signer",
            &signer,
            "--json",
        ],
        &as_owner,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["action"], "acknowledge-tee-signer");
    assert_eq!(v["service"], "inference");
    assert_eq!(
        v["tee_signer"]
            .as_str()
            .unwrap()
            .parse::<zg_chain::Address>()
            .unwrap(),
        tee.address()
    );
    assert_eq!(v["owner_acknowledged"], true);
    assert!(v["tx"]["tx"].is_string(), "{v}");
    assert!(acknowledged().await);
    // Again: nothing to send.
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "inference",
            "--json",
        ],
        &as_owner,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["tx"].is_null(), "{v}");

    // Revoke (under its long alias too), by the owner only.
    let o = zg(
        &[
            "owner",
            "revoke-tee-signer",
            "--provider",
            &p,
            "--service",
            "inference",
        ],
        &as_stranger,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not the owner"), "{}", stderr(&o));
    let o = zg(
        &[
            "owner",
            "revoke-tee-signer-acknowledgement",
            "--provider",
            &p,
            "--service",
            "inference",
        ],
        &as_owner,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("revoke-tee-signer: ok"), "{}", stdout(&o));
    assert!(!acknowledged().await);

    // Fine-tuning: no service yet, then one.
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "fine-tuning",
        ],
        &as_owner,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has no fine-tuning-v1.0 service"),
        "{}",
        stderr(&o)
    );
    prov.fine_tuning()
        .add_or_update_service(
            &FineTuningServiceParams {
                url: "http://127.0.0.1:9".into(),
                quota: FineTuningQuota::default(),
                price_per_token: U256::from(1),
                occupied: false,
                models: vec!["zg-demo".into()],
                tee_signer: other.address(),
            },
            Amount::from_zg(1),
        )
        .await
        .unwrap();
    let o = zg(
        &[
            "owner",
            "acknowledge-tee-signer",
            "--provider",
            &p,
            "--service",
            "fine-tuning",
        ],
        &as_owner,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let trust = devnet
        .client(None)
        .await
        .unwrap()
        .fine_tuning()
        .tee_signer_acknowledgements(stranger.address(), provider)
        .await
        .unwrap();
    assert_eq!((trust.signer, trust.owner_acknowledged), (other.address(), true));
    // The inference acknowledgement stayed revoked: the two contracts are separate.
    assert!(!acknowledged().await);
}
